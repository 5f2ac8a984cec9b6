//! A request through PostgreSQL, Redis, RabbitMQ, NATS, MariaDB, an HTTP service and MQTT: one
//! trace across five services.
//!
//! Service `data-shop` handles `GET:/orders/{id}`: it looks the order up in Redis, loads it
//! from PostgreSQL on a miss (sqlx), caches it, checks it through the other PostgreSQL clients
//! a Rust service may use (tokio-postgres, diesel-async, sea-orm), asks service `data-prices`
//! (a plain hyper server) for the price from a task it spawns (`skytrace::spawn`, hyper-util's
//! client), publishes an `order-viewed` event to RabbitMQ and an MQTT 5 message that service
//! `data-notify` consumes.
//! Service `data-worker` consumes the event, counts it in Redis and announces it on NATS.
//! Service `data-audit` receives the announcement and writes it to MariaDB. All five report
//! over gRPC; SQL parameters are recorded (`sql_parameters_max_length`).
//!
//! With a Kafka broker named in `SKYTRACE_EXAMPLE_KAFKA` (`host:port`), the request also
//! produces an `order-viewed` record with rskafka to a topic of its own, and a sixth service,
//! `data-billing`, reads it back: its entry span must continue the request's producer span.
//! Without the variable there is no Kafka hop (these machines have no Kafka of their own;
//! `.ci/run` starts a tansu broker for this example).
//!
//! ```sh
//! scripts/ensure-services postgresql redis rabbitmq nats mariadb mosquitto
//! cargo run -p skytrace-examples --example data_layer
//! # or report to a real OAP instead of printing the trace:
//! SW_AGENT_COLLECTOR_BACKEND_SERVICES=127.0.0.1:11800 cargo run -p skytrace-examples --example data_layer
//! # with a Kafka hop, through a broker on 127.0.0.1:9092:
//! SKYTRACE_EXAMPLE_KAFKA=127.0.0.1:9092 cargo run -p skytrace-examples --example data_layer
//! ```
//!
//! The servers default to the local ones (`postgres://root@127.0.0.1:5432/test`,
//! `redis://127.0.0.1:6379/`, `amqp://guest:guest@127.0.0.1:5672/%2f`, `127.0.0.1:4222`,
//! `mysql://root@127.0.0.1:3306/test`, MQTT `127.0.0.1:1883`); `DATABASE_URL`, `REDIS_URL`,
//! `AMQP_URL`, `NATS_URL`, `MYSQL_URL` and `MQTT_HOST` / `MQTT_PORT` change them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use skytrace::integrations::mqtt;
use skytrace::integrations::tower::{HttpClientLayer, HttpClientService, HttpServerLayer};
use tower_layer::Layer as _;
use tower_service::Service;

use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use redis::AsyncCommands;
use sea_orm::ConnectionTrait as _;
use skytrace::integrations::lapin::{ChannelExt, TracedChannel};
use skytrace::integrations::nats::NatsClientExt;
use skytrace::integrations::redis::{RedisConnectionExt, TracedConnection};
use skytrace::integrations::rskafka::{PartitionClientExt, TracedPartitionClient};
use skytrace::integrations::sea_orm::TracedConnection as OrmConnection;
use skytrace::integrations::sqlx::{self as db, PoolExt, TracedPool};
use skytrace::integrations::tokio_postgres::{PgTarget, TracedClient};
use skytrace::{Config, GrpcReporter, Instrument, Span, Tracer};
use skytrace_collector::{Collector, render_trace_tree};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("data_layer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(backends: &str, service: &str) -> Result<Config, skytrace::ConfigError> {
    Config::builder()
        // Bound SQL values in `db.sql.parameters` (SW_AGENT_SQL_PARAMETERS_MAX_LENGTH=0 turns
        // it off again): fine for a demo's teapots, a choice to make where values are personal.
        .sql_parameters_max_length(256)
        .env(|name| std::env::var(name).ok())?
        .backend_services(backends)
        .service_name(service)
        .instance_name(format!("{service}@127.0.0.1"))
        .build()
}

/// What `data-shop` talks to.
struct Shop {
    db: TracedPool<sqlx::Postgres>,
    cache: TracedConnection<redis::aio::MultiplexedConnection>,
    events: TracedChannel,
    queue: String,
    table: String,
    /// The same database through tokio-postgres, diesel-async and sea-orm.
    pg: TracedClient,
    diesel: AsyncPgConnection,
    orm: OrmConnection,
    /// `data-prices`, through hyper-util's client.
    http: HttpClientService<Client<HttpConnector, Empty<Bytes>>>,
    prices: String,
    /// The MQTT 5 broker and the topic `data-notify` listens on.
    mqtt: mqtt::v5::TracedClient,
    topic: String,
    /// The Kafka topic `data-billing` reads, when `SKYTRACE_EXAMPLE_KAFKA` names a broker.
    kafka: Option<TracedPartitionClient>,
}

/// Service `data-prices`: every price is 12.50.
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

/// Serves `data-prices` with hyper on a loopback port, each connection under the tower layer
/// (named by route, the client's address as peer).
async fn serve_prices(tracer: Tracer) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let service = HttpServerLayer::with_tracer(tracer.clone())
                .client_addr(remote)
                .route_name(|head| {
                    head.uri
                        .path()
                        .starts_with("/prices/")
                        .then(|| "/prices/{id}".to_owned())
                })
                .layer(Prices);
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)),
            );
        }
    });
    Ok(format!("http://{addr}"))
}

/// A row of diesel's `sql_query`.
#[derive(diesel::QueryableByName)]
struct Item {
    #[diesel(sql_type = diesel::sql_types::Text)]
    item: String,
}

impl Shop {
    /// `GET:/orders/{id}`.
    async fn get_order(&mut self, id: i64) -> Result<String, Box<dyn std::error::Error>> {
        let key = format!("order:{id}");
        let cached: Option<String> = self.cache.get(&key).await?;
        let item = match cached {
            Some(item) => item,
            None => {
                let (item,): (String,) =
                    db::query_as(&format!("SELECT item FROM {} WHERE id = $1", self.table))
                        .bind(id)
                        .fetch_one(&self.db)
                        .await?;
                let _: () = self.cache.set_ex(&key, &item, 60).await?;
                item
            }
        };
        self.check(id, &item).await?;
        // The price, from a task of its own: `skytrace::spawn` keeps it in this trace.
        let mut http = self.http.clone();
        let url = format!("{}/prices/{id}", self.prices);
        let status = skytrace::spawn(async move {
            let request = http::Request::get(url).body(Empty::new())?;
            std::future::poll_fn(|cx| http.poll_ready(cx)).await?;
            let response = http.call(request).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response.status().as_u16())
        })
        .await?
        .map_err(|e| format!("data-prices: {e}"))?;
        if status != 200 {
            return Err(format!("data-prices answered {status}").into());
        }
        self.mqtt
            .publish(
                self.topic.clone(),
                QoS::AtLeastOnce,
                false,
                format!("order {id} viewed"),
            )
            .await?;
        self.events
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("order {id} viewed").as_bytes(),
                BasicProperties::default(),
            )
            .await?;
        if let Some(kafka) = &self.kafka {
            let record = rskafka::record::Record {
                key: Some(key.into_bytes()),
                value: Some(format!("order {id} viewed").into_bytes()),
                headers: Default::default(),
                timestamp: now(),
            };
            kafka
                .produce(
                    vec![record],
                    rskafka::client::partition::Compression::NoCompression,
                )
                .await
                .map_err(|e| format!("Kafka: {e}"))?;
        }
        Ok(item)
    }

    /// The order read again through tokio-postgres, diesel-async and sea-orm: three more exit
    /// spans of the request.
    async fn check(&mut self, id: i64, item: &str) -> Result<(), Box<dyn std::error::Error>> {
        let sql = format!("SELECT item FROM {} WHERE id = $1", self.table);
        let row = self.pg.query_one(&sql, &[&id]).await?;
        let by_diesel: Vec<Item> = diesel::sql_query(&sql)
            .bind::<diesel::sql_types::BigInt, _>(id)
            .load(&mut self.diesel)
            .await?;
        let statement = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            &sql,
            [id.into()],
        );
        let by_orm = self.orm.query_one(statement).await?;
        let by_orm: Option<String> = by_orm.map(|row| row.try_get("", "item")).transpose()?;
        let seen = [
            Some(row.get::<_, String>(0)),
            by_diesel.into_iter().next().map(|row| row.item),
            by_orm,
        ];
        if seen.iter().any(|s| s.as_deref() != Some(item)) {
            return Err(format!("the clients disagree on order {id}: {seen:?}").into());
        }
        Ok(())
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let external = std::env::var("SW_AGENT_COLLECTOR_BACKEND_SERVICES").ok();
    let collector = match &external {
        Some(_) => None,
        None => Some(Collector::start().await?),
    };
    let backends = match (&external, &collector) {
        (Some(list), _) => list.clone(),
        (None, Some(c)) => c.addr().to_string(),
        (None, None) => unreachable!("either an external backend or the embedded collector"),
    };
    println!("data_layer: reporting to {backends}");

    // The shop uses the global tracer; the worker and the auditor have their own, so one
    // process shows three services.
    let shop_tracing = skytrace::init(config(&backends, "data-shop")?)?;
    let worker_config = config(&backends, "data-worker")?;
    let worker_tracer = Tracer::new(&worker_config, GrpcReporter::start(&worker_config)?);
    let audit_config = config(&backends, "data-audit")?;
    let audit_tracer = Tracer::new(&audit_config, GrpcReporter::start(&audit_config)?);
    let prices_config = config(&backends, "data-prices")?;
    let prices_tracer = Tracer::new(&prices_config, GrpcReporter::start(&prices_config)?);
    let notify_config = config(&backends, "data-notify")?;
    let notify_tracer = Tracer::new(&notify_config, GrpcReporter::start(&notify_config)?);
    let kafka_broker = std::env::var("SKYTRACE_EXAMPLE_KAFKA")
        .ok()
        .filter(|b| !b.is_empty());
    let billing_tracer = match &kafka_broker {
        Some(_) => {
            let billing_config = config(&backends, "data-billing")?;
            Some(Tracer::new(
                &billing_config,
                GrpcReporter::start(&billing_config)?,
            ))
        }
        None => None,
    };

    let database_url = env_or("DATABASE_URL", "postgres://root@127.0.0.1:5432/test");
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379/");
    let amqp_url = env_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let nats_url = env_or("NATS_URL", "127.0.0.1:4222");
    let mysql_url = env_or("MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
    let mqtt_host = env_or("MQTT_HOST", "127.0.0.1");
    let mqtt_port: u16 = env_or("MQTT_PORT", "1883").parse()?;
    let mqtt_broker = format!("{mqtt_host}:{mqtt_port}");
    let run_id = format!("{}", std::process::id());

    // Setup, outside any trace: not recorded.
    let db = sqlx::PgPool::connect(&database_url)
        .await
        .map_err(|e| format!("PostgreSQL at {database_url}: {e}"))?
        .traced();
    let table = format!("skytrace_demo_orders_{run_id}");
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, item TEXT NOT NULL)"
    ))
    .execute(&db)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {table} VALUES (7, 'a teapot') ON CONFLICT DO NOTHING"
    ))
    .execute(&db)
    .await?;
    // The other PostgreSQL clients: tokio-postgres, diesel-async (every diesel connection made
    // from now on reports its queries) and sea-orm.
    let pg_config: tokio_postgres::Config = database_url.parse()?;
    let (pg, pg_connection) = pg_config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("PostgreSQL at {database_url}: {e}"))?;
    tokio::spawn(pg_connection);
    let pg = PgTarget::new(&pg_config).traced(pg);
    diesel::connection::set_default_instrumentation(
        skytrace::integrations::diesel::instrumentation,
    )?;
    let diesel = AsyncPgConnection::establish(&database_url)
        .await
        .map_err(|e| format!("PostgreSQL at {database_url} (diesel): {e}"))?;
    let orm = OrmConnection::new(sea_orm::Database::connect(database_url.as_str()).await?);
    let redis_client = redis::Client::open(redis_url.as_str())?;
    let cache = redis_client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("Redis at {redis_url}: {e}"))?
        .traced(&redis_client);
    let amqp = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("RabbitMQ at {amqp_url}: {e}"))?;
    let broker = broker_of(&amqp_url);
    let queue = format!("skytrace.demo.orders.{run_id}");
    let events = amqp.create_channel().await?.traced(broker.clone());
    events
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;

    let nats = async_nats::connect(nats_url.as_str())
        .await
        .map_err(|e| format!("NATS at {nats_url}: {e}"))?
        .traced(nats_url.clone());
    let audit_db = sqlx::MySqlPool::connect(&mysql_url)
        .await
        .map_err(|e| format!("MariaDB at {mysql_url}: {e}"))?
        .traced();
    let audit_table = format!("skytrace_demo_views_{run_id}");
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {audit_table} (order_id BIGINT, seen_by TEXT)"
    ))
    .execute(&audit_db)
    .await?;
    let subject = format!("skytrace.demo.viewed.{run_id}");

    // `data-prices`, and `data-notify`: an MQTT 5 subscriber handling one message.
    let prices = serve_prices(prices_tracer.clone()).await?;
    let topic = format!("skytrace/demo/viewed/{run_id}");
    let (client, mut notify_events) = AsyncClient::new(
        MqttOptions::new(
            format!("data-notify-{run_id}"),
            mqtt_host.as_str(),
            mqtt_port,
        ),
        16,
    );
    let notify_client =
        mqtt::v5::TracedClient::new(client, mqtt_broker.clone()).with_tracer(notify_tracer.clone());
    notify_client
        .subscribe(topic.clone(), QoS::AtLeastOnce)
        .await?;
    let (subscribed, on_subscribed) = tokio::sync::oneshot::channel();
    let notifier = tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        loop {
            match notify_events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(message))) => {
                    let span = notify_client.consumer_span(&message);
                    async { drop(Span::local("send-mail")) }.in_span(span).await;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err::<(), String>(format!("MQTT at {mqtt_broker}: {e}")),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), on_subscribed)
        .await
        .map_err(|_| "no SUBACK from the MQTT broker in 10 s")??;
    let (client, mut shop_events) = AsyncClient::new(
        MqttOptions::new(format!("data-shop-{run_id}"), mqtt_host.as_str(), mqtt_port),
        16,
    );
    // The shop's own event loop: it sends what the shop publishes.
    tokio::spawn(async move { while shop_events.poll().await.is_ok() {} });
    let shop_mqtt = mqtt::v5::TracedClient::new(client, format!("{mqtt_host}:{mqtt_port}"));

    // The auditor: receives one announcement, writes it down.
    let mut announcements = nats
        .clone()
        .with_tracer(audit_tracer.clone())
        .subscribe(subject.clone())
        .await?;
    nats.flush().await?;
    let insert = format!("INSERT INTO {audit_table} (order_id, seen_by) VALUES (?, ?)");
    let audit_pool = audit_db.clone();
    let auditor = tokio::spawn(async move {
        let Some((message, span)) = announcements.next().await else {
            return Err::<(), String>("the subscription ended".into());
        };
        let order_id: i64 = std::str::from_utf8(&message.payload)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or("an announcement that is not an order id")?;
        db::query(&insert)
            .bind(order_id)
            .bind("data-worker")
            .execute(&audit_pool)
            .in_span(span)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    });

    // The worker: consumes one event, counts it, announces it.
    let worker_channel = amqp
        .create_channel()
        .await?
        .traced(broker)
        .with_tracer(worker_tracer.clone());
    let mut consumer = worker_channel
        .basic_consume(
            queue.as_str().into(),
            "data-worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut worker_cache = cache.clone();
    let worker_nats = nats.clone();
    let worker = tokio::spawn(async move {
        let Some(delivery) = consumer.next().await else {
            return Err::<(), String>("the consumer ended".into());
        };
        let (delivery, span) = delivery.map_err(|e| e.to_string())?;
        async {
            let _: i64 = worker_cache
                .incr("orders:viewed", 1)
                .await
                .map_err(|e| e.to_string())?;
            worker_nats
                .publish(subject, "7".into())
                .await
                .map_err(|e| e.to_string())?;
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
        .in_span(span)
        .await
    });

    // `data-billing`: reads one record from the Kafka topic, when there is a broker.
    let (kafka, billing) = match (&kafka_broker, &billing_tracer) {
        (Some(broker), Some(tracer)) => {
            let (producing, billing) = kafka_hop(broker, &run_id, tracer.clone()).await?;
            (Some(producing), Some(billing))
        }
        _ => (None, None),
    };

    // The request.
    let mut shop = Shop {
        db: db.clone(),
        cache,
        events,
        queue,
        table: table.clone(),
        pg,
        diesel,
        orm,
        http: HttpClientLayer::new().layer(Client::builder(TokioExecutor::new()).build_http()),
        prices,
        mqtt: shop_mqtt,
        topic,
        kafka,
    };
    let request = Span::root_entry("GET:/orders/{id}");
    let item = shop.get_order(7).in_span(request).await?;
    println!("GET /orders/7 -> {item}");
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .map_err(|_| "the worker got no event in 10 s")???;
    tokio::time::timeout(Duration::from_secs(10), auditor)
        .await
        .map_err(|_| "the auditor got no announcement in 10 s")???;
    tokio::time::timeout(Duration::from_secs(10), notifier)
        .await
        .map_err(|_| "data-notify got no MQTT message in 10 s")???;
    if let Some(billing) = billing {
        tokio::time::timeout(Duration::from_secs(10), billing)
            .await
            .map_err(|_| "data-billing got no Kafka record in 10 s")???;
    }

    // Cleanup, outside any trace.
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&db)
        .await?;
    sqlx::query(&format!("DROP TABLE {audit_table}"))
        .execute(&audit_db)
        .await?;
    let _: () = shop.cache.del("order:7").await?;

    let expected = if billing_tracer.is_some() { 6 } else { 5 };
    let mut stats = vec![
        shop_tracing.shutdown(Duration::from_secs(5)),
        worker_tracer.reporter().shutdown(Duration::from_secs(5)),
        audit_tracer.reporter().shutdown(Duration::from_secs(5)),
        prices_tracer.reporter().shutdown(Duration::from_secs(5)),
        notify_tracer.reporter().shutdown(Duration::from_secs(5)),
    ];
    if let Some(tracer) = &billing_tracer {
        stats.push(tracer.reporter().shutdown(Duration::from_secs(5)));
    }
    let sent: u64 = stats.iter().map(|s| s.sent).sum();
    println!(
        "segments sent: {sent} (dropped {}, failed {})",
        stats.iter().map(|s| s.dropped).sum::<u64>(),
        stats.iter().map(|s| s.failed).sum::<u64>()
    );
    match collector {
        Some(collector) => {
            let segments = collector
                .wait_for_segments(expected, Duration::from_secs(10))
                .await;
            println!("\n{}", render_trace_tree(&segments));
            collector.shutdown().await;
            if segments.len() < expected {
                return Err(format!(
                    "expected {expected} segments, the collector has {}",
                    segments.len()
                )
                .into());
            }
            // The request's segment has a span of each PostgreSQL client.
            let request = segments
                .iter()
                .find(|s| s.service == "data-shop")
                .ok_or("no segment of data-shop")?;
            check_request(&segments, request, billing_tracer.is_some())?;
        }
        None => {
            if sent < expected as u64 {
                return Err(
                    format!("only {sent} of {expected} segments reached {backends}").into(),
                );
            }
            println!(
                "open SkyWalking's trace view: services data-shop, data-worker and data-audit"
            );
        }
    }
    Ok(())
}

/// The request's segment: an exit span with a peer and the right layer for every client, the
/// spawned task as a local span holding the HTTP call, and the MQTT consumer (and the Kafka
/// one, with `kafka`) continuing the publish.
fn check_request(
    segments: &[skytrace_proto::v3::SegmentObject],
    request: &skytrace_proto::v3::SegmentObject,
    kafka: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use skytrace_proto::v3::{SpanLayer, SpanType};
    let exit = |prefix: &str, layer: SpanLayer| {
        request
            .spans
            .iter()
            .find(|span| {
                span.span_type == SpanType::Exit as i32
                    && span.operation_name.starts_with(prefix)
                    && span.peer.contains(':')
                    && span.span_layer == layer as i32
            })
            .ok_or_else(|| {
                format!("the request has no {prefix}… exit span with a peer and layer {layer:?}")
            })
    };
    for client in ["sqlx", "tokio-postgres", "diesel", "sea-orm"] {
        exit(&format!("PostgreSQL/{client}/"), SpanLayer::Database)?;
    }
    exit("Redis/", SpanLayer::Cache)?;
    exit("RabbitMQ/", SpanLayer::Mq)?;
    let call = exit("GET:/prices/", SpanLayer::Http)?;
    let publish = exit("Mqtt/", SpanLayer::Mq)?;
    let task = request
        .spans
        .iter()
        .find(|span| span.operation_name == "Task")
        .ok_or("the request has no span of its spawned task")?;
    if call.parent_span_id != task.span_id {
        return Err("the HTTP call is not a child of the spawned task's span".into());
    }
    let continues = |service: &str, parent: i32| {
        segments.iter().any(|s| {
            s.service == service
                && s.spans.first().is_some_and(|entry| {
                    entry.refs.iter().any(|r| {
                        r.parent_trace_segment_id == request.trace_segment_id
                            && r.parent_span_id == parent
                    })
                })
        })
    };
    if !continues("data-prices", call.span_id) {
        return Err("data-prices does not continue the HTTP call".into());
    }
    if !continues("data-notify", publish.span_id) {
        return Err("data-notify's entry has no reference to the MQTT publish".into());
    }
    if kafka {
        let produce = exit("Kafka/", SpanLayer::Mq)?;
        if !continues("data-billing", produce.span_id) {
            return Err("data-billing's entry has no reference to the Kafka produce".into());
        }
    }
    Ok(())
}

/// The Kafka hop's setup, outside any trace: a topic of this run's own on `broker`, the shop's
/// traced producer of it, and `data-billing`'s task reading one record back (its handling in
/// the record's entry span).
async fn kafka_hop(
    broker: &str,
    run_id: &str,
    tracer: Tracer,
) -> Result<
    (
        TracedPartitionClient,
        tokio::task::JoinHandle<Result<(), String>>,
    ),
    Box<dyn std::error::Error>,
> {
    use rskafka::client::ClientBuilder;
    use rskafka::client::partition::UnknownTopicHandling;

    let connect = ClientBuilder::new(vec![broker.to_owned()]).build();
    let client = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| format!("Kafka at {broker}: no answer in 10 s"))?
        .map_err(|e| format!("Kafka at {broker}: {e}"))?;
    let topic = format!("skytrace-demo-orders-{run_id}");
    client
        .controller_client()?
        .create_topic(topic.as_str(), 1, 1, 5_000)
        .await
        .map_err(|e| format!("Kafka at {broker}: creating topic {topic}: {e}"))?;
    let producing = client
        .partition_client(topic.as_str(), 0, UnknownTopicHandling::Retry)
        .await?
        .traced(broker.to_owned());
    let billing = client
        .partition_client(topic.as_str(), 0, UnknownTopicHandling::Retry)
        .await?
        .traced(broker.to_owned())
        .with_group("data-billing")
        .with_tracer(tracer);
    let task = tokio::spawn(async move {
        loop {
            // Waits up to 1 s on the broker for a record, then asks again.
            let (records, _) = billing
                .fetch_records(0, 1..1_000_000, 1_000)
                .await
                .map_err(|e| format!("Kafka: {e}"))?;
            if let Some(record) = records.first() {
                let span = billing.record_span(&record.record);
                async { drop(Span::local("bill-view")) }.in_span(span).await;
                return Ok(());
            }
        }
    });
    Ok((producing, task))
}

/// Now, as a Kafka record's timestamp.
fn now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    rskafka::chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// `host:port` of an AMQP URL, for the spans' peer.
fn broker_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, hp)| hp);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}
