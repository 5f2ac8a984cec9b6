//! The `tracing` bridge: [`SkyWalkingLayer`], a `tracing_subscriber` layer that records
//! `tracing` spans as SkyWalking spans of the current trace, their events as span logs, and
//! reports events to OAP's log view; [`SwCtxFormat`] prints the trace context in the fmt
//! layer's lines.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! tracing_subscriber::registry()
//!     .with(skytrace::integrations::tracing::SkyWalkingLayer::new())
//!     // .with(tracing_subscriber::fmt::layer())   // the application's own output, as before
//!     .init();
//! ```
//!
//! # Spans
//!
//! A `tracing` span created while a skytrace span is current on the thread (from `#[trace]`,
//! an integration's entry span, or another bridged span) becomes a span of that segment: a
//! local span named after the `tracing` span, child of the current span. Entering the `tracing`
//! span (`span.enter()`, `in_scope`, each poll of an `.instrument(span)` future) makes the
//! SkyWalking span current, so `#[trace]` functions called inside it nest under it, and the
//! reverse; the span ends when the `tracing` span closes. A `tracing` span created outside any
//! trace records nothing, unless [`SkyWalkingLayer::start_traces`] is set (or it is marked
//! `sw.kind = "entry"`): it then starts a trace with an entry span, for jobs and consumers
//! instrumented only with `tracing`. An explicit `parent:` with a span of its own is honoured.
//!
//! Reserved fields shape the span and are not tags:
//!
//! | field | value | effect |
//! |---|---|---|
//! | `sw.kind` | `"local"` (default), `"exit"`, `"entry"` | an exit span (a call out; `inject` writes its headers), or an entry span starting a trace |
//! | `sw.peer` | `"host:port"` | the peer of an exit span |
//! | `sw.layer` | `"database"`, `"http"`, `"rpc"`, `"mq"`, `"cache"`, `"faas"` | the span's layer |
//! | `sw.component` | a number (see [`crate::component`]) | the component id |
//! | `sw.name` | text | the operation name, instead of the `tracing` span's name |
//!
//! ```
//! #[tracing::instrument(fields(sw.kind = "exit", sw.peer = "db:5432", sw.layer = "database",
//!                              sw.component = 22))]
//! async fn load_user(id: u64) { /* … */ }
//! ```
//!
//! `sw.kind` is read when the span is made; the others may also be recorded later
//! (`tracing::Span::current().record("sw.peer", addr)`, declared as `tracing::field::Empty`).
//! Every other field becomes a tag, formatted only if the span records. A field named `error`
//! marks the span failed (`error = true`; any other value is logged as the error's message).
//!
//! # Events
//!
//! An event inside a recorded span becomes a log of that span: `event` (the level: `error`,
//! `warn`, `info`, `debug`, `trace`), `message`, then each field. An `ERROR` event, or an event
//! with an `error` field, marks the span failed. Events are also reported to OAP's log view
//! (see [`crate::logs`]) when their level passes `SW_AGENT_LOG_REPORTER_LEVEL` and a log queue
//! is installed. To keep some events or spans away from SkyWalking, filter the layer
//! (`SkyWalkingLayer::new().with_filter(...)`).

mod bridged;

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use self::bridged::BridgedSpans;
use crate::context::current::{self, Current};
use crate::edit::Edit;
use crate::encoded_pairs::{ConstPair, EncodedTags, LogFields};
use crate::logs::{self, LogLevel, Origin};
use crate::segment::{LogRecord, SpanLayer};
use crate::span::{Entrance, Span};
use crate::time::Stamp;
use crate::tracer::Tracer;

/// A `tracing_subscriber` layer that records `tracing` spans and events in SkyWalking; see the
/// [module documentation](self).
///
/// ```
/// use skytrace::integrations::tracing::SkyWalkingLayer;
///
/// // Root `tracing` spans (a job, a consumer) start traces on the global tracer.
/// let layer = SkyWalkingLayer::new().start_traces(true);
/// # let _ = layer;
/// ```
#[derive(Debug)]
pub struct SkyWalkingLayer {
    roots: Roots,
    report_logs: bool,
    /// The SkyWalking span of each `tracing` span this layer records.
    spans: BridgedSpans,
}

/// As the derived `Default` was: roots start nothing, and events are not reported to the log
/// view (unlike [`SkyWalkingLayer::new`]).
impl Default for SkyWalkingLayer {
    fn default() -> SkyWalkingLayer {
        SkyWalkingLayer {
            roots: Roots::Ignore,
            report_logs: false,
            spans: BridgedSpans::new(),
        }
    }
}

/// The same settings; no spans (they are another subscriber's, whose ids this one's may
/// repeat).
impl Clone for SkyWalkingLayer {
    fn clone(&self) -> SkyWalkingLayer {
        SkyWalkingLayer {
            roots: self.roots.clone(),
            report_logs: self.report_logs,
            spans: BridgedSpans::new(),
        }
    }
}

#[derive(Clone, Debug, Default)]
enum Roots {
    /// A root `tracing` span starts nothing (unless it says `sw.kind = "entry"`).
    #[default]
    Ignore,
    /// On the global tracer.
    Global,
    /// On a given tracer.
    Tracer(Tracer),
}

impl SkyWalkingLayer {
    /// The layer: spans inside traces, no new traces, events reported to the log view.
    pub fn new() -> SkyWalkingLayer {
        SkyWalkingLayer {
            roots: Roots::Ignore,
            report_logs: true,
            spans: BridgedSpans::new(),
        }
    }

    /// Whether a `tracing` span created outside any trace starts one (an entry span named
    /// after it, on the global tracer). Off by default: a library's spans alone then record
    /// nothing.
    pub fn start_traces(mut self, yes: bool) -> SkyWalkingLayer {
        self.roots = if yes { Roots::Global } else { Roots::Ignore };
        self
    }

    /// As [`SkyWalkingLayer::start_traces`]`(true)`, on `tracer` rather than the global one.
    pub fn start_traces_on(mut self, tracer: Tracer) -> SkyWalkingLayer {
        self.roots = Roots::Tracer(tracer);
        self
    }

    /// Whether events are reported to OAP's log view (on by default; they are only once a log
    /// queue is installed, see [`crate::logs::install`]). Span logs are not affected.
    pub fn report_logs(mut self, yes: bool) -> SkyWalkingLayer {
        self.report_logs = yes;
        self
    }

    fn start_root(&self, name: Cow<'static, str>, forced: bool) -> Option<Span> {
        match &self.roots {
            Roots::Tracer(tracer) => Some(tracer.entry_span(name, &())),
            Roots::Global => Some(Span::root_entry(name)),
            Roots::Ignore if forced => Some(Span::root_entry(name)),
            Roots::Ignore => None,
        }
    }
}

thread_local! {
    /// The SkyWalking spans this thread entered for `tracing` spans, innermost last, with what
    /// each entrance changed (undone when the `tracing` span exits).
    static ENTERED: RefCell<Vec<(Id, Entrance)>> = const { RefCell::new(Vec::new()) };
}

impl<S> Layer<S> for SkyWalkingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        // An explicit parent with a SkyWalking span is made current while the child is made.
        let parent = attrs
            .parent()
            .and_then(|parent| self.spans.with(parent, Span::enter_detached));
        let span = self.new_span(attrs);
        if let Some(parent) = parent {
            parent.exit();
        }
        if let Some(span) = span {
            self.spans.insert(id, span);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if self.spans.is_empty() || self.spans.with(id, Span::is_recording) != Some(true) {
            return;
        }
        // Formatted without our lock held: a `Debug` impl is user code, and may itself use
        // `tracing`.
        let mut fields = SpanFields::default();
        values.record(&mut fields);
        self.spans.with(id, |span| fields.apply(span));
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.spans.is_empty() {
            return;
        }
        let Some(entrance) = self.spans.with(id, Span::enter_detached) else {
            return;
        };
        let _ = ENTERED.try_with(|entered| entered.borrow_mut().push((id.clone(), entrance)));
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        // Taken off the stack first, exited after: exiting may drop a handle.
        let Ok(Some((entrance, above))) = ENTERED.try_with(|entered| {
            let mut entered = entered.borrow_mut();
            // The usual case: the innermost span exits.
            if entered.last().is_some_and(|(last, _)| last == id) {
                return entered.pop().map(|(_, entrance)| (entrance, Vec::new()));
            }
            let at = entered
                .iter()
                .rposition(|(entered_id, _)| entered_id == id)?;
            let above = entered.split_off(at + 1);
            let (_, entrance) = entered.pop()?;
            Some((entrance, above))
        }) else {
            return;
        };
        if above.is_empty() {
            entrance.exit();
            return;
        }
        // Exited out of order (spans entered after it are still entered): undo the later
        // entrances, exit this one, and enter the later ones again, so the thread's context
        // stays a stack.
        let ids: Vec<Id> = above.iter().map(|(id, _)| id.clone()).collect();
        for (_, later) in above.into_iter().rev() {
            later.exit();
        }
        entrance.exit();
        for id in ids {
            self.on_enter(&id, ctx.clone());
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        if self.spans.is_empty() {
            return;
        }
        // Taken out under our lock, ended after it: ending a segment's first span hands it to
        // the reporter.
        drop(self.spans.remove(&id));
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let level = log_level(metadata.level());
        self.span_log(event, level);
        if self.report_logs {
            logs::report(
                Origin {
                    level,
                    logger: metadata.target(),
                },
                |text| {
                    let mut visitor = TextVisitor::default();
                    event.record(&mut visitor);
                    visitor.write_to(text);
                },
            );
        }
    }
}

impl SkyWalkingLayer {
    /// The SkyWalking span for a new `tracing` span, if it records (or is an exit span of a
    /// trace that is propagated but not recorded here). Nothing is formatted before that is
    /// known.
    fn new_span(&self, attrs: &Attributes<'_>) -> Option<Span> {
        let metadata = attrs.metadata();
        if has_reserved(metadata) {
            return self.new_shaped_span(attrs);
        }
        // The usual case: a local span named after the `tracing` span.
        let span = match current::current() {
            Current::Recording => Span::local(metadata.name()),
            Current::None => self.start_root(Cow::Borrowed(metadata.name()), false)?,
            Current::Unsampled => return None,
        };
        if !span.is_recording() {
            return None;
        }
        if !attrs.values().is_empty() {
            let mut fields = SpanFields::default();
            attrs.record(&mut fields);
            fields.apply(&span);
        }
        Some(span)
    }

    /// [`SkyWalkingLayer::new_span`] for a span with `sw.*` fields.
    #[cold]
    fn new_shaped_span(&self, attrs: &Attributes<'_>) -> Option<Span> {
        let metadata = attrs.metadata();
        let mut reserved = Reserved::default();
        attrs.record(&mut reserved);
        let name = reserved
            .name
            .take()
            .map_or(Cow::Borrowed(metadata.name()), Cow::Owned);
        let span = match (current::current(), reserved.kind) {
            (Current::None, Kind::Entry) => self.start_root(name, true)?,
            (Current::None, _) => self.start_root(name, false)?,
            (_, Kind::Exit) => {
                let peer = reserved.peer.take().unwrap_or_default();
                let span = Span::exit(name, peer);
                // An exit span of a trace not recorded here still carries it onwards.
                if !span.is_recording() {
                    return Some(span);
                }
                span
            }
            (Current::Unsampled, _) => return None,
            (Current::Recording, _) => Span::local(name),
        };
        if !span.is_recording() {
            return None;
        }
        reserved.apply(&span);
        let mut fields = SpanFields {
            reserved_read: true,
            ..SpanFields::default()
        };
        attrs.record(&mut fields);
        fields.apply(&span);
        Some(span)
    }

    /// Logs `event` on the span it belongs to, if that span records.
    fn span_log(&self, event: &Event<'_>, level: LogLevel) {
        if event.is_contextual() {
            // The thread's current SkyWalking span: a `#[trace]` span inside a `tracing` span
            // is the one the event happened in.
            if current::current() != Current::Recording {
                return;
            }
            let (log, failed) = event_log(event, level);
            current::edit_current(if failed {
                Edit::Failed(log)
            } else {
                Edit::Log(log)
            });
            return;
        }
        // Not contextual: an explicit parent, or none (a root event).
        let Some(parent) = event.parent() else {
            return;
        };
        if self.spans.is_empty() || self.spans.with(parent, Span::is_recording) != Some(true) {
            return;
        }
        // Formatted without our lock held (user code).
        let (log, failed) = event_log(event, level);
        self.spans.with(parent, |span| {
            span.edit(if failed {
                Edit::Failed(log)
            } else {
                Edit::Log(log)
            })
        });
    }
}

/// The span log of `event`: `event` (the level), `message`, then the fields; and whether it
/// marks the span failed (an `ERROR` event, or an `error` field).
fn event_log(event: &Event<'_>, level: LogLevel) -> (LogRecord, bool) {
    let mut fields = LogFields::default();
    fields.push_const(event_pair(level));
    let mut visitor = LogVisitor {
        second: fields.len(),
        fields,
        error: false,
    };
    event.record(&mut visitor);
    let log = LogRecord {
        time: Stamp::now(),
        fields: visitor.fields,
    };
    (log, level == LogLevel::Error || visitor.error)
}

/// A span log's first pair: `event` = the level, encoded once.
fn event_pair(level: LogLevel) -> &'static ConstPair<2> {
    const TRACE: ConstPair<2> = LogFields::const_pair("event", "trace");
    const DEBUG: ConstPair<2> = LogFields::const_pair("event", "debug");
    const INFO: ConstPair<2> = LogFields::const_pair("event", "info");
    const WARN: ConstPair<2> = LogFields::const_pair("event", "warn");
    match level {
        LogLevel::Trace => &TRACE,
        LogLevel::Debug => &DEBUG,
        LogLevel::Info => &INFO,
        LogLevel::Warn => &WARN,
        LogLevel::Error => &crate::edit::EVENT_ERROR,
    }
}

fn log_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

/// Whether a callsite declares any `sw.*` field.
fn has_reserved(metadata: &Metadata<'_>) -> bool {
    metadata
        .fields()
        .iter()
        .any(|f| f.name().starts_with("sw."))
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Local,
    Exit,
    Entry,
}

/// The reserved `sw.*` fields of a span.
#[derive(Default)]
struct Reserved {
    kind: Kind,
    peer: Option<String>,
    layer: Option<SpanLayer>,
    component: Option<i32>,
    name: Option<String>,
}

impl Reserved {
    fn apply(self, span: &Span) {
        if let Some(layer) = self.layer {
            span.set_layer(layer);
        }
        if let Some(component) = self.component {
            span.set_component(component);
        }
        if let Some(peer) = self.peer {
            span.set_peer(peer);
        }
        if let Some(name) = self.name {
            span.set_operation_name(name);
        }
    }

    fn text(&mut self, field: &Field, value: &str) {
        match field.name() {
            "sw.kind" => {
                self.kind = match value {
                    "exit" => Kind::Exit,
                    "entry" => Kind::Entry,
                    _ => Kind::Local,
                }
            }
            "sw.peer" => self.peer = Some(value.to_owned()),
            "sw.name" => self.name = Some(value.to_owned()),
            "sw.layer" => {
                self.layer = Some(match value.to_ascii_lowercase().as_str() {
                    "database" | "db" => SpanLayer::Database,
                    "http" => SpanLayer::Http,
                    "rpc" | "rpcframework" | "rpc_framework" => SpanLayer::RpcFramework,
                    "mq" => SpanLayer::Mq,
                    "cache" => SpanLayer::Cache,
                    "faas" => SpanLayer::Faas,
                    _ => SpanLayer::Unknown,
                })
            }
            "sw.component" => self.component = value.parse().ok(),
            _ => {}
        }
    }
}

impl Visit for Reserved {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "sw.component" {
            self.component = i32::try_from(value).ok();
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "sw.component" {
            self.component = i32::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name().starts_with("sw.") {
            let text = format!("{value:?}");
            // A `?value` of a string is quoted; a `%value` is not.
            let text = text.trim_matches('"');
            self.text(field, text);
        }
    }
}

/// The fields of a recorded span, formatted: tags, and what `error` says.
#[derive(Default)]
struct SpanFields {
    tags: EncodedTags,
    /// The `sw.*` fields recorded later (`Span::record`); none on the usual span.
    reserved: Option<Reserved>,
    /// `error = true` / `false`.
    error: Option<bool>,
    /// `error` with any other value: its text.
    error_message: Option<String>,
    /// The `sw.*` fields were read already (as the span was made): skipped.
    reserved_read: bool,
}

impl SpanFields {
    fn apply(self, span: &Span) {
        if let Some(reserved) = self.reserved {
            reserved.apply(span);
        }
        // The tags, the usual fields, in one edit (formatted before, without any lock).
        if !self.tags.is_empty() {
            span.edit(Edit::EncodedTags(self.tags));
        }
        if let Some(is_error) = self.error {
            span.set_error(is_error);
        }
        if let Some(message) = self.error_message {
            span.record_error(&message);
        }
    }

    /// Records `field`: a tag, which `push` appends to the tags, or (`error`, the `sw.*`
    /// fields) its `text`. A `sw.*` field read already is not even formatted.
    fn field(
        &mut self,
        field: &Field,
        push: impl FnOnce(&mut EncodedTags, &str),
        text: impl FnOnce() -> String,
    ) {
        match field.name() {
            "error" => self.error_message = Some(text()),
            name if name.starts_with("sw.") => {
                if !self.reserved_read {
                    let reserved = self.reserved.get_or_insert_with(Reserved::default);
                    reserved.text(field, text().trim_matches('"'));
                }
            }
            name => push(&mut self.tags, name),
        }
    }
}

impl Visit for SpanFields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "error" {
            self.error = Some(value);
            return;
        }
        let text = if value { "true" } else { "false" };
        self.field(field, |tags, key| tags.push(key, text), || text.to_owned());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(
            field,
            |tags, key| tags.push_i64(key, value),
            || value.to_string(),
        );
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(
            field,
            |tags, key| tags.push_u64(key, value),
            || value.to_string(),
        );
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(
            field,
            |tags, key| tags.push_fmt(key, format_args!("{value}")),
            || value.to_string(),
        );
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(
            field,
            |tags, key| tags.push(key, value),
            || value.to_owned(),
        );
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(
            field,
            |tags, key| tags.push_fmt(key, format_args!("{value}")),
            || value.to_string(),
        );
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(
            field,
            |tags, key| tags.push_fmt(key, format_args!("{value:?}")),
            || format!("{value:?}"),
        );
    }
}

/// The fields of an event, for a span log: `event` first, then `message`, then the others in
/// the order they are recorded; each formatted where it is kept.
struct LogVisitor {
    fields: LogFields,
    /// Where `message` goes: after `event`.
    second: usize,
    error: bool,
}

impl LogVisitor {
    /// Records `field`, which `push` appends to the fields.
    fn field(&mut self, field: &Field, push: impl FnOnce(&mut LogFields, &str)) {
        let name = field.name();
        let at = self.fields.len();
        push(&mut self.fields, name);
        match name {
            // Second whatever its place among the fields.
            "message" => self.fields.move_back(at, self.second),
            "error" => self.error = true,
            _ => {}
        }
    }
}

impl Visit for LogVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |fields, key| fields.push_i64(key, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |fields, key| fields.push_u64(key, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let text = if value { "true" } else { "false" };
        self.field(field, |fields, key| fields.push(key, text));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |fields, key| fields.push(key, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |fields, key| {
            fields.push_fmt(key, format_args!("{value}"))
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |fields, key| {
            fields.push_fmt(key, format_args!("{value:?}"))
        });
    }
}

/// An event as the text of a log record: the message, then ` key=value` per field.
#[derive(Default)]
struct TextVisitor {
    message: Option<String>,
    fields: String,
}

impl TextVisitor {
    fn write_to(self, text: &mut String) {
        if let Some(message) = self.message {
            text.push_str(&message);
        }
        if !self.fields.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&self.fields);
        }
    }
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            let separator = if self.fields.is_empty() { "" } else { " " };
            let _ = write!(self.fields, "{separator}{}={value:?}", field.name());
        }
    }
}

/// A `tracing_subscriber::fmt` event format that writes the trace context first, in the
/// `SW_CTX` form of the Java and Go agents (see [`crate::logs::sw_ctx`]), then the event as
/// `inner` formats it.
///
/// ```
/// use skytrace::integrations::tracing::SwCtxFormat;
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// let fmt = tracing_subscriber::fmt::layer()
///     .event_format(SwCtxFormat::new(tracing_subscriber::fmt::format()));
/// let subscriber = tracing_subscriber::registry().with(fmt);
/// // `[svc,svc-1,<trace id>,<segment id>,3] 2026-… INFO app: loaded user`
/// # let _ = subscriber;
/// ```
#[derive(Clone, Debug, Default)]
pub struct SwCtxFormat<F> {
    inner: F,
}

impl<F> SwCtxFormat<F> {
    /// Wraps `inner`, the format that writes the rest of the line.
    pub fn new(inner: F) -> SwCtxFormat<F> {
        SwCtxFormat { inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for SwCtxFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{} ", logs::sw_ctx())?;
        self.inner.format_event(ctx, writer.by_ref(), event)
    }
}
