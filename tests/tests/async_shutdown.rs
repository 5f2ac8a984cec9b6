//! `TracerGuard::shutdown_async` inside a current-thread runtime that also runs the collector:
//! were the runtime's only thread blocked while the reporter delivers, the collector could not
//! answer and the segment would not be acknowledged. (Its own test binary: it installs the
//! global tracer.)

use std::time::Duration;

use skytrace::Span;
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for};

#[tokio::test(flavor = "current_thread")]
async fn shutdown_async_delivers_without_blocking_the_runtime() {
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("graceful")
        .keep_tracing(true)
        .build()
        .unwrap();
    let agent = skytrace::init(config).unwrap();

    drop(Span::entry("GET:/last-request", &()));

    let stats = tokio::time::timeout(WAIT, agent.shutdown_async(Duration::from_secs(10)))
        .await
        .expect("shutdown_async resolves");
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!((stats.dropped, stats.failed, stats.queued), (0, 0, 0));
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].service, "graceful");
    assert_eq!(segments[0].spans[0].operation_name, "GET:/last-request");

    // Uninstalled: nothing is recorded any more.
    assert!(!Span::entry("GET:/after", &()).is_recording());
}
