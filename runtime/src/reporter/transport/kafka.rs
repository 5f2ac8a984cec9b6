//! The Kafka transport: what OAP's kafka-fetcher reads, as the Java agent produces it.
//!
//! | signal | topic | key | value |
//! |---|---|---|---|
//! | segments | `skywalking-segments` | segment id | `SegmentObject` |
//! | meters | `skywalking-meters` | instance | `MeterDataCollection` (one per period) |
//! | logs | `skywalking-logs` | service | `LogData`, the service on every record |
//! | properties | `skywalking-managements` | `register-{instance}` | `InstanceProperties` |
//! | keep-alives | `skywalking-managements` | instance | `InstancePingPkg` |
//!
//! Each call reads the topic's partitions from the cluster's metadata (cached per connection),
//! puts each record in the partition of its key's murmur2 hash (Kafka's default partitioner),
//! and produces one batch per partition. A missing topic is the signal's refusal, said once by
//! name and retried with the signal's back-off; a broker that cannot be reached is the
//! connection's failure: every signal waits, new traces pause.
//!
//! Dynamic configuration, events and profiling have no topic: they go to the gRPC backends
//! when some are configured (their failures back off those signals alone: new traces follow
//! Kafka), and the reporter switches them off when not.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{
    Compression as KafkaCompression, PartitionClient, UnknownTopicHandling,
};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, Event, GoProfileData, InstancePingPkg, InstanceProperties,
    LogData, MeterDataCollection, ProfileTaskCommandQuery, ProfileTaskFinishReport,
};
use skytrace_proto::v10::{PprofData, PprofProfilingStatus, PprofTaskCommandQuery};

use super::grpc::GrpcTransport;
use super::murmur2;
use super::{CallError, Refusal, RefusalKind, Transport, Way};
use crate::config::TlsFiles;
use crate::config::kafka::{Compression, KafkaSettings, SaslMechanism};
use crate::reporter::backoff::Backoff;
use crate::reporter::batch::Batch;
use crate::reporter::message::{self, Failure, Peer, Trouble};

/// What the transport is made with.
pub(crate) struct KafkaTransportSettings {
    pub(crate) kafka: KafkaSettings,
    /// Set on log records that have none, and their key.
    pub(crate) service: String,
    /// The meters' key.
    pub(crate) instance: String,
    /// The agent's TLS files, used for the brokers when their TLS is on.
    pub(crate) tls: Option<TlsFiles>,
    /// For the signals Kafka has no topic for.
    pub(crate) grpc: Option<GrpcTransport>,
}

/// Which topic a call goes to.
#[derive(Clone, Copy, Debug)]
enum Topic {
    Segments = 0,
    Meters = 1,
    Logs = 2,
    Management = 3,
}

/// Why a produce call failed.
enum Problem {
    /// The topic is not in the cluster's metadata.
    Missing,
    /// A broker answered with an error for this call.
    Refused(RefusalKind, String),
    /// No connection, or no answer.
    Link(Trouble, String),
}

/// The connection's state. Borrowed only between `.await`s: the signals' calls interleave.
struct Link {
    client: Option<Arc<Client>>,
    /// Partition counts per topic, from the metadata of this connection.
    partitions: HashMap<String, usize>,
    producers: HashMap<(String, i32), Arc<PartitionClient>>,
    /// Moves on whenever the connection is given up: a failure seen by a call made on an older
    /// one was already booked.
    generation: u64,
    sessions: u64,
    answered: bool,
    backoff: Backoff,
    ready_at: Option<Instant>,
    last_failure: Option<Failure>,
}

pub(crate) struct KafkaTransport {
    settings: KafkaTransportSettings,
    topics: [String; 4],
    backend: String,
    link: RefCell<Link>,
    /// Held while a connection is made, so that signals calling at once make one.
    connecting: tokio::sync::Mutex<()>,
}

impl KafkaTransport {
    pub(crate) fn new(settings: KafkaTransportSettings) -> KafkaTransport {
        KafkaTransport {
            topics: settings.kafka.topics(),
            backend: settings.kafka.bootstrap.join(","),
            settings,
            link: RefCell::new(Link {
                client: None,
                partitions: HashMap::new(),
                producers: HashMap::new(),
                generation: 0,
                sessions: 0,
                answered: false,
                backoff: Backoff::new(),
                ready_at: None,
                last_failure: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the signals Kafka has no topic for have a gRPC backend.
    pub(crate) fn has_grpc(&self) -> bool {
        self.settings.grpc.is_some()
    }

    /// The client of the current connection, made if there is none.
    async fn client(&self) -> Result<(Arc<Client>, u64), Problem> {
        if let Some(found) = self.usable() {
            return Ok(found);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(found) = self.usable() {
            return Ok(found);
        }
        let kafka = &self.settings.kafka;
        let mut builder = ClientBuilder::new(kafka.bootstrap.clone())
            .client_id("skytrace")
            // rskafka retries inside a call; the transport's own back-off is what spaces the
            // attempts, so each call gives up soon.
            .backoff_config(rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
                deadline: Some(Duration::from_secs(2)),
            });
        if kafka.tls {
            let files = self.settings.tls.clone().unwrap_or(TlsFiles {
                ca: None,
                identity: None,
            });
            match super::tls::client_config(&files) {
                Ok(config) => {
                    // No ALPN: that is gRPC's `h2`; Kafka has none.
                    let mut config = (*config).clone();
                    config.alpn_protocols.clear();
                    builder = builder.tls_config(Arc::new(config));
                }
                Err(cause) => return Err(Problem::Link(Trouble::Tls, cause)),
            }
        }
        if let Some((mechanism, user, password)) = &kafka.sasl {
            let credentials = Credentials::new(user.clone(), password.clone());
            builder = builder.sasl_config(match mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        match builder.build().await {
            Ok(client) => {
                let client = Arc::new(client);
                let mut link = self.link.borrow_mut();
                link.client = Some(Arc::clone(&client));
                link.partitions.clear();
                link.producers.clear();
                link.answered = false;
                link.sessions += 1;
                Ok((client, link.generation))
            }
            Err(e) => Err(problem(&e)),
        }
    }

    fn usable(&self) -> Option<(Arc<Client>, u64)> {
        let link = self.link.borrow();
        link.client.clone().map(|c| (c, link.generation))
    }

    /// The number of partitions of `topic`, from the metadata.
    async fn partitions(&self, client: &Client, topic: &str) -> Result<usize, Problem> {
        if let Some(&n) = self.link.borrow().partitions.get(topic) {
            return Ok(n);
        }
        let topics = client.list_topics().await.map_err(|e| problem(&e))?;
        let mut link = self.link.borrow_mut();
        for t in topics {
            link.partitions.insert(t.name, t.partitions.len());
        }
        match link.partitions.get(topic) {
            Some(&n) if n > 0 => Ok(n),
            _ => {
                link.partitions.remove(topic);
                Err(Problem::Missing)
            }
        }
    }

    async fn producer(
        &self,
        client: &Client,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, Problem> {
        let key = (topic.to_owned(), partition);
        if let Some(p) = self.link.borrow().producers.get(&key) {
            return Ok(Arc::clone(p));
        }
        let p = client
            .partition_client(topic, partition, UnknownTopicHandling::Error)
            .await
            .map_err(|e| problem(&e))?;
        let p = Arc::new(p);
        self.link.borrow_mut().producers.insert(key, Arc::clone(&p));
        Ok(p)
    }

    /// Produces `records` (key, value) to `topic`; none at all reads the topic's metadata only.
    async fn produce(
        &self,
        topic: Topic,
        records: Vec<(Vec<u8>, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        if let Some(failure) = self.backing_off() {
            return Err(CallError::Link(failure));
        }
        let name = &self.topics[topic as usize];
        let generation = self.link.borrow().generation;
        let work = async {
            let (client, generation) = self.client().await?;
            let partitions = self.partitions(&client, name).await?;
            let mut batches: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
            let now = record_time();
            for (key, value) in records {
                let p = murmur2::partition(&key, partitions) as i32;
                batches.entry(p).or_default().push(Record {
                    key: Some(key),
                    value: Some(value),
                    headers: BTreeMap::new(),
                    timestamp: now,
                });
            }
            for (p, batch) in batches {
                let producer = self.producer(&client, name, p).await?;
                // A broker takes a record batch of at most its `message.max.bytes`: each
                // request carries what fits (a record alone is within it already).
                for part in fitting(batch, self.settings.kafka.max_message_bytes) {
                    producer
                        .produce(part, self.compression())
                        .await
                        .map_err(|e| problem(&e))?;
                }
            }
            Ok::<u64, Problem>(generation)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(_)) => {
                let mut link = self.link.borrow_mut();
                link.answered = true;
                link.backoff.reset();
                Ok(Commands::default())
            }
            Ok(Err(Problem::Missing)) => Err(CallError::Refused(Refusal {
                kind: RefusalKind::Failed,
                cause: format!(
                    "topic {name} does not exist (OAP creates its topics when its kafka-fetcher \
                     starts)"
                ),
            })),
            Ok(Err(Problem::Refused(kind, cause))) => {
                if kind == RefusalKind::Failed {
                    // Leaders move, topics are recreated: read the metadata afresh.
                    let mut link = self.link.borrow_mut();
                    link.partitions.remove(name.as_str());
                    link.producers.retain(|(t, _), _| t != name);
                }
                Err(CallError::Refused(Refusal { kind, cause }))
            }
            Ok(Err(Problem::Link(trouble, cause))) => {
                Err(CallError::Link(self.fail(generation, trouble, cause)))
            }
            Err(_) => {
                let cause = format!("no answer within {}", message::seconds(timeout));
                Err(CallError::Link(self.fail(
                    generation,
                    Trouble::Stalled,
                    cause,
                )))
            }
        }
    }

    /// The failure that set the back-off, while it lasts.
    fn backing_off(&self) -> Option<Failure> {
        let link = self.link.borrow();
        let at = link.ready_at.filter(|&at| at > Instant::now())?;
        let mut failure = link.last_failure.clone().unwrap_or_else(|| Failure {
            trouble: Trouble::Unreachable,
            peer: Peer::Kafka,
            backend: self.backend.clone(),
            cause: "backing off".to_owned(),
            retry_in: Duration::ZERO,
            next_backend: None,
        });
        failure.retry_in = at.saturating_duration_since(Instant::now());
        Some(failure)
    }

    /// Gives the connection up and backs off, once per connection however many calls saw it
    /// fail.
    fn fail(&self, generation: u64, trouble: Trouble, cause: String) -> Failure {
        let mut link = self.link.borrow_mut();
        if link.generation != generation
            && let Some(failure) = &link.last_failure
        {
            let mut failure = failure.clone();
            failure.retry_in = link
                .ready_at
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or_default();
            return failure;
        }
        let retry_in = link.backoff.fail();
        link.generation += 1;
        link.client = None;
        link.partitions.clear();
        link.producers.clear();
        link.answered = false;
        link.ready_at = Some(Instant::now() + retry_in);
        let failure = Failure {
            trouble,
            peer: Peer::Kafka,
            backend: self.backend.clone(),
            cause,
            retry_in,
            next_backend: None,
        };
        link.last_failure = Some(failure.clone());
        failure
    }

    fn compression(&self) -> KafkaCompression {
        match self.settings.kafka.compression {
            Compression::None => KafkaCompression::NoCompression,
            Compression::Gzip => KafkaCompression::Gzip,
            Compression::Snappy => KafkaCompression::Snappy,
        }
    }

    /// The gRPC transport, for a call Kafka has no topic for.
    fn grpc(&self) -> Result<&GrpcTransport, CallError> {
        self.settings.grpc.as_ref().ok_or_else(|| {
            CallError::Refused(Refusal {
                kind: RefusalKind::Absent,
                cause: "no gRPC backend with the Kafka reporter".into(),
            })
        })
    }
}

/// The outcome of a call made over gRPC. Its failures are this signal's alone: new traces
/// follow Kafka's health, not the gRPC backend's. (The line names the gRPC backend: see
/// `who`.)
fn over_grpc<R>(result: Result<R, CallError>) -> Result<R, CallError> {
    match result {
        Err(CallError::Link(failure)) => Err(CallError::Refused(Refusal {
            kind: RefusalKind::Failed,
            cause: match failure.trouble {
                Trouble::Unreachable => format!("not reachable: {}", failure.cause),
                Trouble::TokenRefused => format!("token refused: {}", failure.cause),
                Trouble::Error => failure.cause,
                Trouble::Stalled => format!("no answer: {}", failure.cause),
                Trouble::Tls => format!("no TLS connection: {}", failure.cause),
            },
        })),
        other => other,
    }
}

/// Now, as a record's timestamp.
fn record_time() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    rskafka::chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// `records` in runs of at most `max_bytes` (keys, values and headers; a record over it alone
/// in its run).
fn fitting(records: Vec<Record>, max_bytes: usize) -> Vec<Vec<Record>> {
    let mut runs: Vec<Vec<Record>> = Vec::new();
    let mut size = 0;
    for record in records {
        let len = record.approximate_size() + RECORD_OVERHEAD;
        match runs.last_mut() {
            Some(run) if size + len <= max_bytes => {
                size += len;
                run.push(record);
            }
            _ => {
                size = len;
                runs.push(vec![record]);
            }
        }
    }
    runs
}

/// A record's framing in a batch beyond its key and value (lengths, offsets, timestamp): a
/// bound, so that a run never exceeds the limit it was cut to.
const RECORD_OVERHEAD: usize = 64;

/// What an rskafka error means for the call.
fn problem(e: &KafkaError) -> Problem {
    match e {
        KafkaError::ServerError {
            protocol_error,
            error_message,
            ..
        } => {
            let cause = match error_message {
                Some(m) => format!("{protocol_error}: {m}"),
                None => protocol_error.to_string(),
            };
            match protocol_error {
                ProtocolError::UnknownTopicOrPartition => Problem::Missing,
                ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge => {
                    Problem::Refused(RefusalKind::TooLarge, cause)
                }
                ProtocolError::SaslAuthenticationFailed
                | ProtocolError::TopicAuthorizationFailed
                | ProtocolError::ClusterAuthorizationFailed => {
                    Problem::Link(Trouble::TokenRefused, cause)
                }
                _ => Problem::Refused(RefusalKind::Failed, cause),
            }
        }
        other => Problem::Link(Trouble::Unreachable, message::cause(other)),
    }
}

/// A segment's id (`SegmentObject.traceSegmentId`, field 2), read from its encoding: the key
/// of its record.
fn segment_id(bytes: &[u8]) -> &[u8] {
    crate::protobuf::length_delimited_fields(bytes)
        .find(|(tag, _)| *tag == 2)
        .map_or(&[], |(_, id)| id)
}

impl Transport for KafkaTransport {
    fn backend(&self) -> String {
        self.backend.clone()
    }

    fn who(&self, way: Way) -> String {
        match (way, &self.settings.grpc) {
            (Way::Topic, _) => Peer::Kafka.at(&self.backend),
            // What has no topic goes over gRPC: its lines name that backend.
            (Way::Grpc, Some(grpc)) => grpc.who(way),
            (Way::Grpc, None) => "OAP (no gRPC backend)".to_owned(),
        }
    }

    fn max_message_variable(&self) -> &'static str {
        "SW_KAFKA_MAX_MESSAGE_BYTES"
    }

    fn ready_at(&self) -> Option<Instant> {
        self.link
            .borrow()
            .ready_at
            .filter(|&at| at > Instant::now())
    }

    fn session(&self) -> u64 {
        self.link.borrow().sessions
    }

    fn is_answering(&self) -> bool {
        self.link.borrow().answered
    }

    fn max_message_bytes(&self) -> usize {
        self.settings.kafka.max_message_bytes
    }

    async fn collect_segments(
        &self,
        segments: Batch,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let records = segments
            .messages()
            .map(|s| (segment_id(s).to_vec(), s.to_vec()))
            .collect();
        self.produce(Topic::Segments, records, timeout).await
    }

    async fn collect_logs(
        &self,
        logs: Vec<LogData>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let records = logs
            .into_iter()
            .map(|mut log| {
                // The fetcher reads each record alone: none may rely on an earlier one.
                if log.service.is_empty() {
                    log.service.clone_from(&self.settings.service);
                }
                (log.service.clone().into_bytes(), log.encode_to_vec())
            })
            .collect();
        self.produce(Topic::Logs, records, timeout).await
    }

    async fn collect_meters(
        &self,
        reports: Vec<MeterDataCollection>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let key = self.settings.instance.as_bytes();
        let records = reports
            .into_iter()
            .map(|report| (key.to_vec(), report.encode_to_vec()))
            .collect();
        self.produce(Topic::Meters, records, timeout).await
    }

    async fn report_properties(
        &self,
        properties: InstanceProperties,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        // OAP tells the properties from a keep-alive by this prefix.
        let key = format!("register-{}", properties.service_instance);
        let record = (key.into_bytes(), properties.encode_to_vec());
        self.produce(Topic::Management, vec![record], timeout).await
    }

    async fn keep_alive(
        &self,
        ping: InstancePingPkg,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let record = (
            ping.service_instance.clone().into_bytes(),
            ping.encode_to_vec(),
        );
        self.produce(Topic::Management, vec![record], timeout).await
    }

    async fn fetch_configurations(
        &self,
        request: ConfigurationSyncRequest,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        over_grpc(self.grpc()?.fetch_configurations(request, timeout).await)
    }

    async fn report_events(
        &self,
        events: Vec<Event>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        over_grpc(self.grpc()?.report_events(events, timeout).await)
    }

    async fn profile_task_commands(
        &self,
        query: ProfileTaskCommandQuery,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        over_grpc(self.grpc()?.profile_task_commands(query, timeout).await)
    }

    async fn report_profile(
        &self,
        chunks: Vec<GoProfileData>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        over_grpc(self.grpc()?.report_profile(chunks, timeout).await)
    }

    async fn report_task_finish(
        &self,
        finish: ProfileTaskFinishReport,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        over_grpc(self.grpc()?.report_task_finish(finish, timeout).await)
    }

    async fn pprof_task_commands(
        &self,
        query: PprofTaskCommandQuery,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        over_grpc(self.grpc()?.pprof_task_commands(query, timeout).await)
    }

    async fn upload_pprof(
        &self,
        metadata: PprofData,
        content: Vec<PprofData>,
        timeout: Duration,
    ) -> Result<PprofProfilingStatus, CallError> {
        over_grpc(self.grpc()?.upload_pprof(metadata, content, timeout).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytrace_proto::v3::SegmentObject;

    #[test]
    fn batches_are_cut_to_the_message_limit() {
        let record = |n: usize| Record {
            key: Some(vec![b'k'; 8]),
            value: Some(vec![0; n]),
            headers: BTreeMap::new(),
            timestamp: record_time(),
        };
        let runs = fitting(
            vec![record(400), record(400), record(400), record(5_000)],
            1_000,
        );
        let lens: Vec<usize> = runs.iter().map(Vec::len).collect();
        assert_eq!(lens, [2, 1, 1]);
        for run in &runs[..2] {
            let bytes: usize = run
                .iter()
                .map(|r| r.approximate_size() + RECORD_OVERHEAD)
                .sum();
            assert!(bytes <= 1_000, "{bytes}");
        }
    }

    #[test]
    fn the_key_of_a_segment_is_its_id() {
        let segment = SegmentObject {
            trace_id: "t-1".into(),
            trace_segment_id: "seg-42".into(),
            service: "svc".into(),
            ..SegmentObject::default()
        };
        assert_eq!(segment_id(&segment.encode_to_vec()), b"seg-42");
        assert_eq!(segment_id(&[0xff]), b"");
    }
}
