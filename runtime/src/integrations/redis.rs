//! redis (feature `redis`, redis-rs async): an exit span per command and per pipeline.
//!
//! [`TracedConnection`] wraps any async connection (`MultiplexedConnection`,
//! `ConnectionManager`, …) and is one itself, so `AsyncCommands`, `cmd(…).query_async` and
//! pipelines work on it unchanged:
//!
//! ```no_run
//! use redis::AsyncCommands;
//! use skytrace::integrations::redis::RedisConnectionExt;
//!
//! # async fn demo() -> redis::RedisResult<()> {
//! let client = redis::Client::open("redis://cache:6379/")?;
//! let mut conn = client.get_multiplexed_async_connection().await?.traced(&client);
//!
//! // Inside a traced request: one exit span per command.
//! let _: () = conn.set("user:7", "Ada").await?;
//! let name: Option<String> = conn.get("user:7").await?;
//! # let _ = name;
//! # Ok(()) }
//! ```
//!
//! A command's span is named `Redis/{COMMAND}` (`Redis/GET`), a pipeline's `Redis/PIPELINE`
//! (`Redis/MULTI` when atomic); it is a child of the current span with layer Cache, component
//! `Redis` (7), peer = the client's `host:port`, and the tags `cache.type` = `redis`,
//! `cache.cmd` (the command; a pipeline's commands joined by `;`), `cache.key` (the first key,
//! cut at 128 bytes, as the Java agent's `redis_parameter_max_length`) and `cache.op` = `read`
//! or `write` (a pipeline is `write` if any of its commands writes). Commands that read are
//! told from those that write by Redis's own command table; the Java agent's lists differ
//! in a few places (it counts `LPOP`/`SPOP` as reads), ours follow what the command does.
//! An error reply or a failed connection marks the span as failed and logs the error.
//!
//! Outside any trace the command is sent as it would be on the bare connection.
//!
//! Pools: a deadpool-redis connection is a connection (`pool.get().await?.traced(&client)`);
//! a connection that only dereferences to one, as bb8-redis' `PooledConnection`, is wrapped
//! in [`Pooled`] first. The pool keeps the connection; the wrapper goes with it.
//!
//! ```no_run
//! use skytrace::integrations::redis::{Pooled, TracedConnection};
//!
//! # type PooledConnection = Box<redis::aio::MultiplexedConnection>;
//! // `pooled`: `bb8_pool.get().await?`, say.
//! async fn ping(pooled: PooledConnection) -> redis::RedisResult<()> {
//!     let mut conn = TracedConnection::with_peer(Pooled(pooled), "cache:6379");
//!     redis::cmd("PING").query_async(&mut conn).await
//! }
//! ```

use std::fmt;
use std::ops::DerefMut;
use std::sync::Arc;

use ::redis::aio::ConnectionLike;
use ::redis::{Arg, Client, Cmd, Pipeline, RedisFuture, Value};

use crate::component;
use crate::segment::SpanLayer;
use crate::span::Span;

/// How much of a key `cache.key` keeps, in bytes.
const KEY_MAX_LEN: usize = 128;
/// How much of a pipeline's commands `cache.cmd` keeps, in bytes.
const PIPELINE_CMD_MAX_LEN: usize = 256;

/// A redis connection whose commands are exit spans; see the [module documentation](self).
#[derive(Clone)]
pub struct TracedConnection<C> {
    inner: C,
    peer: Arc<str>,
}

impl<C: ConnectionLike> TracedConnection<C> {
    /// Wraps `inner`, a connection made by `client`: the spans' peer is the client's address.
    pub fn new(inner: C, client: &Client) -> Self {
        Self::with_peer(inner, client.get_connection_info().addr().to_string())
    }

    /// Wraps `inner`, whose server is at `peer` (`host:port`).
    pub fn with_peer(inner: C, peer: impl Into<String>) -> Self {
        TracedConnection {
            inner,
            peer: Arc::from(peer.into()),
        }
    }

    /// The spans' peer.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The connection, untraced.
    pub fn inner(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The connection, untraced.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C> fmt::Debug for TracedConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// `.traced(&client)` for redis connections: the one-line adoption.
///
/// ```no_run
/// use skytrace::integrations::redis::RedisConnectionExt;
///
/// # async fn demo(client: redis::Client) -> redis::RedisResult<()> {
/// let conn = client.get_multiplexed_async_connection().await?.traced(&client);
/// # let _ = conn;
/// # Ok(()) }
/// ```
pub trait RedisConnectionExt: ConnectionLike + Sized {
    /// Wraps the connection in a [`TracedConnection`] whose peer is `client`'s address.
    fn traced(self, client: &Client) -> TracedConnection<Self> {
        TracedConnection::new(self, client)
    }
}

impl<C: ConnectionLike> RedisConnectionExt for C {}

impl<C: ConnectionLike + Send> ConnectionLike for TracedConnection<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let span = command_span(&self.peer, cmd);
        let future = self.inner.req_packed_command(cmd);
        if !span.is_recording() {
            return future;
        }
        Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(value) => record_value(&span, value),
                Err(error) => span.record_error(error),
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let span = pipeline_span(&self.peer, pipeline);
        let future = self.inner.req_packed_commands(pipeline, offset, count);
        if !span.is_recording() {
            return future;
        }
        Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(values) => {
                    if let Some(value) = values.iter().find(|v| is_error(v)) {
                        record_value(&span, value);
                    }
                }
                Err(error) => span.record_error(error),
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// A pooled connection (anything that dereferences to a connection, as bb8's
/// `PooledConnection`) as a connection of its own, to wrap in a [`TracedConnection`]; see the
/// [module documentation](self).
#[derive(Debug)]
pub struct Pooled<P>(pub P);

impl<P> ConnectionLike for Pooled<P>
where
    P: DerefMut + Send,
    P::Target: ConnectionLike,
{
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.deref_mut().req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0
            .deref_mut()
            .req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

fn is_error(value: &Value) -> bool {
    matches!(value, Value::ServerError(_))
}

/// Marks `span` as failed if `value` is an error reply.
fn record_value(span: &Span, value: &Value) {
    if let Value::ServerError(error) = value {
        span.record_error(error);
    }
}

/// A command's name (upper case) and first key.
fn name_and_key(cmd: &Cmd) -> (String, Option<&[u8]>) {
    let mut args = cmd.args_iter();
    let name = match args.next() {
        Some(Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => String::new(),
    };
    let key = match (op_of(&name), KEYLESS.contains(&name.as_str())) {
        (Some(_), false) => match args.next() {
            Some(Arg::Simple(key)) => Some(key),
            _ => None,
        },
        _ => None,
    };
    (name, key)
}

fn key_text(key: &[u8]) -> String {
    let key = &key[..key.len().min(KEY_MAX_LEN)];
    // A cut through a UTF-8 sequence shows as one replacement character.
    String::from_utf8_lossy(key).into_owned()
}

fn base_span(operation: &'static str) -> Span {
    // The peer is set only when recording: no propagation, and no allocation otherwise.
    Span::exit(operation, "")
}

fn tag_common(span: &Span, peer: &str) {
    span.set_peer(peer.to_owned());
    span.set_layer(SpanLayer::Cache);
    span.set_component(component::REDIS);
    span.add_tag("cache.type", "redis");
}

fn command_span(peer: &str, cmd: &Cmd) -> Span {
    let span = base_span("Redis");
    if span.is_recording() {
        let (name, key) = name_and_key(cmd);
        tag_common(&span, peer);
        span.set_operation_name(format!("Redis/{name}"));
        if let Some(op) = op_of(&name) {
            span.add_tag("cache.op", op);
        }
        if let Some(key) = key {
            span.add_tag("cache.key", key_text(key));
        }
        span.add_tag("cache.cmd", name);
    }
    span
}

fn pipeline_span(peer: &str, pipeline: &Pipeline) -> Span {
    let span = base_span("Redis/PIPELINE");
    if span.is_recording() {
        tag_common(&span, peer);
        if pipeline.is_transaction() {
            span.set_operation_name("Redis/MULTI");
        }
        let mut cmds = String::new();
        let mut first_key = None;
        let mut op = None;
        for (i, cmd) in pipeline.cmd_iter().enumerate() {
            let (name, key) = name_and_key(cmd);
            if i == 0 {
                first_key = key.map(key_text);
            }
            match (op, op_of(&name)) {
                (_, Some("write")) => op = Some("write"),
                (None, Some(read)) => op = Some(read),
                _ => {}
            }
            if cmds.len() < PIPELINE_CMD_MAX_LEN {
                if !cmds.is_empty() {
                    cmds.push(';');
                }
                cmds.push_str(&name);
            }
        }
        if let Some(op) = op {
            span.add_tag("cache.op", op);
        }
        if let Some(key) = first_key {
            span.add_tag("cache.key", key);
        }
        span.add_tag("cache.cmd", cmds);
    }
    span
}

/// `read` or `write` for the commands that take a key, `None` for the others.
fn op_of(name: &str) -> Option<&'static str> {
    if READS.contains(&name) {
        Some("read")
    } else if WRITES.contains(&name) {
        Some("write")
    } else {
        None
    }
}

/// Commands classified as reads or writes whose first argument is not a key.
const KEYLESS: &[&str] = &["SCAN", "KEYS", "RANDOMKEY", "BITOP", "XREAD"];

const READS: &[&str] = &[
    "GET",
    "MGET",
    "GETRANGE",
    "STRLEN",
    "EXISTS",
    "TTL",
    "PTTL",
    "TYPE",
    "DUMP",
    "HGET",
    "HMGET",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "HEXISTS",
    "HSTRLEN",
    "HSCAN",
    "LRANGE",
    "LINDEX",
    "LLEN",
    "LPOS",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "SRANDMEMBER",
    "SSCAN",
    "SINTER",
    "SUNION",
    "SDIFF",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANGEBYLEX",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANGEBYLEX",
    "ZRANK",
    "ZREVRANK",
    "ZSCORE",
    "ZMSCORE",
    "ZCARD",
    "ZCOUNT",
    "ZLEXCOUNT",
    "ZSCAN",
    "XRANGE",
    "XREVRANGE",
    "XREAD",
    "XLEN",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "PFCOUNT",
    "GEOPOS",
    "GEODIST",
    "GEOHASH",
    "GEOSEARCH",
    "SCAN",
    "KEYS",
    "RANDOMKEY",
];

const WRITES: &[&str] = &[
    "SET",
    "SETEX",
    "PSETEX",
    "SETNX",
    "SETRANGE",
    "MSET",
    "MSETNX",
    "APPEND",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "DECR",
    "DECRBY",
    "GETSET",
    "GETDEL",
    "GETEX",
    "DEL",
    "UNLINK",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
    "RENAME",
    "RENAMENX",
    "RESTORE",
    "COPY",
    "HSET",
    "HSETNX",
    "HMSET",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "BLPOP",
    "BRPOP",
    "LSET",
    "LINSERT",
    "LREM",
    "LTRIM",
    "LMOVE",
    "BLMOVE",
    "RPOPLPUSH",
    "SADD",
    "SREM",
    "SPOP",
    "SMOVE",
    "SINTERSTORE",
    "SUNIONSTORE",
    "SDIFFSTORE",
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYLEX",
    "ZPOPMIN",
    "ZPOPMAX",
    "BZPOPMIN",
    "BZPOPMAX",
    "ZUNIONSTORE",
    "ZINTERSTORE",
    "XADD",
    "XDEL",
    "XTRIM",
    "XACK",
    "SETBIT",
    "BITOP",
    "PFADD",
    "PFMERGE",
    "GEOADD",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_named_and_classified() {
        let mut cmd = ::redis::cmd("get");
        cmd.arg("user:7");
        let (name, key) = name_and_key(&cmd);
        assert_eq!(name, "GET");
        assert_eq!(key, Some(&b"user:7"[..]));
        assert_eq!(op_of(&name), Some("read"));
        let mut ping = ::redis::cmd("PING");
        let (name, key) = name_and_key(ping.arg("x"));
        assert_eq!((name.as_str(), key), ("PING", None));
        let mut scan = ::redis::cmd("SCAN");
        let (_, key) = name_and_key(scan.arg("0"));
        assert_eq!(key, None);
        assert_eq!(key_text(&[b'k'; 300]).len(), KEY_MAX_LEN);
    }
}
