//! The checks every configuration value passes, shared by [`super::ConfigBuilder::env`] (which
//! names the variable) and [`super::ConfigBuilder::build`] (which names the builder method).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use super::ConfigError;

/// Longest service or instance name, in characters.
pub(super) const MAX_NAME_CHARS: usize = 256;
/// Longest namespace or cluster, in characters.
pub(super) const MAX_LABEL_CHARS: usize = 256;
/// Most backends in `SW_AGENT_COLLECTOR_BACKEND_SERVICES`.
pub(super) const MAX_BACKENDS: usize = 16_384;
/// Longest `SW_AGENT_AUTHENTICATION` token, in bytes.
pub(super) const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Most spans per segment.
pub(crate) const MAX_SPAN_LIMIT: usize = 10_000;
/// Largest segment queue: a tokio channel panics above 2^61, and a million segments is already
/// far more memory than an agent should hold.
pub(super) const MAX_QUEUE_SIZE: usize = 1 << 20;
/// Heartbeat period bounds: whole seconds, up to an hour.
pub(super) const MAX_HEARTBEAT_SECS: u64 = 3_600;
/// Correlation limits: keys, value bytes, and their product (so that a full `sw8-correlation`
/// header stays well under the 16 KiB a callee reads).
pub(super) const MAX_CORRELATION_KEYS: usize = 64;
pub(super) const MAX_CORRELATION_VALUE: usize = 8 * 1024;
pub(super) const MAX_CORRELATION_BYTES: usize = 8 * 1024;
/// Longest ignore-suffix or ignore-path list, in bytes, and most entries in one.
pub(super) const MAX_LIST_LEN: usize = 64 * 1024;
pub(super) const MAX_LIST_ENTRIES: usize = 1_024;

pub(super) fn invalid(variable: &str, value: impl Into<String>, expected: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        value: value.into(),
        expected: expected.to_owned(),
    }
}

/// A service or instance name: non-empty, at most [`MAX_NAME_CHARS`], no control characters.
pub(super) fn name(variable: &str, value: String) -> Result<String, ConfigError> {
    if value.is_empty()
        || value.chars().count() > MAX_NAME_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(invalid(
            variable,
            value,
            "a non-empty name of at most 256 characters, without control characters",
        ));
    }
    Ok(value)
}

/// A namespace or cluster: may be empty; no `|` (it separates the parts of the reported
/// service name) and no control characters.
pub(super) fn label(variable: &str, value: String) -> Result<String, ConfigError> {
    if value.chars().count() > MAX_LABEL_CHARS || value.chars().any(|c| c.is_control() || c == '|')
    {
        return Err(invalid(
            variable,
            value,
            "at most 256 characters, without '|' or control characters",
        ));
    }
    Ok(value)
}

/// The authentication token: sent as gRPC metadata, so visible ASCII; empty means none.
pub(super) fn token(variable: &str, value: String) -> Result<Option<String>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_TOKEN_LEN || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid(
            variable,
            value,
            "printable ASCII of at most 8192 bytes",
        ));
    }
    Ok(Some(value))
}

pub(crate) fn sample(variable: &str, value: i32) -> Result<i32, ConfigError> {
    if value < -1 {
        return Err(invalid(variable, value.to_string(), SAMPLE));
    }
    Ok(value)
}
pub(crate) const SAMPLE: &str = "an integer >= -1";

pub(crate) fn span_limit(variable: &str, value: usize) -> Result<usize, ConfigError> {
    in_range(variable, value, 1, MAX_SPAN_LIMIT, SPAN_LIMIT)
}
pub(crate) const SPAN_LIMIT: &str = "an integer from 1 to 10000";

/// One gRPC message's size: at least 64 KiB (a span's capped strings fit), at most 256 MiB.
pub(super) const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
pub(super) const MAX_MESSAGE_SIZE: &str = "a number of bytes from 65536 to 268435456";

pub(super) fn max_message_size(variable: &str, value: usize) -> Result<usize, ConfigError> {
    in_range(
        variable,
        value,
        64 * 1024,
        256 * 1024 * 1024,
        MAX_MESSAGE_SIZE,
    )
}

/// Longest text kept of a query's bound parameters (`db.sql.parameters`), in bytes.
pub(crate) const MAX_SQL_PARAMETERS: usize = 64 * 1024;
pub(crate) const SQL_PARAMETERS: &str = "a number of bytes from 0 (off) to 65536";

pub(crate) fn sql_parameters(variable: &str, value: usize) -> Result<usize, ConfigError> {
    in_range(variable, value, 0, MAX_SQL_PARAMETERS, SQL_PARAMETERS)
}

pub(super) fn queue_size(variable: &str, value: usize) -> Result<usize, ConfigError> {
    in_range(variable, value, 1, MAX_QUEUE_SIZE, QUEUE_SIZE)
}
pub(super) const QUEUE_SIZE: &str = "an integer from 1 to 1048576";

pub(super) fn heartbeat(variable: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value < Duration::from_secs(1) || value > Duration::from_secs(MAX_HEARTBEAT_SECS) {
        return Err(invalid(variable, format!("{value:?}"), HEARTBEAT));
    }
    Ok(value)
}
pub(super) const HEARTBEAT: &str = "from 1 to 3600 seconds";
pub(super) const HEARTBEAT_SECS: &str = "a whole number of seconds from 1 to 3600";

/// Longest dynamic-configuration interval: a day.
pub(super) const MAX_DYNAMIC_CONFIG_SECS: u64 = 86_400;
pub(super) const DYNAMIC_CONFIG_SECS: &str = "a whole number of seconds from 0 (off) to 86400";

pub(super) fn dynamic_config(variable: &str, value: Duration) -> Result<Duration, ConfigError> {
    // Zero is off; otherwise at least a second, so a mistake cannot make the agent poll OAP in
    // a loop.
    if (!value.is_zero() && value < Duration::from_secs(1))
        || value > Duration::from_secs(MAX_DYNAMIC_CONFIG_SECS)
    {
        return Err(invalid(
            variable,
            format!("{value:?}"),
            "zero (off) or from 1 to 86400 seconds",
        ));
    }
    Ok(value)
}

/// A file the agent will read (a certificate, a key): it must exist and be readable now. The
/// error names the path and what the system said.
pub(super) fn readable_file(variable: &str, path: &Path) -> Result<(), ConfigError> {
    let problem = match std::fs::File::open(path) {
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.is_file() => return Ok(()),
            Ok(_) => "it is not a file".to_owned(),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    Err(invalid(
        variable,
        path.to_string_lossy(),
        &format!("a readable PEM file; {problem}"),
    ))
}

/// Mutual TLS needs the key and the chain together: one without the other is an error naming
/// the one that is set.
pub(super) fn key_pair(
    key_variable: &str,
    key: Option<&Path>,
    chain_variable: &str,
    chain: Option<&Path>,
) -> Result<(), ConfigError> {
    match (key, chain) {
        (Some(key), None) => Err(invalid(
            key_variable,
            key.to_string_lossy(),
            &format!(
                "{chain_variable} as well: mutual TLS needs the key and its certificate chain"
            ),
        )),
        (None, Some(chain)) => Err(invalid(
            chain_variable,
            chain.to_string_lossy(),
            &format!("{key_variable} as well: mutual TLS needs the certificate chain and its key"),
        )),
        _ => Ok(()),
    }
}
/// Meter period bounds: whole seconds, up to an hour.
pub(super) const MAX_METER_PERIOD_SECS: u64 = 3_600;
/// Meter reports held while the backend is down: an hour at the default period of 20 s.
pub(super) const DEFAULT_METER_BUFFER: usize = 180;
/// At most 10,000 reports: a report is a few kB, so the buffer stays within tens of MB.
pub(super) const MAX_METER_BUFFER: usize = 10_000;

pub(super) fn meter_period(variable: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value < Duration::from_secs(1) || value > Duration::from_secs(MAX_METER_PERIOD_SECS) {
        return Err(invalid(variable, format!("{value:?}"), METER_PERIOD));
    }
    Ok(value)
}
pub(super) const METER_PERIOD: &str = "from 1 to 3600 seconds";
pub(super) const METER_PERIOD_SECS: &str = "a whole number of seconds from 1 to 3600";

pub(super) fn meter_buffer(variable: &str, value: usize) -> Result<usize, ConfigError> {
    in_range(variable, value, 1, MAX_METER_BUFFER, METER_BUFFER)
}
pub(super) const METER_BUFFER: &str = "an integer from 1 to 10000";

pub(super) fn correlation_keys(variable: &str, value: usize) -> Result<usize, ConfigError> {
    in_range(variable, value, 0, MAX_CORRELATION_KEYS, CORRELATION_KEYS)
}
pub(super) const CORRELATION_KEYS: &str = "an integer from 0 to 64";

pub(super) fn correlation_value(variable: &str, value: usize) -> Result<usize, ConfigError> {
    in_range(variable, value, 0, MAX_CORRELATION_VALUE, CORRELATION_VALUE)
}
pub(super) const CORRELATION_VALUE: &str = "an integer from 0 to 8192";

/// Keys times value size within [`MAX_CORRELATION_BYTES`]; the error names `variable`, the one
/// of the two that was set last.
pub(super) fn correlation_total(
    variable: &str,
    value: usize,
    keys: usize,
    value_size: usize,
) -> Result<(), ConfigError> {
    if keys.saturating_mul(value_size) > MAX_CORRELATION_BYTES {
        return Err(invalid(
            variable,
            value.to_string(),
            &format!(
                "correlation keys ({keys}) times value size ({value_size}) of at most 8192 \
                 bytes, so that the header fits what a callee reads"
            ),
        ));
    }
    Ok(())
}

fn in_range<T: PartialOrd + ToString>(
    variable: &str,
    value: T,
    min: T,
    max: T,
    expected: &str,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(invalid(variable, value.to_string(), expected));
    }
    Ok(value)
}

/// Parses a whole decimal number (no sign, no spaces) of type `T`; `expected` says the range.
pub(crate) fn number<T: std::str::FromStr>(
    variable: &str,
    value: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(variable, value, expected));
    }
    value
        .parse()
        .map_err(|_| invalid(variable, value, expected))
}

/// What [`boolean`] accepts, for its error (and for other readers of boolean variables).
pub(crate) const BOOLEAN: &str = "true/false, 1/0, yes/no or on/off";

/// A boolean variable: `true`/`false` as the other agents, and the usual spellings of them.
pub(crate) fn boolean(variable: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, BOOLEAN)),
    }
}

/// Splits a comma-separated list, dropping empty entries; bounded in length and count.
pub(crate) fn list(variable: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let entries: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    // Line breaks and tabs around entries are trimmed (lists written over several lines);
    // inside an entry a control character is a mistake.
    if value.len() > MAX_LIST_LEN
        || entries.len() > MAX_LIST_ENTRIES
        || entries.iter().any(|e| e.chars().any(char::is_control))
    {
        return Err(invalid(
            variable,
            value,
            "a comma-separated list of at most 1024 entries and 65536 bytes, without control \
             characters",
        ));
    }
    Ok(entries)
}

/// Splits and checks a `host:port,host:port` list. An error's value is the entry at fault.
pub(super) fn backends(variable: &str, list: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Err(expected) = backend(item) {
            return Err(invalid(variable, item, expected));
        }
        out.push(item.to_owned());
        if out.len() > MAX_BACKENDS {
            // The entry past the limit stands for the list, which may be long.
            return Err(invalid(variable, item, "at most 16384 backends"));
        }
    }
    if out.is_empty() {
        return Err(invalid(
            variable,
            list,
            "a comma-separated list of host:port, such as oap:11800",
        ));
    }
    Ok(out)
}

/// `host:port` with a port from 1 to 65535 and a host that is a DNS name, an IPv4 address or
/// an IPv6 address in brackets (kept as written: the reporter's connector removes them).
fn backend(item: &str) -> Result<(), &'static str> {
    const PORT: &str = "host:port with a port from 1 to 65535, such as oap:11800";
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let Some((v6, port)) = rest.split_once("]:") else {
            return Err("[IPv6 address]:port, such as [::1]:11800");
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err("[IPv6 address]:port with a valid IPv6 address, such as [::1]:11800");
        }
        (None, port)
    } else {
        let Some((host, port)) = item.rsplit_once(':') else {
            return Err(PORT);
        };
        if host.contains(':') || item.parse::<Ipv6Addr>().is_ok() {
            return Err("host:port; an IPv6 address goes in brackets, as [::1]:11800");
        }
        (Some(host), port)
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    if !port_ok {
        return Err(PORT);
    }
    match host {
        Some(host) if !is_host(host) => {
            Err("host:port where the host is a DNS name or an IP address, such as oap:11800")
        }
        _ => Ok(()),
    }
}

/// A DNS name (letters, digits, `-` and `_`, labels of 1 to 63 characters, at most 253 in all,
/// one trailing dot allowed) or an IPv4 address. A name of digits and dots only must be an
/// IPv4 address: `999.1.1.1` is neither.
fn is_host(host: &str) -> bool {
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::backend;

    #[test]
    fn backends() {
        for good in [
            "oap:11800",
            "oap.example.com:11800",
            "oap.example.com.:1",
            "10.0.0.1:65535",
            "[::1]:11800",
            "[fe80::1]:80",
            "skywalking_oap:11800",
            "x:11800",
        ] {
            assert_eq!(backend(good), Ok(()), "{good}");
        }
        for bad in [
            "::1",
            "::1:11800",
            "a?b:11800",
            "%zz:11800",
            "oap",
            "oap:",
            "oap:0",
            "oap:65536",
            "oap:+80",
            ":11800",
            "[::1]",
            "[::1]11800",
            "[zz]:11800",
            "[::1]:",
            "999.1.1.1:80",
            "-oap:80",
            "a..b:80",
            "http://oap:11800",
            "user@oap:11800",
            "oap/x:11800",
            "o ap:11800",
        ] {
            assert!(backend(bad).is_err(), "{bad}");
        }
        let long_label = format!("{}:80", "a".repeat(64));
        assert!(backend(&long_label).is_err());
    }
}
