//! The collector's web view as a person uses it: the demo runs with `--ui` (its two services
//! sending traces, logs, meters and events to the embedded collector), and a real Chromium,
//! driven headless through chromedriver, opens the page: the trace list fills without a reload,
//! a click opens a trace's waterfall across both services, a click on a span shows its tags and
//! the log record written in it, the keyboard moves through the list, the other views show the
//! instances, meters and events, and a narrow window needs no sideways scrolling. One screenshot
//! is saved: `$CARGO_TARGET_TMPDIR/collector-ui.png`, and `docs/collector-ui.png` when
//! `SKYTRACE_UPDATE_SCREENSHOT=1` (the README's picture).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/ensure-browser` installs them);
//! without them the test fails, naming what is missing.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Generous: a cold Chromium on a loaded 2-core machine takes seconds to start.
const PATIENCE: Duration = Duration::from_secs(90);

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The installed program `name` (as Debian installs it), or a failure naming what is missing.
fn program(name: &str, package: &str) -> PathBuf {
    let candidates = [format!("/usr/bin/{name}"), format!("/usr/local/bin/{name}")];
    for candidate in &candidates {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "the web view's browser test needs `{name}` (Debian package `{package}`), which is not \
         installed: run scripts/ensure-browser (apt-get install chromium chromium-driver)"
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

/// Starts the demo with its web view on a free port: the process, its output and the page's URL.
fn start_demo() -> (Running, mpsc::Receiver<String>, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--ui", "127.0.0.1:0"])
        .env_remove("SW_AGENT_COLLECTOR_BACKEND_SERVICES")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let mut demo = Running(child);
    let stdout = demo.0.stdout.take().expect("its output");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the demo prints its web view's address");
        println!("demo: {line}");
        if let Some(rest) = line.strip_prefix("web view: ") {
            let url = rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
            return (demo, lines, url);
        }
    }
}

/// Starts chromedriver on a free port and waits until it answers.
fn start_chromedriver(driver: &Path) -> (Running, String) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
    let running = Running(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver does not answer on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (running, format!("http://{addr}"))
}

async fn connect(driver_url: &str, chromium: &Path, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,900",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url)
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"))
}

/// Waits until `check` returns `Some` (re-reading the page each time), or fails saying `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "the page never showed {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text of every element `css` finds (elements replaced meanwhile are skipped).
async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap_or_default() {
        if let Ok(text) = element.text().await {
            out.push(text);
        }
    }
    out
}

/// The first element `css` finds whose text contains `needle`.
async fn find_with_text(client: &Client, css: &str, needle: &str) -> Option<Element> {
    for element in client.find_all(Locator::Css(css)).await.ok()? {
        if element.text().await.is_ok_and(|t| t.contains(needle)) {
            return Some(element);
        }
    }
    None
}

/// Clicks the `inner` element of the first `css` element containing `needle`, again if the page
/// redrew it meanwhile (it follows new data as it arrives).
async fn click_in(client: &Client, css: &str, needle: &str, inner: &str) {
    eventually(
        &format!("a clickable {inner} in {css} with {needle:?}"),
        || async {
            let outer = find_with_text(client, css, needle).await?;
            let target = outer.find(Locator::Css(inner)).await.ok()?;
            target.click().await.ok()
        },
    )
    .await
}

async fn js(client: &Client, script: &str) -> serde_json::Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script `{script}` failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_shows_the_demos_traces_as_a_person_uses_it() {
    let chromium = program("chromium", "chromium");
    let driver = program("chromedriver", "chromium-driver");
    let profile =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);

    let (_demo, _demo_output, url) = start_demo();
    let (_chromedriver, driver_url) = start_chromedriver(&driver);
    let client = connect(&driver_url, &chromium, &profile).await;
    client.goto(&url).await.expect("the page opens");
    // Set once: still there later means the page was never reloaded.
    js(&client, "window.__sameDocument = true; return null;").await;

    // The list fills as the demo's traces arrive: a failed request crossed both services.
    eventually(
        "a failed trace across demo-frontend and demo-users",
        || async {
            let rows = texts(&client, "#trace-list tbody tr.has-error").await;
            rows.iter()
                .any(|r| r.contains("demo-frontend") && r.contains("demo-users"))
                .then_some(())
        },
    )
    .await;
    let rows = texts(&client, "#trace-list tbody tr[data-id]").await;
    assert!(
        rows.iter().all(|r| r.contains("GET:/checkout/{user_id}")),
        "every trace starts at the frontend's endpoint: {rows:#?}"
    );

    // Live: a new trace (the demo sends one every 2 s) shows at the top without a reload.
    let top = js(
        &client,
        "return document.querySelector('#trace-list tbody tr[data-id]').dataset.id",
    )
    .await;
    eventually("a new trace at the top of the list", || async {
        let now = js(
            &client,
            "return document.querySelector('#trace-list tbody tr[data-id]').dataset.id",
        )
        .await;
        (now != top).then_some(())
    })
    .await;
    assert_eq!(
        js(&client, "return window.__sameDocument === true").await,
        json!(true)
    );

    // Click failed traces until one is the database failure (/checkout/13; an unknown user's
    // 404 fails spans too): its waterfall nests the users service under the frontend's call.
    let mut spans = Vec::new();
    for attempt in 0.. {
        assert!(attempt < 20, "no failed trace shows the database failure");
        let ids = js(
            &client,
            "return [...document.querySelectorAll('#trace-list tbody tr.has-error')].map(r => r.dataset.id)",
        )
        .await;
        let ids: Vec<String> = serde_json::from_value(ids).expect("ids");
        let Some(id) = ids.get(attempt % ids.len().max(1)) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let link = format!("#trace-list tbody tr[data-id=\"{id}\"] a.open");
        let Ok(element) = client.find(Locator::Css(&link)).await else {
            continue;
        };
        if element.click().await.is_err() {
            continue;
        }
        client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("#waterfall .span-row"))
            .await
            .expect("the waterfall");
        spans = texts(&client, "#waterfall > .span-row > .line").await;
        if spans.iter().any(|s| s.contains("GET:/users/13")) {
            break;
        }
        client
            .find(Locator::Css("#back"))
            .await
            .expect("the way back")
            .click()
            .await
            .expect("back");
        client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("#trace-list tbody tr[data-id]"))
            .await
            .expect("the list again");
    }
    println!("waterfall:\n{}", spans.join("\n"));
    let at = |name: &str| {
        spans
            .iter()
            .position(|s| s.contains(name))
            .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
    };
    let (entry, call, callee) = (
        at("GET:/checkout/{user_id}"),
        at("GET:/users/13"),
        at("GET:/users/{id}"),
    );
    assert!(
        entry < call && call < callee,
        "frontend → its call → users: {spans:#?}"
    );
    assert!(spans[entry].contains("demo-frontend") && spans[callee].contains("demo-users"));
    let depths: Vec<u64> = serde_json::from_value(
        js(
            &client,
            "return [...document.querySelectorAll('#waterfall > .span-row')].map(r => Number(r.dataset.depth))",
        )
        .await,
    )
    .expect("depths");
    assert_eq!(
        (depths[entry], depths[call], depths[callee]),
        (0, 1, 2),
        "the users service's segment hangs under the frontend's exit span"
    );

    // Click the users service's entry span: its tags and the log record written in it.
    click_in(
        &client,
        "#waterfall > .span-row",
        "GET:/users/{id}",
        ".span-name",
    )
    .await;
    let detail = eventually("the callee's details", || async {
        let row = find_with_text(&client, "#waterfall > .span-row.open", "GET:/users/{id}").await?;
        let detail = row.find(Locator::Css(".span-detail")).await.ok()?;
        detail.text().await.ok()
    })
    .await;
    println!("details:\n{detail}");
    for expected in [
        "http.method",
        "GET",
        "status_code",
        "500",
        "demo-users / demo-users@127.0.0.1",
        "Http",
    ] {
        assert!(
            detail.contains(expected),
            "no {expected:?} in the span's details:\n{detail}"
        );
    }
    assert!(
        detail.contains("ERROR") && detail.contains("GET /users/13 failed: database error"),
        "the log record written in the span is shown with it:\n{detail}"
    );

    // The screenshot: this trace, the callee's details open (the frontend's failed call, opened
    // first as the first failure, closed with a click).
    click_in(
        &client,
        "#waterfall > .span-row.open",
        "GET:/users/13",
        ".span-name",
    )
    .await;
    eventually("the call's details closed", || async {
        let open = texts(&client, "#waterfall > .span-row.open > .line").await;
        (open.len() == 1 && open[0].contains("GET:/users/{id}")).then_some(())
    })
    .await;
    let png = client.screenshot().await.expect("a screenshot");
    let saved = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("collector-ui.png");
    std::fs::write(&saved, &png).expect("saved");
    println!("screenshot: {}", saved.display());
    if std::env::var_os("SKYTRACE_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/collector-ui.png");
        std::fs::write(&docs, &png).expect("docs/collector-ui.png written");
        println!("screenshot: {}", docs.display());
    }

    // The keyboard: Escape goes back to the list, ↓ moves to the next trace, Enter opens it.
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(&Key::Escape.to_string())
        .await
        .unwrap();
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#trace-list tbody tr[data-id] a.open"))
        .await
        .expect("back at the list");
    let first = client
        .find(Locator::Css("#trace-list tbody tr[data-id] a.open"))
        .await
        .unwrap();
    js(
        &client,
        "document.querySelector('#trace-list tbody tr[data-id] a.open').focus(); return null;",
    )
    .await;
    first.send_keys(&Key::Down.to_string()).await.unwrap();
    let focused = js(
        &client,
        "return document.activeElement.closest('tr').dataset.id",
    )
    .await;
    let second = js(
        &client,
        "return document.querySelectorAll('#trace-list tbody tr[data-id]')[1].dataset.id",
    )
    .await;
    assert_eq!(focused, second, "↓ moves to the next trace");
    let active = client.active_element().await.unwrap();
    active.send_keys(&Key::Enter.to_string()).await.unwrap();
    eventually("the trace opened with Enter", || async {
        let hash = js(&client, "return location.hash").await;
        let want = format!("#/trace/{}", second.as_str().unwrap_or_default());
        let decoded = js(&client, "return decodeURIComponent(location.hash)").await;
        (hash.as_str().is_some_and(|h| h.starts_with("#/trace/")) && decoded == json!(want))
            .then_some(())
    })
    .await;

    // The other views: instances with their properties, meters as series, the agents' events.
    client.goto(&format!("{url}#/instances")).await.unwrap();
    let instances = eventually("both instances and their properties", || async {
        let rows = texts(&client, "#instance-list tbody tr").await.join("\n");
        (rows.contains("demo-users@127.0.0.1")
            && rows.contains("demo-frontend@127.0.0.1")
            && rows.contains("ago"))
        .then_some(rows)
    })
    .await;
    println!("instances:\n{instances}");
    click_in(
        &client,
        "#instance-list tbody tr",
        "demo-users",
        "details summary",
    )
    .await;
    let properties = eventually("an instance's properties", || async {
        let text = texts(&client, "#instance-list details[open] table")
            .await
            .join("\n");
        (text.contains("language") && text.contains("rust")).then_some(text)
    })
    .await;
    println!("properties:\n{properties}");

    client.goto(&format!("{url}#/meters")).await.unwrap();
    eventually("meter series drawn as lines", || async {
        let cards = texts(&client, "#meters .card").await.join("\n");
        let lines = client
            .find_all(Locator::Css("#meters svg.spark polyline"))
            .await
            .ok()?;
        (cards.contains("demo_requests") && !lines.is_empty()).then_some(())
    })
    .await;

    client.goto(&format!("{url}#/events")).await.unwrap();
    eventually("the agents' Start events", || async {
        let rows = texts(&client, "#event-list tbody tr").await.join("\n");
        (rows.contains("Start") && rows.contains("demo-users")).then_some(())
    })
    .await;

    // A narrow window (a phone, a side panel): the waterfall fits without sideways scrolling.
    client.set_window_size(400, 800).await.unwrap();
    client.goto(&format!("{url}#/traces")).await.unwrap();
    click_in(
        &client,
        "#trace-list tbody tr.has-error",
        "demo-users",
        "a.open",
    )
    .await;
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#waterfall .span-row"))
        .await
        .unwrap();
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "the trace page scrolls sideways by {overflow} px in a 400 px window"
    );

    client.close().await.expect("the browser closes");
    let _ = std::fs::remove_dir_all(&profile);
}
