//! The sampler on this process: stacks name the function burning the CPU, samples carry the
//! thread's tag, one session at a time, and the handler survives threads that allocate and
//! lock all the time.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skytrace_sampler::{Error, Session, Tag};

/// Sessions are process-wide: the tests take turns.
static TURN: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set on the thread the tagger names (a const thread-local without a destructor: a plain
    /// load, fine in a signal handler).
    static TAGGED: Cell<bool> = const { Cell::new(false) };
}

/// CPU time this process has used (user + system), from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("a command in parentheses") + 2..];
    let fields: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    // USER_HZ is 100 on Linux.
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

fn tagger(tag: &mut Tag) {
    if TAGGED.with(Cell::get) {
        tag.set(b"segment-of-the-burner", 7);
    }
}

#[inline(never)]
fn burn_the_cpu(until: Instant) -> u64 {
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = black_box(
                x.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
        }
    }
    x
}

/// A sample's function names (innermost first) and its tag.
type Symbolised = (Vec<String>, Option<(String, i32)>);

/// Runs `session` while `work` runs, draining every 50 ms; the samples' symbolised stacks and
/// tags.
fn sample_while(session: &mut Session, work: impl FnOnce() + Send) -> Vec<Symbolised> {
    let done = Arc::new(AtomicBool::new(false));
    let mut raw = Vec::new();
    std::thread::scope(|scope| {
        let flag = Arc::clone(&done);
        scope.spawn(move || {
            work();
            flag.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            session.drain(|s| {
                raw.push((
                    s.frames().to_vec(),
                    s.tag()
                        .map(|(t, id)| (String::from_utf8_lossy(t).into_owned(), id)),
                ))
            });
        }
    });
    session.stop();
    session.drain(|s| {
        raw.push((
            s.frames().to_vec(),
            s.tag()
                .map(|(t, id)| (String::from_utf8_lossy(t).into_owned(), id)),
        ))
    });
    let mut symbols = session.symbolizer();
    raw.into_iter()
        .map(|(frames, tag)| {
            (
                frames.into_iter().map(|a| symbols.function(a)).collect(),
                tag,
            )
        })
        .collect()
}

#[test]
fn samples_name_the_function_burning_the_cpu_and_carry_its_threads_tag() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    skytrace_sampler::set_tagger(tagger);
    let cpu_before = process_cpu();
    let mut session = Session::start(Duration::from_millis(10)).expect("sampling starts");
    let samples = sample_while(&mut session, || {
        TAGGED.with(|t| t.set(true));
        burn_the_cpu(Instant::now() + Duration::from_millis(1500));
        TAGGED.with(|t| t.set(false));
    });
    let stats = session.stats();
    let cpu = process_cpu() - cpu_before;
    let burning: Vec<_> = samples
        .iter()
        .filter(|(frames, _)| frames.iter().any(|f| f.contains("burn_the_cpu")))
        .collect();
    // One sample per 10 ms of the process's CPU time (the machine may be busy: CPU time,
    // not wall time, is what is sampled), nearly all of it the burner's.
    let expected = cpu.as_millis() as usize / 10;
    assert!(
        samples.len() * 2 >= expected
            && burning.len() * 10 >= samples.len() * 8
            && burning.len() >= 10,
        "{} of {} samples name burn_the_cpu, {cpu:?} of CPU used ({stats:?}); some: {:?}",
        burning.len(),
        samples.len(),
        samples.iter().take(3).collect::<Vec<_>>()
    );
    // The walk goes past the burner into its callers: the thread's closure and std's start.
    assert!(
        burning.iter().any(|(frames, _)| frames.len() >= 4),
        "stacks stop at the leaf: {:?}",
        burning.first()
    );
    let tagged = burning
        .iter()
        .filter(|(_, tag)| tag.as_ref() == Some(&("segment-of-the-burner".to_owned(), 7)))
        .count();
    assert!(
        tagged * 10 >= burning.len() * 9,
        "{tagged} of {} burning samples tagged",
        burning.len()
    );
    assert!(
        samples.iter().all(|(frames, tag)| tag.is_none() || frames.iter().any(|f| f.contains("burn_the_cpu"))),
        "only the burner's thread is tagged"
    );
}

#[test]
fn one_session_at_a_time_and_a_stopped_one_makes_room() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut first = Session::start(Duration::from_millis(10)).expect("sampling starts");
    match Session::start(Duration::from_millis(10)) {
        Err(Error::Busy(_)) => {}
        other => panic!("a second session must be refused, got {other:?}"),
    }
    first.stop();
    assert!(!first.is_running());
    let second = Session::start(Duration::from_millis(10)).expect("the first one stopped");
    drop(second);
    drop(first);
    let again = Session::start(Duration::from_millis(10)).expect("both dropped");
    drop(again);
}

/// Threads that allocate, lock, start threads and catch panics without pause, sampled at the
/// fastest the kernel's tick allows (a 1 ms period; Linux raises at most one SIGPROF per tick):
/// nothing deadlocks, nothing crashes, samples keep coming, in proportion to the CPU used. `STRESS_SECONDS` makes it longer (the figures in the commit message come from
/// a run of minutes).
#[test]
fn allocating_and_locking_threads_survive_sampling() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let seconds: u64 = std::env::var("STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let cpu_before = process_cpu();
    let mut session = Session::start(Duration::from_millis(1)).expect("sampling starts");
    let stop = AtomicBool::new(false);
    let shared = Mutex::new(Vec::<String>::new());
    let mut drained = 0usize;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (stop, shared) = (&stop, &shared);
            scope.spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Allocation of every size class, freed out of order.
                    let mut held: Vec<Vec<u8>> = (0..64)
                        .map(|i| vec![t as u8; (i * 37 + rounds as usize) % 5000 + 1])
                        .collect();
                    held.swap_remove(3);
                    let text = format!("{t}-{rounds}-{}", held.len());
                    // A lock taken and released in a loop, contended by the other threads.
                    let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                    guard.push(text);
                    if guard.len() > 1000 {
                        guard.clear();
                    }
                    drop(guard);
                    // Thread creation and a panic caught, through the loader and the unwinder.
                    if rounds.is_multiple_of(500) {
                        let _ = std::thread::spawn(|| black_box(1)).join();
                        let _ = std::panic::catch_unwind(|| {
                            panic!("expected: a panic caught while sampling")
                        });
                    }
                    rounds += 1;
                }
                rounds
            });
        }
        while started.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(Duration::from_millis(20));
            drained += session.drain(|_| ());
        }
        stop.store(true, Ordering::Relaxed);
    });
    session.stop();
    drained += session.drain(|_| ());
    std::panic::set_hook(quiet);
    let cpu = process_cpu() - cpu_before;
    let stats = session.stats();
    eprintln!("stress: {seconds} s, {cpu:?} of CPU, {drained} samples drained, {stats:?}");
    assert!(
        drained as u128 >= cpu.as_millis() / 10,
        "too few samples: {drained} for {cpu:?} of CPU ({stats:?})"
    );
}
