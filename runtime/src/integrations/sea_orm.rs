//! sea-orm (features `sea-orm`, `sea-orm-postgres`, `sea-orm-mysql`; sea-orm 1.1): an exit
//! span per statement.
//!
//! Wrap the connection once; everything sea-orm runs against a connection takes the wrapper
//! (`Entity::find().all(&db)`, `model.insert(&db)`, `paginate`, `stream`), since it implements
//! sea-orm's `ConnectionTrait` and `StreamTrait`:
//!
//! ```no_run
//! use sea_orm::{ConnectionTrait, Statement};
//! use skytrace::integrations::sea_orm::TracedConnection;
//!
//! # async fn demo() -> Result<(), sea_orm::DbErr> {
//! let db = TracedConnection::new(sea_orm::Database::connect("postgres://app@db:5432/shop").await?);
//!
//! // Inside a traced request: one exit span per statement.
//! db.execute_unprepared("UPDATE stock SET n = n - 1 WHERE id = 7").await?;
//! let tx = db.begin().await?; // a `TracedTransaction`: a connection too
//! tx.execute(Statement::from_string(tx.get_database_backend(), "DELETE FROM carts")).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! Why a wrapper: sea-orm runs its queries on connections it takes from its own sqlx pool, so
//! a traced sqlx pool cannot be handed to it, and its other hooks do not fit. Its metric
//! callback is called after the statement, with its duration but not its error, and not for
//! `execute_unprepared`, streams, commits or rollbacks; a `ProxyDatabaseTrait` would have to
//! turn every row into loose values and back. The wrapper sees each statement before it runs
//! and its result after: the span has the statement's real start and end, the error, and the
//! peer and database of the pool's own connect options (the same as [`super::sqlx`]'s).
//!
//! A span is named `PostgreSQL/sea-orm/{method}` (`Mysql/sea-orm/…` for MySQL and MariaDB),
//! the method being `execute` (`execute`, `execute_unprepared`), `query` (`query_one`,
//! `query_all`), `stream`, `commit` or `rollback`; it has layer Database, component
//! `PostgreSQL` (22) or `Mysql` (5), peer = the pool's `host:port`, and the tags `db.type` =
//! `sql`, `db.instance`, `db.statement` (cut at [`DEFAULT_STATEMENT_MAX_LEN`] bytes) and, with
//! `SW_AGENT_SQL_PARAMETERS_MAX_LENGTH` (or [`crate::TraceSettings::sql_parameters_max_length`])
//! above 0, `db.sql.parameters` = the values as SQL literals (`[7,'Ada']`) cut at that many
//! bytes. A failed statement marks the span as failed and logs the error.
//!
//! Transactions are traced when started from the wrapper ([`TracedConnection::begin`],
//! [`TracedConnection::transaction`]); the wrapper dereferences to the `DatabaseConnection`,
//! whose own methods (`TransactionTrait::begin`, a `SchemaManager`) stay untraced. A mock or
//! SQLite connection is wrapped without spans.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::sea_orm::sea_query::{QueryBuilder, Value};
use ::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, StreamTrait, TransactionError, TransactionTrait,
};
use futures_core::Stream;

use super::sql::{Endpoint, ParameterText};
use crate::span::Span;

pub use super::sql::DEFAULT_STATEMENT_MAX_LEN;

/// What a span stands for; indexes [`Target::names`].
#[derive(Clone, Copy)]
enum Method {
    Execute,
    Query,
    Stream,
    Commit,
    Rollback,
}

#[cfg(feature = "sea-orm-postgres")]
const POSTGRESQL: [&str; 5] = [
    "PostgreSQL/sea-orm/execute",
    "PostgreSQL/sea-orm/query",
    "PostgreSQL/sea-orm/stream",
    "PostgreSQL/sea-orm/commit",
    "PostgreSQL/sea-orm/rollback",
];

#[cfg(feature = "sea-orm-mysql")]
const MYSQL: [&str; 5] = [
    "Mysql/sea-orm/execute",
    "Mysql/sea-orm/query",
    "Mysql/sea-orm/stream",
    "Mysql/sea-orm/commit",
    "Mysql/sea-orm/rollback",
];

/// Where a connection's statements go; `None` inside for a connection that is not traced.
#[derive(Clone)]
struct Target(Option<Arc<(Endpoint, [&'static str; 5])>>);

impl Target {
    fn of(db: &DatabaseConnection) -> Target {
        use super::sqlx::DbTarget;
        let target = match db {
            #[cfg(feature = "sea-orm-postgres")]
            DatabaseConnection::SqlxPostgresPoolConnection(_) => Some((
                DbTarget::of_pool(db.get_postgres_connection_pool())
                    .endpoint()
                    .clone(),
                POSTGRESQL,
            )),
            #[cfg(feature = "sea-orm-mysql")]
            DatabaseConnection::SqlxMySqlPoolConnection(_) => Some((
                DbTarget::of_pool(db.get_mysql_connection_pool())
                    .endpoint()
                    .clone(),
                MYSQL,
            )),
            _ => None,
        };
        Target(target.map(Arc::new))
    }

    fn start(&self, method: Method, statement: &Statement) -> Span {
        let Some(target) = &self.0 else {
            return Span::noop();
        };
        let (endpoint, names) = &**target;
        let parameters = statement
            .values
            .as_ref()
            .filter(|values| !values.0.is_empty())
            .map(|values| {
                move |max| {
                    let builder = statement.db_backend.get_query_builder();
                    let literals = values.0.iter().map(|value| Literal(&*builder, value));
                    let literals: Vec<Literal<'_>> = literals.collect();
                    ParameterText::of(literals.iter().map(|l| l as &dyn fmt::Debug), max)
                }
            });
        endpoint.start(names[method as usize], &statement.sql, parameters)
    }

    fn start_plain(&self, method: Method, sql: &str) -> Span {
        match &self.0 {
            Some(target) => target.0.start_plain(target.1[method as usize], sql),
            None => Span::noop(),
        }
    }
}

/// A value as the SQL literal sea-orm prints it in its debug output (`7`, `'Ada'`, `NULL`).
struct Literal<'a>(&'a dyn QueryBuilder, &'a Value);

impl fmt::Debug for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.value_to_string(self.1))
    }
}

/// Ends `span` with `result`, marking it failed on an error.
fn finish<T>(span: Span, result: Result<T, DbErr>) -> Result<T, DbErr> {
    if let Err(error) = &result {
        span.record_error(error);
    }
    result
}

/// The methods of `ConnectionTrait`, the same on a connection and a transaction.
macro_rules! connection_trait {
    ($ty:ty) => {
        impl ConnectionTrait for $ty {
            fn get_database_backend(&self) -> DbBackend {
                self.inner.get_database_backend()
            }

            fn execute<'a, 'f>(
                &'a self,
                stmt: Statement,
            ) -> Pin<Box<dyn Future<Output = Result<ExecResult, DbErr>> + Send + 'f>>
            where
                'a: 'f,
                Self: 'f,
            {
                Box::pin(async move {
                    let span = self.target.start(Method::Execute, &stmt);
                    finish(span, self.inner.execute(stmt).await)
                })
            }

            fn execute_unprepared<'a, 'b, 'f>(
                &'a self,
                sql: &'b str,
            ) -> Pin<Box<dyn Future<Output = Result<ExecResult, DbErr>> + Send + 'f>>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                Box::pin(async move {
                    let span = self.target.start_plain(Method::Execute, sql);
                    finish(span, self.inner.execute_unprepared(sql).await)
                })
            }

            fn query_one<'a, 'f>(
                &'a self,
                stmt: Statement,
            ) -> Pin<Box<dyn Future<Output = Result<Option<QueryResult>, DbErr>> + Send + 'f>>
            where
                'a: 'f,
                Self: 'f,
            {
                Box::pin(async move {
                    let span = self.target.start(Method::Query, &stmt);
                    finish(span, self.inner.query_one(stmt).await)
                })
            }

            fn query_all<'a, 'f>(
                &'a self,
                stmt: Statement,
            ) -> Pin<Box<dyn Future<Output = Result<Vec<QueryResult>, DbErr>> + Send + 'f>>
            where
                'a: 'f,
                Self: 'f,
            {
                Box::pin(async move {
                    let span = self.target.start(Method::Query, &stmt);
                    finish(span, self.inner.query_all(stmt).await)
                })
            }

            fn support_returning(&self) -> bool {
                self.inner.support_returning()
            }

            fn is_mock_connection(&self) -> bool {
                self.inner.is_mock_connection()
            }
        }

        impl StreamTrait for $ty {
            type Stream<'a> = TracedStream<'a>;

            fn stream<'a>(
                &'a self,
                stmt: Statement,
            ) -> Pin<Box<dyn Future<Output = Result<TracedStream<'a>, DbErr>> + 'a + Send>> {
                Box::pin(async move {
                    let span = self.target.start(Method::Stream, &stmt);
                    match self.inner.stream(stmt).await {
                        Ok(rows) => Ok(TracedStream {
                            inner: Box::pin(rows),
                            span: Some(span),
                        }),
                        Err(error) => Err(finish::<()>(span, Err(error)).unwrap_err()),
                    }
                })
            }
        }
    };
}

/// A sea-orm `DatabaseConnection` whose statements are exit spans; see the
/// [module documentation](self). It dereferences to the connection for everything else.
#[derive(Clone)]
pub struct TracedConnection {
    inner: DatabaseConnection,
    target: Target,
}

impl TracedConnection {
    /// Wraps `db`; the spans' peer and `db.instance` come from its pool's connect options.
    pub fn new(db: DatabaseConnection) -> TracedConnection {
        let target = Target::of(&db);
        TracedConnection { inner: db, target }
    }

    /// Keeps at most `len` bytes of SQL in `db.statement` (cut at a character boundary).
    pub fn with_statement_max_len(mut self, len: usize) -> TracedConnection {
        if let Some(target) = &mut self.target.0 {
            Arc::make_mut(target).0.statement_max_len = len;
        }
        self
    }

    /// The spans' peer (`None` for a connection that is not traced).
    pub fn peer(&self) -> Option<&str> {
        self.target.0.as_ref().map(|t| t.0.peer.as_str())
    }

    /// Starts a transaction; its statements, commit and rollback are exit spans.
    pub async fn begin(&self) -> Result<TracedTransaction, DbErr> {
        Ok(TracedTransaction {
            inner: self.inner.begin().await?,
            target: self.target.clone(),
        })
    }

    /// Runs `callback` in a transaction, committed if it returns `Ok` and rolled back if
    /// not: sea-orm's `TransactionTrait::transaction`, traced.
    pub async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c TracedTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: fmt::Display + fmt::Debug + Send,
    {
        let transaction = self.begin().await.map_err(TransactionError::Connection)?;
        run(transaction, callback).await
    }

    /// The connection, untraced.
    pub fn into_inner(self) -> DatabaseConnection {
        self.inner
    }
}

async fn run<F, T, E>(transaction: TracedTransaction, callback: F) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(
            &'c TracedTransaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: fmt::Display + fmt::Debug + Send,
{
    match callback(&transaction).await {
        Ok(value) => {
            transaction
                .commit()
                .await
                .map_err(TransactionError::Connection)?;
            Ok(value)
        }
        Err(error) => {
            transaction
                .rollback()
                .await
                .map_err(TransactionError::Connection)?;
            Err(TransactionError::Transaction(error))
        }
    }
}

connection_trait!(TracedConnection);

impl Deref for TracedConnection {
    type Target = DatabaseConnection;
    fn deref(&self) -> &DatabaseConnection {
        &self.inner
    }
}

impl fmt::Debug for TracedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedConnection")
            .field("inner", &self.inner)
            .field("peer", &self.peer())
            .finish()
    }
}

/// A sea-orm `DatabaseTransaction` whose statements, commit and rollback are exit spans. It
/// dereferences to the transaction for everything else; dropped without a commit, it rolls
/// back as sea-orm does (without a span).
pub struct TracedTransaction {
    inner: DatabaseTransaction,
    target: Target,
}

impl TracedTransaction {
    /// Commits, in a `{db}/sea-orm/commit` exit span.
    pub async fn commit(self) -> Result<(), DbErr> {
        let span = self.target.start_plain(Method::Commit, "");
        finish(span, self.inner.commit().await)
    }

    /// Rolls back, in a `{db}/sea-orm/rollback` exit span.
    pub async fn rollback(self) -> Result<(), DbErr> {
        let span = self.target.start_plain(Method::Rollback, "");
        finish(span, self.inner.rollback().await)
    }

    /// A nested transaction (a savepoint), traced as this one.
    pub async fn begin(&self) -> Result<TracedTransaction, DbErr> {
        Ok(TracedTransaction {
            inner: self.inner.begin().await?,
            target: self.target.clone(),
        })
    }

    /// [`TracedConnection::transaction`], nested.
    pub async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c TracedTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: fmt::Display + fmt::Debug + Send,
    {
        let transaction = self.begin().await.map_err(TransactionError::Connection)?;
        run(transaction, callback).await
    }
}

connection_trait!(TracedTransaction);

impl Deref for TracedTransaction {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.inner
    }
}

impl fmt::Debug for TracedTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedTransaction")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The rows of [`StreamTrait::stream`], holding the statement's span until the last one (or
/// an error, or the stream being dropped).
pub struct TracedStream<'a> {
    inner: Pin<Box<dyn Stream<Item = Result<QueryResult, DbErr>> + Send + 'a>>,
    span: Option<Span>,
}

impl Stream for TracedStream<'_> {
    type Item = Result<QueryResult, DbErr>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = this.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(None) => this.span = None,
            Poll::Ready(Some(Err(error))) => {
                if let Some(span) = this.span.take() {
                    span.record_error(error);
                }
            }
            _ => {}
        }
        item
    }
}

impl fmt::Debug for TracedStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedStream").finish_non_exhaustive()
    }
}
