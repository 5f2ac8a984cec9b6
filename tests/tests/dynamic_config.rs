//! OAP's dynamic configuration over real gRPC on loopback: the collector serves
//! `ConfigurationDiscoveryCommand`s, the agent started by `skytrace::init` fetches them every
//! second and applies them to the settings in force. Each test waits for the collector's count
//! of configuration requests to move (no timing assertions). The tests share the global tracer,
//! so they run one at a time.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use skytrace::integrations::axum::SkytraceLayer;

use skytrace::{Config, TracerGuard};
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, eventually};

/// One test at a time: each installs the global tracer.
static GLOBAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start(collector: &Collector) -> TracerGuard {
    let config = Config::builder()
        .service_name("svc")
        .instance_name("svc-1")
        .backend_services(collector.addr().to_string())
        .ignore_paths("/health")
        .dynamic_config_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    skytrace::init(config).unwrap()
}

/// A service on the global tracer: `/users/{id}` and `/orders/{id}`, traced by the axum layer.
async fn serve() -> SocketAddr {
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(SkytraceLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// GETs `path`, and returns the endpoints of the segments the collector has received since.
async fn traced(collector: &Collector, addr: SocketAddr, path: &str) -> Vec<String> {
    let before = collector.segment_count();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    // A marker trace after the request: once it arrives, the request's segment (if any) has
    // arrived before it (one reporter, one queue, in order).
    drop(skytrace::Span::root_entry("marker"));
    assert!(
        collector
            .wait_for(WAIT, |r| r
                .segments
                .iter()
                .skip(before)
                .any(|s| s.spans[0].operation_name == "marker"))
            .await
    );
    collector.segments()[before..]
        .iter()
        .map(|s| s.spans[0].operation_name.clone())
        .filter(|name| name != "marker")
        .collect()
}

/// Waits until the collector has answered `more` configuration requests beyond what it has now:
/// the agent has then handled at least `more - 1` answers.
async fn fetches(collector: &Collector, more: usize) {
    let now = collector.configuration_requests().len();
    let moved = collector
        .wait_for(WAIT, |r| r.configuration_requests.len() >= now + more)
        .await;
    assert!(moved, "the agent stopped fetching its configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignore_rule_from_oap_applies_and_an_empty_command_restores_the_configured_one() {
    let _one = GLOBAL.lock().await;
    let collector = Collector::builder()
        .dynamic_config([("agent.trace.ignore_path", "/users/**")])
        .start()
        .await
        .unwrap();
    let guard = start(&collector);
    let tracer = guard.tracer().unwrap().clone();
    let addr = serve().await;
    fetches(&collector, 2).await;
    assert!(eventually(WAIT, || skytrace::is_ignored_path("/users/7")).await);
    // A request to /users/7 is not traced any more; /orders/7 still is.
    assert_eq!(
        traced(&collector, addr, "/users/7").await,
        Vec::<String>::new()
    );
    assert_eq!(
        traced(&collector, addr, "/orders/7").await,
        ["GET:/orders/{id}"]
    );
    assert!(
        !skytrace::is_ignored_path("/health"),
        "OAP's list replaces the configured one"
    );
    assert!(!skytrace::is_ignored_path("/orders/7"));
    assert_eq!(tracer.settings().ignore_paths, ["/users/**"]);

    // The UUID received is echoed, and then OAP answers nothing.
    fetches(&collector, 2).await;
    let requests = collector.configuration_requests();
    assert_eq!(requests[0].uuid, "", "nothing received yet");
    assert_eq!(requests[0].service, "svc");
    let last = &requests[requests.len() - 1].uuid;
    assert!(!last.is_empty());
    assert_eq!(&requests[requests.len() - 2].uuid, last);

    // A configuration without pairs: every key back to its configured value.
    collector.set_dynamic_config(Vec::<(String, String)>::new());
    fetches(&collector, 3).await;
    assert!(eventually(WAIT, || tracer.settings().ignore_paths == ["/health"]).await);
    assert!(!skytrace::is_ignored_path("/users/7"));
    assert!(skytrace::is_ignored_path("/health"));
    assert_eq!(
        traced(&collector, addr, "/users/7").await,
        ["GET:/users/{id}"]
    );
    guard.shutdown(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_in_three_seconds_with_sample_n_per_3_secs_1() {
    let _one = GLOBAL.lock().await;
    let collector = Collector::builder()
        .dynamic_config([("agent.sample_n_per_3_secs", "1")])
        .start()
        .await
        .unwrap();
    let guard = start(&collector);
    let tracer = guard.tracer().unwrap().clone();
    fetches(&collector, 2).await;
    assert!(eventually(WAIT, || tracer.settings().sample_per_3_secs == 1).await);
    let recorded = (0..20)
        .filter(|_| skytrace::Span::root_entry("job").is_recording())
        .count();
    // One per 3-second window: two only if the loop crossed a window's end.
    assert!(
        (1..=2).contains(&recorded),
        "{recorded} of 20 traces recorded"
    );
    guard.shutdown(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_changes_nothing_and_unknown_keys_are_ignored() {
    let _one = GLOBAL.lock().await;
    let collector = Collector::builder()
        .dynamic_config([("agent.span_limit_per_segment", "50")])
        .start()
        .await
        .unwrap();
    let guard = start(&collector);
    let tracer = guard.tracer().unwrap().clone();
    fetches(&collector, 2).await;
    assert!(eventually(WAIT, || tracer.settings().span_limit == 50).await);
    let before = tracer.settings();
    collector.set_dynamic_config([
        ("agent.span_limit_per_segment", "50"),
        ("agent.sample_n_per_3_secs", "lots"),
        ("agent.unknown.key", "x"),
        ("plugin.whatever", "y"),
    ]);
    // The answer with the bad value is fetched and handled, then echoed.
    fetches(&collector, 3).await;
    let requests = collector.configuration_requests();
    let last = &requests[requests.len() - 1].uuid;
    assert_eq!(
        &requests[requests.len() - 2].uuid,
        last,
        "fetched and settled"
    );
    assert_eq!(tracer.settings(), before);
    assert!(tracer.stats().connected, "a bad value is no failure");
    guard.shutdown(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_of_zero_never_fetches() {
    let _one = GLOBAL.lock().await;
    let collector = Collector::start().await.unwrap();
    let config = Config::builder()
        .service_name("svc")
        .backend_services(collector.addr().to_string())
        .heartbeat_period(Duration::from_secs(1))
        .dynamic_config_interval(Duration::ZERO)
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    // Three heartbeats go by without a fetch.
    assert!(collector.wait_for(WAIT, |r| r.pings.len() >= 3).await);
    assert!(collector.configuration_requests().is_empty());
    guard.shutdown(Duration::from_secs(1));
}
