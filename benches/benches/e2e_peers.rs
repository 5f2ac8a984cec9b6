//! The e2e bench's peers: what a service would write to trace its axum requests with the
//! official `skywalking` crate and with fastrace (neither ships an axum layer), and the
//! subscribers of the `tracing` cases (tower-http's `TraceLayer` making each request's span).
//!
//! Each records what skytrace's `SkytraceLayer` records of a request: an entry (root) span
//! named `METHOD:path`, the method and URL as tags, the status code once the response is
//! there; each hands its spans to a reporter that discards them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fastrace::future::FutureExt as _;
use opentelemetry::trace::TracerProvider as _;
use skywalking::trace::span::HandleSpanObject as _;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The component skytrace's axum layer sets (http, 49), so that both record the same fields.
const COMPONENT: i32 = skytrace::component::HTTP;

/// A tower layer recording each request with the `skywalking` crate (its `()` reporter
/// discards, after the crate turned the segment into protobuf on this thread, as it does).
#[derive(Clone)]
pub struct SkywalkingLayer(pub skywalking::trace::tracer::Tracer);

#[derive(Clone)]
pub struct SkywalkingService<S> {
    tracer: skywalking::trace::tracer::Tracer,
    inner: S,
}

impl<S> tower_layer::Layer<S> for SkywalkingLayer {
    type Service = SkywalkingService<S>;

    fn layer(&self, inner: S) -> SkywalkingService<S> {
        SkywalkingService {
            tracer: self.0.clone(),
            inner,
        }
    }
}

impl<S, B, R> tower_service::Service<http::Request<B>> for SkywalkingService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use skywalking::trace::propagation::decoder::decode_propagation;

        let mut ctx = self.tracer.create_trace_context();
        let operation = format!("{}:{}", request.method(), request.uri().path());
        let propagation = request
            .headers()
            .get("sw8")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| decode_propagation(v).ok());
        let mut entry = match &propagation {
            Some(p) => ctx.create_entry_span_with_propagation(&operation, p),
            None => ctx.create_entry_span(&operation),
        };
        entry.span_object_mut().component_id = COMPONENT;
        entry.add_tag("http.method", request.method().as_str());
        entry.add_tag("url", request.uri().to_string());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            if let Ok(response) = &response {
                entry.add_tag("http.status_code", response.status().as_str());
            }
            drop(entry);
            drop(ctx);
            response
        })
    }
}

/// A tower layer recording each request with fastrace (a root span; the reporter installed by
/// [`install_fastrace`] discards).
#[derive(Clone)]
pub struct FastraceLayer;

#[derive(Clone)]
pub struct FastraceService<S>(S);

impl<S> tower_layer::Layer<S> for FastraceLayer {
    type Service = FastraceService<S>;

    fn layer(&self, inner: S) -> FastraceService<S> {
        FastraceService(inner)
    }
}

impl<S, B, R> tower_service::Service<http::Request<B>> for FastraceService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let operation = format!("{}:{}", request.method(), request.uri().path());
        let method = request.method().clone();
        let url = request.uri().to_string();
        let root = fastrace::Span::root(operation, fastrace::prelude::SpanContext::random())
            .with_properties(|| [("http.method", method.as_str().to_owned()), ("url", url)]);
        let response = self.0.call(request);
        Box::pin(
            async move {
                let response = response.await;
                if let Ok(response) = &response {
                    let status = response.status();
                    fastrace::local::LocalSpan::add_property(|| {
                        ("http.status_code", status.as_str().to_owned())
                    });
                }
                response
            }
            .in_span(root),
        )
    }
}

struct FastraceDiscard;

impl fastrace::collector::Reporter for FastraceDiscard {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        drop(std::hint::black_box(spans));
    }
}

/// fastrace's global reporter (its collector thread runs in this process), discarding.
pub fn install_fastrace() {
    fastrace::set_reporter(FastraceDiscard, fastrace::collector::Config::default());
}

/// An OpenTelemetry exporter that discards the batches the SDK's batch processor hands it: what
/// skytrace's `DiscardReporter` is to skytrace.
#[derive(Debug)]
struct DiscardExporter;

impl opentelemetry_sdk::trace::SpanExporter for DiscardExporter {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        drop(std::hint::black_box(batch));
        std::future::ready(Ok(()))
    }
}

/// `Registry` + tracing-opentelemetry's layer over an SDK tracer provider whose batch processor
/// (its own thread) exports to [`DiscardExporter`]. The provider is returned to be kept alive.
pub fn otel_dispatch() -> (Dispatch, opentelemetry_sdk::trace::SdkTracerProvider) {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_span_processor(
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(DiscardExporter).build(),
        )
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        provider,
    )
}

/// `Registry` + skytrace's `tracing` bridge, root spans starting traces on `tracer` (the
/// global tracer when `None`).
pub fn bridge_dispatch(tracer: Option<skytrace::Tracer>) -> Dispatch {
    use skytrace::integrations::tracing::SkyWalkingLayer;
    let layer = match tracer {
        Some(tracer) => SkyWalkingLayer::new().start_traces_on(tracer),
        None => SkyWalkingLayer::new().start_traces(true),
    };
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// A `Registry` alone: what every `tracing` case pays before any layer records.
pub fn registry_dispatch() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry())
}

/// tower-http's `TraceLayer` as a service adds it: a `request` span (method, URI, version) per
/// request, DEBUG events when it starts and ends.
pub fn trace_layer() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
> {
    tower_http::trace::TraceLayer::new_for_http()
}

/// How long a `tracing` case's batch processor may take to shut down.
pub const SHUTDOWN: Duration = Duration::from_secs(5);
