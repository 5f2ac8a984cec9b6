//! Instance management: the instance properties when a connection is new, and a keep-alive every
//! heartbeat (`SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD`), with the properties again every
//! [`PROPERTIES_EVERY`] heartbeats, as the Java agent does.

use std::time::Duration;

use skytrace_proto::v3::{InstancePingPkg, InstanceProperties, KeyStringValuePair};
use tokio::time::{Interval, MissedTickBehavior};

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
        }
    }

    /// Whether the properties must go out before anything else on `session`.
    pub(crate) fn needs_introduction(&self, session: u64) -> bool {
        self.introduced != Some(session)
    }

    /// The properties were reported on `session`.
    pub(crate) fn introduced(&mut self, session: u64) {
        self.introduced = Some(session);
    }

    /// A call failed: the properties go out again before anything else. That call is also the
    /// probe that finds the backend back once the back-off has passed, without waiting for
    /// segments (none come while new traces are paused) or for the next heartbeat.
    pub(crate) fn forget(&mut self) {
        self.introduced = None;
    }

    pub(crate) fn properties(&self) -> InstanceProperties {
        InstanceProperties {
            service: self.service.clone(),
            service_instance: self.instance.clone(),
            properties: self.properties.clone(),
            layer: String::new(),
        }
    }

    /// Waits for the next heartbeat.
    pub(crate) async fn tick(&mut self) -> Beat {
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
