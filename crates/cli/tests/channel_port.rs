//! `chainmesh node`'s channel port with the certificates `init --sdk` writes: what FISCO's
//! SDKs see of it (TLS 1.2 with secp256k1 as the only group, `getBlockNumber`), and the
//! clients it refuses.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::config::Config;
use chainmesh::identity::load_sdk_identity;
use chainmesh::wire::{ChannelType, CHANNEL_HEADER_LEN};
use chainmesh_testkit::channel::RawChannel;
use chainmesh_testkit::{get_json, wait_until};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use common::{chainmesh_ok, NodeProcess};

const WAIT: Duration = Duration::from_secs(10);

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A one-node network from `init --sdk` under `dir`, on ephemeral ports; returns the node
/// process and the SDK directory.
fn sdk_node(dir: &Path) -> (NodeProcess, PathBuf) {
    let net = dir.join("net");
    chainmesh_ok(["init", "--nodes", "1", "--sdk", "--dir", p(&net)]);
    let path = net.join("node0/config.toml");
    let mut cfg = Config::load(&path).unwrap();
    cfg.p2p.listen = "127.0.0.1:0".into();
    cfg.p2p.peers.clear();
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.channel.listen = "127.0.0.1:0".into();
    let node = common::start_node(&cfg, &path);
    assert!(node.channel.is_some(), "no channel= in the ready line");
    (node, net.join("sdk"))
}

fn channel(node: &NodeProcess) -> &str {
    node.channel.as_deref().unwrap()
}

/// Asks `getBlockNumber` over 0x12 and returns the JSON-RPC result.
async fn block_number(c: &mut RawChannel) -> Value {
    let req = r#"{"jsonrpc": "2.0", "method": "getBlockNumber", "params": [1], "id": 0}"#;
    let seq = c
        .send_new(ChannelType::RPC, Bytes::from_static(req.as_bytes()))
        .await
        .unwrap();
    let answer = c
        .recv_kind(ChannelType::RPC, WAIT)
        .await
        .expect("a 0x12 answer");
    assert_eq!(answer.seq, seq);
    let json: Value = serde_json::from_slice(&answer.data).unwrap();
    json["result"].clone()
}

fn amop_stats(node: &NodeProcess) -> Value {
    get_json(&node.admin, "/v1/amop")["stats"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_answers_get_block_number_from_its_app_status() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, sdk) = sdk_node(tmp.path());
    let id = load_sdk_identity(&sdk).unwrap();
    let mut c = RawChannel::dial(&id, channel(&node)).await.unwrap();
    assert_eq!(block_number(&mut c).await, "0x0");

    let token = std::fs::read_to_string(chainmesh_admin::token_path(&node.config)).unwrap();
    let status = ureq::put(format!("http://{}/v1/status/app", node.admin))
        .header("Authorization", format!("Bearer {}", token.trim()))
        .send("height=300")
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(block_number(&mut c).await, "0x12c");
}

/// A Python `ssl` client set up as FISCO's python-sdk sets itself up: TLS 1.2 only,
/// secp256k1 the only group, sdk.crt + sdk.key, ca.crt as trust, no host name check. It
/// publishes "hello" to a topic nobody holds and prints the version, the cipher and the
/// node's answer in hex.
const PYTHON_SDK: &str = r#"
import socket, ssl, struct, sys
host, port, ca, crt, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(ca)
ctx.load_cert_chain(crt, key)
ctx.set_ecdh_curve("secp256k1")
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10))
seq = b"d13f1ca0e8a611f1970302fc00000001"
topic = b"nobody-listens"
data = bytes([len(topic) + 1]) + topic + b"hello"
s.sendall(struct.pack("!IH", 42 + len(data), 0x30) + seq + struct.pack("!i", 0) + data)
answer = b""
while len(answer) < 42:
    chunk = s.recv(42 - len(answer))
    if not chunk:
        break
    answer += chunk
print(s.version(), s.cipher()[0], answer.hex())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secp256k1_only_tls12_client_connects_and_gets_result_100_for_a_topic_nobody_holds() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIPPED: python3 is not installed; the secp256k1-only client test needs it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (node, sdk) = sdk_node(tmp.path());
    let (host, port) = channel(&node).rsplit_once(':').unwrap();
    let (host, port) = (host.to_owned(), port.to_owned());
    let files = ["ca.crt", "sdk.crt", "sdk.key"].map(|f| sdk.join(f));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(PYTHON_SDK)
            .args([&host, &port])
            .args(&files)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {stdout}{}\nnode log: {}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{stdout}");
    assert_eq!(words[0], "TLSv1.2");
    assert!(words[1].starts_with("ECDHE-"), "cipher {}", words[1]);
    let seq = hex::encode(b"d13f1ca0e8a611f1970302fc00000001");
    assert_eq!(words[2], format!("0000002a0031{seq}00000064"));
    assert_eq!(words[2].len(), 2 * CHANNEL_HEADER_LEN);
    assert_eq!(amop_stats(&node)["unicast_no_subscriber"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_offering_only_secp256k1_completes_the_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, sdk) = sdk_node(tmp.path());
    let addr = channel(&node).to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-tls1_2",
                "-groups",
                "secp256k1",
            ])
            .arg("-CAfile")
            .arg(sdk.join("ca.crt"))
            .arg("-cert")
            .arg(sdk.join("sdk.crt"))
            // -cert sends the leaf alone; the agency comes from -cert_chain, as sdk.crt holds it.
            .arg("-cert_chain")
            .arg(sdk.join("sdk.crt"))
            .arg("-key")
            .arg(sdk.join("sdk.key"))
            .args(["-verify_return_error", "-brief"])
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap();
    let Ok(out) = out else {
        println!("SKIPPED: no openssl binary; the s_client handshake test needs it");
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Protocol version: TLSv1.2"), "{text}");
    assert!(text.contains("Ciphersuite: ECDHE-"), "{text}");
    assert!(text.contains("Server Temp Key: ECDH, secp256k1"), "{text}");
}

/// Does a TLS 1.2 handshake with the channel port, trusting any server, presenting the
/// certificate in `cert_dir` (sdk.crt, sdk.key) when given. `Ok` only when the session
/// survives the handshake: the node's refusal can arrive just after the client's last flight.
async fn handshake(addr: &str, cert_dir: Option<&Path>) -> Result<(), String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_groups_list("secp256k1").unwrap();
    if let Some(dir) = cert_dir {
        b.set_certificate_chain_file(dir.join("sdk.crt")).unwrap();
        b.set_private_key_file(dir.join("sdk.key"), SslFiletype::PEM)
            .unwrap();
    }
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .into_ssl("chainmesh")
        .unwrap();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    std::pin::Pin::new(&mut s)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut byte)).await {
        Ok(Ok(0)) => Err("closed after the handshake".into()),
        Ok(Err(e)) => Err(e.to_string()),
        // Nothing to read and still open: the node admitted the session.
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_another_cas_certificate_or_none_are_refused_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, sdk) = sdk_node(tmp.path());
    let other = tmp.path().join("other");
    chainmesh_ok(["init", "--nodes", "1", "--sdk", "--dir", p(&other)]);
    let addr = channel(&node).to_owned();

    // The probe itself works: the chain's own SDK certificate is admitted.
    handshake(&addr, Some(&sdk)).await.unwrap();
    let foreign = handshake(&addr, Some(&other.join("sdk"))).await;
    assert!(foreign.is_err(), "a certificate of another CA was admitted");
    let bare = handshake(&addr, None).await;
    assert!(bare.is_err(), "a client without a certificate was admitted");

    let counted = wait_until(WAIT, || amop_stats(&node)["handshakes_failed"] == 2).await;
    assert!(counted, "stats: {}", amop_stats(&node));
    // The node still serves its own SDKs.
    let id = load_sdk_identity(&sdk).unwrap();
    let mut c = RawChannel::dial(&id, &addr).await.unwrap();
    assert_eq!(block_number(&mut c).await, "0x0");
}
