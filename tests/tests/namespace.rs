//! Namespace and cluster as the SkyWalking agents do them today: the service name becomes
//! `name|namespace|cluster`, `namespace` is an instance property, and the propagation headers
//! keep their plain names, so traces cross between namespaces. Over real gRPC.

use skytrace::Sw8Header;
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for, eventually, grpc_tracer, segment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_services_report_their_full_name_and_continue_each_others_traces() {
    let collector = Collector::start().await.unwrap();
    let front = grpc_tracer(
        config_for(collector.addr())
            .service_name("front")
            .namespace("blue")
            .cluster("east"),
    );
    let back = grpc_tracer(
        config_for(collector.addr())
            .service_name("back")
            .namespace("green"),
    );

    let mut headers = http::HeaderMap::new();
    let entry = front.entry_span("GET:/front", &());
    {
        let _in = entry.enter();
        let exit = skytrace::Span::exit("GET:/back", "back:8080");
        let _in = exit.enter();
        assert!(skytrace::inject(&mut headers));
    }
    drop(entry);
    // The header's name is never prefixed; its parent service is the full name.
    assert_eq!(headers.len(), 1, "{headers:?}");
    let sw8 = Sw8Header::decode(headers["sw8"].to_str().unwrap()).unwrap();
    assert_eq!(sw8.parent_service, "front|blue|east");

    let entry = back.entry_span("GET:/back", &headers);
    assert!(entry.is_recording());
    drop(entry);

    let segments = collector.wait_for_segments(2, WAIT).await;
    let front_segment = segment(&segments, "GET:/front");
    let back_segment = segment(&segments, "GET:/back");
    assert_eq!(front_segment.service, "front|blue|east");
    assert_eq!(back_segment.service, "back|green");
    assert_eq!(back_segment.trace_id, front_segment.trace_id);
    let reference = &back_segment.spans[0].refs[0];
    assert_eq!(reference.parent_service, "front|blue|east");
    assert_eq!(
        reference.parent_trace_segment_id,
        front_segment.trace_segment_id
    );

    // `namespace` is sent as an instance property (an empty one is not).
    assert!(
        eventually(WAIT, || {
            let properties = collector.instance_properties();
            let of = |service: &str| {
                properties
                    .iter()
                    .filter(|p| p.service == service)
                    .flat_map(|p| &p.properties)
                    .find(|kv| kv.key == "namespace")
                    .map(|kv| kv.value.clone())
            };
            of("front|blue|east").as_deref() == Some("blue")
                && of("back|green").as_deref() == Some("green")
        })
        .await,
        "{:#?}",
        collector.instance_properties()
    );
}

#[test]
fn empty_parts_are_left_out_of_the_service_name() {
    let name = |namespace: &str, cluster: &str| {
        skytrace::Config::builder()
            .service_name("svc")
            .namespace(namespace)
            .cluster(cluster)
            .build()
            .unwrap()
            .service_name()
            .to_owned()
    };
    assert_eq!(name("", ""), "svc");
    assert_eq!(name("ns", ""), "svc|ns");
    assert_eq!(name("", "c1"), "svc|c1");
    assert_eq!(name("ns", "c1"), "svc|ns|c1");
}
