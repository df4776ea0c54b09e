//! The explorer, checked as a person uses it: `model explore` serves stateright's web UI and
//! its status route; run to completion, it finds the variant's counterexample; and the page
//! opened at that counterexample in headless Chromium renders its last state and the path's
//! sequence chart, which the test saves as a screenshot (`UPDATE_DOCS_SCREENSHOT=1` copies it to
//! `docs/images/explorer-counterexample.png`). Chromium is a real component, like the servers:
//! `.ci/run` installs Debian's `chromium`, and under `REQUIRE_SERVICES=1` its absence fails the
//! test; elsewhere the test says it skipped and why.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `model explore`, killed on drop.
struct Explorer {
    child: Child,
    port: u16,
}

impl Drop for Explorer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Small bounds: the explorer's checker has no symmetry reduction, and "run to completion"
/// explores everything. Two orders are enough for racy-reserve's double booking.
const BOUNDS: [&str; 12] = [
    "--members",
    "1",
    "--updates",
    "0",
    "--orders",
    "2",
    "--cancels",
    "0",
    "--crashes",
    "0",
    "--redeliveries",
    "0",
];

/// Starts `model explore` on a port it picks itself (`--port 0`) and reads the port from its
/// "serving" line: a port the test picked and released could be handed to the other test's
/// explorer in between, and then one test talks to the other's server.
fn start(variant: &str) -> Explorer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_model"))
        .args(["explore", "--variant", variant, "--port", "0"])
        .args(BOUNDS)
        .stdout(Stdio::piped())
        .spawn()
        .expect("model explore starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut serving = String::new();
    BufReader::new(stdout)
        .read_line(&mut serving)
        .expect("read the serving line");
    let port = serving
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in the explorer's first line: {serving:?}"));
    let explorer = Explorer { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "explorer did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    explorer
}

/// A minimal HTTP/1.0 exchange (the explorer closes the connection after each response).
fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs the checker to completion and returns the discovery path of `property`.
fn discovery(explorer: &Explorer, property: &str) -> String {
    let (status, _) = request(explorer.port, "POST", "/.runtocompletion");
    assert_eq!(status, 200);
    // The checker runs on in the background; the status route says when it is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (code, body) = request(explorer.port, "GET", "/.status");
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
        if status["done"] == true {
            break status;
        }
        assert!(Instant::now() < deadline, "not done within 60 s: {status}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let properties = status["properties"].as_array().expect("properties");
    assert_eq!(properties.len(), 8, "the eight properties of SPEC.md");
    let entry = properties
        .iter()
        .find(|p| p[1] == property)
        .unwrap_or_else(|| panic!("no property {property:?} in {status}"));
    entry[2]
        .as_str()
        .unwrap_or_else(|| panic!("no counterexample for {property:?}: {entry}"))
        .to_owned()
}

#[test]
fn the_explorer_serves_its_ui_and_finds_the_counterexample() {
    let explorer = start("racy-reserve");
    let (status, page) = request(explorer.port, "GET", "/");
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "the UI page");
    let path = discovery(&explorer, "single reservation");
    assert!(
        path.split('/').count() > 3,
        "a path of several steps: {path}"
    );
    let (status, states) = request(explorer.port, "GET", &format!("/.states/{path}"));
    assert_eq!(
        status, 200,
        "the explorer follows the counterexample: {states}"
    );
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
}

fn headless(chromium: &str, profile: &std::path::Path) -> Command {
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1300,2300",
        "--virtual-time-budget=15000",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command.stderr(Stdio::null());
    command
}

#[test]
fn chromium_renders_the_counterexample_the_explorer_found() {
    let Some(chromium) = chromium() else {
        // Chromium is a real component here, like the servers: under REQUIRE_SERVICES=1 (CI)
        // its absence is a failure, elsewhere a skip that says why.
        let why = "Chromium is not installed (apt-get install chromium; .ci/run does)";
        let required = std::env::var("REQUIRE_SERVICES").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "Chromium is required (REQUIRE_SERVICES=1) but missing: {why}"
        );
        eprintln!("SKIPPED chromium_renders_the_counterexample_the_explorer_found: {why}");
        return;
    };
    let explorer = start("racy-reserve");
    let path = discovery(&explorer, "single reservation");
    let url = format!("http://127.0.0.1:{}/#/steps/{path}", explorer.port);
    let work = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("explorer");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("scratch dir");

    let dom = headless(chromium, &work.join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("violated: single reservation"),
        "the page at the counterexample shows the violated property in its drawing"
    );
    for lane in ["owner", "orders HTTP handler", "tickets-service", "stream"] {
        assert!(
            dom.contains(&format!(">{lane}</text>")),
            "the page draws the path's sequence chart, with the lane {lane:?}"
        );
    }
    assert!(
        dom.contains("3. single reservation: VIOLATED at step"),
        "the chart marks where the path lost single reservation"
    );

    let screenshot = work.join("explorer-counterexample.png");
    let status = headless(chromium, &work.join("profile-shot"))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .status()
        .expect("chromium runs");
    assert!(status.success());
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot"
    );
    if std::env::var("UPDATE_DOCS_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/images");
        std::fs::create_dir_all(docs).expect("docs/images");
        std::fs::write(format!("{docs}/explorer-counterexample.png"), png).expect("copy");
    }
}
