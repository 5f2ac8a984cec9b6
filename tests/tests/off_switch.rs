//! `SW_AGENT_ENABLE=false` switches the agent off without a rebuild: no reporter thread, no
//! connection, no span recorded. (Its own test binary: `init` installs a process-wide tracer.)

use std::time::Duration;

use skytrace::{Config, LocalSpan, Span};
use skytrace_collector::Collector;

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "current_thread")]
async fn switched_off_the_agent_starts_nothing_and_records_nothing() {
    let collector = Collector::start().await.unwrap();
    let backend = collector.addr().to_string();
    let env = |name: &str| match name {
        "SW_AGENT_ENABLE" => Some("false".to_owned()),
        "SW_AGENT_NAME" => Some("off".to_owned()),
        "SW_AGENT_COLLECTOR_BACKEND_SERVICES" => Some(backend.clone()),
        _ => None,
    };
    let config = Config::builder().env(env).unwrap().build().unwrap();
    assert!(!config.enabled());
    let agent = skytrace::init(config).unwrap();
    assert!(agent.tracer().is_none());

    let entry = Span::root_entry("job");
    assert!(!entry.is_recording());
    {
        let _in = entry.enter();
        assert!(!LocalSpan::enter("step").is_recording());
        assert!(!Span::exit("call", "peer:1").is_recording());
    }
    drop(entry);
    assert!(
        !thread_names().iter().any(|n| n.starts_with("skytrace")),
        "{:?}",
        thread_names()
    );
    // Time for a reporter, had one started, to connect and send its instance properties.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(collector.instance_properties().is_empty());
    assert_eq!(collector.segment_count(), 0);
    assert_eq!(agent.shutdown(Duration::from_secs(1)).sent, 0);

    // A bad value is an error naming the variable, not a silent "on".
    let err = Config::builder()
        .env(|name: &str| (name == "SW_AGENT_ENABLE").then(|| "nope".to_owned()))
        .unwrap_err();
    assert_eq!(err.variable, "SW_AGENT_ENABLE");
}
