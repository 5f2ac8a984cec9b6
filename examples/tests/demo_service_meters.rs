//! `demo-service` with `SW_AGENT_METER_REPORTER_PERIOD=1` delivers its meters to a collector
//! within its first periods (the test waits for them with a generous deadline).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skytrace_collector::Collector;
use skytrace_collector::skytrace_proto::v3::meter_data::Metric;

/// Kills the child process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_service_delivers_meters_in_its_first_period() {
    let collector = Collector::start().await.unwrap();
    let _child = Running(
        Command::new(env!("CARGO_BIN_EXE_demo-service"))
            .args(["--addr", &free_addr()])
            .env(
                "SW_AGENT_COLLECTOR_BACKEND_SERVICES",
                collector.addr().to_string(),
            )
            .env("SW_AGENT_METER_REPORTER_PERIOD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let arrived = collector
        .wait_for(Duration::from_secs(30), |r| {
            r.meters
                .first()
                .is_some_and(|first| first.service == "demo-service")
                && r.meters.iter().any(|d| {
                    matches!(&d.metric, Some(Metric::SingleValue(v))
                        if v.name == "instance_rust_tokio_workers" && v.value >= 1.0)
                })
        })
        .await;
    assert!(
        arrived,
        "no meters from demo-service: {:?}",
        collector.meters()
    );
}
