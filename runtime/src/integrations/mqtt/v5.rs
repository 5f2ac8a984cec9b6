//! MQTT 5 ([`rumqttc::v5`]): the trace crosses the broker in the PUBLISH packet's user
//! properties. See the [module documentation](super).

use std::borrow::Cow;
use std::ops::Deref;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, ClientError};

use crate::integrations::mq;
use crate::propagation::Extractor;
use crate::span::Span;
use crate::tracer::Tracer;

/// An MQTT 5 client whose publishes are exit spans carrying `sw8` in their user properties, and
/// whose received messages get entry spans continuing the publisher's trace
/// ([`TracedClient::consumer_span`]).
///
/// ```no_run
/// use rumqttc::v5::mqttbytes::QoS;
/// use rumqttc::v5::{AsyncClient, MqttOptions};
/// use skytrace::integrations::mqtt::v5::TracedClient;
///
/// # async fn demo() -> Result<(), rumqttc::v5::ClientError> {
/// let (client, _events) = AsyncClient::new(MqttOptions::new("orders", "mqtt", 1883), 16);
/// let client = TracedClient::new(client, "mqtt:1883");
/// client.publish("orders/7", QoS::AtLeastOnce, false, "order 7").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TracedClient {
    client: AsyncClient,
    broker: Cow<'static, str>,
    tracer: Option<Tracer>,
}

impl TracedClient {
    /// Wraps `client`, connected to the broker at `broker` (`host:port`, the spans' peer).
    pub fn new(client: AsyncClient, broker: impl Into<Cow<'static, str>>) -> Self {
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
    pub fn into_inner(self) -> AsyncClient {
        self.client
    }

    /// [`AsyncClient::publish`] in an exit span `Mqtt/{topic}/Producer`, with the trace's
    /// headers as user properties.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.publish_inner(topic.into(), qos, retain, payload.into(), None)
            .await
    }

    /// [`AsyncClient::publish_with_properties`] in an exit span, the trace's headers added to
    /// `properties.user_properties`.
    pub async fn publish_with_properties(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
        properties: PublishProperties,
    ) -> Result<(), ClientError> {
        self.publish_inner(topic.into(), qos, retain, payload.into(), Some(properties))
            .await
    }

    async fn publish_inner(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Bytes,
        properties: Option<PublishProperties>,
    ) -> Result<(), ClientError> {
        let span = super::producer_span(&topic, self.broker.clone());
        let mut written = mq::Written::default();
        mq::inject_with_send_time(&span, &mut written);
        let properties = if written.0.is_empty() {
            properties
        } else {
            let mut properties = properties.unwrap_or_default();
            for (key, value) in written.0 {
                set(&mut properties.user_properties, key, value);
            }
            Some(properties)
        };
        let result = match properties {
            Some(properties) => {
                self.client
                    .publish_with_properties(topic, qos, retain, payload, properties)
                    .await
            }
            // Untraced, the packet goes out exactly as `AsyncClient::publish` sends it.
            None => self.client.publish(topic, qos, retain, payload).await,
        };
        if let Err(error) = &result {
            span.record_error(error);
        }
        result
    }

    /// The entry span `Mqtt/{topic}/Consumer` of a received message, continuing the trace
    /// whose `sw8` it carries in its user properties (a new trace without one).
    ///
    /// ```no_run
    /// use rumqttc::v5::mqttbytes::v5::Packet;
    /// use rumqttc::v5::{Event, EventLoop};
    /// use skytrace::Instrument;
    /// use skytrace::integrations::mqtt::v5::TracedClient;
    ///
    /// # async fn demo(client: TracedClient, mut events: EventLoop) {
    /// while let Ok(event) = events.poll().await {
    ///     if let Event::Incoming(Packet::Publish(message)) = event {
    ///         async { /* handle `message` */ }.in_span(client.consumer_span(&message)).await;
    ///     }
    /// }
    /// # }
    /// ```
    pub fn consumer_span(&self, message: &Publish) -> Span {
        let properties = message
            .properties
            .as_ref()
            .map_or(&[][..], |p| &p.user_properties[..]);
        super::consumer_span(
            self.tracer.as_ref(),
            &message.topic,
            Received(properties),
            self.broker.clone(),
        )
    }
}

impl Deref for TracedClient {
    type Target = AsyncClient;

    fn deref(&self) -> &AsyncClient {
        &self.client
    }
}

/// Sets user property `key` to `value`, replacing one the application set under the same key:
/// one trace context per message.
fn set(properties: &mut Vec<(String, String)>, key: String, value: String) {
    match properties.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => *v = value,
        None => properties.push((key, value)),
    }
}

/// A received message's user properties, read as headers.
struct Received<'a>(&'a [(String, String)]);

impl Extractor for Received<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
