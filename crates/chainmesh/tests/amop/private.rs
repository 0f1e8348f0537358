//! Private topics (FISCO 2.x's verified topics) on two nodes, with clients of our own playing
//! both SDK roles: on node 1 a private subscriber that proves its key by signing a challenge,
//! on node 0 a publisher holding one public key that checks the signature and tells its node
//! the verdict (0x37 / 0x38).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chainmesh::amop::VerifyStatus;
use chainmesh::identity::keys;
use chainmesh::identity::NodeId;
use chainmesh::wire::{channel_result, split_amop, ChannelPack, ChannelType};
use chainmesh_testkit::channel::ChannelReceived;

use super::*;

const TOPIC: &str = "#!$TopicNeedVerify_t";
const PUSH: &str = "#!$PushChannel_#!$TopicNeedVerify_t";
/// The subscriber's challenge route, with the uuid the Java SDK would draw.
const CERT: &str = "#!$VerifyChannel_#!$TopicNeedVerify_t_00112233445566778899aabbccddeeff";

/// Two AMOP nodes linked to each other.
async fn pair() -> LocalNet {
    let net = amop_net(2, None).await;
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, linked).await);
    net
}

fn linked(n: &LocalNet) -> bool {
    (0..2).all(|i| n.handle(i).reachable_nodes().len() == 1)
}

/// What the private subscriber received.
#[derive(Default)]
struct Received {
    unicasts: AtomicUsize,
    multicasts: AtomicUsize,
}

/// The subscriber's SDK role on node `i`: subscribes the private topic and its verify
/// channel, answers a challenge on the verify channel with its key's signature of the random
/// value, and acks every unicast on the private topic.
async fn private_subscriber(
    net: &LocalNet,
    i: usize,
) -> (Arc<Received>, tokio::task::JoinHandle<()>) {
    let identity = net.generated(i).load_identity().unwrap();
    // No `sync` here: a challenge may arrive at once, and `sync` skips other frames.
    let mut c = client(net, i).await;
    c.subscribe(&[TOPIC, CERT]).await.unwrap();
    let got = Arc::new(Received::default());
    let seen = got.clone();
    let task = tokio::spawn(async move {
        while let Ok(ChannelReceived::Frame(p)) = c.recv(WAIT * 6).await {
            let Ok((topic, payload)) = split_amop(&p.data) else {
                continue;
            };
            let answer = match (p.kind, &topic[..]) {
                (ChannelType::AMOP_REQUEST, CERT) => {
                    let sig = keys::sign(&identity, &payload).unwrap();
                    ChannelPack::new(ChannelType::AMOP_RESPONSE, p.seq, amop(CERT, &sig))
                }
                (ChannelType::AMOP_REQUEST, TOPIC) => {
                    seen.unicasts.fetch_add(1, Ordering::SeqCst);
                    ack_for(&p)
                }
                (ChannelType::AMOP_MULTICAST, TOPIC) => {
                    seen.multicasts.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                _ => continue,
            };
            if c.send(&answer).await.is_err() {
                break;
            }
        }
    });
    (got, task)
}

/// The publisher's verifying SDK role on node `i`, holding the one public key `trusted`:
/// subscribes the push channel; for each 0x37 acks it, challenges `topicForCert` with a
/// random value, checks the signature and sends the 0x38 verdict.
async fn verifier(net: &LocalNet, i: usize, trusted: keys::PeerKey) -> tokio::task::JoinHandle<()> {
    let mut c = subscriber(net, i, &[PUSH]).await;
    tokio::spawn(async move {
        while let Some(req) = c.recv_kind(ChannelType::VERIFY, WAIT * 6).await {
            let ask: serde_json::Value = serde_json::from_slice(&req.data).unwrap();
            let cert = ask["topicForCert"].as_str().unwrap().to_string();
            let ack = ChannelPack::new(ChannelType::VERIFY, req.seq, Bytes::new());
            c.send(&ack).await.unwrap();
            let random = format!("{:032x}", rand::random::<u128>());
            let seq = c
                .publish(ChannelType::AMOP_REQUEST, &cert, random.as_bytes())
                .await
                .unwrap();
            let reply = answer(&mut c, seq).await;
            let ok = split_amop(&reply.data).is_ok_and(|(_, sig)| {
                <[u8; keys::SIGNATURE_LEN]>::try_from(&sig[..])
                    .is_ok_and(|sig| keys::verify(&trusted, random.as_bytes(), &sig))
            });
            let verdict = serde_json::json!({
                "checkResult": if ok { 0 } else { 1 },
                "nodeId": ask["nodeId"],
                "topic": ask["topic"],
            });
            let data = Bytes::from(verdict.to_string());
            c.send_new(ChannelType::UPDATE_TOPIC_STATUS, data)
                .await
                .unwrap();
        }
    })
}

/// Node `i`'s public key, as a publisher would have it configured.
fn key_of(net: &LocalNet, i: usize) -> keys::PeerKey {
    let identity = net.generated(i).load_identity().unwrap();
    let curve = keys::curve_of(&identity).unwrap();
    keys::public_key_of(&identity.node_id, curve).unwrap()
}

/// Node `at`'s verification status of node `of`'s private topic.
fn status(net: &LocalNet, at: usize, of: usize) -> Option<VerifyStatus> {
    let node: NodeId = net.handle(of).node_id();
    net.amop(at)
        .view()
        .private
        .into_iter()
        .find(|v| v.node == node.to_string() && v.topic == TOPIC)
        .map(|v| v.status)
}

async fn wait_status(net: &LocalNet, at: usize, of: usize, want: VerifyStatus) {
    assert!(
        net.wait_for(WAIT, |n| status(n, at, of) == Some(want))
            .await,
        "node {at} never saw node {of}'s topic {want:?}: {:?}",
        status(net, at, of)
    );
}

/// Publishes a unicast on the private topic from `p` and returns the answer.
async fn unicast(p: &mut RawChannel, payload: &[u8]) -> ChannelPack {
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, TOPIC, payload)
        .await
        .unwrap();
    answer(p, seq).await
}

#[tokio::test]
async fn a_verified_subscriber_gets_unicasts_and_multicasts_and_its_acks_come_back() {
    let net = pair().await;
    let (got, _sub) = private_subscriber(&net, 1).await;
    let _verifier = verifier(&net, 0, key_of(&net, 1)).await;
    wait_status(&net, 0, 1, VerifyStatus::VerifySuccess).await;

    let mut p = client(&net, 0).await;
    let ack = unicast(&mut p, b"hello").await;
    assert_eq!(ack.result, channel_result::OK);
    assert_eq!(ack.data, amop(TOPIC, b"ack:hello"));
    assert_eq!(got.unicasts.load(Ordering::SeqCst), 1);

    p.publish(ChannelType::AMOP_MULTICAST, TOPIC, b"bcast")
        .await
        .unwrap();
    let reached = || got.multicasts.load(Ordering::SeqCst) == 1;
    assert!(net.wait_for(WAIT, |_| reached()).await);
    let stats = net.amop(0).stats();
    assert!(stats.verifications_started >= 1);
    assert_eq!(stats.verifications_succeeded, 1);
    assert_eq!(stats.verifications_failed, 0);
}

#[tokio::test]
async fn a_refused_subscriber_gets_no_unicast_and_no_multicast() {
    let net = pair().await;
    let (got, _sub) = private_subscriber(&net, 1).await;
    // The publisher holds node 0's key, not the subscriber's.
    let _verifier = verifier(&net, 0, key_of(&net, 0)).await;
    wait_status(&net, 0, 1, VerifyStatus::VerifyFailed).await;

    let mut p = client(&net, 0).await;
    let refused = unicast(&mut p, b"hello").await;
    assert_eq!(refused.result, channel_result::NO_SUBSCRIBER);
    p.publish(ChannelType::AMOP_MULTICAST, TOPIC, b"bcast")
        .await
        .unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(got.unicasts.load(Ordering::SeqCst), 0);
    assert_eq!(got.multicasts.load(Ordering::SeqCst), 0);
    assert_eq!(net.amop(0).stats().verifications_failed, 1);
}

#[tokio::test]
async fn before_verification_completes_nothing_reaches_the_other_node() {
    let net = pair().await;
    let (got, _sub) = private_subscriber(&net, 1).await;
    // No publisher holding keys on node 0: the topic stays VERIFYING.
    wait_status(&net, 0, 1, VerifyStatus::Verifying).await;

    let mut p = client(&net, 0).await;
    let refused = unicast(&mut p, b"hello").await;
    assert_eq!(refused.result, channel_result::NO_SUBSCRIBER);
    p.publish(ChannelType::AMOP_MULTICAST, TOPIC, b"bcast")
        .await
        .unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(got.unicasts.load(Ordering::SeqCst), 0);
    assert_eq!(got.multicasts.load(Ordering::SeqCst), 0);
    assert_eq!(status(&net, 0, 1), Some(VerifyStatus::Verifying));
}

#[tokio::test]
async fn a_local_subscriber_gets_private_messages_without_verification() {
    let net = pair().await;
    let (got, _sub) = private_subscriber(&net, 1).await;
    let (local, _acking) = acking(subscriber(&net, 0, &[TOPIC]).await);
    wait_status(&net, 0, 1, VerifyStatus::Verifying).await;

    let mut p = client(&net, 0).await;
    for _ in 0..5 {
        let ack = unicast(&mut p, b"hello").await;
        assert_eq!(ack.data, amop(TOPIC, b"ack:hello"));
    }
    assert_eq!(local.load(Ordering::SeqCst), 5);
    assert_eq!(
        got.unicasts.load(Ordering::SeqCst),
        0,
        "node 1 is not verified"
    );
}

#[tokio::test]
async fn a_verdict_from_a_session_not_on_the_push_channel_is_ignored() {
    let net = pair().await;
    let (_got, _sub) = private_subscriber(&net, 1).await;
    wait_status(&net, 0, 1, VerifyStatus::Verifying).await;

    let mut c = client(&net, 0).await;
    let verdict = serde_json::json!({
        "checkResult": 0,
        "nodeId": net.handle(1).node_id().to_string(),
        "topic": TOPIC,
    });
    c.send_new(
        ChannelType::UPDATE_TOPIC_STATUS,
        Bytes::from(verdict.to_string()),
    )
    .await
    .unwrap();
    sync(&mut c).await;
    assert_eq!(net.amop(0).stats().verify_frames_ignored, 1);
    assert_eq!(status(&net, 0, 1), Some(VerifyStatus::Verifying));
}

#[tokio::test]
async fn a_restarted_subscriber_node_is_verified_again() {
    let mut net = pair().await;
    let (_got, sub) = private_subscriber(&net, 1).await;
    let _verifier = verifier(&net, 0, key_of(&net, 1)).await;
    wait_status(&net, 0, 1, VerifyStatus::VerifySuccess).await;

    sub.abort();
    // Node 0 notices node 1 gone before it comes back, so that the new node 1 is not
    // challenged over the old, dead link.
    net.stop(1).await;
    let alone = |n: &LocalNet| n.handle(0).reachable_nodes().is_empty();
    assert!(net.wait_for(WAIT, alone).await);
    assert!(
        net.amop(0).view().private.is_empty(),
        "a node gone leaves no state"
    );
    net.restart(1).await.unwrap();
    net.connect(1, 0);
    assert!(net.wait_for(WAIT, linked).await);
    let (got, _sub) = private_subscriber(&net, 1).await;
    let again = |n: &LocalNet| n.amop(0).stats().verifications_succeeded == 2;
    assert!(
        net.wait_for(WAIT, again).await,
        "not verified again: {:?} {:?}",
        net.amop(0).stats(),
        net.amop(0).view()
    );
    wait_status(&net, 0, 1, VerifyStatus::VerifySuccess).await;

    let mut p = client(&net, 0).await;
    let ack = unicast(&mut p, b"again").await;
    assert_eq!(ack.data, amop(TOPIC, b"ack:again"));
    assert_eq!(got.unicasts.load(Ordering::SeqCst), 1);
}
