//! What the gRPC reporter tells OAP about the instance, over real gRPC on loopback.

use std::time::Duration;

use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for, eventually, grpc_tracer};

fn values(collector: &Collector, key: &str) -> Vec<String> {
    collector
        .instance_properties()
        .first()
        .map(|first| {
            first
                .properties
                .iter()
                .filter(|p| p.key == key)
                .map(|p| p.value.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_is_an_instance_property_when_configured() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).namespace("blue"));
    assert!(eventually(WAIT, || !collector.instance_properties().is_empty()).await);
    assert_eq!(values(&collector, "namespace"), ["blue"]);
    assert_eq!(values(&collector, "language"), ["rust"]);
    tracer.reporter().shutdown(Duration::from_secs(5));

    let plain = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(plain.addr()));
    assert!(eventually(WAIT, || !plain.instance_properties().is_empty()).await);
    assert!(values(&plain, "namespace").is_empty());
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_the_reporter_is_neither_connected_nor_available() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    assert!(tracer.reporter().is_available());
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert!(!stats.connected);
    assert!(!tracer.stats().connected);
    assert!(!tracer.reporter().is_available());
    // Nothing more reaches the collector, and no new trace starts.
    assert!(!tracer.entry_span("late", &()).is_recording());
}
