//! Shared by the bench targets: configurations, the realistic segment, process and thread
//! measurements, and the command line of the benches that print their own figures.
#![allow(dead_code)] // each bench target uses a part of this module

use std::time::Duration;

use skytrace::{Config, ConfigBuilder, Span};

/// Service and instance names every peer reports under.
pub const SERVICE: &str = "bench-svc";
pub const INSTANCE: &str = "bench-svc-1@127.0.0.1";
/// The endpoint (entry span) of the realistic segment.
pub const ENDPOINT: &str = "GET:/api/users/{id}";
/// The exit span of the realistic segment.
pub const EXIT_OPERATION: &str = "GET:/inventory/stock";
pub const PEER: &str = "inventory:8080";
/// Local spans per realistic segment.
pub const LOCAL_SPANS: usize = 10;
/// Spans recorded per segment by the per-span benches: under the default span limit (300) so
/// every span records, and many enough that making the segment is not what is measured.
pub const SPANS_PER_SEGMENT: u64 = 100;

/// A skytrace configuration that samples everything.
pub fn config() -> ConfigBuilder {
    Config::builder()
        .service_name(SERVICE)
        .instance_name(INSTANCE)
        .sample_per_3_secs(-1)
}

/// The work inside every traced function: the same for every peer.
#[inline(always)]
pub fn work(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3)
}

/// The traced functions, one per peer, with the same body ([`work`]).
pub mod traced {
    use super::work;

    /// No instrumentation at all.
    #[inline(never)]
    pub fn plain(x: u64) -> u64 {
        work(x)
    }

    /// The least any span with exact times costs: the plain fn reading the clock at its start
    /// and its end, as skytrace (and fastrace) do — the CPU's time-stamp counter, through
    /// `minstant`. What a traced fn costs above this is the recording itself.
    #[inline(never)]
    pub fn floor_tsc(x: u64) -> u64 {
        let start = std::hint::black_box(minstant::Instant::now());
        let y = work(x);
        std::hint::black_box((start, minstant::Instant::now()));
        y
    }

    /// The same with the OS wall clock, which the `skywalking` crate reads (and the Java agent,
    /// through `System.currentTimeMillis`).
    #[inline(never)]
    pub fn floor_system_time(x: u64) -> u64 {
        let start = std::hint::black_box(std::time::SystemTime::now());
        let y = work(x);
        std::hint::black_box((start, std::time::SystemTime::now()));
        y
    }

    /// What `#[skytrace::trace]` expands to when skytrace's `enable` feature is off: the item
    /// exactly as written (the macros return it token for token). Cargo unifies features across one
    /// build, so the off expansion cannot be compiled beside the on one; this is its text.
    #[inline(never)]
    pub fn skytrace_feature_off(x: u64) -> u64 {
        work(x)
    }

    /// `#[skytrace::trace]` with the `enable` feature on: `Span::local` + `enter` around the body.
    #[inline(never)]
    #[skytrace::trace(name = "traced")]
    pub fn skytrace_traced(x: u64) -> u64 {
        work(x)
    }

    /// The official agent has no attribute and no current context: the function takes the context
    /// and makes a local span in it, as its docs show.
    #[inline(never)]
    pub fn skywalking_traced(
        ctx: &mut skywalking::trace::trace_context::TracingContext,
        x: u64,
    ) -> u64 {
        let _span = ctx.create_local_span("traced");
        work(x)
    }

    #[inline(never)]
    #[fastrace::trace(name = "traced")]
    pub fn fastrace_traced(x: u64) -> u64 {
        work(x)
    }

    #[inline(never)]
    #[tracing::instrument(name = "traced", skip_all)]
    pub fn tracing_traced(x: u64) -> u64 {
        work(x)
    }

    /// The async forms: a traced `async fn` with the same body, awaited once per call.
    #[skytrace::trace(name = "traced")]
    pub async fn skytrace_async(x: u64) -> u64 {
        work(x)
    }

    #[fastrace::trace(name = "traced")]
    pub async fn fastrace_async(x: u64) -> u64 {
        work(x)
    }

    #[tracing::instrument(name = "traced", skip_all)]
    pub async fn tracing_async(x: u64) -> u64 {
        work(x)
    }

    /// Polls a future that never waits to completion, as an executor would poll it once.
    #[inline(never)]
    pub fn run_ready<F: std::future::Future>(future: F) -> F::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => unreachable!("the traced fns never wait"),
        }
    }

    pub struct FastraceDiscard;

    impl fastrace::collector::Reporter for FastraceDiscard {
        fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
            drop(std::hint::black_box(spans));
        }
    }
}

/// The per-span cases, each run the same way: `n` calls of a traced function, timed, under a
/// root made (and finished) outside the timing where the case has one; entering and leaving its
/// scope is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Plain,
    SkytraceSampled,
    SkytraceFeatureOff,
    SkytraceNoTrace,
    SkytraceUnsampled,
    SkywalkingSampled,
    FastraceSampled,
    TracingRegistry,
    SkytraceAsync,
    FastraceAsync,
    TracingAsync,
    FloorTsc,
    FloorSystemTime,
}

impl Case {
    pub const ALL: [Case; 13] = [
        Case::Plain,
        Case::SkytraceSampled,
        Case::SkytraceFeatureOff,
        Case::SkytraceNoTrace,
        Case::SkytraceUnsampled,
        Case::SkywalkingSampled,
        Case::FastraceSampled,
        Case::TracingRegistry,
        Case::SkytraceAsync,
        Case::FastraceAsync,
        Case::TracingAsync,
        Case::FloorTsc,
        Case::FloorSystemTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::SkytraceSampled => "skytrace/sampled",
            Case::SkytraceFeatureOff => "skytrace/feature_off",
            Case::SkytraceNoTrace => "skytrace/no_trace",
            Case::SkytraceUnsampled => "skytrace/unsampled",
            Case::SkywalkingSampled => "skywalking/sampled",
            Case::FastraceSampled => "fastrace/sampled",
            Case::TracingRegistry => "tracing/registry",
            Case::SkytraceAsync => "skytrace/async",
            Case::FastraceAsync => "fastrace/async",
            Case::TracingAsync => "tracing/async",
            Case::FloorTsc => "floor/two_tsc_reads",
            Case::FloorSystemTime => "floor/two_system_time_reads",
        }
    }
}

/// The tracers of every peer, each reporting to something that discards.
pub struct Peers {
    skytrace: skytrace::Tracer,
    skywalking: skywalking::trace::tracer::Tracer,
}

impl Peers {
    /// Makes the tracers; installs fastrace's reporter and tracing's global subscriber (a
    /// `Registry` with no layers), which only the fastrace and tracing cases use.
    pub fn new() -> Peers {
        static GLOBALS: std::sync::Once = std::sync::Once::new();
        GLOBALS.call_once(|| {
            fastrace::set_reporter(
                traced::FastraceDiscard,
                fastrace::collector::Config::default(),
            );
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        });
        Peers {
            skytrace: skytrace::Tracer::new(
                &config().build().expect("config"),
                skytrace::DiscardReporter::new(),
            ),
            // `()` is the crate's own reporter that discards.
            skywalking: skywalking::trace::tracer::Tracer::new(SERVICE, INSTANCE, ()),
        }
    }

    pub fn skytrace(&self) -> &skytrace::Tracer {
        &self.skytrace
    }

    pub fn skywalking(&self) -> &skywalking::trace::tracer::Tracer {
        &self.skywalking
    }

    /// Runs `n` calls of `case`'s function and returns how long the calls took.
    pub fn batch(&self, case: Case, n: u64) -> Duration {
        use std::hint::black_box;
        use traced::*;
        match case {
            Case::Plain => timed(n, |i| {
                black_box(plain(black_box(i)));
            }),
            Case::FloorTsc => timed(n, |i| {
                black_box(floor_tsc(black_box(i)));
            }),
            Case::FloorSystemTime => timed(n, |i| {
                black_box(floor_system_time(black_box(i)));
            }),
            Case::SkytraceFeatureOff => timed(n, |i| {
                black_box(skytrace_feature_off(black_box(i)));
            }),
            Case::SkytraceNoTrace => timed(n, |i| {
                black_box(skytrace_traced(black_box(i)));
            }),
            Case::SkytraceSampled => {
                let entry = self.skytrace.entry_span("bench", &());
                assert!(entry.is_recording());
                timed_in(
                    n,
                    || entry.enter(),
                    |i| {
                        black_box(skytrace_traced(black_box(i)));
                    },
                )
            }
            Case::SkytraceUnsampled => {
                // An ignored endpoint (SW_AGENT_IGNORE_SUFFIX) starts a trace that is not
                // sampled: the entry is current as an unsampled handle, child spans are no-ops.
                let entry = self.skytrace.entry_span("GET:/static/app.js", &());
                assert!(!entry.is_recording());
                timed_in(
                    n,
                    || entry.enter(),
                    |i| {
                        black_box(skytrace_traced(black_box(i)));
                    },
                )
            }
            Case::SkywalkingSampled => {
                let mut ctx = self.skywalking.create_trace_context();
                let entry = ctx.create_entry_span("bench");
                let elapsed = timed(n, |i| {
                    black_box(skywalking_traced(&mut ctx, black_box(i)));
                });
                drop(entry);
                elapsed
            }
            Case::FastraceSampled => {
                let root = fastrace::Span::root("bench", fastrace::prelude::SpanContext::random());
                timed_in(
                    n,
                    || root.set_local_parent(),
                    |i| {
                        black_box(fastrace_traced(black_box(i)));
                    },
                )
            }
            Case::SkytraceAsync => {
                let entry = self.skytrace.entry_span("bench", &());
                timed_in(
                    n,
                    || entry.enter(),
                    |i| {
                        black_box(run_ready(skytrace_async(black_box(i))));
                    },
                )
            }
            Case::FastraceAsync => {
                let root = fastrace::Span::root("bench", fastrace::prelude::SpanContext::random());
                timed_in(
                    n,
                    || root.set_local_parent(),
                    |i| {
                        black_box(run_ready(fastrace_async(black_box(i))));
                    },
                )
            }
            Case::TracingAsync => {
                let root = tracing::info_span!("bench");
                timed_in(
                    n,
                    || root.enter(),
                    |i| {
                        black_box(run_ready(tracing_async(black_box(i))));
                    },
                )
            }
            Case::TracingRegistry => {
                let root = tracing::info_span!("bench");
                timed_in(
                    n,
                    || root.enter(),
                    |i| {
                        black_box(tracing_traced(black_box(i)));
                    },
                )
            }
        }
    }

    /// Runs `iters` calls of `case` in batches of [`SPANS_PER_SEGMENT`] (one root per batch) and
    /// returns the time the calls took.
    pub fn run(&self, case: Case, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(SPANS_PER_SEGMENT);
            total += self.batch(case, n);
            left -= n;
        }
        total
    }
}

/// The time `n` calls of `call` take.
#[inline(always)]
fn timed(n: u64, call: impl FnMut(u64)) -> Duration {
    timed_in(n, || (), call)
}

/// The time `n` calls of `call` take inside the scope of `enter`'s guard, entering and leaving
/// the scope included: that is where skytrace and fastrace move the spans recorded on the
/// thread to their trace, a cost of every span.
#[inline(always)]
fn timed_in<G>(n: u64, enter: impl FnOnce() -> G, mut call: impl FnMut(u64)) -> Duration {
    let start = std::time::Instant::now();
    let guard = enter();
    for i in 0..n {
        call(i);
    }
    drop(guard);
    start.elapsed()
}

/// The static and the formatted tag value of the realistic segment's local spans.
pub fn row_tag(i: usize) -> String {
    format!("row-{i}")
}

/// The realistic segment with skytrace, on the current thread: one entry span, 10 local spans
/// with two tags each (one static, one formatted), one exit span whose `sw8` headers are
/// injected into an `http::HeaderMap`. Returns the headers (so nothing is optimised away).
/// Ending the entry span hands the segment to the tracer's reporter.
pub fn skytrace_segment(tracer: &skytrace::Tracer, incoming: &http::HeaderMap) -> http::HeaderMap {
    let entry = tracer.entry_span(ENDPOINT, incoming);
    let _in_entry = entry.enter();
    for i in 0..LOCAL_SPANS {
        let span = Span::local("load_row");
        let _in = span.enter();
        span.add_tag("db.type", "sql");
        span.add_tag("db.row", row_tag(i));
    }
    let exit = Span::exit(EXIT_OPERATION, PEER);
    let _in_exit = exit.enter();
    let mut headers = http::HeaderMap::new();
    skytrace::inject(&mut headers);
    headers
}

/// The same segment with the official `skywalking` crate, continuing the caller's trace when
/// `incoming` carries an `sw8` header. Dropping the context hands the segment (converted to
/// protobuf, as that crate does on the caller's thread) to the reporter.
pub fn skywalking_segment(
    tracer: &skywalking::trace::tracer::Tracer,
    incoming: Option<&http::HeaderMap>,
) -> http::HeaderMap {
    use skywalking::trace::propagation::decoder::decode_propagation;
    use skywalking::trace::propagation::encoder::encode_propagation;
    use skywalking::trace::span::HandleSpanObject;

    let mut ctx = tracer.create_trace_context();
    let propagation = incoming
        .and_then(|h| h.get("sw8"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| decode_propagation(v).ok());
    let entry = match &propagation {
        Some(p) => ctx.create_entry_span_with_propagation(ENDPOINT, p),
        None => ctx.create_entry_span(ENDPOINT),
    };
    for i in 0..LOCAL_SPANS {
        let mut span = ctx.create_local_span("load_row");
        span.add_tag("db.type", "sql");
        span.add_tag("db.row", row_tag(i));
    }
    let exit = ctx.create_exit_span(EXIT_OPERATION, PEER);
    let mut headers = http::HeaderMap::new();
    let sw8 = encode_propagation(&ctx, ENDPOINT, PEER);
    if let Ok(value) = http::HeaderValue::try_from(sw8) {
        headers.insert("sw8", value);
    }
    drop(exit);
    drop(entry);
    drop(ctx);
    headers
}

/// An `sw8` value as a caller would send it (sampled, all eight fields set).
pub fn sample_sw8() -> skytrace::Sw8Header {
    skytrace::Sw8Header {
        sampled: true,
        trace_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90.42.17328000000000001".into(),
        parent_segment_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90.42.17328000000000002".into(),
        parent_span_id: 3,
        parent_service: "frontend".into(),
        parent_service_instance: "frontend-1@10.0.0.7".into(),
        parent_endpoint: "GET:/api/users/{id}".into(),
        target_address: "users:8080".into(),
    }
}

/// CPU time (user + system) of the whole process so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of this process's threads whose name starts with `prefix` (thread names are cut at
/// 15 bytes), from `/proc/self/task/*/schedstat` (nanoseconds), or `stat` (clock ticks) where
/// schedstat is missing. Threads that exited are not counted.
pub fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = Duration::ZERO;
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        total += task_cpu(&dir);
    }
    total
}

/// Pins the calling thread to one CPU (Linux). Returns false where that is not possible (fewer
/// CPUs, or the call failed): the caller then runs unpinned and says so.
pub fn pin_current_thread(cpu: usize) -> bool {
    // Not `available_parallelism`: that counts the CPUs this thread may use, one once pinned.
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online <= cpu as libc::c_long {
        return false;
    }
    set_affinity(cpu)
}

/// `sched_setaffinity` of the calling thread to `cpu` alone, and nothing else: safe to call in
/// a forked child before `exec` (`CommandExt::pre_exec`).
pub fn set_affinity(cpu: usize) -> bool {
    // SAFETY: the set is a plain bit array we own; sched_setaffinity(0, ..) acts on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPU time of the calling thread.
pub fn current_thread_cpu() -> Duration {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    task_cpu(std::path::Path::new(&format!("/proc/self/task/{tid}")))
}

fn task_cpu(dir: &std::path::Path) -> Duration {
    if let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat"))
        && let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_nanos(ns);
    }
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos((ticks(11) + ticks(12)) * 1_000_000_000 / hz)
}

/// Resident set size of the process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

/// The command line of a bench that prints its own figures (`harness = false` without
/// criterion). It understands what `cargo bench` and criterion's users pass: `--bench` (absent
/// under `cargo test --benches`, which asks for a quick smoke run), name filters, and
/// `--measurement-time SECS`, which scales how long each measurement runs.
pub struct Args {
    pub bench: bool,
    filters: Vec<String>,
    pub measurement: Option<Duration>,
    pub list: bool,
}

impl Args {
    pub fn parse() -> Args {
        // criterion's options that take a value; anything else starting with `-` is a flag.
        const WITH_VALUE: &[&str] = &[
            "--warm-up-time",
            "--measurement-time",
            "--sample-size",
            "--save-baseline",
            "--baseline",
            "--baseline-lenient",
            "--load-baseline",
            "--noise-threshold",
            "--significance-level",
            "--confidence-level",
            "--nresamples",
            "--output-format",
            "--color",
            "--profile-time",
            "--plotting-backend",
            "--format",
            "--logfile",
            "-c",
            "-s",
            "-b",
        ];
        let mut args = Args {
            bench: false,
            filters: Vec::new(),
            measurement: None,
            list: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "--bench" {
                args.bench = true;
            } else if arg == "--list" {
                args.list = true;
            } else if let Some((flag, value)) = arg.split_once('=') {
                if flag == "--measurement-time" {
                    args.measurement = value.parse().ok().map(Duration::from_secs_f64);
                }
            } else if WITH_VALUE.contains(&arg.as_str()) {
                let value = it.next();
                if arg == "--measurement-time" {
                    args.measurement = value
                        .and_then(|v| v.parse().ok())
                        .map(Duration::from_secs_f64);
                }
            } else if !arg.starts_with('-') {
                args.filters.push(arg);
            }
        }
        args
    }

    /// Whether the section `name` runs: no filter, or a filter it contains.
    pub fn wants(&self, name: &str) -> bool {
        if self.list {
            println!("{name}: bench");
            return false;
        }
        self.selects(name)
    }

    /// Whether the command line's filters select `name` (without `--list`'s printing).
    pub fn selects(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// How long one measurement runs: `full` by default, scaled down when `--measurement-time`
    /// is shorter than criterion's default of 5 s, and a blink in a smoke run.
    pub fn duration(&self, full: Duration) -> Duration {
        if !self.bench {
            return Duration::from_millis(100);
        }
        match self.measurement {
            Some(m) => full.mul_f64((m.as_secs_f64() / 5.0).clamp(0.05, 4.0)),
            None => full,
        }
    }

    /// How many rounds of a measurement to take (the median is reported).
    pub fn rounds(&self, full: usize) -> usize {
        if self.bench { full } else { 1 }
    }
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A layer whose service only passes the request on: what axum's `Router::layer` costs per
/// request before the layer does anything (axum boxes and clones the layered route service).
#[derive(Clone)]
pub struct PassLayer;

#[derive(Clone)]
pub struct Pass<S>(S);

impl<S> tower_layer::Layer<S> for PassLayer {
    type Service = Pass<S>;

    fn layer(&self, inner: S) -> Pass<S> {
        Pass(inner)
    }
}

impl<S: tower_service::Service<R>, R> tower_service::Service<R> for Pass<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.0.call(request)
    }
}
