//! The services of skytrace's demo, shared by the `demo` and `demo-service` binaries.
//!
//! - [`users`]: `GET /users/{id}` looks a user up through a traced lookup with a
//!   `Database`-layer span inside; `GET /health` is not traced. Instrumented with the axum layer.
//! - [`frontend`]: `GET /checkout/{user_id}` is an `#[entry_span]` handler that calls the users
//!   service over HTTP (reqwest, an exit span carrying `sw8`) and prices the cart locally.

pub mod frontend;
pub mod users;

use std::net::SocketAddr;

/// Serves `router` on `listener` until the process ends, with client addresses available to
/// the tracing layer (for the entry span's peer).
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, service).await {
        eprintln!("server stopped: {e}");
    }
}
