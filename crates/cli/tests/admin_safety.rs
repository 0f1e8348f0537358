//! The admin API against clients that are not its operator: writes need the token, reads do
//! not; a foreign `Host` is refused; a listener caps its connections and times out slow
//! requests; ping payloads are bounded; `init` and `node` keep the API on loopback and the
//! token in a private file; a config out of bounds stops the node with the key's name.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use chainmesh::config::{AdminConfig, Config};
use chainmesh::identity::{generate_node_files, Curve};
use chainmesh_admin::Access;
use chainmesh_testkit::{
    config_for, http_agent, status_and_json, wait_until, LocalNet, LocalNetOptions,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn agent() -> ureq::Agent {
    http_agent(WAIT)
}

fn answer(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    status_and_json(resp)
}

fn post(addr: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = agent().post(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    answer(req.send_json(body))
}

fn get(addr: &str, path: &str) -> u16 {
    answer(agent().get(format!("http://{addr}{path}")).call()).0
}

/// Sends `request` as raw bytes and returns everything the server sends until it closes.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn admin_net(tweak: Option<fn(usize, &mut Config)>) -> LocalNet {
    let mut opts = LocalNetOptions::new(2);
    opts.admin = true;
    opts.tweak = tweak;
    let net = LocalNet::start(opts).await.unwrap();
    net.connect_line();
    assert!(net.wait_for(WAIT, |n| n.is_full_mesh()).await);
    net
}

/// The `chainmesh` binary with `args`, without an admin token in its environment unless
/// `token` gives one.
async fn chainmesh_with(args: Vec<String>, token: Option<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chainmesh"));
        cmd.args(args).env_remove("CHAINMESH_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("CHAINMESH_ADMIN_TOKEN", t);
        }
        cmd.output().expect("run the chainmesh binary")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_and_reads_do_not() {
    let net = admin_net(None).await;
    let a0 = net.admin_addr(0).unwrap().to_string();
    let token = net.admin_token(0).unwrap();
    let peer = json!({"address": "127.0.0.1:9"});

    let (status, body) = post(&a0, "/v1/peers", None, peer.clone());
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    let wrong = format!("{}0", &token[1..]);
    assert_eq!(post(&a0, "/v1/peers", Some(&wrong), peer.clone()).0, 401);
    assert_eq!(post(&a0, "/v1/peers", Some(&token), peer.clone()).0, 201);
    let delete = |t: Option<&str>| {
        let mut req = agent().delete(format!("http://{a0}/v1/peers/127.0.0.1:9"));
        if let Some(t) = t {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        answer(req.call()).0
    };
    assert_eq!(delete(None), 401);
    assert_eq!(delete(Some(&token)), 200);
    let put = agent().put(format!("http://{a0}/v1/status/app")).send("x");
    assert_eq!(answer(put).0, 401);
    let to = net.handle(1).node_id();
    // A ping changes nothing on the node: it needs no token.
    assert_eq!(post(&a0, "/v1/ping", None, json!({"to": to})).0, 200);
    assert_eq!(
        post(
            &a0,
            "/v1/messages",
            None,
            json!({"to": to, "module": 100, "data": "x"})
        )
        .0,
        401
    );
    for path in [
        "/",
        "/metrics",
        "/v1/network",
        "/v1/topics",
        "/v1/node",
        "/v1/peers",
        "/v1/routes",
        "/v1/status",
    ] {
        assert_eq!(get(&a0, path), 200, "GET {path}");
    }

    // Ping payloads: up to admin.max_ping_bytes, not one byte more.
    let max = AdminConfig::default().max_ping_bytes;
    let (status, body) = post(
        &a0,
        "/v1/ping",
        Some(&token),
        json!({"to": to, "size": max + 1}),
    );
    assert_eq!(status, 413, "{body}");
    let (status, body) = post(
        &a0,
        "/v1/ping",
        Some(&token),
        json!({"to": to, "size": max}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["size"], max);

    // The CLI: without a token it says where to get one; with the environment variable it
    // goes through.
    let args = |cmd: &str| {
        ["peers", cmd, "--admin", &a0, "127.0.0.1:9"]
            .map(str::to_owned)
            .to_vec()
    };
    let out = chainmesh_with(args("add"), None).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401")
            && err.contains("CHAINMESH_ADMIN_TOKEN")
            && err.contains("--token-file"),
        "{err}"
    );
    let out = chainmesh_with(args("add"), Some(wrong)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not this node's"));
    common::assert_ok(&chainmesh_with(args("add"), Some(token.clone())).await);
    common::assert_ok(&chainmesh_with(args("remove"), Some(token)).await);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_header_naming_another_site_is_refused() {
    let net = admin_net(None).await;
    let a0 = net.admin_addr(0).unwrap();
    let port = a0.port();
    let request =
        |host: &str| format!("GET /v1/node HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let rebound = raw(a0, &request(&format!("attacker.example:{port}"))).await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("allowed_hosts"), "{rebound}");
    let other_port = raw(a0, &request(&format!("127.0.0.1:{}", port ^ 1))).await;
    assert!(other_port.starts_with("HTTP/1.1 421"), "{other_port}");
    let missing = raw(a0, "GET /v1/node HTTP/1.0\r\n\r\n").await;
    assert!(
        missing.starts_with("HTTP/1.0 421") || missing.starts_with("HTTP/1.1 421"),
        "{missing}"
    );
    for host in [
        format!("localhost:{port}"),
        a0.to_string(),
        format!("[::1]:{port}"),
    ] {
        let ok = raw(a0, &request(&host)).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{host}: {ok}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_the_extra_connection_and_a_closed_one_frees_its_slot() {
    const CAP: usize = 3;
    let net = admin_net(Some(|_, cfg| {
        cfg.admin.max_connections = CAP;
        // Long enough that the idle connections below stay for the whole test.
        cfg.admin.header_timeout = Duration::from_secs(120);
    }))
    .await;
    let a0 = net.admin_addr(0).unwrap();
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(a0).await.unwrap());
    }
    // Accepted after the others, in order: it finds every slot taken.
    let extra = raw(a0, "").await;
    assert!(
        extra.is_empty() || extra.starts_with("HTTP/1.1 503"),
        "{extra}"
    );
    let addr = a0.to_string();
    // Refused with a 503, or cut before the answer could be read: either way not served.
    if let Ok(r) = agent().get(format!("http://{addr}/v1/node")).call() {
        assert_eq!(r.status(), 503, "a request over the cap is refused");
    }
    drop(idle.pop());
    let token = net.admin_token(0).unwrap();
    let peer = json!({"address": "127.0.0.1:9"});
    assert!(
        wait_until(WAIT, || post(
            &addr,
            "/v1/peers",
            Some(&token),
            peer.clone()
        )
        .0 == 201)
        .await,
        "an authorized request gets the freed slot"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_halfway_through_its_request_line_is_closed() {
    let net = admin_net(Some(|_, cfg| {
        cfg.admin.header_timeout = Duration::from_millis(200);
    }))
    .await;
    let a0 = net.admin_addr(0).unwrap();
    let mut slow = TcpStream::connect(a0).await.unwrap();
    slow.write_all(b"GET /v1/no").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the half-sent request is still open after {WAIT:?}"
    );
    // A connection that sends nothing at all goes the same way.
    let mut silent = TcpStream::connect(a0).await.unwrap();
    let closed = tokio::time::timeout(WAIT, silent.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the silent connection is still open after {WAIT:?}"
    );
    // And the listener still serves whole requests.
    assert_eq!(get(&a0.to_string(), "/v1/node"), 200);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_listener_serves_reads_and_refuses_every_write() {
    let net = admin_net(None).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let read = chainmesh_admin::serve(
        "127.0.0.1:0",
        net.handle(0),
        None,
        Access::ReadOnly,
        &AdminConfig::default(),
        stop.clone(),
    )
    .await
    .unwrap()
    .to_string();
    assert_eq!(get(&read, "/v1/peers"), 200);
    assert_eq!(get(&read, "/metrics"), 200);
    let token = net.admin_token(0).unwrap();
    let (status, body) = post(
        &read,
        "/v1/peers",
        Some(&token),
        json!({"address": "127.0.0.1:9"}),
    );
    assert_eq!(status, 405, "{body}");
    assert!(net
        .handle(0)
        .peers()
        .targets()
        .iter()
        .all(|t| t.address != "127.0.0.1:9"));
    stop.cancel();
    net.shutdown().await;
}

#[test]
fn init_keeps_the_admin_api_on_loopback_and_writes_a_private_token_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    common::chainmesh_ok([
        "init",
        "--nodes",
        "2",
        "--host",
        "0.0.0.0",
        "--dir",
        net.to_str().unwrap(),
    ]);
    let mut tokens = Vec::new();
    for k in 0..2 {
        let node = net.join(format!("node{k}"));
        let cfg = Config::load(&node.join("config.toml")).unwrap();
        assert!(cfg.p2p.listen.starts_with("0.0.0.0:"), "{}", cfg.p2p.listen);
        assert!(
            cfg.admin.listen.starts_with("127.0.0.1:"),
            "{}",
            cfg.admin.listen
        );
        let file = node.join("admin.token");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "node{k}");
        let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        tokens.push(token);
    }
    assert_ne!(tokens[0], tokens[1], "each node has its own token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_makes_its_token_at_first_start_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 1, Curve::Secp256k1).unwrap();
    let path = g[0].dir.join("config.toml");
    let file = g[0].dir.join("admin.token");
    assert!(!file.exists());
    let p = common::start_node(&config_for(&g[0]), &path);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    let peer = json!({"address": "127.0.0.1:9"});
    assert_eq!(
        post(&p.admin, "/v1/peers", Some(&token), peer.clone()).0,
        201
    );
    assert_eq!(post(&p.admin, "/v1/peers", None, peer).0, 401);
    let args = vec![
        "peers".to_string(),
        "remove".into(),
        "--admin".into(),
        p.admin.clone(),
        "--token-file".into(),
        file.to_string_lossy().into_owned(),
        "127.0.0.1:9".into(),
    ];
    common::assert_ok(&chainmesh_with(args, None).await);
    drop(p);
    let _again = common::start_existing(&path);
    let kept = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(kept, token);
}

#[test]
fn a_timer_out_of_bounds_stops_the_node_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 1, Curve::Secp256k1).unwrap();
    let path = g[0].dir.join("config.toml");
    type Change = fn(&mut Config);
    let cases: [(Change, &str); 3] = [
        (
            |c| c.timers.heartbeat_interval = Duration::from_nanos(1),
            "timers.heartbeat_interval",
        ),
        (
            |c| {
                c.timers.heartbeat_interval = Duration::from_secs(3600);
                c.timers.idle_timeout_intervals = 1000;
            },
            "timers.idle_timeout_intervals",
        ),
        (|c| c.p2p.max_packet_size = u32::MAX, "p2p.max_packet_size"),
    ];
    for (change, key) in cases {
        let mut cfg = config_for(&g[0]);
        change(&mut cfg);
        std::fs::write(&path, cfg.to_toml()).unwrap();
        let out = common::chainmesh(["node", "--config", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{key}: the node started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("key `{key}`")), "{key}: {err}");
    }
}
