//! What one hostile member costs an honest network: three `chainmesh node` processes on
//! 127.0.0.1 and a fourth member, played from here with a valid certificate of the chain, that
//! runs one attack at a time. For each attack it prints the bytes the attacker sent, the
//! honest nodes' peak RSS growth over their RSS before the attack, the honest ping p50 (node0
//! to node2 through the admin API) before and during the attack, and what became of the
//! attacker's links.
//!
//! Run `cargo build --release` first, then
//! `cargo run --release -p chainmesh-bench --example hostile [SECONDS_PER_ATTACK]`.
//! `CHAINMESH_BIN` names the binary (default `target/release/chainmesh`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use chainmesh::identity::Identity;
use chainmesh::wire::{compress_append, DataFrame, Ext, PacketType, DEFAULT_MAX_PACKET};
use chainmesh::NodeId;
use chainmesh_testkit::raw::{RawPeer, Received};
use tokio::io::AsyncWriteExt;

/// Honest nodes; the attacker holds the certificate of node `HONEST`.
const HONEST: usize = 3;
const PINGS: usize = 40;

struct NodeProc {
    child: Child,
    p2p: String,
    admin: String,
    dir: PathBuf,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProc {
    fn start(bin: &Path, dir: &Path) -> anyhow::Result<NodeProc> {
        let mut child = Command::new(bin)
            .args(["node", "--config", "config.toml"])
            .current_dir(dir)
            .env(
                "RUST_LOG",
                std::env::var("HOSTILE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("node.log"))?)
            .spawn()
            .context("start chainmesh node")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("stdout")?;
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line)?;
        // Keep reading so the node never writes into a closed pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_owned)
                .with_context(|| format!("no {k} in ready line {line:?}"))
        };
        Ok(NodeProc {
            p2p: field("p2p=")?,
            admin: field("admin=")?,
            child,
            dir: dir.to_owned(),
        })
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn connected(&self) -> usize {
        let url = format!("http://{}/v1/peers", self.admin);
        let Ok(mut r) = ureq::get(&url).call() else {
            return 0;
        };
        let v: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
        v["peers"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["connected"] == true).count())
            .unwrap_or(0)
    }
}

fn p50(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// What one attack did.
struct Outcome {
    sent: u64,
    /// Bytes the honest node sent back to the attacker.
    received: u64,
    links: u64,
    closed: u64,
}

type Attack = fn(Arc<Ctx>) -> tokio::task::JoinHandle<anyhow::Result<Outcome>>;

struct Ctx {
    identity: Identity,
    me: NodeId,
    targets: Vec<(String, NodeId)>,
    admin: Vec<String>,
    stop: AtomicBool,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

fn unicast(version: u16, seq: u32, ext: Ext, payload: &[u8]) -> Bytes {
    DataFrame {
        version,
        packet_type: PacketType::UNICAST,
        seq,
        ext: ext.with_ttl(10),
        group: "group0",
        src: &NodeId::from_bytes([0; 64]),
        dsts: &[],
        module: 1,
        prefix: &[],
        tags: &[],
        payload,
    }
    .encode(0)
}

/// Compressed unicasts that each expand to the largest packet, to a module with no handler
/// and to the ping module.
fn compression_bomb(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<anyhow::Result<Outcome>> {
    tokio::spawn(async move {
        let mut bomb = Vec::new();
        compress_append(&mut bomb, &vec![0u8; DEFAULT_MAX_PACKET as usize - 1024]);
        let mut out = Outcome {
            sent: 0,
            received: 0,
            links: 0,
            closed: 0,
        };
        let mut seq = 1u32;
        for (addr, _) in &ctx.targets {
            let mut peer = RawPeer::dial(&ctx.identity, addr).await?;
            peer.handshake().await?;
            out.links += 1;
            while ctx.running() {
                seq = seq.wrapping_add(1).max(1);
                let frame = unicast(
                    peer.version,
                    seq,
                    Ext::DIRECT | Ext::COMPRESSED | Ext::REQUEST,
                    &bomb,
                );
                if peer.send_raw(&frame).await.is_err() {
                    out.closed += 1;
                    break;
                }
                out.sent += frame.len() as u64;
                if out.sent > 64 << 20 {
                    break;
                }
            }
        }
        Ok(out)
    })
}

/// StatusRequests as fast as the link takes them, counting the answer bytes that come back.
fn status_flood(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<anyhow::Result<Outcome>> {
    tokio::spawn(async move {
        let (addr, _) = &ctx.targets[0];
        let mut peer = RawPeer::dial(&ctx.identity, addr).await?;
        peer.handshake().await?;
        let mut out = Outcome {
            sent: 0,
            received: 0,
            links: 1,
            closed: 0,
        };
        let mut q = 1u32;
        while ctx.running() {
            q = q.wrapping_add(1);
            let frame = DataFrame {
                version: peer.version,
                packet_type: PacketType::STATUS_REQUEST,
                seq: q,
                ext: Ext::DIRECT.with_ttl(10),
                group: "",
                src: &ctx.me,
                dsts: &[],
                module: 0,
                prefix: &[],
                tags: &[],
                payload: &q.to_be_bytes(),
            }
            .encode(0);
            if peer.send_raw(&frame).await.is_err() {
                out.closed += 1;
                break;
            }
            out.sent += frame.len() as u64;
            if q % 64 == 0 {
                loop {
                    match peer.recv(Duration::from_millis(1)).await {
                        Ok(Received::Packet(p)) => out.received += p.encoded_len() as u64,
                        Ok(Received::Nothing) => break,
                        Ok(Received::Closed) | Err(_) => {
                            out.closed += 1;
                            return Ok(out);
                        }
                    }
                }
            }
        }
        Ok(out)
    })
}

/// Links that announce the largest Length and then trickle a byte a second, before and after
/// the protocol handshake.
fn slowloris(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<anyhow::Result<Outcome>> {
    tokio::spawn(async move {
        let mut out = Outcome {
            sent: 0,
            received: 0,
            links: 0,
            closed: 0,
        };
        let mut peers = Vec::new();
        for i in 0..200 {
            let (addr, _) = &ctx.targets[i % ctx.targets.len()];
            let Ok(mut peer) = RawPeer::dial(&ctx.identity, addr).await else {
                out.closed += 1;
                continue;
            };
            if i % 2 == 0 && peer.handshake().await.is_err() {
                out.closed += 1;
                continue;
            }
            let head = DEFAULT_MAX_PACKET.to_be_bytes();
            if peer.send_raw(&head).await.is_ok() {
                out.sent += 4;
                out.links += 1;
                peers.push(peer);
            }
        }
        while ctx.running() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut alive = Vec::new();
            for mut p in peers.drain(..) {
                if p.send_raw(&[0]).await.is_ok() {
                    out.sent += 1;
                    alive.push(p);
                } else {
                    out.closed += 1;
                }
            }
            peers = alive;
        }
        Ok(out)
    })
}

/// Plain TCP connections to the admin API that send half a request line and wait.
fn admin_flood(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<anyhow::Result<Outcome>> {
    tokio::spawn(async move {
        let mut out = Outcome {
            sent: 0,
            received: 0,
            links: 0,
            closed: 0,
        };
        let mut conns = Vec::new();
        for i in 0..500 {
            let Ok(mut c) = tokio::net::TcpStream::connect(&ctx.admin[i % ctx.admin.len()]).await
            else {
                out.closed += 1;
                continue;
            };
            if c.write_all(b"GET /v1/peers HTTP/1.1\r\nHo").await.is_ok() {
                out.sent += 26;
                out.links += 1;
                conns.push(c);
            }
        }
        while ctx.running() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for mut c in conns {
            if c.write_all(b"s").await.is_err() {
                out.closed += 1;
            }
        }
        Ok(out)
    })
}

/// Starts the honest nodes and waits until each is linked to the others.
fn start_honest(bin: &Path, dir: impl Fn(usize) -> PathBuf) -> anyhow::Result<Vec<NodeProc>> {
    let nodes = (0..HONEST)
        .map(|k| NodeProc::start(bin, &dir(k)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while nodes.iter().any(|n| n.connected() < HONEST - 1) {
        if Instant::now() > deadline {
            bail!("the honest nodes did not connect");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(nodes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let bin = PathBuf::from(
        std::env::var("CHAINMESH_BIN").unwrap_or_else(|_| "target/release/chainmesh".into()),
    );
    let bin = std::fs::canonicalize(&bin)
        .with_context(|| format!("{}: run `cargo build --release` first", bin.display()))?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_owned();
    // HOSTILE_KEEP=1 leaves the nodes' directories and logs behind for a look.
    let _cleanup = if std::env::var_os("HOSTILE_KEEP").is_some() {
        eprintln!("node directories kept in {}", tmp.keep().display());
        None
    } else {
        Some(tmp)
    };
    let base = free_port_base()?;
    let init = Command::new(&bin)
        .args([
            "init",
            "--nodes",
            "4",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(root.join("net"))
        .output()?;
    if !init.status.success() {
        bail!("init: {}", String::from_utf8_lossy(&init.stderr));
    }
    let node_dir = |k: usize| root.join("net").join(format!("node{k}"));
    let identity = Identity::load(
        &node_dir(HONEST).join("conf/ca.crt"),
        &node_dir(HONEST).join("conf/node.crt"),
        &node_dir(HONEST).join("conf/node.key"),
    )?;
    let ids: Vec<NodeId> = (0..HONEST)
        .map(|k| chainmesh::identity::node_id_of_file(&node_dir(k).join("conf/node.crt")))
        .collect::<Result<_, _>>()?;
    let attacks: [(&str, Attack); 4] = [
        ("compression bomb", compression_bomb),
        ("status request flood", status_flood),
        ("slowloris (max Length)", slowloris),
        ("admin half-request flood", admin_flood),
    ];
    println!(
        "{:<26} {:>12} {:>12} {:>7} {:>7} {:>14} {:>12} {:>12}",
        "attack",
        "sent",
        "answered",
        "links",
        "closed",
        "peak RSS +KiB",
        "p50 before",
        "p50 during"
    );
    // HOSTILE_ONLY=WORD runs only the attacks whose name contains WORD.
    let only = std::env::var("HOSTILE_ONLY").unwrap_or_default();
    for (name, attack) in attacks
        .into_iter()
        .filter(|(n, _)| n.contains(only.as_str()))
    {
        // Fresh nodes for each attack, so that one attack's aftermath is not the next's.
        let nodes = start_honest(&bin, node_dir)?;
        let before_rss: Vec<u64> = nodes.iter().map(NodeProc::rss_kib).collect();
        let before = ping_p50(&nodes[0], &ids[2]).await;
        let ctx = Arc::new(Ctx {
            identity: identity.clone(),
            me: identity.node_id,
            targets: nodes
                .iter()
                .map(|n| n.p2p.clone())
                .zip(ids.clone())
                .collect(),
            admin: nodes.iter().map(|n| n.admin.clone()).collect(),
            stop: AtomicBool::new(false),
        });
        let task = attack(ctx.clone());
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = {
            let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
            let peak = peak.clone();
            let before_rss = before_rss.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                while ctx.running() {
                    for (pid, b) in pids.iter().zip(&before_rss) {
                        let now = rss_of(*pid);
                        peak.fetch_max(now.saturating_sub(*b), Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = ping_p50(&nodes[0], &ids[2]).await;
        let left = Duration::from_secs(secs).saturating_sub(started.elapsed());
        tokio::time::sleep(left).await;
        ctx.stop.store(true, Ordering::Relaxed);
        let out = task.await??;
        sampling.await?;
        println!(
            "{:<26} {:>12} {:>12} {:>7} {:>7} {:>14} {:>12} {:>12}",
            name,
            out.sent,
            out.received,
            out.links,
            out.closed,
            peak.load(Ordering::Relaxed),
            fmt_us(before),
            fmt_us(during)
        );
    }
    Ok(())
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn ping_p50(from: &NodeProc, to: &NodeId) -> Option<u64> {
    let admin = from.admin.clone();
    let dir = from.dir.clone();
    let to = *to;
    tokio::task::spawn_blocking(move || {
        let probe = ProbeOnly { admin, dir };
        let rtts: Vec<u64> = (0..PINGS).filter_map(|_| probe.ping(&to)).collect();
        if rtts.len() < PINGS / 2 {
            None
        } else {
            p50(rtts)
        }
    })
    .await
    .ok()
    .flatten()
}

/// The admin address and directory of a node, for pinging from a blocking thread.
struct ProbeOnly {
    admin: String,
    dir: PathBuf,
}

impl ProbeOnly {
    fn ping(&self, to: &NodeId) -> Option<u64> {
        let url = format!("http://{}/v1/ping", self.admin);
        let mut req = ureq::post(&url);
        if let Ok(t) = std::fs::read_to_string(self.dir.join("admin.token")) {
            req = req.header("Authorization", &format!("Bearer {}", t.trim()));
        }
        let mut r = req
            .send_json(serde_json::json!({ "to": to.to_string(), "timeout_ms": 5000 }))
            .ok()?;
        let v: serde_json::Value = r.body_mut().read_json().ok()?;
        v["rtt_us"].as_u64()
    }
}

fn fmt_us(v: Option<u64>) -> String {
    v.map(|us| format!("{:.2} ms", us as f64 / 1000.0))
        .unwrap_or_else(|| "failed".into())
}

/// A base port with 4 free P2P ports above it and 4 free admin ports 1000 above those.
fn free_port_base() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let base = l.local_addr()?.port();
        drop(l);
        if base > 60000 {
            continue;
        }
        let free = (0..4u16).all(|k| {
            [base + k, base + 1000 + k]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no free port range")
}
