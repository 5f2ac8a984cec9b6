//! The agent's own gRPC client says nothing in the application's log. With the README's
//! subscriber (no level filter: TRACE), tonic, hyper and h2 on the reporter's thread would put
//! thousands of lines in the application's output; none may reach it, while the
//! application's own events still do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skytrace::Span;
use skytrace::integrations::tracing::SkyWalkingLayer;
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

/// Counts the events it sees by the thread they were made on.
#[derive(Clone, Default)]
struct ByThread(Arc<Mutex<HashMap<String, usize>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ByThread {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        *self.0.lock().unwrap().entry(thread).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_of_the_agents_threads_reaches_the_applications_subscriber() {
    let seen = ByThread::default();
    let subscriber = tracing_subscriber::registry()
        .with(SkyWalkingLayer::new())
        .with(seen.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("quiet-threads")
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    for i in 0..200 {
        let entry = Span::root_entry("GET:/quiet");
        let _in = entry.enter();
        tracing::warn!(request = i, "the application's own event");
        drop(_in);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Segments, logs, meters and keep-alives all went out over gRPC meanwhile.
    let busy = collector
        .wait_for(WAIT, |r| {
            r.segments.len() >= 200 && r.logs.len() >= 200 && !r.meters.is_empty()
        })
        .await;
    assert!(busy, "{:?}", collector.received());
    guard.shutdown(Duration::from_secs(5));
    let seen = seen.0.lock().unwrap();
    let agents: usize = seen
        .iter()
        .filter(|(thread, _)| thread.starts_with("skytrace"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(agents, 0, "{seen:?}");
    let own: usize = seen.values().sum();
    assert!(own >= 200, "the application's own events: {seen:?}");
}
