//! Logs for OAP's log view, linked to their trace, and the trace context for local log lines.
//!
//! The bridges (`integrations::tracing::SkyWalkingLayer` for `tracing` events, feature
//! `tracing`; `integrations::log::SkyWalkingLogger` for the `log` crate, feature `log`) turn
//! each record at or above `SW_AGENT_LOG_REPORTER_LEVEL` into a `LogData` as the Java and
//! Python agents send it:
//!
//! | field | value |
//! |---|---|
//! | `timestamp` | milliseconds since the Unix epoch |
//! | `service`, `serviceInstance` | the agent's names |
//! | `endpoint` | the segment's first span (the request's endpoint); empty outside a trace |
//! | `body` | type `TEXT`, the message (and the event's fields as ` key=value`), at most `SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE` bytes |
//! | `traceContext` | trace id, segment id and span id, only when a span is recorded on this thread |
//! | `tags` | `level` (`ERROR`, `WARN`, …), `logger` (the target: module path or `target:`), `thread` |
//!
//! Records wait in a bounded queue for the reporter ([`install`] / [`LogReceiver`]); a full
//! queue drops and counts ([`stats`]); nothing ever waits. See [`LogSettings`] for the variables.
//!
//! For the application's own log lines, [`sw_ctx`] prints `[service,instance,traceId,segmentId,spanId]`,
//! the `SW_CTX` form of the Java (`%sw_ctx`) and Go agents (`[service,instance,N/A,N/A,-1]`
//! outside a trace); [`crate::current_trace_id`] gives the trace id alone.
//!
//! ```
//! // In an env_logger format function, or any formatter of the `log` crate:
//! let line = format!("{} {}", skytrace::logs::sw_ctx(), "user loaded");
//! assert_eq!(line, "[N/A,N/A,N/A,N/A,-1] user loaded"); // no agent, no trace here
//! ```

use std::fmt;

use skytrace_proto::v3::{
    KeyStringValuePair, LogData, LogDataBody, LogTags, TextLog, TraceContext, log_data_body,
};

pub use crate::log_sink::{
    DEFAULT_MAX_MESSAGE_SIZE, LogLevel, LogReceiver, LogSettings, LogStats, ParseLogLevelError,
    install, stats, uninstall,
};
use crate::snapshot::{LogContext, current_log_context};
use crate::time::now_millis;

/// Where a record came from: what the bridges know of it besides its text.
#[allow(dead_code)] // used by the bridges, which depend on features
pub(crate) struct Origin<'a> {
    pub(crate) level: LogLevel,
    /// The `logger` tag: a `tracing` target or a `log` target (the module path by default).
    pub(crate) logger: &'a str,
}

/// Reports a record, if its level passes the threshold: `text` is called only then, and the
/// context is read from this thread. What the bridges call.
#[allow(dead_code)] // used by the bridges, which depend on features
#[inline]
pub(crate) fn report(origin: Origin<'_>, text: impl FnOnce(&mut String)) {
    if !crate::log_sink::threshold_allows(origin.level) {
        return;
    }
    report_now(origin, text);
}

#[allow(dead_code)] // used by the bridges, which depend on features
fn report_now(origin: Origin<'_>, text: impl FnOnce(&mut String)) {
    let context = current_log_context();
    let names = match &context {
        Some(c) => Some((c.service, c.instance)),
        None => crate::global::with(|agent| (agent.service, agent.instance)),
    };
    // No agent: there is nobody to report for.
    let Some((service, instance)) = names else {
        return;
    };
    let mut body = String::new();
    text(&mut body);
    let record = build(
        Record {
            timestamp_millis: now_millis(),
            service,
            instance,
            origin,
            thread: &thread_name(),
            body,
            max_message_size: crate::log_sink::max_message_size(),
        },
        context.as_ref(),
    );
    crate::log_sink::submit(record);
}

/// Everything a `LogData` is made of but the trace context.
pub(crate) struct Record<'a> {
    pub(crate) timestamp_millis: i64,
    pub(crate) service: &'a str,
    pub(crate) instance: &'a str,
    pub(crate) origin: Origin<'a>,
    pub(crate) thread: &'a str,
    pub(crate) body: String,
    pub(crate) max_message_size: usize,
}

/// The `LogData` the Java agent's gRPC appender sends, for `record` written in `context`.
pub(crate) fn build(record: Record<'_>, context: Option<&LogContext>) -> LogData {
    let mut text = record.body;
    truncate(&mut text, record.max_message_size);
    // Every part bounded, so that a record's size is: a logger or thread name is not.
    let tag = |key: &str, value: &str| KeyStringValuePair {
        key: key.to_owned(),
        value: crate::cap::value(value).to_owned(),
    };
    LogData {
        timestamp: record.timestamp_millis,
        service: record.service.to_owned(),
        service_instance: record.instance.to_owned(),
        endpoint: context
            .map(|c| crate::cap::operation_name(&c.endpoint).to_owned())
            .unwrap_or_default(),
        body: Some(LogDataBody {
            r#type: "TEXT".to_owned(),
            content: Some(log_data_body::Content::Text(TextLog { text })),
        }),
        trace_context: context.map(|c| TraceContext {
            trace_id: c.trace_id.clone(),
            trace_segment_id: c.segment_id.clone(),
            span_id: c.span_id,
        }),
        tags: Some(LogTags {
            data: vec![
                tag("level", record.origin.level.as_str()),
                tag("logger", record.origin.logger),
                tag("thread", record.thread),
            ],
        }),
        // Empty: OAP reads it as GENERAL, as from the Java and Python agents.
        layer: String::new(),
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    let end = crate::boundary::floor_char_boundary(text, max);
    text.truncate(end);
}

/// The thread's name, or its id for an unnamed thread (as `ThreadId(7)`).
fn thread_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) => name.to_owned(),
        None => format!("{:?}", thread.id()),
    }
}

/// The trace context of this thread, printed as the Java and Go agents print `SW_CTX`:
/// `[service,instance,traceId,segmentId,spanId]`, or `[service,instance,N/A,N/A,-1]` outside a
/// recorded trace (`N/A` for the names too when no agent is installed). See [`sw_ctx`].
#[derive(Clone, Debug)]
pub struct SwCtx {
    names: Option<(&'static str, &'static str)>,
    context: Option<LogContext>,
}

impl SwCtx {
    /// The trace id, when a trace is recorded on this thread.
    pub fn trace_id(&self) -> Option<&str> {
        self.context.as_ref().map(|c| c.trace_id.as_str())
    }
}

impl fmt::Display for SwCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (service, instance) = self.names.unwrap_or(("N/A", "N/A"));
        match &self.context {
            Some(c) => write!(
                f,
                "[{service},{instance},{},{},{}]",
                c.trace_id, c.segment_id, c.span_id
            ),
            None => write!(f, "[{service},{instance},N/A,N/A,-1]"),
        }
    }
}

/// The trace context of this thread, for the application's own log lines; see [`SwCtx`].
///
/// ```
/// # struct Record; impl Record { fn args(&self) -> &str { "hello" } }
/// # let record = Record;
/// // env_logger:
/// // builder.format(|buf, record| writeln!(buf, "{} {}", skytrace::logs::sw_ctx(), record.args()));
/// let line = format!("{} {}", skytrace::logs::sw_ctx(), record.args());
/// assert!(line.ends_with("N/A,N/A,-1] hello"));
/// ```
pub fn sw_ctx() -> SwCtx {
    let context = current_log_context();
    let names = match &context {
        Some(c) => Some((c.service, c.instance)),
        None => crate::global::with(|agent| (agent.service, agent.instance)),
    };
    SwCtx { names, context }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str, max: usize) -> Record<'static> {
        Record {
            timestamp_millis: 1_700_000_000_123,
            service: "svc",
            instance: "svc-1",
            origin: Origin {
                level: LogLevel::Warn,
                logger: "app::users",
            },
            thread: "worker-1",
            body: body.to_owned(),
            max_message_size: max,
        }
    }

    #[test]
    fn log_data_fields_outside_a_trace() {
        let log = build(record("disk almost full", 1024), None);
        assert_eq!(log.timestamp, 1_700_000_000_123);
        assert_eq!(log.service, "svc");
        assert_eq!(log.service_instance, "svc-1");
        assert_eq!(log.endpoint, "");
        assert_eq!(log.layer, "");
        assert_eq!(log.trace_context, None);
        let body = log.body.unwrap();
        assert_eq!(body.r#type, "TEXT");
        assert_eq!(
            body.content,
            Some(log_data_body::Content::Text(TextLog {
                text: "disk almost full".into()
            }))
        );
        let tags: Vec<(String, String)> = log
            .tags
            .unwrap()
            .data
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        assert_eq!(
            tags,
            [
                ("level".into(), "WARN".into()),
                ("logger".into(), "app::users".into()),
                ("thread".into(), "worker-1".into()),
            ]
        );
    }

    #[test]
    fn trace_context_comes_from_the_span() {
        let context = LogContext {
            service: "svc",
            instance: "svc-1",
            trace_id: "t".into(),
            segment_id: "s".into(),
            span_id: 3,
            endpoint: "GET:/users".into(),
        };
        let log = build(record("x", 1024), Some(&context));
        assert_eq!(log.endpoint, "GET:/users");
        assert_eq!(
            log.trace_context,
            Some(TraceContext {
                trace_id: "t".into(),
                trace_segment_id: "s".into(),
                span_id: 3
            })
        );
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let log = build(record("héllo", 2), None);
        let Some(log_data_body::Content::Text(text)) = log.body.unwrap().content else {
            panic!("text body");
        };
        assert_eq!(text.text, "h"); // 'é' is two bytes and would not fit
    }

    #[test]
    fn sw_ctx_outside_a_trace() {
        // The names are the global agent's, if a test installed one.
        assert!(sw_ctx().to_string().ends_with(",N/A,N/A,-1]"));
        assert_eq!(sw_ctx().trace_id(), None);
    }
}
