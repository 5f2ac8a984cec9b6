//! [`GrpcReporter`]: streams segments to OAP over gRPC.
//!
//! The service's threads encode a finished segment of a few spans (see [`super::wire`] for why
//! there) and queue it without waiting ([`super::queue`]); one background thread
//! ([`super::worker`]) delivers the queue in batches through the gRPC transport
//! ([`super::transport::grpc`]), which connects, fails over between backends, backs off and
//! authenticates. The worker also introduces the instance and sends keep-alives
//! ([`super::signal::management`]), and hands OAP's commands on ([`super::commands`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::metadata::MetadataValue;

use super::batch::Batch;
use super::commands::CommandHandler;
use super::queue::{self, Sender};
use super::signal::configuration::Configuration;
use super::signal::events::Events;
use super::signal::logs::Logs;
use super::signal::management::Management;
use super::signal::meters::{MeterSettings, Meters};
use super::signal::segments::Segments;
use super::status::Status;
use super::transport::grpc::{GrpcSettings, GrpcTransport};
use super::worker::{Worker, deadline_in};
use super::{Reporter, ReporterStats};
use crate::config::Config;
use crate::log_sink::LogReceiver;
use crate::segment::Segment;

/// What the reporter is given beside its [`Config`].
#[derive(Debug, Default)]
pub(crate) struct ReporterOptions {
    /// Where OAP's commands go.
    pub(crate) commands: CommandHandler,
    /// The log queue to drain to OAP's log view, if logs are reported.
    pub(crate) logs: Option<LogReceiver>,
}

struct Control {
    shutdown: watch::Sender<Option<Instant>>,
    done: std_mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

/// Streams segments to OAP's `TraceSegmentReportService/collect` over gRPC.
///
/// Never blocks the service: [`Reporter::report`] puts the segment in a bounded queue (size
/// `SW_AGENT_QUEUE_SIZE`) or, when it is full, drops it and counts it in
/// [`ReporterStats::dropped`]. Usually started by [`crate::init`]. [`Reporter::shutdown`]
/// delivers what is queued within a timeout and stops the background thread; a reporter
/// dropped without it (its last tracer gone) does the same with a timeout of 5 s.
///
/// When OAP cannot be reached or refuses calls, the reporter waits before trying again: 0.5 s
/// after the first failure, 1.6 times longer after each next one, at most 30 s (±20 % jitter),
/// and 30 s at once when the token is refused; with several backends it tries the next one
/// 0.1 s later, and backs off once all have failed. Meanwhile new traces are not started
/// (unless `SW_AGENT_KEEP_TRACING`); a backend that does not answer its first call within 2 s
/// counts as down too. Each change is said once on standard error, naming the backend, the
/// cause and what happens next.
///
/// Strings are cut when segments are encoded: operation names to 150 characters, peers to 200,
/// tag and log keys and values to 2,048 bytes. A segment still over the 4 MiB message limit is
/// dropped alone and counted.
///
/// ```no_run
/// use std::time::Duration;
/// use skytrace::{Config, GrpcReporter, Reporter, Tracer};
///
/// let config = Config::builder().backend_services("127.0.0.1:11800").build().unwrap();
/// let reporter = GrpcReporter::start(&config).unwrap();
/// let tracer = Tracer::new(&config, reporter);
/// drop(tracer.entry_span("job", &()));
/// let stats = tracer.reporter().shutdown(Duration::from_secs(5));
/// println!("sent {} dropped {}", stats.sent, stats.dropped);
/// ```
pub struct GrpcReporter {
    segments: Sender<Batch>,
    /// The transport's limit for one message: a segment encoded here over it is queued as a
    /// note of its size, for the reporter's thread to count and say.
    max_segment_bytes: usize,
    status: Arc<Status>,
    commands: CommandHandler,
    /// Meter reports never sent (buffer full while the backend was down, or left at shutdown).
    meter_reports_dropped: Arc<AtomicU64>,
    /// Log records taken from the log queue and not delivered; `None` when this reporter
    /// does not send logs.
    log_records_lost: Option<Arc<AtomicU64>>,
    control: Mutex<Option<Control>>,
}

impl std::fmt::Debug for GrpcReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcReporter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl GrpcReporter {
    /// Starts the background reporter thread for `config`'s backends.
    pub fn start(config: &Config) -> std::io::Result<GrpcReporter> {
        Self::start_with(config, ReporterOptions::default())
    }

    /// [`GrpcReporter::start`] with the settings that are not in [`Config`] yet.
    pub(crate) fn start_with(
        config: &Config,
        options: ReporterOptions,
    ) -> std::io::Result<GrpcReporter> {
        let token = match &config.authentication {
            Some(t) => Some(MetadataValue::try_from(t.as_str()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "SW_AGENT_AUTHENTICATION is not valid gRPC metadata \
                     (visible ASCII characters only)",
                )
            })?),
            None => None,
        };
        let grpc = GrpcTransport::new(GrpcSettings {
            backends: config.backends.clone(),
            token,
            max_message_bytes: config.max_message_size,
            tls: config.tls.clone(),
        });
        let transport = Chosen::new(config, grpc);
        // What has no Kafka topic is off without a gRPC backend to send it to.
        let grpc_signals = transport.has_grpc();
        let (max_message_bytes, max_message_variable) = transport.max_message_bytes(config);
        let (segments, segments_rx) = queue::bounded(config.queue_size);
        let status = Arc::new(Status::default());
        let (shutdown, shutdown_rx) = watch::channel(None);
        let (done_tx, done) = std_mpsc::channel();
        let worker_status = Arc::clone(&status);
        let commands = options.commands.clone();
        let service = config.service_name.clone();
        let instance = config.instance_name.clone();
        let properties = crate::host::instance_properties_with(
            &config.namespace,
            &config.cluster,
            &config.instance_properties,
        );
        let heartbeat = config.heartbeat_period;
        let process_hook = config.profiling.process_status_hook;
        let keep_tracing = config.keep_tracing;
        let dynamic_config_interval = if grpc_signals {
            config.dynamic_config_interval
        } else {
            Duration::ZERO
        };
        let meter_reports_dropped = Arc::new(AtomicU64::new(0));
        let meters = config.meters.active.then(|| MeterSettings {
            // Made here, on the caller's thread, if it is its first use: the global registry
            // observes the tokio runtime it is first used in, which must be the service's,
            // never the reporter's own.
            registry: crate::meter::global(),
            service: config.service_name.clone(),
            instance: config.instance_name.clone(),
            period: config.meters.period,
            max_buffer_size: config.meters.max_buffer_size,
            max_message_bytes,
            max_message_variable,
        });
        let meters = Meters::start(meters, Arc::clone(&meter_reports_dropped));
        // Made here, as the reporter starts: the end of the `Start` event.
        let mut events = Events::new(config.service_name.clone(), config.instance_name.clone());
        if !grpc_signals {
            events = events.off();
        }
        // Off with SW_AGENT_PROFILE_ACTIVE=false: nothing polled, nothing sampled.
        #[cfg(feature = "profiling")]
        let profiling = (config.profiling.active && grpc_signals).then(|| {
            super::signal::profiling::Profiling::new(
                config.service_name.clone(),
                config.instance_name.clone(),
                config.profiling.task_interval,
            )
        });
        let log_records_lost = options.logs.is_some().then(|| Arc::new(AtomicU64::new(0)));
        let logs = Logs::new(options.logs, log_records_lost.clone().unwrap_or_default());
        let thread = std::thread::Builder::new()
            .name("skytrace-reporter".into())
            .spawn(move || {
                // What tonic, hyper and h2 log here, while sending, is not sent in turn: that
                // would feed the log queue from its own delivery; nor does it reach the
                // application's `tracing` subscriber.
                crate::log_sink::suppress_on_this_thread();
                super::quiet::keep_this_thread_quiet();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(async move {
                        let configuration =
                            Configuration::new(service.clone(), dynamic_config_interval);
                        let worker = Worker {
                            transport: (),
                            segments: Segments::new(segments_rx),
                            management: Management::new(service, instance, properties, heartbeat)
                                .with_process_hook(process_hook),
                            configuration,
                            meters,
                            logs,
                            events,
                            status: worker_status,
                            commands,
                            shutdown: shutdown_rx,
                            keep_tracing,
                            #[cfg(feature = "profiling")]
                            profiling,
                        };
                        match transport {
                            Chosen::Grpc(t) => worker.with_transport(t).run().await,
                            #[cfg(feature = "kafka")]
                            Chosen::Kafka(t) => worker.with_transport(t).run().await,
                        }
                    }),
                    Err(e) => {
                        crate::say::say(&format!(
                            "skytrace: cannot start the reporter's runtime: {e}; \
                             nothing will be reported"
                        ));
                        worker_status.stop();
                    }
                }
                let _ = done_tx.send(());
            })?;
        Ok(GrpcReporter {
            segments,
            max_segment_bytes: max_message_bytes,
            status,
            commands: options.commands,
            meter_reports_dropped,
            log_records_lost,
            control: Mutex::new(Some(Control {
                shutdown,
                done,
                thread,
            })),
        })
    }

    /// Log records taken from the log queue and not delivered, since start; `None` when this
    /// reporter does not send logs.
    pub(crate) fn log_records_lost(&self) -> Option<u64> {
        self.log_records_lost
            .as_ref()
            .map(|lost| lost.load(Ordering::Relaxed))
    }

    /// Meter reports never sent, since start.
    pub(crate) fn meter_reports_dropped(&self) -> u64 {
        self.meter_reports_dropped.load(Ordering::Relaxed)
    }

    /// Where OAP's commands go: install a handler with [`CommandHandler::set`].
    pub(crate) fn commands(&self) -> &CommandHandler {
        &self.commands
    }
}

impl Reporter for GrpcReporter {
    fn report(&self, segment: Segment) {
        // A place in the queue first: a segment that would be dropped is not encoded.
        if let Some(place) = self.segments.place() {
            super::wire::queue(segment, place, self.max_segment_bytes);
        }
    }

    fn is_available(&self) -> bool {
        self.status.is_available()
    }

    fn stats(&self) -> ReporterStats {
        let counts = self.segments.counts();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        ReporterStats {
            queued: self.segments.len() as u64,
            sent: load(&counts.sent),
            dropped: load(&counts.dropped),
            failed: load(&counts.failed),
            connected: self.status.is_connected(),
        }
    }

    fn shutdown(&self, timeout: Duration) -> ReporterStats {
        let control = self
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(control) = control {
            // Any timeout is accepted: one too long for the clock is a year.
            let _ = control.shutdown.send(Some(deadline_in(timeout)));
            // The worker stops at the deadline; a little slack covers its last call returning.
            if control
                .done
                .recv_timeout(timeout.saturating_add(Duration::from_millis(500)))
                .is_ok()
            {
                let _ = control.thread.join();
            }
        }
        self.status.stop();
        self.stats()
    }
}

/// The transport `config` asks for. Made once per reporter and moved to its thread: the size
/// of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Chosen {
    Grpc(GrpcTransport),
    #[cfg(feature = "kafka")]
    Kafka(super::transport::kafka::KafkaTransport),
}

impl Chosen {
    fn new(config: &Config, grpc: GrpcTransport) -> Chosen {
        #[cfg(feature = "kafka")]
        if config.reporter == crate::config::ReporterKind::Kafka {
            use super::transport::kafka::{KafkaTransport, KafkaTransportSettings};
            return Chosen::Kafka(KafkaTransport::new(KafkaTransportSettings {
                kafka: config.kafka.clone(),
                service: config.service_name.clone(),
                instance: config.instance_name.clone(),
                tls: config.tls.clone(),
                grpc: config.backends_given.then_some(grpc),
            }));
        }
        let _ = config;
        Chosen::Grpc(grpc)
    }

    /// Whether dynamic configuration, events and profiling have a way to OAP.
    fn has_grpc(&self) -> bool {
        match self {
            Chosen::Grpc(_) => true,
            #[cfg(feature = "kafka")]
            Chosen::Kafka(t) => t.has_grpc(),
        }
    }

    /// The most bytes one message (one meter report) may have, and the variable that says so.
    fn max_message_bytes(&self, config: &Config) -> (usize, &'static str) {
        match self {
            Chosen::Grpc(_) => (config.max_message_size, "SW_AGENT_MAX_MESSAGE_SIZE"),
            #[cfg(feature = "kafka")]
            Chosen::Kafka(_) => (config.kafka.max_message_bytes, "SW_KAFKA_MAX_MESSAGE_BYTES"),
        }
    }
}
