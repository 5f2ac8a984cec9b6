//! The diesel integration (its `Instrumentation` hook) against the real local servers:
//! PostgreSQL (127.0.0.1:5432) through diesel's sync `PgConnection` and diesel-async's
//! `AsyncPgConnection`, MariaDB (127.0.0.1:3306) through the sync `MysqlConnection`
//! (`scripts/ensure-services` starts them). Each test reports over gRPC to its own collector;
//! tables are temporary (one per connection), so parallel runs do not collide.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use skytrace::integrations::diesel::{DieselInstrumentation, instrumentation};
use skytrace::{Instrument, Tracer};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SegmentObject, SpanLayer, SpanObject, SpanType};
use skytrace_tests::{log_message, names, only_segment, tag, tags};

const POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

diesel::table! {
    skytrace_users (id) {
        id -> BigInt,
        name -> Text,
    }
}

use self::skytrace_users::dsl::{id, name, skytrace_users as users};

const CREATE_PG: &str =
    "CREATE TEMPORARY TABLE skytrace_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)";
const INSERT_PG: &str = r#"INSERT INTO "skytrace_users" ("id", "name") VALUES ($1, $2)"#;
const SELECT_PG: &str = r#"SELECT "skytrace_users"."name" FROM "skytrace_users" WHERE ("skytrace_users"."id" = $1) LIMIT $2"#;

/// Every new connection of this test binary reports its queries.
fn install() {
    diesel::connection::set_default_instrumentation(instrumentation)
        .expect("diesel's instrumentation lock");
}

fn tracer(collector: &Collector) -> Tracer {
    skytrace_tests::named_tracer(collector, "shop")
}

fn tracer_with_parameters(collector: &Collector, max: usize) -> Tracer {
    skytrace_tests::grpc_tracer(
        skytrace_tests::config_for(collector.addr())
            .service_name("shop")
            .sql_parameters_max_length(max),
    )
}

/// Asserts the fields every query's span has.
fn assert_query(span: &SpanObject, component: i32, peer: &str, statement: &str) {
    assert_eq!(span.span_type, SpanType::Exit as i32, "{span:#?}");
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

fn tree(segment: &SegmentObject) -> String {
    render_trace_tree(std::slice::from_ref(segment))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_postgres_queries_and_transactions_are_exit_spans() {
    install();
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector);
    let mut conn = PgConnection::establish(POSTGRES_URL)
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)");

    let entry = tracer.entry_span("diesel-job", &());
    {
        // Sync diesel runs on this thread: the entry span is current while it does.
        let _entered = entry.enter();
        diesel::sql_query(CREATE_PG).execute(&mut conn).unwrap();
        diesel::insert_into(users)
            .values((id.eq(1), name.eq("Ada")))
            .execute(&mut conn)
            .unwrap();
        let found: String = users
            .filter(id.eq(1))
            .select(name)
            .first(&mut conn)
            .unwrap();
        assert_eq!(found, "Ada");
        let error = diesel::sql_query("SELECT * FROM skytrace_missing_table")
            .execute(&mut conn)
            .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
        conn.transaction(|conn| {
            diesel::insert_into(users)
                .values((id.eq(2), name.eq("Grace")))
                .execute(conn)
        })
        .unwrap();
        let rolled_back: Result<(), diesel::result::Error> = conn.transaction(|conn| {
            diesel::insert_into(users)
                .values((id.eq(3), name.eq("Edsger")))
                .execute(conn)?;
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(rolled_back.is_err());
    }
    drop(entry);
    // Outside the trace: no span.
    let n: i64 = users.count().get_result(&mut conn).unwrap();
    assert_eq!(n, 2);

    let segment = only_segment(&collector).await;
    let tree = tree(&segment);
    assert_eq!(
        names(&segment),
        [
            "diesel-job",
            "PostgreSQL/diesel/query",
            "PostgreSQL/diesel/query",
            "PostgreSQL/diesel/query",
            "PostgreSQL/diesel/query",
            "PostgreSQL/diesel/begin",
            "PostgreSQL/diesel/query",
            "PostgreSQL/diesel/commit",
            "PostgreSQL/diesel/begin",
            "PostgreSQL/diesel/query",
            "PostgreSQL/diesel/rollback",
        ],
        "{tree}"
    );
    let s = &segment.spans;
    let peer = "127.0.0.1:5432";
    let statements = [
        CREATE_PG,
        INSERT_PG,
        SELECT_PG,
        "SELECT * FROM skytrace_missing_table",
        "BEGIN",
        INSERT_PG,
        "COMMIT",
        "BEGIN",
        INSERT_PG,
        "ROLLBACK",
    ];
    for (span, statement) in s[1..].iter().zip(statements) {
        assert_query(span, 22, peer, statement);
    }
    let failed: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_error).collect();
    assert_eq!(failed, [4], "{tree}");
    let message = log_message(&s[4]).expect("the error is logged");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_values_are_recorded_when_the_setting_asks_for_them() {
    install();
    let collector = Collector::start().await.unwrap();
    let tracer = tracer_with_parameters(&collector, 24);
    let mut conn = PgConnection::establish(POSTGRES_URL)
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)");
    diesel::sql_query(CREATE_PG).execute(&mut conn).unwrap();

    let entry = tracer.entry_span("params", &());
    {
        let _entered = entry.enter();
        diesel::insert_into(users)
            .values((id.eq(7), name.eq("Ada")))
            .execute(&mut conn)
            .unwrap();
        diesel::insert_into(users)
            .values((id.eq(8), name.eq("x".repeat(100))))
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query("SELECT $1::BIGINT + 1 AS n")
            .bind::<BigInt, _>(41)
            .execute(&mut conn)
            .unwrap();
        // No values: no tag.
        diesel::sql_query("SELECT 1").execute(&mut conn).unwrap();
    }
    drop(entry);

    let segment = only_segment(&collector).await;
    let parameters: Vec<Option<&str>> = segment.spans[1..]
        .iter()
        .map(|s| tag(s, "db.sql.parameters"))
        .collect();
    let long = format!("[8, \"{}...]", "x".repeat(20));
    assert_eq!(
        parameters,
        [
            Some(r#"[7, "Ada"]"#),
            Some(long.as_str()),
            Some("[41]"),
            None
        ],
        "{}",
        tree(&segment)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mysql_queries_are_exit_spans_also_on_a_connection_made_before() {
    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector);
    let mut conn = MysqlConnection::establish(MYSQL_URL)
        .expect("MariaDB on 127.0.0.1:3306 (scripts/ensure-services)");
    // Given by hand, as to a connection established before `set_default_instrumentation`.
    conn.set_instrumentation(DieselInstrumentation::for_url(MYSQL_URL));
    let create =
        "CREATE TEMPORARY TABLE skytrace_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)";
    let insert = "INSERT INTO `skytrace_users` (`id`, `name`) VALUES (?, ?)";

    let entry = tracer.entry_span("mysql-job", &());
    {
        let _entered = entry.enter();
        diesel::sql_query(create).execute(&mut conn).unwrap();
        conn.transaction(|conn| {
            diesel::insert_into(users)
                .values((id.eq(1), name.eq("Ada")))
                .execute(conn)
        })
        .unwrap();
        let names: Vec<String> =
            diesel::sql_query("SELECT name AS who FROM skytrace_users WHERE id > ?")
                .bind::<BigInt, _>(0)
                .load::<NameRow>(&mut conn)
                .unwrap()
                .into_iter()
                .map(|row| row.who)
                .collect();
        assert_eq!(names, ["Ada"]);
        diesel::insert_into(users)
            .values((id.eq(1), name.eq("again")))
            .execute(&mut conn)
            .unwrap_err();
    }
    drop(entry);

    let segment = only_segment(&collector).await;
    let tree = tree(&segment);
    assert_eq!(
        names(&segment),
        [
            "mysql-job",
            "Mysql/diesel/query",
            "Mysql/diesel/begin",
            "Mysql/diesel/query",
            "Mysql/diesel/commit",
            "Mysql/diesel/query",
            "Mysql/diesel/query",
        ],
        "{tree}"
    );
    let s = &segment.spans;
    let peer = "127.0.0.1:3306";
    let statements = [
        create,
        "BEGIN",
        insert,
        "COMMIT",
        "SELECT name AS who FROM skytrace_users WHERE id > ?",
        insert,
    ];
    for (span, statement) in s[1..].iter().zip(statements) {
        assert_query(span, 5, peer, statement);
    }
    let failed: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_error).collect();
    assert_eq!(failed, [6], "{tree}");
    assert!(log_message(&s[6]).unwrap().contains("Duplicate"), "{tree}");
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    who: String,
}

mod diesel_async_pg {
    use diesel::{ExpressionMethods, QueryDsl};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn diesel_async_queries_are_exit_spans_even_pipelined() {
        install();
        let collector = Collector::start().await.unwrap();
        let tracer = tracer(&collector);
        let mut conn = AsyncPgConnection::establish(POSTGRES_URL)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)");
        diesel::sql_query(CREATE_PG)
            .execute(&mut conn)
            .await
            .unwrap();

        let entry = tracer.entry_span("async-job", &());
        async {
            diesel::insert_into(users)
                .values((id.eq(1), name.eq("Ada")))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                diesel::insert_into(users)
                    .values((id.eq(2), name.eq("Grace")))
                    .execute(conn)
                    .await
            })
            .await
            .unwrap();
            // Two queries in flight on one connection at once.
            let shared = &conn;
            let first = users
                .filter(id.eq(1))
                .select(name)
                .get_result::<String>(&mut &*shared);
            let count = users.count().get_result::<i64>(&mut &*shared);
            let (found, n) = futures_util::future::try_join(first, count).await.unwrap();
            assert_eq!((found.as_str(), n), ("Ada", 2));
        }
        .in_span(entry)
        .await;

        let segment = only_segment(&collector).await;
        let tree = tree(&segment);
        assert_eq!(
            names(&segment),
            [
                "async-job",
                "PostgreSQL/diesel/query",
                "PostgreSQL/diesel/begin",
                "PostgreSQL/diesel/query",
                "PostgreSQL/diesel/commit",
                "PostgreSQL/diesel/query",
                "PostgreSQL/diesel/query",
            ],
            "{tree}"
        );
        let s = &segment.spans;
        let count = r#"SELECT COUNT(*) FROM "skytrace_users""#;
        // `get_result`, not `first`: no LIMIT.
        let select = SELECT_PG.trim_end_matches(" LIMIT $2");
        let statements = [INSERT_PG, "BEGIN", INSERT_PG, "COMMIT", select, count];
        for (span, statement) in s[1..].iter().zip(statements) {
            assert_query(span, 22, "127.0.0.1:5432", statement);
            assert!(!span.is_error, "{tree}");
            // Each ended when its own query did, not when the connection was dropped.
            assert!(span.end_time >= span.start_time, "{tree}");
        }
    }
}
