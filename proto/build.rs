//! Compiles `protos/*.proto` with protox (a protobuf compiler written in Rust), so that building
//! this crate needs nothing but cargo: no system `protoc`.

use std::error::Error;

const PROTOS: &[&str] = &[
    "common.proto",
    "tracing.proto",
    "management.proto",
    "logging.proto",
    "meter.proto",
    "configuration_discovery.proto",
    "event.proto",
    "profile_task.proto",
    "pprof_task.proto",
    "pprof_profile.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=protos/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["protos"])?;
    tonic_prost_build::configure()
        .build_client(cfg!(feature = "client"))
        .build_server(cfg!(feature = "server"))
        .compile_fds(descriptors)?;
    Ok(())
}
