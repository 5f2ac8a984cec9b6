//! As `sqlx_macros.rs`, for MySQL/MariaDB (127.0.0.1:3306): the `query!` family's outputs run by
//! the traced pool and a traced transaction. A file of its own because the macros' query data is
//! made from one database per build (`scripts/sqlx-prepare` makes both). The statements need no
//! table.

use skytrace::Instrument;
use skytrace::integrations::sqlx::PoolExt;
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SpanLayer, SpanType};
use skytrace_tests::{WAIT, tag};

const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

#[derive(Debug, PartialEq)]
struct Order {
    id: i64,
    item: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_macros_outputs_are_exit_spans_on_mysql() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "macros-mysql");
    let pool = sqlx::MySqlPool::connect(MYSQL_URL)
        .await
        .expect("MariaDB on 127.0.0.1:3306 (scripts/ensure-services)")
        .traced();

    let entry = tracer.entry_span("macros-job", &());
    async {
        let order = sqlx::query_as!(
            Order,
            r#"SELECT CAST(? AS SIGNED) AS `id!: i64`, CAST(? AS CHAR) AS `item!: String`"#,
            7_i64,
            "a teapot"
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            order,
            Order {
                id: 7,
                item: "a teapot".into()
            }
        );

        let mut tx = pool.begin().await.unwrap();
        let row = sqlx::query!(r#"SELECT CAST(? AS SIGNED) + 1 AS `n!: i64`"#, 41_i64)
            .fetch_one(&mut tx)
            .await
            .unwrap();
        assert_eq!(row.n, 42);
        tx.commit().await.unwrap();

        // Prepared fine, fails when run: "Subquery returns more than 1 row".
        let error = sqlx::query_scalar!("SELECT (SELECT 1 UNION SELECT 2) AS x")
            .fetch_optional(&pool)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("more than 1 row"), "{error}");
    }
    .in_span(entry)
    .await;

    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1, "{}", render_trace_tree(&segments));
    let s = &segments[0].spans;
    let names: Vec<&str> = s.iter().map(|s| s.operation_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "macros-job",
            "Mysql/sqlx/fetch",
            "Mysql/sqlx/fetch",
            "Mysql/sqlx/commit",
            "Mysql/sqlx/fetch"
        ],
        "{}",
        render_trace_tree(&segments)
    );
    assert_eq!(
        tag(&s[1], "db.statement"),
        Some(r#"SELECT CAST(? AS SIGNED) AS `id!: i64`, CAST(? AS CHAR) AS `item!: String`"#)
    );
    for (i, span) in s.iter().enumerate().skip(1) {
        assert_eq!(span.span_type, SpanType::Exit as i32);
        assert_eq!(span.span_layer, SpanLayer::Database as i32);
        assert_eq!(span.component_id, 5);
        assert_eq!(span.peer, "127.0.0.1:3306");
        assert_eq!(tag(span, "db.instance"), Some("test"));
        assert_eq!(span.is_error, i == 4, "span {i}: {span:#?}");
    }
}
