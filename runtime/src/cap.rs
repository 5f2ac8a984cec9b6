//! Limits on the strings a segment sends, applied when it is encoded (by the gRPC reporter's
//! encoder and by [`crate::Segment::into_proto`] alike).
//!
//! Recording keeps what the application gave (the hot path does not look at lengths); the
//! encoder writes at most these many of a string's leading characters, so one huge tag cannot make
//! a segment, or the batch it travels in, too large for the collector (whose gRPC message limit
//! is 4 MB for tonic and grpc-go, 50 MB for OAP).
//!
//! - Operation names (and a ref's parent endpoint): 150 characters, as the Java agent.
//! - Peers (and a ref's network address): 200 characters, as the Java agent.
//! - Tag and log keys and values: 2 KiB (2,048 bytes), cut on a character boundary. The Java
//!   agent cuts SQL statements at 2,048 characters by default; a value longer than that is a
//!   payload, not something to search a trace by.
//!
//! Cuts are silent, as the Java agent's: the value keeps its beginning.

/// Most characters of an operation name.
pub(crate) const OPERATION_NAME_CHARS: usize = 150;
/// Most characters of a peer.
pub(crate) const PEER_CHARS: usize = 200;
/// Most bytes of a tag or log key or value.
pub(crate) const VALUE_BYTES: usize = 2048;

/// `name` cut to [`OPERATION_NAME_CHARS`].
#[inline]
pub(crate) fn operation_name(name: &str) -> &str {
    chars(name, OPERATION_NAME_CHARS)
}

/// `peer` cut to [`PEER_CHARS`].
#[inline]
pub(crate) fn peer(peer: &str) -> &str {
    chars(peer, PEER_CHARS)
}

/// A tag or log key or value cut to [`VALUE_BYTES`].
#[inline]
pub(crate) fn value(value: &str) -> &str {
    crate::boundary::cut(value, VALUE_BYTES)
}

/// The first `max` characters of `s`.
#[inline]
fn chars(s: &str, max: usize) -> &str {
    // No more bytes than `max`: no more characters either (the common case: one comparison).
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_untouched() {
        assert_eq!(operation_name("GET:/users/{id}"), "GET:/users/{id}");
        assert_eq!(peer(""), "");
        assert_eq!(value("v"), "v");
        let exact = "a".repeat(OPERATION_NAME_CHARS);
        assert_eq!(operation_name(&exact), exact);
    }

    #[test]
    fn names_and_peers_are_cut_by_characters() {
        // 300 bytes, 150 characters: untouched.
        let wide = "é".repeat(150);
        assert_eq!(operation_name(&wide), wide);
        let wider = "é".repeat(151);
        assert_eq!(operation_name(&wider).chars().count(), 150);
        assert_eq!(peer(&"p".repeat(1_000)).len(), 200);
        assert_eq!(peer(&"€".repeat(201)).chars().count(), 200);
    }

    #[test]
    fn values_are_cut_by_bytes_on_a_character_boundary() {
        assert_eq!(value(&"x".repeat(1 << 20)).len(), VALUE_BYTES);
        // 3-byte characters: 2,048 is not a boundary, 2,046 is.
        let euros = "€".repeat(1_000);
        let cut = value(&euros);
        assert_eq!(cut.len(), 2_046);
        assert!(cut.chars().all(|c| c == '€'));
    }
}
