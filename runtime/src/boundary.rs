//! Cutting text to a byte budget without splitting a character: tags, log lines, `sw8` fields
//! and SQL all keep their beginning when they are too long.

/// The largest character boundary of `text` at or below `index`, or the text's length when
/// `index` is past it: where a cut to at most `index` bytes falls. (`str::floor_char_boundary`,
/// which Rust 1.88, the crate's minimum, does not have.)
#[inline]
pub(crate) fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut end = index;
    // At most three steps: a UTF-8 character is at most four bytes.
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// `text` cut to at most `max` bytes, at a character boundary.
#[inline]
pub(crate) fn cut(text: &str, max: usize) -> &str {
    &text[..floor_char_boundary(text, max)]
}

#[cfg(test)]
mod tests {
    use super::{cut, floor_char_boundary};

    #[test]
    fn cuts_fall_on_character_boundaries() {
        assert_eq!(cut("SELECT 1", 100), "SELECT 1");
        assert_eq!(cut("SELECT 1", 6), "SELECT");
        assert_eq!(cut("é", 1), "");
        assert_eq!(cut("a€", 3), "a");
        assert_eq!(cut("a€", 4), "a€");
        assert_eq!(floor_char_boundary("", 5), 0);
        assert_eq!(floor_char_boundary("𝄞x", 3), 0);
        assert_eq!(floor_char_boundary("𝄞x", 4), 4);
    }
}
