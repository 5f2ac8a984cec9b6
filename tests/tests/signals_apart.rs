//! Every signal's faults stay its own. Against a real collector whose receivers fail one at a
//! time (an error status, `UNIMPLEMENTED` as from an OAP configured without that receiver,
//! `RESOURCE_EXHAUSTED`), a service making requests with a WARN log in each keeps tracing them
//! all, and the other signals keep arriving over the same connection. Then the signals' own
//! limits: a slow or panicking gauge, a hostile configuration reply, a log record over the
//! message limit, an oversized meter report.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use skytrace::Span;
use skytrace::integrations::log::SkyWalkingLogger;
use skytrace::logs::LogSettings;
use skytrace::meter;
use skytrace_collector::{Collector, CollectorBuilder, Received};
use skytrace_tests::{Quiet, own_rss_bytes};
use skytrace_tests::{WAIT, config_for};
use tokio::sync::Mutex;
use tonic::Code;

/// One scenario at a time: the global tracer, the log queue and the logger are the process's.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// How long each scenario makes requests.
const WINDOW: Duration = Duration::from_secs(2);

const SEGMENTS: &str = "skywalking.v3.TraceSegmentReportService";
const LOGS: &str = "skywalking.v3.LogReportService";
const METERS: &str = "skywalking.v3.MeterReportService";
const MANAGEMENT: &str = "skywalking.v3.ManagementService";
const CONFIGURATION: &str = "skywalking.v3.ConfigurationDiscoveryService";
const EVENTS: &str = "skywalking.v3.EventService";

fn logger() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        SkyWalkingLogger::new(Quiet)
            .init(log::LevelFilter::Warn)
            .unwrap();
    });
}

/// What a scenario saw.
#[derive(Debug)]
struct Outcome {
    made: u64,
    traced: u64,
    stats: skytrace::ReporterStats,
    received: Received,
    connections: u64,
}

impl Outcome {
    fn traced_share(&self) -> f64 {
        self.traced as f64 / self.made as f64
    }
}

fn mine(received: &Received, service: &str) -> (usize, usize, usize, usize) {
    let logs = received
        .logs
        .iter()
        .filter(|l| l.service == service)
        .count();
    let meters = received
        .meters
        .iter()
        .filter(|m| m.service == service)
        .count();
    let pings = received
        .pings
        .iter()
        .filter(|p| p.service == service)
        .count();
    let properties = received
        .instance_properties
        .iter()
        .filter(|p| p.service == service)
        .count();
    (logs, meters, pings, properties + pings)
}

/// Requests for [`WINDOW`] against `collector`, each an entry span with a WARN log in it, then
/// a shutdown that delivers what is queued.
async fn requests(collector: &Collector, service: &str) -> Outcome {
    logger();
    let config = config_for(collector.addr())
        .service_name(service)
        .meter_reporter_period(Duration::from_secs(1))
        .dynamic_config_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let (mut made, mut traced) = (0u64, 0u64);
    let until = Instant::now() + WINDOW;
    while Instant::now() < until {
        for _ in 0..2 {
            let entry = Span::root_entry("GET:/work");
            made += 1;
            if entry.is_recording() {
                traced += 1;
            }
            let _in = entry.enter();
            log::warn!(target: "signals-apart", "request {made}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Every traced request's segment arrives (the queue never filled: nothing dropped).
    let arrived = collector
        .wait_for(WAIT, |r| r.segments.len() as u64 >= traced)
        .await;
    assert!(
        arrived,
        "{} of {traced} segments",
        collector.segment_count()
    );
    // One more meter period and keep-alive, for the other signals.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let stats = guard.shutdown(Duration::from_secs(5));
    Outcome {
        made,
        traced,
        stats,
        received: collector.received(),
        connections: collector.connections(),
    }
}

/// A receiver of `failing` answering `code`: every request traced, everything else delivered,
/// one connection.
async fn one_receiver_failing(failing: &str, code: Code) {
    let _one = SERIAL.lock().await;
    let builder = match code {
        Code::Unimplemented => Collector::builder().without_service(failing),
        code => Collector::builder().fail_service(failing, code),
    };
    let collector = builder.start().await.unwrap();
    let service = format!("apart-{}-{code:?}", failing.rsplit('.').next().unwrap());
    let outcome = requests(&collector, &service).await;
    let what = format!("{failing} answering {code:?}: {outcome:?}");
    assert!(outcome.made >= 100, "{what}");
    assert!(
        outcome.traced_share() >= 0.99,
        "{:.1} % traced with {failing} answering {code:?}",
        outcome.traced_share() * 100.0
    );
    assert_eq!(outcome.stats.dropped, 0, "{what}");
    assert_eq!(outcome.stats.failed, 0, "{what}");
    assert_eq!(
        outcome.connections, 1,
        "{failing} answering {code:?}: connections"
    );
    let (logs, meters, pings, management) = mine(&outcome.received, &service);
    if failing != LOGS {
        assert!(
            logs as u64 >= outcome.traced / 2,
            "{logs} logs: {failing} {code:?}"
        );
    }
    if failing != METERS {
        assert!(meters > 0, "no meters: {failing} {code:?}");
    }
    if failing != MANAGEMENT {
        assert!(
            pings > 0 && management > 0,
            "no keep-alive: {failing} {code:?}"
        );
    }
    if failing != CONFIGURATION {
        assert!(
            !outcome.received.configuration_requests.is_empty(),
            "no configuration fetched: {failing} {code:?}"
        );
    }
    // The failing receiver was asked again, but backed off: a handful of calls, not one per
    // record or period.
    let calls = outcome
        .received
        .failed_by_service
        .get(failing)
        .copied()
        .unwrap_or_default();
    assert!(calls <= 12, "{calls} calls of {failing} answering {code:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oap_without_the_log_receiver_traces_every_request() {
    one_receiver_failing(LOGS, Code::Unimplemented).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_receiver_answering_internal_traces_every_request() {
    one_receiver_failing(LOGS, Code::Internal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_receiver_answering_unavailable_traces_every_request() {
    one_receiver_failing(LOGS, Code::Unavailable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_receiver_answering_internal_traces_every_request() {
    one_receiver_failing(METERS, Code::Internal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oap_without_the_meter_receiver_traces_every_request() {
    one_receiver_failing(METERS, Code::Unimplemented).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_receiver_answering_resource_exhausted_traces_every_request() {
    one_receiver_failing(METERS, Code::ResourceExhausted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_management_receiver_traces_every_request() {
    one_receiver_failing(MANAGEMENT, Code::Internal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_configuration_receiver_traces_every_request() {
    one_receiver_failing(CONFIGURATION, Code::Unavailable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_receiver_traces_every_request() {
    one_receiver_failing(EVENTS, Code::Internal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oap_without_trace_profiling_traces_every_request() {
    one_receiver_failing("skywalking.v3.ProfileTask", Code::Unimplemented).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pprof_receiver_traces_every_request() {
    one_receiver_failing("skywalking.v10.PprofTask", Code::Internal).await;
}

/// The segments' own receiver failing is what pauses new traces — and only until it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_segment_receiver_pauses_new_traces_and_nothing_else() {
    let _one = SERIAL.lock().await;
    let collector = Collector::builder()
        .fail_service(SEGMENTS, Code::Internal)
        .start()
        .await
        .unwrap();
    logger();
    let config = config_for(collector.addr())
        .service_name("apart-segments")
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let tracer = guard.tracer().unwrap().clone();
    assert!(
        skytrace_tests::eventually(WAIT, || !tracer.reporter().is_available()).await,
        "new traces pause"
    );
    // Logs outside traces, meters and keep-alives still go.
    log::warn!(target: "signals-apart", "while segments fail");
    let delivered = collector
        .wait_for(WAIT, |r| {
            let (logs, meters, pings, _) = mine(r, "apart-segments");
            logs >= 1 && meters >= 1 && pings >= 1
        })
        .await;
    assert!(delivered, "{:?}", collector.received());
    assert_eq!(collector.connections(), 1);
    guard.shutdown(Duration::from_secs(1));
}

/// A gauge that sleeps delays only the meters: every segment is delivered, none dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gauge_that_takes_three_seconds_drops_no_segment() {
    let _one = SERIAL.lock().await;
    static SLOW: AtomicBool = AtomicBool::new(false);
    static ONCE: OnceLock<meter::Gauge> = OnceLock::new();
    ONCE.get_or_init(|| {
        meter::gauge("apart_slow_gauge", || {
            if SLOW.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(3));
            }
            1.0
        })
        .build()
        .unwrap()
    });
    SLOW.store(true, Ordering::Relaxed);
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("apart-slow-gauge")
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let mut traced = 0u64;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for _ in 0..4 {
            if Span::root_entry("GET:/slow-gauge").is_recording() {
                traced += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = guard.shutdown(Duration::from_secs(2));
    SLOW.store(false, Ordering::Relaxed);
    assert!(traced > 1_000, "{traced}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.sent, traced, "{stats:?}");
    assert_eq!(collector.segment_count() as u64, traced);
}

/// A gauge that panics is read once, said once, and never read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_gauge_is_read_once() {
    let _one = SERIAL.lock().await;
    static READS: AtomicU64 = AtomicU64::new(0);
    static ONCE: OnceLock<meter::Gauge> = OnceLock::new();
    ONCE.get_or_init(|| {
        meter::gauge("apart_panicking_gauge", || {
            READS.fetch_add(1, Ordering::Relaxed);
            panic!("a gauge that panics (on purpose, in a test)");
        })
        .build()
        .unwrap()
    });
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("apart-panicking-gauge")
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    // Three periods' reports, without the gauge.
    assert!(
        collector
            .wait_for(WAIT, |r| {
                r.meters
                    .iter()
                    .filter(|m| m.service == "apart-panicking-gauge")
                    .count()
                    >= 3
            })
            .await
    );
    guard.shutdown(Duration::from_secs(1));
    assert_eq!(READS.load(Ordering::Relaxed), 1);
}

/// Protobuf bytes of a length-delimited field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2];
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
    out
}

/// A `Commands` reply with one configuration-discovery command whose value is `value`, as raw
/// bytes (which need not be UTF-8).
fn configuration_reply(value: &[u8]) -> Vec<u8> {
    let pair = |k: &[u8], v: &[u8]| [field(1, k), field(2, v)].concat();
    let command = [
        field(1, b"ConfigurationDiscoveryCommand"),
        field(2, &pair(b"SerialNumber", b"1")),
        field(2, &pair(b"UUID", b"u-1")),
        field(2, &pair(b"agent.ignore_suffix", value)),
    ]
    .concat();
    field(1, &command)
}

/// A reply the agent cannot decode — a value that is not UTF-8, a reply over the message
/// limit — is the configuration's failure alone.
async fn hostile_configuration(builder: CollectorBuilder, name: &str) {
    let _one = SERIAL.lock().await;
    let collector = builder.start().await.unwrap();
    let outcome = requests(&collector, name).await;
    assert!(
        outcome.traced_share() >= 0.99,
        "{name}: {:.1} % traced",
        outcome.traced_share() * 100.0
    );
    assert_eq!(outcome.connections, 1, "{name}");
    assert_eq!(outcome.stats.failed, 0, "{name}");
    // Asked (and asked again: the signal's back-off is health.rs's unit tests' business; over
    // this window it cannot be told from the 1 s interval).
    let fetches = outcome.received.configuration_requests.len();
    assert!(fetches >= 2, "{name}: {fetches} fetches");
    let (logs, meters, pings, _) = mine(&outcome.received, name);
    assert!(logs > 0 && meters > 0 && pings > 0, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_value_that_is_not_utf8_is_the_configurations_failure_alone() {
    let reply = configuration_reply(&[0xff, 0xfe, b'.', b'x']);
    hostile_configuration(
        Collector::builder().configuration_reply_bytes(reply),
        "apart-config-not-utf8",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_reply_over_the_limit_is_the_configurations_failure_alone() {
    let reply = configuration_reply(&vec![b'a'; 5 * 1024 * 1024]);
    hostile_configuration(
        Collector::builder().configuration_reply_bytes(reply),
        "apart-config-5mb",
    )
    .await;
}

/// A record over the message limit is dropped alone: the rest of its batch arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_record_over_the_message_limit_is_dropped_alone() {
    let _one = SERIAL.lock().await;
    logger();
    let collector = Collector::start().await.unwrap();
    let mut logs = LogSettings::default();
    logs.max_message_size = 1024 * 1024;
    let config = config_for(collector.addr())
        .service_name("apart-big-log")
        .max_message_size(64 * 1024)
        .log_reporter(logs)
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let big = "x".repeat(200 * 1024);
    for i in 0..100 {
        log::warn!(target: "signals-apart", "small {i}");
        if i == 50 {
            log::warn!(target: "signals-apart", "{big}");
        }
    }
    guard.shutdown(Duration::from_secs(5));
    let received = collector.received();
    let (logs, ..) = mine(&received, "apart-big-log");
    assert_eq!(logs, 100, "every small record of the batch arrives");
}

/// 400 counters with 20 KB label values: each label is cut to 2 KiB, and the report — over a
/// 64 KiB message limit — arrives whole, in parts. Memory stays flat over the periods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_meter_report_arrives_in_parts_and_memory_stays_flat() {
    let _one = SERIAL.lock().await;
    let registry_label = "v".repeat(20_000);
    static ONCE: OnceLock<Vec<meter::Counter>> = OnceLock::new();
    ONCE.get_or_init(|| {
        (0..400)
            .map(|i| {
                meter::counter("apart_big_counter")
                    .label("n", format!("{i}{registry_label}"))
                    .build()
                    .unwrap()
            })
            .collect()
    });
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("apart-big-report")
        .max_message_size(64 * 1024)
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let counters = |r: &Received| {
        r.meters
            .iter()
            .filter(|m| matches!(&m.metric, Some(skytrace_proto::v3::meter_data::Metric::SingleValue(v)) if v.name == "apart_big_counter"))
            .count()
    };
    assert!(collector.wait_for(WAIT, |r| counters(r) >= 400).await);
    let rss_before = own_rss_bytes();
    assert!(collector.wait_for(WAIT, |r| counters(r) >= 2_400).await);
    let rss_after = own_rss_bytes();
    guard.shutdown(Duration::from_secs(2));
    let received = collector.received();
    for m in &received.meters {
        if let Some(skytrace_proto::v3::meter_data::Metric::SingleValue(v)) = &m.metric
            && v.name == "apart_big_counter"
        {
            assert!(
                v.labels[0].value.len() <= 2048,
                "{}",
                v.labels[0].value.len()
            );
        }
    }
    // Five more periods of ~1 MB reports: memory does not grow by their size each period.
    let grown = rss_after.saturating_sub(rss_before);
    assert!(grown < 64 * 1024 * 1024, "RSS grew {grown} bytes");
}

/// A reply of 5,000 commands, each with a distinct 600-byte value the agent cannot use (3.3 MB:
/// under the 4 MiB limit).
fn five_thousand_bad_commands() -> Vec<u8> {
    let pair = |k: &[u8], v: &[u8]| [field(1, k), field(2, v)].concat();
    let mut reply = Vec::new();
    for i in 0..5_000 {
        let value = format!("lots-{i}-{}", "x".repeat(600));
        let command = [
            field(1, b"ConfigurationDiscoveryCommand"),
            field(2, &pair(b"SerialNumber", i.to_string().as_bytes())),
            field(2, &pair(b"UUID", format!("u-{i}").as_bytes())),
            field(2, &pair(b"agent.sample_n_per_3_secs", value.as_bytes())),
        ]
        .concat();
        reply.extend(field(1, &command));
    }
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by what_the_agent_prints_is_bounded"]
async fn case_five_thousand_bad_commands() {
    let collector = Collector::builder()
        .configuration_reply_bytes(five_thousand_bad_commands())
        .start()
        .await
        .unwrap();
    let config = config_for(collector.addr())
        .service_name("apart-loud-config")
        .dynamic_config_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    assert!(
        collector
            .wait_for(WAIT, |r| r.configuration_requests.len() >= 3)
            .await
    );
    let tracer = guard.tracer().unwrap().clone();
    assert!(Span::root_entry("GET:/still-traced").is_recording());
    assert_eq!(tracer.settings().sample_per_3_secs, -1, "nothing applied");
    guard.shutdown(Duration::from_secs(2));
}

/// 5,000 bad values in each of three replies: each distinct value is said at most once, each
/// line is cut, and at most 30 lines a minute reach standard error (the issue saw 25,000 lines
/// in 5 s, and 25 MB of them for 1 MB values).
#[test]
fn what_the_agent_prints_is_bounded() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "case_five_thousand_bad_commands",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("skytrace: "))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("agent.sample_n_per_3_secs")),
        "{stderr}"
    );
    assert!(lines.len() <= 30, "{} lines: {lines:#?}", lines.len());
    assert!(
        lines.iter().all(|l| l.len() <= 1024),
        "a line over 1 KiB: {lines:#?}"
    );
}
