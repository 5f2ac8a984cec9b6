//! Integers as decimal text, written digit by digit: `fmt`'s machinery costs several times the
//! digits on paths taken every call or every event (`grpc-timeout`, a `tracing` field).

/// The most digits of a `u64`, with room for a sign.
pub(crate) const MAX_LEN: usize = 21;

/// `value` in decimal, `-` first when `negative`, written at the end of `buf`: the text is what
/// is returned (ASCII; what `Display` writes for the integer).
pub(crate) fn write(buf: &mut [u8; MAX_LEN], negative: bool, mut value: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits_are_what_display_writes() {
        let mut buf = [0; super::MAX_LEN];
        for value in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(
                super::write(&mut buf, false, value),
                value.to_string().as_bytes()
            );
        }
        let text = super::write(&mut buf, true, i64::MIN.unsigned_abs());
        assert_eq!(text, i64::MIN.to_string().as_bytes());
    }
}
