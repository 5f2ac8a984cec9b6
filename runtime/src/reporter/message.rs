//! The lines the reporter prints: each names the backend, gives the cause once, and says what
//! the agent does next. Built here, printed by the worker, one line per change of state.

use std::fmt::Write as _;
use std::time::Duration;

/// What went wrong with a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// No connection: refused, unresolvable, timed out, reset.
    Unreachable,
    /// `UNAUTHENTICATED` or `PERMISSION_DENIED`: the token was refused.
    TokenRefused,
    /// The backend answered a call with another error.
    Error,
    /// A call got no answer within its timeout.
    Stalled,
    /// TLS failed: a certificate refused either way, a file that cannot be used, or a
    /// backend that does not speak TLS.
    Tls,
}

/// What kind of backend a line names: the reporter talks to OAP over gRPC, or to Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Oap,
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    Kafka,
}

impl Peer {
    /// `OAP at {backend}` / `Kafka at {backend}`: the backend as every line names it.
    pub(crate) fn at(self, backend: &str) -> String {
        match self {
            Peer::Oap => format!("OAP at {backend}"),
            Peer::Kafka => format!("Kafka at {backend}"),
        }
    }

    /// What a refused authentication was, and the variables that set it.
    fn credentials(self) -> &'static str {
        match self {
            Peer::Oap => "the authentication token (SW_AGENT_AUTHENTICATION)",
            Peer::Kafka => {
                "the SASL credentials (SW_KAFKA_SASL_MECHANISM, SW_KAFKA_SASL_USERNAME, \
                 SW_KAFKA_SASL_PASSWORD)"
            }
        }
    }
}

/// A failed attempt, as the transport saw it.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) trouble: Trouble,
    /// Whom `backend` is: OAP, or a Kafka broker.
    pub(crate) peer: Peer,
    /// The backend that failed, as configured (`host:port`).
    pub(crate) backend: String,
    /// Why, in a few words (see [`cause`]).
    pub(crate) cause: String,
    /// When the transport tries again.
    pub(crate) retry_in: Duration,
    /// The backend it tries next, when that is another one.
    pub(crate) next_backend: Option<String>,
}

/// The line for `failure`. `keep_tracing`: traces go on being recorded while OAP is away
/// (`SW_AGENT_KEEP_TRACING`).
pub(crate) fn failure_line(failure: &Failure, keep_tracing: bool) -> String {
    let Failure {
        trouble,
        peer,
        backend,
        cause,
        retry_in,
        next_backend,
    } = failure;
    let who = peer.at(backend);
    let mut line = match trouble {
        Trouble::Unreachable => format!("skytrace: cannot reach {who}: {cause}"),
        Trouble::TokenRefused => format!("skytrace: {who} refused {}: {cause}", peer.credentials()),
        Trouble::Error => format!("skytrace: {who} answered with an error: {cause}"),
        Trouble::Stalled => format!("skytrace: {who} is not answering ({cause})"),
        Trouble::Tls => format!("skytrace: no TLS connection to {who}: {cause}"),
    };
    let retry_in = seconds(*retry_in);
    match next_backend {
        Some(next) => {
            let _ = write!(line, "; trying {next} in {retry_in}");
        }
        None => {
            let _ = write!(line, "; retrying in {retry_in}");
        }
    }
    line.push_str(paused(keep_tracing));
    line
}

/// The line when a backend (`who`: `OAP at host:port`) has not answered a call for `waited`.
pub(crate) fn slow_line(who: &str, waited: Duration, keep_tracing: bool) -> String {
    format!(
        "skytrace: {who} has not answered for {}; waiting for it{}",
        seconds(waited),
        paused(keep_tracing)
    )
}

/// The line when a call succeeds after trouble (or for the first time); `who`: `OAP at
/// host:port`.
pub(crate) fn connected_line(who: &str, again: bool) -> String {
    if again {
        format!("skytrace: {who} answers again; reporting, new traces resume")
    } else {
        format!("skytrace: reporting to {who}")
    }
}

/// The line for the first segment dropped for its size; `variable` sets the limit.
pub(crate) fn too_large_line(trace_id: &str, len: usize, max: usize, variable: &str) -> String {
    format!(
        "skytrace: dropped a segment of trace {trace_id}: {len} bytes even with long values cut, \
         over the {max}-byte message limit ({variable}); later ones are only counted \
         (stats().dropped)"
    )
}

fn paused(keep_tracing: bool) -> &'static str {
    if keep_tracing {
        ", new traces still recorded (SW_AGENT_KEEP_TRACING) and dropped when the queue is full"
    } else {
        ", new traces paused"
    }
}

/// `d` for a person: `0.5 s`, `1.6 s`, `30 s`.
pub(crate) fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        let text = format!("{s:.1}");
        format!("{} s", text.trim_end_matches(".0"))
    } else {
        format!("{} s", s.round())
    }
}

/// An error and its sources as one short cause, each text once: `transport error: Connection
/// refused (os error 111): Connection refused (os error 111)` becomes `connection refused (os
/// error 111)`.
pub(crate) fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut texts = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        texts.push(e.to_string());
        next = e.source();
    }
    join_causes(texts)
}

/// Joins the texts of an error chain, outermost first, leaving out what another already says.
pub(crate) fn join_causes(texts: impl IntoIterator<Item = String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    for text in texts {
        let text = text.trim().to_owned();
        if text.is_empty() || kept.iter().any(|k| k.contains(text.as_str())) {
            continue;
        }
        // A wrapper whose source says it all ("error: {source}").
        kept.retain(|k| !text.contains(k.as_str()));
        kept.push(text);
    }
    // Words that only say which layer failed, when a more telling cause follows.
    if kept.len() > 1 {
        kept.retain(|k| !matches!(k.as_str(), "transport error" | "status: Unknown"));
    }
    let mut joined = kept.join(": ");
    // `Connection refused` reads as the middle of a sentence: `connection refused`. Not for
    // words in capitals (`UNAVAILABLE`, `TLS`).
    let mut chars = joined.chars();
    if let (Some(first), Some(second)) = (chars.next(), chars.next())
        && first.is_uppercase()
        && second.is_lowercase()
    {
        let lower: String = first.to_lowercase().collect();
        joined.replace_range(..first.len_utf8(), &lower);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(&'static str, Option<Box<Wrapper>>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn refused() -> Failure {
        Failure {
            trouble: Trouble::Unreachable,
            peer: Peer::Oap,
            backend: "127.0.0.1:11800".into(),
            cause: "connection refused (os error 111)".into(),
            retry_in: Duration::from_millis(1_600),
            next_backend: None,
        }
    }

    #[test]
    fn a_repeated_cause_is_said_once() {
        let chain = Wrapper(
            "transport error",
            Some(Box::new(Wrapper(
                "Connection refused (os error 111)",
                Some(Box::new(Wrapper("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(cause(&chain), "connection refused (os error 111)");
    }

    #[test]
    fn a_wrapper_that_quotes_its_source_is_left_out() {
        let chain = Wrapper(
            "error trying to connect: deadline has elapsed",
            Some(Box::new(Wrapper("deadline has elapsed", None))),
        );
        assert_eq!(
            cause(&chain),
            "error trying to connect: deadline has elapsed"
        );
        let texts = [
            "tcp connect error",
            "Connection reset by peer (os error 104)",
        ];
        assert_eq!(
            join_causes(texts.map(String::from)),
            "tcp connect error: Connection reset by peer (os error 104)"
        );
        assert_eq!(join_causes(["UNAVAILABLE: x".to_owned()]), "UNAVAILABLE: x");
    }

    #[test]
    fn an_unreachable_backend_names_it_the_cause_and_what_comes_next() {
        assert_eq!(
            failure_line(&refused(), false),
            "skytrace: cannot reach OAP at 127.0.0.1:11800: connection refused (os error 111); \
             retrying in 1.6 s, new traces paused"
        );
    }

    #[test]
    fn failing_over_names_the_next_backend() {
        let failure = Failure {
            next_backend: Some("10.0.0.2:11800".into()),
            retry_in: Duration::from_millis(100),
            ..refused()
        };
        assert_eq!(
            failure_line(&failure, true),
            "skytrace: cannot reach OAP at 127.0.0.1:11800: connection refused (os error 111); \
             trying 10.0.0.2:11800 in 0.1 s, new traces still recorded (SW_AGENT_KEEP_TRACING) \
             and dropped when the queue is full"
        );
    }

    #[test]
    fn a_refused_token_is_said_plainly() {
        let failure = Failure {
            trouble: Trouble::TokenRefused,
            cause: "UNAUTHENTICATED: missing or wrong `authentication` token".into(),
            retry_in: Duration::from_secs(30),
            ..refused()
        };
        assert_eq!(
            failure_line(&failure, false),
            "skytrace: OAP at 127.0.0.1:11800 refused the authentication token \
             (SW_AGENT_AUTHENTICATION): UNAUTHENTICATED: missing or wrong `authentication` \
             token; retrying in 30 s, new traces paused"
        );
    }

    #[test]
    fn a_stalled_backend_says_how_long_it_was_given() {
        let failure = Failure {
            trouble: Trouble::Stalled,
            cause: "no answer within 10 s".into(),
            retry_in: Duration::from_millis(800),
            ..refused()
        };
        assert_eq!(
            failure_line(&failure, false),
            "skytrace: OAP at 127.0.0.1:11800 is not answering (no answer within 10 s); \
             retrying in 0.8 s, new traces paused"
        );
    }

    #[test]
    fn tls_trouble_says_what_to_check() {
        let failure = Failure {
            trouble: Trouble::Tls,
            cause: "OAP's certificate has expired".into(),
            retry_in: Duration::from_millis(500),
            ..refused()
        };
        assert_eq!(
            failure_line(&failure, false),
            "skytrace: no TLS connection to OAP at 127.0.0.1:11800: OAP's certificate has \
             expired; retrying in 0.5 s, new traces paused"
        );
    }

    #[test]
    fn kafka_is_named_as_kafka() {
        let failure = Failure {
            peer: Peer::Kafka,
            backend: "127.0.0.1:9092".into(),
            ..refused()
        };
        assert_eq!(
            failure_line(&failure, false),
            "skytrace: cannot reach Kafka at 127.0.0.1:9092: connection refused (os error 111); \
             retrying in 1.6 s, new traces paused"
        );
        let failure = Failure {
            trouble: Trouble::TokenRefused,
            cause: "SASL authentication failed".into(),
            ..failure
        };
        assert!(
            failure_line(&failure, false).starts_with(
                "skytrace: Kafka at 127.0.0.1:9092 refused the SASL credentials \
                 (SW_KAFKA_SASL_MECHANISM, SW_KAFKA_SASL_USERNAME, SW_KAFKA_SASL_PASSWORD): "
            ),
            "{}",
            failure_line(&failure, false)
        );
    }

    #[test]
    fn other_lines() {
        assert_eq!(
            slow_line("OAP at oap:11800", Duration::from_secs(2), false),
            "skytrace: OAP at oap:11800 has not answered for 2 s; waiting for it, new traces paused"
        );
        assert_eq!(
            connected_line("OAP at oap:11800", false),
            "skytrace: reporting to OAP at oap:11800"
        );
        assert!(
            too_large_line("t1", 5_000_000, 4_194_304, "SW_AGENT_MAX_MESSAGE_SIZE")
                .contains("trace t1: 5000000 bytes")
        );
        assert_eq!(seconds(Duration::from_millis(460)), "0.5 s");
        assert_eq!(seconds(Duration::from_secs_f64(27.6)), "28 s");
    }
}
