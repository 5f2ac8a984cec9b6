//! The gRPC handlers of the collector services.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use skytrace_proto::v3::Event as ServiceEvent;
use skytrace_proto::v3::configuration_discovery_service_server::{
    ConfigurationDiscoveryService, ConfigurationDiscoveryServiceServer,
};
use skytrace_proto::v3::event_service_server::{EventService, EventServiceServer};
use skytrace_proto::v3::log_report_service_server::{LogReportService, LogReportServiceServer};
use skytrace_proto::v3::management_service_server::{ManagementService, ManagementServiceServer};
use skytrace_proto::v3::meter_report_service_server::{
    MeterReportService, MeterReportServiceServer,
};
use skytrace_proto::v3::profile_task_server::ProfileTaskServer;
use skytrace_proto::v3::trace_segment_report_service_server::{
    TraceSegmentReportService, TraceSegmentReportServiceServer,
};
use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, InstancePingPkg, InstanceProperties, LogData, MeterData,
    MeterDataCollection, SegmentCollection, SegmentObject,
};
use skytrace_proto::v10::pprof_task_server::PprofTaskServer;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};

use crate::{Event, Shared};

const TRACE_COLLECT: &str = "/skywalking.v3.TraceSegmentReportService/collect";
const TRACE_COLLECT_IN_SYNC: &str = "/skywalking.v3.TraceSegmentReportService/collectInSync";
const REPORT_PROPERTIES: &str = "/skywalking.v3.ManagementService/reportInstanceProperties";
const KEEP_ALIVE: &str = "/skywalking.v3.ManagementService/keepAlive";
const LOG_COLLECT: &str = "/skywalking.v3.LogReportService/collect";
const METER_COLLECT: &str = "/skywalking.v3.MeterReportService/collect";
const METER_COLLECT_BATCH: &str = "/skywalking.v3.MeterReportService/collectBatch";
const FETCH_CONFIGURATIONS: &str =
    "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations";
const EVENT_COLLECT: &str = "/skywalking.v3.EventService/collect";

/// Count-only mode's `collect`: each message (tonic has checked its gRPC framing) is skipped
/// whole and counted as one segment; the reply is the usual empty `Commands`.
#[derive(Clone)]
struct CountingCollect {
    handler: Arc<Handler>,
}

struct SkipDecoder;

impl tonic::codec::Decoder for SkipDecoder {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, Status> {
        use prost::bytes::Buf as _;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

struct CountingCodec;

impl tonic::codec::Codec for CountingCodec {
    type Encode = Commands;
    type Decode = ();
    type Encoder = tonic_prost::ProstEncoder<Commands>;
    type Decoder = SkipDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> SkipDecoder {
        SkipDecoder
    }
}

impl Service<Request<Streaming<()>>> for CountingCollect {
    type Response = Response<Commands>;
    type Error = Status;
    type Future = BoxFuture<Response<Commands>, Status>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Streaming<()>>) -> Self::Future {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            handler
                .drain(TRACE_COLLECT, request, |()| handler.shared.count_segment())
                .await
        })
    }
}

impl CountingCollect {
    fn serve(&self, request: http::Request<Body>) -> BoxFuture<http::Response<Body>, Infallible> {
        let service = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(CountingCodec);
            Ok(grpc.client_streaming(service, request).await)
        })
    }
}

/// `fetchConfigurations` answered with raw bytes (see
/// `CollectorBuilder::configuration_reply_bytes`): what a hostile or broken OAP could send.
#[derive(Clone)]
struct RawConfigurationReply {
    handler: Arc<Handler>,
    bytes: Arc<Vec<u8>>,
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Arc<Vec<u8>>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Arc<Vec<u8>>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Arc<Vec<u8>>;
    type Decode = ConfigurationSyncRequest;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<ConfigurationSyncRequest>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

impl Service<Request<ConfigurationSyncRequest>> for RawConfigurationReply {
    type Response = Response<Arc<Vec<u8>>>;
    type Error = Status;
    type Future = BoxFuture<Response<Arc<Vec<u8>>>, Status>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ConfigurationSyncRequest>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let shared = &this.handler.shared;
            shared.authorize(FETCH_CONFIGURATIONS, &request)?;
            let sync = request.into_inner();
            let event = shared.event(|| Event::ConfigurationRequest(sync.clone()));
            shared.record(|r| r.configuration_requests.push(sync), event);
            Ok(Response::new(Arc::clone(&this.bytes)))
        })
    }
}

impl RawConfigurationReply {
    fn serve(&self, request: http::Request<Body>) -> BoxFuture<http::Response<Body>, Infallible> {
        let service = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.unary(service, request).await)
        })
    }
}

/// Implements every collector service over the shared state.
pub(crate) struct Handler {
    pub(crate) shared: Arc<Shared>,
}

type Reply = Result<Response<Commands>, Status>;

fn no_commands() -> Reply {
    Ok(Response::new(Commands::default()))
}

fn stopping() -> Status {
    Status::unavailable("the collector is shutting down")
}

impl Handler {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Handler { shared }
    }

    /// Reads `stream` to its end, handing each message to `on_message`; answers with empty
    /// commands once the client completes the stream. In stall mode nothing is read and no
    /// answer comes until the collector stops.
    async fn drain<T>(
        &self,
        rpc: &'static str,
        request: Request<Streaming<T>>,
        mut on_message: impl FnMut(T),
    ) -> Reply {
        self.shared.authorize(rpc, &request)?;
        let mut stream = request.into_inner();
        if self.shared.stall() {
            self.shared.stopped().await;
            // Kept (unread) until now, so the client's flow-control window stays full.
            drop(stream);
            return Err(stopping());
        }
        loop {
            match self.shared.unless_stopped(stream.message()).await {
                None => return Err(stopping()),
                Some(Ok(Some(message))) => on_message(message),
                Some(Ok(None)) => return no_commands(),
                Some(Err(status)) => return Err(status),
            }
        }
    }
}

#[tonic::codegen::async_trait]
impl TraceSegmentReportService for Handler {
    async fn collect(&self, request: Request<Streaming<SegmentObject>>) -> Reply {
        self.shared.record(|r| r.segment_calls += 1, None);
        self.drain(TRACE_COLLECT, request, |segment| {
            self.shared.record_segment(segment)
        })
        .await
    }

    async fn collect_in_sync(&self, request: Request<SegmentCollection>) -> Reply {
        self.shared.authorize(TRACE_COLLECT_IN_SYNC, &request)?;
        for segment in request.into_inner().segments {
            self.shared.record_segment(segment);
        }
        no_commands()
    }
}

#[tonic::codegen::async_trait]
impl ManagementService for Handler {
    async fn report_instance_properties(&self, request: Request<InstanceProperties>) -> Reply {
        self.shared.authorize(REPORT_PROPERTIES, &request)?;
        let properties = request.into_inner();
        let event = self
            .shared
            .event(|| Event::InstanceProperties(properties.clone()));
        self.shared
            .record(|r| r.instance_properties.push(properties), event);
        no_commands()
    }

    async fn keep_alive(&self, request: Request<InstancePingPkg>) -> Reply {
        self.shared.authorize(KEEP_ALIVE, &request)?;
        let ping = request.into_inner();
        let event = self.shared.event(|| Event::Ping(ping.clone()));
        self.shared.record(|r| r.pings.push(ping), event);
        no_commands()
    }
}

#[tonic::codegen::async_trait]
impl LogReportService for Handler {
    async fn collect(&self, request: Request<Streaming<LogData>>) -> Reply {
        self.drain(LOG_COLLECT, request, |log| {
            let event = self.shared.event(|| Event::Log(log.clone()));
            self.shared.record(|r| r.logs.push(log), event);
        })
        .await
    }
}

#[tonic::codegen::async_trait]
impl EventService for Handler {
    async fn collect(&self, request: Request<Streaming<ServiceEvent>>) -> Reply {
        self.drain(EVENT_COLLECT, request, |service_event| {
            let event = self
                .shared
                .event(|| Event::ServiceEvent(service_event.clone()));
            self.shared
                .record(|r| r.service_events.push(service_event), event);
        })
        .await
    }
}

impl Handler {
    fn record_meters(&self, meters: Vec<MeterData>) {
        if meters.is_empty() {
            return;
        }
        let event = self.shared.event(|| Event::Meters(meters.clone()));
        self.shared.record(|r| r.meters.extend(meters), event);
    }
}

#[tonic::codegen::async_trait]
impl MeterReportService for Handler {
    async fn collect(&self, request: Request<Streaming<MeterData>>) -> Reply {
        // Like OAP: a stream's values count only once the agent completes it.
        let mut pending = Vec::new();
        let reply = self
            .drain(METER_COLLECT, request, |meter| pending.push(meter))
            .await;
        if reply.is_ok() {
            self.record_meters(pending);
        }
        reply
    }

    async fn collect_batch(&self, request: Request<Streaming<MeterDataCollection>>) -> Reply {
        self.drain(METER_COLLECT_BATCH, request, |batch| {
            self.record_meters(batch.meter_data)
        })
        .await
    }
}

#[tonic::codegen::async_trait]
impl ConfigurationDiscoveryService for Handler {
    async fn fetch_configurations(&self, request: Request<ConfigurationSyncRequest>) -> Reply {
        self.shared.authorize(FETCH_CONFIGURATIONS, &request)?;
        let sync = request.into_inner();
        let event = self
            .shared
            .event(|| Event::ConfigurationRequest(sync.clone()));
        let reply = self.shared.configuration_for(&sync.uuid);
        self.shared
            .record(|r| r.configuration_requests.push(sync), event);
        Ok(Response::new(reply))
    }
}

/// Dispatches each request to the service named in its path (`/{service}/{rpc}`): the six
/// collector services on one port, without pulling in a general-purpose router.
#[derive(Clone)]
pub(crate) struct Routes {
    /// Set in count-only mode: serves `TraceSegmentReportService/collect`.
    counting: Option<CountingCollect>,
    /// Set when configuration replies are raw bytes: serves `fetchConfigurations`.
    raw_configuration: Option<RawConfigurationReply>,
    trace: TraceSegmentReportServiceServer<Handler>,
    management: ManagementServiceServer<Handler>,
    log: LogReportServiceServer<Handler>,
    meter: MeterReportServiceServer<Handler>,
    configuration: ConfigurationDiscoveryServiceServer<Handler>,
    event: EventServiceServer<Handler>,
    profile: ProfileTaskServer<Handler>,
    pprof: PprofTaskServer<Handler>,
    handler: Arc<Handler>,
}

impl Routes {
    pub(crate) fn new(handler: Handler) -> Self {
        let handler = Arc::new(handler);
        let counting = handler.shared.count_only().then(|| CountingCollect {
            handler: Arc::clone(&handler),
        });
        let raw_configuration =
            handler
                .shared
                .raw_configuration_reply()
                .map(|bytes| RawConfigurationReply {
                    handler: Arc::clone(&handler),
                    bytes,
                });
        Routes {
            counting,
            raw_configuration,
            trace: TraceSegmentReportServiceServer::from_arc(Arc::clone(&handler)),
            management: ManagementServiceServer::from_arc(Arc::clone(&handler)),
            log: LogReportServiceServer::from_arc(Arc::clone(&handler)),
            meter: MeterReportServiceServer::from_arc(Arc::clone(&handler)),
            configuration: ConfigurationDiscoveryServiceServer::from_arc(Arc::clone(&handler)),
            event: EventServiceServer::from_arc(Arc::clone(&handler)),
            profile: ProfileTaskServer::from_arc(Arc::clone(&handler)),
            pprof: PprofTaskServer::from_arc(Arc::clone(&handler)),
            handler,
        }
    }
}

/// What tonic's servers answer for a service they do not have.
fn unimplemented() -> BoxFuture<http::Response<Body>, Infallible> {
    Box::pin(async { Ok(Status::unimplemented("unknown service").into_http()) })
}

fn service_name<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

impl Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every generated service is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some(counting) = &self.counting
            && request.uri().path() == TRACE_COLLECT
        {
            return counting.serve(request);
        }
        if let Some(raw) = &self.raw_configuration
            && request.uri().path() == FETCH_CONFIGURATIONS
        {
            return raw.serve(request);
        }
        let service = request.uri().path().split('/').nth(1).unwrap_or_default();
        if let Some(status) = self.handler.shared.error_for(service) {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        if service == service_name(&self.trace) {
            self.trace.call(request)
        } else if service == service_name(&self.management) {
            self.management.call(request)
        } else if service == service_name(&self.log) {
            self.log.call(request)
        } else if service == service_name(&self.meter) {
            self.meter.call(request)
        } else if service == service_name(&self.configuration) {
            self.configuration.call(request)
        } else if service == service_name(&self.event) {
            self.event.call(request)
        } else if service == service_name(&self.profile) {
            self.profile.call(request)
        } else if service == service_name(&self.pprof) {
            self.pprof.call(request)
        } else {
            unimplemented()
        }
    }
}
