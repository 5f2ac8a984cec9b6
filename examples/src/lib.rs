//! The services of skytrace's demo, shared by the `demo` and `demo-service` binaries.
//!
//! - [`users`]: `GET /users/{id}` looks a user up through a traced lookup with a database call
//!   inside (an `#[exit_span]` to `postgres:5432`, so OAP's map shows the database); `GET
//!   /health` is not traced. Instrumented with the axum layer.
//! - [`frontend`]: `GET /checkout/{user_id}` (the axum layer on the global tracer: the entry
//!   span carries the status, and a 5xx fails it) calls the users service over HTTP (reqwest,
//!   an exit span carrying `sw8`) and prices the cart locally.

pub mod frontend;
pub mod users;

use std::net::SocketAddr;

use skytrace::{Config, ReporterKind, TracerGuard};

/// How the runnable examples install tracing: the console reporter unless
/// `SW_AGENT_COLLECTOR_BACKEND_SERVICES` names an OAP; `/health` is not traced; every `SW_AGENT_*`
/// variable applies on top.
pub fn init_example(service: &str) -> Result<TracerGuard, Box<dyn std::error::Error>> {
    let to_oap = std::env::var_os("SW_AGENT_COLLECTOR_BACKEND_SERVICES").is_some();
    let config = Config::builder()
        .service_name(service)
        .ignore_paths("/health")
        .reporter(if to_oap {
            ReporterKind::Grpc
        } else {
            ReporterKind::Console
        })
        .env(|name| std::env::var(name).ok())?
        .build()?;
    Ok(skytrace::init(config)?)
}

/// Serves `router` on `listener` until the process ends, with client addresses available to
/// the tracing layer (for the entry span's peer).
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, service).await {
        eprintln!("server stopped: {e}");
    }
}
