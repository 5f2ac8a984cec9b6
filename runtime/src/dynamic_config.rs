//! OAP's dynamic configuration applied to the live settings: a `ConfigurationDiscoveryCommand`
//! becomes [`TraceSettings`] over the configured baseline, and replaces the settings in force
//! (the next trace on every thread uses them).
//!
//! Each command carries every key OAP has for the service: a key it names takes OAP's value, a
//! key it leaves out goes back to its configured value (a command without pairs restores them
//! all), as the Java agent does. Keys, with the Java agent's names:
//!
//! | key | setting |
//! |---|---|
//! | `agent.sample_n_per_3_secs` | [`TraceSettings::sample_per_3_secs`] |
//! | `agent.ignore_suffix` | [`TraceSettings::ignore_suffix`] (comma-separated) |
//! | `agent.trace.ignore_path` | [`TraceSettings::ignore_paths`] (comma-separated) |
//! | `agent.span_limit_per_segment` | [`TraceSettings::span_limit`] |
//!
//! Other keys are ignored. A value the agent cannot use changes nothing (that key keeps the
//! value in force) and is said once on standard error; never a panic.
//!
//! The handler runs on the reporter's thread and holds the agent weakly: the reporter never
//! keeps a tracer alive.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use skytrace_proto::v3::Command;

use crate::agent::Agent;
use crate::config::check;
use crate::settings::TraceSettings;

/// The command OAP's configuration discovery answers with.
const COMMAND: &str = "ConfigurationDiscoveryCommand";
/// The keys this agent follows.
const SAMPLE: &str = "agent.sample_n_per_3_secs";
const IGNORE_SUFFIX: &str = "agent.ignore_suffix";
const IGNORE_PATH: &str = "agent.trace.ignore_path";
const SPAN_LIMIT: &str = "agent.span_limit_per_segment";
/// Distinct bad values remembered to be said once each; beyond, they are not said again.
const MAX_SAID: usize = 64;
/// Most bytes of a key or value from OAP quoted in a line or remembered.
const MAX_QUOTED: usize = 200;

/// A bad value: the key, the value, what was expected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadValue {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) expected: String,
}

/// The settings `command` asks for: `baseline` with the keys it names, each checked; a key with
/// a bad value keeps its value in `current`. `None` when `command` is another command.
pub(crate) fn settings_for(
    command: &Command,
    baseline: &TraceSettings,
    current: &TraceSettings,
) -> Option<(TraceSettings, Vec<BadValue>)> {
    if command.command != COMMAND {
        return None;
    }
    let mut settings = baseline.clone();
    let mut bad = Vec::new();
    for pair in &command.args {
        let value = pair.value.trim();
        let outcome = match pair.key.as_str() {
            SAMPLE => check::number(SAMPLE, value, check::SAMPLE)
                .and_then(|n| check::sample(SAMPLE, n))
                .map(|n| settings.sample_per_3_secs = n),
            IGNORE_SUFFIX => {
                check::list(IGNORE_SUFFIX, value).map(|list| settings.ignore_suffix = list)
            }
            IGNORE_PATH => check::list(IGNORE_PATH, value).map(|list| settings.ignore_paths = list),
            SPAN_LIMIT => check::number(SPAN_LIMIT, value, check::SPAN_LIMIT)
                .and_then(|n| check::span_limit(SPAN_LIMIT, n))
                .map(|n| settings.span_limit = n),
            // `SerialNumber`, `UUID`, and keys of other agents.
            _ => Ok(()),
        };
        if let Err(error) = outcome {
            // The value in force stays.
            match pair.key.as_str() {
                SAMPLE => settings.sample_per_3_secs = current.sample_per_3_secs,
                IGNORE_SUFFIX => settings.ignore_suffix.clone_from(&current.ignore_suffix),
                IGNORE_PATH => settings.ignore_paths.clone_from(&current.ignore_paths),
                _ => settings.span_limit = current.span_limit,
            }
            // Cut before it is kept or printed: OAP's values are not bounded.
            bad.push(BadValue {
                key: crate::say::quote(&pair.key, MAX_QUOTED).into_owned(),
                value: crate::say::quote(&pair.value, MAX_QUOTED).into_owned(),
                expected: error.expected,
            });
        }
    }
    Some((settings, bad))
}

/// The pairs of `command` this agent follows, for the line that says what was applied.
fn followed_pairs(command: &Command) -> String {
    let pairs: Vec<String> = command
        .args
        .iter()
        .filter(|p| [SAMPLE, IGNORE_SUFFIX, IGNORE_PATH, SPAN_LIMIT].contains(&p.key.as_str()))
        .map(|p| format!("{}={}", p.key, crate::say::quote(&p.value, MAX_QUOTED)))
        .collect();
    if pairs.is_empty() {
        "none: every setting back to its configured value".to_owned()
    } else {
        pairs.join(" ")
    }
}

/// A handler of OAP's commands that applies configuration-discovery commands to `agent`'s
/// settings over its settings now (the configured ones, when called at start).
pub(crate) fn handler(agent: &Arc<Agent>) -> impl Fn(&Command) + Send + Sync + 'static {
    let baseline = agent.settings.get();
    let agent: Weak<Agent> = Arc::downgrade(agent);
    let said: Mutex<HashSet<(String, String)>> = Mutex::new(HashSet::new());
    move |command: &Command| {
        let Some(agent) = agent.upgrade() else {
            return;
        };
        let current = agent.settings.get();
        let Some((settings, bad)) = settings_for(command, &baseline, &current) else {
            return;
        };
        for BadValue {
            key,
            value,
            expected,
        } in bad
        {
            let mut said = said.lock().unwrap_or_else(PoisonError::into_inner);
            if said.len() < MAX_SAID && said.insert((key.clone(), value.clone())) {
                crate::say::say(&format!(
                    "skytrace: ignored {key}={value:?} from OAP's dynamic configuration \
                     (expected {expected}); the value in force stays"
                ));
            }
        }
        if settings != current {
            // Checked above, value by value: this cannot fail; if it did, nothing changes.
            if agent.settings.set(settings).is_ok() {
                crate::say::say(&format!(
                    "skytrace: dynamic configuration from OAP applied to {}: {}",
                    agent.service,
                    followed_pairs(command)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use skytrace_proto::v3::KeyStringValuePair;

    use super::*;

    fn command(pairs: &[(&str, &str)]) -> Command {
        let mut args = vec![
            KeyStringValuePair {
                key: "SerialNumber".into(),
                value: "7".into(),
            },
            KeyStringValuePair {
                key: "UUID".into(),
                value: "u".into(),
            },
        ];
        args.extend(pairs.iter().map(|(k, v)| KeyStringValuePair {
            key: (*k).into(),
            value: (*v).into(),
        }));
        Command {
            command: COMMAND.into(),
            args,
        }
    }

    fn baseline() -> TraceSettings {
        TraceSettings::from_config(&crate::Config::builder().build().unwrap())
    }

    #[test]
    fn keys_named_take_oaps_values_and_the_others_their_configured_ones() {
        let base = baseline();
        let mut current = base.clone();
        current.span_limit = 5;
        let (settings, bad) = settings_for(
            &command(&[
                (IGNORE_PATH, "/users/**, /health"),
                (SAMPLE, "1"),
                ("agent.unknown", "x"),
            ]),
            &base,
            &current,
        )
        .unwrap();
        assert!(bad.is_empty());
        assert_eq!(settings.ignore_paths, ["/users/**", "/health"]);
        assert_eq!(settings.sample_per_3_secs, 1);
        assert_eq!(
            settings.span_limit, base.span_limit,
            "not named: configured"
        );
        let (empty, _) = settings_for(&command(&[]), &base, &settings).unwrap();
        assert_eq!(empty, base);
    }

    #[test]
    fn a_bad_value_keeps_the_value_in_force() {
        let base = baseline();
        let mut current = base.clone();
        current.sample_per_3_secs = 9;
        let (settings, bad) = settings_for(
            &command(&[(SAMPLE, "lots"), (SPAN_LIMIT, "0"), (IGNORE_SUFFIX, ".png")]),
            &base,
            &current,
        )
        .unwrap();
        assert_eq!(settings.sample_per_3_secs, 9);
        assert_eq!(settings.span_limit, current.span_limit);
        assert_eq!(settings.ignore_suffix, [".png"]);
        assert_eq!(bad.len(), 2);
        assert_eq!(
            (bad[0].key.as_str(), bad[0].value.as_str()),
            (SAMPLE, "lots")
        );
    }

    #[test]
    fn other_commands_are_not_configuration() {
        let other = Command {
            command: "ProfileTaskCommand".into(),
            args: Vec::new(),
        };
        assert!(settings_for(&other, &baseline(), &baseline()).is_none());
    }
}
