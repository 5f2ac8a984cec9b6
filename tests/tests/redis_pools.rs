//! Connections taken from deadpool-redis and bb8-redis keep their spans with the redis
//! integration, against the real local Redis (127.0.0.1:6379; `scripts/ensure-services` starts
//! it), reporting over gRPC to an in-process collector.

use redis::AsyncCommands;
use skytrace::Instrument;
use skytrace::integrations::redis::{Pooled, RedisConnectionExt, TracedConnection};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SpanLayer, SpanType};
use skytrace_tests::{names, only_segment, tag};

const URL: &str = "redis://127.0.0.1:6379/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_pooled_connections_are_exit_spans() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let client = redis::Client::open(URL).unwrap();
    let deadpool = deadpool_redis::Config::from_url(URL)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let bb8 = bb8::Pool::builder()
        .max_size(2)
        .build(bb8_redis::RedisConnectionManager::new(URL).unwrap())
        .await
        .expect("Redis on 127.0.0.1:6379 (scripts/ensure-services)");
    let key = skytrace_tests::unique_name("skytrace:pooled", ':');

    let entry = tracer.entry_span("pooled", &());
    async {
        // deadpool-redis: its connection is a connection.
        let mut conn = deadpool
            .get()
            .await
            .expect("Redis on 127.0.0.1:6379 (scripts/ensure-services)")
            .traced(&client);
        let _: () = conn.set(&key, "Ada").await.unwrap();
        let (a, b): (String, i64) = redis::pipe()
            .get(&key)
            .exists(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((a.as_str(), b), ("Ada", 1));
        drop(conn); // back to the pool

        // bb8-redis: its connection dereferences to one.
        let mut conn =
            TracedConnection::with_peer(Pooled(bb8.get().await.unwrap()), "127.0.0.1:6379");
        let name: Option<String> = conn.get(&key).await.unwrap();
        assert_eq!(name.as_deref(), Some("Ada"));
        let _: () = conn.del(&key).await.unwrap();
        let mut owned = Pooled(bb8.get_owned().await.unwrap()).traced(&client);
        let _: () = redis::cmd("PING").query_async(&mut owned).await.unwrap();
    }
    .in_span(entry)
    .await;

    let segment = only_segment(&collector).await;
    let tree = render_trace_tree(std::slice::from_ref(&segment));
    assert_eq!(
        names(&segment),
        [
            "pooled",
            "Redis/SET",
            "Redis/PIPELINE",
            "Redis/GET",
            "Redis/DEL",
            "Redis/PING"
        ],
        "{tree}"
    );
    for span in &segment.spans[1..] {
        assert_eq!(span.span_type, SpanType::Exit as i32, "{tree}");
        assert_eq!(span.span_layer, SpanLayer::Cache as i32);
        assert_eq!(span.component_id, 7);
        assert_eq!(span.peer, "127.0.0.1:6379");
        assert_eq!(span.parent_span_id, 0);
        assert_eq!(tag(span, "cache.type"), Some("redis"));
        assert!(!span.is_error, "{tree}");
    }
    let s = &segment.spans;
    assert_eq!(tag(&s[1], "cache.key"), Some(key.as_str()));
    assert_eq!(tag(&s[2], "cache.cmd"), Some("GET;EXISTS"));
    assert_eq!(tag(&s[3], "cache.op"), Some("read"));
    assert_eq!(tag(&s[4], "cache.op"), Some("write"));
}
