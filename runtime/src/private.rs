//! Support for the attribute macros' expansions. Not a public API: it may change in any release.

use std::borrow::Cow;
use std::fmt::Display;

use crate::context::{Handle, peek_current, with_current_record};
use crate::span::Span;

/// Marks the current span as failed and logs `error`'s message (`err` on async fns, where the
/// span itself lives inside the future).
pub fn record_error(error: &dyn Display) {
    if peek_current(|cur| matches!(cur, Handle::Recording { .. })) != Some(true) {
        return;
    }
    // Formatted before looking at the record: `Display` is user code.
    let log = crate::span::error_log(crate::time::Stamp::now(), error);
    with_current_record(|record| {
        record.is_error = true;
        record.logs.push(log);
    });
}

/// [`Span::exit`] with a peer formatted only when a span needs it: with no active trace it
/// allocates nothing.
pub fn exit(operation_name: impl Into<Cow<'static, str>>, peer: &dyn Display) -> Span {
    // Any current trace (recording or not) keeps the peer; formatting runs user code, so it
    // happens here and not while the current span is being looked at.
    if peek_current(|_| ()).is_none() {
        return Span::noop();
    }
    Span::exit(operation_name, peer.to_string())
}
