//! NATS through async-nats (feature `async-nats`): an exit span per published message, an entry
//! span per received one, and one trace across the server.
//!
//! [`TracedClient`] wraps an [`async_nats::Client`]: its `publish`, `publish_with_headers` and
//! `subscribe` have async-nats's signatures, and everything else is the client's own (it
//! dereferences to it).
//!
//! ```no_run
//! use futures_core::Stream;
//! use skytrace::Instrument;
//! use skytrace::integrations::nats::NatsClientExt;
//!
//! # async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
//! #     std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
//! # }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats:4222").await?.traced("nats:4222");
//!
//! // Subscriber: each message comes with the entry span that continues the publisher's trace.
//! let mut orders = client.subscribe("orders").await?;
//!
//! // Publisher, inside a traced request: the message carries `sw8` in its headers.
//! client.publish("orders", "order 7".into()).await?;
//!
//! while let Some((message, span)) = next(&mut orders).await {
//!     async {
//!         // … handle the message: spans made here are children of the entry span …
//!         let _ = message.payload;
//!     }
//!     .in_span(span)
//!     .await;
//! }
//! # Ok(()) }
//! ```
//!
//! As the Java agent's NATS plugin: the publisher's exit span is named `Nats/Pub/{subject}`,
//! the subscriber's entry span `Nats/Sub/{subject}`; both have layer MQ, component `NATS`
//! (132), peer and tag `mq.broker` = the server address given to [`TracedClient::new`], tag
//! `mq.queue` = the subject, and `reply_to` when the message has one. The published message
//! gets `sw8` (and `sw8-correlation`) headers and `sw8-x` with the send time; the subscriber
//! tags `transmission.latency` (ms) from it. A failed publish marks the exit span as failed.
//!
//! Entry spans go to the global tracer ([`crate::init`]), or to the one given with
//! [`TracedClient::with_tracer`]. Outside any trace a message is published unchanged (no
//! headers are added). Requests (`request`, `send_request`) and JetStream reach the wrapped
//! client through `Deref` and are not traced.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::async_nats::subject::ToSubject;
use ::async_nats::{Client, HeaderMap, Message, PublishError, SubscribeError, Subscriber};
use bytes::Bytes;
use futures_core::Stream;

use super::mq;
use crate::component;
use crate::propagation::{Extractor, Injector};
use crate::span::Span;
use crate::tracer::Tracer;

/// An async-nats client whose publishes are exit spans and whose subscriptions yield entry
/// spans; see the [module documentation](self).
#[derive(Clone)]
pub struct TracedClient {
    client: Client,
    server: Cow<'static, str>,
    tracer: Option<Tracer>,
}

impl TracedClient {
    /// Wraps `client`, connected to the server at `server` (`host:port`, the spans' peer). A
    /// `&'static str` costs nothing per message; a `String` is copied into each exit span.
    pub fn new(client: Client, server: impl Into<Cow<'static, str>>) -> Self {
        TracedClient {
            client,
            server: server.into(),
            tracer: None,
        }
    }

    /// Starts subscribers' entry spans on `tracer` instead of the global one.
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// The client, untraced.
    pub fn inner(&self) -> &Client {
        &self.client
    }

    /// The client, untraced.
    pub fn into_inner(self) -> Client {
        self.client
    }

    /// [`Client::publish`] in an exit span that writes the trace's headers into the message.
    pub async fn publish<S: ToSubject>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        self.publish_with_headers(subject, HeaderMap::new(), payload)
            .await
    }

    /// [`Client::publish_with_headers`] in an exit span that adds the trace's headers to
    /// `headers`.
    pub async fn publish_with_headers<S: ToSubject>(
        &self,
        subject: S,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        let subject = subject.to_subject();
        let span = mq::producer_span(
            || super::join(["Nats/Pub/", subject.as_str()]),
            self.server.clone(),
            |span| {
                span.set_component(component::NATS);
                span.add_tag("mq.queue", subject.as_str().to_owned());
            },
        );
        let traced = mq::inject_with_send_time(&span, &mut Headers(&mut headers));
        let result = if traced || !headers.is_empty() {
            self.client
                .publish_with_headers(subject, headers, payload)
                .await
        } else {
            // Without headers the message goes out as a plain `PUB`, exactly as untraced.
            self.client.publish(subject, payload).await
        };
        if let Err(error) = &result {
            span.record_error(error);
        }
        result
    }

    /// [`Client::subscribe`], whose subscriber yields each message with its entry span.
    pub async fn subscribe<S: ToSubject>(
        &self,
        subject: S,
    ) -> Result<TracedSubscriber, SubscribeError> {
        let subscriber = self.client.subscribe(subject).await?;
        Ok(TracedSubscriber {
            subscriber,
            client: self.clone(),
        })
    }

    /// The entry span of `message`, continuing the trace its publisher sent (for messages not
    /// read through [`TracedClient::subscribe`]).
    pub fn message_span(&self, message: &Message) -> Span {
        let subject = message.subject.as_str();
        let empty = HeaderMap::new();
        let headers = message.headers.as_ref().unwrap_or(&empty);
        mq::consumer_span(
            self.tracer.as_ref(),
            super::join(["Nats/Sub/", subject]),
            Headers(headers),
            component::NATS,
            self.server.clone(),
            |span| {
                span.add_tag("mq.queue", subject.to_owned());
                if let Some(reply) = &message.reply {
                    span.add_tag("reply_to", reply.as_str().to_owned());
                }
            },
        )
    }
}

impl Deref for TracedClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl fmt::Debug for TracedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// `.traced(server)` for [`async_nats::Client`]: the one-line adoption.
///
/// ```no_run
/// use skytrace::integrations::nats::NatsClientExt;
///
/// # async fn demo() -> Result<(), async_nats::ConnectError> {
/// let client = async_nats::connect("nats:4222").await?.traced("nats:4222");
/// # let _ = client;
/// # Ok(()) }
/// ```
pub trait NatsClientExt {
    /// Wraps the client in a [`TracedClient`] for the server at `server` (`host:port`).
    fn traced(self, server: impl Into<Cow<'static, str>>) -> TracedClient;
}

impl NatsClientExt for Client {
    fn traced(self, server: impl Into<Cow<'static, str>>) -> TracedClient {
        TracedClient::new(self, server)
    }
}

/// A [`Subscriber`] yielding each message with the entry span that continues its publisher's
/// trace. Run the handling inside the span ([`crate::Instrument::in_span`]).
pub struct TracedSubscriber {
    subscriber: Subscriber,
    client: TracedClient,
}

impl TracedSubscriber {
    /// The subscriber, untraced.
    pub fn into_inner(self) -> Subscriber {
        self.subscriber
    }
}

impl Stream for TracedSubscriber {
    type Item = (Message, Span);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // `Subscriber` is `Unpin`.
        let this = self.get_mut();
        Pin::new(&mut this.subscriber).poll_next(cx).map(|item| {
            item.map(|message| {
                let span = this.client.message_span(&message);
                (message, span)
            })
        })
    }
}

impl fmt::Debug for TracedSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedSubscriber")
            .field("subscriber", &self.subscriber)
            .finish_non_exhaustive()
    }
}

/// NATS headers as a carrier (a newtype: `HeaderMap` is another crate's, like `Extractor`).
struct Headers<T>(T);

impl Injector for Headers<&mut HeaderMap> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

impl Extractor for Headers<&HeaderMap> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }
}
