//! Agent configuration: a builder, and the `SW_AGENT_*` variables the other SkyWalking agents read.
//!
//! Every value is checked when it is read ([`ConfigBuilder::env`]) and again when the
//! configuration is built ([`ConfigBuilder::build`]): a value the agent cannot use is an error
//! that names the variable (or the builder method) and the value, never a panic later or a
//! setting silently ignored.

pub(crate) mod check;
pub(crate) mod kafka;
pub(crate) mod log_settings;
mod profile;
mod properties;

use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where finished segments go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReporterKind {
    /// Stream to OAP over gRPC (needs the `grpc` feature).
    Grpc,
    /// Print each segment to standard error: for development.
    Console,
    /// Drop everything (for benchmarks and tests of the instrumentation alone).
    Discard,
    /// Produce to Kafka for OAP's kafka-fetcher (needs the `kafka` feature;
    /// `SW_AGENT_REPORTER_TYPE=kafka`, brokers in `SW_KAFKA_BOOTSTRAP_SERVERS`).
    Kafka,
}

/// Everything the agent needs to know. Build one with [`Config::builder`] or [`Config::from_env`].
///
/// ```
/// use std::time::Duration;
///
/// let config = skytrace::Config::builder()
///     .service_name("checkout")
///     .backend_services("oap-1:11800,oap-2:11800")
///     .sample_per_3_secs(-1)
///     .heartbeat_period(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert_eq!(config.backends().len(), 2);
/// ```
#[derive(Clone)]
pub struct Config {
    /// The name reported to OAP: `name|namespace|cluster`, empty parts left out.
    pub(crate) service_name: String,
    pub(crate) instance_name: String,
    #[allow(dead_code)] // propagation headers are never prefixed any more; the reporter sends it
    pub(crate) namespace: String,
    pub(crate) cluster: String,
    pub(crate) backends: Vec<String>,
    // The next fields configure the gRPC reporter only.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) authentication: Option<String>,
    pub(crate) sample_per_3_secs: i32,
    pub(crate) span_limit: usize,
    pub(crate) ignore_suffix: Vec<String>,
    pub(crate) ignore_paths: Vec<String>,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) heartbeat_period: Duration,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) queue_size: usize,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) max_message_size: usize,
    pub(crate) keep_tracing: bool,
    pub(crate) enabled: bool,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) meters: MeterReporting,
    pub(crate) correlation_max_keys: usize,
    pub(crate) correlation_max_value_size: usize,
    pub(crate) sql_parameters_max_length: usize,
    pub(crate) reporter: ReporterKind,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) tls: Option<TlsFiles>,
    /// How often OAP's dynamic configuration is fetched; zero for never.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) dynamic_config_interval: Duration,
    /// `SW_AGENT_PROFILE_ACTIVE` & co. (`config/profile.rs`).
    #[allow(dead_code)] // read by the profiling signals
    pub(crate) profiling: profile::Profiling,
    /// The log reporter's settings, when given (else `init` reads `SW_AGENT_LOG_REPORTER_*`).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) logs: Option<log_settings::LogSettings>,
    /// The user's instance properties (`SW_AGENT_INSTANCE_PROPERTIES_JSON`), sent after the
    /// agent's own.
    pub(crate) instance_properties: Vec<(String, String)>,
    /// The Kafka reporter's settings (`SW_KAFKA_*`).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) kafka: kafka::KafkaSettings,
    /// Whether gRPC backends were given (`SW_AGENT_COLLECTOR_BACKEND_SERVICES`): with the Kafka
    /// reporter, dynamic configuration, events and profiling use them, and are off without.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) backends_given: bool,
}

/// TLS to OAP, as configured: on when forced or when a CA is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// PEM certificates trusted to sign OAP's certificate; `None` for the system's roots.
    pub(crate) ca: Option<PathBuf>,
    /// The client's certificate chain and private key (PEM), for mutual TLS.
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("service_name", &self.service_name)
            .field("instance_name", &self.instance_name)
            .field("namespace", &self.namespace)
            .field("cluster", &self.cluster)
            .field("backends", &self.backends)
            // A secret: say only whether there is one.
            .field(
                "authentication",
                &self.authentication.as_ref().map(|_| "<redacted>"),
            )
            .field("sample_per_3_secs", &self.sample_per_3_secs)
            .field("span_limit", &self.span_limit)
            .field("ignore_suffix", &self.ignore_suffix)
            .field("ignore_paths", &self.ignore_paths)
            .field("heartbeat_period", &self.heartbeat_period)
            .field("queue_size", &self.queue_size)
            .field("max_message_size", &self.max_message_size)
            .field("keep_tracing", &self.keep_tracing)
            .field("enabled", &self.enabled)
            .field("meters", &self.meters)
            .field("correlation_max_keys", &self.correlation_max_keys)
            .field(
                "correlation_max_value_size",
                &self.correlation_max_value_size,
            )
            .field("sql_parameters_max_length", &self.sql_parameters_max_length)
            .field("reporter", &self.reporter)
            .field("tls", &self.tls)
            .field("dynamic_config_interval", &self.dynamic_config_interval)
            .field("profiling", &self.profiling)
            .field("instance_properties", &self.instance_properties)
            .finish()
    }
}

/// How meters are reported: `SW_AGENT_METER_REPORTER_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MeterReporting {
    /// `SW_AGENT_METER_REPORTER_ACTIVE`.
    pub(crate) active: bool,
    /// `SW_AGENT_METER_REPORTER_PERIOD`.
    pub(crate) period: Duration,
    /// `SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE`: reports held while the backend is down.
    pub(crate) max_buffer_size: usize,
}

impl Default for MeterReporting {
    fn default() -> Self {
        MeterReporting {
            active: true,
            period: Duration::from_secs(20),
            max_buffer_size: check::DEFAULT_METER_BUFFER,
        }
    }
}

/// A configuration value that cannot be used: names the variable (or builder setting) and the value.
///
/// The message starts with `skytrace: `, as every line the agent prints, and is the same whether
/// it comes from [`Config::from_env`] or through [`crate::init`] ([`crate::InitError::Config`]).
/// `Debug` prints the same message as `Display`, so that `main() -> Result<(), Box<dyn Error>>`
/// shows it as written:
///
/// ```
/// let env = |name: &str| (name == "SW_AGENT_SAMPLE").then(|| "lots".to_string());
/// let err = skytrace::Config::builder().env(env).unwrap_err();
/// assert_eq!(
///     format!("{err:?}"),
///     r#"skytrace: invalid value for SW_AGENT_SAMPLE: "lots" (expected an integer >= -1)"#
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `SW_AGENT_SAMPLE`, or the builder method's name.
    pub variable: String,
    /// The value as given (for a list, the entry at fault).
    pub value: String,
    /// What was expected instead.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skytrace: invalid value for {}: {:?} (expected {})",
            self.variable, self.value, self.expected
        )
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// The suffixes the Java agent ignores by default: static files are not worth a trace.
pub const DEFAULT_IGNORE_SUFFIX: &str =
    ".jpg,.jpeg,.js,.css,.png,.bmp,.gif,.ico,.mp3,.mp4,.html,.svg";

impl Config {
    /// A builder with the official agents' defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Reads the `SW_AGENT_*` environment variables over the defaults; see [`ConfigBuilder::env`].
    /// A variable whose value is not UTF-8 is an error naming it.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = skytrace::Config::from_env()?;
    /// println!("reporting as {}", config.service_name());
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::builder()
            .env_os(|name| std::env::var_os(name))?
            .build()
    }

    /// The service name reported to OAP: the name (`SW_AGENT_NAME`), then the namespace and the
    /// cluster when set, joined by `|` as the Java agent does (`orders|prod|eu-1`, or `orders`
    /// with neither).
    ///
    /// ```
    /// let config = skytrace::Config::builder()
    ///     .service_name("orders")
    ///     .namespace("prod")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.service_name(), "orders|prod");
    /// ```
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The service instance name reported to OAP.
    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    /// `SW_AGENT_NAMESPACE`; empty when not set.
    ///
    /// ```
    /// let config = skytrace::Config::builder().namespace("prod").build().unwrap();
    /// assert_eq!(config.namespace(), "prod");
    /// ```
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `SW_AGENT_CLUSTER`; empty when not set.
    ///
    /// ```
    /// let config = skytrace::Config::builder().cluster("eu-1").build().unwrap();
    /// assert_eq!(config.cluster(), "eu-1");
    /// ```
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The collector addresses, `host:port` each (`[::1]:11800` for IPv6).
    pub fn backends(&self) -> &[String] {
        &self.backends
    }

    /// Whether the agent is on (`SW_AGENT_ENABLE`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The reporter this configuration selects.
    pub fn reporter(&self) -> &ReporterKind {
        &self.reporter
    }

    /// Whether the reporter connects to OAP over TLS (`SW_AGENT_FORCE_TLS`, or a CA in
    /// `SW_AGENT_SSL_TRUSTED_CA_PATH`).
    ///
    /// ```
    /// let config = skytrace::Config::builder().force_tls(true).build().unwrap();
    /// assert!(config.tls());
    /// assert!(!skytrace::Config::builder().build().unwrap().tls());
    /// ```
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// How often OAP's dynamic configuration is fetched
    /// (`SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL`); zero when never.
    ///
    /// ```
    /// let config = skytrace::Config::builder().build().unwrap();
    /// assert_eq!(config.dynamic_config_interval().as_secs(), 20);
    /// ```
    pub fn dynamic_config_interval(&self) -> Duration {
        self.dynamic_config_interval
    }

    /// The instance properties given by the user ([`ConfigBuilder::instance_property`],
    /// `SW_AGENT_INSTANCE_PROPERTIES_JSON` or `SW_INSTANCE_PROPERTIES_JSON`), in order, each key
    /// once. OAP receives them after the agent's own (`language`, `hostname`, `ipv4`, …,
    /// `namespace`), so a key given here wins.
    ///
    /// ```
    /// let env = |name: &str| {
    ///     (name == "SW_AGENT_INSTANCE_PROPERTIES_JSON")
    ///         .then(|| r#"{"pod":"web-1","namespace":"shop"}"#.to_string())
    /// };
    /// let config = skytrace::Config::builder().env(env).unwrap().build().unwrap();
    /// assert_eq!(
    ///     config.instance_properties(),
    ///     [("pod".to_string(), "web-1".to_string()), ("namespace".into(), "shop".into())]
    /// );
    /// ```
    pub fn instance_properties(&self) -> &[(String, String)] {
        &self.instance_properties
    }
}

/// Builds a [`Config`]; every setter has the default the official agents use. Setters accept
/// anything; [`ConfigBuilder::build`] checks every value and names the setter of a bad one.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    service_name: Option<String>,
    instance_name: Option<String>,
    namespace: String,
    cluster: String,
    backends: String,
    authentication: Option<String>,
    sample_per_3_secs: i32,
    span_limit: usize,
    ignore_suffix: String,
    ignore_paths: String,
    heartbeat_period: Duration,
    queue_size: usize,
    max_message_size: usize,
    keep_tracing: bool,
    enabled: bool,
    correlation_max_keys: usize,
    correlation_max_value_size: usize,
    sql_parameters_max_length: usize,
    reporter: ReporterKind,
    force_tls: bool,
    ssl_trusted_ca_path: Option<PathBuf>,
    ssl_key_path: Option<PathBuf>,
    ssl_cert_chain_path: Option<PathBuf>,
    dynamic_config_interval: Duration,
    meters: MeterReporting,
    profiling: profile::Profiling,
    logs: Option<log_settings::LogSettings>,
    instance_properties: Vec<(String, String)>,
    kafka: kafka::KafkaSettings,
    backends_given: bool,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            service_name: None,
            instance_name: None,
            namespace: String::new(),
            cluster: String::new(),
            backends: "127.0.0.1:11800".into(),
            authentication: None,
            sample_per_3_secs: -1,
            span_limit: 300,
            ignore_suffix: DEFAULT_IGNORE_SUFFIX.into(),
            ignore_paths: String::new(),
            heartbeat_period: Duration::from_secs(30),
            queue_size: 10_000,
            max_message_size: check::DEFAULT_MAX_MESSAGE_SIZE,
            keep_tracing: false,
            enabled: true,
            correlation_max_keys: 3,
            correlation_max_value_size: 128,
            sql_parameters_max_length: 0,
            reporter: ReporterKind::Grpc,
            force_tls: false,
            ssl_trusted_ca_path: None,
            ssl_key_path: None,
            ssl_cert_chain_path: None,
            dynamic_config_interval: Duration::from_secs(20),
            meters: MeterReporting::default(),
            profiling: profile::Profiling::default(),
            logs: None,
            instance_properties: Vec::new(),
            kafka: kafka::KafkaSettings::default(),
            backends_given: false,
        }
    }
}

impl ConfigBuilder {
    /// `SW_AGENT_NAME`: non-empty, at most 256 characters, no control characters. Default: the
    /// executable's name.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// `SW_AGENT_INSTANCE_NAME`: non-empty, at most 256 characters, no control characters.
    /// Default: `{uuid}@{ipv4}` (the host name without an IPv4), like the Java agent.
    pub fn instance_name(mut self, name: impl Into<String>) -> Self {
        self.instance_name = Some(name.into());
        self
    }

    /// `SW_AGENT_NAMESPACE`: becomes part of the reported service name
    /// (`name|namespace|cluster`, see [`Config::service_name`]). At most 256 characters, no `|`
    /// and no control characters; empty (the default) for none.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// `SW_AGENT_CLUSTER`: the last part of the reported service name (`name|namespace|cluster`,
    /// see [`Config::service_name`]). At most 256 characters, no `|` and no control characters;
    /// empty (the default) for none.
    ///
    /// ```
    /// let config = skytrace::Config::builder()
    ///     .service_name("orders")
    ///     .cluster("eu-1")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.service_name(), "orders|eu-1");
    /// ```
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// `SW_AGENT_COLLECTOR_BACKEND_SERVICES`: comma-separated `host:port` list, at most 16,384
    /// entries. Default `127.0.0.1:11800`. A host is a DNS name, an IPv4 address or an IPv6
    /// address in brackets (`[::1]:11800`); the port is 1 to 65535. The reporter round-robins
    /// and fails over across them.
    pub fn backend_services(mut self, list: impl Into<String>) -> Self {
        self.backends = list.into();
        self.backends_given = true;
        self
    }

    /// `SW_KAFKA_BOOTSTRAP_SERVERS`: the Kafka brokers the Kafka reporter
    /// ([`ReporterKind::Kafka`]) starts from, comma-separated `host:port`.
    ///
    /// ```
    /// use skytrace::{Config, ReporterKind};
    /// let config = Config::builder()
    ///     .reporter(ReporterKind::Kafka)
    ///     .kafka_bootstrap_servers("kafka-1:9092,kafka-2:9092")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.reporter(), &ReporterKind::Kafka);
    /// ```
    pub fn kafka_bootstrap_servers(mut self, list: impl Into<String>) -> Self {
        self.kafka.bootstrap = vec![list.into()];
        self
    }

    /// `SW_KAFKA_NAMESPACE`: every topic is `{namespace}-{topic}`, as OAP reads them when its
    /// `SW_NAMESPACE` is set. Default: none.
    ///
    /// ```
    /// let config = skytrace::Config::builder().kafka_namespace("prod").build().unwrap();
    /// # drop(config);
    /// ```
    pub fn kafka_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.kafka.namespace = namespace.into();
        self
    }

    /// `SW_AGENT_AUTHENTICATION`: sent as the `authentication` gRPC metadata. Printable ASCII,
    /// at most 8 KiB; empty means none.
    pub fn authentication(mut self, token: impl Into<String>) -> Self {
        self.authentication = Some(token.into());
        self
    }

    /// `SW_AGENT_SAMPLE`: traces started per 3 seconds; `-1` (the default) or `0` samples all.
    /// A caller's `sw8` with sample flag `1` is always continued.
    pub fn sample_per_3_secs(mut self, n: i32) -> Self {
        self.sample_per_3_secs = n;
        self
    }

    /// `SW_AGENT_SPAN_LIMIT`: spans per segment, 1 to 10,000 (default 300); later ones are not
    /// recorded and the segment is marked size-limited.
    pub fn span_limit(mut self, limit: usize) -> Self {
        self.span_limit = limit;
        self
    }

    /// `SW_AGENT_IGNORE_SUFFIX`: comma-separated; entry operations ending so start no trace.
    /// At most 1,024 entries and 64 KiB.
    pub fn ignore_suffix(mut self, list: impl Into<String>) -> Self {
        self.ignore_suffix = list.into();
        self
    }

    /// `SW_AGENT_TRACE_IGNORE_PATH`: comma-separated request paths the HTTP integrations do not
    /// trace, such as `/health,/metrics,/static/**`, in the Ant style of the Java agent: `?`
    /// matches one character, `*` any run within a path segment, a `**` segment any number of
    /// segments (`/static/**/*.css` matches `/static/a.css` and `/static/a/b/c.css`). A trailing
    /// `/` counts (`/a` does not match `/a/`). At most 1,024 patterns and 64 KiB; matching costs
    /// at most pattern length × path length, and a pattern longer than the path is refused at
    /// once.
    pub fn ignore_paths(mut self, list: impl Into<String>) -> Self {
        self.ignore_paths = list.into();
        self
    }

    /// `SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD` (whole seconds in the variable): keep-alive period,
    /// from 1 s to 1 hour, default 30 s.
    pub fn heartbeat_period(mut self, period: Duration) -> Self {
        self.heartbeat_period = period;
        self
    }

    /// `SW_AGENT_MAX_MESSAGE_SIZE`: the most bytes one gRPC message to OAP may have, 64 KiB to
    /// 256 MiB, default 4 MiB (the limit of tonic's and grpc-go's servers; OAP's own is 50 MB).
    /// Batches are cut to fit; a segment over it on its own is dropped alone and counted.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The log reporter's settings (`SW_AGENT_LOG_REPORTER_*`): what [`crate::init`] installs
    /// for the `tracing` and `log` bridges. Without it, `init` reads them from the environment.
    ///
    /// ```
    /// use skytrace::logs::{LogLevel, LogSettings};
    ///
    /// let mut logs = LogSettings::default();
    /// logs.level = LogLevel::Info;
    /// let config = skytrace::Config::builder().log_reporter(logs).build().unwrap();
    /// # let _ = config;
    /// ```
    pub fn log_reporter(mut self, settings: log_settings::LogSettings) -> Self {
        self.logs = Some(settings);
        self
    }

    /// `SW_AGENT_QUEUE_SIZE`: segments waiting for the reporter, 1 to 1,048,576 (2^20), default
    /// 10,000. When full, new segments are dropped and counted.
    pub fn queue_size(mut self, size: usize) -> Self {
        self.queue_size = size;
        self
    }

    /// `SW_AGENT_KEEP_TRACING`: keep starting traces while no backend is reachable (default
    /// `false`, as the Java and Go agents: an outage then costs the service nothing).
    pub fn keep_tracing(mut self, yes: bool) -> Self {
        self.keep_tracing = yes;
        self
    }

    /// `SW_AGENT_ENABLE`: `false` switches the agent off without a rebuild: [`crate::init`]
    /// then returns a guard that does nothing (no thread, no socket, no span recorded), and the
    /// compiled-in instrumentation costs only its no-trace path. Default `true`.
    ///
    /// ```
    /// let config = skytrace::Config::builder().enabled(false).build().unwrap();
    /// let agent = skytrace::init(config).unwrap();
    /// assert!(agent.tracer().is_none());
    /// assert!(!skytrace::Span::root_entry("job").is_recording());
    /// ```
    pub fn enabled(mut self, yes: bool) -> Self {
        self.enabled = yes;
        self
    }

    /// `SW_AGENT_CORRELATION_MAX_KEY_COUNT`: 0 to 64 (default 3), and keys × value size at
    /// most 8 KiB so the `sw8-correlation` header stays within what a callee reads.
    pub fn correlation_max_keys(mut self, n: usize) -> Self {
        self.correlation_max_keys = n;
        self
    }

    /// `SW_AGENT_CORRELATION_MAX_VALUE_SIZE` in bytes: 0 to 8,192 (default 128), and keys ×
    /// value size at most 8 KiB.
    pub fn correlation_max_value_size(mut self, n: usize) -> Self {
        self.correlation_max_value_size = n;
        self
    }

    /// `SW_AGENT_SQL_PARAMETERS_MAX_LENGTH` in bytes: 0 (the default) records no SQL
    /// parameters; more records the values bound through the sqlx integration's builders as
    /// the `db.sql.parameters` tag, cut at that many bytes (0 to 65,536). Parameters can hold
    /// personal data: turn this on where the trace store may keep it. The Java agent's
    /// `plugin.jdbc.trace_sql_parameters` with `sql_parameters_max_length`; the Python agent's
    /// `SW_PLUGIN_SQL_PARAMETERS_MAX_LENGTH`. Live: see [`crate::TraceSettings`].
    ///
    /// ```
    /// let config = skytrace::Config::builder().sql_parameters_max_length(512).build().unwrap();
    /// # let _ = config;
    /// ```
    pub fn sql_parameters_max_length(mut self, n: usize) -> Self {
        self.sql_parameters_max_length = n;
        self
    }

    /// `SW_AGENT_METER_REPORTER_ACTIVE`: send the meters of [`crate::meter::global`] (your own,
    /// the process's, the tokio runtime's and the agent's health) with the gRPC reporter.
    /// Default `true`.
    ///
    /// ```
    /// let config = skytrace::Config::builder().meter_reporter_active(false).build().unwrap();
    /// # drop(config);
    /// ```
    pub fn meter_reporter_active(mut self, yes: bool) -> Self {
        self.meters.active = yes;
        self
    }

    /// `SW_AGENT_METER_REPORTER_PERIOD` (whole seconds in the variable): how often meters are
    /// read and sent, from 1 s to 1 hour, default 20 s.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = skytrace::Config::builder()
    ///     .meter_reporter_period(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// # drop(config);
    /// ```
    pub fn meter_reporter_period(mut self, period: Duration) -> Self {
        self.meters.period = period;
        self
    }

    /// `SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE`: meter reports (one per period) held while the
    /// backend is unreachable, 1 to 10,000, default 180 (an hour at the default period). When
    /// full, the oldest is dropped and counted (`instance_rust_agent_meter_reports_dropped`).
    ///
    /// ```
    /// let config = skytrace::Config::builder().meter_reporter_max_buffer_size(30).build().unwrap();
    /// # drop(config);
    /// ```
    pub fn meter_reporter_max_buffer_size(mut self, reports: usize) -> Self {
        self.meters.max_buffer_size = reports;
        self
    }

    /// Which reporter [`crate::init`] starts. Default [`ReporterKind::Grpc`].
    pub fn reporter(mut self, kind: ReporterKind) -> Self {
        self.reporter = kind;
        self
    }

    /// `SW_AGENT_FORCE_TLS`: connect to OAP over TLS even without a CA of its own
    /// ([`ConfigBuilder::ssl_trusted_ca_path`]); OAP's certificate is then checked against the
    /// system's roots. Default `false`.
    pub fn force_tls(mut self, yes: bool) -> Self {
        self.force_tls = yes;
        self
    }

    /// `SW_AGENT_SSL_TRUSTED_CA_PATH`: a PEM file of the certificates trusted to sign OAP's;
    /// turns TLS on. Unlike the Java agent, which falls back to plaintext when the file is
    /// missing, a file that cannot be read is an error naming the setting and the path. Read
    /// again on every new connection, so a renewed file is used without a restart.
    ///
    /// ```
    /// let err = skytrace::Config::builder()
    ///     .ssl_trusted_ca_path("/nowhere/ca.crt")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.variable, "ssl_trusted_ca_path");
    /// assert_eq!(err.value, "/nowhere/ca.crt");
    /// ```
    pub fn ssl_trusted_ca_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_trusted_ca_path = Some(path.into());
        self
    }

    /// `SW_AGENT_SSL_KEY_PATH`: the client's private key (PEM, PKCS#8, PKCS#1 or SEC1) for
    /// mutual TLS; needs [`ConfigBuilder::ssl_cert_chain_path`] as well.
    pub fn ssl_key_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_key_path = Some(path.into());
        self
    }

    /// `SW_AGENT_SSL_CERT_CHAIN_PATH`: the client's certificate chain (PEM, its own
    /// certificate first) for mutual TLS; needs [`ConfigBuilder::ssl_key_path`] as well.
    pub fn ssl_cert_chain_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_cert_chain_path = Some(path.into());
        self
    }

    /// `SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL` (whole seconds in the variable):
    /// how often OAP's dynamic configuration (sampling, ignore rules, span limit) is fetched.
    /// Zero turns fetching off; otherwise 1 s to 1 day. Default 20 s, as the Java agent.
    pub fn dynamic_config_interval(mut self, interval: Duration) -> Self {
        self.dynamic_config_interval = interval;
        self
    }

    /// An instance property sent to OAP with the agent's own (`language`, `hostname`, …), such
    /// as `pod` and `namespace`, which OAP uses to find the instance's Kubernetes pod (on-demand
    /// pod logs, the service hierarchy). A key set twice keeps its last value; a key of the
    /// agent's own is replaced. At most 64 properties; keys of 1 to 256 characters without
    /// control characters; values of at most 1,024 characters. The environment's
    /// `SW_AGENT_INSTANCE_PROPERTIES_JSON` ([`ConfigBuilder::env`]) adds to these.
    ///
    /// ```
    /// let config = skytrace::Config::builder()
    ///     .instance_property("pod", "web-1")
    ///     .instance_property("team", "payments")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.instance_properties().len(), 2);
    /// ```
    pub fn instance_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        properties::set(&mut self.instance_properties, key.into(), value.into());
        self
    }

    /// Applies every `SW_AGENT_*` variable that `lookup` knows, checking each: a value the
    /// agent cannot use is an error naming the variable and the value. Values are trimmed.
    /// A closure over a map makes it testable; [`ConfigBuilder::env_os`] takes values that may
    /// not be UTF-8, as the process environment's.
    ///
    /// ```
    /// let env = |name: &str| match name {
    ///     "SW_AGENT_NAME" => Some("orders".to_string()),
    ///     "SW_AGENT_SAMPLE" => Some("lots".to_string()),
    ///     _ => None,
    /// };
    /// let err = skytrace::Config::builder().env(env).unwrap_err();
    /// assert_eq!(err.variable, "SW_AGENT_SAMPLE");
    /// assert_eq!(err.value, "lots");
    /// ```
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned());
        if let Some(v) = var("SW_AGENT_NAME") {
            self.service_name = Some(check::name("SW_AGENT_NAME", v)?);
        }
        if let Some(v) = var("SW_AGENT_INSTANCE_NAME") {
            self.instance_name = Some(check::name("SW_AGENT_INSTANCE_NAME", v)?);
        }
        if let Some(v) = var("SW_AGENT_NAMESPACE") {
            self.namespace = check::label("SW_AGENT_NAMESPACE", v)?;
        }
        if let Some(v) = var("SW_AGENT_CLUSTER") {
            self.cluster = check::label("SW_AGENT_CLUSTER", v)?;
        }
        if let Some(v) = var("SW_AGENT_COLLECTOR_BACKEND_SERVICES") {
            check::backends("SW_AGENT_COLLECTOR_BACKEND_SERVICES", &v)?;
            self.backends = v;
            self.backends_given = true;
        }
        if let Some(v) = var("SW_AGENT_REPORTER_TYPE") {
            self.reporter = match v.to_ascii_lowercase().as_str() {
                "grpc" => ReporterKind::Grpc,
                "kafka" => ReporterKind::Kafka,
                _ => {
                    return Err(check::invalid("SW_AGENT_REPORTER_TYPE", v, "grpc or kafka"));
                }
            };
        }
        self.kafka.apply_env(&var)?;
        if let Some(v) = var("SW_AGENT_AUTHENTICATION") {
            self.authentication = check::token("SW_AGENT_AUTHENTICATION", v)?;
        }
        if let Some(v) = var("SW_AGENT_SAMPLE") {
            let n = check::number("SW_AGENT_SAMPLE", &v, check::SAMPLE)?;
            self.sample_per_3_secs =
                check::sample("SW_AGENT_SAMPLE", n).map_err(|e| ConfigError { value: v, ..e })?;
        }
        if let Some(v) = var("SW_AGENT_SPAN_LIMIT") {
            let n = check::number("SW_AGENT_SPAN_LIMIT", &v, check::SPAN_LIMIT)?;
            self.span_limit = check::span_limit("SW_AGENT_SPAN_LIMIT", n)
                .map_err(|e| ConfigError { value: v, ..e })?;
        }
        if let Some(v) = var("SW_AGENT_IGNORE_SUFFIX") {
            check::list("SW_AGENT_IGNORE_SUFFIX", &v)?;
            self.ignore_suffix = v;
        }
        if let Some(v) = var("SW_AGENT_TRACE_IGNORE_PATH") {
            check::list("SW_AGENT_TRACE_IGNORE_PATH", &v)?;
            self.ignore_paths = v;
        }
        if let Some(v) = var("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD") {
            let name = "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD";
            let secs: u64 = check::number(name, &v, check::HEARTBEAT_SECS)?;
            if !(1..=check::MAX_HEARTBEAT_SECS).contains(&secs) {
                return Err(check::invalid(name, v, check::HEARTBEAT_SECS));
            }
            self.heartbeat_period = Duration::from_secs(secs);
        }
        if let Some(v) = var("SW_AGENT_MAX_MESSAGE_SIZE") {
            let name = "SW_AGENT_MAX_MESSAGE_SIZE";
            let n = check::number(name, &v, check::MAX_MESSAGE_SIZE)?;
            self.max_message_size =
                check::max_message_size(name, n).map_err(|e| ConfigError { value: v, ..e })?;
        }
        if let Some(v) = var("SW_AGENT_QUEUE_SIZE") {
            let n = check::number("SW_AGENT_QUEUE_SIZE", &v, check::QUEUE_SIZE)?;
            self.queue_size = check::queue_size("SW_AGENT_QUEUE_SIZE", n)
                .map_err(|e| ConfigError { value: v, ..e })?;
        }
        if let Some(v) = var("SW_AGENT_KEEP_TRACING") {
            self.keep_tracing = check::boolean("SW_AGENT_KEEP_TRACING", &v)?;
        }
        if let Some(v) = var("SW_AGENT_ENABLE") {
            self.enabled = check::boolean("SW_AGENT_ENABLE", &v)?;
        }
        if let Some(v) = var("SW_AGENT_FORCE_TLS") {
            self.force_tls = check::boolean("SW_AGENT_FORCE_TLS", &v)?;
        }
        let mut tls_set = false;
        for (name, slot) in [
            (TLS_VARS[0], &mut self.ssl_trusted_ca_path),
            (TLS_VARS[1], &mut self.ssl_key_path),
            (TLS_VARS[2], &mut self.ssl_cert_chain_path),
        ] {
            // An empty value is no file, as if the variable were not set.
            if let Some(v) = var(name).filter(|v| !v.is_empty()) {
                check::readable_file(name, Path::new(&v))?;
                *slot = Some(PathBuf::from(v));
                tls_set = true;
            }
        }
        if tls_set {
            check::key_pair(
                TLS_VARS[1],
                self.ssl_key_path.as_deref(),
                TLS_VARS[2],
                self.ssl_cert_chain_path.as_deref(),
            )?;
        }
        if let Some(v) = var("SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL") {
            let name = "SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL";
            let secs: u64 = check::number(name, &v, check::DYNAMIC_CONFIG_SECS)?;
            if secs > check::MAX_DYNAMIC_CONFIG_SECS {
                return Err(check::invalid(name, v, check::DYNAMIC_CONFIG_SECS));
            }
            self.dynamic_config_interval = Duration::from_secs(secs);
        }
        if let Some(v) = var("SW_AGENT_METER_REPORTER_ACTIVE") {
            self.meters.active = check::boolean("SW_AGENT_METER_REPORTER_ACTIVE", &v)?;
        }
        if let Some(v) = var("SW_AGENT_METER_REPORTER_PERIOD") {
            let name = "SW_AGENT_METER_REPORTER_PERIOD";
            let secs: u64 = check::number(name, &v, check::METER_PERIOD_SECS)?;
            if !(1..=check::MAX_METER_PERIOD_SECS).contains(&secs) {
                return Err(check::invalid(name, v, check::METER_PERIOD_SECS));
            }
            self.meters.period = Duration::from_secs(secs);
        }
        if let Some(v) = var("SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE") {
            let name = "SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE";
            let n = check::number(name, &v, check::METER_BUFFER)?;
            self.meters.max_buffer_size =
                check::meter_buffer(name, n).map_err(|e| ConfigError { value: v, ..e })?;
        }
        let mut correlation_set = None;
        if let Some(v) = var("SW_AGENT_CORRELATION_MAX_KEY_COUNT") {
            let name = "SW_AGENT_CORRELATION_MAX_KEY_COUNT";
            let n = check::number(name, &v, check::CORRELATION_KEYS)?;
            self.correlation_max_keys =
                check::correlation_keys(name, n).map_err(|e| ConfigError { value: v, ..e })?;
            correlation_set = Some((name, n));
        }
        if let Some(v) = var("SW_AGENT_CORRELATION_MAX_VALUE_SIZE") {
            let name = "SW_AGENT_CORRELATION_MAX_VALUE_SIZE";
            let n = check::number(name, &v, check::CORRELATION_VALUE)?;
            self.correlation_max_value_size =
                check::correlation_value(name, n).map_err(|e| ConfigError { value: v, ..e })?;
            correlation_set = Some((name, n));
        }
        if let Some(v) = var("SW_AGENT_SQL_PARAMETERS_MAX_LENGTH") {
            let name = "SW_AGENT_SQL_PARAMETERS_MAX_LENGTH";
            let n = check::number(name, &v, check::SQL_PARAMETERS)?;
            self.sql_parameters_max_length =
                check::sql_parameters(name, n).map_err(|e| ConfigError { value: v, ..e })?;
        }
        self.profiling.env(&var)?;
        let json = [
            "SW_AGENT_INSTANCE_PROPERTIES_JSON",
            "SW_INSTANCE_PROPERTIES_JSON",
        ]
        .map(|name| var(name).map(|v| (name, v)));
        if let [Some((python, a)), Some((java, b))] = &json
            && a != b
        {
            // A mixed shop may set both for every container: alike they are one setting.
            return Err(check::invalid(
                python,
                a.clone(),
                &format!("the same value as {java} ({b:?}), or only one of the two"),
            ));
        }
        if let Some((name, v)) = json.into_iter().flatten().next() {
            for (key, value) in properties::parse(name, &v)? {
                properties::set(&mut self.instance_properties, key, value);
            }
            self.instance_properties = properties::checked(name, self.instance_properties)?;
        }
        if let Some((name, n)) = correlation_set {
            check::correlation_total(
                name,
                n,
                self.correlation_max_keys,
                self.correlation_max_value_size,
            )?;
        }
        Ok(self)
    }

    /// [`ConfigBuilder::env`] for values that may not be UTF-8, as `std::env::var_os` returns
    /// them: such a value is an error naming its variable (its value shown lossily).
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::ffi::OsString;
    /// use std::os::unix::ffi::OsStringExt;
    ///
    /// let env = |name: &str| (name == "SW_AGENT_NAME").then(|| OsString::from_vec(vec![0xff]));
    /// let err = skytrace::Config::builder().env_os(env).unwrap_err();
    /// assert_eq!(err.variable, "SW_AGENT_NAME");
    /// # }
    /// ```
    pub fn env_os(self, lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, ConfigError> {
        let not_utf8 = RefCell::new(None);
        let result = self.env(|name| match lookup(name)?.into_string() {
            Ok(value) => Some(value),
            Err(raw) => {
                not_utf8.borrow_mut().get_or_insert_with(|| {
                    check::invalid(name, raw.to_string_lossy(), "UTF-8 text")
                });
                None
            }
        });
        match not_utf8.into_inner() {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Checks every value (naming the builder method of a bad one) and fills the derived
    /// defaults.
    pub fn build(self) -> Result<Config, ConfigError> {
        let tls = self.tls_files()?;
        let name = match self.service_name {
            Some(name) => check::name("service_name", name)?,
            None => default_service_name(),
        };
        let instance_name = match self.instance_name {
            Some(name) => check::name("instance_name", name)?,
            None => default_instance_name(),
        };
        let namespace = check::label("namespace", self.namespace)?;
        let cluster = check::label("cluster", self.cluster)?;
        let backends = check::backends("backend_services", &self.backends)?;
        let authentication = match self.authentication {
            Some(token) => check::token("authentication", token)?,
            None => None,
        };
        let sample_per_3_secs = check::sample("sample_per_3_secs", self.sample_per_3_secs)?;
        let span_limit = check::span_limit("span_limit", self.span_limit)?;
        let ignore_suffix = check::list("ignore_suffix", &self.ignore_suffix)?;
        let ignore_paths = check::list("ignore_paths", &self.ignore_paths)?;
        let heartbeat_period = check::heartbeat("heartbeat_period", self.heartbeat_period)?;
        let queue_size = check::queue_size("queue_size", self.queue_size)?;
        let max_message_size = check::max_message_size("max_message_size", self.max_message_size)?;
        let meters = MeterReporting {
            active: self.meters.active,
            period: check::meter_period("meter_reporter_period", self.meters.period)?,
            max_buffer_size: check::meter_buffer(
                "meter_reporter_max_buffer_size",
                self.meters.max_buffer_size,
            )?,
        };
        let keys = check::correlation_keys("correlation_max_keys", self.correlation_max_keys)?;
        let value_size = check::correlation_value(
            "correlation_max_value_size",
            self.correlation_max_value_size,
        )?;
        check::correlation_total("correlation_max_value_size", value_size, keys, value_size)?;
        let dynamic_config_interval =
            check::dynamic_config("dynamic_config_interval", self.dynamic_config_interval)?;
        let sql_parameters_max_length =
            check::sql_parameters("sql_parameters_max_length", self.sql_parameters_max_length)?;
        if let Some(logs) = &self.logs {
            logs.check("log_reporter")?;
        }
        let instance_properties =
            properties::checked("instance_property", self.instance_properties)?;
        let mut kafka = self.kafka;
        if !kafka.bootstrap.is_empty() {
            kafka.bootstrap =
                check::backends("kafka_bootstrap_servers", &kafka.bootstrap.join(","))?;
        }
        kafka.namespace = kafka::topic_part("kafka_namespace", kafka.namespace, true)?;
        if self.reporter == ReporterKind::Kafka && kafka.bootstrap.is_empty() {
            return Err(check::invalid(
                "SW_KAFKA_BOOTSTRAP_SERVERS",
                "",
                "the Kafka brokers (host:port, comma-separated) for SW_AGENT_REPORTER_TYPE=kafka",
            ));
        }
        let service_name = [name.as_str(), &namespace, &cluster]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("|");
        Ok(Config {
            service_name,
            instance_name,
            namespace,
            cluster,
            backends,
            authentication,
            sample_per_3_secs,
            span_limit,
            ignore_suffix,
            ignore_paths,
            heartbeat_period,
            queue_size,
            max_message_size,
            keep_tracing: self.keep_tracing,
            enabled: self.enabled,
            correlation_max_keys: keys,
            correlation_max_value_size: value_size,
            sql_parameters_max_length,
            reporter: self.reporter,
            tls,
            dynamic_config_interval,
            meters,
            profiling: self.profiling.check()?,
            logs: self.logs,
            instance_properties,
            kafka,
            backends_given: self.backends_given,
        })
    }

    /// The TLS files, checked: each readable, the key with its chain.
    fn tls_files(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let names = ["ssl_trusted_ca_path", "ssl_key_path", "ssl_cert_chain_path"];
        let paths = [
            &self.ssl_trusted_ca_path,
            &self.ssl_key_path,
            &self.ssl_cert_chain_path,
        ];
        for (name, path) in names.into_iter().zip(paths) {
            if let Some(path) = path {
                check::readable_file(name, path)?;
            }
        }
        let (key, chain) = (
            self.ssl_key_path.as_deref(),
            self.ssl_cert_chain_path.as_deref(),
        );
        check::key_pair(names[1], key, names[2], chain)?;
        if !self.force_tls && self.ssl_trusted_ca_path.is_none() {
            // Like the Java agent: a client certificate alone does not turn TLS on.
            return Ok(None);
        }
        Ok(Some(TlsFiles {
            ca: self.ssl_trusted_ca_path.clone(),
            identity: chain.zip(key).map(|(c, k)| (c.to_owned(), k.to_owned())),
        }))
    }
}

/// The TLS variables: CA, key, chain.
const TLS_VARS: [&str; 3] = [
    "SW_AGENT_SSL_TRUSTED_CA_PATH",
    "SW_AGENT_SSL_KEY_PATH",
    "SW_AGENT_SSL_CERT_CHAIN_PATH",
];

fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(check::MAX_NAME_CHARS)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rust-service".to_owned())
}

fn default_instance_name() -> String {
    let host = crate::host::ipv4_addresses()
        .into_iter()
        .next()
        .unwrap_or_else(crate::host::hostname);
    let name = format!("{}@{host}", crate::id::process_uuid());
    name.chars()
        .filter(|c| !c.is_control())
        .take(check::MAX_NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_every_variable() {
        let config = Config::builder()
            .env(env_of(&[
                ("SW_AGENT_NAME", "orders"),
                ("SW_AGENT_INSTANCE_NAME", "orders-1"),
                ("SW_AGENT_NAMESPACE", "prod"),
                ("SW_AGENT_CLUSTER", "eu-1"),
                ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "a:1, b:2"),
                ("SW_AGENT_AUTHENTICATION", "secret"),
                ("SW_AGENT_SAMPLE", "50"),
                ("SW_AGENT_SPAN_LIMIT", "20"),
                ("SW_AGENT_IGNORE_SUFFIX", ".png,.css"),
                ("SW_AGENT_TRACE_IGNORE_PATH", "/health, /static/**"),
                ("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", "5"),
                ("SW_AGENT_QUEUE_SIZE", "7"),
                ("SW_AGENT_KEEP_TRACING", "true"),
                ("SW_AGENT_CORRELATION_MAX_KEY_COUNT", "2"),
                ("SW_AGENT_CORRELATION_MAX_VALUE_SIZE", "16"),
                ("SW_AGENT_SQL_PARAMETERS_MAX_LENGTH", "512"),
                ("SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL", "0"),
                ("SW_AGENT_FORCE_TLS", "true"),
                ("SW_AGENT_METER_REPORTER_ACTIVE", "false"),
                ("SW_AGENT_METER_REPORTER_PERIOD", "3"),
                ("SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE", "9"),
            ]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.service_name, "orders|prod|eu-1");
        assert_eq!(config.instance_name, "orders-1");
        assert_eq!(config.namespace, "prod");
        assert_eq!(config.cluster, "eu-1");
        assert_eq!(config.backends, vec!["a:1", "b:2"]);
        assert_eq!(config.authentication.as_deref(), Some("secret"));
        assert_eq!(config.sample_per_3_secs, 50);
        assert_eq!(config.span_limit, 20);
        assert_eq!(config.ignore_suffix, vec![".png", ".css"]);
        assert_eq!(config.ignore_paths, vec!["/health", "/static/**"]);
        assert_eq!(config.heartbeat_period, Duration::from_secs(5));
        assert_eq!(config.queue_size, 7);
        assert!(config.keep_tracing);
        assert_eq!(config.correlation_max_keys, 2);
        assert_eq!(config.correlation_max_value_size, 16);
        assert_eq!(config.sql_parameters_max_length, 512);
        assert_eq!(config.dynamic_config_interval, Duration::ZERO);
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                ca: None,
                identity: None
            })
        );
        assert_eq!(
            config.meters,
            MeterReporting {
                active: false,
                period: Duration::from_secs(3),
                max_buffer_size: 9
            }
        );
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn defaults_match_the_official_agents() {
        let config = Config::builder().build().unwrap();
        assert_eq!(config.backends, vec!["127.0.0.1:11800"]);
        assert_eq!(config.sample_per_3_secs, -1);
        assert_eq!(config.span_limit, 300);
        assert_eq!(config.sql_parameters_max_length, 0);
        assert_eq!(config.heartbeat_period, Duration::from_secs(30));
        assert!(config.meters.active);
        assert_eq!(config.meters.period, Duration::from_secs(20));
        assert!(config.ignore_suffix.contains(&".jpg".to_string()));
        assert!(config.instance_name.contains('@'));
        assert!(!config.service_name.is_empty());
        assert!(!config.service_name.contains('|'));
        assert_eq!((config.namespace(), config.cluster()), ("", ""));
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases: &[(&str, &str)] = &[
            ("SW_AGENT_SAMPLE", "abc"),
            ("SW_AGENT_SAMPLE", "-2"),
            ("SW_AGENT_SPAN_LIMIT", "0"),
            ("SW_AGENT_SPAN_LIMIT", "many"),
            ("SW_AGENT_SPAN_LIMIT", "10001"),
            ("SW_AGENT_QUEUE_SIZE", "-5"),
            ("SW_AGENT_QUEUE_SIZE", "2305843009213693952"),
            ("SW_AGENT_QUEUE_SIZE", "99999999999999999999999"),
            ("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", "30s"),
            ("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", "0"),
            (
                "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD",
                "18446744073709551615",
            ),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "oap"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "oap:port"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "http://oap:11800"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", ","),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "::1"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "::1:11800"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "a?b:11800"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "%zz:11800"),
            ("SW_AGENT_KEEP_TRACING", "maybe"),
            ("SW_AGENT_NAME", ""),
            ("SW_AGENT_NAMESPACE", "a|b"),
            ("SW_AGENT_CLUSTER", "a\u{7}b"),
            ("SW_AGENT_CORRELATION_MAX_KEY_COUNT", "65"),
            ("SW_AGENT_CORRELATION_MAX_VALUE_SIZE", "8193"),
            ("SW_AGENT_CORRELATION_MAX_VALUE_SIZE", "4096"),
            ("SW_AGENT_SQL_PARAMETERS_MAX_LENGTH", "65537"),
            ("SW_AGENT_SQL_PARAMETERS_MAX_LENGTH", "-1"),
            ("SW_AGENT_SQL_PARAMETERS_MAX_LENGTH", "on"),
            ("SW_AGENT_AUTHENTICATION", "tök"),
            ("SW_AGENT_FORCE_TLS", "maybe"),
            ("SW_AGENT_SSL_TRUSTED_CA_PATH", "/nowhere/ca.crt"),
            ("SW_AGENT_SSL_KEY_PATH", "/nowhere/agent.key"),
            (
                "SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL",
                "20s",
            ),
            (
                "SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL",
                "86401",
            ),
            ("SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL", "-1"),
            ("SW_AGENT_METER_REPORTER_ACTIVE", "on-ish"),
            ("SW_AGENT_METER_REPORTER_PERIOD", "0"),
            ("SW_AGENT_METER_REPORTER_PERIOD", "20s"),
            ("SW_AGENT_METER_REPORTER_PERIOD", "3601"),
            ("SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE", "0"),
            ("SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE", "10001"),
            ("SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE", "lots"),
        ];
        for (name, value) in cases {
            let lookup = move |n: &str| (n == *name).then(|| value.to_string());
            let err = Config::builder().env(lookup).unwrap_err();
            assert_eq!(err.variable, *name);
            assert_eq!(err.value, *value);
            let text = err.to_string();
            assert!(
                text.contains(name) && text.contains(&format!("{value:?}")),
                "{text}"
            );
            assert_eq!(format!("{err:?}"), text);
        }
    }

    #[test]
    fn builder_checks_every_value_and_names_the_method() {
        let err = |b: ConfigBuilder| b.build().unwrap_err().variable;
        let b = Config::builder;
        assert_eq!(err(b().service_name("")), "service_name");
        assert_eq!(err(b().service_name("x".repeat(257))), "service_name");
        assert_eq!(err(b().instance_name("a\nb")), "instance_name");
        assert_eq!(err(b().namespace("a|b")), "namespace");
        assert_eq!(err(b().namespace("n".repeat(100_000))), "namespace");
        assert_eq!(err(b().cluster("\0")), "cluster");
        assert_eq!(err(b().backend_services("::1")), "backend_services");
        assert_eq!(err(b().authentication("tok\n")), "authentication");
        assert_eq!(err(b().sample_per_3_secs(-2)), "sample_per_3_secs");
        assert_eq!(err(b().span_limit(0)), "span_limit");
        assert_eq!(err(b().span_limit(usize::MAX)), "span_limit");
        assert_eq!(err(b().queue_size(0)), "queue_size");
        assert_eq!(err(b().queue_size(usize::MAX)), "queue_size");
        assert_eq!(
            err(b().heartbeat_period(Duration::ZERO)),
            "heartbeat_period"
        );
        assert_eq!(err(b().heartbeat_period(Duration::MAX)), "heartbeat_period");
        assert_eq!(
            err(b().meter_reporter_period(Duration::from_millis(999))),
            "meter_reporter_period"
        );
        assert_eq!(
            err(b().meter_reporter_max_buffer_size(0)),
            "meter_reporter_max_buffer_size"
        );
        assert_eq!(err(b().correlation_max_keys(65)), "correlation_max_keys");
        assert_eq!(
            err(b().dynamic_config_interval(Duration::from_millis(10))),
            "dynamic_config_interval"
        );
        assert_eq!(err(b().ssl_key_path("/nowhere/key")), "ssl_key_path");
        assert_eq!(
            err(b()
                .correlation_max_keys(64)
                .correlation_max_value_size(1024)),
            "correlation_max_value_size"
        );
        assert_eq!(err(b().ignore_paths("/a\u{1b}")), "ignore_paths");
        assert_eq!(
            err(b().sql_parameters_max_length(65_537)),
            "sql_parameters_max_length"
        );
        let multi_line = b()
            .ignore_paths("/health,\n  /static/**\n")
            .build()
            .unwrap();
        assert_eq!(multi_line.ignore_paths, ["/health", "/static/**"]);
        assert_eq!(err(b().ignore_suffix(",".repeat(70_000))), "ignore_suffix");
        // Namespaces are no longer header prefixes: anything printable but `|` is fine.
        let config = b().service_name("s").namespace("a b").build().unwrap();
        assert_eq!(config.service_name(), "s|a b");
        assert_eq!(b().authentication("").build().unwrap().authentication, None);
    }

    #[test]
    fn service_name_joins_the_parts_that_are_set() {
        let name = |ns: &str, cluster: &str| {
            Config::builder()
                .service_name("orders")
                .namespace(ns)
                .cluster(cluster)
                .build()
                .unwrap()
                .service_name
        };
        assert_eq!(name("", ""), "orders");
        assert_eq!(name("prod", ""), "orders|prod");
        assert_eq!(name("", "eu"), "orders|eu");
        assert_eq!(name("prod", "eu"), "orders|prod|eu");
    }

    #[test]
    fn ipv6_backends_are_kept_in_brackets() {
        let config = Config::builder()
            .backend_services("[::1]:11800, oap:11800")
            .build()
            .unwrap();
        assert_eq!(config.backends(), ["[::1]:11800", "oap:11800"]);
    }

    #[test]
    fn a_list_error_names_the_entry_at_fault() {
        let err = Config::builder()
            .env(env_of(&[(
                "SW_AGENT_COLLECTOR_BACKEND_SERVICES",
                "oap:11800,::1:11800",
            )]))
            .unwrap_err();
        assert_eq!(err.value, "::1:11800");
        assert!(err.expected.contains("[::1]:11800"), "{err}");
    }

    #[test]
    fn non_utf8_values_name_the_variable() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let err = Config::builder()
                .env_os(|name| {
                    (name == "SW_AGENT_NAMESPACE").then(|| OsString::from_vec(b"a\xffb".to_vec()))
                })
                .unwrap_err();
            assert_eq!(err.variable, "SW_AGENT_NAMESPACE");
            assert_eq!(err.value, "a\u{fffd}b");
        }
        let ok = Config::builder()
            .env_os(|name| (name == "SW_AGENT_NAME").then(|| OsString::from("orders")))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(ok.service_name(), "orders");
    }
}
