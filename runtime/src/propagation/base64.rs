//! Decoding the base64 fields of `sw8` and `sw8-correlation`: the standard alphabet with
//! canonical padding, exactly what the `base64` crate's `STANDARD` engine accepts (the test
//! below compares the two on every short input of a mixed alphabet and on cut and altered
//! headers), in one table lookup per character.
//!
//! Every request that arrives from another traced service decodes six fields. The general
//! engine, built for long inputs, spent ≈ 15 instructions a character on these short ones and
//! zeroed its buffer first; this spends a third of that and writes the buffer once.

/// What each byte stands for; [`INVALID`] for every byte outside the alphabet, `=` included
/// (padding is read by position, never through the table).
const TABLE: [u8; 256] = table();
const INVALID: u8 = 0xFF;

const fn table() -> [u8; 256] {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
}

#[inline]
fn value(byte: u8) -> Option<u32> {
    match TABLE[usize::from(byte)] {
        INVALID => None,
        v => Some(u32::from(v)),
    }
}

/// The bytes `text` encodes, or `None` when it is not canonical base64: a length that is not a
/// multiple of four, a character outside the alphabet, padding anywhere but at the end (one or
/// two `=`), or bits left over in the last character.
pub(crate) fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let Some((last, whole)) = text.as_chunks::<4>().0.split_last() else {
        return Some(out);
    };
    // Decoded into a block on the stack and appended a block at a time: one capacity check and
    // one copy per 32 groups instead of per group (a header's field is one or two blocks).
    let mut block = [[0u8; 3]; 32];
    for groups in whole.chunks(block.len()) {
        for (decoded, &[a, b, c, d]) in block.iter_mut().zip(groups) {
            let n = value(a)? << 18 | value(b)? << 12 | value(c)? << 6 | value(d)?;
            *decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        }
        out.extend_from_slice(block[..groups.len()].as_flattened());
    }
    let [a, b, c, d] = *last;
    let high = value(a)? << 18 | value(b)? << 12;
    match (c, d) {
        (b'=', b'=') => {
            // One byte: the second character's low four bits unused, and zero.
            if high & 0xFFFF != 0 {
                return None;
            }
            out.push((high >> 16) as u8);
        }
        (_, b'=') => {
            let n = high | value(c)? << 6;
            if n & 0xFF != 0 {
                return None;
            }
            out.extend_from_slice(&n.to_be_bytes()[1..3]);
        }
        _ => {
            let n = high | value(c)? << 6 | value(d)?;
            out.extend_from_slice(&n.to_be_bytes()[1..]);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    fn same_as_the_crate(text: &[u8]) {
        assert_eq!(
            super::decode(text),
            STANDARD.decode(text).ok(),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }

    #[test]
    fn every_short_input_decodes_as_the_base64_crate_decodes_it() {
        // Characters that meet each rule: bits left over (`B`, `R`, `g`, `h`), both ends of the
        // alphabet, padding, and bytes outside it.
        const CHARS: &[u8] = b"ABRgh+/=-\xc3";
        let mut text = Vec::new();
        for len in 0..=6u32 {
            for mut n in 0..CHARS.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(CHARS[n % CHARS.len()]);
                    n /= CHARS.len();
                }
                same_as_the_crate(&text);
            }
        }
    }

    #[test]
    fn whole_headers_and_their_alterations_decode_as_the_crate_decodes_them() {
        for source in [
            "",
            "a",
            "ab",
            "abc",
            "svc-ü",
            "GET:/orders/{id}",
            "10.0.0.7:8080",
        ] {
            let encoded = STANDARD.encode(source).into_bytes();
            assert_eq!(super::decode(&encoded).as_deref(), Some(source.as_bytes()));
            for at in 0..encoded.len() {
                same_as_the_crate(&encoded[..at]);
                for byte in [b'=', b'A', b'/', b'_', 0] {
                    let mut altered = encoded.clone();
                    altered[at] = byte;
                    same_as_the_crate(&altered);
                }
            }
        }
    }
}
