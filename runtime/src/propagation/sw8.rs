//! The `sw8` header: the caller's context, carried across a process boundary.

use std::fmt;
use std::str::FromStr;

/// Longest `sw8` value accepted; the protocol keeps the whole header under 2 KB.
pub const SW8_MAX_LEN: usize = 2048;

/// Longest trace or segment id accepted, in bytes: agents write ids of well under 100
/// characters, and an id this long still leaves room to propagate the trace further.
const SW8_MAX_ID_LEN: usize = 1024;

/// A decoded `sw8` header.
///
/// ```
/// use skytrace::Sw8Header;
///
/// let header: Sw8Header =
///     "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA=="
///         .parse()
///         .unwrap();
/// assert_eq!(header.trace_id, "1");
/// assert_eq!(header.parent_span_id, 3);
/// assert_eq!(header.parent_endpoint, "/api/v1/health");
/// assert_eq!(header.to_string().parse::<Sw8Header>().unwrap(), header);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sw8Header {
    /// Field 1: `true` is written as `1` (sample), `false` as `0` (the context may be ignored).
    pub sampled: bool,
    /// Field 2.
    pub trace_id: String,
    /// Field 3: the caller's segment.
    pub parent_segment_id: String,
    /// Field 4: the exit span in the caller's segment. A span id is never negative: a negative
    /// value (`-1`, "no span") is written as `0`, the segment's first span, so that the
    /// header stays one every agent reads.
    pub parent_span_id: i32,
    /// Field 5.
    pub parent_service: String,
    /// Field 6.
    pub parent_service_instance: String,
    /// Field 7: the operation name of the first entry span of the caller's segment.
    pub parent_endpoint: String,
    /// Field 8: the address the caller dialled; the callee stores it as `networkAddressUsedAtPeer`.
    pub target_address: String,
}

/// Why an `sw8` value was rejected. A rejected header is ignored and a fresh trace starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sw8Error {
    /// The value is longer than [`SW8_MAX_LEN`].
    TooLong(usize),
    /// Not exactly eight `-`-separated fields.
    FieldCount(usize),
    /// The sample flag is neither `0` nor `1`.
    SampleFlag,
    /// The parent span id is not a decimal integer ≥ 0.
    SpanId,
    /// A string field (1-based index) is not base64, not UTF-8, or empty; or an id (fields 2
    /// and 3) is longer than 1,024 bytes.
    Field(usize),
}

impl fmt::Display for Sw8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sw8Error::TooLong(len) => {
                write!(
                    f,
                    "sw8 value is {len} bytes, over the {SW8_MAX_LEN}-byte limit"
                )
            }
            Sw8Error::FieldCount(n) => write!(f, "sw8 value has {n} fields, expected 8"),
            Sw8Error::SampleFlag => f.write_str("sw8 sample flag is neither 0 nor 1"),
            Sw8Error::SpanId => f.write_str("sw8 parent span id is not an integer >= 0"),
            Sw8Error::Field(i) => {
                write!(f, "sw8 field {i} is not non-empty base64-encoded UTF-8")
            }
        }
    }
}

impl std::error::Error for Sw8Error {}

impl Sw8Header {
    /// Parses an `sw8` value; see [`Sw8Error`] for what is rejected.
    pub fn decode(value: &str) -> Result<Self, Sw8Error> {
        if value.len() > SW8_MAX_LEN {
            return Err(Sw8Error::TooLong(value.len()));
        }
        // Split at each `-` in one pass over the bytes (`str::split` searched anew for every
        // field: 200 instructions more a header). `-` is ASCII: every cut is at a character
        // boundary.
        let mut fields = [""; 8];
        let mut count = 0;
        let mut start = 0;
        for (at, byte) in value.bytes().enumerate() {
            if byte == b'-' {
                if count < 8 {
                    fields[count] = &value[start..at];
                }
                count += 1;
                start = at + 1;
            }
        }
        if count < 8 {
            fields[count] = &value[start..];
        }
        count += 1;
        if count != 8 {
            return Err(Sw8Error::FieldCount(count));
        }
        let sampled = match fields[0] {
            "1" => true,
            "0" => false,
            _ => return Err(Sw8Error::SampleFlag),
        };
        let parent_span_id = parse_span_id(fields[3]).ok_or(Sw8Error::SpanId)?;
        let text = |i: usize| decode_field(fields[i]).ok_or(Sw8Error::Field(i + 1));
        // Ids no agent writes, and that would leave no room to propagate the trace further.
        let id = |i: usize| {
            text(i).and_then(|id| match id.len() {
                ..=SW8_MAX_ID_LEN => Ok(id),
                _ => Err(Sw8Error::Field(i + 1)),
            })
        };
        Ok(Sw8Header {
            sampled,
            trace_id: id(1)?,
            parent_segment_id: id(2)?,
            parent_span_id,
            parent_service: text(4)?,
            parent_service_instance: text(5)?,
            parent_endpoint: text(6)?,
            target_address: text(7)?,
        })
    }

    /// The header value, as the official agents write it, never longer than [`SW8_MAX_LEN`]
    /// (a callee refuses a longer one and starts a new trace). To fit, the free-text fields are
    /// cut at a character boundary, in this order, each only as far as needed and never below
    /// one character: the parent endpoint, the parent instance, the target address, the parent
    /// service. The ids are never cut: only ids longer than [`Sw8Header::decode`] accepts
    /// (1,024 bytes each) can make the value longer than the limit.
    ///
    /// ```
    /// use skytrace::{SW8_MAX_LEN, Sw8Header};
    ///
    /// let header = Sw8Header {
    ///     sampled: true,
    ///     trace_id: "t".into(),
    ///     parent_segment_id: "s".into(),
    ///     parent_span_id: 1,
    ///     parent_service: "svc".into(),
    ///     parent_service_instance: "i".into(),
    ///     parent_endpoint: format!("/search?q={}", "x".repeat(3000)),
    ///     target_address: "callee:80".into(),
    /// };
    /// let value = header.encode();
    /// assert!(value.len() <= SW8_MAX_LEN);
    /// let back = Sw8Header::decode(&value).unwrap();
    /// assert!(header.parent_endpoint.starts_with(&back.parent_endpoint));
    /// assert_eq!(back.target_address, "callee:80");
    /// ```
    pub fn encode(&self) -> String {
        Sw8Parts {
            sampled: self.sampled,
            trace_id: &self.trace_id,
            parent_segment_id: &self.parent_segment_id,
            parent_span_id: self.parent_span_id,
            parent_service: &self.parent_service,
            parent_service_instance: &self.parent_service_instance,
            parent_endpoint: &self.parent_endpoint,
            target_address: &self.target_address,
        }
        .encode()
    }
}

impl FromStr for Sw8Header {
    type Err = Sw8Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sw8Header::decode(s)
    }
}

impl fmt::Display for Sw8Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

fn parse_span_id(text: &str) -> Option<i32> {
    // Only plain digits: `+3`, ` 3` and `-1` are not what an agent writes.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The fields of an `sw8` header, borrowed: what `inject` encodes without copying them first.
pub(crate) struct Sw8Parts<'a> {
    pub(crate) sampled: bool,
    pub(crate) trace_id: &'a str,
    pub(crate) parent_segment_id: &'a str,
    pub(crate) parent_span_id: i32,
    pub(crate) parent_service: &'a str,
    pub(crate) parent_service_instance: &'a str,
    pub(crate) parent_endpoint: &'a str,
    pub(crate) target_address: &'a str,
}

impl Sw8Parts<'_> {
    /// The header value, cut to fit [`SW8_MAX_LEN`] (see [`Sw8Header::encode`]). Sized exactly
    /// up front and encoded in place: one allocation.
    pub(crate) fn encode(&self) -> String {
        // `-1` would be read as a ninth field: the header would be refused.
        let span_id = self.parent_span_id.max(0).to_string();
        // Flag, seven dashes, the span id, the two ids: what is never cut.
        let fixed = 1
            + 7
            + span_id.len()
            + encoded_len(self.trace_id)
            + encoded_len(self.parent_segment_id);
        let mut free = [
            self.parent_service,
            self.parent_service_instance,
            self.parent_endpoint,
            self.target_address,
        ];
        let mut len = fixed + free.iter().map(|t| encoded_len(t)).sum::<usize>();
        // The order fields are cut in: what the callee needs least first.
        for i in CUT_ORDER {
            if len <= SW8_MAX_LEN {
                break;
            }
            let before = encoded_len(free[i]);
            let room = before.saturating_sub(len - SW8_MAX_LEN);
            free[i] = cut(free[i], room / 4 * 3);
            len = len - before + encoded_len(free[i]);
        }
        let mut out = Vec::with_capacity(len);
        out.push(if self.sampled { b'1' } else { b'0' });
        push_field(&mut out, self.trace_id);
        push_field(&mut out, self.parent_segment_id);
        out.push(b'-');
        out.extend_from_slice(span_id.as_bytes());
        for text in free {
            push_field(&mut out, text);
        }
        // Base64, digits and dashes only.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Indexes into `[service, instance, endpoint, address]`, in the order [`Sw8Parts::encode`]
/// cuts them: the parent endpoint (only shown to users), then the parent instance, then the
/// target address (OAP maps it to the callee), and the parent service last.
const CUT_ORDER: [usize; 4] = [2, 1, 3, 0];

/// `text` cut to at most `max` bytes at a character boundary, but never below its first
/// character: an empty field makes the whole header invalid.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let first = text.chars().next().map_or(0, char::len_utf8);
    crate::boundary::cut(text, max.max(first))
}

fn encoded_len(text: &str) -> usize {
    super::base64::encoded_len(text.len())
}

/// Decodes one base64 field (`super::base64`) into the buffer that becomes the `String`: one
/// allocation, no scratch copy. Empty or not UTF-8: `None`.
pub(crate) fn decode_field(text: &str) -> Option<String> {
    let s = String::from_utf8(super::base64::decode(text.as_bytes())?).ok()?;
    (!s.is_empty()).then_some(s)
}

fn push_field(out: &mut Vec<u8>, value: &str) {
    out.push(b'-');
    super::base64::encode_into(value.as_bytes(), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA==";

    fn sample() -> Sw8Header {
        Sw8Header {
            sampled: true,
            trace_id: "1".into(),
            parent_segment_id: "5".into(),
            parent_span_id: 3,
            parent_service: "mesh".into(),
            parent_service_instance: "instance".into(),
            parent_endpoint: "/api/v1/health".into(),
            target_address: "example.com:8080".into(),
        }
    }

    #[test]
    fn decodes_the_protocol_example() {
        assert_eq!(Sw8Header::decode(EXAMPLE), Ok(sample()));
    }

    #[test]
    fn encodes_the_protocol_example_byte_for_byte() {
        assert_eq!(sample().encode(), EXAMPLE);
    }

    #[test]
    fn round_trips_unicode_and_dashes() {
        let mut h = sample();
        h.trace_id = "a1b2.33.17000000000001".into();
        h.parent_endpoint = "GET:/users/{id}-ü-😀".into();
        h.sampled = false;
        assert_eq!(Sw8Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn rejects_malformed_values() {
        let cases: &[(&str, Sw8Error)] = &[
            ("", Sw8Error::FieldCount(1)),
            ("1-MQ==-NQ==", Sw8Error::FieldCount(3)),
            (&format!("{EXAMPLE}-eA=="), Sw8Error::FieldCount(9)),
            (&EXAMPLE.replacen('1', "2", 1), Sw8Error::SampleFlag),
            (&EXAMPLE.replace("-3-", "--"), Sw8Error::SpanId),
            (&EXAMPLE.replace("-3-", "-x-"), Sw8Error::SpanId),
            (&EXAMPLE.replace("-3-", "-+3-"), Sw8Error::SpanId),
            (&EXAMPLE.replace("-3-", "-99999999999-"), Sw8Error::SpanId),
            (&EXAMPLE.replace("MQ==", "!!!"), Sw8Error::Field(2)),
            (&EXAMPLE.replace("NQ==", ""), Sw8Error::Field(3)),
            // 0xff 0xfe is not UTF-8.
            (&EXAMPLE.replace("bWVzaA==", "//4="), Sw8Error::Field(5)),
        ];
        for (value, expected) in cases {
            assert_eq!(
                Sw8Header::decode(value).as_ref(),
                Err(expected),
                "{value:?}"
            );
        }
    }

    #[test]
    fn negative_span_id_is_rejected() {
        // `-1` splits into an extra empty field.
        let value = EXAMPLE.replace("-3-", "--1-");
        assert!(Sw8Header::decode(&value).is_err());
    }

    #[test]
    fn a_negative_span_id_encodes_to_a_header_that_decodes() {
        for id in [-1, i32::MIN] {
            let mut h = sample();
            h.parent_span_id = id;
            let back = Sw8Header::decode(&h.encode()).expect("a valid header");
            assert_eq!(back.parent_span_id, 0);
            assert_eq!(back.trace_id, h.trace_id);
        }
    }

    #[test]
    fn long_fields_are_cut_to_fit() {
        // Issue 12: a 1,612-byte endpoint made a 2,337-byte header the callee refused.
        let mut h = sample();
        h.parent_endpoint = format!("/{}", "é".repeat(806)); // 1,613 bytes
        let value = h.encode();
        assert!(value.len() <= SW8_MAX_LEN, "{}", value.len());
        let back = Sw8Header::decode(&value).unwrap();
        assert!(h.parent_endpoint.starts_with(&back.parent_endpoint));
        assert!(back.parent_endpoint.len() > 1_400);
        assert_eq!(back.target_address, h.target_address);
        assert_eq!(back.parent_service, h.parent_service);

        // Everything long: cut in the documented order, each field keeps a character.
        h.parent_service = "s".repeat(1_000);
        h.parent_service_instance = "😀".repeat(500);
        h.target_address = "a".repeat(1_000);
        let back = Sw8Header::decode(&h.encode()).unwrap();
        assert_eq!(back.parent_endpoint, "/");
        assert_eq!(back.parent_service_instance, "😀");
        assert!(h.parent_service.starts_with(&back.parent_service));
        assert!(back.parent_service.len() > 100);
        assert!(h.target_address.starts_with(&back.target_address));

        // What already fits is left alone, byte for byte.
        h = sample();
        h.parent_endpoint = "e".repeat(1_000);
        assert_eq!(Sw8Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn ids_over_the_limit_are_rejected() {
        let mut h = sample();
        h.trace_id = "t".repeat(SW8_MAX_ID_LEN);
        assert_eq!(Sw8Header::decode(&h.encode()), Ok(h.clone()));
        h.trace_id.push('t');
        assert_eq!(Sw8Header::decode(&h.encode()), Err(Sw8Error::Field(2)));
    }

    #[test]
    fn huge_values_are_rejected_before_any_work() {
        let huge = format!("1-{}", "A".repeat(1 << 20));
        assert_eq!(Sw8Header::decode(&huge), Err(Sw8Error::TooLong(huge.len())));
        let at_limit = "1".repeat(SW8_MAX_LEN + 1);
        assert!(matches!(
            Sw8Header::decode(&at_limit),
            Err(Sw8Error::TooLong(_))
        ));
    }
}
