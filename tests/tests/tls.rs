//! TLS and mutual TLS to the collector over real gRPC on loopback, with certificates made here
//! (rcgen): what delivers, what is refused, what the agent says about it (read from its
//! standard error, each case run in a process of its own), and that no failure storms the
//! backend.
//!
//! Each case is an ignored test (`case_*`) that the matching test runs as a child process of
//! this binary; `cargo test -p skytrace-tests --test tls -- --ignored --nocapture case_` shows
//! every case's output at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use skytrace::{Config, ConfigBuilder};
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, eventually, grpc_tracer};

/// How long a failing case watches the backend.
const WINDOW: Duration = Duration::from_secs(3);

/// A CA and what it signed, as PEM files in a folder of their own.
struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key, PEM.
    fn sign(&self, names: &[&str], expired: bool) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "skytrace test");
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A folder of its own for a case's files, under cargo's scratch folder for tests (inside the
/// target folder: nothing is left behind in the system's temporary folder).
fn folder() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "skytrace-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// A collector on 127.0.0.1 (the address its certificate names).
async fn collector(tls: Option<(&Ca, &[&str], bool)>, client_ca: Option<&Ca>) -> Collector {
    let mut builder = Collector::builder().addr("127.0.0.1:0".parse().unwrap());
    if let Some((ca, names, expired)) = tls {
        let (cert, key) = ca.sign(names, expired);
        builder = builder.tls(cert, key);
    }
    if let Some(ca) = client_ca {
        builder = builder.require_client_cert(ca.cert_pem.clone());
    }
    builder.start().await.unwrap()
}

fn config(addr: SocketAddr) -> ConfigBuilder {
    skytrace_tests::config_for(addr)
}

/// Runs the scenario: a trace at once, then either its delivery (`expect_delivery`) or
/// [`WINDOW`] of failures; prints one `OUTCOME` line for the parent.
async fn observe(collector: &Collector, config: ConfigBuilder, expect_delivery: bool) {
    let tracer = grpc_tracer(config);
    let recorded = tracer.entry_span("job", &()).is_recording();
    if expect_delivery {
        collector.wait_for_segments(1, WAIT).await;
    } else {
        tokio::time::sleep(WINDOW).await;
    }
    let available = tracer.reporter().is_available();
    let stats = tracer.reporter().shutdown(Duration::from_secs(1));
    println!(
        "OUTCOME delivered={} connections={} recorded={recorded} sent={} dropped={} failed={} \
         available={available}",
        collector.segment_count(),
        collector.connections(),
        stats.sent,
        stats.dropped,
        stats.failed,
    );
}

/// What a case's child process printed.
struct Output {
    stderr: String,
    delivered: u64,
    connections: u64,
    recorded: bool,
    lost: u64,
    available: bool,
}

impl Output {
    /// The agent's lines about OAP.
    fn said(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("skytrace: "))
            .collect()
    }

    /// A failing case: nothing delivered, said once and why, counted, new traces stopped,
    /// and no storm.
    fn refused(&self, why: &str) {
        assert_eq!(self.delivered, 0, "{}", self.stderr);
        let said = self.said();
        let failures: Vec<&&str> = said.iter().filter(|l| l.contains(why)).collect();
        assert_eq!(failures.len(), 1, "said once: {said:#?}");
        if self.recorded {
            assert!(self.lost >= 1, "the undelivered segment is counted");
        }
        assert!(!self.available, "new traces stop");
        // Back-off from 0.5 s growing 1.6x: attempts near 0, 0.5, 1.3, 2.6 s.
        assert!(
            (1..=8).contains(&self.connections),
            "{} connections in {WINDOW:?}",
            self.connections
        );
    }
}

impl Output {
    /// Files that cannot be used: said once, with the file and why; nothing delivered, new
    /// traces stopped, and no connection made with them.
    fn unusable(&self, why: &str) {
        assert_eq!(self.delivered, 0, "{}", self.stderr);
        let said = self.said();
        let failures: Vec<&&str> = said.iter().filter(|l| l.contains(why)).collect();
        assert_eq!(failures.len(), 1, "said once: {said:#?}");
        assert!(!self.available, "new traces stop");
        assert_eq!(self.connections, 0);
    }
}

/// Runs the ignored test `case` of this binary in a child process and reads what it printed.
fn run_case(case: &str) -> Output {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            case,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{case} failed:\n{stdout}\n{stderr}");
    // The harness prints `test case_x ... ` before the case's own output, on the same line.
    let line = stdout
        .lines()
        .find_map(|l| l.find("OUTCOME ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no outcome from {case}:\n{stdout}\n{stderr}"));
    let field = |name: &str| {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let number = |name: &str| field(name).parse::<u64>().unwrap_or_default();
    // For the closing table: each case and what the agent said.
    println!("{case}: {line}");
    for said in stderr.lines().filter(|l| l.starts_with("skytrace: ")) {
        println!("    {said}");
    }
    Output {
        delivered: number("delivered"),
        connections: number("connections"),
        recorded: field("recorded") == "true",
        lost: number("dropped") + number("failed"),
        available: field("available") == "true",
        stderr,
    }
}

// The cases, each run in a child process by the tests below.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by one_way_tls_delivers"]
async fn case_one_way() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["127.0.0.1", "localhost"], false)), None).await;
    let dir = folder();
    let config = config(collector.addr()).ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem));
    observe(&collector, config, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by mutual_tls_delivers"]
async fn case_mutual() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), Some(&ca)).await;
    let dir = folder();
    let (chain, key) = ca.sign(&["agent"], false);
    let config = config(collector.addr())
        .ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem))
        .ssl_cert_chain_path(write(&dir, "client.pem", &chain))
        .ssl_key_path(write(&dir, "client.key", &key));
    observe(&collector, config, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by an_agent_trusting_another_ca_delivers_nothing"]
async fn case_unknown_ca() {
    let (ca, other) = (Ca::new("ca"), Ca::new("other"));
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), None).await;
    let dir = folder();
    let config =
        config(collector.addr()).ssl_trusted_ca_path(write(&dir, "ca.pem", &other.cert_pem));
    observe(&collector, config, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_wrong_host_name_is_refused"]
async fn case_wrong_host() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["oap.example"], false)), None).await;
    let dir = folder();
    let config = config(collector.addr()).ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem));
    observe(&collector, config, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by an_expired_certificate_is_refused"]
async fn case_expired() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["127.0.0.1"], true)), None).await;
    let dir = folder();
    let config = config(collector.addr()).ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem));
    observe(&collector, config, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_client_certificate_from_another_ca_is_refused"]
async fn case_client_cert_refused() {
    let (ca, other) = (Ca::new("ca"), Ca::new("other"));
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), Some(&ca)).await;
    let dir = folder();
    let (chain, key) = other.sign(&["agent"], false);
    let config = config(collector.addr())
        .ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem))
        .ssl_cert_chain_path(write(&dir, "client.pem", &chain))
        .ssl_key_path(write(&dir, "client.key", &key));
    observe(&collector, config, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by no_client_certificate_for_a_collector_that_requires_one"]
async fn case_client_cert_missing() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), Some(&ca)).await;
    let dir = folder();
    let config = config(collector.addr()).ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem));
    observe(&collector, config, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_plaintext_agent_and_a_tls_collector_do_not_meet"]
async fn case_plaintext_agent() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), None).await;
    observe(&collector, config(collector.addr()), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_tls_agent_and_a_plaintext_collector_do_not_meet"]
async fn case_plaintext_collector() {
    let ca = Ca::new("ca");
    let collector = collector(None, None).await;
    let dir = folder();
    let config = config(collector.addr()).ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem));
    observe(&collector, config, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_fixed_ca_file_heals_without_a_restart"]
async fn case_heals() {
    let (ca, other) = (Ca::new("ca"), Ca::new("other"));
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), None).await;
    let dir = folder();
    let ca_file = write(&dir, "ca.pem", &other.cert_pem);
    let tracer = grpc_tracer(config(collector.addr()).ssl_trusted_ca_path(&ca_file));
    assert!(eventually(WAIT, || !tracer.reporter().is_available()).await);
    // The operator puts the right CA in place; the next attempt reads it.
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    assert!(eventually(Duration::from_secs(60), || tracer.stats().connected).await);
    drop(tracer.entry_span("after-fix", &()));
    collector.wait_for_segments(1, WAIT).await;
    let stats = tracer.reporter().shutdown(Duration::from_secs(1));
    println!(
        "OUTCOME delivered={} connections={} recorded=true sent={} dropped={} failed={} \
         available=true",
        collector.segment_count(),
        collector.connections(),
        stats.sent,
        stats.dropped,
        stats.failed,
    );
}

/// An X.509 version 1 client certificate signed by the CA in `dir` (`ca.pem`, `ca.key`), as
/// `openssl x509 -req` makes it without an extension file; its chain and key files.
fn openssl_v1_client_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the `openssl` command (apt-get install openssl; scripts/ensure-tools)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "client.key",
        "-subj",
        "/CN=agent-v1",
        "-out",
        "client.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "client.pem",
    ]);
    (dir.join("client.pem"), dir.join("client.key"))
}

/// OpenSSL as the server (Python's `ssl`, `tests/tls_terminator.py`): requires a client
/// certificate from the CA, and forwards to a plaintext collector.
struct Terminator {
    addr: SocketAddr,
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Terminator {
    fn start(dir: &Path, ca: &Ca, forward: SocketAddr) -> Terminator {
        use std::io::BufRead as _;
        let (cert, key) = ca.sign(&["127.0.0.1"], false);
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
            .arg(forward.to_string())
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
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        Terminator {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            lines,
        }
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by an_x509_v1_client_certificate_is_presented_and_accepted"]
async fn case_v1_client_certificate() {
    let ca = Ca::new("ca");
    let dir = folder();
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem);
    write(&dir, "ca.key", &ca.key_pem);
    let (chain, key) = openssl_v1_client_certificate(&dir);
    let collector = collector(None, None).await;
    let terminator = Terminator::start(&dir, &ca, collector.addr());
    let config = config(terminator.addr)
        .ssl_trusted_ca_path(ca_file)
        .ssl_cert_chain_path(chain)
        .ssl_key_path(key);
    observe(&collector, config, true).await;
    eprintln!(
        "TERMINATOR {}",
        terminator.lines.lock().unwrap().join(" | ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_key_that_is_not_the_certificates_is_said_with_both_files"]
async fn case_key_mismatch() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), Some(&ca)).await;
    let dir = folder();
    let (chain, _) = ca.sign(&["agent"], false);
    let (_, other_key) = ca.sign(&["agent"], false);
    let config = config(collector.addr())
        .ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem))
        .ssl_cert_chain_path(write(&dir, "client.pem", &chain))
        .ssl_key_path(write(&dir, "client.key", &other_key));
    observe(&collector, config, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_chain_file_without_a_certificate_is_said_with_its_name"]
async fn case_chain_not_pem() {
    let ca = Ca::new("ca");
    let collector = collector(Some((&ca, &["127.0.0.1"], false)), Some(&ca)).await;
    let dir = folder();
    let (_, key) = ca.sign(&["agent"], false);
    let config = config(collector.addr())
        .ssl_trusted_ca_path(write(&dir, "ca.pem", &ca.cert_pem))
        .ssl_cert_chain_path(write(&dir, "client.pem", "not a certificate\n"))
        .ssl_key_path(write(&dir, "client.key", &key));
    observe(&collector, config, false).await;
}

// The tests.

#[test]
fn an_x509_v1_client_certificate_is_presented_and_accepted() {
    let out = run_case("case_v1_client_certificate");
    assert_eq!(out.delivered, 1, "{}", out.stderr);
    let terminator = out
        .stderr
        .lines()
        .find(|l| l.starts_with("TERMINATOR "))
        .unwrap_or_default();
    assert!(
        terminator.contains("CLIENT version=1 subject=agent-v1"),
        "OpenSSL verified the agent's v1 certificate: {terminator}"
    );
}

/// A certificate that truly cannot be used is said with its file and why, in words.
#[test]
fn a_key_that_is_not_the_certificates_is_said_with_both_files() {
    run_case("case_key_mismatch").unusable("is not the key of the first certificate in");
}

#[test]
fn a_chain_file_without_a_certificate_is_said_with_its_name() {
    run_case("case_chain_not_pem")
        .unusable("(SW_AGENT_SSL_CERT_CHAIN_PATH) holds no PEM certificate");
}

#[test]
fn one_way_tls_delivers() {
    let out = run_case("case_one_way");
    assert_eq!(out.delivered, 1, "{}", out.stderr);
    assert!(out.said().iter().any(|l| l.contains("reporting to OAP")));
}

#[test]
fn mutual_tls_delivers() {
    let out = run_case("case_mutual");
    assert_eq!(out.delivered, 1, "{}", out.stderr);
}

#[test]
fn an_agent_trusting_another_ca_delivers_nothing() {
    run_case("case_unknown_ca").refused("signed by a CA the agent does not trust");
}

#[test]
fn a_wrong_host_name_is_refused() {
    run_case("case_wrong_host").refused("is not valid for 127.0.0.1");
}

#[test]
fn an_expired_certificate_is_refused() {
    run_case("case_expired").refused("has expired");
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    run_case("case_client_cert_refused").refused("the agent's client certificate");
}

#[test]
fn no_client_certificate_for_a_collector_that_requires_one() {
    run_case("case_client_cert_missing").refused("client certificate");
}

#[test]
fn a_plaintext_agent_and_a_tls_collector_do_not_meet() {
    run_case("case_plaintext_agent").refused("a TLS port?");
}

#[test]
fn a_tls_agent_and_a_plaintext_collector_do_not_meet() {
    run_case("case_plaintext_collector").refused("does not speak TLS");
}

#[test]
fn a_fixed_ca_file_heals_without_a_restart() {
    let out = run_case("case_heals");
    assert_eq!(out.delivered, 1, "{}", out.stderr);
    let said = out.said();
    assert!(said[0].contains("does not trust"), "{said:#?}");
    assert!(
        said.iter().any(|l| l.contains("reporting to OAP")),
        "{said:#?}"
    );
}

#[test]
fn missing_files_and_a_key_without_its_chain_are_config_errors() {
    let dir = folder();
    let missing = dir.join("missing.pem");
    let env = |pairs: Vec<(&'static str, String)>| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    };
    let err = Config::builder()
        .env(env(vec![(
            "SW_AGENT_SSL_TRUSTED_CA_PATH",
            missing.display().to_string(),
        )]))
        .unwrap_err();
    assert_eq!(err.variable, "SW_AGENT_SSL_TRUSTED_CA_PATH");
    assert_eq!(err.value, missing.display().to_string());
    assert!(err.to_string().contains("readable"), "{err}");

    let key = write(&dir, "client.key", "key");
    let err = Config::builder()
        .env(env(vec![(
            "SW_AGENT_SSL_KEY_PATH",
            key.display().to_string(),
        )]))
        .unwrap_err();
    assert_eq!(err.variable, "SW_AGENT_SSL_KEY_PATH");
    assert!(
        err.to_string().contains("SW_AGENT_SSL_CERT_CHAIN_PATH"),
        "{err}"
    );

    let err = Config::builder()
        .ssl_cert_chain_path(&missing)
        .ssl_key_path(&key)
        .build()
        .unwrap_err();
    assert_eq!(err.variable, "ssl_cert_chain_path");

    // A folder is not a file.
    let err = Config::builder()
        .ssl_trusted_ca_path(&dir)
        .build()
        .unwrap_err();
    assert_eq!(err.variable, "ssl_trusted_ca_path");

    // Forced without a CA: TLS with the system's roots; a CA alone turns TLS on too.
    assert!(Config::builder().force_tls(true).build().unwrap().tls());
    let ca = write(&dir, "ca.pem", "ca");
    let config = Config::builder()
        .env(env(vec![(
            "SW_AGENT_SSL_TRUSTED_CA_PATH",
            ca.display().to_string(),
        )]))
        .unwrap()
        .build()
        .unwrap();
    assert!(config.tls());
    let err = Config::builder()
        .env(env(vec![("SW_AGENT_FORCE_TLS", "sure".into())]))
        .unwrap_err();
    assert_eq!(err.variable, "SW_AGENT_FORCE_TLS");
}
