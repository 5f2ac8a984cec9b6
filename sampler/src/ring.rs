//! The samples taken and not yet drained: a fixed array of slots, allocated when the session
//! starts, written by the signal handler and read by [`crate::Session::drain`] with atomics
//! only. A slot is free, being written, or ready; a handler that finds no free slot drops its
//! sample (counted), it never waits.

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// The most frames kept of one stack (innermost first); deeper stacks lose their outermost.
pub const MAX_FRAMES: usize = 128;

/// The most bytes of a thread tag's text (a segment id: `skytrace`'s are at most 80).
pub const MAX_TAG: usize = 96;

const TAG_WORDS: usize = MAX_TAG / 8;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// How many slots a handler tries before dropping its sample.
const PROBES: usize = 4;

pub(crate) struct Slot {
    state: AtomicU8,
    depth: AtomicU32,
    truncated: AtomicU8,
    thread: AtomicU32,
    tag_len: AtomicU32,
    span_id: AtomicI32,
    tag: [AtomicU64; TAG_WORDS],
    frames: [AtomicU64; MAX_FRAMES],
}

impl Slot {
    fn new() -> Self {
        Slot {
            state: AtomicU8::new(FREE),
            depth: AtomicU32::new(0),
            truncated: AtomicU8::new(0),
            thread: AtomicU32::new(0),
            tag_len: AtomicU32::new(0),
            span_id: AtomicI32::new(0),
            tag: std::array::from_fn(|_| AtomicU64::new(0)),
            frames: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

pub(crate) struct Ring {
    slots: Box<[Slot]>,
    next: AtomicU32,
}

impl Ring {
    pub(crate) fn new(len: usize) -> Self {
        Ring {
            slots: (0..len.max(1)).map(|_| Slot::new()).collect(),
            next: AtomicU32::new(0),
        }
    }

    /// A free slot, now being written; `None` when the drainer is behind.
    pub(crate) fn claim(&self) -> Option<Writer<'_>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        for probe in 0..PROBES {
            let slot = self
                .slots
                .get(start.wrapping_add(probe) % self.slots.len())?;
            if slot
                .state
                .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Writer { slot, depth: 0 });
            }
        }
        None
    }

    /// Hands every ready sample to `f`, then frees its slot.
    pub(crate) fn drain(&self, mut f: impl FnMut(&Sample)) -> usize {
        let mut sample = Sample::empty();
        let mut drained = 0;
        for slot in self.slots.iter() {
            if slot.state.load(Ordering::Acquire) != READY {
                continue;
            }
            sample.read(slot);
            slot.state.store(FREE, Ordering::Release);
            f(&sample);
            drained += 1;
        }
        drained
    }
}

/// A claimed slot: frames and tag written, then published (or freed, if dropped unpublished).
pub(crate) struct Writer<'a> {
    slot: &'a Slot,
    depth: usize,
}

impl Writer<'_> {
    /// Adds the next frame outwards; `false` once the slot is full.
    pub(crate) fn push_frame(&mut self, address: u64) -> bool {
        match self.slot.frames.get(self.depth) {
            Some(frame) => {
                frame.store(address, Ordering::Relaxed);
                self.depth += 1;
                true
            }
            None => {
                self.slot.truncated.store(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Marks the stack as cut short (unwinding stopped before the outermost frame).
    pub(crate) fn truncated(&mut self) {
        self.slot.truncated.store(1, Ordering::Relaxed);
    }

    pub(crate) fn publish(self, thread: u32, tag: &crate::Tag) {
        let slot = self.slot;
        slot.depth.store(self.depth as u32, Ordering::Relaxed);
        slot.thread.store(thread, Ordering::Relaxed);
        let text = tag.text();
        for (i, word) in slot.tag.iter().enumerate() {
            let mut bytes = [0u8; 8];
            for (j, b) in bytes.iter_mut().enumerate() {
                *b = text.get(i * 8 + j).copied().unwrap_or(0);
            }
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        slot.tag_len.store(text.len() as u32, Ordering::Relaxed);
        slot.span_id.store(tag.span_id(), Ordering::Relaxed);
        slot.state.store(READY, Ordering::Release);
        std::mem::forget(self);
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Not published: give the slot back.
        self.slot.truncated.store(0, Ordering::Relaxed);
        self.slot.state.store(FREE, Ordering::Release);
    }
}

/// One sample, as drained: the stack (innermost frame first, each an address inside the
/// instruction that was running or making the call), the thread, and the thread's tag.
#[derive(Clone)]
pub struct Sample {
    frames: [u64; MAX_FRAMES],
    depth: usize,
    truncated: bool,
    thread: u32,
    tag: [u8; MAX_TAG],
    tag_len: usize,
    span_id: i32,
}

impl Sample {
    fn empty() -> Self {
        Sample {
            frames: [0; MAX_FRAMES],
            depth: 0,
            truncated: false,
            thread: 0,
            tag: [0; MAX_TAG],
            tag_len: 0,
            span_id: 0,
        }
    }

    fn read(&mut self, slot: &Slot) {
        self.depth = (slot.depth.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
        for (out, frame) in self.frames.iter_mut().zip(&slot.frames).take(self.depth) {
            *out = frame.load(Ordering::Relaxed);
        }
        self.truncated = slot.truncated.swap(0, Ordering::Relaxed) != 0;
        self.thread = slot.thread.load(Ordering::Relaxed);
        self.tag_len = (slot.tag_len.load(Ordering::Relaxed) as usize).min(MAX_TAG);
        for (i, word) in slot.tag.iter().enumerate() {
            let bytes = word.load(Ordering::Relaxed).to_le_bytes();
            self.tag[i * 8..i * 8 + 8].copy_from_slice(&bytes);
        }
        self.span_id = slot.span_id.load(Ordering::Relaxed);
    }

    /// The stack, innermost frame first: addresses to symbolise (already inside the call
    /// instruction for callers, so no `- 1` is needed).
    pub fn frames(&self) -> &[u64] {
        &self.frames[..self.depth]
    }

    /// Whether unwinding stopped before the outermost frame (unknown code without unwind
    /// tables, a stack deeper than [`MAX_FRAMES`] or than the part copied).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kernel's id of the thread that was sampled.
    pub fn thread(&self) -> u32 {
        self.thread
    }

    /// The thread's tag when it was sampled (see [`crate::set_tagger`]): the text (a segment
    /// id) and a number (a span id); `None` when the thread ran nothing tagged.
    pub fn tag(&self) -> Option<(&[u8], i32)> {
        (self.tag_len > 0).then(|| (&self.tag[..self.tag_len], self.span_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_go_round_and_a_full_ring_drops() {
        let ring = Ring::new(2);
        let mut tag = crate::Tag::default();
        tag.set(b"segment-1", 3);
        for address in [10, 20] {
            let mut writer = ring.claim().expect("a free slot");
            assert!(writer.push_frame(address));
            writer.publish(7, &tag);
        }
        assert!(ring.claim().is_none(), "both slots are ready, none free");
        let mut seen = Vec::new();
        assert_eq!(
            ring.drain(|s| seen.push((
                s.frames().to_vec(),
                s.thread(),
                s.tag().map(|(t, id)| (t.to_vec(), id))
            ))),
            2
        );
        seen.sort();
        assert_eq!(seen[0], (vec![10], 7, Some((b"segment-1".to_vec(), 3))));
        // Freed by the drain; a writer dropped without publishing frees its slot too.
        drop(ring.claim().expect("free again"));
        assert_eq!(ring.drain(|_| ()), 0);
    }

    #[test]
    fn a_deep_stack_is_cut_at_max_frames() {
        let ring = Ring::new(1);
        let mut writer = ring.claim().unwrap();
        for address in 0..MAX_FRAMES as u64 {
            assert!(writer.push_frame(address + 1));
        }
        assert!(!writer.push_frame(999));
        writer.publish(1, &crate::Tag::default());
        ring.drain(|s| {
            assert_eq!(s.frames().len(), MAX_FRAMES);
            assert!(s.truncated());
            assert!(s.tag().is_none());
        });
    }
}
