//! Facts about this host that OAP shows for a service instance.

/// The host name, or `localhost` when it cannot be read.
pub(crate) fn hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Every non-loopback IPv4 address of this host.
pub(crate) fn ipv4_addresses() -> Vec<String> {
    if_addrs::get_if_addrs()
        .map(|ifaces| {
            ifaces
                .into_iter()
                .filter(|i| !i.is_loopback())
                .filter_map(|i| match i.ip() {
                    std::net::IpAddr::V4(v4) => Some(v4.to_string()),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The instance properties of a configuration: the agent's own ([`instance_properties`]),
/// `cluster` when configured (as the Java agent sends it), then the user's (`user`:
/// `Config::instance_properties`, from `SW_AGENT_INSTANCE_PROPERTIES_JSON`), last so that they
/// win where a key repeats (OAP keeps the last value of a key), as the Python agent orders them.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn instance_properties_with(
    namespace: &str,
    cluster: &str,
    user: &[(String, String)],
) -> Vec<(String, String)> {
    let mut props = instance_properties(namespace);
    if !cluster.is_empty() {
        props.push(("cluster".to_owned(), cluster.to_owned()));
    }
    props.extend(user.iter().cloned());
    props
}

/// The instance properties the official agents report at start, with `namespace` when one is
/// configured (as the Java agent sends it).
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn instance_properties(namespace: &str) -> Vec<(String, String)> {
    let mut props = vec![
        ("language".to_owned(), "rust".to_owned()),
        ("hostname".to_owned(), hostname()),
        ("Process No.".to_owned(), std::process::id().to_string()),
        ("OS Name".to_owned(), std::env::consts::OS.to_owned()),
        (
            "agent version".to_owned(),
            format!("skytrace {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    if !namespace.is_empty() {
        props.push(("namespace".to_owned(), namespace.to_owned()));
    }
    props.extend(
        ipv4_addresses()
            .into_iter()
            .map(|ip| ("ipv4".to_owned(), ip)),
    );
    props
}

#[cfg(test)]
mod tests {
    use super::{instance_properties, instance_properties_with};
    use crate::config::Config;

    fn of(config: &Config) -> Vec<(String, String)> {
        instance_properties_with(
            &config.namespace,
            &config.cluster,
            &config.instance_properties,
        )
    }

    #[test]
    fn the_users_properties_come_last_and_win() {
        let config = Config::builder()
            .namespace("blue")
            .cluster("east")
            .instance_property("pod", "web-1")
            .instance_property("namespace", "shop")
            .build()
            .unwrap();
        let props = of(&config);
        assert_eq!(props[0], ("language".to_owned(), "rust".to_owned()));
        let n = props.len();
        assert_eq!(
            props[n - 3..],
            [
                ("cluster".to_owned(), "east".to_owned()),
                ("pod".to_owned(), "web-1".to_owned()),
                ("namespace".to_owned(), "shop".to_owned()),
            ]
        );
        // OAP keeps the last value of a key: the user's `namespace`.
        let last_namespace = props.iter().rev().find(|(k, _)| k == "namespace");
        assert_eq!(last_namespace.map(|(_, v)| v.as_str()), Some("shop"));
        let plain = of(&Config::builder().build().unwrap());
        assert!(
            !plain
                .iter()
                .any(|(k, _)| k == "cluster" || k == "namespace")
        );
    }

    #[test]
    fn namespace_is_a_property_when_configured() {
        let with = instance_properties("blue");
        assert!(with.iter().any(|(k, v)| k == "namespace" && v == "blue"));
        assert!(with.iter().any(|(k, v)| k == "language" && v == "rust"));
        let without = instance_properties("");
        assert!(!without.iter().any(|(k, _)| k == "namespace"));
    }
}
