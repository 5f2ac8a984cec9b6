//! The process's own meters, read from `/proc/self` (Linux). Elsewhere std offers nothing
//! portable for CPU time, memory, threads or descriptors, so the group sends nothing there.

use std::sync::Mutex;
use std::time::Instant;

use super::names;
use super::registry::{MeterRegistry, Source, SourceKind};

/// The unit of CPU times in `/proc/<pid>/stat`: the kernel's `USER_HZ`, which is 100 on every
/// Linux architecture Rust targets (reading it with `sysconf` would need libc and `unsafe`).
const USER_HZ: f64 = 100.0;

/// The CPU time seen at the previous reading, to turn two totals into a utilization.
#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    ticks: u64,
}

pub(crate) struct ProcessSource {
    last_cpu: Mutex<Option<CpuMark>>,
}

impl ProcessSource {
    /// Takes the first CPU reading now, so the first report covers the time since then.
    pub(crate) fn new() -> ProcessSource {
        let mark = read_cpu_ticks().map(|ticks| CpuMark {
            at: Instant::now(),
            ticks,
        });
        ProcessSource {
            last_cpu: Mutex::new(mark),
        }
    }

    fn cpu_utilization(&self) -> Option<f64> {
        let ticks = read_cpu_ticks()?;
        let now = CpuMark {
            at: Instant::now(),
            ticks,
        };
        let prev = self
            .last_cpu
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(now)?;
        let wall = now.at.duration_since(prev.at).as_secs_f64();
        // Two readings in the same tick say nothing.
        if wall < 1.0 / USER_HZ {
            return None;
        }
        let cpu = now.ticks.saturating_sub(prev.ticks) as f64 / USER_HZ;
        Some(cpu / wall * 100.0)
    }
}

impl Source for ProcessSource {
    fn collect(&self, out: &mut Vec<(&'static str, f64)>) {
        if let Some(percent) = self.cpu_utilization() {
            out.push((names::PROCESS_CPU_UTILIZATION, percent));
        }
        if let Some(status) = read("/proc/self/status") {
            let status = parse_status(&status);
            if let Some(kb) = status.rss_kb {
                out.push((names::PROCESS_RESIDENT_MEMORY, kb as f64 * 1024.0));
            }
            if let Some(kb) = status.vm_kb {
                out.push((names::PROCESS_VIRTUAL_MEMORY, kb as f64 * 1024.0));
            }
            if let Some(threads) = status.threads {
                out.push((names::PROCESS_THREADS, threads as f64));
            }
        }
        if let Some(fds) = open_fds() {
            out.push((names::PROCESS_OPEN_FDS, fds as f64));
        }
    }
}

impl MeterRegistry {
    /// Adds the process meters (`instance_rust_process_*`: CPU, memory, threads, open file
    /// descriptors), read from `/proc/self` once per period. The [global](super::global)
    /// registry has them from the start. Calling this again changes nothing. On systems
    /// without `/proc` the group sends nothing.
    ///
    /// ```
    /// let registry = skytrace::meter::MeterRegistry::new();
    /// registry.register_process_meters();
    /// ```
    pub fn register_process_meters(&self) {
        if !self.has_source(SourceKind::Process) {
            self.set_source(
                SourceKind::Process,
                std::sync::Arc::new(ProcessSource::new()),
            );
        }
    }
}

fn read(path: &str) -> Option<String> {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string(path).ok()
    } else {
        None
    }
}

/// utime + stime of the whole process, in `USER_HZ` ticks.
fn read_cpu_ticks() -> Option<u64> {
    parse_cpu_ticks(&read("/proc/self/stat")?)
}

/// Fields 14 (utime) and 15 (stime) of `/proc/<pid>/stat`. Field 2, the command name, is in
/// parentheses and may itself hold spaces and parentheses, so counting starts after the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts with field 3, so field n is at index n - 3.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

#[derive(Debug, Default, PartialEq)]
struct Status {
    rss_kb: Option<u64>,
    vm_kb: Option<u64>,
    threads: Option<u64>,
}

/// `VmRSS`, `VmSize` and `Threads` from `/proc/<pid>/status` (sizes are in kB there, which
/// spares us the page size `statm` would need).
fn parse_status(status: &str) -> Status {
    let mut out = Status::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = || value.split_whitespace().next()?.parse::<u64>().ok();
        match key {
            "VmRSS" => out.rss_kb = number(),
            "VmSize" => out.vm_kb = number(),
            "Threads" => out.threads = number(),
            _ => {}
        }
    }
    out
}

/// Entries of `/proc/self/fd`, less the one `read_dir` itself holds open while listing.
fn open_fds() -> Option<usize> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_command_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 \
                    1000 10000 300 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tdemo\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\nThreads:\t7\nBad";
        assert_eq!(
            parse_status(status),
            Status {
                rss_kb: Some(2048),
                vm_kb: Some(123_456),
                threads: Some(7),
            }
        );
        assert_eq!(parse_status(""), Status::default());
    }

    fn collect(source: &ProcessSource) -> std::collections::HashMap<&'static str, f64> {
        let mut out = Vec::new();
        source.collect(&mut out);
        out.into_iter().collect()
    }

    /// The process's own `VmRSS` line, in bytes.
    fn vm_rss_bytes() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024.0
    }

    /// `Rss` from `smaps_rollup`: the kernel's page-table walk, a reading independent of
    /// `status`' counters.
    fn smaps_rss_bytes() -> Option<f64> {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
        let line = text.lines().find(|l| l.starts_with("Rss:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? * 1024.0)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_meters_are_plausible() {
        let source = ProcessSource::new();
        // Spend some CPU so the utilization has something to show; no timing is asserted.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
        }
        std::hint::black_box(x);
        let _file = std::fs::File::open("/proc/self/status").unwrap();
        let m = collect(&source);
        for name in names::PROCESS {
            assert!(m.contains_key(name), "{name} missing from {m:?}");
        }

        let rss = m[names::PROCESS_RESIDENT_MEMORY];
        let own = vm_rss_bytes();
        assert!(
            rss > 0.5 * own && rss < 1.5 * own,
            "rss {rss} vs VmRSS {own}"
        );
        if let Some(smaps) = smaps_rss_bytes() {
            assert!(
                rss > 0.5 * smaps && rss < 1.5 * smaps,
                "rss {rss} vs smaps {smaps}"
            );
        }
        assert!(m[names::PROCESS_VIRTUAL_MEMORY] >= rss);
        assert!(m[names::PROCESS_THREADS] >= 1.0);
        // stdin/stdout/stderr may be closed under a harness, but `_file` is open.
        assert!(m[names::PROCESS_OPEN_FDS] >= 1.0);
        let cpu = m[names::PROCESS_CPU_UTILIZATION];
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // Other tests run in parallel threads, so only the bounds are sure.
        assert!((0.0..=100.0 * cores * 1.5).contains(&cpu), "cpu {cpu}%");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_is_measured_between_readings() {
        let source = ProcessSource::new();
        // Busy until the process's own CPU time has moved by two ticks: a condition, not a
        // duration, so a slow machine only makes the test longer.
        let start = read_cpu_ticks().unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        // Also past the 10 ms below which two readings are not compared.
        while read_cpu_ticks().unwrap() < start + 2 || started.elapsed().as_millis() < 20 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
            }
        }
        std::hint::black_box(x);
        let m = collect(&source);
        assert!(m[names::PROCESS_CPU_UTILIZATION] > 0.0, "{m:?}");
    }
}
