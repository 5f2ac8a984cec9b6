//! Changes to a span's record, as values.
//!
//! A span's record may be on the thread that started it, in its segment, or on its way between
//! the two; a change must reach it wherever it is, sometimes later (it then waits in the
//! segment). Changes are data rather than closures so that applying one runs no code but ours:
//! nothing a user wrote (a `Display`, an `Into` conversion) can run while a record is borrowed
//! from the thread's buffer or the segment's lock is held. Whatever user code a change needs
//! has run before the [`Edit`] is made.

use std::borrow::Cow;
use std::fmt;

use crate::encoded_pairs::{ConstPair, EncodedTags, LogFields};
use crate::segment::{LogRecord, SpanLayer, SpanRecord, Text};
use crate::time::Stamp;

/// One change to a span's record.
pub(crate) enum Edit {
    Layer(SpanLayer),
    Component(i32),
    Peer(Text),
    Operation(Text),
    Tag(Text, Text),
    /// Tags formatted and encoded already (see [`EncodedTags`]).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))] // for the `tracing` bridge
    EncodedTags(EncodedTags),
    Log(LogRecord),
    Error(bool),
    /// Marks the span as failed and adds a log (an error's message, a panic).
    Failed(LogRecord),
    SkipAnalysis,
    /// Ends the span at this time unless it has ended already.
    End(Stamp),
}

impl Edit {
    #[inline]
    pub(crate) fn apply(self, record: &mut SpanRecord) {
        match self {
            Edit::Layer(layer) => record.layer = layer,
            Edit::Component(id) => record.component = id,
            Edit::Peer(peer) => record.peer = peer,
            Edit::Operation(name) => record.operation = name,
            Edit::Tag(key, value) => record.tags.push((key, value)),
            Edit::EncodedTags(tags) => record.encoded_tags.append(tags),
            Edit::Log(log) => record.logs.push(log),
            Edit::Error(is_error) => record.is_error = is_error,
            Edit::Failed(log) => {
                record.is_error = true;
                record.logs.push(log);
            }
            Edit::SkipAnalysis => record.skip_analysis = true,
            Edit::End(now) => record.close(now),
        }
    }
}

/// A log of `fields`, stamped now.
pub(crate) fn fields_log<K, V>(fields: impl IntoIterator<Item = (K, V)>) -> LogRecord
where
    K: Into<Cow<'static, str>>,
    V: Into<Cow<'static, str>>,
{
    let mut log = LogFields::default();
    for (key, value) in fields {
        log.push(&key.into(), &value.into());
    }
    LogRecord {
        time: Stamp::now(),
        fields: log,
    }
}

/// An error log's first pair.
pub(crate) const EVENT_ERROR: ConstPair<2> = LogFields::const_pair("event", "error");

/// The log the official agents write for an error: `event=error`, `message=…`.
pub(crate) fn error_log(time: Stamp, error: &dyn fmt::Display) -> LogRecord {
    let mut fields = LogFields::default();
    fields.push_const(&EVENT_ERROR);
    fields.push_fmt("message", format_args!("{error}"));
    LogRecord { time, fields }
}

/// The log of a span that ended by a panic.
pub(crate) fn panic_log(time: Stamp) -> LogRecord {
    let mut fields = LogFields::default();
    fields.push_const(&EVENT_ERROR);
    fields.push("error.kind", "panic");
    LogRecord { time, fields }
}
