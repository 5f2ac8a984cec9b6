//! One trace through everything issue 26 added, against the real local servers (PostgreSQL
//! 127.0.0.1:5432, Mosquitto 127.0.0.1:1883; `scripts/ensure-services` starts them): a request
//! of service `shop` queries PostgreSQL through tokio-postgres, diesel-async and sea-orm, calls
//! service `prices` (a plain hyper server) with hyper-util's client from a task it spawns with
//! `skytrace::spawn`, and publishes an MQTT 5 message that service `notify` consumes. Each
//! service reports over gRPC to the in-process collector through its own tracer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use sea_orm::ConnectionTrait;
use skytrace::integrations::mqtt;
use skytrace::integrations::sea_orm::TracedConnection as OrmConnection;
use skytrace::integrations::tokio_postgres::PgTarget;
use skytrace::integrations::tower::{HttpClientLayer, HttpServerLayer};
use skytrace::{Instrument, Span};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{RefType, SegmentObject, SpanLayer, SpanType};
use skytrace_tests::{WAIT, named_tracer, unique_name};
use tower_layer::Layer;
use tower_service::Service;

const POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";
const BROKER: &str = "127.0.0.1:1883";

/// Service `prices`: answers every request with a price.
#[derive(Clone)]
struct Prices;

impl Service<http::Request<Incoming>> for Prices {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Incoming>) -> Self::Future {
        Box::pin(async { Ok(http::Response::new(Full::new(Bytes::from_static(b"12.50")))) })
    }
}

fn of_service<'a>(segments: &'a [SegmentObject], service: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.service == service)
        .unwrap_or_else(|| panic!("no segment of {service}:\n{}", render_trace_tree(segments)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_through_postgres_clients_a_spawned_http_call_and_mqtt() {
    let collector = Collector::start().await.unwrap();
    let shop = named_tracer(&collector, "shop");
    let prices_tracer = named_tracer(&collector, "prices");
    let notify_tracer = named_tracer(&collector, "notify");

    // `prices`: a plain hyper server under the tower layer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let prices_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let service = HttpServerLayer::with_tracer(prices_tracer.clone())
                .client_addr(remote)
                .route_name(|head| {
                    head.uri
                        .path()
                        .starts_with("/prices/")
                        .then(|| "/prices/{id}".into())
                })
                .layer(Prices);
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)),
            );
        }
    });

    // `notify`: an MQTT 5 subscriber.
    let topic = unique_name("skytrace/viewed", '/');
    let (client, mut events) = AsyncClient::new(
        MqttOptions::new(unique_name("skytrace-notify", '-'), "127.0.0.1", 1883),
        16,
    );
    let notify = mqtt::v5::TracedClient::new(client, BROKER).with_tracer(notify_tracer);
    notify
        .subscribe(topic.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (subscribed, on_subscribed) = tokio::sync::oneshot::channel();
    let consumer = tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(message))) => {
                    async { drop(Span::local("send-mail")) }
                        .in_span(notify.consumer_span(&message))
                        .await;
                    return message.payload;
                }
                Ok(_) => {}
                Err(error) => panic!("Mosquitto on {BROKER} (scripts/ensure-services): {error}"),
            }
        }
    });
    tokio::time::timeout(WAIT, on_subscribed)
        .await
        .unwrap()
        .unwrap();

    // `shop`'s clients, set up outside any trace.
    let pg_config: tokio_postgres::Config = POSTGRES_URL.parse().unwrap();
    let (pg, connection) = pg_config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)");
    tokio::spawn(connection);
    let pg = PgTarget::new(&pg_config).traced(pg);
    diesel::connection::set_default_instrumentation(
        skytrace::integrations::diesel::instrumentation,
    )
    .unwrap();
    let mut diesel = AsyncPgConnection::establish(POSTGRES_URL).await.unwrap();
    let orm = OrmConnection::new(sea_orm::Database::connect(POSTGRES_URL).await.unwrap());
    let (client, mut own_events) = AsyncClient::new(
        MqttOptions::new(unique_name("skytrace-shop", '-'), "127.0.0.1", 1883),
        16,
    );
    tokio::spawn(async move { while own_events.poll().await.is_ok() {} });
    let publisher = mqtt::v5::TracedClient::new(client, BROKER);
    let http = HttpClientLayer::new()
        .layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    // The request.
    let request = shop.entry_span("GET:/orders/{id}", &());
    async {
        let row = pg.query_one("SELECT $1::BIGINT", &[&7_i64]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 7);
        let one: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("7::BIGINT"))
            .get_result(&mut diesel)
            .await
            .unwrap();
        assert_eq!(one, 7);
        let statement =
            sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT 7 AS seven");
        assert!(orm.query_one(statement).await.unwrap().is_some());
        // The price, fetched by a task of its own: its spans stay in the request's trace.
        let mut http = http.clone();
        let url = format!("http://{prices_addr}/prices/7");
        let price = skytrace::spawn(async move {
            let request = http::Request::get(url).body(Empty::new()).unwrap();
            std::future::poll_fn(|cx| http.poll_ready(cx))
                .await
                .unwrap();
            http.call(request).await.unwrap().status().as_u16()
        });
        assert_eq!(price.await.unwrap(), 200);
        publisher
            .publish(topic.clone(), QoS::AtLeastOnce, false, "order 7 viewed")
            .await
            .unwrap();
    }
    .in_span(request)
    .await;
    let payload = tokio::time::timeout(WAIT, consumer).await.unwrap().unwrap();
    assert_eq!(&payload[..], b"order 7 viewed");

    let segments = collector.wait_for_segments(3, WAIT).await;
    let tree = render_trace_tree(&segments);
    assert_eq!(segments.len(), 3, "{tree}");
    let shop = of_service(&segments, "shop");
    let prices = of_service(&segments, "prices");
    let notify = of_service(&segments, "notify");
    assert!(
        segments.iter().all(|s| s.trace_id == shop.trace_id),
        "one trace: {tree}"
    );

    // Every exit of the request has a peer and the layer of what it calls.
    let exits: Vec<_> = shop
        .spans
        .iter()
        .filter(|s| s.span_type == SpanType::Exit as i32)
        .collect();
    let layer_of = |prefix: &str| {
        exits
            .iter()
            .find(|s| s.operation_name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no exit span {prefix}…: {tree}"))
    };
    for (prefix, layer) in [
        ("PostgreSQL/tokio-postgres/", SpanLayer::Database),
        ("PostgreSQL/diesel/", SpanLayer::Database),
        ("PostgreSQL/sea-orm/", SpanLayer::Database),
        ("GET:/prices/7", SpanLayer::Http),
        ("Mqtt/", SpanLayer::Mq),
    ] {
        let exit = layer_of(prefix);
        assert_eq!(exit.span_layer, layer as i32, "{prefix}: {tree}");
        assert!(!exit.peer.is_empty(), "{prefix} has no peer: {tree}");
    }
    assert_eq!(exits.len(), 5, "{tree}");

    // The spawned task is a local span of the request, the HTTP call its child.
    let task = shop
        .spans
        .iter()
        .find(|s| s.operation_name == "Task")
        .unwrap_or_else(|| panic!("no task span: {tree}"));
    assert_eq!(task.span_type, SpanType::Local as i32);
    assert_eq!(task.parent_span_id, 0);
    let call = layer_of("GET:/prices/7");
    assert_eq!(call.parent_span_id, task.span_id);

    // `prices` continues the HTTP call; `notify` continues the MQTT publish.
    let entry = &prices.spans[0];
    assert_eq!(entry.operation_name, "GET:/prices/{id}");
    assert_eq!(entry.refs[0].ref_type, RefType::CrossProcess as i32);
    assert_eq!(entry.refs[0].parent_trace_segment_id, shop.trace_segment_id);
    assert_eq!(entry.refs[0].parent_span_id, call.span_id);
    let publish = layer_of("Mqtt/");
    let entry = &notify.spans[0];
    assert_eq!(entry.operation_name, format!("Mqtt/{topic}/Consumer"));
    assert_eq!(entry.refs.len(), 1, "{tree}");
    assert_eq!(entry.refs[0].ref_type, RefType::CrossProcess as i32);
    assert_eq!(entry.refs[0].parent_trace_segment_id, shop.trace_segment_id);
    assert_eq!(entry.refs[0].parent_span_id, publish.span_id);
    assert_eq!(notify.spans[1].operation_name, "send-mail");
}
