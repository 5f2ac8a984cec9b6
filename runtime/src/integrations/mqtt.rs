//! MQTT through rumqttc (feature `rumqttc`): an exit span per published message, an entry span
//! per received one. With MQTT 5 ([`v5::TracedClient`]) the trace crosses the broker: `sw8`,
//! `sw8-correlation` and `sw8-x` travel as user properties of the PUBLISH packet. MQTT 3.1.1
//! ([`TracedClient`]) has no headers, so there the publisher's exit span stands alone and each
//! received message starts a new trace.
//!
//! ```no_run
//! use rumqttc::v5::mqttbytes::QoS;
//! use rumqttc::v5::mqttbytes::v5::Packet;
//! use rumqttc::v5::{AsyncClient, Event, MqttOptions};
//! use skytrace::Instrument;
//! use skytrace::integrations::mqtt::v5::TracedClient;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, mut events) = AsyncClient::new(MqttOptions::new("orders", "mqtt", 1883), 16);
//! let client = TracedClient::new(client, "mqtt:1883");
//! client.subscribe("orders/+", QoS::AtLeastOnce).await?;
//!
//! // Publisher, inside a traced request: the message carries `sw8` in its user properties.
//! client.publish("orders/7", QoS::AtLeastOnce, false, "order 7").await?;
//!
//! // Subscriber: rumqttc's event loop yields the messages; each gets its entry span.
//! loop {
//!     if let Event::Incoming(Packet::Publish(message)) = events.poll().await? {
//!         let span = client.consumer_span(&message);
//!         async { /* handle: spans made here are children of the entry span */ }
//!             .in_span(span)
//!             .await;
//!     }
//! }
//! # }
//! ```
//!
//! The official agents have no MQTT plugin; the names follow the Java agent's MQ plugins and
//! the third-party Paho plugin for it (`Mqtt/{topic}/Producer/{qos}`), without the QoS, so
//! that a topic is one endpoint whatever the QoS: the publisher's exit span
//! `Mqtt/{topic}/Producer`, the subscriber's entry span `Mqtt/{topic}/Consumer`. Both have
//! layer MQ, peer and tag `mq.broker` = the broker address given to `TracedClient::new`, and tag
//! `mq.topic`. With MQTT 5 the publish's `sw8-x` carries the send time and the subscriber tags
//! `transmission.latency` (ms) from it. A failed publish (the event loop gone) fails the exit
//! span. OAP's component list has no MQTT entry (the Paho plugin defines its id in its own
//! build), so the spans report component Rust (11000).
//!
//! Entry spans go to the global tracer ([`crate::init`]), or to the one given with
//! `with_tracer`. Outside any trace a message is published unchanged. Subscribing, acks and the
//! rest reach the wrapped client through `Deref`.

use std::borrow::Cow;
use std::ops::Deref;

use super::{join, mq};
use crate::component;
use crate::propagation::Extractor;
use crate::span::Span;
use crate::tracer::Tracer;

pub mod v5;

/// What the spans report: OAP lists no MQTT component (see the [module documentation](self)).
const COMPONENT: i32 = component::RUST;

/// The exit span of a publish to `topic`.
fn producer_span(topic: &str, broker: Cow<'static, str>) -> Span {
    mq::producer_span(
        || join(["Mqtt/", topic, "/Producer"]),
        broker,
        |span| {
            span.set_component(COMPONENT);
            span.add_tag("mq.topic", topic.to_owned());
        },
    )
}

/// The entry span of a message received on `topic` (raw bytes, as on the wire), continuing
/// from `carrier`.
fn consumer_span(
    tracer: Option<&Tracer>,
    topic: &[u8],
    carrier: impl Extractor,
    broker: Cow<'static, str>,
) -> Span {
    let topic = String::from_utf8_lossy(topic);
    mq::consumer_span(
        tracer,
        join(["Mqtt/", &topic, "/Consumer"]),
        carrier,
        COMPONENT,
        broker,
        |span| span.add_tag("mq.topic", topic.into_owned()),
    )
}

/// An MQTT 3.1.1 client (rumqttc's [`rumqttc::AsyncClient`]) whose publishes are exit spans;
/// [`TracedClient::consumer_span`] gives a received message its entry span (a new trace: 3.1.1
/// carries no headers). See the [module documentation](self).
///
/// ```no_run
/// use rumqttc::{AsyncClient, MqttOptions, QoS};
/// use skytrace::integrations::mqtt::TracedClient;
///
/// # async fn demo() -> Result<(), rumqttc::ClientError> {
/// let (client, _events) = AsyncClient::new(MqttOptions::new("sensor", "mqtt", 1883), 16);
/// let client = TracedClient::new(client, "mqtt:1883");
/// client.publish("sensors/7", QoS::AtMostOnce, false, "21.5").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TracedClient {
    client: rumqttc::AsyncClient,
    broker: Cow<'static, str>,
    tracer: Option<Tracer>,
}

impl TracedClient {
    /// Wraps `client`, connected to the broker at `broker` (`host:port`, the spans' peer).
    pub fn new(client: rumqttc::AsyncClient, broker: impl Into<Cow<'static, str>>) -> Self {
        TracedClient {
            client,
            broker: broker.into(),
            tracer: None,
        }
    }

    /// Starts entry spans on `tracer` instead of the global one.
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// The client, untraced.
    pub fn into_inner(self) -> rumqttc::AsyncClient {
        self.client
    }

    /// [`rumqttc::AsyncClient::publish`] in an exit span `Mqtt/{topic}/Producer`.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        qos: rumqttc::QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), rumqttc::ClientError> {
        let topic = topic.into();
        let span = producer_span(&topic, self.broker.clone());
        let result = self.client.publish(topic, qos, retain, payload).await;
        if let Err(error) = &result {
            span.record_error(error);
        }
        result
    }

    /// The entry span `Mqtt/{topic}/Consumer` of a received message: it starts a new trace.
    pub fn consumer_span(&self, message: &rumqttc::Publish) -> Span {
        consumer_span(
            self.tracer.as_ref(),
            message.topic.as_bytes(),
            (),
            self.broker.clone(),
        )
    }
}

impl Deref for TracedClient {
    type Target = rumqttc::AsyncClient;

    fn deref(&self) -> &rumqttc::AsyncClient {
        &self.client
    }
}
