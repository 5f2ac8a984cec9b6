//! The Kafka reporter over TLS (`SW_KAFKA_SECURITY_PROTOCOL=SSL`): tansu speaks plain TCP, so
//! OpenSSL terminates TLS in front of it (`tests/tls_terminator.py`, as in tests/tls.rs), and
//! the broker advertises the terminator's address: every connection of the agent, to the
//! bootstrap server and to the partition leaders, goes through TLS, with the agent's client
//! certificate (the terminator requires one). Certificates made here (rcgen).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use skytrace::{Config, GrpcReporter, Tracer};
use skytrace_tests::kafka::Broker;
use skytrace_tests::{WAIT, env, eventually};

const TOPICS: [&str; 4] = [
    "skywalking-segments",
    "skywalking-meters",
    "skywalking-logs",
    "skywalking-managements",
];

/// A CA and what it signs, PEM.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "kafka test ca");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` and its key, PEM.
    fn sign(&self, names: &[&str], cn: &str) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// OpenSSL in front of `forward`, requiring a client certificate from `ca.pem` in `dir`.
struct Terminator {
    port: u16,
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Terminator {
    fn start(dir: &Path, ca: &Ca, forward: u16) -> Terminator {
        use std::io::BufRead as _;
        let (cert, key) = ca.sign(&["127.0.0.1"], "tansu");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tls_terminator.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg("--cert")
            .arg(write(dir, "server.pem", &cert))
            .arg("--key")
            .arg(write(dir, "server.key", &key))
            .arg("--client-ca")
            .arg(dir.join("ca.pem"))
            .arg("--forward")
            .arg(format!("127.0.0.1:{forward}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3, for tests/tls_terminator.py");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port: u16 = first
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the terminator did not start: {first:?}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        Terminator { port, child, lines }
    }

    fn clients(&self, subject: &str) -> usize {
        let wanted = format!("subject={subject}");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("CLIENT ") && l.ends_with(&wanted))
            .count()
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's own client of the broker: trusts `ca`, presents `cert`.
fn client_tls(ca: &str, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_kafka_through_tls_with_a_client_certificate() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("skytrace-kafka-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new();
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem);
    let (agent_cert, agent_key) = ca.sign(&[], "skytrace-agent");
    let (test_cert, test_key) = ca.sign(&[], "test-consumer");

    let port = skytrace_tests::unused_addr().port();
    let terminator = Terminator::start(&dir, &ca, port);
    let broker = Broker::start_behind(
        port,
        terminator.port,
        Some(client_tls(&ca.cert_pem, &test_cert, &test_key)),
    )
    .await;
    broker.create_topics(&TOPICS, 2).await;
    assert_eq!(broker.addr(), format!("127.0.0.1:{}", terminator.port));

    let config = Config::builder()
        .env(env(vec![
            ("SW_AGENT_NAME", "kafka-tls-svc".into()),
            ("SW_AGENT_INSTANCE_NAME", "kafka-tls-svc-1".into()),
            ("SW_AGENT_REPORTER_TYPE", "kafka".into()),
            ("SW_KAFKA_BOOTSTRAP_SERVERS", broker.addr()),
            ("SW_KAFKA_SECURITY_PROTOCOL", "SSL".into()),
            (
                "SW_AGENT_SSL_TRUSTED_CA_PATH",
                ca_file.display().to_string(),
            ),
            (
                "SW_AGENT_SSL_CERT_CHAIN_PATH",
                write(&dir, "agent.pem", &agent_cert).display().to_string(),
            ),
            (
                "SW_AGENT_SSL_KEY_PATH",
                write(&dir, "agent.key", &agent_key).display().to_string(),
            ),
        ]))
        .unwrap()
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    assert!(
        eventually(WAIT, || tracer.reporter().is_available()).await,
        "the Kafka reporter never connected through TLS: {:?}",
        tracer.stats()
    );
    broker
        .deliver_segments(&tracer, "tls", 10, "kafka-tls-svc")
        .await;
    // The agent's connections went through the terminator, with its certificate.
    assert!(
        terminator.clients("skytrace-agent") >= 1,
        "{:?}",
        terminator.lines.lock().unwrap()
    );
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!((stats.sent, stats.dropped), (10, 0), "{stats:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
