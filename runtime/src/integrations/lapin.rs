//! RabbitMQ through lapin (feature `lapin`): an exit span per published message, an entry span
//! per consumed one, and one trace across the broker.
//!
//! [`TracedChannel`] wraps a [`lapin::Channel`]: its `basic_publish` and `basic_consume` have
//! lapin's signatures, and everything else is the channel's own (it dereferences to it).
//!
//! ```no_run
//! use futures_core::Stream;
//! use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
//! use lapin::types::FieldTable;
//! use lapin::{BasicProperties, Connection, ConnectionProperties};
//! use skytrace::Instrument;
//! use skytrace::integrations::lapin::ChannelExt;
//!
//! # async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
//! #     std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
//! # }
//! # async fn demo() -> lapin::Result<()> {
//! let connection =
//!     Connection::connect("amqp://mq:5672/%2f", ConnectionProperties::default()).await?;
//! let channel = connection.create_channel().await?.traced("mq:5672");
//!
//! // Producer, inside a traced request: the message carries `sw8` in its headers.
//! channel
//!     .basic_publish(
//!         "".into(),
//!         "orders".into(),
//!         BasicPublishOptions::default(),
//!         b"order 7",
//!         BasicProperties::default(),
//!     )
//!     .await?;
//!
//! // Consumer: each delivery comes with the entry span that continues the producer's trace.
//! let mut consumer = channel
//!     .basic_consume(
//!         "orders".into(),
//!         "worker".into(),
//!         BasicConsumeOptions::default(),
//!         FieldTable::default(),
//!     )
//!     .await?;
//! while let Some(delivery) = next(&mut consumer).await {
//!     let (delivery, span) = delivery?;
//!     async {
//!         // … handle the order: spans made here are children of the entry span …
//!         delivery.ack(BasicAckOptions::default()).await
//!     }
//!     .in_span(span)
//!     .await?;
//! }
//! # Ok(()) }
//! ```
//!
//! As the Java agent's RabbitMQ plugin: the producer's exit span is named
//! `RabbitMQ/Topic/{exchange}Queue/{routing key}/Producer`, the consumer's entry span
//! `RabbitMQ/Topic/{exchange}Queue/{routing key}/Consumer`; both have layer MQ, peer and tag
//! `mq.broker` = the broker address given to [`TracedChannel::new`], and tags `mq.topic` =
//! the exchange and `mq.queue` = the routing key; component `rabbitmq-producer` (52) and
//! `rabbitmq-consumer` (53). The published message gets `sw8` (and `sw8-correlation`) as
//! long-string headers, next to the message's own, and `sw8-x` with the send time; the
//! consumer tags `transmission.latency` (ms) from it. A failed publish marks the exit span as
//! failed. The exit span ends when the message has been handed to the broker (not at its
//! publisher confirm).
//!
//! Consumer entry spans go to the global tracer ([`crate::init`]), or to the one given with
//! [`TracedChannel::with_tracer`]. Outside any trace a message is published unchanged.
//! `basic_get` and consumer delegates reach the wrapped channel through `Deref` and are not
//! traced; [`TracedChannel::delivery_span`] makes the entry span of such a delivery.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use ::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use ::lapin::{BasicProperties, Channel, Consumer, PublisherConfirm, message::Delivery};
use futures_core::Stream;

use super::mq;
use crate::component;
use crate::propagation::{Extractor, Injector};
use crate::span::Span;
use crate::tracer::Tracer;

/// A lapin channel whose publishes are exit spans and whose deliveries come with entry spans;
/// see the [module documentation](self).
#[derive(Clone)]
pub struct TracedChannel {
    channel: Channel,
    broker: Cow<'static, str>,
    tracer: Option<Tracer>,
}

impl TracedChannel {
    /// Wraps `channel`, a channel to the broker at `broker` (`host:port`, the spans' peer). A
    /// `&'static str` costs nothing per message; a `String` is copied into each exit span.
    pub fn new(channel: Channel, broker: impl Into<Cow<'static, str>>) -> Self {
        TracedChannel {
            channel,
            broker: broker.into(),
            tracer: None,
        }
    }

    /// Starts consumers' entry spans on `tracer` instead of the global one.
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// The channel, untraced.
    pub fn inner(&self) -> &Channel {
        &self.channel
    }

    /// The channel, untraced.
    pub fn into_inner(self) -> Channel {
        self.channel
    }

    /// [`Channel::basic_publish`] in an exit span that writes the trace's headers into the
    /// message's.
    pub async fn basic_publish(
        &self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &[u8],
        mut properties: BasicProperties,
    ) -> ::lapin::Result<PublisherConfirm> {
        let span = mq::producer_span(
            || operation_name(exchange.as_str(), routing_key.as_str(), "/Producer"),
            self.broker.clone(),
            |span| {
                span.set_component(component::RABBITMQ_PRODUCER);
                span.add_tag("mq.topic", exchange.as_str().to_owned());
                span.add_tag("mq.queue", routing_key.as_str().to_owned());
            },
        );
        // Written aside first: the message's own headers are copied only when traced.
        let mut written = mq::Written::default();
        if mq::inject_with_send_time(&span, &mut written) {
            let mut headers = properties.headers().clone().unwrap_or_default();
            for (key, value) in written.0 {
                Headers(&mut headers).set(&key, value);
            }
            properties = properties.with_headers(headers);
        }
        let result = self
            .channel
            .basic_publish(exchange, routing_key, options, payload, properties)
            .await;
        if let Err(error) = &result {
            span.record_error(error);
        }
        result
    }

    /// [`Channel::basic_consume`], whose consumer yields each delivery with its entry span.
    pub async fn basic_consume(
        &self,
        queue: ShortString,
        consumer_tag: ShortString,
        options: BasicConsumeOptions,
        arguments: FieldTable,
    ) -> ::lapin::Result<TracedConsumer> {
        let consumer = self
            .channel
            .basic_consume(queue, consumer_tag, options, arguments)
            .await?;
        Ok(TracedConsumer {
            consumer,
            channel: self.clone(),
        })
    }

    /// The entry span of `delivery`, continuing the trace its producer sent (for deliveries
    /// not read through [`TracedChannel::basic_consume`], e.g. from a consumer delegate).
    pub fn delivery_span(&self, delivery: &Delivery) -> Span {
        let exchange = delivery.exchange.as_str();
        let routing_key = delivery.routing_key.as_str();
        let empty = FieldTable::default();
        let headers = delivery.properties.headers().as_ref().unwrap_or(&empty);
        mq::consumer_span(
            self.tracer.as_ref(),
            operation_name(exchange, routing_key, "/Consumer"),
            headers,
            component::RABBITMQ_CONSUMER,
            self.broker.clone(),
            |span| {
                span.add_tag("mq.topic", exchange.to_owned());
                span.add_tag("mq.queue", routing_key.to_owned());
            },
        )
    }
}

impl Deref for TracedChannel {
    type Target = Channel;

    fn deref(&self) -> &Channel {
        &self.channel
    }
}

impl fmt::Debug for TracedChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedChannel")
            .field("channel", &self.channel)
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

/// `.traced(broker)` for [`lapin::Channel`]: the one-line adoption.
///
/// ```no_run
/// use skytrace::integrations::lapin::ChannelExt;
///
/// # async fn demo(connection: lapin::Connection) -> lapin::Result<()> {
/// let channel = connection.create_channel().await?.traced("mq:5672");
/// # let _ = channel;
/// # Ok(()) }
/// ```
pub trait ChannelExt {
    /// Wraps the channel in a [`TracedChannel`] to the broker at `broker` (`host:port`).
    fn traced(self, broker: impl Into<Cow<'static, str>>) -> TracedChannel;
}

impl ChannelExt for Channel {
    fn traced(self, broker: impl Into<Cow<'static, str>>) -> TracedChannel {
        TracedChannel::new(self, broker)
    }
}

/// A [`lapin::Consumer`] yielding each delivery with the entry span that continues its
/// producer's trace. Run the handling inside the span ([`crate::Instrument::in_span`]).
pub struct TracedConsumer {
    consumer: Consumer,
    channel: TracedChannel,
}

impl TracedConsumer {
    /// The consumer, untraced.
    pub fn into_inner(self) -> Consumer {
        self.consumer
    }
}

impl Stream for TracedConsumer {
    type Item = ::lapin::Result<(Delivery, Span)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // `Consumer` is `Unpin`.
        let this = self.get_mut();
        Pin::new(&mut this.consumer).poll_next(cx).map(|item| {
            item.map(|delivery| {
                delivery.map(|delivery| {
                    let span = this.channel.delivery_span(&delivery);
                    (delivery, span)
                })
            })
        })
    }
}

impl fmt::Debug for TracedConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedConsumer")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// The Java agent's name: `RabbitMQ/Topic/{exchange}Queue/{routing key}{suffix}` (no slash
/// before `Queue`, as there).
fn operation_name(exchange: &str, routing_key: &str, suffix: &str) -> String {
    super::join(["RabbitMQ/Topic/", exchange, "Queue/", routing_key, suffix])
}

/// Message headers as a carrier: values written as long strings (what the Java client sends
/// for a `String` header), read from long or short strings.
struct Headers<'a>(&'a mut FieldTable);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
}

impl Extractor for FieldTable {
    fn get(&self, key: &str) -> Option<&str> {
        match self.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }
}
