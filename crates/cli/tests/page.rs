//! The live network page in headless Chromium, against a real 4-node network on 127.0.0.1.
//! One page load stays open for the whole test: the page's own script draws every node,
//! and when a node is stopped the same document shows it unreachable and lists the
//! disconnection, without being reloaded. The test reads the open document over Chromium's
//! DevTools protocol (`Runtime.evaluate` on the page's WebSocket).
//! Without Chromium (`/usr/bin/chromium`, Debian's package) the test says it was skipped
//! and passes; CI installs it.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chainmesh::config::Config;
use chainmesh::NodeId;
use chainmesh_testkit::{LocalNet, LocalNetOptions};
use serde::Deserialize;
use serde_json::{json, Value};
use tungstenite::WebSocket;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Generous bounds: on a loaded 2-core machine Chromium alone can take seconds to start.
const START: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(60);

/// How often the test looks at the document again while it waits for a condition.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Headless Chromium with a profile of its own, in a process group of its own; killed with
/// everything it started when dropped, on every path out of the test.
struct Chromium {
    child: Child,
    dir: tempfile::TempDir,
}

impl Chromium {
    fn start(url: &str) -> Chromium {
        let dir = tempfile::tempdir().unwrap();
        let log = File::create(dir.path().join("chromium.log")).unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        Chromium { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default()
    }

    /// The DevTools port Chromium picked, once it wrote it down.
    fn devtools_port(&mut self, timeout: Duration) -> u16 {
        let file = self.dir.path().join("profile").join("DevToolsActivePort");
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromium exited ({status}) before it listened: {}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "chromium wrote no DevTools port: {}",
                self.log()
            );
            std::thread::sleep(LOOK_EVERY);
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The launcher script, the browser and its renderers share the group.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the group this test made for its own child; no memory is
            // involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One DevTools target, as `/json/list` describes it.
#[derive(Deserialize)]
struct Target {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(rename = "webSocketDebuggerUrl")]
    ws: Option<String>,
}

/// A DevTools connection to one page.
struct Page {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Page {
    /// Connects to the page target showing `url`.
    fn attach(port: u16, url: &str, timeout: Duration) -> Page {
        let start = Instant::now();
        let ws_url = loop {
            let targets: Vec<Target> = ureq::get(format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json().ok())
                .unwrap_or_default();
            if let Some(ws) = targets
                .into_iter()
                .find(|t| t.kind == "page" && t.url == url)
                .and_then(|t| t.ws)
            {
                break ws;
            }
            assert!(start.elapsed() < timeout, "chromium shows no page at {url}");
            std::thread::sleep(LOOK_EVERY);
        };
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A bounded wait for every answer: a hung browser fails the test, it does not hang it.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (ws, _) = tungstenite::client(ws_url.as_str(), stream).unwrap();
        Page { ws, next_id: 1 }
    }

    /// The value of `expr` evaluated in the open document.
    fn eval(&mut self, expr: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let call = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expr, "returnByValue": true },
        });
        self.ws
            .send(tungstenite::Message::text(call.to_string()))
            .unwrap();
        loop {
            let msg = self.ws.read().unwrap();
            let Ok(text) = msg.to_text() else { continue };
            let Ok(answer) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if answer["id"] != json!(id) {
                continue;
            }
            let result = &answer["result"];
            assert!(
                result.get("exceptionDetails").is_none(),
                "`{expr}` threw: {answer}"
            );
            return result["result"]["value"].clone();
        }
    }

    /// What the open document shows now.
    fn view(&mut self) -> View {
        serde_json::from_value(self.eval(VIEW)).unwrap()
    }
}

/// Reads the document as the page's script left it: nothing here asks the server.
const VIEW: &str = r##"(() => {
  const all = sel => [...document.querySelectorAll(sel)];
  return {
    href: location.href,
    ready: document.readyState,
    mark: window.__loadMark ?? null,
    polls: Number(document.body?.dataset.polls || 0),
    nodes: Object.fromEntries(all("#graph g[data-node]").map(g => [g.dataset.node, g.dataset.state])),
    lines: all("#graph line").length,
    events: all("#events tbody tr").map(r => [r.dataset.event, r.dataset.node || null]),
    unmeasured: all("#links tbody tr.learnt").map(r => r.textContent),
  };
})()"##;

/// The parts of the document the test looks at.
#[derive(Debug, Deserialize)]
struct View {
    href: String,
    ready: String,
    mark: Option<u32>,
    polls: u64,
    /// The state each node of the graph shows, by node ID.
    nodes: BTreeMap<String, String>,
    lines: usize,
    /// Each listed event and the node it is about.
    events: Vec<(String, Option<String>)>,
    /// The text of each row for a link between two other nodes.
    unmeasured: Vec<String>,
}

impl View {
    fn state(&self, node: &NodeId) -> Option<&str> {
        self.nodes.get(&node.to_string()).map(String::as_str)
    }
}

/// Looks at the open document until `cond` holds of it or `timeout` passes; the last look.
/// The looks block, so they run off the runtime's task threads, which keep the nodes going.
fn watch_until(page: &mut Page, timeout: Duration, cond: impl Fn(&View) -> bool) -> View {
    tokio::task::block_in_place(|| {
        let start = Instant::now();
        loop {
            let view = page.view();
            if cond(&view) || start.elapsed() > timeout {
                return view;
            }
            std::thread::sleep(LOOK_EVERY);
        }
    })
}

/// The page refreshes and samples five times a second, so that it shows a change soon.
fn fast_page(_: usize, cfg: &mut Config) {
    cfg.admin.page_refresh = Duration::from_millis(200);
    cfg.admin.page_rate_window = Duration::from_millis(200);
    cfg.admin.page_ping_interval = Duration::from_millis(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_open_page_shows_every_node_of_a_four_node_ring_and_updates_when_one_stops() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("skipped: chromium not installed");
        return;
    }
    let mut o = LocalNetOptions::new(4);
    o.admin = true;
    o.tweak = Some(fast_page);
    let mut net = LocalNet::start(o).await.unwrap();
    // A ring 0 - 1 - 2 - 3 - 0: node 0 has sessions with 1 and 3, and knows 2 and the links
    // 1-2 and 2-3 only through routing. Node 3 dials node 0, so once it stops node 0 has
    // no reason to dial it.
    for i in 0..4 {
        net.connect(i, (i + 1) % 4);
    }
    let ids: Vec<NodeId> = (0..4).map(|i| net.handle(i).node_id()).collect();
    let url = format!("http://{}/", net.admin_addr(0).unwrap());

    let mut chromium = Chromium::start(&url);
    let mut page = tokio::task::block_in_place(|| {
        let port = chromium.devtools_port(START);
        Page::attach(port, &url, START)
    });

    // The document has loaded and its script has drawn at least once; from here on it is
    // marked, and a reload would lose the mark.
    let loaded = watch_until(&mut page, START, |v| {
        v.href == url && v.ready == "complete" && v.polls > 0
    });
    assert!(
        loaded.polls > 0,
        "the page's script never polled: {loaded:?}"
    );
    tokio::task::block_in_place(|| page.eval("window.__loadMark = 1"));

    let want = [(0, "self"), (1, "direct"), (2, "relayed"), (3, "direct")];
    let shows_all = |v: &View| {
        want.iter()
            .all(|(i, state)| v.state(&ids[*i]) == Some(*state))
            && v.lines == 4
            && v.unmeasured.len() == 2
    };
    let before = watch_until(&mut page, SETTLE, shows_all);
    assert!(
        shows_all(&before),
        "the page does not show the ring: {before:?}"
    );
    // The links between two other nodes say they are not measured here.
    for row in &before.unmeasured {
        assert!(row.contains("not measured from here"), "{row}");
    }

    net.stop(3).await;
    let (gone, polls) = (ids[3].to_string(), before.polls);
    let updated = |v: &View| {
        v.state(&ids[3]).map_or(true, |s| s == "unreachable")
            && v.state(&ids[2]) == Some("relayed")
            && v.events
                .iter()
                .any(|(e, n)| e == "disconnected" && n.as_deref() == Some(gone.as_str()))
            && v.polls > polls
    };
    let after = watch_until(&mut page, SETTLE, updated);
    assert!(
        updated(&after),
        "the open page never showed node 3 stopped: {after:?}"
    );
    assert_eq!(after.mark, Some(1), "the page was reloaded: {after:?}");
    assert_eq!(after.href, url);
    drop(page);
    drop(chromium);
    net.shutdown().await;
}
