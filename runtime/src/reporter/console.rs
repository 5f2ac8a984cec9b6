//! Reporters that need no backend.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Reporter, ReporterStats};
use crate::segment::{Segment, SpanKind};

/// Prints each segment to standard error, one line per span: for development, when no OAP is
/// at hand. Writing happens on the thread that ends the segment, so keep it out of production.
///
/// ```
/// use skytrace::{Config, ConsoleReporter, Tracer};
///
/// let tracer = Tracer::new(&Config::builder().service_name("dev").build().unwrap(), ConsoleReporter::new());
/// let span = tracer.entry_span("job", &());
/// drop(span); // prints the segment
/// ```
#[derive(Debug, Default)]
pub struct ConsoleReporter {
    sent: AtomicU64,
}

impl ConsoleReporter {
    /// A reporter writing to standard error.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Reporter for ConsoleReporter {
    fn report(&self, segment: Segment) {
        let mut out = String::new();
        out.push_str(&format!(
            "[skytrace] segment {} of trace {} ({} / {}){}\n",
            segment.segment_id(),
            segment.trace_id(),
            segment.service,
            segment.instance,
            if segment.size_limited {
                " size-limited"
            } else {
                ""
            },
        ));
        let clock = crate::time::Clock::now();
        for span in &segment.spans {
            let id = span.id;
            let kind = match span.kind {
                SpanKind::Entry => "Entry",
                SpanKind::Exit => "Exit",
                SpanKind::Local => "Local",
            };
            out.push_str(&format!(
                "[skytrace]   #{id} <- #{} {kind} {:?} {}ms{}{}",
                span.parent,
                span.operation,
                clock.millis(span.end.unwrap_or(span.start)) - clock.millis(span.start),
                if span.peer.is_empty() {
                    String::new()
                } else {
                    format!(" peer={}", span.peer)
                },
                if span.is_error { " ERROR" } else { "" },
            ));
            let encoded = span.encoded_tags.pairs();
            for (k, v) in span.tags.iter().map(|(k, v)| (&**k, &**v)).chain(encoded) {
                out.push_str(&format!(" {k}={v}"));
            }
            out.push('\n');
        }
        // A closed stderr must not hurt the service.
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> ReporterStats {
        ReporterStats {
            sent: self.sent.load(Ordering::Relaxed),
            connected: true,
            ..ReporterStats::default()
        }
    }
}

/// Drops every segment (counted as sent): for measuring the instrumentation alone.
#[derive(Debug, Default)]
pub struct DiscardReporter {
    sent: AtomicU64,
}

impl DiscardReporter {
    /// A reporter that keeps nothing.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Reporter for DiscardReporter {
    fn report(&self, segment: Segment) {
        // The finishing thread keeps the emptied span list for its next segment, as it does
        // when the gRPC reporter encodes there: a discarding reporter measures the recording
        // alone, not one `malloc` and `free` more than the agent really costs.
        crate::spare_spans::recycle(segment.spans);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> ReporterStats {
        ReporterStats {
            sent: self.sent.load(Ordering::Relaxed),
            connected: true,
            ..ReporterStats::default()
        }
    }
}
