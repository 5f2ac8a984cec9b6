//! The Kafka reporter's settings (`SW_KAFKA_*`, `SW_PLUGIN_KAFKA_TOPIC_*`): where the brokers
//! are, the topics OAP's kafka-fetcher reads, and the producer's compression, TLS and SASL.
//! Each value is checked when read; an error names the variable and the value.

// Read by the Kafka transport only, which the `kafka` feature compiles.
#![cfg_attr(not(feature = "kafka"), allow(dead_code))]

use super::ConfigError;
use super::check;

/// OAP's default topics (its `KafkaFetcherConfig`), before the namespace.
pub(crate) const SEGMENT_TOPIC: &str = "skywalking-segments";
pub(crate) const METER_TOPIC: &str = "skywalking-meters";
pub(crate) const LOG_TOPIC: &str = "skywalking-logs";
pub(crate) const MANAGEMENT_TOPIC: &str = "skywalking-managements";

/// The Java producer's `max.request.size` and a broker's default `message.max.bytes` (1 MiB
/// and a little): a larger record is refused by an untuned broker.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;
const MAX_MESSAGE_BYTES: &str = "a number of bytes from 1024 to 104857600";

/// How record batches are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
}

/// A SASL mechanism rskafka speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

/// Everything the Kafka transport needs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KafkaSettings {
    /// `host:port` each; empty until set.
    pub(crate) bootstrap: Vec<String>,
    /// `SW_KAFKA_NAMESPACE`: every topic becomes `{namespace}-{topic}`.
    pub(crate) namespace: String,
    pub(crate) segment_topic: String,
    pub(crate) meter_topic: String,
    pub(crate) log_topic: String,
    pub(crate) management_topic: String,
    pub(crate) compression: Compression,
    /// TLS to the brokers (`SSL` or `SASL_SSL`), with the agent's TLS files when given.
    pub(crate) tls: bool,
    pub(crate) sasl: Option<(SaslMechanism, String, String)>,
    pub(crate) max_message_bytes: usize,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap", &self.bootstrap)
            .field("namespace", &self.namespace)
            .field("topics", &self.topics())
            .field("compression", &self.compression)
            .field("tls", &self.tls)
            // The password is a secret.
            .field("sasl", &self.sasl.as_ref().map(|(m, user, _)| (m, user)))
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            bootstrap: Vec::new(),
            namespace: String::new(),
            segment_topic: SEGMENT_TOPIC.into(),
            meter_topic: METER_TOPIC.into(),
            log_topic: LOG_TOPIC.into(),
            management_topic: MANAGEMENT_TOPIC.into(),
            compression: Compression::None,
            tls: false,
            sasl: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl KafkaSettings {
    /// The topics as sent to: segments, meters, logs, management, the namespace prefixed.
    pub(crate) fn topics(&self) -> [String; 4] {
        [
            &self.segment_topic,
            &self.meter_topic,
            &self.log_topic,
            &self.management_topic,
        ]
        .map(|topic| self.topic(topic))
    }

    fn topic(&self, plain: &str) -> String {
        if self.namespace.is_empty() {
            plain.to_owned()
        } else {
            format!("{}-{plain}", self.namespace)
        }
    }

    /// Reads the `SW_KAFKA_*` variables `var` knows.
    pub(crate) fn apply_env(
        &mut self,
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = var("SW_KAFKA_BOOTSTRAP_SERVERS") {
            self.bootstrap = check::backends("SW_KAFKA_BOOTSTRAP_SERVERS", &v)?;
            if self.bootstrap.is_empty() {
                return Err(check::invalid(
                    "SW_KAFKA_BOOTSTRAP_SERVERS",
                    v,
                    "a comma-separated list of host:port",
                ));
            }
        }
        if let Some(v) = var("SW_KAFKA_NAMESPACE") {
            self.namespace = topic_part("SW_KAFKA_NAMESPACE", v, true)?;
        }
        for (name, field) in [
            ("SW_PLUGIN_KAFKA_TOPIC_SEGMENT", &mut self.segment_topic),
            ("SW_PLUGIN_KAFKA_TOPIC_METER", &mut self.meter_topic),
            ("SW_PLUGIN_KAFKA_TOPIC_LOGGING", &mut self.log_topic),
            (
                "SW_PLUGIN_KAFKA_TOPIC_MANAGEMENT",
                &mut self.management_topic,
            ),
        ] {
            if let Some(v) = var(name) {
                *field = topic_part(name, v, false)?;
            }
        }
        if let Some(v) = var("SW_KAFKA_COMPRESSION") {
            self.compression = match v.to_ascii_lowercase().as_str() {
                "none" | "" => Compression::None,
                "gzip" => Compression::Gzip,
                "snappy" => Compression::Snappy,
                _ => {
                    return Err(check::invalid(
                        "SW_KAFKA_COMPRESSION",
                        v,
                        "none, gzip or snappy",
                    ));
                }
            };
        }
        if let Some(v) = var("SW_KAFKA_ACKS") {
            // rskafka always asks every in-sync replica (acks=all): say so rather than ignore.
            if !matches!(v.to_ascii_lowercase().as_str(), "all" | "-1") {
                return Err(check::invalid(
                    "SW_KAFKA_ACKS",
                    v,
                    "all (or -1): the producer waits for every in-sync replica",
                ));
            }
        }
        let mut sasl = false;
        if let Some(v) = var("SW_KAFKA_SECURITY_PROTOCOL") {
            (self.tls, sasl) = match v.to_ascii_uppercase().as_str() {
                "PLAINTEXT" => (false, false),
                "SSL" => (true, false),
                "SASL_PLAINTEXT" => (false, true),
                "SASL_SSL" => (true, true),
                _ => {
                    return Err(check::invalid(
                        "SW_KAFKA_SECURITY_PROTOCOL",
                        v,
                        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                    ));
                }
            };
        }
        if sasl {
            let mechanism = var("SW_KAFKA_SASL_MECHANISM").unwrap_or_else(|| "PLAIN".into());
            let mechanism = match mechanism.to_ascii_uppercase().as_str() {
                "PLAIN" => SaslMechanism::Plain,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                _ => {
                    return Err(check::invalid(
                        "SW_KAFKA_SASL_MECHANISM",
                        mechanism,
                        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    ));
                }
            };
            let user = var("SW_KAFKA_SASL_USERNAME").unwrap_or_default();
            if user.is_empty() {
                return Err(check::invalid(
                    "SW_KAFKA_SASL_USERNAME",
                    user,
                    "a user name (SW_KAFKA_SECURITY_PROTOCOL asks for SASL)",
                ));
            }
            let password = var("SW_KAFKA_SASL_PASSWORD").unwrap_or_default();
            self.sasl = Some((mechanism, user, password));
        }
        if let Some(v) = var("SW_KAFKA_MAX_MESSAGE_BYTES") {
            let name = "SW_KAFKA_MAX_MESSAGE_BYTES";
            let n: usize = check::number(name, &v, MAX_MESSAGE_BYTES)?;
            self.max_message_bytes = max_message_bytes(name, n)?;
        }
        Ok(())
    }
}

/// A record's limit: from 1 KiB to 100 MiB.
pub(crate) fn max_message_bytes(variable: &str, n: usize) -> Result<usize, ConfigError> {
    if !(1024..=100 * 1024 * 1024).contains(&n) {
        return Err(check::invalid(variable, n.to_string(), MAX_MESSAGE_BYTES));
    }
    Ok(n)
}

/// A topic name or namespace: Kafka's legal characters (`[a-zA-Z0-9._-]`), at most 200 so that
/// a namespaced topic stays within Kafka's 249.
pub(crate) fn topic_part(
    variable: &str,
    value: String,
    empty_ok: bool,
) -> Result<String, ConfigError> {
    let legal = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !legal || value.len() > 200 || (value.is_empty() && !empty_ok) {
        return Err(check::invalid(
            variable,
            value,
            "at most 200 of a-z, A-Z, 0-9, '.', '_' and '-' (Kafka's topic characters)",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_namespace_prefixes_every_topic() {
        let mut s = KafkaSettings::default();
        s.apply_env(&env(&[
            ("SW_KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9092"),
            ("SW_KAFKA_NAMESPACE", "prod"),
            ("SW_PLUGIN_KAFKA_TOPIC_LOGGING", "my-logs"),
        ]))
        .unwrap();
        assert_eq!(s.bootstrap, ["k1:9092", "k2:9092"]);
        assert_eq!(
            s.topics(),
            [
                "prod-skywalking-segments",
                "prod-skywalking-meters",
                "prod-my-logs",
                "prod-skywalking-managements"
            ]
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        for (name, value) in [
            ("SW_KAFKA_BOOTSTRAP_SERVERS", "kafka"),
            ("SW_KAFKA_BOOTSTRAP_SERVERS", ","),
            ("SW_KAFKA_NAMESPACE", "a b"),
            ("SW_PLUGIN_KAFKA_TOPIC_SEGMENT", ""),
            ("SW_PLUGIN_KAFKA_TOPIC_METER", "m/x"),
            ("SW_KAFKA_COMPRESSION", "lz4"),
            ("SW_KAFKA_ACKS", "1"),
            ("SW_KAFKA_SECURITY_PROTOCOL", "TLS"),
            ("SW_KAFKA_MAX_MESSAGE_BYTES", "10"),
        ] {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(vec![(name, value)].into_boxed_slice());
            let err = KafkaSettings::default().apply_env(&env(pairs)).unwrap_err();
            assert_eq!((err.variable.as_str(), err.value.as_str()), (name, value));
        }
        let err = KafkaSettings::default()
            .apply_env(&env(&[
                ("SW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                ("SW_KAFKA_SASL_MECHANISM", "GSSAPI"),
            ]))
            .unwrap_err();
        assert_eq!(err.variable, "SW_KAFKA_SASL_MECHANISM");
        let err = KafkaSettings::default()
            .apply_env(&env(&[("SW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")]))
            .unwrap_err();
        assert_eq!(err.variable, "SW_KAFKA_SASL_USERNAME");
    }

    #[test]
    fn sasl_and_tls_are_read_together() {
        let mut s = KafkaSettings::default();
        s.apply_env(&env(&[
            ("SW_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("SW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("SW_KAFKA_SASL_USERNAME", "agent"),
            ("SW_KAFKA_SASL_PASSWORD", "secret"),
            ("SW_KAFKA_COMPRESSION", "snappy"),
        ]))
        .unwrap();
        assert!(s.tls);
        assert_eq!(s.compression, Compression::Snappy);
        assert_eq!(
            s.sasl,
            Some((SaslMechanism::ScramSha512, "agent".into(), "secret".into()))
        );
        assert!(!format!("{s:?}").contains("secret"));
    }
}
