//! The base64 fields of `sw8` and `sw8-correlation`: the standard alphabet with canonical
//! padding, encoded and decoded exactly as the `base64` crate's `STANDARD` engine does (the
//! tests below compare the two on every short input of a mixed alphabet and on cut and altered
//! headers), in one table lookup per character.
//!
//! Every request that arrives from another traced service decodes six fields, and every call
//! out of a traced one encodes six. The general engine, built for long inputs, spent ≈ 15
//! instructions a character on these short ones and zeroed its buffer first; this spends a
//! third of that and writes the buffer once. Its code was also placed by the compiler's
//! inlining: a change elsewhere in the crate moved a header's encoding by ≈ 100 instructions.

/// The standard alphabet, in order.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// What each byte stands for; [`INVALID`] for every byte outside the alphabet, `=` included
/// (padding is read by position, never through the table).
const TABLE: [u8; 256] = table();
const INVALID: u8 = 0xFF;

const fn table() -> [u8; 256] {
    let alphabet = ALPHABET;
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
#[inline] // into its one caller, `sw8::decode_field`: placed by the compiler, it moved by ≈ 160 a header
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

/// How many characters `len` bytes encode to, padding included.
#[inline]
pub(crate) const fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

/// Appends `bytes` encoded (padded) to `out`.
#[inline]
pub(crate) fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(bytes.len()));
    let (whole, rest) = bytes.as_chunks::<3>();
    // Encoded into a block on the stack and appended a block at a time, as in `decode`.
    let mut block = [[0u8; 4]; 32];
    for groups in whole.chunks(block.len()) {
        for (encoded, &[a, b, c]) in block.iter_mut().zip(groups) {
            let n = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
            *encoded = [
                char_of(n >> 18),
                char_of(n >> 12),
                char_of(n >> 6),
                char_of(n),
            ];
        }
        out.extend_from_slice(block[..groups.len()].as_flattened());
    }
    match *rest {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[char_of(n >> 18), char_of(n >> 12), b'=', b'=']);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend_from_slice(&[char_of(n >> 18), char_of(n >> 12), char_of(n >> 6), b'=']);
        }
        _ => {}
    }
}

/// The character for the low six bits of `n`.
#[inline(always)]
fn char_of(n: u32) -> u8 {
    ALPHABET[(n & 0x3F) as usize]
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn every_short_input_encodes_as_the_base64_crate_encodes_it() {
        // Every input of up to three bytes over bytes that reach each end of each six-bit group,
        // and longer ones across the 32-group block.
        const BYTES: &[u8] = &[0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xC3, 0xFC, 0xFF];
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=3u32 {
            for mut n in 0..BYTES.len().pow(len) {
                let mut input = Vec::new();
                for _ in 0..len {
                    input.push(BYTES[n % BYTES.len()]);
                    n /= BYTES.len();
                }
                inputs.push(input);
            }
        }
        inputs.extend((90..=200).map(|len| (0..len).map(|i| (i * 37 + 11) as u8).collect()));
        for input in inputs {
            let mut ours = b"x-".to_vec();
            super::encode_into(&input, &mut ours);
            assert_eq!(ours[2..], *STANDARD.encode(&input).as_bytes(), "{input:?}");
            assert_eq!(ours.len() - 2, super::encoded_len(input.len()));
        }
    }

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
