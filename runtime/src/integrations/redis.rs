//! redis (redis-rs, async; feature `redis` for redis 1.x, `redis-0-32` for redis 0.32): an exit
//! span per command and per pipeline.
//!
//! [`TracedConnection`] wraps any async connection (`MultiplexedConnection`,
//! `ConnectionManager`, …) and is one itself, so `AsyncCommands`, `cmd(…).query_async` and
//! pipelines work on it unchanged. It is the same type for both lines (it implements the
//! `ConnectionLike` of each enabled line); only the extension trait that adds `.traced(&client)`
//! is the line's own: this module's `RedisConnectionExt` for redis 1.x,
//! `skytrace::integrations::redis_0_32::RedisConnectionExt` for redis 0.32.
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
//! An error reply or a failed connection marks the span as failed and logs the error (an error
//! reply as Redis wrote it: `ERR value is not an integer or out of range`).
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
//!
//! With a redis whose feature is not enabled (redis 0.32 in the crate, only `redis` on
//! skytrace), `TracedConnection::new` does not compile and the error names the features:
//!
//! ```compile_fail
//! use skytrace::integrations::redis::TracedConnection;
//!
//! // Not a redis `Client` of an enabled line: "skytrace's redis integration was not built
//! // for `&str`", with the features to choose from.
//! let _ = TracedConnection::new((), &"redis://cache:6379/");
//! ```

use std::fmt;
use std::sync::Arc;

use crate::component;
use crate::segment::SpanLayer;
use crate::span::Span;

/// How much of a key `cache.key` keeps, in bytes.
const KEY_MAX_LEN: usize = 128;
/// How much of a pipeline's commands `cache.cmd` keeps, in bytes.
const PIPELINE_CMD_MAX_LEN: usize = 256;

/// A redis connection whose commands are exit spans; see the [module documentation](self).
///
/// ```no_run
/// use skytrace::integrations::redis::TracedConnection;
///
/// # async fn demo() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://cache:6379/")?;
/// let conn = client.get_multiplexed_async_connection().await?;
/// let mut conn = TracedConnection::new(conn, &client);
/// let _: () = redis::cmd("PING").query_async(&mut conn).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TracedConnection<C> {
    // Read by the `ConnectionLike` impls of each line (`connection_like!`).
    pub(super) inner: C,
    pub(super) peer: Arc<str>,
}

impl<C> TracedConnection<C> {
    /// Wraps `inner`, a connection made by `client` (a `redis::Client` of an enabled line): the
    /// spans' peer is the client's address.
    ///
    /// ```no_run
    /// use skytrace::integrations::redis::TracedConnection;
    ///
    /// # async fn demo(client: redis::Client) -> redis::RedisResult<()> {
    /// let conn = TracedConnection::new(client.get_multiplexed_async_connection().await?, &client);
    /// assert_eq!(conn.peer(), "cache:6379");
    /// # Ok(()) }
    /// ```
    pub fn new<K: line::Client>(inner: C, client: &K) -> Self {
        Self::with_peer(inner, client.peer())
    }

    /// Wraps `inner`, whose server is at `peer` (`host:port`).
    ///
    /// ```
    /// use skytrace::integrations::redis::TracedConnection;
    ///
    /// # fn demo(conn: redis::aio::MultiplexedConnection) {
    /// let conn = TracedConnection::with_peer(conn, "cache:6379");
    /// # let _ = conn; }
    /// ```
    pub fn with_peer(inner: C, peer: impl Into<String>) -> Self {
        TracedConnection {
            inner,
            peer: Arc::from(peer.into()),
        }
    }

    /// The spans' peer.
    ///
    /// ```
    /// use skytrace::integrations::redis::TracedConnection;
    ///
    /// assert_eq!(TracedConnection::with_peer((), "cache:6379").peer(), "cache:6379");
    /// ```
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The connection, untraced.
    ///
    /// ```
    /// use skytrace::integrations::redis::TracedConnection;
    ///
    /// let mut conn = TracedConnection::with_peer(7, "cache:6379");
    /// assert_eq!(*conn.inner(), 7);
    /// ```
    pub fn inner(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The connection, untraced.
    ///
    /// ```
    /// use skytrace::integrations::redis::TracedConnection;
    ///
    /// assert_eq!(TracedConnection::with_peer(7, "cache:6379").into_inner(), 7);
    /// ```
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

/// `.traced(&client)` for redis 1.x connections: the one-line adoption. (For redis 0.32:
/// `skytrace::integrations::redis_0_32::RedisConnectionExt`.)
///
/// ```no_run
/// use skytrace::integrations::redis::RedisConnectionExt;
///
/// # async fn demo(client: redis::Client) -> redis::RedisResult<()> {
/// let conn = client.get_multiplexed_async_connection().await?.traced(&client);
/// # let _ = conn;
/// # Ok(()) }
/// ```
#[cfg(feature = "redis")]
pub trait RedisConnectionExt: ::redis::aio::ConnectionLike + Sized {
    /// Wraps the connection in a [`TracedConnection`] whose peer is `client`'s address.
    fn traced(self, client: &::redis::Client) -> TracedConnection<Self> {
        TracedConnection::new(self, client)
    }
}

#[cfg(feature = "redis")]
impl<C: ::redis::aio::ConnectionLike> RedisConnectionExt for C {}

/// A pooled connection (anything that dereferences to a connection, as bb8's
/// `PooledConnection`) as a connection of its own, to wrap in a [`TracedConnection`]; see the
/// [module documentation](self).
///
/// ```
/// use skytrace::integrations::redis::{Pooled, TracedConnection};
///
/// // `pooled`: what `bb8_pool.get().await?` returns, say.
/// # fn demo(pooled: Box<redis::aio::MultiplexedConnection>) {
/// let conn = TracedConnection::with_peer(Pooled(pooled), "cache:6379");
/// # let _ = conn; }
/// ```
#[derive(Debug)]
pub struct Pooled<P>(pub P);

/// What [`TracedConnection::new`] needs of a redis line's `Client`: implemented for the
/// `Client` of each enabled line (a module of its own, so that users cannot name it).
pub(super) mod line {
    #[diagnostic::on_unimplemented(
        message = "skytrace's redis integration was not built for `{Self}`",
        label = "not a redis `Client` of a line skytrace's features enable",
        note = "skytrace supports redis 1.x (feature `redis`) and redis 0.32 (feature \
                `redis-0-32`): enable the one your crate's `redis` is"
    )]
    pub trait Client {
        /// The server's `host:port`.
        fn peer(&self) -> String;
    }
}

/// `ConnectionLike` of one redis line (`$redis`, its crate) for [`TracedConnection`] and
/// [`Pooled`], and `line::Client` for its `Client` (`$peer` reads the address). The lines'
/// traits have the same shape; the work is in the functions below, shared.
macro_rules! connection_like {
    ($redis:ident, $peer:expr) => {
        impl $crate::integrations::redis::line::Client for ::$redis::Client {
            fn peer(&self) -> String {
                let peer: fn(&::$redis::Client) -> String = $peer;
                peer(self)
            }
        }

        impl<C> ::$redis::aio::ConnectionLike for $crate::integrations::redis::TracedConnection<C>
        where
            C: ::$redis::aio::ConnectionLike + Send,
        {
            fn req_packed_command<'a>(
                &'a mut self,
                cmd: &'a ::$redis::Cmd,
            ) -> ::$redis::RedisFuture<'a, ::$redis::Value> {
                let span = $crate::integrations::redis::command_span(
                    &self.peer,
                    cmd.args_iter().map(|arg| match arg {
                        ::$redis::Arg::Simple(bytes) => Some(bytes),
                        // A cursor (or an argument kind of a later release).
                        _ => None,
                    }),
                );
                let future = self.inner.req_packed_command(cmd);
                if !span.is_recording() {
                    return future;
                }
                Box::pin(async move {
                    let result = future.await;
                    match &result {
                        Ok(::$redis::Value::ServerError(error)) => {
                            $crate::integrations::redis::record_reply_error(
                                &span,
                                error.code(),
                                error.details(),
                            )
                        }
                        Ok(_) => {}
                        Err(error) => span.record_error(error),
                    }
                    result
                })
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                pipeline: &'a ::$redis::Pipeline,
                offset: usize,
                count: usize,
            ) -> ::$redis::RedisFuture<'a, Vec<::$redis::Value>> {
                let transaction = pipeline.is_transaction();
                let span = $crate::integrations::redis::pipeline_span(
                    &self.peer,
                    transaction,
                    pipeline.cmd_iter().map(|cmd| {
                        cmd.args_iter().map(|arg| match arg {
                            ::$redis::Arg::Simple(bytes) => Some(bytes),
                            _ => None,
                        })
                    }),
                );
                let future = self.inner.req_packed_commands(pipeline, offset, count);
                if !span.is_recording() {
                    return future;
                }
                Box::pin(async move {
                    let result = future.await;
                    match &result {
                        Ok(values) => {
                            // A transaction's replies come as one array, `EXEC`'s: a command
                            // that failed inside it is an error in that array.
                            let error = values.iter().find_map(|value| match value {
                                ::$redis::Value::ServerError(error) => Some(error),
                                ::$redis::Value::Array(replies) if transaction => {
                                    replies.iter().find_map(|reply| match reply {
                                        ::$redis::Value::ServerError(error) => Some(error),
                                        _ => None,
                                    })
                                }
                                _ => None,
                            });
                            if let Some(error) = error {
                                $crate::integrations::redis::record_reply_error(
                                    &span,
                                    error.code(),
                                    error.details(),
                                );
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

        impl<P> ::$redis::aio::ConnectionLike for $crate::integrations::redis::Pooled<P>
        where
            P: ::std::ops::DerefMut + Send,
            P::Target: ::$redis::aio::ConnectionLike,
        {
            fn req_packed_command<'a>(
                &'a mut self,
                cmd: &'a ::$redis::Cmd,
            ) -> ::$redis::RedisFuture<'a, ::$redis::Value> {
                (*self.0).req_packed_command(cmd)
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                pipeline: &'a ::$redis::Pipeline,
                offset: usize,
                count: usize,
            ) -> ::$redis::RedisFuture<'a, Vec<::$redis::Value>> {
                (*self.0).req_packed_commands(pipeline, offset, count)
            }

            fn get_db(&self) -> i64 {
                (*self.0).get_db()
            }
        }
    };
}
#[cfg(feature = "redis-0-32")]
pub(super) use connection_like;

#[cfg(feature = "redis")]
connection_like!(redis, |client: &::redis::Client| client
    .get_connection_info()
    .addr()
    .to_string());

/// Marks `span` as failed with an error reply, written as Redis wrote it (`ERR value is not an
/// integer or out of range`).
pub(super) fn record_reply_error(span: &Span, code: &str, detail: Option<&str>) {
    match detail {
        Some(detail) => span.record_error(&format_args!("{code} {detail}")),
        None => span.record_error(&code),
    }
}

/// A command's name (upper case) and first key, from its arguments (`None`: a cursor).
fn name_and_key<'a>(
    mut args: impl Iterator<Item = Option<&'a [u8]>>,
) -> (String, Option<&'a [u8]>) {
    let name = match args.next() {
        Some(Some(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => String::new(),
    };
    let key = match (op_of(&name), KEYLESS.contains(&name.as_str())) {
        (Some(_), false) => args.next().flatten(),
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

/// The exit span of one command, `args` its arguments (`None`: a cursor); the arguments are
/// read only when the span records.
pub(super) fn command_span<'a>(peer: &str, args: impl Iterator<Item = Option<&'a [u8]>>) -> Span {
    let span = base_span("Redis");
    if span.is_recording() {
        let (name, key) = name_and_key(args);
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

/// The exit span of a pipeline (`MULTI` … `EXEC` when `transaction`), `cmds` its commands'
/// arguments.
pub(super) fn pipeline_span<'a, A>(
    peer: &str,
    transaction: bool,
    cmds: impl Iterator<Item = A>,
) -> Span
where
    A: Iterator<Item = Option<&'a [u8]>>,
{
    let span = base_span("Redis/PIPELINE");
    if span.is_recording() {
        tag_common(&span, peer);
        if transaction {
            span.set_operation_name("Redis/MULTI");
        }
        let mut names = String::new();
        let mut first_key = None;
        let mut op = None;
        for (i, args) in cmds.enumerate() {
            let (name, key) = name_and_key(args);
            if i == 0 {
                first_key = key.map(key_text);
            }
            match (op, op_of(&name)) {
                (_, Some("write")) => op = Some("write"),
                (None, Some(read)) => op = Some(read),
                _ => {}
            }
            if names.len() < PIPELINE_CMD_MAX_LEN {
                if !names.is_empty() {
                    names.push(';');
                }
                names.push_str(&name);
            }
        }
        if let Some(op) = op {
            span.add_tag("cache.op", op);
        }
        if let Some(key) = first_key {
            span.add_tag("cache.key", key);
        }
        span.add_tag("cache.cmd", names);
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

    fn args<'a>(words: &'a [&'a str]) -> impl Iterator<Item = Option<&'a [u8]>> {
        words.iter().map(|w| Some(w.as_bytes()))
    }

    #[test]
    fn commands_are_named_and_classified() {
        let (name, key) = name_and_key(args(&["get", "user:7"]));
        assert_eq!(name, "GET");
        assert_eq!(key, Some(&b"user:7"[..]));
        assert_eq!(op_of(&name), Some("read"));
        let (name, key) = name_and_key(args(&["PING", "x"]));
        assert_eq!((name.as_str(), key), ("PING", None));
        let (_, key) = name_and_key(args(&["SCAN", "0"]));
        assert_eq!(key, None);
        // A cursor argument is no key.
        let (_, key) = name_and_key([Some(&b"HSCAN"[..]), None].into_iter());
        assert_eq!(key, None);
        assert_eq!(key_text(&[b'k'; 300]).len(), KEY_MAX_LEN);
    }
}
