//! OAP's profiling commands, read and checked: `ProfileTaskQuery` (trace profiling of one
//! endpoint) and `PprofTaskQuery` (an on-demand profile of one kind).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skytrace_proto::v3::Command;

/// The command name of a trace-profiling task.
pub(crate) const PROFILE_TASK_QUERY: &str = "ProfileTaskQuery";
/// The command name of a pprof task.
pub(crate) const PPROF_TASK_QUERY: &str = "PprofTaskQuery";

/// The longest task OAP creates (minutes), for both kinds.
const MAX_MINUTES: u64 = 15;

/// A trace-profiling task: profile the requests of `endpoint` that take at least
/// `min_duration_ms`, from `start` for `duration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceTask {
    pub(crate) id: String,
    pub(crate) endpoint: String,
    pub(crate) duration: Duration,
    pub(crate) min_duration_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub(crate) start_ms: i64,
    pub(crate) create_ms: i64,
}

/// A pprof task: a profile of `events` over `duration` from when it arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PprofTask {
    pub(crate) id: String,
    /// As OAP sends it: `cpu`, `heap`, `block`, ... (only `cpu` is run here).
    pub(crate) events: String,
    pub(crate) duration: Duration,
    pub(crate) create_ms: i64,
}

impl PprofTask {
    /// Whether this agent can run it: CPU profiles only.
    pub(crate) fn is_cpu(&self) -> bool {
        self.events.eq_ignore_ascii_case("cpu")
    }
}

/// Why a command cannot be run: the argument and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskError {
    pub(crate) argument: &'static str,
    pub(crate) problem: String,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.argument, self.problem)
    }
}

fn arg<'a>(command: &'a Command, key: &'static str) -> Option<&'a str> {
    command
        .args
        .iter()
        .find(|pair| pair.key == key)
        .map(|pair| pair.value.trim())
}

fn required<'a>(command: &'a Command, key: &'static str) -> Result<&'a str, TaskError> {
    match arg(command, key) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(TaskError {
            argument: key,
            problem: "missing".into(),
        }),
    }
}

fn integer(command: &Command, key: &'static str) -> Result<i64, TaskError> {
    let value = required(command, key)?;
    value.parse().map_err(|_| TaskError {
        argument: key,
        problem: format!("{value:?} is not an integer"),
    })
}

fn minutes(command: &Command) -> Result<Duration, TaskError> {
    let n = integer(command, "Duration")?;
    match u64::try_from(n) {
        Ok(n @ 1..=MAX_MINUTES) => Ok(Duration::from_secs(n * 60)),
        _ => Err(TaskError {
            argument: "Duration",
            problem: format!("{n} is not a number of minutes from 1 to {MAX_MINUTES}"),
        }),
    }
}

/// Reads a `ProfileTaskQuery` command.
pub(crate) fn trace_task(command: &Command) -> Result<TraceTask, TaskError> {
    let min_duration_ms = integer(command, "MinDurationThreshold")?;
    if min_duration_ms < 0 {
        return Err(TaskError {
            argument: "MinDurationThreshold",
            problem: format!("{min_duration_ms} is negative"),
        });
    }
    Ok(TraceTask {
        id: required(command, "TaskId")?.to_owned(),
        endpoint: required(command, "EndpointName")?.to_owned(),
        duration: minutes(command)?,
        min_duration_ms,
        start_ms: integer(command, "StartTime")?,
        create_ms: integer(command, "CreateTime")?,
    })
}

/// Reads a `PprofTaskQuery` command.
pub(crate) fn pprof_task(command: &Command) -> Result<PprofTask, TaskError> {
    Ok(PprofTask {
        id: required(command, "TaskId")?.to_owned(),
        events: required(command, "Events")?.to_owned(),
        duration: minutes(command)?,
        create_ms: integer(command, "CreateTime")?,
    })
}

/// A moment given in milliseconds since the Unix epoch.
pub(crate) fn at_millis(ms: i64) -> SystemTime {
    match u64::try_from(ms) {
        Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        Err(_) => UNIX_EPOCH,
    }
}

impl TraceTask {
    /// When sampling starts and stops: from `StartTime` for `Duration`, the window OAP's UI
    /// shows for the task. A task received late runs for what is left of it.
    pub(crate) fn window(&self) -> (SystemTime, SystemTime) {
        let start = at_millis(self.start_ms);
        (start, start + self.duration)
    }
}

#[cfg(test)]
mod tests {
    use skytrace_proto::v3::KeyStringValuePair;

    use super::*;

    fn command(name: &str, args: &[(&str, &str)]) -> Command {
        Command {
            command: name.into(),
            args: args
                .iter()
                .map(|(k, v)| KeyStringValuePair {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    const TRACE: &[(&str, &str)] = &[
        ("SerialNumber", "s-1"),
        ("TaskId", "task-1"),
        ("EndpointName", "GET:/slow"),
        ("Duration", "5"),
        ("MinDurationThreshold", "50"),
        ("DumpPeriod", "10"),
        ("MaxSamplingCount", "5"),
        ("StartTime", "1700000000000"),
        ("CreateTime", "1699999990000"),
    ];

    #[test]
    fn reads_a_profile_task_as_oap_sends_it() {
        let task = trace_task(&command(PROFILE_TASK_QUERY, TRACE)).unwrap();
        assert_eq!(task.id, "task-1");
        assert_eq!(task.endpoint, "GET:/slow");
        assert_eq!(task.duration, Duration::from_secs(300));
        assert_eq!(task.min_duration_ms, 50);
        assert_eq!(task.create_ms, 1_699_999_990_000);
        let (start, end) = task.window();
        assert_eq!(end.duration_since(start).unwrap(), Duration::from_secs(300));
    }

    #[test]
    fn a_bad_argument_is_named() {
        for (key, value, problem) in [
            ("Duration", "0", "0 is not a number of minutes from 1 to 15"),
            (
                "Duration",
                "16",
                "16 is not a number of minutes from 1 to 15",
            ),
            ("MinDurationThreshold", "-1", "-1 is negative"),
            ("StartTime", "soon", "\"soon\" is not an integer"),
            ("TaskId", "", "missing"),
        ] {
            let args: Vec<(&str, &str)> = TRACE
                .iter()
                .map(|&(k, v)| if k == key { (k, value) } else { (k, v) })
                .collect();
            let err = trace_task(&command(PROFILE_TASK_QUERY, &args)).unwrap_err();
            assert_eq!((err.argument, err.problem.as_str()), (key, problem));
        }
    }

    #[test]
    fn reads_a_pprof_task_and_tells_cpu_from_the_rest() {
        let args = [
            ("TaskId", "p-1"),
            ("Events", "cpu"),
            ("Duration", "1"),
            ("CreateTime", "1700000000000"),
            ("DumpPeriod", "0"),
        ];
        let task = pprof_task(&command(PPROF_TASK_QUERY, &args)).unwrap();
        assert!(task.is_cpu());
        assert_eq!(task.duration, Duration::from_secs(60));
        let heap = [
            ("Events", "heap"),
            ("TaskId", "p-2"),
            ("Duration", "1"),
            ("CreateTime", "1"),
        ];
        assert!(
            !pprof_task(&command(PPROF_TASK_QUERY, &heap))
                .unwrap()
                .is_cpu()
        );
    }
}
