//! The demo's users service on its own, reporting to `SW_AGENT_COLLECTOR_BACKEND_SERVICES`:
//! for pointing a load generator and a real OAP at it.
//!
//! ```sh
//! SW_AGENT_COLLECTOR_BACKEND_SERVICES=127.0.0.1:11800 \
//!   cargo run -p skytrace-examples --bin demo-service -- --addr 127.0.0.1:3000
//! curl http://127.0.0.1:3000/users/7
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use skytrace::Config;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace_examples::{serve, users};

const USAGE: &str = "usage: demo-service [--addr HOST:PORT]   (default 127.0.0.1:3000)";

fn parse_args() -> Result<SocketAddr, String> {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 3000).into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                let value = args.next().ok_or("--addr needs a value")?;
                addr = value
                    .parse()
                    .map_err(|_| format!("--addr: {value:?} is not HOST:PORT"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(addr)
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config::builder()
        .service_name("demo-service")
        .ignore_paths("/health")
        .env(|name| std::env::var(name).ok())
        .and_then(|b| b.build());
    let guard = match config
        .map_err(skytrace::InitError::from)
        .and_then(skytrace::init)
    {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("demo-service: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("demo-service: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("demo-service on http://{addr} (GET /users/{{id}}, GET /health); Ctrl-C stops");
    tokio::select! {
        _ = serve(listener, users::router(SkytraceLayer::new())) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let stats = guard.shutdown(Duration::from_secs(5));
    println!(
        "demo-service: sent {} segments, dropped {}, failed {}",
        stats.sent, stats.dropped, stats.failed
    );
    ExitCode::SUCCESS
}
