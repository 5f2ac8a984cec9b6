//! sqlx (features `sqlx`, `sqlx-postgres`, `sqlx-mysql`): an exit span per query, for
//! PostgreSQL and MySQL/MariaDB.
//!
//! Wrap the pool once; everything that takes an executor takes the wrapper, including the
//! outputs of the `query!` macros:
//!
//! ```no_run
//! use skytrace::integrations::sqlx::PoolExt;
//!
//! # async fn demo() -> Result<(), sqlx::Error> {
//! let pool = sqlx::PgPool::connect("postgres://app@db:5432/shop").await?.traced();
//!
//! // Inside a traced request: one exit span per query.
//! let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
//!     .fetch_one(&pool)
//!     .await?;
//!
//! // A transaction: `&mut tx` is the executor, as `&mut *tx` is with plain sqlx.
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE stock SET n = n - 1 WHERE id = $1")
//!     .bind(7_i64)
//!     .execute(&mut tx)
//!     .await?;
//! tx.commit().await?;
//! # let _ = count;
//! # Ok(()) }
//! ```
//!
//! Each span is a child of the current span, named `{db}/sqlx/{execute|fetch}` — the database
//! as the Java agent's JDBC plugin spells it (`PostgreSQL`, `Mysql`), then `execute` for
//! statements run for their effect (sqlx's `execute`, `execute_many`) and `fetch` for queries
//! that read rows (`fetch`, `fetch_one`, `fetch_all`, `fetch_optional`, `fetch_many`): the
//! Rust analogue of the JDBC plugin's `{db}/JDBC/PreparedStatement/executeUpdate` and
//! `…/executeQuery`. `prepare`, `commit` and `rollback` have spans of their own. The SQL text
//! is never part of the name (OAP would see one endpoint per statement). Layer Database,
//! component `PostgreSQL` (22) or `Mysql` (5), peer = the pool's `host:port` (or its socket
//! path), tags `db.type` = `sql`, `db.instance` = the database, `db.statement` = the SQL,
//! cut at [`DEFAULT_STATEMENT_MAX_LEN`] bytes (the Java agent's `sql_body_max_length`;
//! [`TracedPool::with_statement_max_len`] changes it). A failed query marks the span as failed
//! and logs the error; [`sqlx::Error::RowNotFound`] from `fetch_one` is not a database error
//! and does not.
//!
//! Bound parameters are recorded only when asked for, as the Java agent's
//! `trace_sql_parameters`: with `SW_AGENT_SQL_PARAMETERS_MAX_LENGTH` (or
//! [`crate::TraceSettings::sql_parameters_max_length`]) above 0, values bound through this
//! module's [`query`], [`query_as`] and [`query_scalar`] — sqlx's builders of the same names,
//! which also keep each value's `Debug` text — are tagged `db.sql.parameters` = `[7,"Ada"]`,
//! cut at that many bytes. sqlx encodes a value into its wire format the moment it is bound and
//! no public API reads it back, so values bound with sqlx's own builders or the `query!` macros
//! are not recorded (their statement is, as always).
//!
//! ```no_run
//! use skytrace::integrations::sqlx::{self as db, PoolExt};
//!
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! let pool = pool.traced();
//! // With SW_AGENT_SQL_PARAMETERS_MAX_LENGTH=512: db.sql.parameters = [7]
//! let rows = db::query("SELECT * FROM orders WHERE user_id = $1")
//!     .bind(7_i64)
//!     .fetch_all(&pool)
//!     .await?;
//! # let _ = rows;
//! # Ok(()) }
//! ```
//!
//! Outside any trace the query runs as it would on the bare pool: no span, no extra
//! allocation.

mod recorded;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::sqlx::pool::PoolConnection;
use ::sqlx::{Connection, Database, Describe, Either, Error, Execute, Executor, Pool, Transaction};
use futures_core::Stream;

use self::recorded::{BoxFuture, BoxStream, take_pending};
use crate::boundary::cut;
use crate::segment::SpanLayer;
use crate::span::Span;

pub use self::recorded::{Builder, Recorded, query, query_as, query_scalar};

/// How much of the SQL text `db.statement` keeps, in bytes: the Java agent's
/// `plugin.jdbc.sql_body_max_length`.
pub const DEFAULT_STATEMENT_MAX_LEN: usize = 2048;

/// What a span stands for; indexes [`TracedDatabase::OPERATIONS`].
#[derive(Clone, Copy)]
enum Method {
    /// `execute`, `execute_many`: statements run for their effect.
    Execute,
    /// `fetch`, `fetch_many`, `fetch_all`, `fetch_one`, `fetch_optional`: queries read.
    Fetch,
    Prepare,
    Commit,
    Rollback,
}

macro_rules! operations {
    ($db:literal) => {
        [
            concat!($db, "/sqlx/execute"),
            concat!($db, "/sqlx/fetch"),
            concat!($db, "/sqlx/prepare"),
            concat!($db, "/sqlx/commit"),
            concat!($db, "/sqlx/rollback"),
        ]
    };
}

mod sealed {
    pub trait Sealed {}
}

/// A database whose queries skytrace traces: `sqlx::Postgres` (feature `sqlx-postgres`) and
/// `sqlx::MySql` (feature `sqlx-mysql`, MariaDB included).
///
/// ```
/// # #[cfg(feature = "sqlx-postgres")] {
/// use skytrace::integrations::sqlx::TracedDatabase;
/// assert_eq!(<sqlx::Postgres as TracedDatabase>::COMPONENT, 22);
/// # }
/// ```
pub trait TracedDatabase: Database + sealed::Sealed {
    /// The component id OAP draws the database with (see [`crate::component`]).
    const COMPONENT: i32;
    #[doc(hidden)]
    const OPERATIONS: [&'static str; 5];

    /// The span peer and `db.instance` of a connection made with `options`.
    #[doc(hidden)]
    fn target_of(options: &<Self::Connection as Connection>::Options) -> (String, String);
}

#[cfg(feature = "sqlx-postgres")]
impl sealed::Sealed for ::sqlx::Postgres {}

#[cfg(feature = "sqlx-postgres")]
impl TracedDatabase for ::sqlx::Postgres {
    const COMPONENT: i32 = crate::component::POSTGRESQL;
    const OPERATIONS: [&'static str; 5] = operations!("PostgreSQL");

    fn target_of(options: &::sqlx::postgres::PgConnectOptions) -> (String, String) {
        let peer = match options.get_socket() {
            Some(path) => path.display().to_string(),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        // PostgreSQL's default database is the user's name.
        let instance = options.get_database().unwrap_or(options.get_username());
        (peer, instance.to_owned())
    }
}

#[cfg(feature = "sqlx-mysql")]
impl sealed::Sealed for ::sqlx::MySql {}

#[cfg(feature = "sqlx-mysql")]
impl TracedDatabase for ::sqlx::MySql {
    const COMPONENT: i32 = crate::component::MYSQL;
    const OPERATIONS: [&'static str; 5] = operations!("Mysql");

    fn target_of(options: &::sqlx::mysql::MySqlConnectOptions) -> (String, String) {
        let peer = match options.get_socket() {
            Some(path) => path.display().to_string(),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        (peer, options.get_database().unwrap_or("").to_owned())
    }
}

/// Where the queries of a pool or connection go: what their spans are tagged with.
///
/// [`TracedPool`] makes its own; make one for a connection opened without a pool.
///
/// ```no_run
/// use skytrace::integrations::sqlx::{DbTarget, Traced};
/// use sqlx::{ConnectOptions, postgres::PgConnectOptions};
///
/// # async fn demo() -> Result<(), sqlx::Error> {
/// let options: PgConnectOptions = "postgres://app@db:5432/shop".parse()?;
/// let target = DbTarget::new::<sqlx::Postgres>(&options);
/// let mut raw = options.connect().await?;
/// let mut conn = Traced::new(&mut raw, target); // `&mut` a bare connection
/// sqlx::query("SELECT 1").execute(&mut conn).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DbTarget {
    peer: String,
    instance: String,
    component: i32,
    operations: [&'static str; 5],
    statement_max_len: usize,
}

impl DbTarget {
    /// The target of connections made with `options`.
    pub fn new<DB: TracedDatabase>(options: &<DB::Connection as Connection>::Options) -> Self {
        let (peer, instance) = DB::target_of(options);
        DbTarget {
            peer,
            instance,
            component: DB::COMPONENT,
            operations: DB::OPERATIONS,
            statement_max_len: DEFAULT_STATEMENT_MAX_LEN,
        }
    }

    /// The target of `pool`'s connections.
    pub fn of_pool<DB: TracedDatabase>(pool: &Pool<DB>) -> Self {
        Self::new::<DB>(&pool.connect_options())
    }

    /// The span peer: `host:port` or the socket path.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The `db.instance` tag: the database's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Keeps at most `len` bytes of SQL in `db.statement` (cut at a character boundary).
    pub fn with_statement_max_len(mut self, len: usize) -> Self {
        self.statement_max_len = len;
        self
    }

    /// The exit span of one call; a no-op span outside any trace.
    fn start(&self, method: Method, sql: &str) -> Span {
        // Taken whether or not the span records: they belong to this query only.
        let parameters = take_pending();
        let span = Span::exit(self.operations[method as usize], "");
        if span.is_recording() {
            span.set_peer(self.peer.clone());
            span.set_layer(SpanLayer::Database);
            span.set_component(self.component);
            span.add_tag("db.type", "sql");
            span.add_tag("db.instance", self.instance.clone());
            if !sql.is_empty() {
                span.add_tag("db.statement", self.statement(sql));
            }
            if let Some(parameters) = parameters {
                // Kept where the query was built; tagged only as this trace's setting says.
                let max = crate::context::recording_settings(|s| s.sql_parameters_max_length)
                    .unwrap_or(0);
                if max > 0 {
                    span.add_tag("db.sql.parameters", parameters.finish(max));
                }
            }
        }
        span
    }

    /// `sql` as `db.statement` has it: cut at the limit, and then marked `...` as the Java
    /// agent marks it.
    fn statement(&self, sql: &str) -> String {
        let kept = cut(sql, self.statement_max_len);
        if kept.len() == sql.len() {
            return sql.to_owned();
        }
        let mut statement = String::with_capacity(kept.len() + 3);
        statement.push_str(kept);
        statement.push_str("...");
        statement
    }
}

/// Ends `span` when `future` completes, marking it failed on an error. An untraced future is
/// returned as is.
fn traced_future<'e, T: Send + 'e>(
    span: Span,
    future: BoxFuture<'e, Result<T, Error>>,
) -> BoxFuture<'e, Result<T, Error>> {
    if !span.is_recording() {
        return future;
    }
    Box::pin(async move {
        let result = future.await;
        if let Err(error) = &result {
            record(&span, error);
        }
        result
    })
}

/// Ends `span` when `stream` ends or yields an error. An untraced stream is returned as is.
fn traced_stream<'e, T: Send + 'e>(
    span: Span,
    stream: BoxStream<'e, Result<T, Error>>,
) -> BoxStream<'e, Result<T, Error>> {
    if !span.is_recording() {
        return stream;
    }
    Box::pin(SpanStream {
        inner: stream,
        span: Some(span),
    })
}

fn record(span: &Span, error: &Error) {
    if !matches!(error, Error::RowNotFound) {
        span.record_error(error);
    }
}

/// A stream of rows holding its query's span until the last row.
struct SpanStream<'e, T> {
    inner: BoxStream<'e, Result<T, Error>>,
    span: Option<Span>,
}

impl<T> Stream for SpanStream<'_, T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Both fields are `Unpin`.
        let this = self.get_mut();
        let item = this.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(None) => this.span = None,
            Poll::Ready(Some(Err(error))) => {
                if let Some(span) = this.span.take() {
                    record(&span, error);
                }
            }
            _ => {}
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// Forwards every [`Executor`] method to `$inner` (an expression of `$this`), inside a span
/// made from `$target`.
macro_rules! traced_executor_methods {
    ($lt:lifetime, $this:ident, $target:expr, $inner:expr) => {
        fn execute<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxFuture<'e, Result<<Self::Database as Database>::QueryResult, Error>>
        where
            $lt: 'e,
            E: 'q + Execute<'q, Self::Database>,
        {
            let $this = self;
            let span = $target.start(Method::Execute, query.sql());
            traced_future(span, $inner.execute(query))
        }

        fn execute_many<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxStream<'e, Result<<Self::Database as Database>::QueryResult, Error>>
        where
            $lt: 'e,
            E: 'q + Execute<'q, Self::Database>,
        {
            let $this = self;
            let span = $target.start(Method::Execute, query.sql());
            traced_stream(span, $inner.execute_many(query))
        }

        fn fetch<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxStream<'e, Result<<Self::Database as Database>::Row, Error>>
        where
            $lt: 'e,
            E: 'q + Execute<'q, Self::Database>,
        {
            let $this = self;
            let span = $target.start(Method::Fetch, query.sql());
            traced_stream(span, $inner.fetch(query))
        }

        fn fetch_many<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxStream<
            'e,
            Result<
                Either<
                    <Self::Database as Database>::QueryResult,
                    <Self::Database as Database>::Row,
                >,
                Error,
            >,
        >
        where
            $lt: 'e,
            E: 'q + Execute<'q, Self::Database>,
        {
            let $this = self;
            let span = $target.start(Method::Fetch, query.sql());
            traced_stream(span, $inner.fetch_many(query))
        }

        fn fetch_all<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxFuture<'e, Result<Vec<<Self::Database as Database>::Row>, Error>>
        where
            $lt: 'e,
            E: 'q + Execute<'q, Self::Database>,
        {
            let $this = self;
            let span = $target.start(Method::Fetch, query.sql());
            traced_future(span, $inner.fetch_all(query))
        }

        fn fetch_one<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxFuture<'e, Result<<Self::Database as Database>::Row, Error>>
        where
            $lt: 'e,
            E: 'q + Execute<'q, Self::Database>,
        {
            let $this = self;
            let span = $target.start(Method::Fetch, query.sql());
            traced_future(span, $inner.fetch_one(query))
        }

        fn fetch_optional<'e, 'q: 'e, E>(
            self,
            query: E,
        ) -> BoxFuture<'e, Result<Option<<Self::Database as Database>::Row>, Error>>
        where
            $lt: 'e,
            E: 'q + Execute<'q, Self::Database>,
        {
            let $this = self;
            let span = $target.start(Method::Fetch, query.sql());
            traced_future(span, $inner.fetch_optional(query))
        }

        fn prepare_with<'e, 'q: 'e>(
            self,
            sql: &'q str,
            parameters: &'e [<Self::Database as Database>::TypeInfo],
        ) -> BoxFuture<'e, Result<<Self::Database as Database>::Statement<'q>, Error>>
        where
            $lt: 'e,
        {
            let $this = self;
            let span = $target.start(Method::Prepare, sql);
            traced_future(span, $inner.prepare_with(sql, parameters))
        }

        // What the `query!` macros call at compile time: not a query of the running service.
        fn describe<'e, 'q: 'e>(
            self,
            sql: &'q str,
        ) -> BoxFuture<'e, Result<Describe<Self::Database>, Error>>
        where
            $lt: 'e,
        {
            let $this = self;
            $inner.describe(sql)
        }
    };
}

/// A [`sqlx::Pool`] whose queries are exit spans: `&TracedPool` is an [`Executor`]. It
/// dereferences to the pool for everything else (`close`, `size`, …).
///
/// ```no_run
/// use skytrace::integrations::sqlx::TracedPool;
///
/// # async fn demo() -> Result<(), sqlx::Error> {
/// let pool = TracedPool::new(sqlx::MySqlPool::connect("mysql://root@db:3306/shop").await?);
/// let rows = sqlx::query("SELECT id FROM orders").fetch_all(&pool).await?;
/// # let _ = rows;
/// # Ok(()) }
/// ```
pub struct TracedPool<DB: Database> {
    pool: Pool<DB>,
    target: Arc<DbTarget>,
}

impl<DB: TracedDatabase> TracedPool<DB> {
    /// Wraps `pool`; the spans' peer and `db.instance` come from its connect options.
    pub fn new(pool: Pool<DB>) -> Self {
        let target = Arc::new(DbTarget::of_pool(&pool));
        TracedPool { pool, target }
    }

    /// Keeps at most `len` bytes of SQL in `db.statement`.
    pub fn with_statement_max_len(mut self, len: usize) -> Self {
        Arc::make_mut(&mut self.target).statement_max_len = len;
        self
    }

    /// Starts a transaction; `&mut` the result is a traced executor.
    pub async fn begin(&self) -> Result<Traced<Transaction<'static, DB>>, Error> {
        let transaction = self.pool.begin().await?;
        Ok(Traced {
            inner: transaction,
            target: Arc::clone(&self.target),
        })
    }

    /// Takes a connection out of the pool; `&mut` the result is a traced executor.
    pub async fn acquire(&self) -> Result<Traced<PoolConnection<DB>>, Error> {
        let connection = self.pool.acquire().await?;
        Ok(Traced {
            inner: connection,
            target: Arc::clone(&self.target),
        })
    }

    /// What the spans are tagged with.
    pub fn target(&self) -> &DbTarget {
        &self.target
    }

    /// The pool, untraced.
    pub fn inner(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The pool, untraced.
    pub fn into_inner(self) -> Pool<DB> {
        self.pool
    }
}

impl<DB: Database> Clone for TracedPool<DB> {
    fn clone(&self) -> Self {
        TracedPool {
            pool: self.pool.clone(),
            target: Arc::clone(&self.target),
        }
    }
}

impl<DB: Database> Deref for TracedPool<DB> {
    type Target = Pool<DB>;

    fn deref(&self) -> &Pool<DB> {
        &self.pool
    }
}

impl<DB: Database> fmt::Debug for TracedPool<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedPool")
            .field("pool", &self.pool)
            .field("target", &self.target)
            .finish()
    }
}

impl<'p, DB> Executor<'p> for &'p TracedPool<DB>
where
    DB: TracedDatabase,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    traced_executor_methods!('p, this, this.target, (&this.pool));
}

/// `.traced()` for [`sqlx::Pool`]: the one-line adoption.
///
/// ```no_run
/// use skytrace::integrations::sqlx::PoolExt;
///
/// # async fn demo() -> Result<(), sqlx::Error> {
/// let pool = sqlx::PgPool::connect("postgres://app@db:5432/shop").await?.traced();
/// # let _ = pool;
/// # Ok(()) }
/// ```
pub trait PoolExt<DB: TracedDatabase> {
    /// Wraps the pool in a [`TracedPool`].
    fn traced(self) -> TracedPool<DB>;
}

impl<DB: TracedDatabase> PoolExt<DB> for Pool<DB> {
    fn traced(self) -> TracedPool<DB> {
        TracedPool::new(self)
    }
}

/// A connection (a [`Transaction`], a [`PoolConnection`], or `&mut` a bare connection) whose
/// queries are exit spans: `&mut Traced<_>` is an [`Executor`]. It dereferences to the wrapped
/// value.
///
/// ```no_run
/// use skytrace::integrations::sqlx::PoolExt;
///
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// let pool = pool.traced();
/// let mut conn = pool.acquire().await?; // Traced<PoolConnection<Postgres>>
/// sqlx::query("SET search_path TO shop").execute(&mut conn).await?;
/// # Ok(()) }
/// ```
pub struct Traced<C> {
    inner: C,
    target: Arc<DbTarget>,
}

impl<C> Traced<C> {
    /// Wraps `inner`, whose spans are tagged with `target`.
    pub fn new(inner: C, target: DbTarget) -> Self {
        Traced {
            inner,
            target: Arc::new(target),
        }
    }

    /// The wrapped value, untraced.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<'c, DB: TracedDatabase> Traced<Transaction<'c, DB>> {
    /// Commits the transaction, in a `{db}/sqlx/commit` exit span.
    pub async fn commit(self) -> Result<(), Error> {
        let span = self.target.start(Method::Commit, "");
        let result = self.inner.commit().await;
        if let Err(error) = &result {
            record(&span, error);
        }
        result
    }

    /// Rolls the transaction back, in a `{db}/sqlx/rollback` exit span.
    pub async fn rollback(self) -> Result<(), Error> {
        let span = self.target.start(Method::Rollback, "");
        let result = self.inner.rollback().await;
        if let Err(error) = &result {
            record(&span, error);
        }
        result
    }
}

impl<C> Deref for Traced<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.inner
    }
}

impl<C> DerefMut for Traced<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<C: fmt::Debug> fmt::Debug for Traced<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traced")
            .field("inner", &self.inner)
            .field("target", &self.target)
            .finish()
    }
}

impl<'t, C> Executor<'t> for &'t mut Traced<C>
where
    C: DerefMut + Send + fmt::Debug,
    C::Target: Connection,
    <C::Target as Connection>::Database: TracedDatabase,
    for<'c> &'c mut C::Target: Executor<'c, Database = <C::Target as Connection>::Database>,
{
    type Database = <C::Target as Connection>::Database;

    traced_executor_methods!('t, this, this.target, this.inner.deref_mut());
}
