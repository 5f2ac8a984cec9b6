//! Writing the headers a call out of the service carries.

use super::handle::Handle;
use crate::propagation::{Injector, SW8, SW8_CORRELATION, SW8_X};

/// Writes the headers of the exit span `handle` onto `carrier`: made first, then written, so
/// that the carrier (user code) runs with no lock held and the thread's context untouched.
pub(crate) fn write_headers(handle: &Handle, carrier: &mut (impl Injector + ?Sized)) -> bool {
    match handle {
        Handle::Recording { segment, span_id } => {
            let Some(headers) = segment.outgoing_headers(*span_id) else {
                return false;
            };
            carrier.set(SW8, headers.sw8);
            if let Some(correlation) = headers.correlation {
                carrier.set(SW8_CORRELATION, correlation);
            }
            if let Some(extension) = headers.extension {
                carrier.set(SW8_X, extension);
            }
            true
        }
        Handle::Unsampled {
            context,
            peer: Some(peer),
        } => match context.sw8(peer) {
            Some(sw8) => {
                carrier.set(SW8, sw8);
                true
            }
            None => false,
        },
        Handle::Unsampled { peer: None, .. } => false,
    }
}
