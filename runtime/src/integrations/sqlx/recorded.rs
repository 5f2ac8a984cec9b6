//! sqlx's query builders with their bound values recorded: `db.sql.parameters`.
//!
//! sqlx encodes a value into the database's wire format the moment it is bound, and no public
//! API reads it back, so an executor only ever sees bytes. The values are therefore written
//! down where they are bound: [`query`], [`query_as`] and [`query_scalar`] are sqlx's functions
//! of the same names whose `bind` also keeps the value's `Debug` text. The text reaches the
//! traced executor through a thread-local slot, filled just before the executor's method is
//! called and emptied right after it returns: the executor makes its span during that call
//! (it returns a future or a stream; no query has run yet), so no other query can see it.
//!
//! Values are kept when [`crate::TraceSettings::sql_parameters_max_length`] is above 0 where
//! the query is built: the trace recording on this thread, or, outside any trace, the global
//! tracer (a query is often built before the future that runs it is put in its span). The span
//! tags them only if its own trace's setting is above 0, cut to that length.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::sqlx::query::{Query, QueryAs, QueryScalar};
use ::sqlx::{Database, Encode, Error, Execute, Executor, FromRow, Type};
use futures_core::Stream;

use crate::integrations::sql::ParameterText;

/// What sqlx's `BoxFuture` and `BoxStream` are (futures-util's aliases), spelled out so that
/// skytrace needs futures-core only.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub(super) type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;

thread_local! {
    /// The parameters of the query being handed to an executor on this thread.
    static PENDING: Cell<Option<ParameterText>> = const { Cell::new(None) };
}

/// The parameters handed over with the query whose executor method is running on this thread
/// (see the module's docs). Taken: a later query cannot see them.
pub(super) fn take_pending() -> Option<ParameterText> {
    PENDING.try_with(Cell::take).ok().flatten()
}

/// Runs `call` (an executor's method) with `parameters` pending, and clears whatever it left:
/// an executor that is not traced takes nothing.
fn hand_over<R>(parameters: Option<ParameterText>, call: impl FnOnce() -> R) -> R {
    let Some(parameters) = parameters else {
        return call();
    };
    /// Empties the slot when `call` returns, and when it unwinds: a panicking executor must
    /// not leave these values for the next query on this thread.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            drop(take_pending());
        }
    }
    let _ = PENDING.try_with(|pending| pending.set(Some(parameters)));
    let _clear = Clear;
    call()
}

/// How many bytes of bound values to keep for a query built here and now (see the module's
/// docs); 0 for none.
fn capture_limit() -> usize {
    let limit = |s: &crate::TraceSettings| s.sql_parameters_max_length;
    crate::context::recording_settings(limit)
        .or_else(|| crate::global::with(|agent| agent.settings.with(|s| limit(&s.source))))
        .unwrap_or(0)
}

mod sealed {
    pub trait Sealed {}
}

/// A sqlx query builder that [`Recorded`] wraps: [`sqlx::query::Query`],
/// [`sqlx::query::QueryAs`] or [`sqlx::query::QueryScalar`].
pub trait Builder<'q>: Sized + Send + sealed::Sealed {
    /// The database the query is for.
    type Database: Database;
    /// What one row becomes: the row itself, an `O: FromRow`, or a scalar.
    type Output: Send;

    #[doc(hidden)]
    fn bind_value<T>(self, value: T) -> Self
    where
        T: 'q + Encode<'q, Self::Database> + Type<Self::Database>;

    #[doc(hidden)]
    fn convert(row: <Self::Database as Database>::Row) -> Result<Self::Output, Error>;
}

impl<'q, DB: Database> sealed::Sealed for Query<'q, DB, DB::Arguments<'q>> {}

impl<'q, DB: Database> Builder<'q> for Query<'q, DB, DB::Arguments<'q>> {
    type Database = DB;
    type Output = DB::Row;

    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }

    fn convert(row: DB::Row) -> Result<DB::Row, Error> {
        Ok(row)
    }
}

impl<'q, DB: Database, O> sealed::Sealed for QueryAs<'q, DB, O, DB::Arguments<'q>> {}

impl<'q, DB, O> Builder<'q> for QueryAs<'q, DB, O, DB::Arguments<'q>>
where
    DB: Database,
    O: Send + Unpin + for<'r> FromRow<'r, DB::Row>,
{
    type Database = DB;
    type Output = O;

    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }

    fn convert(row: DB::Row) -> Result<O, Error> {
        O::from_row(&row)
    }
}

impl<'q, DB: Database, O> sealed::Sealed for QueryScalar<'q, DB, O, DB::Arguments<'q>> {}

impl<'q, DB, O> Builder<'q> for QueryScalar<'q, DB, O, DB::Arguments<'q>>
where
    DB: Database,
    O: Send + Unpin,
    (O,): for<'r> FromRow<'r, DB::Row>,
{
    type Database = DB;
    type Output = O;

    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }

    fn convert(row: DB::Row) -> Result<O, Error> {
        <(O,)>::from_row(&row).map(|(value,)| value)
    }
}

/// [`sqlx::query()`], whose bound values are recorded in `db.sql.parameters` when
/// `SW_AGENT_SQL_PARAMETERS_MAX_LENGTH` is above 0.
///
/// ```no_run
/// use skytrace::integrations::sqlx::{self as db, PoolExt};
///
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// let pool = pool.traced();
/// db::query("UPDATE stock SET n = n - $1 WHERE id = $2")
///     .bind(1_i32)
///     .bind(7_i64)
///     .execute(&pool)
///     .await?; // db.sql.parameters = [1,7]
/// # Ok(()) }
/// ```
pub fn query<'q, DB: Database>(sql: &'q str) -> Recorded<Query<'q, DB, DB::Arguments<'q>>> {
    Recorded::new(::sqlx::query(sql))
}

/// [`sqlx::query_as()`], whose bound values are recorded (see [`query`]).
///
/// ```no_run
/// use skytrace::integrations::sqlx as db;
///
/// # async fn demo(pool: skytrace::integrations::sqlx::TracedPool<sqlx::Postgres>) -> Result<(), sqlx::Error> {
/// let (name,): (String,) = db::query_as("SELECT name FROM users WHERE id = $1")
///     .bind(7_i64)
///     .fetch_one(&pool)
///     .await?;
/// # let _ = name;
/// # Ok(()) }
/// ```
pub fn query_as<'q, DB, O>(sql: &'q str) -> Recorded<QueryAs<'q, DB, O, DB::Arguments<'q>>>
where
    DB: Database,
    O: for<'r> FromRow<'r, DB::Row>,
{
    Recorded::new(::sqlx::query_as(sql))
}

/// [`sqlx::query_scalar()`], whose bound values are recorded (see [`query`]).
///
/// ```no_run
/// use skytrace::integrations::sqlx as db;
///
/// # async fn demo(pool: skytrace::integrations::sqlx::TracedPool<sqlx::MySql>) -> Result<(), sqlx::Error> {
/// let n: i64 = db::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = ?")
///     .bind(7_i64)
///     .fetch_one(&pool)
///     .await?;
/// # let _ = n;
/// # Ok(()) }
/// ```
pub fn query_scalar<'q, DB, O>(sql: &'q str) -> Recorded<QueryScalar<'q, DB, O, DB::Arguments<'q>>>
where
    DB: Database,
    (O,): for<'r> FromRow<'r, DB::Row>,
{
    Recorded::new(::sqlx::query_scalar(sql))
}

/// A sqlx query builder that also keeps the text of the values bound to it, for the traced
/// executor that runs it to record as `db.sql.parameters`. Made by [`query`], [`query_as`],
/// [`query_scalar`], or [`Recorded::new`] from sqlx's own builder before any value is bound.
///
/// Whether values are kept is decided when it is made: when
/// [`crate::TraceSettings::sql_parameters_max_length`] is above 0 for the trace recording on
/// this thread, or outside any trace for the global tracer. Otherwise `bind` is sqlx's alone. Values appear as their `Debug` text (`"Ada"`, `7`, `None`), comma-separated in
/// brackets as the Java and Python agents write them, cut at the configured length.
///
/// Run by any executor, it behaves exactly as the builder it wraps; only the executors of this
/// module ([`super::TracedPool`], [`super::Traced`]) record the values.
#[must_use = "a query does nothing until it is executed"]
pub struct Recorded<Q> {
    query: Q,
    parameters: Option<ParameterText>,
}

impl<Q> Recorded<Q> {
    /// Wraps `query`, a sqlx builder with nothing bound yet.
    pub fn new(query: Q) -> Recorded<Q> {
        let max = capture_limit();
        Recorded {
            query,
            parameters: (max > 0).then(|| ParameterText::new(max)),
        }
    }

    /// The sqlx builder, without the recorded values.
    pub fn into_inner(self) -> Q {
        self.query
    }
}

impl<Q> fmt::Debug for Recorded<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded")
            .field(
                "parameters",
                &self.parameters.as_ref().map(ParameterText::as_str),
            )
            .finish_non_exhaustive()
    }
}

impl<'q, Q: Builder<'q>> Recorded<Q> {
    /// Binds `value`, as sqlx's `bind` does, keeping its `Debug` text when values are recorded.
    pub fn bind<T>(mut self, value: T) -> Self
    where
        T: 'q + Encode<'q, Q::Database> + Type<Q::Database> + fmt::Debug,
    {
        if let Some(parameters) = &mut self.parameters {
            parameters.push(&value);
        }
        self.query = self.query.bind_value(value);
        self
    }
}

impl<'q, Q> Recorded<Q>
where
    Q: Builder<'q> + Execute<'q, <Q as Builder<'q>>::Database> + 'q,
{
    /// Runs the statement for its effect, as sqlx's `execute`. Like sqlx's, the future does
    /// nothing until polled, so its span is a child of the span it is polled in.
    //
    // Not an `async fn`: with `Send` in the signature, proven here for every lifetime, a task
    // that awaits it can be spawned (with an `async fn`, the compiler proves `Send` where the
    // task is spawned, and fails: "implementation of `Builder` is not general enough").
    #[allow(clippy::manual_async_fn)]
    pub fn execute<'e, 'c: 'e, E>(
        self,
        executor: E,
    ) -> impl Future<Output = Result<<Q::Database as Database>::QueryResult, Error>> + Send + 'e
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Q::Database>,
    {
        async move {
            let query = self.query;
            hand_over(self.parameters, move || executor.execute(query)).await
        }
    }

    /// The rows, as a stream, as sqlx's `fetch` (which, unlike the others, starts the query's
    /// span when called).
    pub fn fetch<'e, 'c: 'e, E>(self, executor: E) -> BoxStream<'e, Result<Q::Output, Error>>
    where
        'q: 'e,
        Q::Output: 'e,
        E: 'e + Executor<'c, Database = Q::Database>,
    {
        let query = self.query;
        let rows = hand_over(self.parameters, move || executor.fetch(query));
        Box::pin(Converted::<'e, 'q, Q> {
            rows,
            into: PhantomData,
        })
    }

    /// Every row, as sqlx's `fetch_all`.
    #[allow(clippy::manual_async_fn)] // see `execute`
    pub fn fetch_all<'e, 'c: 'e, E>(
        self,
        executor: E,
    ) -> impl Future<Output = Result<Vec<Q::Output>, Error>> + Send + 'e
    where
        'q: 'e,
        Q::Output: 'e,
        E: 'e + Executor<'c, Database = Q::Database>,
    {
        async move {
            let query = self.query;
            let rows = hand_over(self.parameters, move || executor.fetch_all(query)).await?;
            rows.into_iter().map(Q::convert).collect()
        }
    }

    /// The one row; [`sqlx::Error::RowNotFound`] when there is none, as sqlx's `fetch_one`.
    #[allow(clippy::manual_async_fn)] // see `execute`
    pub fn fetch_one<'e, 'c: 'e, E>(
        self,
        executor: E,
    ) -> impl Future<Output = Result<Q::Output, Error>> + Send + 'e
    where
        'q: 'e,
        Q::Output: 'e,
        E: 'e + Executor<'c, Database = Q::Database>,
    {
        async move {
            let query = self.query;
            Q::convert(hand_over(self.parameters, move || executor.fetch_one(query)).await?)
        }
    }

    /// The first row if there is one, as sqlx's `fetch_optional`.
    #[allow(clippy::manual_async_fn)] // see `execute`
    pub fn fetch_optional<'e, 'c: 'e, E>(
        self,
        executor: E,
    ) -> impl Future<Output = Result<Option<Q::Output>, Error>> + Send + 'e
    where
        'q: 'e,
        Q::Output: 'e,
        E: 'e + Executor<'c, Database = Q::Database>,
    {
        async move {
            let query = self.query;
            let row = hand_over(self.parameters, move || executor.fetch_optional(query)).await?;
            row.map(Q::convert).transpose()
        }
    }
}

/// Rows turned into a builder's output as they arrive.
struct Converted<'e, 'q, Q: Builder<'q>> {
    rows: BoxStream<'e, Result<<Q::Database as Database>::Row, Error>>,
    into: PhantomData<fn() -> Q>,
}

impl<'q, Q: Builder<'q>> Stream for Converted<'_, 'q, Q> {
    type Item = Result<Q::Output, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Both fields are `Unpin`.
        let this = self.get_mut();
        this.rows
            .as_mut()
            .poll_next(cx)
            .map(|row| row.map(|row| row.and_then(Q::convert)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::{ParameterText, hand_over, take_pending};

    #[test]
    fn nothing_is_left_pending_after_the_executor_returns_or_panics() {
        let kept = || {
            let mut text = ParameterText::new(8);
            text.push(&1);
            Some(text)
        };
        let seen = hand_over(kept(), || take_pending().map(|p| p.finish(8)));
        assert_eq!(seen.as_deref(), Some("[1]"));
        hand_over(kept(), || {}); // an executor that does not take them
        assert!(take_pending().is_none());
        let unwound = std::panic::catch_unwind(|| hand_over(kept(), || panic!("executor")));
        assert!(unwound.is_err());
        assert!(take_pending().is_none());
    }
}
