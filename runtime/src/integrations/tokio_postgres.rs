//! tokio-postgres (feature `tokio-postgres`): an exit span per statement. With features
//! `deadpool-postgres` and `bb8-postgres`, connections taken from those pools are traced
//! clients too.
//!
//! tokio-postgres has no hook to observe a query, so [`TracedClient`] wraps the client and
//! offers its query methods under the same names and signatures (`query`, `query_one`,
//! `query_opt`, `query_raw`, `query_typed`, `execute`, `execute_raw`, `prepare`,
//! `prepare_typed`, `batch_execute`, `simple_query`, `transaction`); it dereferences to the
//! wrapped client for everything else (untraced). Where the spans go comes from the
//! [`tokio_postgres::Config`] the connection was made with: a [`PgTarget`].
//!
//! ```no_run
//! use skytrace::integrations::tokio_postgres::PgTarget;
//!
//! # async fn demo() -> Result<(), tokio_postgres::Error> {
//! let config: tokio_postgres::Config = "postgres://app@db:5432/shop".parse()?;
//! let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! let target = PgTarget::new(&config);
//! let mut client = target.traced(client);
//!
//! // Inside a traced request: one exit span per statement.
//! let row = client.query_one("SELECT name FROM users WHERE id = $1", &[&7_i64]).await?;
//! let name: String = row.get(0);
//! let tx = client.transaction().await?;
//! tx.execute("UPDATE stock SET n = n - 1 WHERE id = $1", &[&7_i64]).await?;
//! tx.commit().await?;
//! # let _ = name;
//! # Ok(()) }
//! ```
//!
//! A span is named `PostgreSQL/tokio-postgres/{method}`, the method being `query` (`query`,
//! `query_one`, `query_opt`, `query_raw`, `query_typed`), `execute` (`execute`,
//! `execute_raw`), `prepare` (`prepare`, `prepare_typed`), `batch_execute`, `simple_query`,
//! `commit` or `rollback`: the analogue of the Java agent's
//! `PostgreSQL/JDBC/PreparedStatement/executeQuery`, never the SQL (OAP would see one endpoint
//! per statement). It is a child of the current span with layer Database, component
//! `PostgreSQL` (22), peer = the configured `host:port` (several hosts joined by `,`, as the
//! Java agent joins them), and the tags `db.type` = `sql`, `db.instance` = the database (the
//! user's name when the configuration names none, as PostgreSQL does), `db.statement` = the
//! SQL cut at [`DEFAULT_STATEMENT_MAX_LEN`] bytes ([`PgTarget::with_statement_max_len`]), and,
//! with `SW_AGENT_SQL_PARAMETERS_MAX_LENGTH` (or
//! [`crate::TraceSettings::sql_parameters_max_length`]) above 0, `db.sql.parameters` = the
//! bound values' `Debug` text (`[7,"Ada"]`) cut at that many bytes. A failed statement marks
//! the span as failed and logs the error; `query_one` finding no row, or more than one, is not
//! a database error and does not.
//!
//! A [`tokio_postgres::Statement`] does not keep its SQL: prepare through the traced client
//! ([`TracedClient::prepare`] returns a [`TracedStatement`], which does) for `db.statement` to
//! name the statements run with it. `COPY` (`copy_in`, `copy_out`) is left to the wrapped
//! client: tokio-postgres' binary copy helpers take its sink and stream types as they are.
//!
//! Pools (`deadpool-postgres`, `bb8-postgres` features): wrap the connection taken out.
//!
//! ```no_run
//! # #[cfg(feature = "deadpool-postgres")]
//! # async fn demo(pool: deadpool_postgres::Pool, target: skytrace::integrations::tokio_postgres::PgTarget)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let client = target.traced(pool.get().await?); // TracedClient<deadpool_postgres::Object>
//! let statement = client.prepare_cached("SELECT 1").await?; // keeps its SQL
//! client.query(&statement, &[]).await?;
//! # Ok(()) }
//! ```
//!
//! Outside any trace the statement runs as it would on the bare client: no span, no extra
//! allocation.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tokio_postgres::config::Host;
use ::tokio_postgres::types::{BorrowToSql, ToSql, Type};
use ::tokio_postgres::{
    Client, Config, Error, Row, RowStream, SimpleQueryMessage, Statement, ToStatement, Transaction,
};
use futures_core::Stream;

use super::sql::{Endpoint, ParameterText};
use crate::component;
use crate::span::Span;

pub use super::sql::DEFAULT_STATEMENT_MAX_LEN;

const QUERY: &str = "PostgreSQL/tokio-postgres/query";
const EXECUTE: &str = "PostgreSQL/tokio-postgres/execute";
const PREPARE: &str = "PostgreSQL/tokio-postgres/prepare";
const BATCH_EXECUTE: &str = "PostgreSQL/tokio-postgres/batch_execute";
const SIMPLE_QUERY: &str = "PostgreSQL/tokio-postgres/simple_query";
const COMMIT: &str = "PostgreSQL/tokio-postgres/commit";
const ROLLBACK: &str = "PostgreSQL/tokio-postgres/rollback";

/// Where a client's statements go: the spans' peer and `db.instance`, from the configuration
/// the client connected with. Cheap to clone.
///
/// ```
/// use skytrace::integrations::tokio_postgres::PgTarget;
///
/// let config: tokio_postgres::Config = "postgres://app@db:6432/shop".parse().unwrap();
/// let target = PgTarget::new(&config);
/// assert_eq!((target.peer(), target.instance()), ("db:6432", "shop"));
/// ```
#[derive(Clone, Debug)]
pub struct PgTarget {
    endpoint: Arc<Endpoint>,
}

impl PgTarget {
    /// The target of clients connected with `config`.
    pub fn new(config: &Config) -> PgTarget {
        let instance = config.get_dbname().or(config.get_user()).unwrap_or("");
        PgTarget {
            endpoint: Arc::new(Endpoint::new(
                peer_of(config),
                instance.to_owned(),
                component::POSTGRESQL,
            )),
        }
    }

    /// The spans' peer: `host:port`, several joined by `,`.
    pub fn peer(&self) -> &str {
        &self.endpoint.peer
    }

    /// The `db.instance` tag: the database's name.
    pub fn instance(&self) -> &str {
        &self.endpoint.instance
    }

    /// Keeps at most `len` bytes of SQL in `db.statement` (cut at a character boundary).
    pub fn with_statement_max_len(mut self, len: usize) -> PgTarget {
        Arc::make_mut(&mut self.endpoint).statement_max_len = len;
        self
    }

    /// `client` (a [`Client`], a pooled connection, `&mut` either), traced to this target.
    pub fn traced<C: PgClient>(&self, client: C) -> TracedClient<C> {
        TracedClient {
            inner: client,
            target: self.clone(),
        }
    }

    fn start(&self, operation: &'static str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Span {
        let parameters = (!params.is_empty())
            .then_some(|max| ParameterText::of(params.iter().map(|p| p as &dyn fmt::Debug), max));
        self.endpoint.start(operation, sql, parameters)
    }
}

/// `host:port` of each configured host, as the Java agent writes a peer: joined by `,`.
fn peer_of(config: &Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            #[cfg(unix)]
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        hosts = config
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, addr)| std::net::SocketAddr::new(*addr, port(i)).to_string())
            .collect();
    }
    if hosts.is_empty() {
        return format!("localhost:{}", port(0));
    }
    hosts.join(",")
}

/// Something that holds a tokio-postgres [`Client`]: the client itself, `&mut` one, a boxed
/// one, and (features `deadpool-postgres`, `bb8-postgres`) the pools' connections. Implement
/// it for another pool's connection type to trace that pool's clients.
///
/// ```
/// use skytrace::integrations::tokio_postgres::PgClient;
///
/// struct Pooled(tokio_postgres::Client);
///
/// impl PgClient for Pooled {
///     fn client(&self) -> &tokio_postgres::Client {
///         &self.0
///     }
///     fn client_mut(&mut self) -> &mut tokio_postgres::Client {
///         &mut self.0
///     }
/// }
/// ```
pub trait PgClient: Send + Sync {
    /// The client, to run statements.
    fn client(&self) -> &Client;
    /// The client, to start a transaction.
    fn client_mut(&mut self) -> &mut Client;
}

impl PgClient for Client {
    fn client(&self) -> &Client {
        self
    }
    fn client_mut(&mut self) -> &mut Client {
        self
    }
}

impl<C: PgClient + ?Sized> PgClient for &mut C {
    fn client(&self) -> &Client {
        (**self).client()
    }
    fn client_mut(&mut self) -> &mut Client {
        (**self).client_mut()
    }
}

impl<C: PgClient + ?Sized> PgClient for Box<C> {
    fn client(&self) -> &Client {
        (**self).client()
    }
    fn client_mut(&mut self) -> &mut Client {
        (**self).client_mut()
    }
}

#[cfg(feature = "deadpool-postgres")]
impl PgClient for ::deadpool_postgres::ClientWrapper {
    fn client(&self) -> &Client {
        self
    }
    fn client_mut(&mut self) -> &mut Client {
        self
    }
}

#[cfg(feature = "deadpool-postgres")]
impl PgClient for ::deadpool_postgres::Object {
    fn client(&self) -> &Client {
        self
    }
    fn client_mut(&mut self) -> &mut Client {
        self
    }
}

#[cfg(feature = "bb8-postgres")]
impl<M> PgClient for ::bb8::PooledConnection<'_, M>
where
    M: ::bb8::ManageConnection<Connection = Client>,
{
    fn client(&self) -> &Client {
        self
    }
    fn client_mut(&mut self) -> &mut Client {
        self
    }
}

/// A statement's SQL and what tokio-postgres runs: `str`, `String`, a
/// [`tokio_postgres::Statement`] (whose SQL is not known: no `db.statement`) or a
/// [`TracedStatement`].
pub trait StatementLike: Sync {
    /// What tokio-postgres takes.
    type Statement: ?Sized + ToStatement + Sync;
    /// The statement, for tokio-postgres.
    fn statement(&self) -> &Self::Statement;
    /// The SQL for `db.statement`; empty when not known.
    fn sql(&self) -> &str;
}

impl StatementLike for str {
    type Statement = str;
    fn statement(&self) -> &str {
        self
    }
    fn sql(&self) -> &str {
        self
    }
}

impl StatementLike for String {
    type Statement = String;
    fn statement(&self) -> &String {
        self
    }
    fn sql(&self) -> &str {
        self
    }
}

impl StatementLike for Statement {
    type Statement = Statement;
    fn statement(&self) -> &Statement {
        self
    }
    fn sql(&self) -> &str {
        ""
    }
}

impl StatementLike for TracedStatement {
    type Statement = Statement;
    fn statement(&self) -> &Statement {
        &self.statement
    }
    fn sql(&self) -> &str {
        &self.sql
    }
}

/// A prepared [`Statement`] that remembers its SQL, for the spans of the statements run with
/// it. It dereferences to the statement.
#[derive(Clone)]
pub struct TracedStatement {
    statement: Statement,
    sql: Arc<str>,
}

impl TracedStatement {
    /// `statement`, prepared from `sql`.
    pub fn new(statement: Statement, sql: &str) -> TracedStatement {
        TracedStatement {
            statement,
            sql: Arc::from(sql),
        }
    }

    /// The SQL it was prepared from.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The statement.
    pub fn into_inner(self) -> Statement {
        self.statement
    }
}

impl Deref for TracedStatement {
    type Target = Statement;
    fn deref(&self) -> &Statement {
        &self.statement
    }
}

impl fmt::Debug for TracedStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedStatement")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

/// Ends `span` with `result`, marking it failed on an error of the database or the connection.
fn finish<T>(span: Span, result: Result<T, Error>) -> Result<T, Error> {
    finish_ref(&span, result)
}

/// [`finish`] without ending the span.
fn finish_ref<T>(span: &Span, result: Result<T, Error>) -> Result<T, Error> {
    if let Err(error) = &result {
        fail(span, error);
    }
    result
}

/// Marks `span` failed by `error`, unless the error is no failure (see [`is_failure`]).
fn fail(span: &Span, error: &Error) {
    if span.is_recording() && is_failure(error) {
        span.record_error(&Message(error));
    }
}

/// An error as the span's log says it: tokio-postgres' own text is only its kind (`db
/// error`); the cause (the server's `ERROR: relation "x" does not exist`) follows it.
struct Message<'a>(&'a Error);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::error::Error as _;
        write!(f, "{}", self.0)?;
        match self.0.source() {
            Some(cause) => write!(f, ": {cause}"),
            None => Ok(()),
        }
    }
}

/// Whether `error` fails the span: every error but `query_one` finding no row or several (not
/// a database error, as sqlx's `RowNotFound`). tokio-postgres does not expose its error kinds;
/// this one has no cause and a fixed message.
fn is_failure(error: &Error) -> bool {
    use std::error::Error as _;
    !(error.as_db_error().is_none()
        && error.source().is_none()
        && error.to_string() == "query returned an unexpected number of rows")
}

/// The query methods, the same on a client and a transaction. `$this.$runner()` is what runs
/// them: the [`Client`] or the [`Transaction`].
macro_rules! traced_methods {
    ($runner:ident) => {
        /// [`Client::query`], in a `PostgreSQL/tokio-postgres/query` exit span.
        pub async fn query<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Vec<Row>, Error>
        where
            S: ?Sized + StatementLike,
        {
            let span = self.target.start(QUERY, statement.sql(), params);
            let result = self.$runner().query(statement.statement(), params).await;
            finish(span, result)
        }

        /// [`Client::query_one`], in a `PostgreSQL/tokio-postgres/query` exit span.
        pub async fn query_one<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Row, Error>
        where
            S: ?Sized + StatementLike,
        {
            let span = self.target.start(QUERY, statement.sql(), params);
            let result = self
                .$runner()
                .query_one(statement.statement(), params)
                .await;
            finish(span, result)
        }

        /// [`Client::query_opt`], in a `PostgreSQL/tokio-postgres/query` exit span.
        pub async fn query_opt<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, Error>
        where
            S: ?Sized + StatementLike,
        {
            let span = self.target.start(QUERY, statement.sql(), params);
            let result = self
                .$runner()
                .query_opt(statement.statement(), params)
                .await;
            finish(span, result)
        }

        /// [`Client::query_raw`], in a `PostgreSQL/tokio-postgres/query` exit span that ends
        /// with the stream.
        pub async fn query_raw<S, P, I>(
            &self,
            statement: &S,
            params: I,
        ) -> Result<TracedRowStream, Error>
        where
            S: ?Sized + StatementLike,
            P: BorrowToSql,
            I: IntoIterator<Item = P>,
            I::IntoIter: ExactSizeIterator,
        {
            let span = self.target.endpoint.start_plain(QUERY, statement.sql());
            let result = if span.is_recording() {
                // Kept to be written down first: the iterator can be walked only once.
                let params: Vec<P> = params.into_iter().collect();
                tag_parameters(&span, &params);
                self.$runner()
                    .query_raw(statement.statement(), params)
                    .await
            } else {
                self.$runner()
                    .query_raw(statement.statement(), params)
                    .await
            };
            let rows = finish_stream(span, result)?;
            Ok(rows)
        }

        /// [`Client::query_typed`], in a `PostgreSQL/tokio-postgres/query` exit span.
        pub async fn query_typed(
            &self,
            statement: &str,
            params: &[(&(dyn ToSql + Sync), Type)],
        ) -> Result<Vec<Row>, Error> {
            let values: Vec<&(dyn ToSql + Sync)> = if params.is_empty() {
                Vec::new()
            } else {
                params.iter().map(|(value, _)| *value).collect()
            };
            let span = self.target.start(QUERY, statement, &values);
            let result = self.$runner().query_typed(statement, params).await;
            finish(span, result)
        }

        /// [`Client::execute`], in a `PostgreSQL/tokio-postgres/execute` exit span.
        pub async fn execute<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<u64, Error>
        where
            S: ?Sized + StatementLike,
        {
            let span = self.target.start(EXECUTE, statement.sql(), params);
            let result = self.$runner().execute(statement.statement(), params).await;
            finish(span, result)
        }

        /// [`Client::execute_raw`], in a `PostgreSQL/tokio-postgres/execute` exit span.
        pub async fn execute_raw<S, P, I>(&self, statement: &S, params: I) -> Result<u64, Error>
        where
            S: ?Sized + StatementLike,
            P: BorrowToSql,
            I: IntoIterator<Item = P>,
            I::IntoIter: ExactSizeIterator,
        {
            let span = self.target.endpoint.start_plain(EXECUTE, statement.sql());
            let result = if span.is_recording() {
                let params: Vec<P> = params.into_iter().collect();
                tag_parameters(&span, &params);
                self.$runner()
                    .execute_raw(statement.statement(), params)
                    .await
            } else {
                self.$runner()
                    .execute_raw(statement.statement(), params)
                    .await
            };
            finish(span, result)
        }

        /// [`Client::prepare`], in a `PostgreSQL/tokio-postgres/prepare` exit span; the
        /// statement keeps its SQL for the spans of the statements run with it.
        pub async fn prepare(&self, sql: &str) -> Result<TracedStatement, Error> {
            let span = self.target.endpoint.start_plain(PREPARE, sql);
            let result = self.$runner().prepare(sql).await;
            finish(span, result).map(|statement| TracedStatement::new(statement, sql))
        }

        /// [`Client::prepare_typed`], in a `PostgreSQL/tokio-postgres/prepare` exit span.
        pub async fn prepare_typed(
            &self,
            sql: &str,
            parameter_types: &[Type],
        ) -> Result<TracedStatement, Error> {
            let span = self.target.endpoint.start_plain(PREPARE, sql);
            let result = self.$runner().prepare_typed(sql, parameter_types).await;
            finish(span, result).map(|statement| TracedStatement::new(statement, sql))
        }

        /// [`Client::batch_execute`], in a `PostgreSQL/tokio-postgres/batch_execute` exit span.
        pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
            let span = self.target.endpoint.start_plain(BATCH_EXECUTE, sql);
            let result = self.$runner().batch_execute(sql).await;
            finish(span, result)
        }

        /// [`Client::simple_query`], in a `PostgreSQL/tokio-postgres/simple_query` exit span.
        pub async fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
            let span = self.target.endpoint.start_plain(SIMPLE_QUERY, sql);
            let result = self.$runner().simple_query(sql).await;
            finish(span, result)
        }
    };
}

/// Tags `db.sql.parameters` with `params`' text, if the span's trace keeps parameters.
fn tag_parameters<P: BorrowToSql>(span: &Span, params: &[P]) {
    if params.is_empty() {
        return;
    }
    let max = super::sql::parameters_max_length();
    if max > 0 {
        let values = params.iter().map(|p| p.borrow_to_sql() as &dyn fmt::Debug);
        span.add_tag("db.sql.parameters", ParameterText::of(values, max));
    }
}

/// A [`Client`] (or a pooled connection) whose statements are exit spans; see the
/// [module documentation](self). It dereferences to the wrapped value for everything else.
pub struct TracedClient<C = Client> {
    inner: C,
    target: PgTarget,
}

impl<C: PgClient> TracedClient<C> {
    /// Wraps `client`, whose statements go to `target`.
    pub fn new(client: C, target: &PgTarget) -> TracedClient<C> {
        target.traced(client)
    }

    fn runner(&self) -> &Client {
        self.inner.client()
    }

    traced_methods!(runner);

    /// Starts a transaction ([`Client::transaction`]); its statements, commit and rollback
    /// are exit spans.
    pub async fn transaction(&mut self) -> Result<TracedTransaction<'_>, Error> {
        let transaction = self.inner.client_mut().transaction().await?;
        Ok(TracedTransaction {
            inner: transaction,
            target: self.target.clone(),
        })
    }

    /// Where the statements go.
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// The wrapped value, untraced.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

#[cfg(feature = "deadpool-postgres")]
impl TracedClient<::deadpool_postgres::Object> {
    /// deadpool's statement cache ([`deadpool_postgres::ClientWrapper::prepare_cached`]), in a
    /// `PostgreSQL/tokio-postgres/prepare` exit span; the statement keeps its SQL.
    pub async fn prepare_cached(&self, sql: &str) -> Result<TracedStatement, Error> {
        let span = self.target.endpoint.start_plain(PREPARE, sql);
        let result = self.inner.prepare_cached(sql).await;
        finish(span, result).map(|statement| TracedStatement::new(statement, sql))
    }
}

impl<C> Deref for TracedClient<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.inner
    }
}

impl<C> DerefMut for TracedClient<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<C> fmt::Debug for TracedClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedClient")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A [`Transaction`] whose statements, commit and rollback are exit spans. It dereferences to
/// the transaction for everything else. Dropped without a commit, it rolls back as
/// tokio-postgres does (without a span: nothing waits for the server).
pub struct TracedTransaction<'a> {
    inner: Transaction<'a>,
    target: PgTarget,
}

impl<'a> TracedTransaction<'a> {
    /// Wraps `transaction` (one started with [`Client::build_transaction`], say), whose
    /// statements go to `target`.
    pub fn new(transaction: Transaction<'a>, target: &PgTarget) -> TracedTransaction<'a> {
        TracedTransaction {
            inner: transaction,
            target: target.clone(),
        }
    }

    fn runner(&self) -> &Transaction<'a> {
        &self.inner
    }

    traced_methods!(runner);

    /// Commits, in a `PostgreSQL/tokio-postgres/commit` exit span.
    pub async fn commit(self) -> Result<(), Error> {
        let span = self.target.endpoint.start_plain(COMMIT, "");
        finish(span, self.inner.commit().await)
    }

    /// Rolls back, in a `PostgreSQL/tokio-postgres/rollback` exit span.
    pub async fn rollback(self) -> Result<(), Error> {
        let span = self.target.endpoint.start_plain(ROLLBACK, "");
        finish(span, self.inner.rollback().await)
    }

    /// A nested transaction (a savepoint), traced as this one.
    pub async fn transaction(&mut self) -> Result<TracedTransaction<'_>, Error> {
        let transaction = self.inner.transaction().await?;
        Ok(TracedTransaction {
            inner: transaction,
            target: self.target.clone(),
        })
    }

    /// The transaction, untraced.
    pub fn into_inner(self) -> Transaction<'a> {
        self.inner
    }
}

impl<'a> Deref for TracedTransaction<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.inner
    }
}

impl<'a> DerefMut for TracedTransaction<'a> {
    fn deref_mut(&mut self) -> &mut Transaction<'a> {
        &mut self.inner
    }
}

impl fmt::Debug for TracedTransaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedTransaction")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The stream of [`TracedClient::query_raw`]: rows, holding the query's span until the last
/// one (or an error, or the stream being dropped).
pub struct TracedRowStream {
    // Boxed: `RowStream` is `!Unpin`, and this keeps `TracedRowStream` `Unpin` as a stream of
    // rows is used.
    inner: Pin<Box<RowStream>>,
    span: Option<Span>,
}

fn finish_stream(span: Span, result: Result<RowStream, Error>) -> Result<TracedRowStream, Error> {
    let rows = finish_ref(&span, result)?;
    Ok(TracedRowStream {
        inner: Box::pin(rows),
        span: Some(span),
    })
}

impl TracedRowStream {
    /// [`RowStream::rows_affected`]: known once the stream has ended.
    pub fn rows_affected(&self) -> Option<u64> {
        self.inner.rows_affected()
    }
}

impl Stream for TracedRowStream {
    type Item = Result<Row, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = this.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(None) => this.span = None,
            Poll::Ready(Some(Err(error))) => {
                if let Some(span) = this.span.take() {
                    fail(&span, error);
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

impl fmt::Debug for TracedRowStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedRowStream").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> PgTarget {
        PgTarget::new(&url.parse().unwrap())
    }

    #[test]
    fn peers_and_instances_come_from_the_configuration() {
        let t = target("postgres://root@127.0.0.1/test");
        assert_eq!((t.peer(), t.instance()), ("127.0.0.1:5432", "test"));
        // No database: PostgreSQL's default, the user's name.
        let t = target("postgres://app@db:6432");
        assert_eq!((t.peer(), t.instance()), ("db:6432", "app"));
        let t = target("host=a,b port=5433,5434 user=u dbname=d");
        assert_eq!(t.peer(), "a:5433,b:5434");
        let t = target("host=a,b port=5433 user=u");
        assert_eq!(t.peer(), "a:5433,b:5433");
        let t = target("hostaddr=10.0.0.1 user=u");
        assert_eq!(t.peer(), "10.0.0.1:5432");
        #[cfg(unix)]
        assert_eq!(
            target("host=/run/postgresql user=u").peer(),
            "/run/postgresql/.s.PGSQL.5432"
        );
    }
}
