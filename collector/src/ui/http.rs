//! The web view's HTTP/1.1 server (hyper, already in the tree through tonic): the page, compiled
//! into the binary, its JSON API, and long polls that end when something new arrives.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::api;
use super::store::Store;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/app.css");

/// Connections served at once (a browser opens about six); more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long `/api/changes` waits for a change before it answers anyway.
const LONG_POLL: Duration = Duration::from_secs(25);
/// The most traces or log records one answer lists.
const MAX_LIMIT: usize = 100_000;
/// How long to wait before accepting again after `accept` failed (e.g. out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the page on `listener` until `shutdown` turns `true` (or its sender is gone).
pub(crate) async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Bound to loopback, only loopback names are answered (see `host_allowed`).
    let open = listener.local_addr().is_ok_and(|a| !a.ip().is_loopback());
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let store = Arc::clone(&store);
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let store = Arc::clone(&store);
                async move { Ok::<_, Infallible>(handle(request, &store, open).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                // With a timer, hyper closes a connection whose headers take over 30 s.
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

async fn handle(request: Request<Incoming>, store: &Store, open: bool) -> Reply {
    if !open && !host_allowed(request.headers().get(header::HOST)) {
        // A page of another site reaching loopback through DNS rebinding names its own host.
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "this collector's web view answers loopback addresses and `localhost` only\n",
        );
    }
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        reply
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return reply;
    }
    let query = Query::parse(request.uri().query().unwrap_or(""));
    let mut reply = match request.uri().path() {
        "/" | "/index.html" => asset(INDEX, "text/html; charset=utf-8"),
        "/app.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "/app.css" => asset(STYLE, "text/css; charset=utf-8"),
        "/api/overview" => json(StatusCode::OK, api::overview(&store.lock())),
        "/api/traces" => {
            let filter = api::TraceQuery {
                service: query.get("service").to_owned(),
                text: query.get("q").to_owned(),
                errors: matches!(query.get("errors"), "1" | "true" | "on"),
                min_ms: query.get("min_ms").trim().parse().unwrap_or(0),
                limit: query.limit(api::DEFAULT_LIMIT),
            };
            json(StatusCode::OK, api::traces(&store.lock(), &filter))
        }
        "/api/trace" => {
            let id = query.get("id");
            // Copied under the lock, built without it.
            let copy = api::copy_trace(&store.lock(), id);
            match copy {
                Some(copy) => json(StatusCode::OK, api::trace(&copy)),
                None => {
                    let mut body = String::new();
                    let mut o = super::json::Object::new(&mut body);
                    o.str(
                        "error",
                        "no such trace is kept: it never arrived, or its segments were dropped (--keep)",
                    )
                    .str("id", id);
                    o.end();
                    json(StatusCode::NOT_FOUND, body)
                }
            }
        }
        "/api/logs" => {
            let filter = api::LogQuery {
                service: query.get("service").to_owned(),
                text: query.get("q").to_owned(),
                limit: query.limit(api::DEFAULT_LIMIT),
            };
            json(StatusCode::OK, api::logs(&store.lock(), &filter))
        }
        "/api/instances" => json(StatusCode::OK, api::instances(&store.lock())),
        "/api/meters" => json(StatusCode::OK, api::meters(&store.lock())),
        "/api/events" => json(StatusCode::OK, api::events(&store.lock())),
        "/api/changes" => {
            let after: Option<u64> = query.get("after").parse().ok();
            let mut changes = store.changes();
            if let Some(after) = after {
                // Any other version counts: a restarted collector starts again from zero.
                let _ = tokio::time::timeout(LONG_POLL, changes.wait_for(|v| *v != after)).await;
            }
            let version = *changes.borrow();
            json(StatusCode::OK, format!("{{\"version\":{version}}}"))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if head {
        *reply.body_mut() = Full::new(Bytes::new());
    }
    reply
}

/// Whether the `Host` header names a loopback address or `localhost` (or is absent, HTTP/1.0).
fn host_allowed(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn base(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    reply
}

fn asset(body: &'static str, content_type: &'static str) -> Reply {
    let mut reply = base(
        StatusCode::OK,
        content_type,
        Bytes::from_static(body.as_bytes()),
    );
    let headers = reply.headers_mut();
    // Served from this binary: a new build must show at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Only this server's own script and style run; nothing is fetched from elsewhere.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    reply
}

fn json(status: StatusCode, body: String) -> Reply {
    let mut reply = base(status, "application/json", Bytes::from(body));
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    base(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

/// A request's query string, decoded (`application/x-www-form-urlencoded`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Query {
        Query(
            query
                .split('&')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    let (k, v) = part.split_once('=').unwrap_or((part, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `key`, or "".
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    fn limit(&self, default: usize) -> usize {
        self.get("limit")
            .parse()
            .unwrap_or(default)
            .clamp(1, MAX_LIMIT)
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let query = Query::parse("q=GET%3A%2Fusers%2F%7Bid%7D&service=a+b&bad=%zz%4&limit=0&e=");
        assert_eq!(query.get("q"), "GET:/users/{id}");
        assert_eq!(query.get("service"), "a b");
        assert_eq!(query.get("bad"), "%zz%4");
        assert_eq!(query.get("missing"), "");
        assert_eq!(query.limit(5), 1);
        assert_eq!(Query::parse("").limit(5), 5);
        assert_eq!(Query::parse("limit=99999999999").limit(5), MAX_LIMIT);
        assert_eq!(decode("%C3%A9%FF"), "é\u{fffd}");
    }

    #[test]
    fn answers_loopback_names_only() {
        let allowed = |host: &str| host_allowed(Some(&HeaderValue::from_str(host).unwrap()));
        for host in [
            "127.0.0.1:8080",
            "127.9.9.9",
            "[::1]:80",
            "localhost:1",
            "LOCALHOST.",
            "app.localhost:3",
        ] {
            assert!(allowed(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "10.0.0.1",
            "[::2]:80",
            "localhost.evil.example",
            "",
        ] {
            assert!(!allowed(host), "{host}");
        }
        assert!(host_allowed(None));
    }
}
