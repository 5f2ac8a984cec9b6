//! Support for the attribute macros' expansions. Not a public API: it may change in any release.

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;

use crate::context::{Handle, with_current};
use crate::segment::SpanKind;
use crate::span::Span;

/// Marks the current span as failed and logs `error`'s message (`err` on async fns, where the
/// span itself lives inside the future).
pub fn record_error(error: &dyn Display) {
    with_current(|cur| {
        if let Handle::Recording { segment, span_id } = cur {
            crate::span::record_error_on(segment, *span_id, error);
        }
    });
}

/// [`Span::exit`] with a peer formatted only when a span needs it: with no active trace it
/// allocates nothing.
pub fn exit(operation_name: impl Into<Cow<'static, str>>, peer: &dyn Display) -> Span {
    with_current(|cur| match cur {
        Handle::Recording { segment, span_id } => segment.start_span(
            *span_id,
            SpanKind::Exit,
            operation_name.into(),
            Cow::Owned(peer.to_string()),
        ),
        Handle::Unsampled { context, .. } => Span::from_handle(Handle::Unsampled {
            context: Arc::clone(context),
            peer: Some(Cow::Owned(peer.to_string())),
        }),
    })
    .unwrap_or(Span::noop())
}
