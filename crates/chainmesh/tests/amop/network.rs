//! Three nodes in a line, 0-1-2: node 0 reaches node 2 through the relay node 1. Publishers
//! and subscribers on different nodes.

use std::sync::atomic::Ordering;

use chainmesh::wire::{channel_result, ChannelPack, ChannelType};

use super::*;

/// A line of three AMOP nodes with routes between all of them.
async fn line(tweak: Option<fn(usize, &mut Config)>) -> LocalNet {
    let net = amop_net(3, tweak).await;
    net.connect_line();
    let reach_all = |n: &LocalNet| (0..3).all(|i| n.handle(i).reachable_nodes().len() == 2);
    assert!(net.wait_for(WAIT, reach_all).await);
    net
}

/// Whether node `at`'s AMOP view shows node `holder` holding `topic`.
fn sees(net: &LocalNet, at: usize, holder: usize, topic: &str) -> bool {
    let holder = net.handle(holder).node_id().to_string();
    net.amop(at)
        .view()
        .remote
        .iter()
        .any(|r| r.node == holder && r.topics.iter().any(|t| t == topic))
}

async fn wait_sees(net: &LocalNet, at: usize, holder: usize, topic: &str) {
    assert!(net.wait_for(WAIT, |n| sees(n, at, holder, topic)).await);
}

#[tokio::test]
async fn a_unicast_through_a_relay_reaches_the_subscriber_and_its_ack_comes_back_unchanged() {
    let net = line(None).await;
    let mut s = subscriber(&net, 2, &["t1"]).await;
    wait_sees(&net, 0, 2, "t1").await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t1", b"hello")
        .await
        .unwrap();
    let push = s.recv_kind(ChannelType::AMOP_REQUEST, WAIT).await.unwrap();
    assert_eq!(
        push,
        ChannelPack::new(ChannelType::AMOP_REQUEST, seq, amop("t1", b"hello"))
    );
    let ack = ChannelPack {
        result: 5,
        ..ack_for(&push)
    };
    s.send(&ack).await.unwrap();
    assert_eq!(answer(&mut p, seq).await, ack);
    assert!(net.amop(0).stats().forwarded_out >= 1);
    assert!(net.amop(2).stats().forwarded_in >= 1);
}

#[tokio::test]
async fn a_multicast_reaches_subscribers_on_two_other_nodes() {
    let net = line(None).await;
    let mut s1 = subscriber(&net, 1, &["t1"]).await;
    let mut s2 = subscriber(&net, 2, &["t1"]).await;
    wait_sees(&net, 0, 1, "t1").await;
    wait_sees(&net, 0, 2, "t1").await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_MULTICAST, "t1", b"bcast")
        .await
        .unwrap();
    let a = answer(&mut p, seq).await;
    assert_eq!(
        (a.result, &a.data[..]),
        (channel_result::OK, &b"\x03t1bcast"[..])
    );
    let sent = ChannelPack::new(ChannelType::AMOP_MULTICAST, seq, amop("t1", b"bcast"));
    for s in [&mut s1, &mut s2] {
        assert_eq!(
            s.recv_kind(ChannelType::AMOP_MULTICAST, WAIT)
                .await
                .unwrap(),
            sent
        );
    }
}

fn short_ack_timeout(_: usize, c: &mut Config) {
    c.channel.ack_timeout = Duration::from_millis(300);
}

#[tokio::test]
async fn a_silent_subscriber_fails_over_to_one_on_another_node() {
    let net = line(Some(short_ack_timeout)).await;
    // Node 1's only subscriber never answers, so node 1 answers 104 and node 0 moves on.
    let _silent = subscriber(&net, 1, &["t1"]).await;
    let (acked, task) = acking(subscriber(&net, 2, &["t1"]).await);
    wait_sees(&net, 0, 1, "t1").await;
    wait_sees(&net, 0, 2, "t1").await;
    let mut p = client(&net, 0).await;
    for _ in 0..4 {
        let seq = p
            .publish(ChannelType::AMOP_REQUEST, "t1", b"x")
            .await
            .unwrap();
        let a = answer(&mut p, seq).await;
        assert_eq!((a.result, &a.data[..]), (0, &b"\x03t1ack:x"[..]));
    }
    assert_eq!(acked.load(Ordering::SeqCst), 4);
    task.abort();
}

#[tokio::test]
async fn a_subscriber_node_leaving_mid_stream_leaves_no_publish_unanswered() {
    let mut net = line(None).await;
    let (on1, t1) = acking(subscriber(&net, 1, &["t1"]).await);
    let (on2, t2) = acking(subscriber(&net, 2, &["t1"]).await);
    wait_sees(&net, 0, 1, "t1").await;
    wait_sees(&net, 0, 2, "t1").await;
    let leaving = net.handle(2).node_id().to_string();
    let mut p = client(&net, 0).await;
    for i in 0..60 {
        if i == 20 {
            net.stop(2).await;
        }
        let seq = p
            .publish(ChannelType::AMOP_REQUEST, "t1", b"x")
            .await
            .unwrap();
        let a = answer(&mut p, seq).await;
        assert_eq!(a.result, 0, "publish {i}");
    }
    assert!(on1.load(Ordering::SeqCst) > 0 && on2.load(Ordering::SeqCst) > 0);
    let view = net.amop(0).view();
    assert!(
        view.remote.iter().all(|r| r.node != leaving),
        "node 2 left node 0's view"
    );
    t1.abort();
    t2.abort();
}

#[tokio::test]
async fn a_topic_no_node_holds_any_more_is_answered_100_across_the_network() {
    let net = line(None).await;
    let mut s = subscriber(&net, 2, &["t1"]).await;
    wait_sees(&net, 0, 2, "t1").await;
    s.subscribe(&[]).await.unwrap();
    sync(&mut s).await;
    assert!(net.wait_for(WAIT, |n| !sees(n, 0, 2, "t1")).await);
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t1", b"x")
        .await
        .unwrap();
    let a = answer(&mut p, seq).await;
    assert_eq!((a.result, a.data.len()), (channel_result::NO_SUBSCRIBER, 0));
}

#[tokio::test]
async fn a_node_over_its_in_flight_bound_answers_103_across_the_network() {
    let net = line(Some(|_, c| c.channel.max_in_flight_total = 1)).await;
    let silent = subscriber(&net, 2, &["t1"]).await;
    wait_sees(&net, 0, 2, "t1").await;
    second_unicast_over_the_bound_gets_103(&net, silent, 0).await;
    assert_eq!(net.amop(2).stats().over_limit, 1);
}
