//! Oversized segments over real gRPC: long values are cut when encoded, and a segment still
//! over the message limit is dropped alone, never taking the segments around it with it.

use std::time::Duration;

use skytrace::Span;
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for, eventually, grpc_tracer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_of_five_one_megabyte_tags_is_cut_and_its_neighbours_arrive() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    let megabyte = "x".repeat(1 << 20);
    for i in 0..10 {
        drop(tracer.entry_span(format!("small-{i}"), &()));
    }
    {
        let big = tracer.entry_span("o".repeat(1_000), &());
        for t in 0..5 {
            big.add_tag(format!("big-{t}"), megabyte.clone());
        }
        big.log([("event", megabyte.clone())]);
        let _in = big.enter();
        drop(Span::exit("call", "p".repeat(1_000)));
    }
    for i in 10..20 {
        drop(tracer.entry_span(format!("small-{i}"), &()));
    }
    let segments = collector.wait_for_segments(21, WAIT).await;
    assert_eq!(segments.len(), 21);
    for i in 0..20 {
        skytrace_tests::segment(&segments, &format!("small-{i}"));
    }
    let big = segments
        .iter()
        .find(|s| s.spans[0].operation_name.starts_with('o'))
        .expect("the big segment arrives, cut");
    let entry = &big.spans[0];
    // The Java agent's limits: 150 characters for an operation name, 200 for a peer.
    assert_eq!(entry.operation_name.chars().count(), 150);
    assert_eq!(big.spans[1].peer.chars().count(), 200);
    assert_eq!(entry.tags.len(), 5);
    for tag in &entry.tags {
        assert!(tag.value.len() <= 2048, "{}", tag.value.len());
        assert!(tag.value.starts_with("xxx"));
    }
    assert!(entry.logs[0].data[0].value.len() <= 2048);
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!(
        (stats.sent, stats.dropped, stats.failed),
        (21, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_over_the_message_limit_after_cuts_is_dropped_alone() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    let value = "v".repeat(2048);
    for i in 0..10 {
        drop(tracer.entry_span(format!("small-{i}"), &()));
    }
    {
        // 300 spans (the default span limit) of 8 tags of 2 KiB: about 5 MB once cut, over the
        // default 4 MB message limit (tonic's and grpc-go's).
        let huge = tracer.entry_span("huge", &());
        let _in = huge.enter();
        for _ in 1..300 {
            let span = Span::local("step");
            for t in 0..8 {
                span.add_tag(format!("t{t}"), value.clone());
            }
        }
    }
    for i in 10..20 {
        drop(tracer.entry_span(format!("small-{i}"), &()));
    }
    let segments = collector.wait_for_segments(20, WAIT).await;
    assert_eq!(segments.len(), 20);
    for i in 0..20 {
        skytrace_tests::segment(&segments, &format!("small-{i}"));
    }
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!(collector.segment_count(), 20);
    assert_eq!(
        (stats.sent, stats.dropped, stats.failed),
        (20, 1, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_limit_is_configurable() {
    let collector = Collector::start().await.unwrap();
    // 64 KiB: a segment of 60 tags of 2 KiB (about 120 KiB) is over it, small ones are not.
    let tracer = grpc_tracer(config_for(collector.addr()).max_message_size(64 * 1024));
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    drop(tracer.entry_span("small-before", &()));
    {
        let big = tracer.entry_span("big", &());
        for t in 0..60 {
            big.add_tag(format!("t{t}"), "v".repeat(2048));
        }
    }
    drop(tracer.entry_span("small-after", &()));
    let segments = collector.wait_for_segments(2, WAIT).await;
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!(segments.len(), 2);
    assert_eq!((stats.sent, stats.dropped), (2, 1), "{stats:?}");
    // Out of range: an error naming the setting.
    let err = skytrace::Config::builder()
        .max_message_size(1024)
        .build()
        .unwrap_err();
    assert_eq!(err.variable, "max_message_size");
    let err = skytrace::Config::builder()
        .env(|n: &str| (n == "SW_AGENT_MAX_MESSAGE_SIZE").then(|| "4MB".to_owned()))
        .unwrap_err();
    assert_eq!(err.variable, "SW_AGENT_MAX_MESSAGE_SIZE");
}
