//! The sea-orm integration against the real local servers: PostgreSQL (127.0.0.1:5432) and
//! MariaDB (127.0.0.1:3306; `scripts/ensure-services` starts them), each test reporting over
//! gRPC to its own collector. Tables are temporary, on a pool of one connection, so parallel
//! runs do not collide. The last test puts tokio-postgres, diesel-async and sea-orm in one trace.

use futures_util::TryStreamExt;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectOptions, Database, DbErr, QueryOrder, TransactionError};
use skytrace::Instrument;
use skytrace::integrations::sea_orm::TracedConnection;
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SegmentObject, SpanLayer, SpanType};
use skytrace_tests::{log_message, names, only_segment, tag};

mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "skytrace_sea_users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn connect(url: &str, server: &str) -> TracedConnection {
    // One connection: the temporary table lives in it.
    let options = ConnectOptions::new(url).max_connections(1).to_owned();
    let db = Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("{server} (scripts/ensure-services): {e}"));
    TracedConnection::new(db)
}

fn tree(segment: &SegmentObject) -> String {
    render_trace_tree(std::slice::from_ref(segment))
}

fn ada(id: i64, name: &str) -> user::ActiveModel {
    user::ActiveModel {
        id: Set(id),
        name: Set(name.to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statements_transactions_and_streams_are_exit_spans() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let db = connect(
        "postgres://root@127.0.0.1:5432/test",
        "PostgreSQL on 127.0.0.1:5432",
    )
    .await;
    assert_eq!(db.peer(), Some("127.0.0.1:5432"));
    let create =
        "CREATE TEMPORARY TABLE skytrace_sea_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)";

    let entry = tracer.entry_span("sea-job", &());
    async {
        db.execute_unprepared(create).await.unwrap();
        ada(1, "Ada").insert(&db).await.unwrap();
        let found = user::Entity::find_by_id(1).one(&db).await.unwrap();
        assert_eq!(found.map(|u| u.name).as_deref(), Some("Ada"));
        let error = db
            .execute_unprepared("SELECT * FROM skytrace_sea_missing")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
        db.transaction::<_, (), DbErr>(|tx| {
            Box::pin(async move {
                ada(2, "Grace").insert(tx).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
        let rolled_back = db
            .transaction::<_, (), &str>(|tx| {
                Box::pin(async move {
                    ada(3, "Edsger").insert(tx).await.map_err(|_| "insert")?;
                    Err("changed my mind")
                })
            })
            .await;
        assert!(matches!(rolled_back, Err(TransactionError::Transaction(_))));
        let names: Vec<String> = user::Entity::find()
            .order_by_asc(user::Column::Id)
            .stream(&db)
            .await
            .unwrap()
            .map_ok(|u| u.name)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(names, ["Ada", "Grace"]);
    }
    .in_span(entry)
    .await;
    // Outside the trace: no span.
    assert_eq!(user::Entity::find().count(&db).await.unwrap(), 2);

    let segment = only_segment(&collector).await;
    let tree = tree(&segment);
    assert_eq!(
        names(&segment),
        [
            "sea-job",
            "PostgreSQL/sea-orm/execute",
            "PostgreSQL/sea-orm/query",
            "PostgreSQL/sea-orm/query",
            "PostgreSQL/sea-orm/execute",
            "PostgreSQL/sea-orm/query",
            "PostgreSQL/sea-orm/commit",
            "PostgreSQL/sea-orm/query",
            "PostgreSQL/sea-orm/rollback",
            "PostgreSQL/sea-orm/stream",
        ],
        "{tree}"
    );
    let s = &segment.spans;
    for span in &s[1..] {
        assert_eq!(span.span_type, SpanType::Exit as i32, "{tree}");
        assert_eq!(span.span_layer, SpanLayer::Database as i32);
        assert_eq!(span.component_id, 22);
        assert_eq!(span.peer, "127.0.0.1:5432");
        assert_eq!(span.parent_span_id, 0);
        assert_eq!(tag(span, "db.type"), Some("sql"));
        assert_eq!(tag(span, "db.instance"), Some("test"));
        // Off by default.
        assert_eq!(tag(span, "db.sql.parameters"), None, "{tree}");
    }
    assert_eq!(tag(&s[1], "db.statement"), Some(create));
    let insert =
        r#"INSERT INTO "skytrace_sea_users" ("id", "name") VALUES ($1, $2) RETURNING "id", "name""#;
    assert_eq!(tag(&s[2], "db.statement"), Some(insert), "{tree}");
    assert!(
        tag(&s[3], "db.statement")
            .is_some_and(|q| q.starts_with(r#"SELECT "skytrace_sea_users"."id""#)
                && q.contains(r#"WHERE "skytrace_sea_users"."id" = $1"#)),
        "{tree}"
    );
    assert_eq!(tag(&s[5], "db.statement"), Some(insert));
    assert_eq!(tag(&s[6], "db.statement"), None);
    assert!(
        tag(&s[9], "db.statement").is_some_and(|q| q.contains("ORDER BY")),
        "{tree}"
    );
    // The stream's span lasted until its last row.
    let failed: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_error).collect();
    assert_eq!(failed, [4], "{tree}");
    assert!(
        log_message(&s[4]).unwrap().contains("does not exist"),
        "{tree}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_statements_are_exit_spans_with_their_values_when_asked() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::grpc_tracer(
        skytrace_tests::config_for(collector.addr())
            .service_name("shop")
            .sql_parameters_max_length(64),
    );
    let db = connect(
        "mysql://root@127.0.0.1:3306/test",
        "MariaDB on 127.0.0.1:3306",
    )
    .await;
    db.execute_unprepared(
        "CREATE TEMPORARY TABLE skytrace_sea_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .await
    .unwrap();

    let entry = tracer.entry_span("mysql-job", &());
    async {
        user::Entity::insert(ada(7, "Ada")).exec(&db).await.unwrap();
        let all = user::Entity::find().all(&db).await.unwrap();
        assert_eq!(all.len(), 1);
        let tx = db.begin().await.unwrap();
        user::Entity::delete_by_id(7).exec(&tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    .in_span(entry)
    .await;

    let segment = only_segment(&collector).await;
    let tree = tree(&segment);
    assert_eq!(
        names(&segment),
        [
            "mysql-job",
            "Mysql/sea-orm/execute",
            "Mysql/sea-orm/query",
            "Mysql/sea-orm/execute",
            "Mysql/sea-orm/commit",
        ],
        "{tree}"
    );
    let s = &segment.spans;
    for span in &s[1..] {
        assert_eq!(span.component_id, 5, "{tree}");
        assert_eq!(span.peer, "127.0.0.1:3306");
        assert_eq!(tag(span, "db.instance"), Some("test"));
        assert!(!span.is_error, "{tree}");
    }
    assert_eq!(
        tag(&s[1], "db.statement"),
        Some("INSERT INTO `skytrace_sea_users` (`id`, `name`) VALUES (?, ?)"),
        "{tree}"
    );
    assert_eq!(tag(&s[1], "db.sql.parameters"), Some("[7,'Ada']"), "{tree}");
    assert_eq!(tag(&s[2], "db.sql.parameters"), None, "{tree}");
    assert_eq!(tag(&s[3], "db.sql.parameters"), Some("[7]"), "{tree}");
}

/// The three PostgreSQL clients of this round in one request: one segment, an exit span of
/// each with its peer and layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_through_tokio_postgres_diesel_and_sea_orm() {
    use diesel_async::{AsyncConnection as _, RunQueryDsl as _};

    const URL: &str = "postgres://root@127.0.0.1:5432/test";
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let config: tokio_postgres::Config = URL.parse().unwrap();
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/ensure-services)");
    tokio::spawn(connection);
    let client = skytrace::integrations::tokio_postgres::PgTarget::new(&config).traced(client);
    let mut diesel = diesel_async::AsyncPgConnection::establish(URL)
        .await
        .unwrap();
    diesel.set_instrumentation(skytrace::integrations::diesel::DieselInstrumentation::for_url(URL));
    let orm = connect(URL, "PostgreSQL on 127.0.0.1:5432").await;

    let entry = tracer.entry_span("GET:/orders/{id}", &());
    async {
        client.query_one("SELECT 1", &[]).await.unwrap();
        diesel::sql_query("SELECT 2")
            .execute(&mut diesel)
            .await
            .unwrap();
        orm.execute_unprepared("SELECT 3").await.unwrap();
    }
    .in_span(entry)
    .await;

    let segment = only_segment(&collector).await;
    let tree = tree(&segment);
    assert_eq!(
        names(&segment),
        [
            "GET:/orders/{id}",
            "PostgreSQL/tokio-postgres/query",
            "PostgreSQL/diesel/query",
            "PostgreSQL/sea-orm/execute",
        ],
        "{tree}"
    );
    for (span, statement) in segment.spans[1..]
        .iter()
        .zip(["SELECT 1", "SELECT 2", "SELECT 3"])
    {
        assert_eq!(span.span_type, SpanType::Exit as i32, "{tree}");
        assert_eq!(span.span_layer, SpanLayer::Database as i32, "{tree}");
        assert_eq!(span.peer, "127.0.0.1:5432", "{tree}");
        assert_eq!(span.parent_span_id, 0, "{tree}");
        assert_eq!(tag(span, "db.statement"), Some(statement), "{tree}");
    }
}
