//! OAP's profiling services: `ProfileTask` (trace profiling of one endpoint, the Go agent's
//! pprof reports and the task's finish) and `PprofTask` (on-demand profiles), with at most one
//! task of each kind served, created when an agent first asks for it.

use std::io::Read as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use skytrace_proto::pprof::Profile;
use skytrace_proto::v3::profile_task_server::ProfileTask;
use skytrace_proto::v3::{
    Command, Commands, GoProfileData, KeyStringValuePair, ProfileTaskCommandQuery,
    ProfileTaskFinishReport, ThreadSnapshot,
};
use skytrace_proto::v10::pprof_task_server::PprofTask;
use skytrace_proto::v10::{
    PprofCollectionResponse, PprofData, PprofMetaData, PprofProfilingStatus, PprofTaskCommandQuery,
    pprof_data,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::service::Handler;
use crate::{Event, Shared};

const PROFILE_COMMANDS: &str = "/skywalking.v3.ProfileTask/getProfileTaskCommands";
const COLLECT_SNAPSHOT: &str = "/skywalking.v3.ProfileTask/collectSnapshot";
const GO_PROFILE_REPORT: &str = "/skywalking.v3.ProfileTask/goProfileReport";
const TASK_FINISH: &str = "/skywalking.v3.ProfileTask/reportTaskFinish";
const PPROF_COMMANDS: &str = "/skywalking.v10.PprofTask/getPprofTaskCommands";
const PPROF_COLLECT: &str = "/skywalking.v10.PprofTask/collect";

/// OAP's default limit on a pprof upload (`SW_RECEIVER_PPROF_MAX_SIZE`): 30 MiB.
pub(crate) const DEFAULT_PPROF_MAX_SIZE: usize = 30 * 1024 * 1024;

/// A trace-profiling task to serve (see [`crate::CollectorBuilder::profile_task`]): profile
/// the requests of `endpoint` taking at least `min_duration`, for `duration` from when an agent
/// first asks.
///
/// ```
/// use std::time::Duration;
/// use skytrace_collector::ProfileTaskSpec;
///
/// let task = ProfileTaskSpec::new("GET:/slow", Duration::from_secs(60), Duration::from_millis(50));
/// assert_eq!(task.endpoint, "GET:/slow");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileTaskSpec {
    /// The endpoint: an entry span's operation name, e.g. `GET:/users/{id}`.
    pub endpoint: String,
    /// How long to profile. The protocol counts whole minutes from `StartTime`: a shorter one
    /// is sent as one minute whose `StartTime` lies in the past, so that it ends in time.
    pub duration: Duration,
    /// Requests faster than this are left out (`MinDurationThreshold`).
    pub min_duration: Duration,
}

impl ProfileTaskSpec {
    /// A task for `endpoint`, `duration` long, keeping requests of at least `min_duration`.
    pub fn new(endpoint: impl Into<String>, duration: Duration, min_duration: Duration) -> Self {
        ProfileTaskSpec {
            endpoint: endpoint.into(),
            duration,
            min_duration,
        }
    }
}

/// An on-demand profile task to serve (see [`crate::CollectorBuilder::pprof_task`]).
///
/// ```
/// use std::time::Duration;
/// use skytrace_collector::PprofTaskSpec;
///
/// let task = PprofTaskSpec::new("cpu", Duration::from_secs(5));
/// assert_eq!(task.events, "cpu");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PprofTaskSpec {
    /// `cpu`, `heap`, `block`, `mutex`, `goroutine`, `threadcreate` or `allocs`, as OAP sends.
    pub events: String,
    /// How long to profile. Whole minutes on the wire, ending `CreateTime + Duration`: a
    /// shorter one is sent as one minute created in the past.
    pub duration: Duration,
}

impl PprofTaskSpec {
    /// A task for `events` lasting `duration`.
    pub fn new(events: impl Into<String>, duration: Duration) -> Self {
        PprofTaskSpec {
            events: events.into(),
            duration,
        }
    }
}

/// A profile received from `ProfileTask/goProfileReport`: its chunks joined, once the last one
/// (`isLast`) came.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProfileReport {
    /// The task it answers.
    pub task_id: String,
    /// Its chunks' sizes, in arrival order.
    pub chunks: Vec<usize>,
    /// The bytes as sent (gzip'd pprof).
    pub bytes: Vec<u8>,
    /// The pprof decoded, if it could be.
    pub profile: Option<Profile>,
}

/// A profile received from `PprofTask/collect`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PprofReport {
    /// The stream's first message.
    pub metadata: PprofMetaData,
    /// The error message the agent sent instead of a profile, if any.
    pub error: Option<String>,
    /// Its content chunks' sizes.
    pub chunks: Vec<usize>,
    /// The content as sent (gzip'd pprof); empty when refused as too large.
    pub bytes: Vec<u8>,
    /// The pprof decoded, if it could be.
    pub profile: Option<Profile>,
    /// What the collector answered to the metadata.
    pub status: PprofProfilingStatus,
}

/// The profiling side of the collector: the tasks served, and what the agents asked.
#[derive(Debug, Default)]
pub(crate) struct State {
    profile_task: Option<ProfileTaskSpec>,
    pprof_task: Option<PprofTaskSpec>,
    /// The commands, made at the first query.
    profile_command: Option<(i64, Vec<(&'static str, String)>)>,
    pprof_command: Option<(i64, Vec<(&'static str, String)>)>,
    pprof_max_size: usize,
}

impl State {
    pub(crate) fn new(
        profile_task: Option<ProfileTaskSpec>,
        pprof_task: Option<PprofTaskSpec>,
        pprof_max_size: usize,
    ) -> Mutex<State> {
        Mutex::new(State {
            profile_task,
            pprof_task,
            pprof_max_size,
            ..State::default()
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whole minutes for `duration` (at least one), and how far into the past the start must lie
/// for the task to end `duration` from now.
fn minutes(duration: Duration) -> (u64, i64) {
    let minutes = duration.as_secs().div_ceil(60).clamp(1, 15);
    let backdate =
        i64::try_from((minutes * 60_000).saturating_sub(duration.as_millis() as u64)).unwrap_or(0);
    (minutes, backdate)
}

fn command(name: &str, serial: u64, args: &[(&'static str, String)]) -> Commands {
    let mut pairs = vec![KeyStringValuePair {
        key: "SerialNumber".into(),
        value: format!("serial-{serial}"),
    }];
    pairs.extend(args.iter().map(|(k, v)| KeyStringValuePair {
        key: (*k).into(),
        value: v.clone(),
    }));
    Commands {
        commands: vec![Command {
            command: name.into(),
            args: pairs,
        }],
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn profile_commands(&self, last_command_time: i64) -> Commands {
        let mut state = lock(&self.profiling);
        let Some(task) = state.profile_task.clone() else {
            return Commands::default();
        };
        let (create, args) = state.profile_command.get_or_insert_with(|| {
            let now = now_ms();
            let (minutes, backdate) = minutes(task.duration);
            let args = vec![
                ("TaskId", "profile-task-1".to_owned()),
                ("EndpointName", task.endpoint.clone()),
                ("Duration", minutes.to_string()),
                (
                    "MinDurationThreshold",
                    task.min_duration.as_millis().to_string(),
                ),
                ("DumpPeriod", "10".to_owned()),
                ("MaxSamplingCount", "5".to_owned()),
                ("StartTime", (now - backdate).to_string()),
                ("CreateTime", now.to_string()),
            ];
            (now, args)
        });
        if *create <= last_command_time {
            return Commands::default();
        }
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        command("ProfileTaskQuery", serial, args)
    }

    fn pprof_commands(&self, last_command_time: i64) -> Commands {
        let mut state = lock(&self.profiling);
        let Some(task) = state.pprof_task.clone() else {
            return Commands::default();
        };
        let (create, args) = state.pprof_command.get_or_insert_with(|| {
            let (minutes, backdate) = minutes(task.duration);
            let create = now_ms() - backdate;
            let args = vec![
                ("TaskId", "pprof-task-1".to_owned()),
                ("Events", task.events.clone()),
                ("Duration", minutes.to_string()),
                ("CreateTime", create.to_string()),
                ("DumpPeriod", "0".to_owned()),
            ];
            (create, args)
        });
        if *create <= last_command_time {
            return Commands::default();
        }
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        command("PprofTaskQuery", serial, args)
    }
}

fn gunzip(bytes: &[u8]) -> Option<Profile> {
    let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .ok()?;
        plain
    } else {
        bytes.to_vec()
    };
    Profile::decode(&plain[..]).ok()
}

#[tonic::codegen::async_trait]
impl ProfileTask for Handler {
    async fn get_profile_task_commands(
        &self,
        request: Request<ProfileTaskCommandQuery>,
    ) -> Result<Response<Commands>, Status> {
        self.shared.authorize(PROFILE_COMMANDS, &request)?;
        let query = request.into_inner();
        let reply = self.shared.profile_commands(query.last_command_time);
        self.shared
            .record(|r| r.profile_task_queries.push(query), None);
        Ok(Response::new(reply))
    }

    async fn collect_snapshot(
        &self,
        request: Request<Streaming<ThreadSnapshot>>,
    ) -> Result<Response<Commands>, Status> {
        self.shared.authorize(COLLECT_SNAPSHOT, &request)?;
        let mut stream = request.into_inner();
        while let Some(snapshot) = self.shared.unless_stopped(stream.message()).await {
            match snapshot? {
                Some(snapshot) => self
                    .shared
                    .record(|r| r.thread_snapshots.push(snapshot), None),
                None => break,
            }
        }
        Ok(Response::new(Commands::default()))
    }

    async fn go_profile_report(
        &self,
        request: Request<Streaming<GoProfileData>>,
    ) -> Result<Response<Commands>, Status> {
        self.shared.authorize(GO_PROFILE_REPORT, &request)?;
        let mut stream = request.into_inner();
        let mut pending: Option<ProfileReport> = None;
        loop {
            let Some(message) = self.shared.unless_stopped(stream.message()).await else {
                return Err(Status::unavailable("the collector is shutting down"));
            };
            let Some(data) = message? else {
                break;
            };
            // As OAP: a new task id starts over.
            let report = match &mut pending {
                Some(report) if report.task_id == data.task_id => report,
                _ => pending.insert(ProfileReport {
                    task_id: data.task_id.clone(),
                    chunks: Vec::new(),
                    bytes: Vec::new(),
                    profile: None,
                }),
            };
            report.chunks.push(data.payload.len());
            report.bytes.extend_from_slice(&data.payload);
            if data.is_last
                && let Some(mut report) = pending.take()
            {
                report.profile = gunzip(&report.bytes);
                let event = self.shared.event(|| Event::ProfileReport(report.clone()));
                self.shared
                    .record(|r| r.profile_reports.push(report), event);
            }
        }
        Ok(Response::new(Commands::default()))
    }

    async fn report_task_finish(
        &self,
        request: Request<ProfileTaskFinishReport>,
    ) -> Result<Response<Commands>, Status> {
        self.shared.authorize(TASK_FINISH, &request)?;
        let finish = request.into_inner();
        let event = self
            .shared
            .event(|| Event::ProfileTaskFinish(finish.clone()));
        self.shared
            .record(|r| r.profile_task_finishes.push(finish), event);
        Ok(Response::new(Commands::default()))
    }
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<PprofCollectionResponse, Status>> + Send + 'static>>;

#[tonic::codegen::async_trait]
impl PprofTask for Handler {
    type collectStream = ResponseStream;

    async fn collect(
        &self,
        request: Request<Streaming<PprofData>>,
    ) -> Result<Response<ResponseStream>, Status> {
        self.shared.authorize(PPROF_COLLECT, &request)?;
        let mut stream = request.into_inner();
        let shared = Arc::clone(&self.shared);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let max = lock(&shared.profiling).pprof_max_size;
            let mut report: Option<PprofReport> = None;
            while let Some(Ok(Some(data))) = shared.unless_stopped(stream.message()).await {
                if report.is_none() {
                    let metadata = data.metadata.unwrap_or_default();
                    let size = usize::try_from(metadata.content_size).unwrap_or(usize::MAX);
                    let status =
                        if metadata.r#type != PprofProfilingStatus::PprofProfilingSuccess as i32 {
                            PprofProfilingStatus::PprofExecutionTaskError
                        } else if size > max {
                            PprofProfilingStatus::PprofTerminatedByOversize
                        } else {
                            PprofProfilingStatus::PprofProfilingSuccess
                        };
                    let error = match &data.result {
                        Some(pprof_data::Result::ErrorMessage(message)) => Some(message.clone()),
                        _ => None,
                    };
                    let _ = tx
                        .send(Ok(PprofCollectionResponse {
                            status: status as i32,
                        }))
                        .await;
                    report = Some(PprofReport {
                        metadata,
                        error,
                        chunks: Vec::new(),
                        bytes: Vec::new(),
                        profile: None,
                        status,
                    });
                    continue;
                }
                if let (Some(report), Some(pprof_data::Result::Content(content))) =
                    (&mut report, data.result)
                    && report.status == PprofProfilingStatus::PprofProfilingSuccess
                {
                    report.chunks.push(content.len());
                    report.bytes.extend_from_slice(&content);
                }
            }
            if let Some(mut report) = report {
                report.profile = gunzip(&report.bytes);
                let event = shared.event(|| Event::PprofReport(report.clone()));
                shared.record(|r| r.pprof_reports.push(report), event);
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_pprof_task_commands(
        &self,
        request: Request<PprofTaskCommandQuery>,
    ) -> Result<Response<Commands>, Status> {
        self.shared.authorize(PPROF_COMMANDS, &request)?;
        let query = request.into_inner();
        let reply = self.shared.pprof_commands(query.last_command_time);
        self.shared
            .record(|r| r.pprof_task_queries.push(query), None);
        Ok(Response::new(reply))
    }
}

impl crate::CollectorBuilder {
    /// Serves a trace-profiling task (`ProfileTask/getProfileTaskCommands`), created when an
    /// agent first asks: it then profiles `task.endpoint` for `task.duration` and reports a
    /// pprof ([`crate::Received::profile_reports`]) and the task's finish. Default: none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use skytrace_collector::{Collector, ProfileTaskSpec};
    ///
    /// let builder = Collector::builder().profile_task(ProfileTaskSpec::new(
    ///     "GET:/slow",
    ///     Duration::from_secs(60),
    ///     Duration::from_millis(50),
    /// ));
    /// # drop(builder);
    /// ```
    pub fn profile_task(mut self, task: ProfileTaskSpec) -> Self {
        self.profile_task = Some(task);
        self
    }

    /// Serves an on-demand profile task (`PprofTask/getPprofTaskCommands`), created when an
    /// agent first asks. Default: none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use skytrace_collector::{Collector, PprofTaskSpec};
    ///
    /// let builder = Collector::builder().pprof_task(PprofTaskSpec::new("cpu", Duration::from_secs(5)));
    /// # drop(builder);
    /// ```
    pub fn pprof_task(mut self, task: PprofTaskSpec) -> Self {
        self.pprof_task = Some(task);
        self
    }

    /// The largest pprof `PprofTask/collect` accepts, in bytes (the `contentSize` of its
    /// metadata); a larger one is answered `PPROF_TERMINATED_BY_OVERSIZE`, as OAP does past
    /// its 30 MiB default.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().pprof_max_size(1024);
    /// # drop(builder);
    /// ```
    pub fn pprof_max_size(mut self, bytes: usize) -> Self {
        self.pprof_max_size = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_shorter_than_a_minute_is_sent_as_one_started_in_the_past() {
        assert_eq!(minutes(Duration::from_secs(5)), (1, 55_000));
        assert_eq!(minutes(Duration::from_secs(60)), (1, 0));
        assert_eq!(minutes(Duration::from_secs(90)), (2, 30_000));
        assert_eq!(minutes(Duration::from_secs(3600)), (15, 0));
    }
}
