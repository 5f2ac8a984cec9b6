//! The binary's profiling options: serving a trace-profiling task or an on-demand CPU profile
//! task, and printing the profiles received.

use std::time::Duration;

use skytrace_collector::{CollectorBuilder, Event, PprofTaskSpec, ProfileTaskSpec, render_profile};

pub(crate) const USAGE: &str = "
Profiling (OAP's trace profiling and pprof tasks; the agent needs its `profiling` feature):
  --profile-endpoint NAME
                   serve a trace-profiling task for the endpoint NAME (an entry span's
                   operation name, e.g. 'GET:/slow'), created when an agent first asks; the
                   profile received is printed per slow request: a tree of the frames its
                   CPU samples were in, with sample counts
  --profile-duration MINUTES
                   how long the task profiles, 1 to 15 (default 1)
  --profile-seconds SECONDS
                   the same in seconds, for a short try (sent as a 1-minute task started in
                   the past, so that it ends in time)
  --profile-min-ms MS
                   only requests that take at least MS milliseconds (default 0)
  --pprof-seconds SECONDS
                   serve an on-demand CPU profile task of SECONDS (sent like --profile-seconds);
                   the profile received is printed as one tree";

#[derive(Debug, Default)]
pub(crate) struct Args {
    endpoint: Option<String>,
    duration: Option<Duration>,
    min_duration: Duration,
    pprof: Option<Duration>,
}

fn seconds(name: &str, text: &str, max: u64) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{name}: `{text}` is not a whole number from 1 to {max}"
        )),
    }
}

impl Args {
    /// Takes the option `name` if it is one of these; `value` gives its value.
    pub(crate) fn parse(
        &mut self,
        name: &str,
        value: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Option<Result<(), String>> {
        let result = match name {
            "--profile-endpoint" => value("NAME").map(|v| self.endpoint = Some(v)),
            "--profile-duration" => value("MINUTES")
                .and_then(|v| seconds(name, &v, 15))
                .map(|m| self.duration = Some(m * 60)),
            "--profile-seconds" => value("SECONDS")
                .and_then(|v| seconds(name, &v, 900))
                .map(|d| self.duration = Some(d)),
            "--profile-min-ms" => value("MS").and_then(|v| {
                v.parse::<u64>()
                    .map(|ms| self.min_duration = Duration::from_millis(ms))
                    .map_err(|_| format!("{name}: `{v}` is not a number of milliseconds"))
            }),
            "--pprof-seconds" => value("SECONDS")
                .and_then(|v| seconds(name, &v, 900))
                .map(|d| self.pprof = Some(d)),
            _ => return None,
        };
        Some(result)
    }

    /// Checks the options together.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.endpoint.is_none() && self.duration.is_some() {
            return Err("--profile-duration and --profile-seconds need --profile-endpoint".into());
        }
        Ok(())
    }

    pub(crate) fn apply(&self, mut builder: CollectorBuilder) -> CollectorBuilder {
        if let Some(endpoint) = &self.endpoint {
            let duration = self.duration.unwrap_or(Duration::from_secs(60));
            builder = builder.profile_task(ProfileTaskSpec::new(
                endpoint.clone(),
                duration,
                self.min_duration,
            ));
        }
        if let Some(duration) = self.pprof {
            builder = builder.pprof_task(PprofTaskSpec::new("cpu", duration));
        }
        builder
    }

    /// The line said at start about the tasks served.
    pub(crate) fn banner(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            parts.push(format!(
                "a trace-profiling task for {endpoint:?} ({:?}, requests of at least {} ms)",
                self.duration.unwrap_or(Duration::from_secs(60)),
                self.min_duration.as_millis()
            ));
        }
        if let Some(duration) = self.pprof {
            parts.push(format!("a {duration:?} CPU profile task"));
        }
        (!parts.is_empty()).then(|| format!("serving {}", parts.join(" and ")))
    }
}

/// What to print for a profiling event; `None` for other events.
pub(crate) fn describe(event: &Event) -> Option<String> {
    match event {
        Event::ProfileReport(report) => Some(format!(
            "profile     task={} {} bytes in {} chunk(s)\n{}",
            report.task_id,
            report.bytes.len(),
            report.chunks.len(),
            report
                .profile
                .as_ref()
                .map_or_else(|| "(not a pprof profile)\n".to_owned(), render_profile)
        )),
        Event::ProfileTaskFinish(finish) => Some(format!(
            "profile     task={} finished on {}/{}\n",
            finish.task_id, finish.service, finish.service_instance
        )),
        Event::PprofReport(report) => Some(format!(
            "pprof       task={} from {}/{}: {}\n{}",
            report.metadata.task_id,
            report.metadata.service,
            report.metadata.service_instance,
            match &report.error {
                Some(error) => format!("error: {error}"),
                None => format!(
                    "{} bytes in {} chunk(s)",
                    report.bytes.len(),
                    report.chunks.len()
                ),
            },
            report
                .profile
                .as_ref()
                .map_or_else(String::new, render_profile)
        )),
        _ => None,
    }
}
