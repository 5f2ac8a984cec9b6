//! Dynamic configuration: `ConfigurationDiscoveryService/fetchConfigurations` every
//! `SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL` (20 s; zero: never), with the service
//! name and the UUID of the configuration last received, as the Java agent asks.
//!
//! OAP answers empty `Commands` while the UUID is current, else a `ConfigurationDiscoveryCommand`
//! (`SerialNumber`, `UUID`, then one pair per key). What the command means for the settings is
//! not this module's business: the worker hands it to the command handler like any other
//! command; this module only remembers its UUID, for the next request. A failed fetch backs off
//! with every other call (the worker waits for the transport before it asks).

use std::time::Duration;

use skytrace_proto::v3::{Command, Commands, ConfigurationSyncRequest};
use tokio::time::{Interval, MissedTickBehavior};

/// The command OAP's configuration discovery answers with.
pub(crate) const COMMAND: &str = "ConfigurationDiscoveryCommand";

#[derive(Debug)]
pub(crate) struct Configuration {
    service: String,
    /// The UUID of the configuration last received; empty before the first.
    uuid: String,
    /// `None` when fetching is off.
    schedule: Option<Interval>,
}

impl Configuration {
    /// Must be called within the worker's runtime (it starts the timer). The first fetch is
    /// at once: a configuration set in OAP applies from the service's start.
    pub(crate) fn new(service: String, interval: Duration) -> Configuration {
        let schedule = (!interval.is_zero()).then(|| {
            // Checked by the configuration; at least a second all the same.
            let mut schedule = tokio::time::interval(interval.max(Duration::from_secs(1)));
            schedule.set_missed_tick_behavior(MissedTickBehavior::Delay);
            schedule
        });
        Configuration {
            service,
            uuid: String::new(),
            schedule,
        }
    }

    /// Waits until the next fetch is due (for ever when fetching is off).
    pub(crate) async fn tick(&mut self) -> ConfigurationSyncRequest {
        match &mut self.schedule {
            Some(schedule) => {
                schedule.tick().await;
            }
            None => std::future::pending::<()>().await,
        }
        ConfigurationSyncRequest {
            service: self.service.clone(),
            uuid: self.uuid.clone(),
        }
    }

    /// Remembers the UUID of a configuration in `commands`, echoed by the next fetch.
    pub(crate) fn observe(&mut self, commands: &Commands) {
        if let Some(uuid) = commands.commands.iter().rev().find_map(uuid_of) {
            uuid.clone_into(&mut self.uuid);
        }
    }
}

/// The `UUID` argument of a configuration-discovery command.
fn uuid_of(command: &Command) -> Option<&str> {
    if command.command != COMMAND {
        return None;
    }
    command
        .args
        .iter()
        .find(|pair| pair.key == "UUID")
        .map(|pair| pair.value.as_str())
}

#[cfg(test)]
mod tests {
    use skytrace_proto::v3::KeyStringValuePair;

    use super::*;

    fn command(name: &str, uuid: &str) -> Command {
        Command {
            command: name.into(),
            args: vec![
                KeyStringValuePair {
                    key: "SerialNumber".into(),
                    value: "1".into(),
                },
                KeyStringValuePair {
                    key: "UUID".into(),
                    value: uuid.into(),
                },
            ],
        }
    }

    #[tokio::test]
    async fn the_uuid_received_is_echoed() {
        let mut config = Configuration::new("svc".into(), Duration::from_secs(1));
        let first = config.tick().await;
        assert_eq!((first.service.as_str(), first.uuid.as_str()), ("svc", ""));
        config.observe(&Commands {
            commands: vec![command("Other", "x"), command(COMMAND, "u-1")],
        });
        config.observe(&Commands::default());
        assert_eq!(config.uuid, "u-1");
    }
}
