//! What a new user meets on the first day (issue 22 items 6 and 8): the agent switched off says
//! so, boolean errors say what is accepted, and instance properties come from either agent's
//! variable, checked.

use std::collections::HashMap;

use skytrace::{Config, ConfigError};
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for, eventually, grpc_tracer};

fn env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::builder()
        .env(|name| map.get(name).cloned())?
        .build()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Run in a child process by the test below, with `SW_AGENT_ENABLE=false`.
#[test]
#[ignore = "a case run in a child process by switching_the_agent_off_says_so_once"]
fn case_agent_off() {
    let agent = skytrace::init(Config::from_env().unwrap()).unwrap();
    assert!(agent.tracer().is_none());
    drop(agent);
}

#[test]
fn switching_the_agent_off_says_so_once() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["case_agent_off", "--exact", "--ignored", "--nocapture"])
        .env("SW_AGENT_ENABLE", "false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("skytrace: "))
        .collect();
    assert_eq!(
        said,
        ["skytrace: the agent is off (SW_AGENT_ENABLE=false): nothing is traced or reported"],
        "{stderr}"
    );
}

#[test]
fn boolean_errors_say_what_is_accepted() {
    for variable in [
        "SW_AGENT_ENABLE",
        "SW_AGENT_KEEP_TRACING",
        "SW_AGENT_FORCE_TLS",
        "SW_AGENT_METER_REPORTER_ACTIVE",
    ] {
        let err = env(&[(variable, "maybe")]).unwrap_err();
        assert_eq!(err.variable, variable);
        assert_eq!(
            err.to_string(),
            format!(
                "skytrace: invalid value for {variable}: \"maybe\" \
                 (expected true/false, 1/0, yes/no or on/off)"
            )
        );
        for (yes, no) in [("true", "false"), ("1", "0"), ("YES", "No"), ("on", "OFF")] {
            assert!(env(&[(variable, yes)]).is_ok(), "{variable}={yes}");
            assert!(env(&[(variable, no)]).is_ok(), "{variable}={no}");
        }
    }
}

#[test]
fn instance_properties_come_from_either_agents_variable() {
    let json = r#"{"pod":"web-1","namespace":"shop","replicas":3}"#;
    let expected = pairs(&[("pod", "web-1"), ("namespace", "shop"), ("replicas", "3")]);
    // The Python agent's name, the Java agent's, or both alike (a chart setting both).
    for vars in [
        &[("SW_AGENT_INSTANCE_PROPERTIES_JSON", json)][..],
        &[("SW_INSTANCE_PROPERTIES_JSON", json)],
        &[
            ("SW_AGENT_INSTANCE_PROPERTIES_JSON", json),
            ("SW_INSTANCE_PROPERTIES_JSON", json),
        ],
    ] {
        let config = env(vars).unwrap();
        assert_eq!(config.instance_properties(), expected, "{vars:?}");
    }
    // Both, different: which one was meant is not guessed.
    let err = env(&[
        ("SW_AGENT_INSTANCE_PROPERTIES_JSON", json),
        ("SW_INSTANCE_PROPERTIES_JSON", r#"{"pod":"web-2"}"#),
    ])
    .unwrap_err();
    assert_eq!(err.variable, "SW_AGENT_INSTANCE_PROPERTIES_JSON");
    assert_eq!(err.value, json);
    assert!(
        err.expected.contains("SW_INSTANCE_PROPERTIES_JSON"),
        "{err}"
    );
    // The environment adds to the builder's, and wins on a key both give.
    let map = HashMap::from([("SW_INSTANCE_PROPERTIES_JSON", r#"{"pod":"web-3"}"#)]);
    let config = Config::builder()
        .instance_property("team", "payments")
        .instance_property("pod", "from-code")
        .env(|name| map.get(name).map(|v| v.to_string()))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        config.instance_properties(),
        pairs(&[("team", "payments"), ("pod", "web-3")])
    );
}

#[test]
fn bad_instance_properties_are_named_with_their_value() {
    for (json, why) in [
        ("pod=web-1", "at byte 0: the text must be one JSON object"),
        (r#"{"pod":null}"#, "at byte 7: a value must be a string"),
        (r#"{"pod":{"name":"web-1"}}"#, "a value must be a string"),
        (r#"{"pod":"web-1""#, "expected ',' or '}'"),
        (r#"{"":"x"}"#, "keys of 1 to 256 characters"),
    ] {
        for variable in [
            "SW_AGENT_INSTANCE_PROPERTIES_JSON",
            "SW_INSTANCE_PROPERTIES_JSON",
        ] {
            let err = env(&[(variable, json)]).unwrap_err();
            assert_eq!(err.variable, variable);
            assert_eq!(err.value, json);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("skytrace: invalid value for {variable}: ")),
                "{message}"
            );
            assert!(message.contains(why), "{message}");
        }
    }
    let err = Config::builder()
        .instance_property("", "x")
        .build()
        .unwrap_err();
    assert_eq!(err.variable, "instance_property");
}

/// Over real gRPC: the user's properties reach OAP after the agent's own, `cluster` with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_instance_properties_reach_oap() {
    let collector = Collector::start().await.unwrap();
    let _tracer = grpc_tracer(
        config_for(collector.addr())
            .service_name("props")
            .namespace("blue")
            .cluster("east")
            .instance_property("pod", "web-1")
            .instance_property("namespace", "shop"),
    );
    let last = |key: &str| {
        collector
            .instance_properties()
            .iter()
            .flat_map(|p| p.properties.clone())
            .rfind(|kv| kv.key == key)
            .map(|kv| kv.value)
    };
    assert!(
        eventually(WAIT, || last("pod").as_deref() == Some("web-1")).await,
        "{:#?}",
        collector.instance_properties()
    );
    // OAP keeps a key's last value: the user's `namespace` over SW_AGENT_NAMESPACE's.
    assert_eq!(last("namespace").as_deref(), Some("shop"));
    assert_eq!(last("cluster").as_deref(), Some("east"));
    assert_eq!(last("language").as_deref(), Some("rust"));
    collector.shutdown().await;
}
