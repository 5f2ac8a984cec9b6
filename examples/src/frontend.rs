//! The frontend service: a handler calling the users service, traced by the axum layer.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace::integrations::reqwest::RequestBuilderExt;

/// Where the users service listens, and the client to call it with.
#[derive(Clone, Debug)]
pub struct Backends {
    /// `http://host:port` of the users service.
    pub users: String,
    /// Shared HTTP client.
    pub client: reqwest::Client,
}

/// The router, traced by the axum layer on the global tracer: an entry span per request named
/// after its route (`GET:/checkout/{user_id}`), continuing the caller's `sw8`, tagged with the
/// method, the url and `http.status_code`, and failed on a 5xx, as the README's table says.
pub fn router(backends: Backends) -> Router {
    Router::new()
        .route("/checkout/{user_id}", get(checkout))
        .with_state(backends)
        .layer(SkytraceLayer::new())
}

async fn checkout(
    State(backends): State<Backends>,
    Path(user_id): Path<u64>,
) -> (StatusCode, String) {
    let trace = skytrace::current_trace_id().unwrap_or_else(|| "-".into());
    let result = match fetch_user(&backends, user_id).await {
        Ok(user) => {
            let total = price_cart(user_id).await;
            (StatusCode::OK, format!("{user}: total {total}"))
        }
        Err(status) => (status, format!("users service answered {status}")),
    };
    println!(
        "frontend: GET /checkout/{user_id} -> {} trace={trace}",
        result.0.as_u16()
    );
    result
}

/// Calls the users service: an exit span with `sw8` on the request, by the reqwest integration.
async fn fetch_user(backends: &Backends, id: u64) -> Result<String, StatusCode> {
    let url = format!("{}/users/{id}", backends.users);
    let response = backends
        .client
        .get(url)
        .send_traced()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    if !response.status().is_success() {
        return Err(
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
        );
    }
    response.text().await.map_err(|_| StatusCode::BAD_GATEWAY)
}

#[skytrace::trace(tags(items = 3))]
async fn price_cart(user_id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    apply_discount(user_id * 100)
}

#[skytrace::trace]
fn apply_discount(amount: u64) -> u64 {
    amount - amount / 10
}
