//! Dynamic configuration: `ConfigurationDiscoveryService/fetchConfigurations` every
//! `SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL` (20 s; zero: never), with the service
//! name and the UUID of the configuration last received, as the Java agent asks.
//!
//! OAP answers empty `Commands` while the UUID is current, else a `ConfigurationDiscoveryCommand`
//! (`SerialNumber`, `UUID`, then one pair per key). What the command means for the settings is
//! not this module's business: the worker hands it to the command handler like any other
//! command; this module only remembers its UUID, for the next request. A failed fetch — OAP
//! erring, a reply the agent cannot decode, one over the message limit — backs off this signal
//! alone; an OAP without configuration discovery (`UNIMPLEMENTED`) quiets it.

use std::rc::Rc;
use std::time::Duration;

use skytrace_proto::v3::{Command, Commands, ConfigurationSyncRequest};
use tokio::time::{Interval, MissedTickBehavior};

use crate::reporter::health::{Health, Signal};
use crate::reporter::transport::Transport;
use crate::reporter::worker::Shared;

/// The command OAP's configuration discovery answers with.
pub(crate) const COMMAND: &str = "ConfigurationDiscoveryCommand";
/// Most bytes of the UUID echoed.
const MAX_UUID_BYTES: usize = 256;

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

    /// Fetches the configuration every interval until the shutdown.
    pub(crate) async fn run<T: Transport>(mut self, shared: Rc<Shared<T>>) {
        let mut health = Health::new(Signal::Configuration, shared.keep_tracing);
        while shared.deadline().is_none() {
            let Some(request) = shared.within_stop(self.tick(), None).await else {
                break;
            };
            // A fetch due while this signal backs off waits for it (the interval's next ticks
            // are then skipped, not bunched).
            if !shared.ready(&health).await {
                continue;
            }
            let call = shared
                .transport
                .fetch_configurations(request, shared.call_timeout());
            if let Some(result) = shared.within_deadline(call).await
                && let Ok(commands) = shared.book(&mut health, result)
            {
                self.observe(&commands);
            }
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

    /// Remembers the UUID of a configuration in `commands`, echoed by the next fetch (cut to
    /// [`MAX_UUID_BYTES`]: OAP's are 128 hexadecimal digits, a longer one is not OAP's).
    pub(crate) fn observe(&mut self, commands: &Commands) {
        if let Some(uuid) = commands.commands.iter().rev().find_map(uuid_of) {
            crate::boundary::cut(uuid, MAX_UUID_BYTES).clone_into(&mut self.uuid);
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
