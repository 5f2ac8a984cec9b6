//! [`Handle`]: what a span holds of its trace, and what is current on a thread.

use std::sync::Arc;

use super::recording::ActiveSegment;
use super::unsampled::UnsampledContext;
use crate::segment::Text;

/// A recording span of a segment, or a trace that is not sampled.
#[derive(Clone)]
pub(crate) enum Handle {
    Recording {
        segment: Arc<ActiveSegment>,
        span_id: i32,
    },
    /// The trace is not recorded here, but it is still propagated (sample flag 0), so an exit
    /// span remembers the peer it dials.
    Unsampled {
        context: Arc<UnsampledContext>,
        peer: Option<Text>,
    },
}

/// What tells one handle from another without touching reference counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandleId {
    Span { segment: usize, span_id: i32 },
    Unsampled { context: usize, exit: bool },
}

impl HandleId {
    /// The address of the segment or context: the same for every span of one segment.
    pub(crate) fn context(self) -> usize {
        match self {
            HandleId::Span { segment, .. } => segment,
            HandleId::Unsampled { context, .. } => context,
        }
    }
}

impl Handle {
    pub(crate) fn id(&self) -> HandleId {
        match self {
            Handle::Recording { segment, span_id } => HandleId::Span {
                segment: Arc::as_ptr(segment) as usize,
                span_id: *span_id,
            },
            Handle::Unsampled { context, peer } => HandleId::Unsampled {
                context: Arc::as_ptr(context) as usize,
                exit: peer.is_some(),
            },
        }
    }
}

/// Where a recording span's record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordAt {
    /// In its segment (or on its way there).
    Segment,
    /// In the buffer of the thread that started it, at this index, until that thread hands its
    /// buffer to the segment.
    Buffered(usize),
}
