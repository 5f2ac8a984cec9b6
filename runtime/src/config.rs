//! Agent configuration: a builder, and the `SW_AGENT_*` variables the other SkyWalking agents read.

use std::fmt;
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
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) service_name: String,
    pub(crate) instance_name: String,
    #[allow(dead_code)] // propagation headers are never prefixed any more; the reporter sends it
    pub(crate) namespace: String,
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
    pub(crate) keep_tracing: bool,
    pub(crate) correlation_max_keys: usize,
    pub(crate) correlation_max_value_size: usize,
    pub(crate) reporter: ReporterKind,
}

/// A configuration value that cannot be used: names the variable (or builder setting) and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `SW_AGENT_SAMPLE`, or the builder method's name.
    pub variable: String,
    /// The value as given.
    pub value: String,
    /// What was expected instead.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value for {}: {:?} (expected {})",
            self.variable, self.value, self.expected
        )
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
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::builder()
            .env(|name| std::env::var(name).ok())?
            .build()
    }

    /// The service name reported to OAP.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The service instance name reported to OAP.
    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    /// The collector addresses, `host:port` each.
    pub fn backends(&self) -> &[String] {
        &self.backends
    }

    /// The reporter this configuration selects.
    pub fn reporter(&self) -> &ReporterKind {
        &self.reporter
    }
}

/// Builds a [`Config`]; every setter has the default the official agents use.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    service_name: Option<String>,
    instance_name: Option<String>,
    namespace: String,
    backends: String,
    authentication: Option<String>,
    sample_per_3_secs: i32,
    span_limit: usize,
    ignore_suffix: String,
    ignore_paths: String,
    heartbeat_period: Duration,
    queue_size: usize,
    keep_tracing: bool,
    correlation_max_keys: usize,
    correlation_max_value_size: usize,
    reporter: ReporterKind,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            service_name: None,
            instance_name: None,
            namespace: String::new(),
            backends: "127.0.0.1:11800".into(),
            authentication: None,
            sample_per_3_secs: -1,
            span_limit: 300,
            ignore_suffix: DEFAULT_IGNORE_SUFFIX.into(),
            ignore_paths: String::new(),
            heartbeat_period: Duration::from_secs(30),
            queue_size: 10_000,
            keep_tracing: false,
            correlation_max_keys: 3,
            correlation_max_value_size: 128,
            reporter: ReporterKind::Grpc,
        }
    }
}

impl ConfigBuilder {
    /// `SW_AGENT_NAME`. Default: the executable's name.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// `SW_AGENT_INSTANCE_NAME`. Default: `{uuid}@{ipv4}` (the host name without an IPv4), like
    /// the Java agent.
    pub fn instance_name(mut self, name: impl Into<String>) -> Self {
        self.instance_name = Some(name.into());
        self
    }

    /// `SW_AGENT_NAMESPACE`: isolates propagation; headers become `{namespace}-sw8` and so on.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// `SW_AGENT_COLLECTOR_BACKEND_SERVICES`: comma-separated `host:port` list. Default
    /// `127.0.0.1:11800`. The reporter round-robins and fails over across them.
    pub fn backend_services(mut self, list: impl Into<String>) -> Self {
        self.backends = list.into();
        self
    }

    /// `SW_AGENT_AUTHENTICATION`: sent as the `authentication` gRPC metadata.
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

    /// `SW_AGENT_SPAN_LIMIT`: spans per segment (default 300); later ones are not recorded and the
    /// segment is marked size-limited.
    pub fn span_limit(mut self, limit: usize) -> Self {
        self.span_limit = limit;
        self
    }

    /// `SW_AGENT_IGNORE_SUFFIX`: comma-separated; entry operations ending so start no trace.
    pub fn ignore_suffix(mut self, list: impl Into<String>) -> Self {
        self.ignore_suffix = list.into();
        self
    }

    /// `SW_AGENT_TRACE_IGNORE_PATH`: comma-separated request paths the HTTP integrations do not
    /// trace, such as `/health,/metrics,/static/**`. `*` matches within one path segment, `**`
    /// across segments, `?` one character.
    pub fn ignore_paths(mut self, list: impl Into<String>) -> Self {
        self.ignore_paths = list.into();
        self
    }

    /// `SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD` (seconds in the variable): keep-alive period, default 30 s.
    pub fn heartbeat_period(mut self, period: Duration) -> Self {
        self.heartbeat_period = period;
        self
    }

    /// `SW_AGENT_QUEUE_SIZE`: segments waiting for the reporter, default 10,000. When full, new
    /// segments are dropped and counted.
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

    /// `SW_AGENT_CORRELATION_MAX_KEY_COUNT` (default 3).
    pub fn correlation_max_keys(mut self, n: usize) -> Self {
        self.correlation_max_keys = n;
        self
    }

    /// `SW_AGENT_CORRELATION_MAX_VALUE_SIZE` in bytes (default 128).
    pub fn correlation_max_value_size(mut self, n: usize) -> Self {
        self.correlation_max_value_size = n;
        self
    }

    /// Which reporter [`crate::init`] starts. Default [`ReporterKind::Grpc`].
    pub fn reporter(mut self, kind: ReporterKind) -> Self {
        self.reporter = kind;
        self
    }

    /// Applies every `SW_AGENT_*` variable that `lookup` knows. With `std::env::var` this is
    /// [`Config::from_env`]; a closure over a map makes it testable.
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
            self.service_name = Some(non_empty("SW_AGENT_NAME", v)?);
        }
        if let Some(v) = var("SW_AGENT_INSTANCE_NAME") {
            self.instance_name = Some(non_empty("SW_AGENT_INSTANCE_NAME", v)?);
        }
        if let Some(v) = var("SW_AGENT_NAMESPACE") {
            self.namespace = v;
        }
        if let Some(v) = var("SW_AGENT_COLLECTOR_BACKEND_SERVICES") {
            parse_backends("SW_AGENT_COLLECTOR_BACKEND_SERVICES", &v)?;
            self.backends = v;
        }
        if let Some(v) = var("SW_AGENT_AUTHENTICATION") {
            self.authentication = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = var("SW_AGENT_SAMPLE") {
            self.sample_per_3_secs = parse_num("SW_AGENT_SAMPLE", &v, -1, "an integer >= -1")?;
        }
        if let Some(v) = var("SW_AGENT_SPAN_LIMIT") {
            self.span_limit = parse_num("SW_AGENT_SPAN_LIMIT", &v, 1, "an integer >= 1")?;
        }
        if let Some(v) = var("SW_AGENT_IGNORE_SUFFIX") {
            self.ignore_suffix = v;
        }
        if let Some(v) = var("SW_AGENT_TRACE_IGNORE_PATH") {
            self.ignore_paths = v;
        }
        if let Some(v) = var("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD") {
            let secs: u64 = parse_num(
                "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD",
                &v,
                1,
                "a whole number of seconds >= 1",
            )?;
            self.heartbeat_period = Duration::from_secs(secs);
        }
        if let Some(v) = var("SW_AGENT_QUEUE_SIZE") {
            self.queue_size = parse_num("SW_AGENT_QUEUE_SIZE", &v, 1, "an integer >= 1")?;
        }
        if let Some(v) = var("SW_AGENT_KEEP_TRACING") {
            self.keep_tracing = parse_bool("SW_AGENT_KEEP_TRACING", &v)?;
        }
        if let Some(v) = var("SW_AGENT_CORRELATION_MAX_KEY_COUNT") {
            self.correlation_max_keys = parse_num(
                "SW_AGENT_CORRELATION_MAX_KEY_COUNT",
                &v,
                0,
                "an integer >= 0",
            )?;
        }
        if let Some(v) = var("SW_AGENT_CORRELATION_MAX_VALUE_SIZE") {
            self.correlation_max_value_size = parse_num(
                "SW_AGENT_CORRELATION_MAX_VALUE_SIZE",
                &v,
                0,
                "an integer >= 0",
            )?;
        }
        Ok(self)
    }

    /// Checks every value and fills the derived defaults.
    pub fn build(self) -> Result<Config, ConfigError> {
        let backends = parse_backends("backend_services", &self.backends)?;
        if self.sample_per_3_secs < -1 {
            return Err(invalid(
                "sample_per_3_secs",
                self.sample_per_3_secs.to_string(),
                "an integer >= -1",
            ));
        }
        if self.span_limit == 0 {
            return Err(invalid("span_limit", "0", "an integer >= 1"));
        }
        if self.queue_size == 0 {
            return Err(invalid("queue_size", "0", "an integer >= 1"));
        }
        if self.heartbeat_period.is_zero() {
            return Err(invalid("heartbeat_period", "0s", "a positive duration"));
        }
        if let Some(token) = &self.authentication {
            // gRPC metadata values are visible ASCII.
            if !token.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(invalid(
                    "SW_AGENT_AUTHENTICATION",
                    token.clone(),
                    "printable ASCII",
                ));
            }
        }
        if !self
            .namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(invalid(
                "SW_AGENT_NAMESPACE",
                self.namespace.clone(),
                "letters, digits, '-', '_' or '.' (it becomes part of a header name)",
            ));
        }
        Ok(Config {
            service_name: self.service_name.unwrap_or_else(default_service_name),
            instance_name: self.instance_name.unwrap_or_else(default_instance_name),
            namespace: self.namespace,
            backends,
            authentication: self.authentication,
            sample_per_3_secs: self.sample_per_3_secs,
            span_limit: self.span_limit,
            ignore_suffix: split_list(&self.ignore_suffix),
            ignore_paths: split_list(&self.ignore_paths),
            heartbeat_period: self.heartbeat_period,
            queue_size: self.queue_size,
            keep_tracing: self.keep_tracing,
            correlation_max_keys: self.correlation_max_keys,
            correlation_max_value_size: self.correlation_max_value_size,
            reporter: self.reporter,
        })
    }
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn invalid(variable: &str, value: impl Into<String>, expected: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        value: value.into(),
        expected: expected.to_owned(),
    }
}

fn non_empty(variable: &str, value: String) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(invalid(variable, value, "a non-empty name"));
    }
    Ok(value)
}

fn parse_num<T: std::str::FromStr + PartialOrd>(
    variable: &str,
    value: &str,
    min: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match value.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(invalid(variable, value, expected)),
    }
}

fn parse_bool(variable: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, "true or false")),
    }
}

/// Splits and checks a `host:port,host:port` list.
fn parse_backends(variable: &str, list: &str) -> Result<Vec<String>, ConfigError> {
    let expected = "a comma-separated list of host:port";
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((host, port)) = item.rsplit_once(':') else {
            return Err(invalid(variable, list, expected));
        };
        let host_ok = !host.is_empty()
            && !host.contains('/')
            && !host.chars().any(char::is_whitespace)
            && !host.contains('@');
        if !host_ok || port.parse::<u16>().is_err() {
            return Err(invalid(variable, list, expected));
        }
        out.push(item.to_owned());
    }
    if out.is_empty() {
        return Err(invalid(variable, list, expected));
    }
    Ok(out)
}

fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rust-service".to_owned())
}

fn default_instance_name() -> String {
    let host = crate::host::ipv4_addresses()
        .into_iter()
        .next()
        .unwrap_or_else(crate::host::hostname);
    format!("{}@{host}", crate::id::process_uuid())
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
            ]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.service_name, "orders");
        assert_eq!(config.instance_name, "orders-1");
        assert_eq!(config.namespace, "prod");
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
    }

    #[test]
    fn defaults_match_the_official_agents() {
        let config = Config::builder().build().unwrap();
        assert_eq!(config.backends, vec!["127.0.0.1:11800"]);
        assert_eq!(config.sample_per_3_secs, -1);
        assert_eq!(config.span_limit, 300);
        assert_eq!(config.heartbeat_period, Duration::from_secs(30));
        assert!(config.ignore_suffix.contains(&".jpg".to_string()));
        assert!(config.instance_name.contains('@'));
        assert!(!config.service_name.is_empty());
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases: &[(&str, &str)] = &[
            ("SW_AGENT_SAMPLE", "abc"),
            ("SW_AGENT_SAMPLE", "-2"),
            ("SW_AGENT_SPAN_LIMIT", "0"),
            ("SW_AGENT_SPAN_LIMIT", "many"),
            ("SW_AGENT_QUEUE_SIZE", "-5"),
            ("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", "30s"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "oap"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "oap:port"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "http://oap:11800"),
            ("SW_AGENT_COLLECTOR_BACKEND_SERVICES", ","),
            ("SW_AGENT_KEEP_TRACING", "maybe"),
            ("SW_AGENT_NAME", ""),
        ];
        for (name, value) in cases {
            let lookup = move |n: &str| (n == *name).then(|| value.to_string());
            let err = Config::builder().env(lookup).unwrap_err();
            assert_eq!(err.variable, *name);
            assert_eq!(err.value, *value);
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn builder_checks_values_too() {
        assert_eq!(
            Config::builder()
                .span_limit(0)
                .build()
                .unwrap_err()
                .variable,
            "span_limit"
        );
        assert_eq!(
            Config::builder()
                .namespace("a b")
                .build()
                .unwrap_err()
                .variable,
            "SW_AGENT_NAMESPACE"
        );
        assert_eq!(
            Config::builder()
                .authentication("tok\n")
                .build()
                .unwrap_err()
                .variable,
            "SW_AGENT_AUTHENTICATION"
        );
    }
}
