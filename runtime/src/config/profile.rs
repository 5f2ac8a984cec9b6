//! Profiling's settings: `SW_AGENT_PROFILE_ACTIVE`, `SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL`
//! (the names the Java and Python agents read) and `SW_AGENT_PROCESS_STATUS_HOOK_ENABLE`
//! (go2sky's, for SkyWalking Rover).

use std::time::Duration;

use super::check::{boolean, invalid, number};
use super::{Config, ConfigBuilder, ConfigError};

/// Longest interval between two polls for profiling tasks.
const MAX_TASK_INTERVAL_SECS: u64 = 3_600;
const TASK_INTERVAL: &str = "a number of seconds from 1 to 3600";

/// How the agent takes part in OAP's profiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Profiling {
    /// Poll OAP for trace-profiling and pprof tasks, and run them.
    pub(crate) active: bool,
    /// Between two polls.
    pub(crate) task_interval: Duration,
    /// Write Rover's process status file at every keep-alive.
    pub(crate) process_status_hook: bool,
}

impl Default for Profiling {
    fn default() -> Self {
        Profiling {
            active: true,
            task_interval: Duration::from_secs(20),
            process_status_hook: false,
        }
    }
}

impl Profiling {
    /// Reads the variables `var` knows over these settings.
    pub(super) fn env(&mut self, var: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = var("SW_AGENT_PROFILE_ACTIVE") {
            self.active = boolean("SW_AGENT_PROFILE_ACTIVE", &v)?;
        }
        if let Some(v) = var("SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL") {
            let name = "SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL";
            let secs: u64 = number(name, &v, TASK_INTERVAL)?;
            if !(1..=MAX_TASK_INTERVAL_SECS).contains(&secs) {
                return Err(invalid(name, v, TASK_INTERVAL));
            }
            self.task_interval = Duration::from_secs(secs);
        }
        if let Some(v) = var("SW_AGENT_PROCESS_STATUS_HOOK_ENABLE") {
            self.process_status_hook = boolean("SW_AGENT_PROCESS_STATUS_HOOK_ENABLE", &v)?;
        }
        Ok(())
    }

    /// Checks values set through the builder, naming its method.
    pub(super) fn check(self) -> Result<Self, ConfigError> {
        let interval = self.task_interval;
        if interval < Duration::from_secs(1)
            || interval > Duration::from_secs(MAX_TASK_INTERVAL_SECS)
        {
            return Err(invalid(
                "profile_task_interval",
                format!("{interval:?}"),
                "from 1 s to 1 hour",
            ));
        }
        Ok(self)
    }
}

impl ConfigBuilder {
    /// `SW_AGENT_PROFILE_ACTIVE`: poll OAP for profiling tasks (trace profiling of an
    /// endpoint's slow requests, on-demand CPU profiles) and run them. Default `true`; with
    /// `false` nothing is polled and nothing sampled. Either way, nothing is sampled unless a
    /// task runs.
    ///
    /// ```
    /// let config = skytrace::Config::builder().profile_active(false).build().unwrap();
    /// assert!(!config.profile_active());
    /// ```
    pub fn profile_active(mut self, yes: bool) -> Self {
        self.profiling.active = yes;
        self
    }

    /// `SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL` (whole seconds in the variable): how
    /// often OAP is asked for profiling tasks, from 1 s to 1 hour, default 20 s as the Java and
    /// Python agents.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let err = skytrace::Config::builder()
    ///     .profile_task_interval(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.variable, "profile_task_interval");
    /// ```
    pub fn profile_task_interval(mut self, interval: Duration) -> Self {
        self.profiling.task_interval = interval;
        self
    }

    /// `SW_AGENT_PROCESS_STATUS_HOOK_ENABLE`: write
    /// `{TMPDIR}/apache_skywalking/process/{pid}/metadata.properties` and touch it at every
    /// keep-alive, as go2sky does, so that SkyWalking Rover (eBPF profiling) binds this process
    /// to its service instance. Default `false`.
    ///
    /// ```
    /// let config = skytrace::Config::builder().process_status_hook(true).build().unwrap();
    /// assert!(config.process_status_hook());
    /// ```
    pub fn process_status_hook(mut self, yes: bool) -> Self {
        self.profiling.process_status_hook = yes;
        self
    }
}

impl Config {
    /// Whether profiling tasks are polled for and run (`SW_AGENT_PROFILE_ACTIVE`).
    pub fn profile_active(&self) -> bool {
        self.profiling.active
    }

    /// How often profiling tasks are polled for
    /// (`SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL`).
    ///
    /// ```
    /// let config = skytrace::Config::builder().build().unwrap();
    /// assert_eq!(config.profile_task_interval().as_secs(), 20);
    /// ```
    pub fn profile_task_interval(&self) -> Duration {
        self.profiling.task_interval
    }

    /// Whether Rover's process status file is written (`SW_AGENT_PROCESS_STATUS_HOOK_ENABLE`).
    pub fn process_status_hook(&self) -> bool {
        self.profiling.process_status_hook
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_and_variables() {
        let config = Config::builder().build().unwrap();
        assert!(config.profile_active());
        assert_eq!(config.profile_task_interval().as_secs(), 20);
        assert!(!config.process_status_hook());
        let config = Config::builder()
            .env(env(&[
                ("SW_AGENT_PROFILE_ACTIVE", "false"),
                ("SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL", "5"),
                ("SW_AGENT_PROCESS_STATUS_HOOK_ENABLE", "true"),
            ]))
            .unwrap()
            .build()
            .unwrap();
        assert!(!config.profile_active());
        assert_eq!(config.profile_task_interval().as_secs(), 5);
        assert!(config.process_status_hook());
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        for (name, value, expected) in [
            (
                "SW_AGENT_PROFILE_ACTIVE",
                "maybe",
                "true/false, 1/0, yes/no or on/off",
            ),
            (
                "SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL",
                "0",
                "a number of seconds from 1 to 3600",
            ),
            (
                "SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL",
                "3601",
                "a number of seconds from 1 to 3600",
            ),
            (
                "SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL",
                "20s",
                "a number of seconds from 1 to 3600",
            ),
            (
                "SW_AGENT_PROCESS_STATUS_HOOK_ENABLE",
                "2",
                "true/false, 1/0, yes/no or on/off",
            ),
        ] {
            let lookup = move |n: &str| (n == name).then(|| value.to_owned());
            let err = Config::builder().env(lookup).unwrap_err();
            assert_eq!(
                (
                    err.variable.as_str(),
                    err.value.as_str(),
                    err.expected.as_str()
                ),
                (name, value, expected)
            );
        }
    }
}
