//! The log of a node that keeps refusing one address: a member redialing it over and over is
//! warned about once (the next warning, an interval later, says how many were held back),
//! while the refusal counters count every attempt.
//!
//! The node runs in this process on a current-thread runtime, so that every one of its tasks
//! runs on the test's thread, under the subscriber that captures its log.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;

use chainmesh::identity::{generate_node_files, Curve};
use chainmesh::Node;
use chainmesh_testkit::raw::RawPeer;
use chainmesh_testkit::{config_for, wait_until};

/// Attempts made by the redialing member.
const DIALS: u64 = 20;
const WAIT: Duration = Duration::from_secs(20);

/// What the node logged, as the fmt subscriber wrote it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }

    /// Captures this thread's log lines at info and above while the guard lives.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

/// The refusal warnings in `log` whose line contains `words`.
fn warnings(log: &str, words: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("refused inbound connection") && l.contains(words))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_blacklisted_member_redialing_is_warned_about_once_and_counted_every_time() {
    let log = Captured::default();
    let _capture = log.install();
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 2, Curve::Secp256k1).unwrap();
    let mut cfg = config_for(&g[1]);
    cfg.p2p.blacklist = vec![g[0].node_id];
    let refuser = Node::start(cfg, None).await.unwrap();
    let h = refuser.handle();
    let addr = h.listen_addr().to_string();
    let member = g[0].load_identity().unwrap();
    let blacklisted = || h.peers().refusal_counts().get("blacklisted").copied();

    for k in 1..=DIALS {
        // Refused in TLS; whether the dial itself sees the alert depends on timing.
        let _ = RawPeer::dial(&member, &addr).await;
        assert!(
            wait_until(WAIT, || blacklisted() == Some(k)).await,
            "refusal {k} not counted: {:?}\n{}",
            h.peers().refusal_counts(),
            log.text()
        );
    }

    let text = log.text();
    let said = warnings(&text, "blacklisted");
    assert_eq!(said.len(), 1, "one warning for {DIALS} refusals:\n{text}");
    assert!(said[0].contains("held_back=0"), "{}", said[0]);
    refuser.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_are_warned_about_once_and_counted_every_time() {
    let log = Captured::default();
    let _capture = log.install();
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 1, Curve::Secp256k1).unwrap();
    let mut cfg = config_for(&g[0]);
    cfg.limits.connections_per_ip = 1;
    let node = Node::start(cfg, None).await.unwrap();
    let h = node.handle();
    let addr = h.listen_addr();
    let over = || {
        h.peers()
            .refusal_counts()
            .get("too-many-connections-from-ip")
            .copied()
    };

    // Holds 127.0.0.1's one connection (silent, in its TLS handshake) while the others come.
    let _held = TcpStream::connect(addr).await.unwrap();
    for k in 1..=DIALS {
        let extra = TcpStream::connect(addr).await.unwrap();
        assert!(
            wait_until(WAIT, || over() == Some(k)).await,
            "refusal {k} not counted: {:?}\n{}",
            h.peers().refusal_counts(),
            log.text()
        );
        drop(extra);
    }

    let text = log.text();
    let said = warnings(&text, "limits.connections_per_ip");
    assert_eq!(said.len(), 1, "one warning for {DIALS} refusals:\n{text}");
    assert!(said[0].contains("held_back=0"), "{}", said[0]);
    node.shutdown().await;
}
