//! The tokio-postgres integration against the real local PostgreSQL (127.0.0.1:5432, trust
//! auth, database `test`; `scripts/ensure-services` starts it), a plain client and the clients
//! of deadpool-postgres and bb8-postgres, each test reporting over gRPC to its own in-process
//! collector. Tables are named per run, so parallel runs do not collide.

use futures_util::TryStreamExt;
use skytrace::integrations::tokio_postgres::{PgTarget, TracedClient};
use skytrace::{Instrument, Tracer};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SpanLayer, SpanObject, SpanType};
use skytrace_tests::{log_message, names, only_segment, tag, tags};
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;

const URL: &str = "postgres://root@127.0.0.1:5432/test";
const PEER: &str = "127.0.0.1:5432";

fn config() -> tokio_postgres::Config {
    URL.parse().expect("a valid URL")
}

async fn connect() -> (tokio_postgres::Client, PgTarget) {
    let config = config();
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)");
    tokio::spawn(connection);
    (client, PgTarget::new(&config))
}

fn unique(prefix: &str) -> String {
    skytrace_tests::unique_name(prefix, '_')
}

/// Asserts the fields every statement's span has; `statement` `None` for a commit.
fn assert_statement(span: &SpanObject, name: &str, statement: Option<&str>) {
    assert_eq!(span.operation_name, name, "{span:#?}");
    assert_eq!(span.span_type, SpanType::Exit as i32);
    assert_eq!(span.span_layer, SpanLayer::Database as i32);
    assert_eq!(span.component_id, 22);
    assert_eq!(span.peer, PEER);
    assert_eq!(span.parent_span_id, 0);
    let mut expected = vec![("db.type", "sql"), ("db.instance", "test")];
    expected.extend(statement.map(|s| ("db.statement", s)));
    assert_eq!(tags(span), expected, "{span:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_of_a_client_and_its_transactions_are_exit_spans() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let (client, target) = connect().await;
    let mut client = target.traced(client);
    let table = unique("skytrace_tp");
    let create = format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL)");
    let insert = format!("INSERT INTO {table} (id, name) VALUES ($1, $2)");
    let select = format!("SELECT name FROM {table} WHERE id = $1");
    let all = format!("SELECT id FROM {table} ORDER BY id");
    let missing = format!("SELECT * FROM {table}_missing");
    let typed = format!("SELECT count(*) FROM {table} WHERE id > $1");

    let entry = tracer.entry_span("pg-job", &());
    async {
        client.batch_execute(&create).await.unwrap();
        client.execute(&insert, &[&1_i64, &"Ada"]).await.unwrap();
        let row = client.query_one(&select, &[&1_i64]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "Ada");
        // Prepared through the traced client: its SQL is known to the spans run with it.
        let prepared = client.prepare(&select).await.unwrap();
        let rows = client.query(&prepared, &[&1_i64]).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert!(
            client
                .query_opt(&select, &[&9_i64])
                .await
                .unwrap()
                .is_none()
        );
        // No row for `query_one`: an error for the caller, no failure of the database.
        client.query_one(&select, &[&9_i64]).await.unwrap_err();
        let error = client.query(&missing, &[]).await.unwrap_err();
        assert!(error.as_db_error().is_some(), "{error:?}");

        let tx = client.transaction().await.unwrap();
        tx.execute(&insert, &[&2_i64, &"Grace"]).await.unwrap();
        tx.commit().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute(&insert, &[&3_i64, &"Edsger"]).await.unwrap();
        tx.rollback().await.unwrap();

        let ids: Vec<i64> = client
            .query_raw(&all, std::iter::empty::<i64>())
            .await
            .unwrap()
            .map_ok(|row| row.get::<_, i64>(0))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ids, [1, 2]);
        let rows = client
            .query_typed(&typed, &[(&0_i64, Type::INT8)])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 2);
        client.simple_query("SELECT 1").await.unwrap();
    }
    .in_span(entry)
    .await;
    // Outside the trace: no span (and the table goes).
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();

    let segment = only_segment(&collector).await;
    let tree = render_trace_tree(std::slice::from_ref(&segment));
    assert_eq!(
        names(&segment),
        [
            "pg-job",
            "PostgreSQL/tokio-postgres/batch_execute",
            "PostgreSQL/tokio-postgres/execute",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/prepare",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/execute",
            "PostgreSQL/tokio-postgres/commit",
            "PostgreSQL/tokio-postgres/execute",
            "PostgreSQL/tokio-postgres/rollback",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/simple_query",
        ],
        "{tree}"
    );
    let s = &segment.spans;
    let statements = [
        Some(create.as_str()),
        Some(&insert),
        Some(&select),
        Some(&select),
        Some(&select),
        Some(&select),
        Some(&select),
        Some(&missing),
        Some(&insert),
        None,
        Some(&insert),
        None,
        Some(&all),
        Some(&typed),
        Some("SELECT 1"),
    ];
    for (span, statement) in s[1..].iter().zip(statements) {
        assert_statement(span, &span.operation_name, statement);
    }
    // Only the query of a missing table failed, with the server's message.
    let failed: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_error).collect();
    assert_eq!(failed, [8], "{tree}");
    let message = log_message(&s[8]).expect("the error is logged");
    assert!(message.contains("does not exist"), "{message}");
}

/// A tracer whose traces record SQL parameters up to `max` bytes.
fn tracer_with_parameters(collector: &Collector, max: usize) -> Tracer {
    skytrace_tests::grpc_tracer(
        skytrace_tests::config_for(collector.addr())
            .service_name("shop")
            .sql_parameters_max_length(max),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_values_are_recorded_when_the_setting_asks_for_them() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer_with_parameters(&collector, 32);
    let (client, target) = connect().await;
    let client = target.traced(client);

    let entry = tracer.entry_span("params", &());
    async {
        let row = client
            .query_one("SELECT $1::BIGINT, $2::TEXT", &[&7_i64, &"Ada"])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 7);
        let n = client
            .execute_raw("SELECT $1::TEXT", ["x".repeat(100)])
            .await
            .unwrap();
        assert_eq!(n, 1);
        let rows: Vec<tokio_postgres::Row> = client
            .query_raw("SELECT $1::BIGINT", [Some(5_i64)])
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        client
            .query_typed("SELECT $1", &[(&None::<i32>, Type::INT4)])
            .await
            .unwrap();
        client.query("SELECT 1", &[]).await.unwrap();
    }
    .in_span(entry)
    .await;

    let segment = only_segment(&collector).await;
    let parameters: Vec<Option<&str>> = segment.spans[1..]
        .iter()
        .map(|s| tag(s, "db.sql.parameters"))
        .collect();
    let long = format!("[\"{}...]", "x".repeat(31));
    assert_eq!(
        parameters,
        [
            Some(r#"[7,"Ada"]"#),
            Some(long.as_str()),
            Some("[Some(5)]"),
            Some("[None]"),
            None,
        ],
        "{}",
        render_trace_tree(std::slice::from_ref(&segment))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_taken_from_deadpool_and_bb8_keep_their_spans() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let target = PgTarget::new(&config());
    let deadpool =
        deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(config(), NoTls))
            .max_size(2)
            .build()
            .unwrap();
    let bb8 = bb8::Pool::builder()
        .max_size(2)
        .build(bb8_postgres::PostgresConnectionManager::new(
            config(),
            NoTls,
        ))
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)");

    let entry = tracer.entry_span("pooled", &());
    async {
        let mut client: TracedClient<deadpool_postgres::Object> = target.traced(
            deadpool
                .get()
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)"),
        );
        let cached = client.prepare_cached("SELECT $1::INT + 1").await.unwrap();
        let row = client.query_one(&cached, &[&41_i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
        let tx = client.transaction().await.unwrap();
        tx.query("SELECT 2", &[]).await.unwrap();
        tx.commit().await.unwrap();

        let mut pooled = bb8.get().await.unwrap();
        // `&mut` a pooled connection works as well as the connection itself.
        let mut client = target.traced(&mut pooled);
        client.query("SELECT 3", &[]).await.unwrap();
        let mut tx = client.transaction().await.unwrap();
        let savepoint = tx.transaction().await.unwrap();
        savepoint.execute("SELECT 4", &[]).await.unwrap();
        savepoint.rollback().await.unwrap();
        tx.commit().await.unwrap();
        drop(client);
        let owned = target.traced(bb8.get_owned().await.unwrap());
        owned.query("SELECT 5", &[]).await.unwrap();
    }
    .in_span(entry)
    .await;

    let segment = only_segment(&collector).await;
    let tree = render_trace_tree(std::slice::from_ref(&segment));
    assert_eq!(
        names(&segment),
        [
            "pooled",
            "PostgreSQL/tokio-postgres/prepare",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/commit",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/tokio-postgres/execute",
            "PostgreSQL/tokio-postgres/rollback",
            "PostgreSQL/tokio-postgres/commit",
            "PostgreSQL/tokio-postgres/query",
        ],
        "{tree}"
    );
    let s = &segment.spans;
    let statements = [
        Some("SELECT $1::INT + 1"),
        Some("SELECT $1::INT + 1"),
        Some("SELECT 2"),
        None,
        Some("SELECT 3"),
        Some("SELECT 4"),
        None,
        None,
        Some("SELECT 5"),
    ];
    for (span, statement) in s[1..].iter().zip(statements) {
        assert_statement(span, &span.operation_name, statement);
        assert!(!span.is_error, "{tree}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_recorded_without_a_trace() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let (client, target) = connect().await;
    let mut client = target.traced(client);
    client.query("SELECT 1", &[]).await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT 1", &[]).await.unwrap();
    tx.commit().await.unwrap();
    // A marker trace: once it has arrived, anything sent before it has too.
    drop(tracer.entry_span("marker", &()));

    let segment = only_segment(&collector).await;
    assert_eq!(names(&segment), ["marker"]);
}
