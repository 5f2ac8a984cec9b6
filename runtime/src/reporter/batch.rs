//! The segments on their way to the backend, as the queue holds them: each encoded segment
//! framed as gRPC frames a message (an uncompressed flag, its length as a big-endian `u32`, its
//! bytes), one after another in one buffer.
//!
//! A service's thread encodes its segment beside the queue (in a buffer of its own, `wire`) and
//! copies the frame in under the queue's lock; what the reporter's thread takes from the queue
//! is then a `collect` request's body already. Before, each segment travelled in a buffer of its
//! own: the reporter copied it into the body and handed the buffer back to a pool the service's
//! threads took theirs from, ≈ 160 instructions a segment on the reporter's thread, and a
//! batch larger than the pool sent its buffers through `malloc`'s slow path for memory freed by
//! another thread.
//!
//! A segment of more than `wire::INLINE_SPANS` spans is queued whole and encoded on the
//! reporter's thread; one whose message is over the transport's limit as a note of its size,
//! which the reporter counts as dropped and says.

use bytes::Bytes;

use crate::segment::Segment;

/// The length of a frame's header: the compression flag and the message's length.
pub(crate) const HEADER: usize = 5;

/// The header of a frame of a message of `len` bytes.
pub(crate) fn header(len: usize) -> [u8; HEADER] {
    // A message is at most the transport's limit (`SW_AGENT_MAX_MESSAGE_SIZE`, far below 4 GiB):
    // larger ones are queued as notes of their size, never framed.
    let [a, b, c, d] = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [0, a, b, c, d]
}

/// A segment whose message is over the transport's limit, even with its strings cut: dropped
/// alone rather than failing the batch it would travel in.
#[derive(Debug)]
pub(crate) struct TooLarge {
    /// The message's length, in bytes.
    pub(crate) len: usize,
    pub(crate) trace_id: String,
}

/// Segments queued: framed, whole, or too large (see the module's documentation).
#[derive(Default)]
pub(crate) struct Batch {
    framed: Vec<u8>,
    /// Frames in `framed`.
    frames: usize,
    whole: Vec<Segment>,
    too_large: Vec<TooLarge>,
}

impl Batch {
    /// An empty batch with room for `bytes` of frames.
    pub(crate) fn with_capacity(bytes: usize) -> Batch {
        Batch {
            framed: Vec::with_capacity(bytes),
            ..Batch::default()
        }
    }

    /// Adds a frame: [`header`] and the message after it.
    #[inline]
    pub(crate) fn push_frame(&mut self, frame: &[u8]) {
        self.framed.extend_from_slice(frame);
        self.frames += 1;
    }

    /// Frames `message` and adds it.
    pub(crate) fn push_message(&mut self, message: &[u8]) {
        self.framed.reserve(HEADER + message.len());
        self.framed.extend_from_slice(&header(message.len()));
        self.framed.extend_from_slice(message);
        self.frames += 1;
    }

    /// Adds a segment to encode on the reporter's thread.
    pub(crate) fn push_whole(&mut self, segment: Segment) {
        self.whole.push(segment);
    }

    /// Adds the note of a segment too large to send.
    pub(crate) fn push_too_large(&mut self, too_large: TooLarge) {
        self.too_large.push(too_large);
    }

    /// The segments queued whole, taken out.
    pub(crate) fn take_whole(&mut self) -> Vec<Segment> {
        std::mem::take(&mut self.whole)
    }

    /// The notes of segments too large to send, taken out.
    pub(crate) fn take_too_large(&mut self) -> Vec<TooLarge> {
        std::mem::take(&mut self.too_large)
    }

    /// Whether nothing is queued: no frame, no segment whole, no note.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames == 0 && self.whole.is_empty() && self.too_large.is_empty()
    }

    /// Segments framed: those that will be sent.
    pub(crate) fn frames(&self) -> usize {
        self.frames
    }

    /// The bytes of the frames.
    pub(crate) fn framed_len(&self) -> usize {
        self.framed.len()
    }

    /// Each framed segment's message (its `SegmentObject`), in order.
    #[cfg_attr(not(any(feature = "kafka", feature = "profiling")), allow(dead_code))]
    pub(crate) fn messages(&self) -> Messages<'_> {
        Messages(&self.framed)
    }

    /// The frames as a `collect` request's body.
    pub(crate) fn into_body(self) -> Bytes {
        Bytes::from(self.framed)
    }

    /// The first `n` items (fewer than [`List::len`](super::queue::List::len)) taken out, the
    /// others left: frames first, then segments whole, then notes. The frames left are moved to
    /// the front of the buffer (a backlog taken by the reporter's thread in batches: at most the
    /// queue's bound in all, on that thread).
    pub(crate) fn split_front(&mut self, n: usize) -> Batch {
        let frames = n.min(self.frames);
        let rest = self.framed.split_off(self.offset_of_frame(frames));
        let mut front = Batch {
            framed: std::mem::replace(&mut self.framed, rest),
            frames,
            ..Batch::default()
        };
        self.frames -= frames;
        let whole = (n - frames).min(self.whole.len());
        front.whole = self.whole.drain(..whole).collect();
        let too_large = (n - frames - whole).min(self.too_large.len());
        front.too_large = self.too_large.drain(..too_large).collect();
        front
    }

    /// Where the `n`-th frame starts (the end, past the last).
    fn offset_of_frame(&self, n: usize) -> usize {
        let mut at = 0;
        for _ in 0..n {
            match frame_at(&self.framed[at..]) {
                Some((_, next)) => at += next,
                None => return self.framed.len(),
            }
        }
        at
    }
}

impl super::queue::List for Batch {
    fn len(&self) -> usize {
        self.frames + self.whole.len() + self.too_large.len()
    }
}

/// The message of the frame at the start of `bytes`, and the frame's length.
fn frame_at(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let (head, rest) = bytes.split_first_chunk::<HEADER>()?;
    let len = usize::try_from(u32::from_be_bytes([head[1], head[2], head[3], head[4]])).ok()?;
    Some((rest.get(..len)?, HEADER + len))
}

/// The messages of a [`Batch`]'s frames.
#[cfg_attr(not(any(feature = "kafka", feature = "profiling")), allow(dead_code))]
pub(crate) struct Messages<'a>(&'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (message, len) = frame_at(self.0)?;
        self.0 = &self.0[len..];
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::queue::List;

    #[test]
    fn segments_are_framed_as_grpc_messages_and_read_back() {
        let mut batch = Batch::default();
        batch.push_message(&[1, 2, 3]);
        batch.push_message(&[]);
        let mut frame = header(2).to_vec();
        frame.extend_from_slice(&[4, 5]);
        batch.push_frame(&frame);
        assert_eq!((batch.frames(), batch.len()), (3, 3));
        assert_eq!(
            batch.messages().collect::<Vec<_>>(),
            [&[1, 2, 3][..], &[], &[4, 5]]
        );
        assert_eq!(
            &batch.into_body()[..],
            &[0, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 5]
        );
    }

    #[test]
    fn a_batch_splits_at_a_frame_and_keeps_its_other_items() {
        let mut batch = Batch::default();
        for i in 0..5u8 {
            batch.push_message(&vec![i; usize::from(i)]);
        }
        batch.push_too_large(TooLarge {
            len: 9,
            trace_id: "t".into(),
        });
        let front = batch.split_front(3);
        assert_eq!(
            front.messages().collect::<Vec<_>>(),
            [&[][..], &[1], &[2, 2]]
        );
        assert_eq!(
            batch.messages().collect::<Vec<_>>(),
            [&[3, 3, 3][..], &[4; 4]]
        );
        assert_eq!((batch.frames(), batch.len()), (2, 3));
        // Past the frames: the other items, in order.
        let rest = batch.split_front(3);
        assert_eq!((rest.frames(), rest.len(), batch.len()), (2, 3, 0));
    }
}
