//! A real Kafka-protocol broker for the Kafka tests: `tansu` (`scripts/ensure-kafka` installs
//! it), started on a free loopback port with in-memory storage, stopped when dropped; and a
//! consumer that reads a topic from its start, as OAP's kafka-fetcher would.
//!
//! A test that needs the broker fails when `tansu` is missing: it never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use crate::WAIT;

/// A running tansu broker.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    /// The port clients are told to connect to (the listener's own, or a TLS terminator's in
    /// front of it).
    advertised: u16,
    /// TLS for this helper's own clients, when the advertised port is a terminator's.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Where `tansu` is: on `PATH`, or where `cargo install` puts it.
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let candidate = home.join("bin").join("tansu");
    assert!(
        candidate.is_file(),
        "tansu (the Kafka-protocol broker these tests need) is missing: run scripts/ensure-kafka"
    );
    candidate
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it answers.
    pub async fn start() -> Broker {
        Broker::start_on(crate::unused_addr().port()).await
    }

    /// Starts a broker on `port` (a restart on the same address) and waits until it answers.
    pub async fn start_on(port: u16) -> Broker {
        Broker::start_behind(port, port, None).await
    }

    /// Starts a broker listening on `port` (plain TCP) that tells its clients to connect to
    /// `advertised` instead: a TLS terminator forwarding to `port`, which this helper's own
    /// clients reach with `tls`.
    pub async fn start_behind(
        port: u16,
        advertised: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let mut command = Command::new(tansu());
        command
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &advertised_url]);
        // `SKYTRACE_TANSU_LOG=file`: tansu's debug log there, for finding out why it refused.
        let log = std::env::var_os("SKYTRACE_TANSU_LOG").and_then(|path| {
            command.env("RUST_LOG", "debug");
            std::fs::File::create(path).ok()
        });
        let (stdout, stderr) = match log.and_then(|f| Some((f.try_clone().ok()?, f))) {
            Some((out, err)) => (Stdio::from(out), Stdio::from(err)),
            None => (Stdio::null(), Stdio::null()),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("tansu starts");
        let broker = Broker {
            child: Some(child),
            port,
            advertised,
            tls,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if broker.try_client().await.is_some() {
                return broker;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tansu did not answer on {url} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:port` (the advertised port), for `SW_KAFKA_BOOTSTRAP_SERVERS`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    /// The port the broker itself listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the broker (and waits for the process to end).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn try_client(&self) -> Option<Client> {
        let mut builder =
            ClientBuilder::new(vec![self.addr()]).backoff_config(rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                base: 2.0,
                deadline: Some(Duration::from_secs(1)),
            });
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        let build = builder.build();
        tokio::time::timeout(Duration::from_secs(3), build)
            .await
            .ok()?
            .ok()
    }

    /// A client of the broker.
    pub async fn client(&self) -> Client {
        self.try_client().await.expect("a client of the broker")
    }

    /// Creates `topics` with `partitions` partitions each.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) {
        let client = self.client().await;
        let controller = client.controller_client().expect("controller");
        for topic in topics {
            controller
                .create_topic(*topic, partitions, 1, 5_000)
                .await
                .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
        }
    }

    /// Every record of `topic` so far, partition by partition, each with its partition.
    pub async fn read_all(&self, topic: &str) -> Vec<(i32, Record)> {
        let client = self.client().await;
        let partitions = client
            .list_topics()
            .await
            .expect("metadata")
            .into_iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions)
            .unwrap_or_default();
        let mut out = Vec::new();
        for p in partitions {
            let pc = client
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await
                .expect("partition client");
            let end = pc
                .get_offset(OffsetAt::Latest)
                .await
                .expect("high watermark");
            let mut offset = pc
                .get_offset(OffsetAt::Earliest)
                .await
                .expect("low watermark");
            while offset < end {
                let (records, _) = pc
                    .fetch_records(offset, 1..10_000_000, 100)
                    .await
                    .expect("fetch");
                if records.is_empty() {
                    break;
                }
                for r in records {
                    offset = offset.max(r.offset + 1);
                    out.push((p, r.record));
                }
            }
        }
        out
    }

    /// Waits until `check` holds for `topic`'s records; returns them (the last read either way).
    pub async fn wait_for(
        &self,
        topic: &str,
        mut check: impl FnMut(&[(i32, Record)]) -> bool,
    ) -> Vec<(i32, Record)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let records = self.read_all(topic).await;
            if check(&records) || tokio::time::Instant::now() >= deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A record's key as text.
pub fn key(record: &Record) -> String {
    String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned()
}

/// A record's value decoded as `M`.
pub fn value<M: prost::Message + Default>(record: &Record) -> M {
    M::decode(record.value.as_deref().unwrap_or_default()).expect("a protobuf value")
}
