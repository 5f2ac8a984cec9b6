//! Support for the attribute macros' expansions. Not a public API: it may change in any release.

use std::borrow::Cow;
use std::fmt::Display;

use crate::context::current::{self, Current};
use crate::edit::{Edit, error_log};
use crate::span::Span;
use crate::time::Stamp;

/// Marks the current span as failed and logs `error`'s message (`err` on async fns, where the
/// span itself lives inside the future).
pub fn record_error(error: &dyn Display) {
    if current::current() != Current::Recording {
        return;
    }
    // Formatted before looking at the record: `Display` is user code.
    current::edit_current(Edit::Failed(error_log(Stamp::now(), error)));
}

/// What `err` looks at: the fn's `Result`. A trait rather than a `match`, so that `err` on a fn
/// returning anything else is an error at `err` that says so, not a type mismatch.
#[diagnostic::on_unimplemented(
    message = "`#[trace(err)]` needs a fn that returns a `Result`; this one returns `{Self}`",
    label = "`err` records the `Err` of a `Result`",
    note = "remove `err`, or return a `Result` (an alias such as `io::Result<T>` is fine)"
)]
pub trait ErrResult {
    /// The error, if the call failed.
    fn failure(&self) -> Option<&dyn Display>;
}

impl<T, E: Display> ErrResult for Result<T, E> {
    #[inline(always)]
    fn failure(&self) -> Option<&dyn Display> {
        match self {
            Ok(_) => None,
            Err(error) => Some(error),
        }
    }
}

/// `err`: marks the current span as failed and logs the error when `ret` is an `Err`.
#[inline(always)]
pub fn record_err<R: ErrResult>(ret: &R) {
    if let Some(error) = ret.failure() {
        record_error(error);
    }
}

/// [`Span::exit`] with a peer formatted only when a span needs it: with no active trace it
/// allocates nothing.
pub fn exit(operation_name: impl Into<Cow<'static, str>>, peer: &dyn Display) -> Span {
    // Any current trace (recording or not) keeps the peer; formatting runs user code, so it
    // happens here and not while the current span is being looked at.
    if current::current() == Current::None {
        return Span::noop();
    }
    Span::exit(operation_name, peer.to_string())
}
