//! redis 0.32, the previous redis line (feature `redis-0-32`): the real redis 0.32 client and
//! its pools (deadpool-redis 0.22, bb8-redis 0.24) against the local Redis (127.0.0.1:6379;
//! `scripts/ensure-services` starts it), through the same `TracedConnection` as redis 1.x and
//! `skytrace::integrations::redis_0_32::RedisConnectionExt`, reporting over gRPC to an
//! in-process collector. The spans must be those of redis 1.x (`data_stores.rs`,
//! `redis_pools.rs`): names, peer, layer, component and tags.

use redis_0_32::AsyncCommands;
use skytrace::Instrument;
use skytrace::integrations::redis_0_32::{Pooled, RedisConnectionExt, TracedConnection};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SpanLayer, SpanType};
use skytrace_tests::{log_message, names, only_segment, tag, tags};

const URL: &str = "redis://127.0.0.1:6379/";
const NEEDS_REDIS: &str = "Redis on 127.0.0.1:6379 (scripts/ensure-services)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_0_32_commands_pipelines_and_error_replies_are_the_exit_spans_of_1_x() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let client = redis_0_32::Client::open(URL).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect(NEEDS_REDIS)
        .traced(&client);
    assert_eq!(conn.peer(), "127.0.0.1:6379");
    let key = skytrace_tests::unique_name("skytrace:user032", '_');
    let counter = skytrace_tests::unique_name("skytrace:n032", '_');

    let entry = tracer.entry_span("cache-job", &());
    async {
        let _: () = conn.set(&key, "Ada").await.unwrap();
        let name: Option<String> = conn.get(&key).await.unwrap();
        assert_eq!(name.as_deref(), Some("Ada"));
        // INCR on text: an error reply.
        let failed: redis_0_32::RedisResult<i64> = conn.incr(&key, 1).await;
        let error = failed.unwrap_err();
        assert!(error.to_string().contains("not an integer"), "{error}");
        let (n, m): (i64, i64) = redis_0_32::pipe()
            .incr(&counter, 2)
            .get(&counter)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((n, m), (2, 2));
        // An atomic pipeline whose second command fails: the error reply is in its values.
        let failed: redis_0_32::RedisResult<(i64, i64)> = redis_0_32::pipe()
            .atomic()
            .incr(&counter, 1)
            .incr(&key, 1)
            .query_async(&mut conn)
            .await;
        assert!(failed.is_err());
        let _: () = redis_0_32::cmd("PING")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    .in_span(entry)
    .await;
    // Outside the trace: no span.
    let _: () = conn.del(vec![key.clone(), counter.clone()]).await.unwrap();

    let segment = only_segment(&collector).await;
    let tree = render_trace_tree(std::slice::from_ref(&segment));
    let s = &segment.spans;
    assert_eq!(
        names(&segment),
        [
            "cache-job",
            "Redis/SET",
            "Redis/GET",
            "Redis/INCRBY",
            "Redis/PIPELINE",
            "Redis/MULTI",
            "Redis/PING"
        ],
        "{tree}"
    );
    for span in &s[1..] {
        assert_eq!(span.span_type, SpanType::Exit as i32, "{tree}");
        assert_eq!(span.span_layer, SpanLayer::Cache as i32);
        assert_eq!(span.component_id, 7);
        assert_eq!(span.peer, "127.0.0.1:6379");
        assert_eq!(span.parent_span_id, 0);
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
    assert_eq!(
        tags(&s[2]),
        [
            ("cache.type", "redis"),
            ("cache.op", "read"),
            ("cache.key", key.as_str()),
            ("cache.cmd", "GET")
        ]
    );
    // The error reply as Redis wrote it.
    assert_eq!(
        log_message(&s[3]),
        Some("ERR value is not an integer or out of range"),
        "{tree}"
    );
    assert_eq!(tag(&s[4], "cache.cmd"), Some("INCRBY;GET"));
    assert_eq!(tag(&s[4], "cache.op"), Some("write"));
    assert_eq!(tag(&s[4], "cache.key"), Some(counter.as_str()));
    assert_eq!(tag(&s[5], "cache.cmd"), Some("INCRBY;INCRBY"));
    assert!(
        log_message(&s[5]).unwrap().contains("not an integer"),
        "{tree}"
    );
    assert_eq!(
        tags(&s[6]),
        [("cache.type", "redis"), ("cache.cmd", "PING")]
    );
    let failed: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_error).collect();
    assert_eq!(failed, [3, 5], "{tree}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_0_32_pooled_connections_are_exit_spans() {
    let collector = Collector::start().await.unwrap();
    let tracer = skytrace_tests::named_tracer(&collector, "shop");
    let client = redis_0_32::Client::open(URL).unwrap();
    let deadpool = deadpool_redis_0_22::Config::from_url(URL)
        .create_pool(Some(deadpool_redis_0_22::Runtime::Tokio1))
        .unwrap();
    let bb8 = bb8::Pool::builder()
        .max_size(2)
        .build(bb8_redis_0_24::RedisConnectionManager::new(URL).unwrap())
        .await
        .expect(NEEDS_REDIS);
    let key = skytrace_tests::unique_name("skytrace:pooled032", ':');

    let entry = tracer.entry_span("pooled", &());
    async {
        // deadpool-redis 0.22: its connection is a connection.
        let mut conn = deadpool.get().await.expect(NEEDS_REDIS).traced(&client);
        let _: () = conn.set(&key, "Ada").await.unwrap();
        drop(conn); // back to the pool

        // bb8-redis 0.24: its connection dereferences to one.
        let mut conn =
            TracedConnection::with_peer(Pooled(bb8.get().await.unwrap()), "127.0.0.1:6379");
        let name: Option<String> = conn.get(&key).await.unwrap();
        assert_eq!(name.as_deref(), Some("Ada"));
        let _: () = conn.del(&key).await.unwrap();
    }
    .in_span(entry)
    .await;

    let segment = only_segment(&collector).await;
    let tree = render_trace_tree(std::slice::from_ref(&segment));
    assert_eq!(
        names(&segment),
        ["pooled", "Redis/SET", "Redis/GET", "Redis/DEL"],
        "{tree}"
    );
    for span in &segment.spans[1..] {
        assert_eq!(span.span_type, SpanType::Exit as i32, "{tree}");
        assert_eq!(span.component_id, 7);
        assert_eq!(span.peer, "127.0.0.1:6379");
        assert_eq!(tag(span, "cache.key"), Some(key.as_str()));
        assert!(!span.is_error, "{tree}");
    }
}
