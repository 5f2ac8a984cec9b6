//! Property tests (issue 12, "Fuzzing that stays"): the decoders of `sw8`, `sw8-correlation` and
//! `sw8-x` never panic and give back every valid value they encode; configuration parsing never
//! panics and every error names its variable. (The ignore-path matcher's properties are unit
//! tests in `runtime/src/glob.rs`: the compiled matcher is internal.)
//!
//! Case counts are bounded so the file runs in seconds; `PROPTEST_CASES=100000` runs longer.
//! Failing inputs proptest finds are saved in `tests/proptest-regressions/properties.txt` and
//! replayed first on every run: commit them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use skytrace::{Config, Correlation, SW8_MAX_LEN, Sw8Extension, Sw8Header};

/// `cases` cases unless `PROPTEST_CASES` says otherwise; failures saved where they are kept.
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        // Relative to the package: `cargo test` runs in `tests/`.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..default
    }
}

/// Every variable `ConfigBuilder::env` reads.
const VARIABLES: &[&str] = &[
    "SW_AGENT_NAME",
    "SW_AGENT_INSTANCE_NAME",
    "SW_AGENT_NAMESPACE",
    "SW_AGENT_CLUSTER",
    "SW_AGENT_COLLECTOR_BACKEND_SERVICES",
    "SW_AGENT_AUTHENTICATION",
    "SW_AGENT_SAMPLE",
    "SW_AGENT_SPAN_LIMIT",
    "SW_AGENT_IGNORE_SUFFIX",
    "SW_AGENT_TRACE_IGNORE_PATH",
    "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD",
    "SW_AGENT_QUEUE_SIZE",
    "SW_AGENT_KEEP_TRACING",
    "SW_AGENT_CORRELATION_MAX_KEY_COUNT",
    "SW_AGENT_CORRELATION_MAX_VALUE_SIZE",
    "SW_AGENT_MAX_MESSAGE_SIZE",
    "SW_AGENT_ENABLE",
    "SW_AGENT_FORCE_TLS",
    "SW_AGENT_METER_REPORTER_ACTIVE",
    "SW_AGENT_METER_REPORTER_PERIOD",
    "SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE",
    "SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL",
    "SW_AGENT_SQL_PARAMETERS_MAX_LENGTH",
    "SW_AGENT_INSTANCE_PROPERTIES_JSON",
    "SW_INSTANCE_PROPERTIES_JSON",
];

/// Every `ConfigBuilder` setter whose value `build` checks.
const METHODS: &[&str] = &[
    "service_name",
    "instance_name",
    "namespace",
    "cluster",
    "backend_services",
    "authentication",
    "sample_per_3_secs",
    "span_limit",
    "ignore_suffix",
    "ignore_paths",
    "heartbeat_period",
    "queue_size",
    "correlation_max_keys",
    "correlation_max_value_size",
    "sql_parameters_max_length",
    "instance_property",
];

/// Text that is sometimes what a variable wants, sometimes close, sometimes garbage.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "-?[0-9]{1,25}",
        "[a-z0-9.:\\[\\]%?,_ -]{0,30}",
        prop::sample::select(vec![
            "true",
            "off",
            "-1",
            "0",
            "1048577",
            "[::1]:11800",
            "::1:11800",
            "oap:11800,oap2:11800",
            "/static/**/*.css",
            "a|b",
            r#"{"pod":"web-1","n":2}"#,
            r#"{"pod":null}"#,
        ])
        .prop_map(str::to_owned),
    ]
}

fn sw8_header() -> impl Strategy<Value = Sw8Header> {
    let text = || "\\PC{1,60}";
    (
        any::<bool>(),
        "\\PC{1,80}",
        "\\PC{1,80}",
        0..=i32::MAX,
        (
            text(),
            text(),
            prop_oneof!["\\PC{1,60}", "\\PC{1,1200}"],
            text(),
        ),
    )
        .prop_map(
            |(sampled, trace_id, parent_segment_id, parent_span_id, (s, i, e, a))| Sw8Header {
                sampled,
                trace_id,
                parent_segment_id,
                parent_span_id,
                parent_service: s,
                parent_service_instance: i,
                parent_endpoint: e,
                target_address: a,
            },
        )
}

/// The length of `h`'s value if nothing were cut.
fn uncut_len(h: &Sw8Header) -> usize {
    let b64 = |s: &str| s.len().div_ceil(3) * 4;
    1 + 7
        + h.parent_span_id.to_string().len()
        + [
            &h.trace_id,
            &h.parent_segment_id,
            &h.parent_service,
            &h.parent_service_instance,
            &h.parent_endpoint,
            &h.target_address,
        ]
        .iter()
        .map(|s| b64(s))
        .sum::<usize>()
}

/// Values shaped like `sw8`: eight dash-separated parts, each base64 or a little off.
fn sw8_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        "\\PC{0,20}".prop_map(|s| STANDARD.encode(s)),
        "[A-Za-z0-9+/=]{0,12}",
        "[0-9]{1,12}",
        Just(String::new()),
    ];
    proptest::collection::vec(part, 6..=10).prop_map(|parts| parts.join("-"))
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn sw8_decoding_never_panics(value in prop_oneof![any::<String>(), sw8_like()]) {
        let _ = Sw8Header::decode(&value);
    }

    #[test]
    fn sw8_round_trips_and_always_fits(h in sw8_header()) {
        let value = h.encode();
        prop_assert!(value.len() <= SW8_MAX_LEN, "{} bytes", value.len());
        let back = Sw8Header::decode(&value);
        prop_assert!(back.is_ok(), "{:?} for {:?}", back, h);
        let back = back.unwrap();
        if uncut_len(&h) <= SW8_MAX_LEN {
            prop_assert_eq!(back, h);
        } else {
            // Cut, never changed: the ids whole, the text fields prefixes of the originals.
            prop_assert_eq!(&back.trace_id, &h.trace_id);
            prop_assert_eq!(&back.parent_segment_id, &h.parent_segment_id);
            prop_assert_eq!(back.parent_span_id, h.parent_span_id);
            prop_assert!(h.parent_endpoint.starts_with(&back.parent_endpoint));
            prop_assert!(h.parent_service.starts_with(&back.parent_service));
            prop_assert!(h.parent_service_instance.starts_with(&back.parent_service_instance));
            prop_assert!(h.target_address.starts_with(&back.target_address));
        }
    }

    #[test]
    fn correlation_decoding_never_panics(
        value in prop_oneof![
            any::<String>(),
            "([A-Za-z0-9+/=]{0,8}[:,]){0,10}",
        ],
        keys in 0usize..8,
        size in 0usize..64,
    ) {
        let c = Correlation::decode(&value, keys, size);
        prop_assert!(c.iter().count() <= keys);
        prop_assert!(c.iter().all(|(k, v)| !k.is_empty() && !v.is_empty() && v.len() <= size));
    }

    #[test]
    fn correlation_round_trips(
        entries in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,40}"), 0..8),
        keys in 0usize..6,
        size in 0usize..64,
    ) {
        let mut c = Correlation::new(keys, size);
        for (k, v) in entries {
            let _ = c.put(k, v);
        }
        prop_assert_eq!(Correlation::decode(&c.encode(), keys, size), c);
    }

    #[test]
    fn sw8_x_decoding_never_panics(value in any::<String>()) {
        let _ = Sw8Extension::decode(&value);
    }

    #[test]
    fn sw8_x_round_trips(skip_analysis in any::<bool>(), send_time_ms in proptest::option::of(0..=i64::MAX)) {
        let x = Sw8Extension { skip_analysis, send_time_ms };
        prop_assert_eq!(Sw8Extension::decode(&x.encode()), x);
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn configuration_errors_name_their_variable(
        env in proptest::collection::btree_map(prop::sample::select(VARIABLES), value(), 0..6),
    ) {
        let env: BTreeMap<&str, String> = env;
        match Config::builder().env(|name| env.get(name).cloned()) {
            Err(e) => {
                prop_assert!(env.contains_key(e.variable.as_str()), "{e} names no given variable");
                prop_assert!(e.to_string().contains(&e.variable));
                prop_assert_eq!(format!("{e:?}"), e.to_string());
            }
            // What `env` accepted, `build` accepts too.
            Ok(builder) => {
                let built = builder.build();
                prop_assert!(built.is_ok(), "{:?}", built.err());
            }
        }
    }

    #[test]
    fn non_utf8_values_are_named(name in prop::sample::select(VARIABLES), bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let raw = OsString::from_vec(bytes.clone());
            let utf8 = String::from_utf8(bytes).is_ok();
            match Config::builder().env_os(|n| (n == name).then(|| raw.clone())) {
                Err(e) => prop_assert_eq!(e.variable, name),
                Ok(_) => prop_assert!(utf8, "non-UTF-8 {name} accepted"),
            }
        }
    }

    #[test]
    fn builder_errors_name_their_method(
        texts in proptest::collection::vec(value(), 8),
        numbers in proptest::collection::vec(prop_oneof![0usize..100_000, any::<usize>()], 5),
        sample in any::<i32>(),
        heartbeat in prop_oneof![0u64..5_000, any::<u64>()],
    ) {
        let result = Config::builder()
            .service_name(texts[0].clone())
            .instance_name(texts[1].clone())
            .namespace(texts[2].clone())
            .cluster(texts[3].clone())
            .backend_services(texts[4].clone())
            .authentication(texts[5].clone())
            .ignore_suffix(texts[6].clone())
            .ignore_paths(texts[7].clone())
            .sample_per_3_secs(sample)
            .span_limit(numbers[0])
            .queue_size(numbers[1])
            .correlation_max_keys(numbers[2])
            .correlation_max_value_size(numbers[3])
            .sql_parameters_max_length(numbers[4])
            .heartbeat_period(Duration::from_secs(heartbeat))
            .instance_property(texts[0].clone(), texts[1].clone())
            .build();
        if let Err(e) = result {
            prop_assert!(METHODS.contains(&e.variable.as_str()), "{e}");
        }
    }
}

/// A tracer keeping what it records, for the entry property below.
fn keeping_tracer() -> (
    skytrace::Tracer,
    std::sync::Arc<std::sync::Mutex<Vec<skytrace::Segment>>>,
) {
    #[derive(Clone, Default)]
    struct Keep(std::sync::Arc<std::sync::Mutex<Vec<skytrace::Segment>>>);
    impl skytrace::Reporter for Keep {
        fn report(&self, segment: skytrace::Segment) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(segment);
        }
    }
    let keep = Keep::default();
    let config = Config::builder().service_name("svc").build().unwrap();
    (skytrace::Tracer::new(&config, keep.clone()), keep.0)
}

/// Header values a hostile caller might send: valid `sw8`s, cut or spliced ones, and noise.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,64}",
        "[0-1]-[A-Za-z0-9+/=]{0,12}-[A-Za-z0-9+/=]{0,12}-[0-9-]{0,4}-[A-Za-z0-9+/=]{0,8}-[A-Za-z0-9+/=]{0,8}-[A-Za-z0-9+/=]{0,8}-[A-Za-z0-9+/=]{0,8}",
        Just(
            "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA=="
                .to_owned()
        ),
        "[A-Za-z0-9+/=:,]{0,80}",
    ]
}

proptest! {
    #![proptest_config(config(500))]

    /// An entry span made from any header map never panics, records one segment, and continues
    /// the caller's trace only from a valid `sw8` (a malformed one starts a fresh trace).
    #[test]
    fn an_entry_from_any_header_map_is_whole(
        sw8 in hostile_value(),
        correlation in hostile_value(),
        extension in hostile_value(),
    ) {
        let (tracer, kept) = keeping_tracer();
        let mut headers = http::HeaderMap::new();
        for (name, value) in [("sw8", &sw8), ("sw8-correlation", &correlation), ("sw8-x", &extension)] {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        let entry = tracer.entry_span("GET:/x", &headers);
        prop_assert!(entry.is_recording());
        {
            let _in = entry.enter();
            let exit = skytrace::Span::exit("call", "peer:1");
            let mut out = http::HeaderMap::new();
            prop_assert!(exit.inject(&mut out));
            let written = out["sw8"].to_str().unwrap();
            prop_assert!(Sw8Header::decode(written).is_ok(), "{written}");
        }
        drop(entry);
        let segments = kept.lock().unwrap();
        prop_assert_eq!(segments.len(), 1);
        let continued = headers
            .get("sw8")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Sw8Header::decode(v).ok());
        match continued {
            Some(header) => prop_assert_eq!(segments[0].trace_id(), header.trace_id.as_str()),
            None => prop_assert_eq!(segments[0].trace_id(), segments[0].segment_id()),
        }
    }
}
