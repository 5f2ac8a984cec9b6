//! A real Kafka-protocol broker for the Kafka tests: `tansu` (`scripts/ensure-kafka` installs
//! it), started on a free loopback port with in-memory storage (SQLite in a temporary folder
//! for a broker that requires SCRAM: its users must outlive a restart), stopped when dropped;
//! and a consumer that reads a topic from its start, as OAP's kafka-fetcher would.
//!
//! A test that needs the broker fails when `tansu` is missing: it never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
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
    /// SCRAM-SHA-256 for this helper's own clients, when the broker requires it.
    scram: Option<Credentials>,
    /// The folder of a SQLite storage, removed with the broker.
    storage_dir: Option<PathBuf>,
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
        let broker = Broker {
            child: None,
            port,
            advertised,
            tls,
            scram: None,
            storage_dir: None,
        };
        broker.launch("memory://tansu/", false, None).await
    }

    /// Starts a broker on a free port that requires SASL authentication of its clients
    /// (`tansu broker --authentication`), knowing one SCRAM-SHA-256 user, `user`: made with
    /// `tansu user create` on a first start without authentication, kept in SQLite over the
    /// restart. This helper's own clients authenticate as that user.
    pub async fn start_with_scram(user: &str, password: &str) -> Broker {
        let port = crate::unused_addr().port();
        let dir =
            std::env::temp_dir().join(format!("skytrace-tansu-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for tansu's storage");
        // tansu opens a `sqlite://` path relative to its working folder, even one written as
        // absolute: it runs in `dir`.
        let storage = "sqlite://tansu.db";
        let setup = Broker {
            child: None,
            port,
            advertised: port,
            tls: None,
            scram: None,
            storage_dir: None,
        };
        let mut setup = setup.launch(storage, false, Some(&dir)).await;
        let status = Command::new(tansu())
            .args(["user", "create", "--mechanism", "scram256"])
            .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
            .args([user, password])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("tansu user create runs");
        assert!(status.success(), "tansu user create: {status}");
        setup.stop();
        let broker = Broker {
            child: None,
            port,
            advertised: port,
            tls: None,
            scram: Some(Credentials::new(user.to_owned(), password.to_owned())),
            storage_dir: Some(dir.clone()),
        };
        broker.launch(storage, true, Some(&dir)).await
    }

    /// Starts tansu on this broker's ports with `storage` (in the folder `cwd`, when given) and
    /// waits until it answers.
    async fn launch(
        mut self,
        storage: &str,
        authentication: bool,
        cwd: Option<&std::path::Path>,
    ) -> Broker {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised_url = format!("tcp://127.0.0.1:{}", self.advertised);
        let mut command = Command::new(tansu());
        command
            .args(["broker", "--storage-engine", storage])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &advertised_url]);
        if authentication {
            command.arg("--authentication");
        }
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
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
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.try_client().await.is_some() {
                return self;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("tansu ({storage}) exited with {status} before answering on {url}");
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
        if let Some(credentials) = &self.scram {
            builder = builder.sasl_config(SaslConfig::ScramSha256(credentials.clone()));
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

    /// Makes `n` entry spans on `tracer` (`GET:/{route}/{i}`) and checks that their `n`
    /// segments, of `service`, reach the segments' topic.
    pub async fn deliver_segments(
        &self,
        tracer: &skytrace::Tracer,
        route: &str,
        n: usize,
        service: &str,
    ) {
        for i in 0..n {
            drop(tracer.entry_span(format!("GET:/{route}/{i}"), &()));
        }
        let records = self.wait_for("skywalking-segments", |r| r.len() >= n).await;
        assert_eq!(records.len(), n, "{:?}", tracer.stats());
        for (_, record) in &records {
            let segment: skytrace_proto::v3::SegmentObject = value(record);
            assert_eq!(segment.service, service);
        }
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
        if let Some(dir) = self.storage_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
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
