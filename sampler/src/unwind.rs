//! Walking the interrupted thread's stack inside the signal handler, with framehop over the
//! modules' `.eh_frame` (copied when the session starts) and nothing allocated: each handler
//! borrows a [`Workspace`] (framehop's cache, whose DWARF evaluation storage is reserved up
//! front, and a buffer the stack is copied into through the kernel).
//!
//! Why `.eh_frame` and not frame pointers: Rust builds in release mode, and the standard
//! library as shipped, omit frame pointers, so a frame-pointer walk stops (or goes astray) at
//! the first such function; `.eh_frame` is in every Rust binary on Linux (panics unwind with
//! it) and describes every instruction, prologues and epilogues included. Its limits: code
//! without unwind tables (hand-written assembly, some JIT code) falls back to the frame
//! pointer for that frame; a library loaded after the session started is unknown to it (its
//! frames end the walk); a stack is copied at most [`STACK_WINDOW`] bytes deep and kept to
//! [`crate::ring::MAX_FRAMES`] frames.

use framehop::{
    CacheNative, ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind,
    UnwindRegsNative, Unwinder as _, UnwinderNative,
};

use crate::os::{self, ModuleImage};
use crate::ring::Writer;
use crate::sample::Regs;

/// The most bytes of a stack copied, from the stack pointer up. Deeper frames are cut.
pub const STACK_WINDOW: usize = 256 * 1024;

/// Copied a page at a time as the walk reaches further up, so a shallow stack costs one read.
const PAGE: usize = 4096;

pub(crate) type NativeUnwinder = UnwinderNative<Vec<u8>, MustNotAllocateDuringUnwind>;

/// An unwinder knowing `modules`.
pub(crate) fn unwinder(modules: &[ModuleImage]) -> NativeUnwinder {
    let mut unwinder = NativeUnwinder::new();
    for image in modules {
        let (Some((hdr_svma, hdr)), Some((eh_frame_svma, eh_frame))) =
            (image.eh_frame_hdr.clone(), image.eh_frame.clone())
        else {
            continue;
        };
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: image.text_svma.clone(),
            eh_frame_svma: Some(eh_frame_svma),
            eh_frame: Some(eh_frame),
            eh_frame_hdr_svma: Some(hdr_svma),
            eh_frame_hdr: Some(hdr),
            ..Default::default()
        };
        unwinder.add_module(Module::new(
            image.path.clone(),
            image.avma.clone(),
            image.bias,
            info,
        ));
    }
    unwinder
}

/// What one handler needs for itself while it walks a stack.
pub(crate) struct Workspace {
    cache: CacheNative<MustNotAllocateDuringUnwind>,
    stack: StackCopy,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        Workspace {
            cache: CacheNative::new_in(),
            stack: StackCopy {
                bytes: vec![0; STACK_WINDOW],
                base: 0,
                copied: 0,
                exhausted: false,
            },
        }
    }

    /// Walks the stack from `regs` into `out`, innermost frame first.
    pub(crate) fn walk(&mut self, unwinder: &NativeUnwinder, regs: Regs, out: &mut Writer<'_>) {
        let Workspace { cache, stack } = self;
        stack.reset(regs.sp);
        let mut read = |address: u64| stack.read_u64(address);
        #[cfg(target_arch = "aarch64")]
        let start = UnwindRegsNative::new(regs.lr, regs.sp, regs.fp);
        #[cfg(not(target_arch = "aarch64"))]
        let start = UnwindRegsNative::new(regs.pc, regs.sp, regs.fp);
        let mut frames = unwinder.iter_frames(regs.pc, start, cache, &mut read);
        loop {
            match frames.next() {
                Ok(Some(frame)) => {
                    if !out.push_frame(lookup_address(frame)) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    out.truncated();
                    return;
                }
            }
        }
    }
}

/// An address inside the instruction the frame is at: the one running, or the call (one byte
/// before the return address), so that a call at a function's very end symbolises as it.
fn lookup_address(frame: FrameAddress) -> u64 {
    frame.address_for_lookup()
}

/// The interrupted thread's stack, copied from its stack pointer upwards as far as the walk
/// needs it.
struct StackCopy {
    bytes: Vec<u8>,
    base: u64,
    copied: usize,
    exhausted: bool,
}

impl StackCopy {
    fn reset(&mut self, sp: u64) {
        self.base = sp;
        self.copied = 0;
        self.exhausted = false;
    }

    fn read_u64(&mut self, address: u64) -> Result<u64, ()> {
        let offset = usize::try_from(address.checked_sub(self.base).ok_or(())?).map_err(|_| ())?;
        let end = offset.checked_add(8).ok_or(())?;
        if end > self.bytes.len() {
            return Err(());
        }
        while self.copied < end {
            if self.exhausted {
                return Err(());
            }
            // Up to the next page boundary of the stack's addresses, at least one page.
            let at = self.base.wrapping_add(self.copied as u64);
            let to_boundary = PAGE - (at as usize % PAGE);
            let want = (end - self.copied)
                .max(to_boundary)
                .min(self.bytes.len() - self.copied);
            let chunk = self
                .bytes
                .get_mut(self.copied..self.copied + want)
                .ok_or(())?;
            let got = os::read_memory(at as usize, chunk);
            if got < want {
                self.exhausted = true;
            }
            self.copied += got;
        }
        let word = self.bytes.get(offset..end).ok_or(())?;
        Ok(u64::from_ne_bytes(word.try_into().map_err(|_| ())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_copy_reads_what_is_there_and_stops_where_memory_ends() {
        let words: Vec<u64> = (0..1024).collect();
        let base = words.as_ptr() as u64;
        let mut stack = Workspace::new().stack;
        stack.reset(base);
        assert_eq!(stack.read_u64(base + 8 * 700), Ok(700));
        assert_eq!(stack.read_u64(base + 8), Ok(1));
        assert_eq!(stack.read_u64(base - 8), Err(()));
        assert_eq!(stack.read_u64(base + STACK_WINDOW as u64), Err(()));
        // Nothing is mapped at the bottom of the address space.
        stack.reset(64);
        assert_eq!(stack.read_u64(64), Err(()));
    }
}
