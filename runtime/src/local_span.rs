//! [`LocalSpan`]: the span of a piece of synchronous work, recorded without a lock.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::context::current::{self, OpenLocalSpan};
use crate::edit::{Edit, error_log, fields_log, panic_log};
use crate::segment::SpanLayer;
use crate::time::Stamp;

/// A local span for synchronous work on this thread: a child of the current span, current
/// itself until dropped, and ended then (marked as failed if dropped by a panic). It is what
/// `#[trace]` makes on a plain `fn`, and the cheapest span there is: its record stays on this
/// thread until the enclosing [`crate::Span`] stops being current here (a guard dropped, a poll
/// returned), then moves to the segment with its siblings in one go.
///
/// Outside any trace, in a trace that is not sampled or beyond the span limit it records
/// nothing and costs a few nanoseconds.
///
/// It cannot leave its thread, and must not be held across an `.await` (use
/// [`crate::Instrument::in_span`] with a [`crate::Span`] for async work).
///
/// ```
/// use skytrace::{LocalSpan, SpanLayer};
///
/// fn parse(input: &str) -> usize {
///     let span = LocalSpan::enter("parse");
///     span.add_tag("input.len", input.len().to_string());
///     input.split(',').count()
/// }
/// assert_eq!(parse("a,b"), 2); // no trace is active: nothing was recorded
/// ```
#[must_use = "a local span ends as soon as it is dropped"]
pub struct LocalSpan {
    open: Option<OpenLocalSpan>,
    /// The span restores a thread-local when dropped: it must stay on its thread.
    _not_send: PhantomData<*const ()>,
}

impl LocalSpan {
    /// Starts a local span named `operation_name` under the current span and makes it current.
    #[inline]
    pub fn enter(operation_name: impl Into<Cow<'static, str>>) -> LocalSpan {
        LocalSpan {
            open: current::start_local(operation_name.into()),
            _not_send: PhantomData,
        }
    }

    /// Whether this span records. Skip work that only feeds it (formatting tags) when it does not.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.open.is_some()
    }

    fn edit(&self, edit: Edit) {
        if let Some(open) = &self.open {
            current::edit_local(open, edit);
        }
    }

    /// Sets the layer OAP analyses the span by.
    pub fn set_layer(&self, layer: SpanLayer) {
        self.edit(Edit::Layer(layer));
    }

    /// Sets the component id (see [`crate::component`]).
    pub fn set_component(&self, component_id: i32) {
        self.edit(Edit::Component(component_id));
    }

    /// Renames the span.
    pub fn set_operation_name(&self, operation_name: impl Into<Cow<'static, str>>) {
        if self.is_recording() {
            self.edit(Edit::Operation(operation_name.into()));
        }
    }

    /// Adds a tag.
    pub fn add_tag(&self, key: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) {
        if self.is_recording() {
            self.edit(Edit::Tag(key.into(), value.into()));
        }
    }

    /// Adds a timestamped log of key/value fields.
    pub fn log<K, V>(&self, fields: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Cow<'static, str>>,
        V: Into<Cow<'static, str>>,
    {
        if self.is_recording() {
            self.edit(Edit::Log(fields_log(fields)));
        }
    }

    /// Marks the span as failed (or not).
    pub fn set_error(&self, is_error: bool) {
        self.edit(Edit::Error(is_error));
    }

    /// Marks the span as failed and logs the error's message (`event=error`, `message=…`).
    pub fn record_error(&self, error: &dyn fmt::Display) {
        if self.is_recording() {
            self.edit(Edit::Failed(error_log(Stamp::now(), error)));
        }
    }

    /// Asks OAP not to analyse this span (it is still stored and shown).
    pub fn set_skip_analysis(&self) {
        self.edit(Edit::SkipAnalysis);
    }
}

impl Drop for LocalSpan {
    #[inline]
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            if std::thread::panicking() {
                current::end_local_failed(open, Edit::Failed(panic_log(Stamp::now())));
            } else {
                current::end_local(open);
            }
        }
    }
}
impl fmt::Debug for LocalSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSpan")
            .field("recording", &self.is_recording())
            .finish()
    }
}
