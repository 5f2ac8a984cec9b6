//! The `sw8` header: the caller's context, carried across a process boundary.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Longest `sw8` value accepted; the protocol keeps the whole header under 2 KB.
pub const SW8_MAX_LEN: usize = 2048;

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
    /// Field 4: the exit span in the caller's segment.
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
    /// A string field (1-based index) is not base64, not UTF-8, or empty.
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
        let mut fields = [""; 8];
        let mut count = 0;
        for part in value.split('-') {
            if count < 8 {
                fields[count] = part;
            }
            count += 1;
        }
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
        Ok(Sw8Header {
            sampled,
            trace_id: text(1)?,
            parent_segment_id: text(2)?,
            parent_span_id,
            parent_service: text(4)?,
            parent_service_instance: text(5)?,
            parent_endpoint: text(6)?,
            target_address: text(7)?,
        })
    }

    /// The header value, as the official agents write it.
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
    /// Sized exactly up front and encoded in place: one allocation.
    pub(crate) fn encode(&self) -> String {
        let texts = [
            self.trace_id,
            self.parent_segment_id,
            self.parent_service,
            self.parent_service_instance,
            self.parent_endpoint,
            self.target_address,
        ];
        // Flag, seven dashes, a span id of at most 11 characters, and the six fields.
        let len = 1 + 7 + 11 + texts.iter().map(|t| encoded_len(t)).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.push(if self.sampled { b'1' } else { b'0' });
        let [trace, segment, service, instance, endpoint, address] = texts;
        push_field(&mut out, trace);
        push_field(&mut out, segment);
        out.push(b'-');
        out.extend_from_slice(self.parent_span_id.to_string().as_bytes());
        for text in [service, instance, endpoint, address] {
            push_field(&mut out, text);
        }
        // Base64, digits and dashes only.
        String::from_utf8(out).unwrap_or_default()
    }
}

fn encoded_len(text: &str) -> usize {
    base64::encoded_len(text.len(), true).unwrap_or(0)
}

/// Decodes one base64 field into an exactly sized buffer that becomes the `String`: one
/// allocation, no scratch copy.
pub(crate) fn decode_field(text: &str) -> Option<String> {
    let mut bytes = vec![0; base64::decoded_len_estimate(text.len())];
    let len = STANDARD.decode_slice(text, &mut bytes).ok()?;
    bytes.truncate(len);
    let s = String::from_utf8(bytes).ok()?;
    (!s.is_empty()).then_some(s)
}

fn push_field(out: &mut Vec<u8>, value: &str) {
    out.push(b'-');
    let start = out.len();
    out.resize(start + encoded_len(value), 0);
    // The slice is exactly the encoded length, so this cannot fail; if it did, the field would
    // be left as zero bytes and the header rejected by the callee, not a panic here.
    let _ = STANDARD.encode_slice(value, &mut out[start..]);
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
