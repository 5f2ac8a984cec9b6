//! The `sw8-x` header: trace-wide extensions.

/// Decoded `sw8-x`: every field is optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sw8Extension {
    /// Field 1 `1`: the whole trace skips OAP's analysis; carried downstream.
    pub skip_analysis: bool,
    /// Field 2: when the client sent the message, in ms (message queues tag transmission latency).
    pub send_time_ms: Option<i64>,
}

impl Sw8Extension {
    /// Parses a value; unknown or malformed fields are ignored.
    pub fn decode(value: &str) -> Self {
        let mut parts = value.split('-');
        let skip_analysis = parts.next().is_some_and(|p| p.trim() == "1");
        let send_time_ms = parts.next().and_then(|p| p.trim().parse().ok());
        Sw8Extension {
            skip_analysis,
            send_time_ms,
        }
    }

    /// The header value, e.g. `1-` or `0-1700000000000`. A negative send time is no time
    /// (and `-` separates the fields): it is left out.
    ///
    /// ```
    /// use skytrace::Sw8Extension;
    ///
    /// let x = Sw8Extension { skip_analysis: false, send_time_ms: Some(1_700_000_000_000) };
    /// assert_eq!(Sw8Extension::decode(&x.encode()), x);
    /// let negative = Sw8Extension { skip_analysis: true, send_time_ms: Some(-5) };
    /// assert_eq!(negative.encode(), "1-");
    /// ```
    pub fn encode(&self) -> String {
        let mode = if self.skip_analysis { "1" } else { "0" };
        match self.send_time_ms {
            Some(ts) if ts >= 0 => format!("{mode}-{ts}"),
            _ => format!("{mode}-"),
        }
    }

    /// Whether the header carries anything worth sending.
    pub fn is_empty(&self) -> bool {
        !self.skip_analysis && self.send_time_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_form() {
        assert!(Sw8Extension::decode("1").skip_analysis);
        assert!(Sw8Extension::decode("1-").skip_analysis);
        assert_eq!(Sw8Extension::decode("0-123").send_time_ms, Some(123));
        assert_eq!(Sw8Extension::decode("garbage"), Sw8Extension::default());
        assert_eq!(Sw8Extension::decode(""), Sw8Extension::default());
        let x = Sw8Extension {
            skip_analysis: true,
            send_time_ms: Some(5),
        };
        assert_eq!(Sw8Extension::decode(&x.encode()), x);
    }
}
