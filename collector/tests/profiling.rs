//! The collector's profiling services over real gRPC, driven by skytrace-proto's tonic clients
//! as an agent would: tasks served once, profiles joined from their chunks, a pprof upload
//! refused past the size limit.

use std::io::Write as _;
use std::time::Duration;

use prost::Message as _;
use skytrace_collector::{Collector, PprofTaskSpec, ProfileTaskSpec, render_profile};
use skytrace_proto::pprof::{Function, Label, Line, Location, Profile, Sample};
use skytrace_proto::v3::profile_task_client::ProfileTaskClient;
use skytrace_proto::v3::{
    Commands, GoProfileData, ProfileTaskCommandQuery, ProfileTaskFinishReport,
};
use skytrace_proto::v10::pprof_task_client::PprofTaskClient;
use skytrace_proto::v10::{
    PprofData, PprofMetaData, PprofProfilingStatus, PprofTaskCommandQuery, pprof_data,
};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(5);

async fn channel(collector: &Collector) -> Channel {
    Channel::from_shared(collector.url())
        .unwrap()
        .connect()
        .await
        .expect("the collector accepts connections")
}

fn arg<'a>(commands: &'a Commands, key: &str) -> &'a str {
    commands.commands[0]
        .args
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
        .unwrap_or_else(|| panic!("no {key} in {commands:?}"))
}

fn profile() -> Profile {
    let strings = [
        "",
        "main",
        "burn",
        "traceSegmentID",
        "seg-1",
        "traceID",
        "trace-1",
    ];
    Profile {
        string_table: strings.iter().map(|s| (*s).to_owned()).collect(),
        function: vec![
            Function {
                id: 1,
                name: 1,
                ..Default::default()
            },
            Function {
                id: 2,
                name: 2,
                ..Default::default()
            },
        ],
        location: vec![
            Location {
                id: 1,
                line: vec![Line {
                    function_id: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
            Location {
                id: 2,
                line: vec![Line {
                    function_id: 2,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        sample: vec![Sample {
            location_id: vec![2, 1],
            value: vec![4, 40_000_000],
            label: vec![
                Label {
                    key: 3,
                    str: 4,
                    ..Default::default()
                },
                Label {
                    key: 5,
                    str: 6,
                    ..Default::default()
                },
            ],
        }],
        period: 10_000_000,
        ..Default::default()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_profile_task_is_served_once_and_its_report_joined_from_chunks() {
    let collector = Collector::builder()
        .profile_task(ProfileTaskSpec::new(
            "GET:/slow",
            Duration::from_secs(5),
            Duration::from_millis(50),
        ))
        .start()
        .await
        .unwrap();
    let mut client = ProfileTaskClient::new(channel(&collector).await);
    let query = |last| ProfileTaskCommandQuery {
        service: "svc".into(),
        service_instance: "svc-1".into(),
        last_command_time: last,
    };
    let commands = client
        .get_profile_task_commands(query(0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(commands.commands[0].command, "ProfileTaskQuery");
    assert_eq!(arg(&commands, "EndpointName"), "GET:/slow");
    assert_eq!(arg(&commands, "MinDurationThreshold"), "50");
    assert_eq!(arg(&commands, "Duration"), "1");
    let start: i64 = arg(&commands, "StartTime").parse().unwrap();
    let create: i64 = arg(&commands, "CreateTime").parse().unwrap();
    // A 5 s task: one minute from a start 55 s back.
    assert_eq!(create - start, 55_000);
    let again = client
        .get_profile_task_commands(query(create))
        .await
        .unwrap()
        .into_inner();
    assert!(
        again.commands.is_empty(),
        "a task already received is not sent again"
    );

    let bytes = gzip(&profile().encode_to_vec());
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let chunks = vec![
        GoProfileData {
            task_id: "profile-task-1".into(),
            payload: first.to_vec(),
            is_last: false,
        },
        GoProfileData {
            task_id: "profile-task-1".into(),
            payload: second.to_vec(),
            is_last: true,
        },
    ];
    client
        .go_profile_report(tokio_stream::iter(chunks))
        .await
        .unwrap();
    client
        .report_task_finish(ProfileTaskFinishReport {
            service: "svc".into(),
            service_instance: "svc-1".into(),
            task_id: "profile-task-1".into(),
        })
        .await
        .unwrap();
    assert!(
        collector
            .wait_for(WAIT, |r| !r.profile_reports.is_empty()
                && !r.profile_task_finishes.is_empty())
            .await
    );
    let received = collector.received();
    let report = &received.profile_reports[0];
    assert_eq!(report.chunks, [first.len(), second.len()]);
    let decoded = report.profile.as_ref().expect("a pprof");
    assert_eq!(decoded, &profile());
    assert!(
        render_profile(decoded)
            .starts_with("segment seg-1 (trace trace-1): 4 samples, 40 ms of CPU\n")
    );
    assert_eq!(received.profile_task_queries.len(), 2);
    assert_eq!(received.profile_task_finishes[0].task_id, "profile-task-1");
}

async fn upload(
    client: &mut PprofTaskClient<Channel>,
    content: Vec<u8>,
    size: i32,
) -> (PprofProfilingStatus, usize) {
    let metadata = PprofData {
        metadata: Some(PprofMetaData {
            service: "svc".into(),
            service_instance: "svc-1".into(),
            task_id: "pprof-task-1".into(),
            r#type: PprofProfilingStatus::PprofProfilingSuccess as i32,
            content_size: size,
        }),
        result: None,
    };
    let chunk = PprofData {
        metadata: None,
        result: Some(pprof_data::Result::Content(content)),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(metadata).await.unwrap();
    let mut responses = client
        .collect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let status = responses
        .message()
        .await
        .unwrap()
        .expect("a status for the metadata")
        .status();
    if status == PprofProfilingStatus::PprofProfilingSuccess {
        tx.send(chunk).await.unwrap();
    }
    drop(tx);
    let mut more = 0;
    while responses.message().await.unwrap().is_some() {
        more += 1;
    }
    (status, more)
}

#[tokio::test]
async fn a_pprof_task_is_served_and_an_upload_past_the_limit_refused() {
    let collector = Collector::builder()
        .pprof_task(PprofTaskSpec::new("cpu", Duration::from_secs(3)))
        .pprof_max_size(10_000)
        .start()
        .await
        .unwrap();
    let mut client = PprofTaskClient::new(channel(&collector).await);
    let commands = client
        .get_pprof_task_commands(PprofTaskCommandQuery {
            service: "svc".into(),
            service_instance: "svc-1".into(),
            last_command_time: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(commands.commands[0].command, "PprofTaskQuery");
    assert_eq!(arg(&commands, "Events"), "cpu");
    assert_eq!(arg(&commands, "Duration"), "1");

    let bytes = gzip(&profile().encode_to_vec());
    let size = bytes.len() as i32;
    assert_eq!(
        upload(&mut client, bytes.clone(), size).await,
        (PprofProfilingStatus::PprofProfilingSuccess, 0)
    );
    assert_eq!(
        upload(&mut client, Vec::new(), 20_000).await,
        (PprofProfilingStatus::PprofTerminatedByOversize, 0)
    );
    assert!(
        collector
            .wait_for(WAIT, |r| r.pprof_reports.len() == 2)
            .await
    );
    let reports = collector.received().pprof_reports;
    assert_eq!(reports[0].profile.as_ref(), Some(&profile()));
    assert_eq!(reports[0].bytes, bytes);
    assert_eq!(
        reports[1].status,
        PprofProfilingStatus::PprofTerminatedByOversize
    );
    assert!(reports[1].bytes.is_empty());
}
