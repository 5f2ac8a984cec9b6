//! Configuration and propagation a hostile user would try (issue 12 items 4, 7, 9 and 10, issue 11
//! item 5's service name, issue 17 item 3), through the public API.
//!
//! The tests here run one at a time (`SERIAL`): one changes the process environment, one installs
//! the global tracer.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use skytrace::logs::LogSettings;
use skytrace::{
    Config, ConfigError, Correlation, DiscardReporter, InitError, ReporterKind, SW8_MAX_LEN, Span,
    Sw8Header, Tracer,
};
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for, grpc_tracer};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on a runtime of its own (the `SERIAL` guard is held outside it, not across awaits).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

fn env_error(pairs: &[(&str, &str)]) -> ConfigError {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match Config::builder().env(|name| map.get(name).cloned()) {
        Ok(b) => panic!("{pairs:?} accepted: {b:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_huge_queue_size_is_an_error_not_a_panic() {
    let _serial = serial();
    // 2^61: tokio's channel panicked inside `init`.
    let err = env_error(&[("SW_AGENT_QUEUE_SIZE", "2305843009213693952")]);
    assert_eq!(err.variable, "SW_AGENT_QUEUE_SIZE");
    assert_eq!(err.value, "2305843009213693952");
    assert!(err.to_string().contains("1048576"), "{err}");

    let err = Config::builder()
        .queue_size(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.variable, "queue_size");
    assert_eq!(err.value, usize::MAX.to_string());

    // The largest allowed size starts.
    let config = Config::builder()
        .queue_size(1 << 20)
        .reporter(ReporterKind::Discard)
        .build()
        .unwrap();
    drop(skytrace::init(config).unwrap());
}

#[test]
fn the_log_reporters_numbers_are_bounded_errors_not_panics() {
    let _serial = serial();
    // 2^61: tokio's semaphore panicked inside `init` (exit 101).
    for (name, value) in [
        (
            "SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE",
            "2305843009213693952",
        ),
        ("SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE", "0"),
        ("SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE", "8388608"),
        (
            "SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE",
            "18446744073709551616",
        ),
    ] {
        let err = LogSettings::default()
            .env(|n| (n == name).then(|| value.to_owned()))
            .unwrap_err();
        assert_eq!((err.variable.as_str(), err.value.as_str()), (name, value));
        assert!(err.to_string().contains("1048576"), "{err}");
    }
    // Settings made in code are checked by the builder, naming it.
    let mut logs = LogSettings::default();
    logs.max_buffer_size = usize::MAX;
    let err = Config::builder().log_reporter(logs).build().unwrap_err();
    assert_eq!(err.variable, "log_reporter.max_buffer_size");
    // The largest allowed buffer starts.
    let mut logs = LogSettings::default();
    logs.max_buffer_size = 1 << 20;
    let config = Config::builder()
        .log_reporter(logs)
        .backend_services(skytrace_tests::unused_addr().to_string())
        .build()
        .unwrap();
    skytrace::init(config)
        .unwrap()
        .shutdown(Duration::from_millis(100));
}

#[test]
fn other_unbounded_values_are_errors() {
    let _serial = serial();
    let cases: &[(&str, &str)] = &[
        ("SW_AGENT_SPAN_LIMIT", "18446744073709551615"),
        (
            "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD",
            "18446744073709551615",
        ),
        ("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", "0"),
        ("SW_AGENT_CORRELATION_MAX_KEY_COUNT", "1000000"),
        ("SW_AGENT_CORRELATION_MAX_VALUE_SIZE", "1000000000"),
        ("SW_AGENT_SQL_PARAMETERS_MAX_LENGTH", "18446744073709551616"),
        ("SW_AGENT_NAME", &"x".repeat(300)),
        ("SW_AGENT_INSTANCE_NAME", "a\u{0}b"),
        ("SW_AGENT_AUTHENTICATION", &"t".repeat(10_000)),
        ("SW_AGENT_TRACE_IGNORE_PATH", &"/a,".repeat(30_000)),
    ];
    for (name, value) in cases {
        let err = env_error(&[(name, value)]);
        assert_eq!((err.variable.as_str(), err.value.as_str()), (*name, *value));
    }
    let err = Config::builder()
        .heartbeat_period(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.variable, "heartbeat_period");
}

#[test]
fn a_non_utf8_environment_value_is_an_error_naming_the_variable() {
    let _serial = serial();
    #[cfg(unix)]
    {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;

        let value = OsString::from_vec(b"orders-\xff".to_vec());
        // SAFETY: the tests of this file run one at a time (`SERIAL`) and start no other thread
        // before this point, so nothing reads the environment while it changes.
        unsafe { std::env::set_var("SW_AGENT_NAME", &value) };
        let result = Config::from_env();
        // SAFETY: as above.
        unsafe { std::env::remove_var("SW_AGENT_NAME") };
        let err = result.unwrap_err();
        assert_eq!(err.variable, "SW_AGENT_NAME");
        assert_eq!(err.value, "orders-\u{fffd}");
        assert!(err.to_string().contains("UTF-8"), "{err}");

        let err = Config::builder()
            .env_os(|name| (name == "SW_AGENT_CLUSTER").then(|| value.clone()))
            .unwrap_err();
        assert_eq!(err.variable, "SW_AGENT_CLUSTER");
    }
}

#[test]
fn backends_must_be_host_and_port() {
    let _serial = serial();
    for bad in [
        "::1",
        "::1:11800",
        "a?b:11800",
        "%zz:11800",
        "oap:0",
        "[::1]",
    ] {
        let err = env_error(&[("SW_AGENT_COLLECTOR_BACKEND_SERVICES", bad)]);
        assert_eq!(err.value, bad);
        let message = err.to_string();
        assert!(
            message.contains("host:port") || message.contains("[::1]:11800"),
            "{message}"
        );
        let err = Config::builder().backend_services(bad).build().unwrap_err();
        assert_eq!(err.variable, "backend_services");
    }
    let err = env_error(&[("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "::1:11800")]);
    assert!(err.expected.contains("[::1]:11800"), "{err}");

    let config = Config::builder()
        .backend_services("[::1]:11800,oap.example.com:11800,10.0.0.1:11800")
        .build()
        .unwrap();
    assert_eq!(
        config.backends(),
        ["[::1]:11800", "oap.example.com:11800", "10.0.0.1:11800"]
    );
}

#[test]
fn an_ipv6_backend_in_brackets_receives_segments() {
    let _serial = serial();
    block_on(ipv6_backend());
}

async fn ipv6_backend() {
    let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
    // No IPv6 loopback fails the test rather than passing it unrun: a skip reported as a pass
    // would hide the one thing it checks.
    let collector = match Collector::builder().addr(addr).start().await {
        Ok(c) => c,
        Err(e) => panic!("this test needs an IPv6 loopback ([::1]); binding it failed: {e}"),
    };
    let backend = collector.addr().to_string();
    assert!(backend.starts_with("[::1]:"), "{backend}");
    let tracer = grpc_tracer(config_for(collector.addr()));
    drop(tracer.entry_span("GET:/v6", &http::HeaderMap::new()));
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments[0].spans[0].operation_name, "GET:/v6");
    collector.shutdown().await;
}

#[test]
fn namespace_and_cluster_are_bounded_and_plain() {
    let _serial = serial();
    // A 100 KB namespace silently turned propagation off.
    let huge = "n".repeat(100_000);
    let err = env_error(&[("SW_AGENT_NAMESPACE", &huge)]);
    assert_eq!(err.variable, "SW_AGENT_NAMESPACE");
    for bad in ["a|b", "a\nb", "\u{7f}"] {
        assert_eq!(
            env_error(&[("SW_AGENT_CLUSTER", bad)]).variable,
            "SW_AGENT_CLUSTER"
        );
        let err = Config::builder().namespace(bad).build().unwrap_err();
        assert_eq!(err.variable, "namespace");
    }
}

#[test]
fn the_service_name_carries_namespace_and_cluster() {
    let _serial = serial();
    block_on(service_name_parts());
}

async fn service_name_parts() {
    let config = Config::builder()
        .env(|name| match name {
            "SW_AGENT_NAME" => Some("orders".into()),
            "SW_AGENT_NAMESPACE" => Some("prod".into()),
            "SW_AGENT_CLUSTER" => Some("eu-1".into()),
            _ => None,
        })
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(config.service_name(), "orders|prod|eu-1");
    assert_eq!((config.namespace(), config.cluster()), ("prod", "eu-1"));

    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(
        config_for(collector.addr())
            .service_name("orders")
            .cluster("eu-1"),
    );
    drop(tracer.entry_span("GET:/", &http::HeaderMap::new()));
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments[0].service, "orders|eu-1");
    collector.shutdown().await;
}

#[test]
fn errors_print_their_message_as_debug() {
    let _serial = serial();
    let err = env_error(&[("SW_AGENT_SAMPLE", "lots")]);
    assert_eq!(
        format!("{err:?}"),
        r#"skytrace: invalid value for SW_AGENT_SAMPLE: "lots" (expected an integer >= -1)"#
    );
    assert_eq!(format!("{err:?}"), err.to_string());
    // What `main() -> Result<(), Box<dyn Error>>` prints.
    let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
    assert_eq!(format!("{boxed:?}"), err.to_string());
    let init = InitError::from(err.clone());
    assert_eq!(format!("{init:?}"), init.to_string());
    // One message, whichever way it arrives: `Config::from_env()?` or `init(…)?`.
    assert_eq!(init.to_string(), err.to_string());
}

#[test]
fn inject_cuts_a_long_endpoint_so_the_callee_accepts_the_header() {
    let _serial = serial();
    let tracer = Tracer::new(
        &Config::builder().service_name("caller").build().unwrap(),
        DiscardReporter::new(),
    );
    // Issue 12: a 1,612-byte endpoint gave a 2,337-byte `sw8`.
    let endpoint = format!("GET:/{}", "p".repeat(1_607));
    assert_eq!(endpoint.len(), 1_612);
    let entry = tracer.entry_span(endpoint.clone(), &http::HeaderMap::new());
    let mut headers: HashMap<String, String> = HashMap::new();
    {
        let _in = entry.enter();
        let exit = Span::exit("GET /next", "callee:8080");
        assert!(exit.inject(&mut headers));
    }
    let value = &headers["sw8"];
    assert!(value.len() <= SW8_MAX_LEN, "{} bytes", value.len());
    let header = Sw8Header::decode(value).expect("the callee accepts it");
    assert!(endpoint.starts_with(&header.parent_endpoint));
    assert!(header.parent_endpoint.len() > 1_000);
    assert_eq!(header.parent_service, "caller");
    assert_eq!(header.target_address, "callee:8080");

    // The same through `Sw8Header` itself, and a short endpoint is untouched.
    let mut h = header.clone();
    h.parent_endpoint = endpoint.clone();
    let back = Sw8Header::decode(&h.encode()).unwrap();
    assert!(endpoint.starts_with(&back.parent_endpoint));
    h.parent_endpoint = "GET:/short".into();
    assert_eq!(Sw8Header::decode(&h.encode()), Ok(h));
}

#[test]
fn an_empty_correlation_value_removes_the_key() {
    let _serial = serial();
    let mut c = Correlation::new(3, 128);
    assert!(c.put("k", "v"));
    assert!(c.put("k", ""));
    assert_eq!(c.get("k"), None);
    assert!(c.is_empty());

    let tracer = Tracer::new(&Config::builder().build().unwrap(), DiscardReporter::new());
    let entry = tracer.entry_span("GET:/", &http::HeaderMap::new());
    let mut headers: HashMap<String, String> = HashMap::new();
    {
        let _in = entry.enter();
        assert!(skytrace::put_correlation("k", "v"));
        assert!(skytrace::put_correlation("keep", "1"));
        assert!(skytrace::put_correlation("k", ""));
        assert_eq!(skytrace::get_correlation("k"), None);
        let exit = Span::exit("call", "callee:80");
        assert!(exit.inject(&mut headers));
    }
    let sent = Correlation::decode(&headers["sw8-correlation"], 3, 128);
    assert_eq!(sent.iter().collect::<Vec<_>>(), vec![("keep", "1")]);
}

#[test]
fn ignore_paths_follow_ant_rules() {
    let _serial = serial();
    let config = Config::builder()
        .reporter(ReporterKind::Discard)
        .ignore_paths("/static/**/*.css, /**/x*, /a/**/b/*/c, /health")
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    for path in [
        "/static/a.css",
        "/static/a/b/c.css",
        "/a/x/b/xy",
        "/a/x/b/y/b/z/c",
        "/health",
    ] {
        assert!(skytrace::is_ignored_path(path), "{path} should be ignored");
    }
    for path in ["/static/a.js", "/healthz", "/health/", "/a/b/c", "/y"] {
        assert!(!skytrace::is_ignored_path(path), "{path} should be traced");
    }
    guard.shutdown(Duration::from_secs(1));

    // A hostile 10 KB pattern is accepted and does not hang a request.
    let hostile = format!("/{}", "*a".repeat(5_000));
    let config = Config::builder()
        .reporter(ReporterKind::Discard)
        .ignore_paths(hostile)
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let path = format!("/{}b", "a".repeat(2_000));
    for _ in 0..100 {
        assert!(!skytrace::is_ignored_path(&path));
    }
    guard.shutdown(Duration::from_secs(1));
}
