//! An actix-web service traced by `skytrace::integrations::actix_web::SkytraceMiddleware`: one
//! entry span per request, named after the route pattern (`GET:/users/{id}`). Segments go to the
//! console unless `SW_AGENT_COLLECTOR_BACKEND_SERVICES` is set.
//!
//! ```sh
//! # Sends itself a few requests, prints the segments, exits:
//! cargo run -p skytrace-examples --example actix_server
//! # Keeps serving on 127.0.0.1:3001 (try `curl http://127.0.0.1:3001/users/42`):
//! cargo run -p skytrace-examples --example actix_server -- serve
//! ```

use std::error::Error;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use skytrace::integrations::actix_web::SkytraceMiddleware;

fn main() -> Result<(), Box<dyn Error>> {
    let agent = skytrace_examples::init_example("actix-example")?;
    let serve_forever = std::env::args().nth(1).as_deref() == Some("serve");
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .wrap(SkytraceMiddleware::new())
                .route("/users/{id}", web::get().to(get_user))
                .route("/fail", web::get().to(fail))
                .route("/health", web::get().to(|| async { "ok" }))
        })
        .workers(1)
        .bind(("127.0.0.1", if serve_forever { 3001 } else { 0 }))?;
        let addr = server.addrs()[0];
        let server = server.run();
        if serve_forever {
            println!("listening on http://{addr}: try `curl http://{addr}/users/42`");
            return server.await.map_err(Box::<dyn Error>::from);
        }
        let handle = server.handle();
        let running = actix_web::rt::spawn(server);
        let client = reqwest::Client::new();
        for path in ["/users/42", "/fail", "/health"] {
            let status = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await?
                .status();
            println!("GET {path} -> {status}");
        }
        handle.stop(true).await;
        running.await??;
        Ok(())
    })?;
    agent.shutdown(Duration::from_secs(5));
    Ok(())
}

async fn get_user(id: web::Path<u64>) -> String {
    load_user(*id).await
}

/// A traced function: a local span, child of the request's entry span.
#[skytrace::trace(tags(user.id = id))]
async fn load_user(id: u64) -> String {
    tokio::time::sleep(Duration::from_millis(3)).await;
    format!("user {id}")
}

/// A handler error answered with a 500: the entry span fails and logs the error.
async fn fail() -> Result<String, actix_web::Error> {
    Err(actix_web::error::ErrorInternalServerError("database down"))
}
