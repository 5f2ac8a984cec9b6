//! redis 0.32 (feature `redis-0-32`): the [redis integration](super::redis) for the previous
//! redis line, still the one most crates use.
//!
//! The connection wrapper is the same type, [`TracedConnection`] (it implements the
//! `ConnectionLike` of redis 0.32 too), and so is [`Pooled`]; spans, tags and peers are those
//! of redis 1.x, described in the [redis module](super::redis). Only the extension trait that
//! adds `.traced(&client)` is this line's own: import it from here.
//!
//! ```no_run
//! # extern crate redis_0_32 as redis;
//! // In a crate whose `redis` is 0.32, with skytrace's feature `redis-0-32`.
//! use redis::AsyncCommands;
//! use skytrace::integrations::redis_0_32::RedisConnectionExt;
//!
//! # async fn demo() -> redis::RedisResult<()> {
//! let client = redis::Client::open("redis://cache:6379/")?;
//! let mut conn = client.get_multiplexed_async_connection().await?.traced(&client);
//!
//! // Inside a traced request: one exit span per command, `Redis/SET`, `Redis/GET`.
//! let _: () = conn.set("user:7", "Ada").await?;
//! let name: Option<String> = conn.get("user:7").await?;
//! # let _ = name;
//! # Ok(()) }
//! ```
//!
//! deadpool-redis 0.22 and bb8-redis 0.24 (the versions on redis 0.32) work as with redis 1.x:
//! a deadpool connection is a connection, a bb8 one is wrapped in [`Pooled`].

pub use super::redis::{Pooled, TracedConnection};

/// `.traced(&client)` for redis 0.32 connections, as
/// `skytrace::integrations::redis::RedisConnectionExt` is for redis 1.x.
///
/// ```no_run
/// # extern crate redis_0_32 as redis;
/// use skytrace::integrations::redis_0_32::RedisConnectionExt;
///
/// # async fn demo(client: redis::Client) -> redis::RedisResult<()> {
/// let conn = client.get_multiplexed_async_connection().await?.traced(&client);
/// # let _ = conn;
/// # Ok(()) }
/// ```
pub trait RedisConnectionExt: ::redis_0_32::aio::ConnectionLike + Sized {
    /// Wraps the connection in a [`TracedConnection`] whose peer is `client`'s address.
    fn traced(self, client: &::redis_0_32::Client) -> TracedConnection<Self> {
        TracedConnection::new(self, client)
    }
}

impl<C: ::redis_0_32::aio::ConnectionLike> RedisConnectionExt for C {}

// redis 0.32's `ConnectionInfo::addr` is a field (a method in 1.x).
super::redis::connection_like!(redis_0_32, |client: &::redis_0_32::Client| client
    .get_connection_info()
    .addr
    .to_string());
