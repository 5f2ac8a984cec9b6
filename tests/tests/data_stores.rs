//! The sqlx and redis integrations against the real local servers (PostgreSQL 127.0.0.1:5432,
//! MariaDB 127.0.0.1:3306, Redis 127.0.0.1:6379; `scripts/ensure-services` starts them), each
//! test reporting over gRPC to its own in-process collector. Tables and keys are named per
//! run, so parallel runs do not collide.

use futures_util::TryStreamExt;
use redis::AsyncCommands;
use skytrace::integrations::redis::RedisConnectionExt;
use skytrace::integrations::sqlx::{self as db, PoolExt, TracedPool};
use skytrace::{Instrument, Tracer};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SegmentObject, SpanLayer, SpanObject, SpanType};
use skytrace_tests::{WAIT, tag};

const POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// What a test says when its server does not answer: the server and how to start it.
const NEEDS_POSTGRES: &str = "PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)";
const NEEDS_MARIADB: &str = "MariaDB on 127.0.0.1:3306 (scripts/ensure-services)";
const NEEDS_REDIS: &str = "Redis on 127.0.0.1:6379 (scripts/ensure-services)";

fn tracer(collector: &Collector, name: &str) -> Tracer {
    skytrace_tests::named_tracer(collector, name)
}

fn unique(prefix: &str) -> String {
    skytrace_tests::unique_name(prefix, '_')
}

fn tags(span: &SpanObject) -> Vec<(&str, &str)> {
    span.tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect()
}

fn log_message(span: &SpanObject) -> Option<&str> {
    span.logs
        .iter()
        .flat_map(|l| &l.data)
        .find(|kv| kv.key == "message")
        .map(|kv| kv.value.as_str())
}

/// The one segment that arrives, after the work done in `entry`.
async fn only_segment(collector: &Collector) -> SegmentObject {
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1, "{}", render_trace_tree(&segments));
    segments.into_iter().next().unwrap()
}

/// Asserts the fields every SQL span has.
fn assert_sql_span(span: &SpanObject, name: &str, component: i32, peer: &str, statement: &str) {
    assert_eq!(span.operation_name, name, "{span:#?}");
    assert_eq!(span.span_type, SpanType::Exit as i32);
    assert_eq!(span.span_layer, SpanLayer::Database as i32);
    assert_eq!(span.component_id, component);
    assert_eq!(span.peer, peer);
    assert_eq!(span.parent_span_id, 0);
    assert_eq!(
        tags(span),
        [
            ("db.type", "sql"),
            ("db.instance", "test"),
            ("db.statement", statement)
        ],
        "{span:#?}"
    );
}

// ----------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queries_through_a_pool_and_a_transaction_are_exit_spans() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector, "shop");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(POSTGRES_URL)
        .await
        .expect(NEEDS_POSTGRES)
        .traced();
    let table = unique("skytrace_pg");
    let create = format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL)");
    let insert = format!("INSERT INTO {table} (id, name) VALUES ($1, $2)");
    let select = format!("SELECT name FROM {table} WHERE id = $1");
    let all = format!("SELECT id, name FROM {table} ORDER BY id");
    let missing = format!("SELECT * FROM {table}_missing");

    let entry = tracer.entry_span("pg-job", &());
    async {
        sqlx::query(&create).execute(&pool).await.unwrap();
        sqlx::query(&insert)
            .bind(1_i64)
            .bind("Ada")
            .execute(&pool)
            .await
            .unwrap();
        let (name,): (String,) = sqlx::query_as(&select)
            .bind(1_i64)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(name, "Ada");
        let error = sqlx::query(&missing).fetch_all(&pool).await.unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");

        let mut tx = pool.begin().await.unwrap();
        sqlx::query(&insert)
            .bind(2_i64)
            .bind("Grace")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(&insert)
            .bind(3_i64)
            .bind("Edsger")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        let rows: Vec<(i64, String)> = sqlx::query_as(&all).fetch_all(&pool).await.unwrap();
        assert_eq!(rows, [(1, "Ada".to_owned()), (2, "Grace".to_owned())]);
        // A pooled connection taken out and used directly.
        let mut conn = pool.acquire().await.unwrap();
        let none = sqlx::query(&select)
            .bind(9_i64)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        assert!(none.is_none());
    }
    .in_span(entry)
    .await;
    // Outside the trace: no span (and the table goes).
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();

    let segment = only_segment(&collector).await;
    let names: Vec<&str> = segment
        .spans
        .iter()
        .map(|s| s.operation_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "pg-job",
            "PostgreSQL/sqlx/execute",
            "PostgreSQL/sqlx/execute",
            "PostgreSQL/sqlx/fetch",
            "PostgreSQL/sqlx/fetch",
            "PostgreSQL/sqlx/execute",
            "PostgreSQL/sqlx/commit",
            "PostgreSQL/sqlx/execute",
            "PostgreSQL/sqlx/rollback",
            "PostgreSQL/sqlx/fetch",
            "PostgreSQL/sqlx/fetch",
        ],
        "{}",
        render_trace_tree(std::slice::from_ref(&segment))
    );
    let peer = "127.0.0.1:5432";
    let s = &segment.spans;
    assert_sql_span(&s[1], "PostgreSQL/sqlx/execute", 22, peer, &create);
    assert_sql_span(&s[2], "PostgreSQL/sqlx/execute", 22, peer, &insert);
    assert_sql_span(&s[3], "PostgreSQL/sqlx/fetch", 22, peer, &select);
    assert_sql_span(&s[4], "PostgreSQL/sqlx/fetch", 22, peer, &missing);
    assert_sql_span(&s[5], "PostgreSQL/sqlx/execute", 22, peer, &insert);
    assert_eq!(s[6].peer, peer);
    assert_eq!(tag(&s[6], "db.statement"), None);
    assert_sql_span(&s[10], "PostgreSQL/sqlx/fetch", 22, peer, &select);
    // Only the failed query is marked, with the database's message.
    for (i, span) in s.iter().enumerate() {
        assert_eq!(span.is_error, i == 4, "span {i}: {span:#?}");
    }
    let message = log_message(&s[4]).expect("the error is logged");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_capped_and_row_not_found_is_no_database_error() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector, "shop");
    let pool = TracedPool::new(
        sqlx::PgPool::connect(POSTGRES_URL)
            .await
            .expect(NEEDS_POSTGRES),
    )
    .with_statement_max_len(12);
    let entry = tracer.entry_span("cap", &());
    async {
        let error = sqlx::query("SELECT 1 WHERE false")
            .fetch_one(&pool)
            .await
            .unwrap_err();
        assert!(matches!(error, sqlx::Error::RowNotFound));
    }
    .in_span(entry)
    .await;
    let segment = only_segment(&collector).await;
    let span = &segment.spans[1];
    // Cut, and marked as cut as the Java agent marks it.
    assert_eq!(tag(span, "db.statement"), Some("SELECT 1 WHE..."));
    assert!(!span.is_error, "{span:#?}");
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
async fn bound_parameters_are_recorded_when_enabled_through_every_builder_and_executor() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer_with_parameters(&collector, 64);
    let pool = sqlx::PgPool::connect(POSTGRES_URL)
        .await
        .expect(NEEDS_POSTGRES)
        .traced();
    let table = unique("skytrace_params");
    let create = format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT)");
    let insert = format!("INSERT INTO {table} (id, name) VALUES ($1, $2)");
    let select = format!("SELECT id, name FROM {table} WHERE id >= $1 ORDER BY id");
    let count = format!("SELECT COUNT(*) FROM {table} WHERE id > $1");
    sqlx::query(&create).execute(&pool).await.unwrap();

    let entry = tracer.entry_span("params", &());
    async {
        db::query(&insert)
            .bind(1_i64)
            .bind("Ada")
            .execute(&pool)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        db::query(&insert)
            .bind(2_i64)
            .bind(None::<String>)
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<(i64, Option<String>)> = db::query_as(&select)
            .bind(1_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, [(1, Some("Ada".to_owned())), (2, None)]);
        let n: i64 = db::query_scalar(&count)
            .bind(0_i64)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 2);
        let ids: Vec<i64> =
            db::query_scalar::<_, i64>(&format!("SELECT id FROM {table} WHERE id = $1"))
                .bind(2_i64)
                .fetch(&pool)
                .try_collect()
                .await
                .unwrap();
        assert_eq!(ids, [2]);
        let none = db::query(&select)
            .bind(9_i64)
            .fetch_optional(&pool)
            .await
            .unwrap();
        assert!(none.is_none());
        // A long value: cut at 64 bytes, and marked.
        db::query(&insert)
            .bind(3_i64)
            .bind("x".repeat(100))
            .execute(&pool)
            .await
            .unwrap();
        // Run by a pool that is not traced: sqlx's behaviour, and nothing left over for the
        // next traced query, which binds nothing.
        db::query(&count)
            .bind(0_i64)
            .fetch_one(pool.inner())
            .await
            .unwrap();
        sqlx::query(&count)
            .bind(0_i64)
            .fetch_one(&pool)
            .await
            .unwrap();
    }
    .in_span(entry)
    .await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();

    let segment = only_segment(&collector).await;
    let s = &segment.spans;
    let parameters: Vec<(&str, Option<&str>)> = s[1..]
        .iter()
        .map(|s| (s.operation_name.as_str(), tag(s, "db.sql.parameters")))
        .collect();
    let long = format!("[3,\"{}...]", "x".repeat(64 - 3));
    assert_eq!(
        parameters,
        [
            ("PostgreSQL/sqlx/execute", Some(r#"[1,"Ada"]"#)),
            ("PostgreSQL/sqlx/execute", Some("[2,None]")),
            ("PostgreSQL/sqlx/commit", None),
            ("PostgreSQL/sqlx/fetch", Some("[1]")),
            ("PostgreSQL/sqlx/fetch", Some("[0]")),
            ("PostgreSQL/sqlx/fetch", Some("[2]")),
            ("PostgreSQL/sqlx/fetch", Some("[9]")),
            ("PostgreSQL/sqlx/execute", Some(long.as_str())),
            ("PostgreSQL/sqlx/fetch", None),
        ],
        "{}",
        render_trace_tree(std::slice::from_ref(&segment))
    );
    // The tag comes after the others, which are as always.
    assert_eq!(
        tags(&s[1]),
        [
            ("db.type", "sql"),
            ("db.instance", "test"),
            ("db.statement", insert.as_str()),
            ("db.sql.parameters", r#"[1,"Ada"]"#),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_off_by_default_and_follow_the_live_setting() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector, "shop");
    let pool = sqlx::MySqlPool::connect(MYSQL_URL)
        .await
        .expect(NEEDS_MARIADB)
        .traced();
    let select = "SELECT ? + 1";
    let run = |name: &'static str| {
        let entry = tracer.entry_span(name, &());
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = db::query_as(select)
                .bind(41_i64)
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(n, 42);
        }
        .in_span(entry)
    };
    run("default").await;
    let mut settings = tracer.settings();
    settings.sql_parameters_max_length = 512;
    tracer.set_settings(settings.clone()).unwrap();
    run("on").await;
    settings.sql_parameters_max_length = 0;
    tracer.set_settings(settings).unwrap();
    run("off again").await;

    let segments = collector.wait_for_segments(3, WAIT).await;
    let by_entry = |name: &str| {
        let segment = skytrace_tests::segment(&segments, name);
        assert_eq!(segment.spans[1].operation_name, "Mysql/sqlx/fetch");
        assert_eq!(tag(&segment.spans[1], "db.statement"), Some(select));
        tag(&segment.spans[1], "db.sql.parameters").map(str::to_owned)
    };
    assert_eq!(by_entry("default"), None);
    assert_eq!(by_entry("on").as_deref(), Some("[41]"));
    assert_eq!(by_entry("off again"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_built_before_its_span_is_entered_runs_in_it_with_its_parameters() {
    // The only test of this file with a global tracer: it decides what a query built outside
    // any trace keeps. (The others make their traces with tracers of their own.)
    let collector = Collector::start().await.unwrap();
    let tracer = tracer_with_parameters(&collector, 32);
    let previous = tracer.install_global();
    assert!(previous.is_none());
    let pool = sqlx::PgPool::connect(POSTGRES_URL)
        .await
        .expect(NEEDS_POSTGRES)
        .traced();

    // Built and bound here, outside the entry span; run inside it, as `in_span` is used.
    let query = db::query_scalar::<_, i64>("SELECT $1::BIGINT * 2")
        .bind(21_i64)
        .fetch_one(&pool);
    let doubled = query.in_span(tracer.entry_span("lazy", &())).await.unwrap();
    assert_eq!(doubled, 42);
    tracer.shutdown(WAIT);

    let segment = only_segment(&collector).await;
    let s = &segment.spans;
    assert_eq!(
        s.len(),
        2,
        "{}",
        render_trace_tree(std::slice::from_ref(&segment))
    );
    assert_eq!(s[1].operation_name, "PostgreSQL/sqlx/fetch");
    assert_eq!(s[1].parent_span_id, 0);
    assert_eq!(tag(&s[1], "db.sql.parameters"), Some("[21]"));
}

// ----------------------------------------------------------------------------------------------
// MariaDB / MySQL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_queries_are_exit_spans_and_errors_are_marked() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector, "shop");
    let pool = sqlx::MySqlPool::connect(MYSQL_URL)
        .await
        .expect(NEEDS_MARIADB)
        .traced();
    let table = unique("skytrace_my");
    let create = format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL)");
    let insert = format!("INSERT INTO {table} (id, name) VALUES (?, ?)");
    let count = format!("SELECT COUNT(*) FROM {table}");

    let entry = tracer.entry_span("mysql-job", &());
    async {
        sqlx::query(&create).execute(&pool).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(&insert)
            .bind(1_i64)
            .bind("Ada")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let (n,): (i64,) = sqlx::query_as(&count).fetch_one(&pool).await.unwrap();
        assert_eq!(n, 1);
        sqlx::query(&insert)
            .bind(1_i64)
            .bind("again")
            .execute(&pool)
            .await
            .unwrap_err();
    }
    .in_span(entry)
    .await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();

    let segment = only_segment(&collector).await;
    let s = &segment.spans;
    assert_eq!(
        s.len(),
        6,
        "{}",
        render_trace_tree(std::slice::from_ref(&segment))
    );
    let peer = "127.0.0.1:3306";
    assert_sql_span(&s[1], "Mysql/sqlx/execute", 5, peer, &create);
    assert_sql_span(&s[2], "Mysql/sqlx/execute", 5, peer, &insert);
    assert_eq!(s[3].operation_name, "Mysql/sqlx/commit");
    assert_sql_span(&s[4], "Mysql/sqlx/fetch", 5, peer, &count);
    assert_sql_span(&s[5], "Mysql/sqlx/execute", 5, peer, &insert);
    assert!(s[5].is_error);
    let message = log_message(&s[5]).expect("the error is logged");
    assert!(message.contains("Duplicate"), "{message}");
    assert!(s[..5].iter().all(|s| !s.is_error));
}

// ----------------------------------------------------------------------------------------------
// Redis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_and_pipelines_are_exit_spans_and_error_replies_are_marked() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector, "shop");
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect(NEEDS_REDIS)
        .traced(&client);
    let key = unique("skytrace:user");
    let counter = unique("skytrace:n");

    let entry = tracer.entry_span("cache-job", &());
    async {
        let _: () = conn.set(&key, "Ada").await.unwrap();
        let name: Option<String> = conn.get(&key).await.unwrap();
        assert_eq!(name.as_deref(), Some("Ada"));
        // INCR on text: an error reply.
        let failed: redis::RedisResult<i64> = conn.incr(&key, 1).await;
        let error = failed.unwrap_err();
        assert!(error.to_string().contains("not an integer"), "{error}");
        let (n, m): (i64, i64) = redis::pipe()
            .incr(&counter, 2)
            .get(&counter)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((n, m), (2, 2));
        // An atomic pipeline whose second command fails: the error is inside `EXEC`'s reply.
        let failed: redis::RedisResult<(i64, i64)> = redis::pipe()
            .atomic()
            .incr(&counter, 1)
            .incr(&key, 1)
            .query_async(&mut conn)
            .await;
        assert!(failed.is_err());
        let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    }
    .in_span(entry)
    .await;
    // Outside the trace: no span.
    let _: () = conn.del(vec![key.clone(), counter.clone()]).await.unwrap();

    let segment = only_segment(&collector).await;
    let s = &segment.spans;
    let names: Vec<&str> = s.iter().map(|s| s.operation_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cache-job",
            "Redis/SET",
            "Redis/GET",
            "Redis/INCRBY",
            "Redis/PIPELINE",
            "Redis/MULTI",
            "Redis/PING"
        ]
    );
    for span in &s[1..] {
        assert_eq!(span.span_type, SpanType::Exit as i32);
        assert_eq!(span.span_layer, SpanLayer::Cache as i32);
        assert_eq!(span.component_id, 7);
        assert_eq!(span.peer, "127.0.0.1:6379");
        assert_eq!(tag(span, "cache.type"), Some("redis"));
    }
    assert_eq!(
        tags(&s[1]),
        [
            ("cache.type", "redis"),
            ("cache.op", "write"),
            ("cache.key", key.as_str()),
            ("cache.cmd", "SET")
        ]
    );
    assert_eq!(tag(&s[2], "cache.op"), Some("read"));
    assert_eq!(tag(&s[2], "cache.key"), Some(key.as_str()));
    assert!(s[3].is_error, "{:#?}", s[3]);
    // The error reply as Redis wrote it.
    assert_eq!(
        log_message(&s[3]),
        Some("ERR value is not an integer or out of range")
    );
    assert_eq!(tag(&s[4], "cache.cmd"), Some("INCRBY;GET"));
    assert_eq!(tag(&s[4], "cache.op"), Some("write"));
    assert_eq!(tag(&s[4], "cache.key"), Some(counter.as_str()));
    assert_eq!(tag(&s[5], "cache.cmd"), Some("INCRBY;INCRBY"));
    assert!(log_message(&s[5]).unwrap().contains("not an integer"));
    assert_eq!(tag(&s[6], "cache.key"), None);
    assert_eq!(tag(&s[6], "cache.op"), None);
    let failed: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_error).collect();
    assert_eq!(failed, [3, 5]);
}

// ----------------------------------------------------------------------------------------------
// No trace, no span

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_recorded_without_a_trace() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector, "shop");
    let pool = sqlx::PgPool::connect(POSTGRES_URL)
        .await
        .expect(NEEDS_POSTGRES)
        .traced();
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect(NEEDS_REDIS)
        .traced(&client);
    let key = unique("skytrace:untraced");

    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT 1").fetch_one(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let _: () = conn.set_ex(&key, 1, 60).await.unwrap();
    let _: () = conn.del(&key).await.unwrap();
    // A marker trace: once it has arrived, anything sent before it has too.
    drop(tracer.entry_span("marker", &()));

    let segment = only_segment(&collector).await;
    assert_eq!(segment.spans.len(), 1);
    assert_eq!(segment.spans[0].operation_name, "marker");
}
