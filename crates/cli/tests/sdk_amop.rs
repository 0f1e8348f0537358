//! SDK certificates (`init --sdk`, `sdk-certs`) and the `amop` commands: the certificates a
//! node accepts over TLS, and what the commands print and exit with against a channel port
//! that answers each request as the protocol says (a scripted end, on 127.0.0.1, real TLS).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::admission::Admission;
use chainmesh::config::Config;
use chainmesh::identity::{load_sdk_identity, Identity};
use chainmesh::tls::{TlsContext, TlsStream};
use chainmesh::wire::{encode_amop, split_amop, ChannelDecoder, ChannelPack, ChannelType};
use openssl::x509::X509;
use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{assert_ok, chainmesh, chainmesh_async, chainmesh_ok};

const WAIT: Duration = Duration::from_secs(10);

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn node_identity(net: &Path, k: usize) -> Identity {
    let conf = net.join(format!("node{k}/conf"));
    Identity::load(
        &conf.join("ca.crt"),
        &conf.join("node.crt"),
        &conf.join("node.key"),
    )
    .unwrap()
}

fn tls(identity: &Identity) -> TlsContext {
    TlsContext::new(identity, Arc::new(RwLock::new(Admission::default()))).unwrap()
}

/// Checks the layout of an SDK directory issued under `net`'s CA, and that node0 of `net`
/// accepts it over TLS 1.2 with ECDHE.
async fn check_sdk_dir(net: &Path, sdk: &Path) {
    let chain = X509::stack_from_pem(&std::fs::read(sdk.join("sdk.crt")).unwrap()).unwrap();
    assert_eq!(chain.len(), 3, "sdk.crt is leaf + agency + CA");
    let ca = std::fs::read(net.join("ca/ca.crt")).unwrap();
    assert_eq!(std::fs::read(sdk.join("ca.crt")).unwrap(), ca);
    let agency = X509::from_pem(&std::fs::read(net.join("agency/agency.crt")).unwrap()).unwrap();
    assert_eq!(chain[1].to_der().unwrap(), agency.to_der().unwrap());
    assert!(chain[0].verify(&agency.public_key().unwrap()).unwrap());
    // Loading checks the key against the leaf and the chain against ca.crt.
    let sdk_id = load_sdk_identity(sdk).unwrap();

    let node = node_identity(net, 0);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tls(&node);
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (s, id) = server.accept(tcp).await.unwrap();
        (s.ssl().version_str().to_owned(), id)
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (s, node_id) = tokio::time::timeout(WAIT, tls(&sdk_id).connect(tcp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node_id, node.node_id);
    assert!(s
        .ssl()
        .current_cipher()
        .unwrap()
        .name()
        .starts_with("ECDHE-"));
    let (version, client) = tokio::time::timeout(WAIT, accepted).await.unwrap().unwrap();
    assert_eq!(version, "TLSv1.2", "secp256k1 certificates speak TLS 1.2");
    assert_eq!(client, sdk_id.node_id);
}

#[tokio::test]
async fn init_sdk_writes_a_certificate_nodes_accept_and_a_channel_port_per_node() {
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("net");
    chainmesh_ok([
        "init",
        "--nodes",
        "3",
        "--sdk",
        "--base-port",
        "40400",
        "--channel-port",
        "40600",
        "--dir",
        p(&net),
    ]);
    for f in ["ca.crt", "sdk.crt", "sdk.key"] {
        assert!(net.join("sdk").join(f).is_file(), "sdk/{f}");
    }
    check_sdk_dir(&net, &net.join("sdk")).await;
    for k in 0..3 {
        let cfg = Config::load(&net.join(format!("node{k}/config.toml"))).unwrap();
        assert_eq!(cfg.channel.listen, format!("127.0.0.1:{}", 40600 + k));
    }
}

#[tokio::test]
async fn sdk_certs_issues_from_the_ca_init_wrote_and_names_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("net");
    chainmesh_ok(["init", "--nodes", "1", "--dir", p(&net)]);
    assert!(!net.join("sdk").exists());
    let out = tmp.path().join("app/sdk");
    chainmesh_ok(["sdk-certs", "--ca-dir", p(&net), "--out", p(&out)]);
    check_sdk_dir(&net, &out).await;

    let o = chainmesh(["sdk-certs", "--ca-dir", p(tmp.path()), "--out", p(&out)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ca.crt"), "{err}");
}

/// A network with an SDK directory, and node0's identity for the scripted channel port.
fn network() -> (tempfile::TempDir, Identity, String) {
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("net");
    chainmesh_ok(["init", "--nodes", "1", "--sdk", "--dir", p(&net)]);
    let node = node_identity(&net, 0);
    let certs = p(&net.join("sdk")).to_owned();
    (tmp, node, certs)
}

/// The node's end of one channel session.
struct Port {
    stream: TlsStream<TcpStream>,
    decoder: ChannelDecoder,
    buf: BytesMut,
}

impl Port {
    /// The next frame that is not a heartbeat.
    async fn next(&mut self) -> ChannelPack {
        loop {
            if let Some((pack, _)) = self.decoder.decode(&mut self.buf).unwrap() {
                if pack.kind != ChannelType::HEARTBEAT {
                    return pack;
                }
                continue;
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "the client closed the session");
        }
    }

    async fn send(&mut self, pack: &ChannelPack) {
        let frame = pack.to_bytes(u32::MAX).unwrap();
        self.stream.write_all(&frame).await.unwrap();
    }
}

/// A channel port on 127.0.0.1:0 that runs `script` on the first session it accepts.
async fn channel_port<F, Fut>(node: &Identity, script: F) -> String
where
    F: FnOnce(Port) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let ctx = tls(node);
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (stream, _) = ctx.accept(tcp).await.unwrap();
        script(Port {
            stream,
            decoder: ChannelDecoder::new(1 << 20),
            buf: BytesMut::new(),
        })
        .await;
    });
    addr
}

fn args(cmd: &str, addr: &str, certs: &str, topic: &str, data: &str) -> Vec<String> {
    [
        "amop", cmd, "--node", addr, "--certs", certs, "--topic", topic, data,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test]
async fn publish_prints_the_ack_and_no_subscriber_exits_non_zero() {
    let (_tmp, node, certs) = network();
    let addr = channel_port(&node, |mut port| async move {
        let req = port.next().await;
        assert_eq!(req.kind, ChannelType::AMOP_REQUEST);
        let (topic, payload) = split_amop(&req.data).unwrap();
        assert_eq!((&*topic, &payload[..]), ("t1", &b"hello"[..]));
        let ack = encode_amop("t1", b"ack:hello").unwrap();
        port.send(&req.answer(ChannelType::AMOP_RESPONSE, 0, ack))
            .await;
    })
    .await;
    let out = chainmesh_async(args("publish", &addr, &certs, "t1", "hello")).await;
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "result 0 ack: ack:hello\n"
    );

    let addr = channel_port(&node, |mut port| async move {
        let req = port.next().await;
        port.send(&req.answer(ChannelType::AMOP_RESPONSE, 100, Bytes::new()))
            .await;
    })
    .await;
    let out = chainmesh_async(args("publish", &addr, &certs, "t9", "x")).await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "result 100 (no subscriber)\n"
    );
}

#[tokio::test]
async fn multicast_prints_the_result() {
    let (_tmp, node, certs) = network();
    let addr = channel_port(&node, |mut port| async move {
        let req = port.next().await;
        assert_eq!(req.kind, ChannelType::AMOP_MULTICAST);
        let data = req.data.clone();
        port.send(&req.answer(ChannelType::AMOP_RESPONSE, 0, data))
            .await;
    })
    .await;
    let out = chainmesh_async(args("multicast", &addr, &certs, "t1", "all-of-you")).await;
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "result 0\n");
}

#[tokio::test]
async fn subscribe_prints_each_message_on_arrival_and_acks_unicasts() {
    let (_tmp, node, certs) = network();
    let (acked_tx, acked_rx) = tokio::sync::oneshot::channel();
    let addr = channel_port(&node, |mut port| async move {
        let sub = port.next().await;
        assert_eq!(sub.kind, ChannelType::SUBSCRIBE);
        assert_eq!(&sub.data[..], br#"["t1"]"#);
        let data = encode_amop("t1", b"all-of-you").unwrap();
        let seq = *b"0123456789abcdef0123456789abcdef";
        port.send(&ChannelPack::new(ChannelType::AMOP_MULTICAST, seq, data))
            .await;
        let seq = *b"d13f1ca0e8a611f1970302fc00000001";
        let data = encode_amop("t1", b"hello-bar").unwrap();
        port.send(&ChannelPack::new(ChannelType::AMOP_REQUEST, seq, data))
            .await;
        let ack = port.next().await;
        let _ = acked_tx.send(ack);
        // Held open until the test ends, as a node would.
        let _ = port.next().await;
    })
    .await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainmesh"))
        .args(
            args("subscribe", &addr, &certs, "t1", "")
                .split_last()
                .unwrap()
                .1,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(2)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(WAIT, lines).await.unwrap().unwrap();
    assert_eq!(lines, ["multicast t1 all-of-you", "unicast t1 hello-bar"]);
    let ack = tokio::time::timeout(WAIT, acked_rx).await.unwrap().unwrap();
    assert_eq!(ack.kind, ChannelType::AMOP_RESPONSE);
    assert_eq!(&ack.seq, b"d13f1ca0e8a611f1970302fc00000001");
    assert_eq!(ack.result, 0);
    assert_eq!(ack.data, encode_amop("t1", b"ack:hello-bar").unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn amop_errors_name_the_certificate_file_and_the_address() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let out = chainmesh(args("publish", "127.0.0.1:1", p(&missing), "t", "x"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ca.crt") && err.contains("nowhere"), "{err}");

    let (_tmp, _node, certs) = network();
    // A port nothing listens on: bound, then released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let out = chainmesh(args("multicast", &addr, &certs, "t", "x"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
}
