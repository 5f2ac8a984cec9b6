//! The sampler's tagger: inside the `SIGPROF` handler, which trace segment and span the
//! interrupted thread runs. It reads the thread's context through `current::view_for_signal`
//! (no reference to anything, only an address) and copies the segment's id through the kernel
//! (`skytrace_sampler::read_memory`), so a handler that interrupted the context halfway through
//! a change reads garbage at worst, never faults; garbage is refused here (an id made here is
//! printable ASCII of at most 80 bytes) or later (only ids of finished segments are labelled).

use super::current;
use crate::id::Id;

/// Makes [`tag`] the sampler's tagger (once per process; a function pointer stored, nothing
/// armed: the sampler calls it only while a profiling task samples).
pub(crate) fn install() {
    let _ = skytrace_sampler::set_tagger(tag);
}

/// Room for an [`Id`]'s raw bytes.
const RAW_ROOM: usize = 128;

/// Runs in the signal handler: no allocation, no lock, no panic.
fn tag(out: &mut skytrace_sampler::Tag) {
    let Some(view) = current::view_for_signal() else {
        return;
    };
    let raw = Id::RAW;
    let mut room = [0u8; RAW_ROOM];
    let Some(bytes) = room.get_mut(..raw.size) else {
        return;
    };
    if skytrace_sampler::read_memory(view.segment_id_at, bytes) != raw.size {
        return;
    }
    let Some(len) = bytes.get(raw.len).map(|&l| usize::from(l)) else {
        return;
    };
    if len == 0 || len > raw.capacity {
        return;
    }
    let Some(text) = bytes.get(raw.text..raw.text + len) else {
        return;
    };
    if text.iter().all(u8::is_ascii_graphic) {
        out.set(text, view.span_id);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Span, Tracer};

    #[test]
    fn tags_a_thread_with_its_current_segment_and_span() {
        let config = Config::builder().service_name("svc").build().unwrap();
        let keep = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Keep(std::sync::Arc<std::sync::Mutex<Vec<crate::Segment>>>);
        impl crate::reporter::Reporter for Keep {
            fn report(&self, segment: crate::Segment) {
                self.0.lock().unwrap().push(segment);
            }
        }
        let tracer = Tracer::new(&config, Keep(keep.clone()));
        let mut outside = skytrace_sampler::Tag::default();
        super::tag(&mut outside);
        assert!(outside.text().is_empty(), "no segment current");
        let (inside, local) = {
            let entry = tracer.entry_span("GET:/slow", &http::HeaderMap::new());
            let _in = entry.enter();
            let mut inside = skytrace_sampler::Tag::default();
            super::tag(&mut inside);
            let child = crate::LocalSpan::enter("child");
            let mut local = skytrace_sampler::Tag::default();
            super::tag(&mut local);
            drop(child);
            (inside, local)
        };
        let segments = keep.lock().unwrap();
        let id = segments[0].segment_id();
        assert_eq!(std::str::from_utf8(inside.text()).unwrap(), id);
        assert_eq!(inside.span_id(), 0);
        assert_eq!(std::str::from_utf8(local.text()).unwrap(), id);
        assert_eq!(local.span_id(), 1);
        let _ = Span::local("unused");
    }
}
