//! Tests of the registry as the reporter uses it: `collect` and its wire form, and the OAP
//! meter-analyzer file against the meters the agent emits.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use skytrace_proto::v3::{self, meter_data::Metric};

use super::*;

fn singles(collection: &v3::MeterDataCollection) -> HashMap<String, (Vec<(String, String)>, f64)> {
    collection
        .meter_data
        .iter()
        .filter_map(|d| match &d.metric {
            Some(Metric::SingleValue(v)) => Some((
                v.name.clone(),
                (
                    v.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    v.value,
                ),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn collect_puts_service_instance_and_timestamp_on_the_first_element() {
    let registry = MeterRegistry::new();
    registry.counter("a").build().unwrap().inc();
    registry.gauge("b", || 2.0).build().unwrap();
    registry.histogram("c", &[10.0]).build().unwrap();
    let report = registry.collect("svc", "inst@host", 1_700_000_000_123);
    assert_eq!(report.meter_data.len(), 3);
    let first = &report.meter_data[0];
    assert_eq!(first.service, "svc");
    assert_eq!(first.service_instance, "inst@host");
    assert_eq!(first.timestamp, 1_700_000_000_123);
    for rest in &report.meter_data[1..] {
        assert!(rest.service.is_empty() && rest.service_instance.is_empty());
        assert_eq!(rest.timestamp, 0);
    }
    // Encodes as the protocol's message.
    #[cfg(feature = "grpc")]
    {
        let bytes = prost::Message::encode_to_vec(&report);
        let back: v3::MeterDataCollection = prost::Message::decode(&bytes[..]).unwrap();
        assert_eq!(back, report);
    }
}

#[test]
fn an_empty_registry_reports_nothing() {
    let report = MeterRegistry::new().collect("svc", "inst", 1);
    assert!(report.meter_data.is_empty());
}

#[test]
fn labels_go_out_sorted_and_tell_meters_apart() {
    let registry = MeterRegistry::new();
    let eu = registry
        .counter("orders")
        .label("region", "eu")
        .label("channel", "web")
        .build()
        .unwrap();
    let us = registry
        .counter("orders")
        .label("channel", "web")
        .label("region", "us")
        .build()
        .unwrap();
    eu.increment(2.0);
    us.inc();
    // Same labels in another order: the same meter.
    registry
        .counter("orders")
        .label("channel", "web")
        .label("region", "eu")
        .build()
        .unwrap()
        .inc();
    let report = registry.collect("s", "i", 1);
    let mut seen: Vec<(Vec<(String, String)>, f64)> = report
        .meter_data
        .iter()
        .map(|d| match &d.metric {
            Some(Metric::SingleValue(v)) => (
                v.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                v.value,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let l = |c: &str, r: &str| {
        vec![
            ("channel".to_owned(), c.to_owned()),
            ("region".to_owned(), r.to_owned()),
        ]
    };
    assert_eq!(seen, vec![(l("web", "eu"), 3.0), (l("web", "us"), 1.0)]);
}

#[test]
fn rate_counters_report_the_increase_per_collect() {
    let registry = MeterRegistry::new();
    let c = registry
        .counter("bytes_in")
        .mode(CounterMode::Rate)
        .build()
        .unwrap();
    c.increment(100.0);
    assert_eq!(singles(&registry.collect("s", "i", 1))["bytes_in"].1, 100.0);
    assert_eq!(singles(&registry.collect("s", "i", 2))["bytes_in"].1, 0.0);
    c.increment(5.0);
    assert_eq!(singles(&registry.collect("s", "i", 3))["bytes_in"].1, 5.0);
    // The total mode of the same name is another meter: refused, with both kinds named.
    let err = registry.counter("bytes_in").build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "meter \"bytes_in\" with these labels is already registered as a counter in rate \
         mode, not a counter"
    );
}

#[test]
fn gauges_are_read_once_per_collect_outside_the_lock() {
    let registry = MeterRegistry::new();
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reads);
    let inner = registry.clone();
    registry
        .gauge("depth", move || {
            // Registering from inside a gauge would deadlock if the registry's lock were held.
            let _ = inner.counter("made_inside_a_gauge").build();
            counted.fetch_add(1, Ordering::SeqCst) as f64
        })
        .build()
        .unwrap();
    for period in 0..3 {
        let values = singles(&registry.collect("s", "i", period));
        assert_eq!(values["depth"].1, period as f64);
    }
    assert_eq!(reads.load(Ordering::SeqCst), 3);
}

#[test]
fn a_bad_gauge_loses_only_its_own_value() {
    let registry = MeterRegistry::new();
    registry.gauge("nan", || f64::NAN).build().unwrap();
    registry
        .gauge("boom", || {
            panic!("a gauge that panics (expected by the test)")
        })
        .build()
        .unwrap();
    registry.gauge("fine", || 1.0).build().unwrap();
    registry.register_agent_health(|| panic!("a health source that panics (expected)"));
    let values = singles(&registry.collect("s", "i", 1));
    assert_eq!(values.keys().collect::<Vec<_>>(), vec!["fine"]);
    // The first element that made it still carries the agent's identity.
    assert_eq!(registry.collect("s", "i", 1).meter_data[0].service, "s");
}

#[test]
fn histograms_go_out_per_bucket_with_lower_bounds() {
    let registry = MeterRegistry::new();
    let h = registry
        .histogram("latency_ms", &[10.0, 100.0])
        .label("route", "/pay")
        .build()
        .unwrap();
    for v in [1.0, 5.0, 20.0, 200.0, 300.0, 400.0] {
        h.observe(v);
    }
    let report = registry.collect("s", "i", 1);
    let Some(Metric::Histogram(hist)) = &report.meter_data[0].metric else {
        panic!("{report:?}");
    };
    assert_eq!(hist.name, "latency_ms");
    assert_eq!(
        hist.labels,
        vec![v3::Label {
            name: "route".into(),
            value: "/pay".into()
        }]
    );
    let buckets: Vec<(f64, i64, bool)> = hist
        .values
        .iter()
        .map(|b| (b.bucket, b.count, b.is_negative_infinity))
        .collect();
    assert_eq!(
        buckets,
        vec![(0.0, 2, false), (10.0, 1, false), (100.0, 3, false)]
    );
    // Since start: the next period repeats the counts.
    let again = registry.collect("s", "i", 2);
    assert_eq!(again.meter_data[0].metric, report.meter_data[0].metric);
    // Other bounds under the same name and labels: refused.
    let err = registry
        .histogram("latency_ms", &[5.0])
        .label("route", "/pay")
        .build()
        .unwrap_err();
    assert!(matches!(err, MeterError::Conflict { .. }), "{err}");
    // The same bounds in another order: the same histogram.
    let same = registry
        .histogram("latency_ms", &[100.0, 0.0, 10.0])
        .label("route", "/pay")
        .build()
        .unwrap();
    assert_eq!(same.buckets(), h.buckets());
}

#[test]
fn validation_and_limits() {
    let registry = MeterRegistry::with_max_meters(2);
    for bad in ["", "9lives", "a-b", "a.b", "ünï"] {
        let err = registry.counter(bad).build().unwrap_err();
        assert!(matches!(err, MeterError::InvalidName { .. }), "{err}");
    }
    let err = registry
        .gauge("g", || 0.0)
        .label("x y", "1")
        .build()
        .unwrap_err();
    assert!(matches!(err, MeterError::InvalidLabelName { .. }), "{err}");
    let err = registry
        .histogram("h", &[1.0])
        .label("le", "1")
        .build()
        .unwrap_err();
    assert!(matches!(err, MeterError::ReservedLabel { .. }), "{err}");
    let err = registry
        .counter(names::PROCESS_THREADS)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("built-in"), "{err}");

    registry.counter("one").build().unwrap();
    registry.gauge("two", || 0.0).build().unwrap();
    let err = registry.counter("three").build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "meter \"three\" not registered: the registry already holds 2 meters"
    );
    // An existing meter is still found at the limit.
    assert!(registry.counter("one").build().is_ok());
    let err = registry.gauge("one", || 0.0).build().unwrap_err();
    assert!(matches!(err, MeterError::Conflict { .. }), "{err}");
}

#[test]
fn built_in_groups_are_collected() {
    let registry = MeterRegistry::new();
    registry.register_process_meters();
    registry.register_process_meters();
    registry.register_agent_health(|| AgentHealth {
        segments_created: Some(9),
        ..AgentHealth::from(crate::reporter::ReporterStats {
            sent: 7,
            ..Default::default()
        })
    });
    let values = singles(&registry.collect("s", "i", 1));
    assert_eq!(values[names::AGENT_SEGMENTS_SENT].1, 7.0);
    assert_eq!(values[names::AGENT_SEGMENTS_CREATED].1, 9.0);
    assert!(!values.contains_key(names::AGENT_SEGMENTS_FINISHED));
    if cfg!(target_os = "linux") {
        assert!(values[names::PROCESS_THREADS].1 >= 1.0);
    }
    // Replacing the health source keeps one group.
    registry.register_agent_health(AgentHealth::default);
    let values = singles(&registry.collect("s", "i", 2));
    assert!(!values.contains_key(names::AGENT_SEGMENTS_SENT));
}

#[cfg(feature = "grpc")]
#[test]
fn tokio_meters_are_collected() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let registry = MeterRegistry::new();
    registry.register_tokio_runtime(runtime.handle());
    let values = singles(&registry.collect("s", "i", 1));
    assert_eq!(values[names::TOKIO_WORKERS].1, 1.0);
    assert!(values.contains_key(names::TOKIO_ALIVE_TASKS));
    assert!(values.contains_key(names::TOKIO_GLOBAL_QUEUE_DEPTH));
}

/// The shipped OAP file, read as text: the rules' names and the meters their expressions use.
struct MalFile {
    text: String,
    rule_names: Vec<String>,
    used: BTreeSet<String>,
}

fn mal_file() -> MalFile {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../oap/meter-analyzer-config/rust-runtime.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut rule_names = Vec::new();
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        if let Some(name) = line.strip_prefix("name:") {
            rule_names.push(name.trim().to_owned());
        } else if let Some(exp) = line.strip_prefix("exp:") {
            // Identifiers followed by anything but `(`: meters (functions such as `increase`
            // are followed by `(`; `PT1M` is inside quotes and not `instance_rust_*`).
            let bytes = exp.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if i > start {
                    let word = &exp[start..i];
                    if word.starts_with("instance_rust_") && bytes.get(i) != Some(&b'(') {
                        used.insert(word.to_owned());
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
    MalFile {
        text,
        rule_names,
        used,
    }
}

#[test]
fn the_oap_file_uses_every_meter_the_agent_emits_and_no_other() {
    let mal = mal_file();
    let emitted: BTreeSet<String> = names::ALL.iter().map(|n| (*n).to_owned()).collect();
    let unused: Vec<_> = emitted.difference(&mal.used).collect();
    let unknown: Vec<_> = mal.used.difference(&emitted).collect();
    assert!(
        unused.is_empty(),
        "emitted but not in rust-runtime.yaml: {unused:?}"
    );
    assert!(
        unknown.is_empty(),
        "in rust-runtime.yaml but never emitted: {unknown:?}"
    );
}

#[test]
fn the_oap_file_has_the_runtime_files_shape() {
    let mal = mal_file();
    let lines: Vec<&str> = mal.text.lines().collect();
    assert!(lines.contains(&"expSuffix: instance(['service'], ['instance'], Layer.GENERAL)"));
    assert!(lines.contains(&"metricPrefix: meter"));
    assert!(lines.contains(&"metricsRules:"));
    // Rule names are unique identifiers (OAP stores each as `meter_<name>`).
    let mut seen = BTreeSet::new();
    for name in &mal.rule_names {
        assert!(error::is_identifier(name), "{name}");
        assert!(seen.insert(name), "rule {name} twice");
    }
    assert_eq!(mal.rule_names.len(), names::ALL.len());
}

#[test]
fn the_dashboard_shows_the_files_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../oap/ui-initialized-templates/general/rust-instance.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut shown = BTreeSet::new();
    for (at, _) in text.match_indices("meter_instance_rust_") {
        let word: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        shown.insert(word);
    }
    let stored: BTreeSet<String> = mal_file()
        .rule_names
        .iter()
        .map(|n| format!("meter_{n}"))
        .collect();
    assert_eq!(shown, stored);
}
