//! The CPU cost of sampling at 100 Hz: the same work (two threads hashing and allocating), in
//! rounds alternately without and with a session (drained every 100 ms, as a task does), timed
//! in the process's CPU time so that other load on the machine counts for little.
//!
//! ```text
//! cargo run --release -p skytrace-sampler --example overhead [ROUNDS]
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skytrace_sampler::{DEFAULT_PERIOD, Session};

/// CPU time this process has used, from `/proc/self/stat`
/// (10 ms ticks; each round uses seconds of CPU).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("a command") + 2..];
    let ticks: u64 = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().unwrap())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn work() -> u64 {
    let mut total = 0u64;
    for round in 0..300u64 {
        let map: HashMap<String, u64> = (0..20_000)
            .map(|i| (format!("key-{round}-{i}"), i))
            .collect();
        total = total.wrapping_add(map.values().sum::<u64>());
        black_box(&map);
    }
    total
}

/// One round: the work on two threads; its CPU time and the samples taken.
fn round(sampled: bool) -> (Duration, usize, Duration) {
    let before = process_cpu();
    let session = sampled.then(|| Session::start(DEFAULT_PERIOD).expect("sampling starts"));
    let done = AtomicBool::new(false);
    let mut samples = 0;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2).map(|_| scope.spawn(work)).collect();
        let watcher = scope.spawn(|| {
            for worker in workers {
                black_box(worker.join().unwrap());
            }
            done.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if let Some(session) = &session {
                samples += session.drain(|s| {
                    black_box(s.frames().len());
                });
            }
        }
        watcher.join().unwrap();
    });
    let mut in_handler = Duration::ZERO;
    if let Some(mut session) = session {
        session.stop();
        samples += session.drain(|_| ());
        in_handler = session.stats().handler_time;
    }
    (process_cpu() - before, samples, in_handler)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    round(false); // warm-up
    let (mut plain, mut sampled, mut samples, mut in_handler) =
        (Vec::new(), Vec::new(), 0, Duration::ZERO);
    for _ in 0..rounds {
        plain.push(round(false).0);
        let (cpu, n, handler) = round(true);
        sampled.push(cpu);
        samples += n;
        in_handler += handler;
    }
    let (plain, sampled) = (median(plain), median(sampled));
    let overhead = sampled.as_secs_f64() / plain.as_secs_f64() - 1.0;
    println!(
        "{rounds} rounds: median CPU {plain:?} without sampling, {sampled:?} with; overhead {:+.2} %; \
         {:.0} samples per round ({:.0} per CPU-second); in the handler {:.1} us per sample, \
         {:.3} % of the CPU sampled",
        overhead * 100.0,
        samples as f64 / rounds as f64,
        samples as f64 / rounds as f64 / sampled.as_secs_f64(),
        in_handler.as_secs_f64() * 1e6 / samples.max(1) as f64,
        in_handler.as_secs_f64() * 100.0 / (sampled.as_secs_f64() * rounds as f64),
    );
}
