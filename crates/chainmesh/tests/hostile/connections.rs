//! Attacks on connections: a copy of a member's identity, oversized announcements before the
//! handshake, too many handshakes from one address, broken link rules after the handshake, and
//! certificates that chain to the CA but are not node certificates.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::config::TimersConfig;
use chainmesh::identity::{node_id_of_cert, Identity};
use chainmesh::peers::{random_incarnation, PeerEvent, RefusalReason};
use chainmesh::session::CloseReason;
use chainmesh::wire::{Handshake, Packet, PacketType, DEFAULT_MAX_PACKET, MAX_PROTOCOL_VERSION};
use chainmesh::{NodeHandle, NodeId};
use chainmesh_testkit::raw::{RawPeer, Received};
use chainmesh_testkit::{
    fast_timers, next_refusal, serve_echo, wait_until, LocalNet, LocalNetOptions,
};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509NameBuilder, X509};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(10);
const ECHO: u16 = 77;

/// Timers for tests in which a live session must not look silent: a session silent for 1.5
/// heartbeat intervals counts as its peer's dead process, and a connection from another
/// process with the same certificate replaces it. Heartbeats every 2 s leave 1 s of margin
/// for a loaded machine's scheduling delays (500 ms left 250 ms, which a CI run overran).
fn steady_timers() -> TimersConfig {
    TimersConfig {
        heartbeat_interval: Duration::from_secs(2),
        ..fast_timers()
    }
}

async fn mesh(n: usize, timers: TimersConfig) -> LocalNet {
    let net = LocalNet::start(LocalNetOptions {
        timers,
        ..LocalNetOptions::new(n)
    })
    .await
    .unwrap();
    net.connect_full_mesh();
    assert!(net.wait_for(WAIT, LocalNet::is_full_mesh).await);
    net
}

/// What a node shows of its session to `peer`: connection, address, direction, start.
fn session_of(node: &NodeHandle, peer: &NodeId) -> Option<(u64, String, String, u128)> {
    node.peers().session(peer).map(|s| {
        let since = s
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        (
            s.id,
            s.addr.to_string(),
            format!("{:?}", s.direction),
            since,
        )
    })
}

async fn echo_works(from: &NodeHandle, to: &NodeHandle) -> bool {
    let payload = Bytes::from_static(b"still here");
    matches!(
        from.request(to.node_id(), ECHO, payload.clone(), WAIT).await,
        Ok(got) if got == payload
    )
}

/// Whether `events` holds a Disconnected for `peer` right now.
fn disconnected(events: &mut broadcast::Receiver<PeerEvent>, peer: NodeId) -> bool {
    std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e, PeerEvent::Disconnected { peer: p, .. } if p == peer))
}

/// The next packet that is not link or status chatter, or what ended the wait.
async fn next_goodbye(raw: &mut RawPeer) -> Option<String> {
    loop {
        match raw.recv(WAIT).await.unwrap() {
            Received::Packet(p) if p.packet_type == PacketType::GOODBYE => {
                return Some(String::from_utf8_lossy(&p.payload).into_owned())
            }
            Received::Packet(_) => {}
            Received::Closed | Received::Nothing => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_members_identity_is_refused_and_the_member_keeps_its_session() {
    let net = mesh(3, steady_timers()).await;
    let (a, b) = (net.handle(0), net.handle(1));
    serve_echo(&b, ECHO, 16, |_| {});
    // Both ends on the same connection: a second simultaneous dial no longer in flight to
    // replace the one recorded here.
    let same_link = || {
        let (ab, ba) = (
            a.peers().session(&b.node_id()),
            b.peers().session(&a.node_id()),
        );
        matches!((ab, ba), (Some(x), Some(y)) if x.addr == y.local_addr && x.local_addr == y.addr)
    };
    assert!(wait_until(WAIT, same_link).await);
    let before = session_of(&a, &b.node_id()).unwrap();
    let mut events = a.events();

    // Two copies of node 1 in turn, each a process of its own.
    for _ in 0..2 {
        let mut copy = RawPeer::dial_as(&net, 1, 0).await.unwrap();
        copy.handshake().await.unwrap();
        let why = next_goodbye(&mut copy)
            .await
            .expect("a Goodbye with the reason");
        assert!(why.contains("already connected"), "{why}");
        assert!(copy.closed_within(WAIT).await, "the copy's link is closed");
        match next_refusal(&mut events).await {
            RefusalReason::AlreadyConnected { peer, existing, .. } => {
                assert_eq!(peer, b.node_id());
                assert_eq!(existing.to_string(), before.1);
            }
            other => panic!("refused for another reason: {other}"),
        }
        assert!(echo_works(&a, &b).await, "honest requests work meanwhile");
        drop(copy);
    }
    assert_eq!(
        session_of(&a, &b.node_id()),
        Some(before),
        "the real session is untouched"
    );
    assert!(!disconnected(&mut events, b.node_id()), "no leave was seen");
    assert_eq!(
        a.peers().refusal_counts().get("already-connected"),
        Some(&2)
    );
    assert!(echo_works(&a, &b).await);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_replaces_its_silent_old_session_at_once() {
    let net = strangers().await;
    let a = net.handle(0);
    let id1 = net.generated(1).node_id;

    // The old process: handshakes, then falls silent (as a host that lost power would).
    let mut old = RawPeer::dial_as(&net, 1, 0).await.unwrap();
    old.handshake().await.unwrap();
    assert!(wait_until(WAIT, || a.peers().is_connected(&id1)).await);
    let old_conn = a.peers().session(&id1).unwrap().id;
    // Past 1.5 heartbeat intervals of silence, well before the idle timeout of 3.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut events = a.events();
    let mut new = RawPeer::dial_as(&net, 1, 0).await.unwrap();
    new.handshake().await.unwrap();
    assert!(
        wait_until(WAIT, || a
            .peers()
            .session(&id1)
            .is_some_and(|s| s.id != old_conn))
        .await,
        "the new incarnation took over"
    );
    let reason = chainmesh_testkit::next_disconnect(&mut events, &id1).await;
    assert_eq!(reason, CloseReason::Restarted);
    assert!(old.closed_within(WAIT).await);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_length_before_the_handshake_closes_the_link_at_once() {
    let net = strangers().await;
    let mut events = net.handle(0).events();
    let mut raw = RawPeer::dial_as(&net, 1, 0).await.unwrap();
    // The header of a 32 MiB "handshake", and nothing more: the node must not wait for it.
    let mut header = DEFAULT_MAX_PACKET.to_be_bytes().to_vec();
    header.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0]);
    raw.send_raw(&header).await.unwrap();
    assert!(raw.closed_within(Duration::from_secs(1)).await);
    let reason = next_refusal(&mut events).await;
    assert!(
        matches!(reason, RefusalReason::MalformedHandshake(_)) && reason.to_string().contains("64"),
        "{reason}"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_from_one_address_beyond_the_limit_are_refused() {
    let net = LocalNet::start(LocalNetOptions {
        tweak: Some(|_, c| c.limits.handshakes_per_ip = 2),
        ..LocalNetOptions::new(2)
    })
    .await
    .unwrap();
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, LocalNet::is_full_mesh).await);
    let a = net.handle(0);
    let mut events = a.events();
    // Connections that never start TLS hold their handshake slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(net.addr(0)).await.unwrap());
    }
    let mut third = tokio::net::TcpStream::connect(net.addr(0)).await.unwrap();
    match next_refusal(&mut events).await {
        RefusalReason::TooManyHandshakesFromIp { limit: 2, .. } => {}
        other => panic!("refused for another reason: {other}"),
    }
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut third, &mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "the third is closed");
    assert_eq!(
        a.peers()
            .refusal_counts()
            .get("too-many-handshakes-from-ip"),
        Some(&1)
    );
    assert!(net.has_peers(0, 1), "the honest link is untouched");
    drop(held);
    net.shutdown().await;
}

/// Two nodes that know nothing of each other: the raw peer can hold node 1's identity without
/// meeting a live session of it on node 0.
async fn strangers() -> LocalNet {
    LocalNet::start(LocalNetOptions::new(2)).await.unwrap()
}

/// Runs the handshake as node 1 against node 0, sends `bad`, and returns the reason node 0
/// closed the link with.
async fn close_reason_for(bad: impl FnOnce(u16) -> Packet) -> String {
    let net = strangers().await;
    let a = net.handle(0);
    let id1 = net.generated(1).node_id;
    let mut events = a.events();
    let mut raw = RawPeer::dial_as(&net, 1, 0).await.unwrap();
    raw.handshake().await.unwrap();
    raw.send(&bad(raw.version)).await.unwrap();
    assert!(raw.closed_within(WAIT).await, "the link is closed");
    let reason = chainmesh_testkit::next_disconnect(&mut events, &id1).await;
    net.shutdown().await;
    match reason {
        CloseReason::Protocol(why) => why,
        other => panic!("closed for another reason: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_with_another_version_closes_the_link_naming_both() {
    let why = close_reason_for(|v| Packet::heartbeat(v + 1)).await;
    assert!(
        why.contains(&format!("Version {}", MAX_PROTOCOL_VERSION + 1))
            && why.contains(&format!("version {MAX_PROTOCOL_VERSION}")),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handshake_closes_the_link() {
    let why = close_reason_for(|v| {
        let mut p = Packet::handshake(&Handshake::ours(0, 1 << 20, random_incarnation()));
        p.version = v;
        p
    })
    .await;
    assert!(why.contains("second Handshake"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_with_a_payload_closes_the_link() {
    let why = close_reason_for(|v| {
        let mut p = Packet::heartbeat(v);
        p.payload = Bytes::from_static(b"not empty");
        p
    })
    .await;
    assert!(why.contains("Heartbeat with a 9-byte payload"), "{why}");
}

/// How a certificate issued by the chain's agency fails to be a node certificate.
#[derive(Clone, Copy, Debug)]
enum BadLeaf {
    /// basicConstraints CA:TRUE.
    Ca,
    /// No extensions at all.
    Bare,
}

/// An identity whose leaf, signed by `net`'s agency, is `bad`; built by hand since loading it
/// from files is refused.
fn bad_identity(net: &LocalNet, bad: BadLeaf) -> Identity {
    let read = |p: &Path| std::fs::read(net.dir().join(p)).unwrap();
    let agency = X509::from_pem(&read(Path::new("agency/agency.crt"))).unwrap();
    let agency_key = PKey::private_key_from_pem(&read(Path::new("agency/agency.key"))).unwrap();
    let ca = X509::from_pem(&read(Path::new("ca/ca.crt"))).unwrap();
    let group = EcGroup::from_curve_name(Nid::SECP256K1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "intruder")
        .unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::ONE, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(agency.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    if let BadLeaf::Ca = bad {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(KeyUsage::new().digital_signature().build().unwrap())
            .unwrap();
    }
    b.sign(&agency_key, MessageDigest::sha256()).unwrap();
    let leaf = b.build();
    Identity {
        node_id: node_id_of_cert(&leaf).unwrap(),
        key,
        chain: vec![leaf, agency],
        ca: vec![ca],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_are_not_node_certificates_are_refused_both_ways() {
    let net = LocalNet::start(LocalNetOptions::new(1)).await.unwrap();
    let a = net.handle(0);
    for (bad, words) in [
        (BadLeaf::Ca, "CA:TRUE"),
        (BadLeaf::Bare, "no basicConstraints"),
    ] {
        let identity = bad_identity(&net, bad);
        // As a peer: refused in the TLS verify callback, with the reason.
        let mut events = a.events();
        if let Ok(mut raw) = RawPeer::dial(&identity, &net.addr(0)).await {
            // TLS 1.3 clients finish before the server has checked them.
            let _ = raw.handshake().await;
        }
        match next_refusal(&mut events).await {
            reason @ RefusalReason::NotALeaf { .. } => {
                assert!(reason.to_string().contains(words), "{bad:?}: {reason}");
            }
            other => panic!("{bad:?} refused for another reason: {other}"),
        }
        assert!(a.peers().sessions().is_empty());

        // As the local identity: start-up refuses it, naming the file.
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, pem: Vec<u8>| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let crt = file(
            "bad-node.crt",
            [
                identity.chain[0].to_pem().unwrap(),
                identity.chain[1].to_pem().unwrap(),
            ]
            .concat(),
        );
        let key = file("node.key", identity.key.private_key_to_pem_pkcs8().unwrap());
        let ca = file("ca.crt", identity.ca[0].to_pem().unwrap());
        let e = Identity::load(&ca, &crt, &key).unwrap_err().to_string();
        assert!(
            e.contains("bad-node.crt") && e.contains("not a node certificate") && e.contains(words),
            "{bad:?}: {e}"
        );
    }
    assert_eq!(a.peers().refusal_counts().get("not-a-leaf"), Some(&2));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_blacklisted_while_its_handshake_is_in_flight_is_closed_once_registered() {
    let net = LocalNet::start(LocalNetOptions {
        timers: steady_timers(),
        ..LocalNetOptions::new(2)
    })
    .await
    .unwrap();
    let (a, b) = (net.handle(0), net.handle(1).node_id());
    // Blacklisted after the node admitted the link and before the session is registered: a
    // reload in that gap sweeps the sessions without this one among them.
    let mut raw = RawPeer::dial_as(&net, 1, 0).await.unwrap();
    raw.handshake_around(|| {
        a.peers()
            .set_admission(chainmesh::admission::Admission::new([b], []))
    })
    .await
    .unwrap();
    assert!(raw.closed_within(WAIT).await, "the link is closed");
    assert!(
        wait_until(WAIT, || !a.peers().is_connected(&b)).await,
        "no session of the blacklisted member stays"
    );
    // Closed for being blacklisted, not later for its silence.
    assert_eq!(a.peers().last_reason(&b), Some(CloseReason::Blacklisted));
    net.shutdown().await;
}
