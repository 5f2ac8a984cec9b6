//! The outputs of sqlx's compile-time-checked macros (`query!`, `query_as!`, `query_scalar!`)
//! run by the traced pool and a traced transaction, against the real PostgreSQL on
//! 127.0.0.1:5432 (`scripts/ensure-services`), reporting over gRPC to an in-process collector.
//!
//! The macros check each statement at compile time. They read the query data kept in
//! `tests/.sqlx` (`tests/.env` sets `SQLX_OFFLINE=true`), so building this needs no database;
//! `scripts/sqlx-prepare` writes that data again after a statement here changes. The
//! statements need no table, so the data does not depend on any schema.

use futures_util::TryStreamExt;
use skytrace::Instrument;
use skytrace::integrations::sqlx::PoolExt;
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SpanLayer, SpanObject, SpanType};
use skytrace_tests::{WAIT, tag};

const POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";

#[derive(Debug, PartialEq)]
struct Person {
    id: i64,
    name: String,
}

fn statement(span: &SpanObject) -> &str {
    tag(span, "db.statement").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_macros_outputs_are_exit_spans_on_a_pool_and_in_a_transaction() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "macros");
    let pool = sqlx::PgPool::connect(POSTGRES_URL)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)")
        .traced();

    let entry = tracer.entry_span("macros-job", &());
    async {
        // `query!`: an anonymous record type.
        let row = sqlx::query!(
            r#"SELECT $1::BIGINT AS "id!", $2::TEXT AS "name!""#,
            7_i64,
            "Ada"
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((row.id, row.name.as_str()), (7, "Ada"));

        // `query_as!`: into a struct of ours, every row.
        let people = sqlx::query_as!(
            Person,
            r#"SELECT n::BIGINT AS "id!", 'p' || n AS "name!" FROM generate_series(1, $1::INT) AS n"#,
            2
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            people,
            [
                Person { id: 1, name: "p1".into() },
                Person { id: 2, name: "p2".into() }
            ]
        );

        // In a transaction: `query_scalar!` and a streamed `query!`, then commit.
        let mut tx = pool.begin().await.unwrap();
        let count = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "count!" FROM generate_series(1, $1::INT)"#,
            3
        )
        .fetch_one(&mut tx)
        .await
        .unwrap();
        assert_eq!(count, 3);
        let ids: Vec<i64> = sqlx::query!(r#"SELECT n::BIGINT AS "n!" FROM generate_series(1, 3) AS n"#)
            .fetch(&mut tx)
            .map_ok(|row| row.n)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ids, [1, 2, 3]);
        tx.commit().await.unwrap();

        // `fetch_optional`, `execute`, and a failing statement.
        let none = sqlx::query_scalar!(r#"SELECT 1 AS "one!" WHERE $1::BOOL"#, false)
            .fetch_optional(&pool)
            .await
            .unwrap();
        assert_eq!(none, None);
        let done = sqlx::query!("SELECT pg_sleep(0)").execute(&pool).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
        let error = sqlx::query_scalar!("SELECT 1 / $1::INT", 0)
            .fetch_one(&pool)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("division by zero"), "{error}");
    }
    .in_span(entry)
    .await;
    // Outside the trace: no span.
    let outside = sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outside, 1);

    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1, "{}", render_trace_tree(&segments));
    let s = &segments[0].spans;
    let seen: Vec<(&str, &str)> = s
        .iter()
        .map(|s| (s.operation_name.as_str(), statement(s)))
        .collect();
    assert_eq!(
        seen,
        [
            ("macros-job", ""),
            (
                "PostgreSQL/sqlx/fetch",
                r#"SELECT $1::BIGINT AS "id!", $2::TEXT AS "name!""#
            ),
            (
                "PostgreSQL/sqlx/fetch",
                r#"SELECT n::BIGINT AS "id!", 'p' || n AS "name!" FROM generate_series(1, $1::INT) AS n"#
            ),
            (
                "PostgreSQL/sqlx/fetch",
                r#"SELECT COUNT(*) AS "count!" FROM generate_series(1, $1::INT)"#
            ),
            (
                "PostgreSQL/sqlx/fetch",
                r#"SELECT n::BIGINT AS "n!" FROM generate_series(1, 3) AS n"#
            ),
            ("PostgreSQL/sqlx/commit", ""),
            (
                "PostgreSQL/sqlx/fetch",
                r#"SELECT 1 AS "one!" WHERE $1::BOOL"#
            ),
            ("PostgreSQL/sqlx/execute", "SELECT pg_sleep(0)"),
            ("PostgreSQL/sqlx/fetch", "SELECT 1 / $1::INT"),
        ],
        "{}",
        render_trace_tree(&segments)
    );
    for (i, span) in s.iter().enumerate().skip(1) {
        assert_eq!(span.span_type, SpanType::Exit as i32);
        assert_eq!(span.span_layer, SpanLayer::Database as i32);
        assert_eq!(span.component_id, 22);
        assert_eq!(span.peer, "127.0.0.1:5432");
        assert_eq!(span.parent_span_id, 0);
        assert_eq!(tag(span, "db.type"), Some("sql"));
        assert_eq!(tag(span, "db.instance"), Some("test"));
        // The macros encode their arguments themselves: no parameters are recorded.
        assert_eq!(tag(span, "db.sql.parameters"), None);
        assert_eq!(span.is_error, i == 8, "span {i}: {span:#?}");
    }
}
