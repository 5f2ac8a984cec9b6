//! The users service: the one `demo-service` runs on its own.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use skytrace::integrations::axum::SkytraceLayer;

/// A user as the service returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The id asked for.
    pub id: u64,
    /// A name made up from the id.
    pub name: String,
}

/// Why a lookup failed.
#[derive(Debug)]
pub enum LookupError {
    /// No such user.
    NotFound(u64),
    /// The "database" failed.
    Database(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NotFound(id) => write!(f, "user {id} not found"),
            LookupError::Database(why) => write!(f, "database error: {why}"),
        }
    }
}

/// The router, traced by `layer` (one entry span per request, named after the route).
pub fn router(layer: SkytraceLayer) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/health", get(health))
        .layer(layer)
}

async fn health() -> &'static str {
    "ok"
}

async fn get_user(Path(id): Path<u64>) -> (StatusCode, String) {
    let trace = skytrace::current_trace_id().unwrap_or_else(|| "-".into());
    let (status, body) = match lookup_user(id).await {
        Ok(user) => (
            StatusCode::OK,
            format!("{{\"id\":{},\"name\":\"{}\"}}", user.id, user.name),
        ),
        Err(LookupError::NotFound(_)) => (StatusCode::NOT_FOUND, "not found".to_owned()),
        Err(e) => {
            // Through the `log` crate: with the demo's `SkyWalkingLogger`, this line also goes to
            // OAP's log view, linked to the request's trace.
            log::error!(target: "demo_users", "GET /users/{id} failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    };
    println!(
        "users: GET /users/{id} -> {} trace={trace}",
        status.as_u16()
    );
    (status, body)
}

/// Finds a user: checks a cache, then asks the database.
#[skytrace::trace(tags(user.id = id), err)]
pub async fn lookup_user(id: u64) -> Result<User, LookupError> {
    if let Some(user) = cache_get(id) {
        return Ok(user);
    }
    query_user(id).await
}

#[skytrace::trace(layer = Cache)]
fn cache_get(id: u64) -> Option<User> {
    // The demo's cache only knows the administrator.
    (id == 0).then(|| User {
        id,
        name: "admin".into(),
    })
}

/// The "database" call: an exit span to the database's address, so that OAP draws the
/// database on its map (a local span would not). Without servers in the demo it stands for
/// what the sqlx integration records by itself for every query.
#[skytrace::exit_span(
    name = "SELECT users",
    peer = "postgres:5432",
    layer = Database,
    component = POSTGRESQL,
    tags(db.type = "sql", db.statement = "SELECT id, name FROM users WHERE id = $1"),
    err
)]
async fn query_user(id: u64) -> Result<User, LookupError> {
    tokio::time::sleep(Duration::from_millis(2 + id % 5)).await;
    match id {
        13 => Err(LookupError::Database("connection reset by peer".into())),
        1..=100 => Ok(User {
            id,
            name: format!("user-{id}"),
        }),
        _ => Err(LookupError::NotFound(id)),
    }
}
