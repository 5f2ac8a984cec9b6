//! Everything that touches the operating system or raw memory: the crate's only `unsafe` code.
//!
//! - the `SIGPROF` handler, its installation and the restoring of what was there before;
//! - the process CPU timer (`setitimer(ITIMER_PROF)`) that raises it;
//! - handing the running session to the handler and taking it back once no handler uses it;
//! - [`TryCell`]: exclusive access that never waits, for the handler's workspaces;
//! - reading this process's memory through the kernel ([`read_memory`]), which answers an
//!   unmapped address with an error instead of a fault;
//! - the loaded modules and their unwind tables (`dl_iterate_phdr`), copied while the loader
//!   lock is held, so that a library unloaded later leaves nothing dangling.
//!
//! The handler runs on whichever thread the kernel picks, between any two instructions of that
//! thread: it may interrupt `malloc` with the heap's lock held, a `Mutex`, the dynamic loader,
//! a panic unwinding. So it allocates nothing, takes no lock, calls no libgcc unwinder, and
//! touches only memory owned by the session (through atomics or a [`TryCell`]) and memory
//! read through the kernel. The handler's work outside this module is `crate::sample::take`.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::sample::{Regs, Shared};

/// The session the handler records into; null when none runs. Holds one count of an `Arc`.
static SESSION: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

/// Handlers between their first and last instruction, on any thread.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// This process's id, for `process_vm_readv` (set when a session starts).
static PID: AtomicI32 = AtomicI32::new(0);

/// Whether this platform has a sampler.
pub(crate) const SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// The `SIGPROF` disposition found when the session started, to put back when it stops.
pub(crate) struct Previous {
    action: libc::sigaction,
}

/// Makes `shared` the session the handler records into, installs the handler and starts the
/// CPU timer at `period`. Refused while another `SIGPROF` handler or profiling timer is in
/// place (another profiler of the process: two cannot share the signal).
pub(crate) fn start(shared: Arc<Shared>, period: Duration) -> Result<Previous, Error> {
    if !SUPPORTED {
        return Err(Error::Unsupported);
    }
    // SAFETY: `getpid` has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    check_memory_reads()?;
    let previous = current_action()?;
    let handler = previous.sa_sigaction;
    if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
        return Err(Error::Busy("another SIGPROF handler is installed"));
    }
    if timer_armed()? {
        return Err(Error::Busy(
            "the process CPU timer (ITIMER_PROF) is already running",
        ));
    }
    let raw = Arc::into_raw(shared).cast_mut();
    if SESSION
        .compare_exchange(
            std::ptr::null_mut(),
            raw,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_err()
    {
        // SAFETY: `raw` came from `Arc::into_raw` just above and was not published.
        drop(unsafe { Arc::from_raw(raw) });
        return Err(Error::Busy("a sampling session is already running"));
    }
    // SAFETY: a zeroed `sigaction` is a valid value (no handler, no flags, empty mask) that
    // is filled in before use.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler_address();
    // SA_RESTART: a system call the signal interrupts resumes instead of failing with EINTR
    // in the service's code. The handler runs with SIGPROF blocked (no SA_NODEFER), so it
    // never interrupts itself on one thread.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `sa_mask` is a valid `sigset_t` owned here.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is a fully initialised `sigaction` with a handler of the signature
    // SA_SIGINFO requires.
    if unsafe { libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()) } != 0 {
        let err = std::io::Error::last_os_error();
        take_back_session();
        return Err(Error::Os("sigaction(SIGPROF)", err));
    }
    if let Err(err) = set_timer(period) {
        restore(Previous { action: previous });
        return Err(err);
    }
    Ok(Previous { action: previous })
}

/// Stops the timer, waits until no handler uses the session (then drops the handler's count of
/// it), and puts back the `SIGPROF` disposition found at the start.
pub(crate) fn stop(previous: Previous) {
    let _ = set_timer(Duration::ZERO);
    restore(previous);
}

fn restore(previous: Previous) {
    take_back_session();
    // Ignoring SIGPROF discards any still pending (raised before the timer stopped, not yet
    // delivered): restoring the default action with one pending would kill the process.
    // SAFETY: a zeroed `sigaction` with `SIG_IGN` is valid.
    let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
    ignore.sa_sigaction = libc::SIG_IGN;
    // SAFETY: a zeroed `sigaction` is a valid place for the kernel to write the old action.
    let mut found: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to valid `sigaction` values owned here.
    if unsafe { libc::sigaction(libc::SIGPROF, &ignore, &mut found) } != 0 {
        return;
    }
    // Someone replaced our handler while the session ran: theirs stays.
    let back = if found.sa_sigaction == handler_address() {
        &previous.action
    } else {
        &found
    };
    // SAFETY: `back` is a `sigaction` the kernel gave us.
    unsafe { libc::sigaction(libc::SIGPROF, back, std::ptr::null_mut()) };
}

/// Unpublishes the session and waits until no handler is inside it; then drops the handler's
/// count of it.
fn take_back_session() {
    let raw = SESSION.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if raw.is_null() {
        return;
    }
    // A handler that loaded the pointer had announced itself first (both SeqCst), so it is
    // counted here until it is done. Handlers never wait for anything: this ends as soon as
    // the threads running them are scheduled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while IN_HANDLER.load(Ordering::SeqCst) != 0 {
        if Instant::now() > deadline {
            // A thread stopped inside the handler (a debugger): never free what it may read.
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: `raw` came from `Arc::into_raw` in `start`, and no handler can reach it any
    // more (unpublished, none inside): this is the last use of that count.
    drop(unsafe { Arc::from_raw(raw) });
}

/// Our handler, as `sigaction` stores it.
fn handler_address() -> libc::sighandler_t {
    on_sigprof as *const () as libc::sighandler_t
}

/// The `SIGPROF` handler.
extern "C" fn on_sigprof(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let errno = Errno::save();
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let raw = SESSION.load(Ordering::SeqCst);
    if !raw.is_null()
        && let Some(regs) = registers(context)
    {
        // SAFETY: a published session stays alive until `take_back_session` has seen
        // `IN_HANDLER` at zero after unpublishing it; this handler is counted there.
        let shared = unsafe { &*raw };
        crate::sample::take(shared, regs);
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    errno.restore();
}

/// The interrupted thread's registers that unwinding starts from.
fn registers(context: *mut libc::c_void) -> Option<Regs> {
    if context.is_null() {
        return None;
    }
    let context = context.cast::<libc::ucontext_t>();
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        // SAFETY: with SA_SIGINFO the kernel passes a valid `ucontext_t` for the interrupted
        // context, alive while the handler runs; only read.
        let gregs = unsafe { &(*context).uc_mcontext.gregs };
        let reg = |i: libc::c_int| gregs.get(usize::try_from(i).ok()?).map(|&r| r as u64);
        Some(Regs {
            pc: reg(libc::REG_RIP)?,
            sp: reg(libc::REG_RSP)?,
            fp: reg(libc::REG_RBP)?,
            lr: 0,
        })
    }
    #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
    {
        // SAFETY: as above.
        let mcontext = unsafe { &(*context).uc_mcontext };
        Some(Regs {
            pc: mcontext.pc,
            sp: mcontext.sp,
            fp: mcontext.regs[29],
            lr: mcontext.regs[30],
        })
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        let _ = context;
        None
    }
}

/// `errno`, kept across the handler so the interrupted code never sees one of ours.
struct Errno(libc::c_int);

impl Errno {
    fn save() -> Errno {
        // SAFETY: `__errno_location` returns this thread's `errno`, always valid.
        Errno(unsafe { *libc::__errno_location() })
    }

    fn restore(self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

fn current_action() -> Result<libc::sigaction, Error> {
    // SAFETY: a zeroed `sigaction` is a valid place for the kernel to write into.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `action` is valid for writes.
    if unsafe { libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut action) } != 0 {
        return Err(Error::Os(
            "sigaction(SIGPROF)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(action)
}

fn timer_armed() -> Result<bool, Error> {
    // SAFETY: a zeroed `itimerval` is valid for the kernel to write.
    let mut value: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: `value` is valid for writes.
    if unsafe { libc::getitimer(libc::ITIMER_PROF, &mut value) } != 0 {
        return Err(Error::Os("getitimer", std::io::Error::last_os_error()));
    }
    Ok(value.it_value.tv_sec != 0 || value.it_value.tv_usec != 0)
}

/// Arms the process CPU-time timer at `period`, or disarms it with zero. The kernel raises
/// SIGPROF each time the process has used `period` of CPU time, on a thread that is running.
fn set_timer(period: Duration) -> Result<(), Error> {
    let tick = libc::timeval {
        tv_sec: period.as_secs() as libc::time_t,
        tv_usec: period.subsec_micros() as libc::suseconds_t,
    };
    let value = libc::itimerval {
        it_interval: tick,
        it_value: tick,
    };
    // SAFETY: `value` is a valid `itimerval`; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &value, std::ptr::null_mut()) } != 0 {
        return Err(Error::Os(
            "setitimer(ITIMER_PROF)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Copies `out.len()` bytes of this process's memory at `address` into `out` through the
/// kernel (`process_vm_readv`); returns how many were copied, fewer (down to 0) where the
/// range runs into memory that is not mapped or not readable. Never faults, whatever the
/// address, and calls nothing but the system call: usable in a signal handler.
///
/// What is read may be changing under other threads; the bytes are a snapshot of each word
/// at some moment, for the caller to check.
pub fn read_memory(address: usize, out: &mut [u8]) -> usize {
    if out.is_empty() || !SUPPORTED {
        return 0;
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: out.len(),
    };
    let pid = match PID.load(Ordering::Relaxed) {
        // SAFETY: `getpid` has no preconditions.
        0 => unsafe { libc::getpid() },
        pid => pid,
    };
    // SAFETY: `local` describes `out`, valid for writes of its length; the remote range is
    // only read, by the kernel, which checks it and fails instead of faulting.
    let copied = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    usize::try_from(copied).unwrap_or(0)
}

/// Refuses to start where the kernel does not let a process read itself (a seccomp profile
/// without `process_vm_readv`): the handler could then read nothing safely.
fn check_memory_reads() -> Result<(), Error> {
    let probe = [0x5au8; 16];
    let mut copy = [0u8; 16];
    if read_memory(probe.as_ptr() as usize, &mut copy) == copy.len() && copy == probe {
        Ok(())
    } else {
        Err(Error::Os(
            "process_vm_readv on this process",
            std::io::Error::last_os_error(),
        ))
    }
}

/// This thread's kernel id.
pub(crate) fn thread_id() -> u32 {
    // SAFETY: `gettid` has no preconditions and is async-signal-safe (a bare system call).
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    u32::try_from(tid).unwrap_or(0)
}

/// A value one caller at a time may use, taken without waiting: a second caller gets nothing.
/// What the signal handler needs exclusively (an unwinder cache, a stack buffer) is kept so.
pub(crate) struct TryCell<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `busy` gives one thread at a time access to the value, which is `Send`.
unsafe impl<T: Send> Sync for TryCell<T> {}

impl<T> TryCell<T> {
    pub(crate) fn new(value: T) -> Self {
        TryCell {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value unless someone else is using it (then `None`).
    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: `busy` was false and is now ours: no other reference to the value exists
        // until it is released below. `f` cannot reach this cell again: the handler never
        // interrupts itself on one thread (SIGPROF is blocked while it runs).
        let out = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        Some(out)
    }
}

/// A loaded module (the executable, a shared library, the vDSO) and its unwind tables.
#[derive(Clone, Debug)]
pub(crate) struct ModuleImage {
    /// The file's path; empty for the executable (read through `/proc/self/exe`).
    pub(crate) path: String,
    /// What its addresses in the file are offset by in memory.
    pub(crate) bias: u64,
    /// Where it is mapped (its loadable segments, first to last).
    pub(crate) avma: Range<u64>,
    /// Its executable segment, as in the file.
    pub(crate) text_svma: Option<Range<u64>>,
    pub(crate) eh_frame_hdr: Option<(Range<u64>, Vec<u8>)>,
    pub(crate) eh_frame: Option<(Range<u64>, Vec<u8>)>,
}

/// The modules loaded now, with copies of their `.eh_frame_hdr` and `.eh_frame`.
pub(crate) fn loaded_modules() -> Vec<ModuleImage> {
    let mut modules: Vec<ModuleImage> = Vec::new();
    if !SUPPORTED {
        return modules;
    }
    // SAFETY: the callback has the signature `dl_iterate_phdr` calls, and `data` points at
    // `modules`, which outlives the call and is used by nothing else meanwhile.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each_module),
            (&mut modules as *mut Vec<ModuleImage>).cast(),
        );
    }
    modules
}

unsafe extern "C" fn each_module(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `dl_phdr_info` for the duration of the call,
    // and `data` is the `Vec` given in `loaded_modules`.
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<ModuleImage>>()) };
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader's program headers, `dlpi_phnum` of them, mapped for as long as
        // the module is loaded, which the loader lock held during this call guarantees.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr.cast(), usize::from(info.dlpi_phnum)) }
    };
    let path = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: the loader's NUL-terminated name, valid during the call.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let bias = info.dlpi_addr;
    let loads: Vec<&libc::Elf64_Phdr> = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD)
        .collect();
    let (Some(first), Some(last)) = (
        loads.iter().map(|h| h.p_vaddr).min(),
        loads.iter().map(|h| h.p_vaddr + h.p_memsz).max(),
    ) else {
        return 0;
    };
    let text_svma = loads
        .iter()
        .find(|h| h.p_flags & libc::PF_X != 0)
        .map(|h| h.p_vaddr..h.p_vaddr + h.p_memsz);
    let mut module = ModuleImage {
        path,
        bias,
        avma: bias + first..bias + last,
        text_svma,
        eh_frame_hdr: None,
        eh_frame: None,
    };
    if let Some(hdr) = headers.iter().find(|h| h.p_type == libc::PT_GNU_EH_FRAME) {
        let hdr_svma = hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz;
        let segment_of = |svma: u64| {
            loads
                .iter()
                .find(|h| h.p_vaddr <= svma && svma < h.p_vaddr + h.p_filesz)
                .map(|h| h.p_vaddr + h.p_filesz)
        };
        if segment_of(hdr_svma.start).is_some_and(|end| hdr_svma.end <= end) {
            // SAFETY: the header lies inside a loaded segment's file-backed part (checked
            // just above), mapped while the module is loaded.
            let bytes = unsafe { mapped(bias + hdr_svma.start, hdr.p_memsz) };
            if let Some(eh_frame_svma) = eh_frame_address(&bytes, hdr_svma.start)
                && let Some(segment_end) = segment_of(eh_frame_svma)
            {
                // SAFETY: `[eh_frame_svma, segment_end)` is inside one loaded segment's
                // file-backed part, found above.
                let available =
                    unsafe { mapped(bias + eh_frame_svma, segment_end - eh_frame_svma) };
                let length = eh_frame_length(&available);
                let eh_frame = available[..length].to_vec();
                module.eh_frame = Some((eh_frame_svma..eh_frame_svma + length as u64, eh_frame));
                module.eh_frame_hdr = Some((hdr_svma, bytes));
            }
        }
    }
    modules.push(module);
    0
}

/// A copy of `len` bytes of mapped memory at `avma`.
///
/// # Safety
/// The range must be mapped and readable for the whole call.
unsafe fn mapped(avma: u64, len: u64) -> Vec<u8> {
    let Ok(len) = usize::try_from(len) else {
        return Vec::new();
    };
    // SAFETY: the caller guarantees the range is mapped and readable.
    unsafe { std::slice::from_raw_parts(avma as usize as *const u8, len) }.to_vec()
}

/// Where `.eh_frame` starts, from `.eh_frame_hdr` (at `hdr_svma`): its `eh_frame_ptr`, in the
/// encodings linkers write.
fn eh_frame_address(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
    const PCREL_SDATA4: u8 = 0x1b;
    const DATAREL_SDATA4: u8 = 0x3b;
    const UDATA4: u8 = 0x03;
    const UDATA8: u8 = 0x04;
    let (&version, &encoding) = (hdr.first()?, hdr.get(1)?);
    if version != 1 {
        return None;
    }
    let field = hdr.get(4..)?;
    let sdata4 = || {
        Some(i64::from(i32::from_le_bytes(
            field.get(..4)?.try_into().ok()?,
        )))
    };
    match encoding {
        PCREL_SDATA4 => hdr_svma.checked_add(4)?.checked_add_signed(sdata4()?),
        DATAREL_SDATA4 => hdr_svma.checked_add_signed(sdata4()?),
        UDATA4 => Some(u64::from(u32::from_le_bytes(
            field.get(..4)?.try_into().ok()?,
        ))),
        UDATA8 => Some(u64::from_le_bytes(field.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// The length of the `.eh_frame` at the start of `bytes`: its records up to and including the
/// zero terminator (or all of `bytes` if none is found).
fn eh_frame_length(bytes: &[u8]) -> usize {
    let mut at = 0usize;
    loop {
        let Some(length) = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
        else {
            return bytes.len();
        };
        if length == 0 {
            return at + 4;
        }
        let record = if length == u32::MAX {
            match bytes
                .get(at + 4..at + 12)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .and_then(|l| usize::try_from(l).ok())
            {
                Some(l) => 12usize.saturating_add(l),
                None => return bytes.len(),
            }
        } else {
            4 + length as usize
        };
        match at.checked_add(record) {
            Some(next) if next <= bytes.len() => at = next,
            _ => return bytes.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_and_refuses_unmapped_addresses() {
        let here = [1u8, 2, 3, 4];
        let mut out = [0u8; 4];
        assert_eq!(read_memory(here.as_ptr() as usize, &mut out), 4);
        assert_eq!(out, here);
        // The first page is never mapped.
        assert_eq!(read_memory(16, &mut out), 0);
    }

    #[test]
    fn finds_the_executable_and_its_unwind_tables() {
        let modules = loaded_modules();
        let me = modules
            .iter()
            .find(|m| {
                m.avma
                    .contains(&(finds_the_executable_and_its_unwind_tables as *const () as u64))
            })
            .expect("the test binary is a loaded module");
        let (_, eh_frame) = me.eh_frame.as_ref().expect("Rust binaries have .eh_frame");
        assert!(eh_frame.len() > 1000);
        assert_eq!(&eh_frame[eh_frame.len() - 4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn eh_frame_length_stops_at_the_terminator() {
        let bytes = [8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 9, 9];
        assert_eq!(eh_frame_length(&bytes), 16);
        assert_eq!(eh_frame_length(&bytes[..10]), 10);
    }
}
