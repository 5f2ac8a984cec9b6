//! Framework integrations, one Cargo feature each. The table lists those this build has (all of
//! them on docs.rs); the README lists every feature and the versions each supports.
//!
//! | feature | what | spans |
//! |---|---|---|
#![cfg_attr(
    any(feature = "axum", feature = "axum-0-7"),
    doc = "| `axum` (axum 0.8), `axum-0-7` (axum 0.7) | [`axum::SkytraceLayer`]: a tower layer for axum routers | entry, `{METHOD}:{route}` |"
)]
#![cfg_attr(
    feature = "tower",
    doc = "| `tower` | [`tower::HttpServerLayer`] (any tower / hyper HTTP server, with a route hook), [`tower::HttpClientLayer`] (hyper-util's client, any tower HTTP client) | entry `{METHOD}:{route}` / exit `{METHOD}:{path}` |"
)]
#![cfg_attr(
    feature = "actix-web",
    doc = "| `actix-web` | [`actix_web::SkytraceMiddleware`] | entry, `{METHOD}:{route}` |"
)]
#![cfg_attr(
    feature = "tonic",
    doc = "| `tonic` | [`tonic::GrpcServerLayer`], [`tonic::GrpcClientLayer`], `MetadataMap` carriers | entry / exit, `/pkg.Service/Method` |"
)]
#![cfg_attr(
    any(feature = "reqwest", feature = "reqwest-0-12"),
    doc = "| `reqwest` (reqwest 0.13), `reqwest-0-12` (reqwest 0.12) | [`reqwest::RequestBuilderExt::send_traced`], [`reqwest::TracedClientExt::execute_traced`] | exit, `{METHOD}:{path}` |"
)]
#![cfg_attr(
    any(feature = "sqlx-postgres", feature = "sqlx-mysql"),
    doc = "| `sqlx` (`sqlx-postgres`, `sqlx-mysql`) | [`sqlx::TracedPool`] (`pool.traced()`), [`sqlx::Traced`] | exit, `PostgreSQL/sqlx/fetch` |"
)]
#![cfg_attr(
    feature = "tokio-postgres",
    doc = "| `tokio-postgres` (`deadpool-postgres`, `bb8-postgres`) | [`tokio_postgres::TracedClient`] (`target.traced(client)`) | exit, `PostgreSQL/tokio-postgres/query` |"
)]
#![cfg_attr(
    feature = "diesel",
    doc = "| `diesel` | [`diesel::instrumentation`] (`set_default_instrumentation`) | exit, `PostgreSQL/diesel/query` |"
)]
#![cfg_attr(
    any(feature = "sea-orm-postgres", feature = "sea-orm-mysql"),
    doc = "| `sea-orm` (`sea-orm-postgres`, `sea-orm-mysql`) | [`sea_orm::TracedConnection`] | exit, `PostgreSQL/sea-orm/query` |"
)]
#![cfg_attr(
    any(feature = "redis", feature = "redis-0-32"),
    doc = "| `redis` (redis 1.x), `redis-0-32` (redis 0.32) | [`redis::TracedConnection`] (`conn.traced(&client)`), [`redis::Pooled`] | exit, `Redis/GET` |"
)]
#![cfg_attr(
    feature = "lapin",
    doc = "| `lapin` | [`lapin::TracedChannel`] (`channel.traced(broker)`) | exit / entry, `RabbitMQ/Topic/{exchange}Queue/{key}/Producer` |"
)]
#![cfg_attr(
    feature = "async-nats",
    doc = "| `async-nats` | [`nats::TracedClient`] (`client.traced(server)`) | exit / entry, `Nats/Pub/{subject}` |"
)]
#![cfg_attr(
    feature = "rumqttc",
    doc = "| `rumqttc` | [`mqtt::v5::TracedClient`] (MQTT 5: `sw8` in user properties), [`mqtt::TracedClient`] (3.1.1: exit spans alone) | exit / entry, `Mqtt/{topic}/Producer` |"
)]
#![cfg_attr(
    feature = "rskafka",
    doc = "| `rskafka` | [`rskafka::TracedPartitionClient`] (`client.traced(brokers)`) | exit / entry, `Kafka/{topic}/Producer`, `Kafka/{topic}/Consumer/{group}` |"
)]
#![cfg_attr(
    feature = "rdkafka",
    doc = "| `rdkafka` | [`rdkafka::TracedFutureProducer`] (`producer.traced(brokers)`), [`rdkafka::ConsumerSpans`] (`message_span(&message)`) | exit / entry, `Kafka/{topic}/Producer`, `Kafka/{topic}/Consumer/{group}` |"
)]
#![cfg_attr(
    feature = "tracing",
    doc = "| `tracing` | [`tracing::SkyWalkingLayer`]: `tracing` spans and events in the current trace, events to the log view | local (exit, entry by field), named after the `tracing` span |"
)]
#![cfg_attr(
    feature = "log",
    doc = "| `log` | [`log::SkyWalkingLogger`]: `log` records to the log view, forwarded to the application's logger | — |"
)]
//!
//! Server integrations continue the caller's trace from `sw8` / `sw8-correlation` / `sw8-x`,
//! run the handler inside the entry span (entered around every poll, so every span the handler
//! opens, on whichever worker thread, is its child), skip requests whose path matches
//! `SW_AGENT_TRACE_IGNORE_PATH`, and use the global tracer ([`crate::init`]) unless given one
//! with `with_tracer`. Client integrations open an exit span as a child of the current span and
//! write `sw8` onto the outgoing request.
//!
//! ## Requests no route matches
//!
//! The axum layer and the actix-web middleware name an entry span after the route template that
//! matched (`GET:/users/{id}`); the generic tower layer after what its route hook returns. A request that no route matches (a 404 from the router, or one
//! the fallback / default service answers) is named by its method alone: `GET`, `POST`, …, so
//! that scanners and typos (`/wp-login.php`, `/users/123/x`) cannot create endpoints without
//! limit in OAP, which stores and analyses every distinct one. Its `url` tag still carries the
//! path. [`Unmatched::Untraced`] leaves such requests untraced instead. Of the official agents,
//! the SkyWalking Go agent's former gin plugin (go2sky) names an unmatched request by its method
//! alone too, as OpenTelemetry's HTTP conventions do; the current ones (Java's Tomcat and Spring
//! MVC plugins, skywalking-go's gin plugin, Python's Flask and Django plugins) name it by its raw
//! path, which is what this avoids. `SW_AGENT_IGNORE_SUFFIX` applies to the path of an unmatched
//! request (a `/favicon.ico` nobody serves stays untraced).
//!
//! OAP's component-libraries list has no framework-specific Rust ids (Rust's range
//! `[11000, 12000)` holds only `Rust = 11000`), so HTTP integrations report
//! [`crate::component::HTTP`] (49) for servers, [`crate::component::HTTP_CLIENT`] (2,
//! `HttpClient`) for the reqwest client and the tower client layer, and the tonic ones
//! [`crate::component::GRPC`] (23). OAP lists no MQTT component: the rumqttc spans report
//! [`crate::component::RUST`] (11000).

#[cfg(feature = "actix-web")]
pub mod actix_web;
#[cfg(any(feature = "axum", feature = "axum-0-7"))]
pub mod axum;
#[cfg(feature = "diesel")]
pub mod diesel;
#[cfg(any(feature = "axum", feature = "axum-0-7", feature = "tower"))]
mod http_entry;
#[cfg(any(feature = "reqwest", feature = "reqwest-0-12", feature = "tower"))]
mod http_exit;
#[cfg(feature = "lapin")]
pub mod lapin;
#[cfg(feature = "log")]
pub mod log;
#[cfg(any(
    feature = "lapin",
    feature = "async-nats",
    feature = "rumqttc",
    feature = "rskafka",
    feature = "rdkafka"
))]
mod mq;
#[cfg(feature = "rumqttc")]
pub mod mqtt;
#[cfg(feature = "async-nats")]
pub mod nats;
#[cfg(feature = "rdkafka")]
pub mod rdkafka;
#[cfg(any(feature = "redis", feature = "redis-0-32"))]
pub mod redis;
#[cfg(feature = "redis-0-32")]
pub mod redis_0_32;
#[cfg(any(feature = "reqwest", feature = "reqwest-0-12"))]
pub mod reqwest;
#[cfg(feature = "rskafka")]
pub mod rskafka;
#[cfg(any(feature = "sea-orm-postgres", feature = "sea-orm-mysql"))]
pub mod sea_orm;
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "tokio-postgres",
    feature = "diesel",
    feature = "sea-orm-postgres",
    feature = "sea-orm-mysql"
))]
mod sql;
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
pub mod sqlx;
#[cfg(feature = "tokio-postgres")]
pub mod tokio_postgres;
#[cfg(feature = "tonic")]
pub mod tonic;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "tracing")]
pub mod tracing;

#[allow(unused_imports)] // used by the HTTP integrations only
pub(crate) use crate::span_future::Traced;
use std::borrow::Cow;

use crate::context::EntryName;
use crate::edit::Edit;
use crate::propagation::Extractor;
use crate::segment::{SpanLayer, SpanRecord, Text};
use crate::span::Span;
use crate::tracer::Tracer;

/// What the HTTP server integrations (the axum layer, the actix-web middleware) do with a
/// request that no route matches; see the [module documentation](self#requests-no-route-matches).
///
/// ```
/// use skytrace::integrations::Unmatched;
///
/// // The default: traced, named by the method alone (`GET`).
/// assert_eq!(Unmatched::default(), Unmatched::Traced);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unmatched {
    /// Traced as any other request, under one operation name per method: the method alone
    /// (`GET`, `POST`, …), never the path. The default.
    #[default]
    Traced,
    /// Not traced at all (no span, no segment, the caller's `sw8` not continued).
    Untraced,
}

/// Which tracer a server integration starts entry spans on.
#[derive(Clone, Debug, Default)]
#[allow(dead_code)] // which variants are built depends on the features
pub(crate) enum TracerSlot {
    /// The one installed by [`crate::init`], looked up per request.
    #[default]
    Global,
    /// A tracer given explicitly (`with_tracer`).
    Explicit(Tracer),
}

#[allow(dead_code)] // which helpers are used depends on the features
impl TracerSlot {
    pub(crate) fn entry(
        &self,
        operation_name: String,
        carrier: &(impl Extractor + ?Sized),
    ) -> Span {
        self.entry_with(Text::from(operation_name).into(), carrier, |_| {})
    }

    /// [`TracerSlot::entry`], with `init` applied to the span's record as it is made.
    pub(crate) fn entry_with(
        &self,
        name: EntryName<'_>,
        carrier: &(impl Extractor + ?Sized),
        init: impl FnOnce(&mut SpanRecord),
    ) -> Span {
        match self {
            TracerSlot::Global => Span::entry_with(name, carrier, init),
            TracerSlot::Explicit(tracer) => tracer.entry_span_with(name, carrier, init),
        }
    }

    pub(crate) fn is_ignored_path(&self, path: &str) -> bool {
        match self {
            TracerSlot::Global => crate::tracer::is_ignored_path(path),
            TracerSlot::Explicit(tracer) => tracer.is_ignored_path(path),
        }
    }

    /// The entry span of an HTTP request: `{METHOD}:{route}` (the method alone when `route` is
    /// `None`: no route matched `path`), layer Http, component http (49), tags `http.method` and
    /// `url`, peer = the client's address when known. `url` and `peer` run only for a span that
    /// records. None for a `path` the ignore rules (`SW_AGENT_TRACE_IGNORE_PATH`) match.
    pub(crate) fn http_entry(
        &self,
        method: &str,
        route: Option<&str>,
        path: &str,
        carrier: &(impl Extractor + ?Sized),
        url: impl FnOnce() -> String,
        peer: impl FnOnce() -> Option<String>,
    ) -> Span {
        // An unmatched request is named by its method alone; the ignore rules
        // (`SW_AGENT_IGNORE_SUFFIX`) still judge its path, as the official agents' would.
        let unmatched_path;
        let name = match route {
            // Kept for the process: a server's routes are few and fixed.
            Some(route) => EntryName {
                path: Some(path),
                ..EntryName::from(crate::intern::endpoint(method, route))
            },
            None => {
                unmatched_path = join([method, ":", path]);
                EntryName {
                    operation: method_text(method),
                    judged_as: Some(&unmatched_path),
                    path: Some(path),
                }
            }
        };
        // Set as the record is made: no lock to take afterwards, and nothing (not even the
        // URL) made for a request that is not traced.
        self.entry_with(name, carrier, |s| {
            s.layer = SpanLayer::Http;
            s.component = crate::component::HTTP;
            s.tags.reserve(3);
            s.tags
                .push((Cow::Borrowed("http.method"), method_text(method)));
            s.tags.push((Cow::Borrowed("url"), Cow::Owned(url())));
            if let Some(peer) = peer() {
                s.peer = Cow::Owned(peer);
            }
        })
    }
}

/// Tags an HTTP span with the response status (5xx marks it as failed) and ends it.
#[allow(dead_code)] // which helpers are used depends on the features
pub(crate) fn end_with_status(span: Span, status: u16) {
    if span.is_recording() {
        // `http.status_code`: what OAP's analysis reads (its `status_code` is a deprecated alias).
        let tag = Edit::Tag(Cow::Borrowed("http.status_code"), status_text(status));
        if status >= 500 {
            span.end_with([tag, Edit::Error(true)]);
        } else {
            span.end_with([tag]);
        }
    }
}

/// An HTTP method as tag text: the standard ones without an allocation.
#[allow(dead_code)] // which helpers are used depends on the features
fn method_text(method: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|m| **m == method) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(method.to_owned()),
    }
}

/// A status code as tag text: the common ones without an allocation.
#[allow(dead_code)] // which helpers are used depends on the features
fn status_text(status: u16) -> Cow<'static, str> {
    let text = match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return Cow::Owned(status.to_string()),
    };
    Cow::Borrowed(text)
}

/// The `url` tag of a server span: scheme, host and path, without the query string (which may
/// carry secrets). `uri` is used as is when it is absolute (HTTP/2); otherwise the `Host`
/// header completes it; without one the tag is the path alone.
#[allow(dead_code)] // which helpers are used depends on the features
pub(crate) fn server_url(uri: &http::Uri, host: Option<&str>, path: &str) -> String {
    // Written into the text the thread's last segment freed (its `url`): one allocation less
    // per request.
    let out = crate::spare_spans::take_text();
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            join_into(out, [scheme, "://", authority.as_str(), path])
        }
        _ => match host {
            Some(host) if !host.is_empty() => join_into(out, ["http://", host, path]),
            _ => join_into(out, [path]),
        },
    }
}

/// Concatenates `parts` with one allocation: per request, `format!`'s machinery costs several
/// times the copying.
#[allow(dead_code)] // which helpers are used depends on the features
pub(crate) fn join<const N: usize>(parts: [&str; N]) -> String {
    join_into(String::new(), parts)
}

/// [`join`] appended to `out`, which grows once at most.
#[allow(dead_code)] // which helpers are used depends on the features
fn join_into<const N: usize>(mut out: String, parts: [&str; N]) -> String {
    out.reserve(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::server_url;

    #[test]
    fn url_tag_drops_the_query() {
        let uri: http::Uri = "/users/7?token=secret".parse().unwrap();
        assert_eq!(
            server_url(&uri, Some("api:8080"), uri.path()),
            "http://api:8080/users/7"
        );
        assert_eq!(server_url(&uri, None, uri.path()), "/users/7");
        let absolute: http::Uri = "https://api/users/7?x=1".parse().unwrap();
        assert_eq!(
            server_url(&absolute, Some("other"), absolute.path()),
            "https://api/users/7"
        );
    }
}
