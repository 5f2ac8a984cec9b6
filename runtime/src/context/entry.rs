//! Starting an entry span: the caller's `sw8` (and `sw8-correlation`, `sw8-x`), the sampling
//! decision and the ignore rules.

use std::sync::Arc;

use super::current::{self, Adoption, Current};
use super::handle::{Handle, RecordAt};
use super::recording::{ActiveSegment, SegmentStart, new_record};
use super::unsampled::UnsampledContext;
use crate::agent::Agent;
use crate::id::TraceId;
use crate::propagation::{
    Correlation, Extractor, SW8, SW8_CORRELATION, SW8_X, Sw8Extension, Sw8Header,
};
use crate::segment::{RefKind, SegmentRef, SpanKind, SpanRecord, Text};

/// The name of an entry span, and what the ignore rules (`SW_AGENT_IGNORE_SUFFIX`) judge: the
/// name itself, or, for a request named by something else than its path (an unmatched route,
/// named by its method alone), the path-like name the rules would have seen.
pub(crate) struct EntryName<'a> {
    pub(crate) operation: Text,
    pub(crate) judged_as: Option<&'a str>,
    /// An HTTP request's path, which `SW_AGENT_TRACE_IGNORE_PATH` judges: an ignored one gets
    /// no span at all (no trace, nothing propagated). Judged with the sampling decision, in
    /// the same read of the settings (and of the global tracer): one look per request, not two.
    pub(crate) path: Option<&'a str>,
}

impl From<Text> for EntryName<'_> {
    fn from(operation: Text) -> Self {
        EntryName {
            operation,
            judged_as: None,
            path: None,
        }
    }
}

/// A span just started: its handle, and where its record is.
pub(crate) struct Started {
    pub(crate) handle: Handle,
    pub(crate) at: RecordAt,
}

/// An entry span named `operation` on `agent` (the global one when `None`), continuing the
/// caller's context in `carrier`; `init` is applied to its record as it is made (only if it
/// records): how an integration sets layer, component and tags without taking the segment's
/// lock afterwards. Inside a recording trace the entry is a local child instead: a handler
/// under a tracing middleware must not count the request twice. `None`: nothing to record.
pub(crate) fn entry<E: Extractor + ?Sized>(
    agent: Option<&Arc<Agent>>,
    name: EntryName<'_>,
    carrier: &E,
    init: impl FnOnce(&mut SpanRecord),
) -> Option<Started> {
    match current::current_for_entry() {
        // Inside a trace the rules judge the path on their own: the rare nested entry.
        Current::Recording if name.path.is_some_and(|path| is_ignored_path(agent, path)) => {
            return None;
        }
        Current::Recording => match current::adopt_entry() {
            Adoption::Adopted => {
                // Prepared here, where `init` may run whatever it likes; the thread's context
                // is only touched once the record is complete.
                let mut record = new_record(SpanKind::Local, name.operation);
                init(&mut record);
                let (segment, span_id, index) = current::start_buffered_record(record)?;
                return Some(Started {
                    handle: Handle::Recording { segment, span_id },
                    at: RecordAt::Buffered(index),
                });
            }
            Adoption::TooMany => say_entries_escaped(),
            Adoption::Released => say_ended_segment_released(),
        },
        Current::Unsampled => return None,
        Current::None => {}
    }
    let handle = match agent {
        Some(agent) => start(agent, name, carrier, init),
        None => crate::global::with(|agent| start(agent, name, carrier, init))?,
    }?;
    Some(Started {
        handle,
        at: RecordAt::Segment,
    })
}

/// Whether `agent` (the global one when `None`) leaves requests for `path` untraced.
fn is_ignored_path(agent: Option<&Arc<Agent>>, path: &str) -> bool {
    match agent {
        Some(agent) => agent.is_ignored_path(path),
        None => crate::global::with(|agent| agent.is_ignored_path(path)).unwrap_or(false),
    }
}

/// Said once: an ended segment was found current (a leaked guard) and released.
#[cold]
fn say_ended_segment_released() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::say::say(
            "skytrace: a span guard outlived its trace (leaked with mem::forget, or kept past \
             the end of its request): its ended trace was still current on this thread when a \
             request started. It was released; the request starts a trace of its own. (Said \
             once.)",
        );
    }
}

/// Said once: entries stopped joining a segment that adopted too many.
#[cold]
fn say_entries_escaped() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "skytrace: {} entry spans started inside one trace on one thread; the trace's own \
             entry span seems to stay current by mistake (its guard leaked with mem::forget, or \
             held around a loop that serves requests). Later entries start traces of their own. \
             (Said once.)",
            super::recording::MAX_NESTED_ENTRIES
        );
    }
}

/// A new segment for a request entering the service, or the unsampled context that still
/// propagates it; `None` for a request whose path the rules ignore.
fn start<E: Extractor + ?Sized>(
    agent: &Arc<Agent>,
    name: EntryName<'_>,
    carrier: &E,
    init: impl FnOnce(&mut SpanRecord),
) -> Option<Handle> {
    let header = carrier.get(SW8).and_then(|v| Sw8Header::decode(v).ok());
    let available = agent.accepts_traces();
    let upstream_sampled = header.as_ref().is_some_and(|h| h.sampled);
    let operation = name.operation;
    let judged = name.judged_as.unwrap_or(&operation);
    let (ignored, sampled, span_limit) = agent.settings.with(|s| {
        if name.path.is_some_and(|path| s.is_ignored_path(path)) {
            return (true, false, 0);
        }
        let sampled = available
            && !s.ignore_suffix.matches(judged)
            && (upstream_sampled || s.sampler.try_sample());
        (false, sampled, s.span_limit)
    });
    if ignored {
        return None;
    }
    if !sampled {
        let context =
            UnsampledContext::new(Arc::clone(agent), header.map(|h| h.trace_id), operation);
        return Some(Handle::Unsampled {
            context: Arc::new(context),
            peer: None,
        });
    }
    // `sw8-correlation` and `sw8-x` belong to the caller's context: without a valid `sw8`
    // there is none (as in the official agents), and two header lookups are saved.
    let upstream = |key: &str| header.as_ref().and_then(|_| carrier.get(key));
    let correlation = match upstream(SW8_CORRELATION) {
        Some(v) => Correlation::decode(
            v,
            agent.correlation_max_keys,
            agent.correlation_max_value_size,
        ),
        None => Correlation::new(agent.correlation_max_keys, agent.correlation_max_value_size),
    };
    let extension = upstream(SW8_X)
        .map(Sw8Extension::decode)
        .unwrap_or_default();
    let (trace_id, refs) = match header {
        Some(h) => (
            Some(TraceId::new(&h.trace_id)),
            vec![SegmentRef {
                kind: RefKind::CrossProcess,
                trace_id: h.trace_id,
                parent_segment_id: h.parent_segment_id,
                parent_span_id: h.parent_span_id,
                parent_service: h.parent_service,
                parent_service_instance: h.parent_service_instance,
                parent_endpoint: h.parent_endpoint,
                network_address: h.target_address,
            }],
        ),
        None => (None, Vec::new()),
    };
    let segment = ActiveSegment::start(
        Arc::clone(agent),
        SegmentStart {
            span_limit,
            trace_id,
            refs,
            correlation,
            skip_analysis: extension.skip_analysis,
        },
        (SpanKind::Entry, operation),
        init,
    );
    Some(Handle::Recording {
        segment,
        span_id: 0,
    })
}
