//! Instance management: the instance properties when a connection is new, and a keep-alive every
//! heartbeat (`SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD`), with the properties again every
//! [`PROPERTIES_EVERY`] heartbeats, as the Java agent does. A management receiver that fails
//! backs off this signal alone: segments do not wait for the instance to be introduced.

use std::rc::Rc;
use std::time::Duration;

use skytrace_proto::v3::{InstancePingPkg, InstanceProperties, KeyStringValuePair};
use tokio::time::{Interval, MissedTickBehavior};

use crate::reporter::health::{Health, Signal};
use crate::reporter::transport::Transport;
use crate::reporter::worker::Shared;

/// The Java agent re-sends instance properties every 10 heartbeats.
pub(crate) const PROPERTIES_EVERY: u64 = 10;

/// What a heartbeat sends.
#[derive(Debug)]
pub(crate) enum Beat {
    Ping(InstancePingPkg),
    Properties(InstanceProperties),
}

#[derive(Debug)]
pub(crate) struct Management {
    service: String,
    instance: String,
    properties: Vec<KeyStringValuePair>,
    heartbeat: Interval,
    beats: u64,
    /// The transport's session the properties were last reported on.
    introduced: Option<u64>,
    /// Rover's process status file (`SW_AGENT_PROCESS_STATUS_HOOK_ENABLE`), touched at every
    /// keep-alive.
    hook: Option<crate::process_hook::ProcessHook>,
}

impl Management {
    /// Must be called within the worker's runtime (it starts the heartbeat's timer).
    pub(crate) fn new(
        service: String,
        instance: String,
        properties: Vec<(String, String)>,
        heartbeat: Duration,
    ) -> Management {
        // Any configured period is accepted: at least 1 ms, at most a day.
        let period = heartbeat.clamp(Duration::from_millis(1), Duration::from_secs(86_400));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Management {
            service,
            instance,
            properties: properties
                .into_iter()
                .map(|(key, value)| KeyStringValuePair { key, value })
                .collect(),
            heartbeat,
            beats: 0,
            introduced: None,
            hook: None,
        }
    }

    /// Writes Rover's process status file at every keep-alive (and removes it at the end).
    pub(crate) fn with_process_hook(mut self, yes: bool) -> Management {
        self.hook = yes.then(crate::process_hook::ProcessHook::for_this_process);
        self
    }

    /// Renews Rover's file, if there is one; a failure is said once.
    fn touch_hook(&mut self) {
        let Some(hook) = &mut self.hook else {
            return;
        };
        let properties: Vec<(String, String)> = self
            .properties
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        let meta = crate::process_hook::ProcessMeta {
            service: &self.service,
            instance: &self.instance,
            properties: &properties,
            labels: &[],
        };
        if let Err(err) = hook.keep_alive(&meta) {
            crate::say::say(&format!(
                "skytrace: cannot write the process status file for SkyWalking Rover \
                 (SW_AGENT_PROCESS_STATUS_HOOK_ENABLE): {err}; it is not written any more"
            ));
            self.hook = None;
        }
    }

    /// Introduces the instance on every new connection and keeps it alive, until the
    /// shutdown.
    pub(crate) async fn run<T: Transport>(mut self, shared: Rc<Shared<T>>) {
        let mut health = Health::new(Signal::Management, shared.keep_tracing);
        while shared.deadline().is_none() {
            if !shared.ready(&health).await {
                continue;
            }
            let session = shared.transport.session();
            if self.introduced != Some(session) {
                // The session is the connection the call goes out on (made by it if none).
                let call = shared
                    .transport
                    .report_properties(self.properties(), shared.call_timeout());
                let Some(result) = shared.within_deadline(call).await else {
                    break;
                };
                if shared.book(&mut health, result).is_ok() {
                    self.introduced = Some(shared.transport.session());
                }
                continue;
            }
            let beat = tokio::select! {
                beat = self.tick() => beat,
                // Another signal's call made a new connection: introduce the instance on it.
                () = shared.new_session.notified() => continue,
                () = shared.stopping() => break,
            };
            let timeout = shared.call_timeout();
            let call = async {
                match beat {
                    Beat::Ping(ping) => shared.transport.keep_alive(ping, timeout).await,
                    Beat::Properties(properties) => {
                        shared
                            .transport
                            .report_properties(properties, timeout)
                            .await
                    }
                }
            };
            match shared
                .within_deadline(call)
                .await
                .map(|r| shared.book(&mut health, r))
            {
                // Introduced again once the signal may call.
                Some(Err(_)) => self.introduced = None,
                Some(Ok(_)) => self.touch_hook(),
                None => {}
            }
        }
        if let Some(hook) = &mut self.hook {
            hook.remove();
        }
    }

    fn properties(&self) -> InstanceProperties {
        InstanceProperties {
            service: self.service.clone(),
            service_instance: self.instance.clone(),
            properties: self.properties.clone(),
            layer: String::new(),
        }
    }

    /// Waits for the next heartbeat.
    async fn tick(&mut self) -> Beat {
        self.heartbeat.tick().await;
        self.beats += 1;
        if self.beats.is_multiple_of(PROPERTIES_EVERY) {
            Beat::Properties(self.properties())
        } else {
            Beat::Ping(InstancePingPkg {
                service: self.service.clone(),
                service_instance: self.instance.clone(),
                layer: String::new(),
            })
        }
    }
}
