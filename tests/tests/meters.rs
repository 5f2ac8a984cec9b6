//! Meters over real gRPC (`MeterReportService.collectBatch`) to the collector on loopback.
//!
//! Every reporter sends the one global registry, so the tests here run one at a time (each
//! stops its reporter before the next starts) and use meter names of their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use skytrace::meter::{self, names};
use skytrace::{GrpcReporter, Span, Tracer};
use skytrace_collector::{Collector, Event};
use skytrace_proto::v3::meter_data::Metric;
use skytrace_proto::v3::{Label, MeterData};
use skytrace_tests::{WAIT, config_for, eventually, unused_addr};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn name(data: &MeterData) -> &str {
    match &data.metric {
        Some(Metric::SingleValue(v)) => &v.name,
        Some(Metric::Histogram(h)) => &h.name,
        None => "",
    }
}

fn labels(data: &MeterData) -> &[Label] {
    match &data.metric {
        Some(Metric::SingleValue(v)) => &v.labels,
        Some(Metric::Histogram(h)) => &h.labels,
        None => &[],
    }
}

fn value(data: &MeterData) -> f64 {
    match &data.metric {
        Some(Metric::SingleValue(v)) => v.value,
        _ => panic!("not a single value: {data:?}"),
    }
}

/// Every value received for meter `meter`, in arrival order.
fn values(collector: &Collector, meter: &str) -> Vec<f64> {
    collector
        .meters()
        .iter()
        .filter(|d| name(d) == meter)
        .map(value)
        .collect()
}

/// The last value received for each single-value meter.
fn latest(collector: &Collector) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for d in collector.meters() {
        if let Some(Metric::SingleValue(v)) = &d.metric {
            out.insert(v.name.clone(), v.value);
        }
    }
    out
}

async fn wait_for_value(collector: &Collector, meter: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let found = collector
        .wait_for(WAIT, |r| {
            r.meters.iter().any(|d| {
                name(d) == meter
                    && matches!(&d.metric, Some(Metric::SingleValue(v)) if pred(v.value))
            })
        })
        .await;
    assert!(
        found,
        "no value of {meter} as expected; got {:?}",
        values(collector, meter)
    );
    *values(collector, meter)
        .iter()
        .rev()
        .find(|v| pred(**v))
        .expect("found above")
}

fn reporter(collector_addr: std::net::SocketAddr, service: &str) -> (Tracer, skytrace::Config) {
    let config = config_for(collector_addr)
        .service_name(service)
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let reporter = GrpcReporter::start(&config).unwrap();
    (Tracer::new(&config, reporter), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_gauges_and_histograms_arrive_with_names_labels_and_values() {
    let _serial = SERIAL.lock().await;
    let collector = Collector::start().await.unwrap();
    let mut events = collector.subscribe_events();

    let orders = meter::counter("t1_orders")
        .label("region", "eu")
        .build()
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let orders = orders.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    orders.inc();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    meter::gauge("t1_pool_idle", || 7.0)
        .label("pool", "main")
        .build()
        .unwrap();
    let latency = meter::histogram("t1_latency_ms", &[10.0, 50.0, 100.0])
        .build()
        .unwrap();
    for v in [1.0, 12.0, 13.0, 60.0, 500.0, 700.0, 900.0] {
        latency.observe(v);
    }

    let (tracer, config) = reporter(collector.addr(), "meters-values");
    assert_eq!(
        wait_for_value(&collector, "t1_orders", |v| v == 80_000.0).await,
        80_000.0
    );

    let meters = collector.meters();
    let orders = meters.iter().find(|d| name(d) == "t1_orders").unwrap();
    assert_eq!(
        labels(orders),
        [Label {
            name: "region".into(),
            value: "eu".into()
        }]
    );
    let idle = meters.iter().find(|d| name(d) == "t1_pool_idle").unwrap();
    assert_eq!((value(idle), labels(idle)[0].value.as_str()), (7.0, "main"));
    let histogram = meters
        .iter()
        .find_map(|d| match &d.metric {
            Some(Metric::Histogram(h)) if h.name == "t1_latency_ms" => Some(h),
            _ => None,
        })
        .unwrap();
    let buckets: Vec<_> = histogram
        .values
        .iter()
        .map(|b| (b.bucket, b.count))
        .collect();
    // Lower bounds, a 0 bucket in front, each bucket's own count (not cumulative).
    assert_eq!(buckets, [(0.0, 1), (10.0, 2), (50.0, 1), (100.0, 3)]);

    // Each collection carries service, instance and timestamp on its first element.
    let first = loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Ok(Event::Meters(data))) => break data,
            Ok(Ok(_)) => continue,
            other => panic!("no meters: {other:?}"),
        }
    };
    assert_eq!(first[0].service, config.service_name());
    assert_eq!(first[0].service_instance, "svc-1");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now - 60_000..=now).contains(&first[0].timestamp),
        "{}",
        first[0].timestamp
    );
    assert!(first[1..].iter().all(|d| d.service.is_empty()));

    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gauge_is_read_once_per_period_on_the_meters_own_thread() {
    let _serial = SERIAL.lock().await;
    let collector = Collector::start().await.unwrap();
    let reads = Arc::new(AtomicU64::new(0));
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r, t) = (Arc::clone(&reads), Arc::clone(&threads));
    meter::gauge("t2_reads", move || {
        t.lock()
            .unwrap()
            .push(std::thread::current().name().map(str::to_owned));
        (r.fetch_add(1, Ordering::SeqCst) + 1) as f64
    })
    .build()
    .unwrap();
    let (tracer, _) = reporter(collector.addr(), "meters-gauge");
    assert!(
        collector
            .wait_for(WAIT, |r| r
                .meters
                .iter()
                .filter(|d| name(d) == "t2_reads")
                .count()
                >= 3)
            .await
    );
    tracer.reporter().shutdown(Duration::from_secs(5));
    // Each report read it once: the values are the read counts, one after the other.
    let got = values(&collector, "t2_reads");
    let expected: Vec<f64> = (1..=got.len()).map(|n| n as f64).collect();
    assert_eq!(got, expected);
    let threads = threads.lock().unwrap();
    assert!(
        threads
            .iter()
            .all(|n| n.as_deref() == Some("skytrace-meters")),
        "{threads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_tokio_and_agent_meters_are_plausible() {
    let _serial = SERIAL.lock().await;
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("meters-builtin")
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    for _ in 0..3 {
        drop(Span::root_entry("job"));
    }
    collector.wait_for_segments(3, WAIT).await;
    wait_for_value(&collector, names::AGENT_SEGMENTS_SENT, |v| v >= 3.0).await;
    wait_for_value(&collector, names::AGENT_SEGMENTS_CREATED, |v| v >= 3.0).await;
    wait_for_value(&collector, names::AGENT_SEGMENTS_FINISHED, |v| v >= 3.0).await;
    let rss_now = own_rss_bytes();
    let seen = latest(&collector);
    guard.shutdown(Duration::from_secs(5));

    // All of them, the log queue's drops too: `init` reports logs by default.
    for n in names::ALL {
        assert!(seen.contains_key(*n), "{n} missing from {seen:?}");
    }
    let rss = seen[names::PROCESS_RESIDENT_MEMORY];
    assert!(
        rss > rss_now / 2.0 && rss < rss_now * 2.0,
        "{rss} vs {rss_now}"
    );
    assert!(seen[names::PROCESS_VIRTUAL_MEMORY] >= rss);
    assert!(seen[names::PROCESS_THREADS] >= 3.0);
    assert!(seen[names::PROCESS_OPEN_FDS] >= 3.0);
    assert!(seen[names::PROCESS_CPU_UTILIZATION] >= 0.0);
    // The test's own runtime, registered by `init`.
    assert_eq!(seen[names::TOKIO_WORKERS], 2.0);
    assert!(seen[names::TOKIO_ALIVE_TASKS] >= 0.0);
    assert_eq!(seen[names::AGENT_SEGMENTS_DROPPED], 0.0);
    assert_eq!(seen[names::AGENT_SEGMENTS_FAILED], 0.0);
    assert_eq!(seen[names::AGENT_METER_REPORTS_DROPPED], 0.0);
    let mut list: Vec<_> = seen
        .iter()
        .filter(|(k, _)| k.starts_with("instance_rust_"))
        .collect();
    list.sort_by(|a, b| a.0.cmp(b.0));
    println!("meters seen over the wire: {list:?}");
}

fn own_rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_off_send_nothing() {
    let _serial = SERIAL.lock().await;
    let collector = Collector::start().await.unwrap();
    meter::counter("t4_off").build().unwrap().inc();
    let config = config_for(collector.addr())
        .service_name("meters-off")
        .meter_reporter_active(false)
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    drop(tracer.entry_span("job", &()));
    collector.wait_for_segments(1, WAIT).await;
    // Three heartbeats of 1 s: three meter periods have passed too.
    assert!(collector.wait_for(WAIT, |r| r.pings.len() >= 3).await);
    tracer.reporter().shutdown(Duration::from_secs(5));
    assert!(collector.meters().is_empty(), "{:?}", collector.meters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_blocks_nothing_and_old_reports_are_dropped() {
    let _serial = SERIAL.lock().await;
    let addr = unused_addr();
    let reads = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&reads);
    meter::gauge("t5_reads", move || {
        (r.fetch_add(1, Ordering::SeqCst) + 1) as f64
    })
    .build()
    .unwrap();
    let config = config_for(addr)
        .service_name("meters-dead")
        .meter_reporter_period(Duration::from_secs(1))
        .meter_reporter_max_buffer_size(2)
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    let counter = meter::counter("t5_count").build().unwrap();
    // The service goes on: meters update and spans end while nothing answers.
    let read = eventually(WAIT, || {
        counter.inc();
        drop(tracer.entry_span("job", &()));
        reads.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert!(read, "the gauge was not read while the backend was down");
    // The backend comes up: the reports buffered meanwhile arrive, the oldest dropped.
    let collector = Collector::builder().addr(addr).start().await.unwrap();
    assert!(
        collector
            .wait_for(WAIT, |r| r.meters.iter().any(|d| name(d) == "t5_reads"))
            .await
    );
    tracer.reporter().shutdown(Duration::from_secs(5));
    let got = values(&collector, "t5_reads");
    assert!(!got.contains(&1.0), "the first report was kept: {got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
}

/// A short job's meters arrive: the registry is read once more at shutdown and delivered with
/// what is queued, long before the first 20 s period would have come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_jobs_meters_are_delivered_at_shutdown() {
    let _serial = SERIAL.lock().await;
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("meters-short-job")
        .meter_reporter_period(Duration::from_secs(20))
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    meter::counter("t6_short_job_items")
        .build()
        .unwrap()
        .increment(7.0);
    drop(tracer.entry_span("job", &()));
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!(values(&collector, "t6_short_job_items"), [7.0]);
}
