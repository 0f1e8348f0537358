//! One node: the behaviour cases A3-A16 of the channel protocol notes, the session bounds
//! and a slow client.

use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};
use chainmesh::wire::{channel_result, ChannelPack, ChannelType};
use chainmesh_testkit::channel::ChannelReceived;
use chainmesh_testkit::wait_until;

use super::*;

#[tokio::test]
async fn a3_a_unicast_reaches_the_subscriber_and_its_ack_returns_unchanged() {
    let net = amop_net(1, None).await;
    let mut s = subscriber(&net, 0, &["t1"]).await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t1", b"hello")
        .await
        .unwrap();
    let push = s.recv_kind(ChannelType::AMOP_REQUEST, WAIT).await.unwrap();
    assert_eq!(push.seq, seq);
    assert_eq!(&push.data[..], b"\x03t1hello");
    // Result and data as the subscriber sets them, a non-zero result included.
    let ack = ChannelPack {
        result: 7,
        ..ack_for(&push)
    };
    s.send(&ack).await.unwrap();
    assert_eq!(answer(&mut p, seq).await, ack);
    assert_eq!(net.amop(0).stats().unicast_acked, 1);
}

#[tokio::test]
async fn a4_no_subscriber_is_answered_with_the_42_byte_result_100_frame() {
    let net = amop_net(1, None).await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t9", b"hello")
        .await
        .unwrap();
    let record = p.read_record(WAIT).await.unwrap();
    let mut expected = BytesMut::new();
    expected.put_slice(&[0x00, 0x00, 0x00, 0x2a, 0x00, 0x31]);
    expected.put_slice(&seq);
    expected.put_slice(&[0x00, 0x00, 0x00, 0x64]);
    assert_eq!(record, expected.freeze());
}

#[tokio::test]
async fn a5_a_multicast_reaches_every_subscriber_and_the_publisher_is_answered() {
    let net = amop_net(1, None).await;
    let mut s1 = subscriber(&net, 0, &["t1"]).await;
    let mut s2 = subscriber(&net, 0, &["t1", "t2"]).await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_MULTICAST, "t1", b"bcast")
        .await
        .unwrap();
    let sent = ChannelPack::new(ChannelType::AMOP_MULTICAST, seq, amop("t1", b"bcast"));
    for s in [&mut s1, &mut s2] {
        let got = s
            .recv_kind(ChannelType::AMOP_MULTICAST, WAIT)
            .await
            .unwrap();
        assert_eq!(got, sent);
    }
    let a = answer(&mut p, seq).await;
    assert_eq!((a.result, a.data), (channel_result::OK, sent.data));
}

#[tokio::test]
async fn a6_a_multicast_nobody_subscribes_to_is_still_answered_with_0() {
    let net = amop_net(1, None).await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_MULTICAST, "t9", b"x")
        .await
        .unwrap();
    let a = answer(&mut p, seq).await;
    assert_eq!(
        (a.result, &a.data[..]),
        (channel_result::OK, &b"\x03t9x"[..])
    );
}

#[tokio::test]
async fn a7_a_second_subscribe_replaces_the_first() {
    let net = amop_net(1, None).await;
    let mut s = subscriber(&net, 0, &["t1"]).await;
    s.subscribe(&["t2"]).await.unwrap();
    sync(&mut s).await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t1", b"x")
        .await
        .unwrap();
    assert_eq!(
        answer(&mut p, seq).await.result,
        channel_result::NO_SUBSCRIBER
    );
    assert_eq!(net.amop(0).view().local_topics, vec!["t2"]);
}

#[tokio::test]
async fn a8_a_subscriber_that_disconnected_gets_nothing_and_its_topics_leave() {
    let net = amop_net(1, None).await;
    let s = subscriber(&net, 0, &["t1"]).await;
    assert_eq!(net.handle(0).status().local().1.amop_topics, vec!["t1"]);
    drop(s);
    let amop = net.amop(0);
    assert!(wait_until(WAIT, || amop.view().sessions.is_empty()).await);
    assert!(amop.view().local_topics.is_empty());
    assert!(net.handle(0).status().local().1.amop_topics.is_empty());
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t1", b"x")
        .await
        .unwrap();
    assert_eq!(
        answer(&mut p, seq).await.result,
        channel_result::NO_SUBSCRIBER
    );
}

fn short_ack_timeout(_: usize, c: &mut Config) {
    c.channel.ack_timeout = Duration::from_millis(300);
}

#[tokio::test]
async fn a9_subscribers_that_never_ack_end_in_104_with_the_original_data() {
    let net = amop_net(1, Some(short_ack_timeout)).await;
    let mut s1 = subscriber(&net, 0, &["t1"]).await;
    let mut s2 = subscriber(&net, 0, &["t1"]).await;
    let mut p = client(&net, 0).await;
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t1", b"x")
        .await
        .unwrap();
    let a = answer(&mut p, seq).await;
    assert_eq!(
        (a.result, &a.data[..]),
        (channel_result::ALL_FAILED, &b"\x03t1x"[..])
    );
    // Each silent subscriber was tried once before giving up.
    for s in [&mut s1, &mut s2] {
        assert_eq!(
            s.recv_kind(ChannelType::AMOP_REQUEST, WAIT)
                .await
                .unwrap()
                .seq,
            seq
        );
    }
    assert_eq!(net.amop(0).stats().subscriber_failures, 2);
}

#[tokio::test]
async fn a9_a_silent_subscriber_fails_over_to_one_that_acks() {
    let net = amop_net(1, Some(short_ack_timeout)).await;
    let _silent = subscriber(&net, 0, &["t1"]).await;
    let (acked, task) = acking(subscriber(&net, 0, &["t1"]).await);
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
async fn a10_unicasts_are_spread_over_the_subscribers_at_random() {
    let net = amop_net(1, None).await;
    let (n1, t1) = acking(subscriber(&net, 0, &["t1"]).await);
    let (n2, t2) = acking(subscriber(&net, 0, &["t1"]).await);
    let mut p = client(&net, 0).await;
    for _ in 0..40 {
        let seq = p
            .publish(ChannelType::AMOP_REQUEST, "t1", b"x")
            .await
            .unwrap();
        assert_eq!(answer(&mut p, seq).await.result, 0);
    }
    let (a, b) = (n1.load(Ordering::SeqCst), n2.load(Ordering::SeqCst));
    assert_eq!(a + b, 40);
    assert!(a > 0 && b > 0, "one subscriber got all 40 ({a}/{b})");
    t1.abort();
    t2.abort();
}

#[tokio::test]
async fn a12_a_silent_client_is_dropped_after_the_idle_timeout() {
    let net = amop_net(
        1,
        Some(|_, c| c.channel.idle_timeout = Duration::from_millis(500)),
    )
    .await;
    let mut silent = client(&net, 0).await;
    assert!(silent.closed_within(WAIT).await);
    let amop = net.amop(0);
    assert!(wait_until(WAIT, || amop.view().sessions.is_empty()).await);
}

#[tokio::test]
async fn a13_an_answer_and_a_push_sent_back_to_back_come_in_a_record_each() {
    let net = amop_net(1, None).await;
    // The publisher subscribes too, so its multicast is answered and pushed back to it.
    let mut p = subscriber(&net, 0, &["t1"]).await;
    p.publish(ChannelType::AMOP_MULTICAST, "t1", b"hello")
        .await
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let record = p.read_record(WAIT).await.unwrap();
        let frame = ChannelPack::decode_exact(&record, u32::MAX).unwrap();
        kinds.push(frame.kind);
    }
    kinds.sort_by_key(|k| k.0);
    assert_eq!(
        kinds,
        [ChannelType::AMOP_RESPONSE, ChannelType::AMOP_MULTICAST]
    );
}

#[tokio::test]
async fn a14_topics_of_126_and_254_bytes_are_delivered() {
    let net = amop_net(1, None).await;
    for len in [126, 254] {
        let topic = "x".repeat(len);
        let (_, task) = acking(subscriber(&net, 0, &[&topic]).await);
        let mut p = client(&net, 0).await;
        let seq = p
            .publish(ChannelType::AMOP_REQUEST, &topic, b"y")
            .await
            .unwrap();
        let a = answer(&mut p, seq).await;
        assert_eq!(a.result, 0);
        assert_eq!(usize::from(a.data[0]), len + 1, "L counts itself");
        task.abort();
    }
}

#[tokio::test]
async fn a15_a_frame_under_42_or_over_the_limit_closes_that_session_only() {
    let net = amop_net(1, None).await;
    let mut other = client(&net, 0).await;
    let max = net.config(0).channel.max_frame;
    for length in [41u32, max + 1] {
        let mut bad = client(&net, 0).await;
        let mut header = BytesMut::new();
        header.put_u32(length);
        header.put_u16(0x30);
        header.put_slice(&[b'0'; 36]);
        bad.send_raw(&header).await.unwrap();
        assert!(bad.closed_within(WAIT).await, "length {length}");
        sync(&mut other).await;
    }
    assert!(net.amop(0).stats().protocol_errors >= 2);
}

#[tokio::test]
async fn a16_the_handshake_agrees_on_protocol_3_and_json_heartbeats_are_answered() {
    let net = amop_net(1, None).await;
    let mut c = client(&net, 0).await;
    let hs = br#"{"minimumSupport":1,"maximumSupport":3,"clientType":"x"}"#;
    let seq = c
        .send_new(ChannelType::HANDSHAKE, Bytes::from_static(hs))
        .await
        .unwrap();
    let a = c.recv_kind(ChannelType::HANDSHAKE, WAIT).await.unwrap();
    assert_eq!(a.seq, seq);
    assert_eq!(
        &a.data[..],
        b"{\"nodeVersion\":\"2.11.0\",\"protocol\":3}\n"
    );
    let seq = c
        .send_new(
            ChannelType::HEARTBEAT,
            Bytes::from_static(br#"{"heartBeat":0}"#),
        )
        .await
        .unwrap();
    let beat = c.recv_kind(ChannelType::HEARTBEAT, WAIT).await.unwrap();
    assert_eq!(
        (beat.seq, &beat.data[..]),
        (seq, &b"{\"heartBeat\":1}\n"[..])
    );
    assert_eq!(net.amop(0).view().sessions[0].protocol, 3);
}

#[tokio::test]
async fn a_handshake_whose_versions_do_not_overlap_closes_the_session() {
    let net = amop_net(1, None).await;
    let mut c = client(&net, 0).await;
    let hs = br#"{"minimumSupport":4,"maximumSupport":5,"clientType":"x"}"#;
    c.send_new(ChannelType::HANDSHAKE, Bytes::from_static(hs))
        .await
        .unwrap();
    assert!(c.closed_within(WAIT).await);
}

#[tokio::test]
async fn an_empty_heartbeat_is_not_answered() {
    let net = amop_net(1, None).await;
    let mut c = client(&net, 0).await;
    c.send_new(ChannelType::HEARTBEAT, Bytes::new())
        .await
        .unwrap();
    assert!(matches!(
        c.recv(QUIET).await.unwrap(),
        ChannelReceived::Nothing
    ));
}

#[tokio::test]
async fn a_bad_subscribe_closes_the_session() {
    let net = amop_net(1, Some(|_, c| c.channel.max_topics_per_session = 2)).await;
    let long = format!("[\"{}\"]", "x".repeat(255));
    for data in [&b"not json"[..], br#"["a","b","c"]"#, long.as_bytes()] {
        let mut c = client(&net, 0).await;
        c.send_new(ChannelType::SUBSCRIBE, Bytes::copy_from_slice(data))
            .await
            .unwrap();
        assert!(c.closed_within(WAIT).await);
    }
    let amop = net.amop(0);
    assert!(wait_until(WAIT, || amop.view().sessions.is_empty()).await);
    assert!(amop.view().local_topics.is_empty());
}

#[tokio::test]
async fn a_request_over_the_sessions_in_flight_bound_gets_103_at_once() {
    let net = amop_net(1, Some(|_, c| c.channel.max_in_flight_per_session = 1)).await;
    let _silent = subscriber(&net, 0, &["t1"]).await;
    let mut p = client(&net, 0).await;
    p.publish(ChannelType::AMOP_REQUEST, "t1", b"first")
        .await
        .unwrap();
    let seq = p
        .publish(ChannelType::AMOP_REQUEST, "t1", b"second")
        .await
        .unwrap();
    let a = answer(&mut p, seq).await;
    assert_eq!((a.result, a.data.len()), (channel_result::OVER_LIMIT, 0));
    assert_eq!(net.amop(0).stats().over_limit, 1);
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_refused_and_counted() {
    let net = amop_net(1, Some(|_, c| c.channel.max_sessions_per_ip = 1)).await;
    let mut first = client(&net, 0).await;
    sync(&mut first).await;
    let identity = net.generated(0).load_identity().unwrap();
    let second = RawChannel::dial(&identity, &net.channel_addr(0)).await;
    if let Ok(mut second) = second {
        assert!(second.closed_within(WAIT).await);
    }
    assert_eq!(net.amop(0).stats().sessions_refused, 1);
    sync(&mut first).await;
}

#[tokio::test]
async fn rpc_without_a_handler_is_answered_method_not_found() {
    let net = amop_net(1, None).await;
    let mut c = client(&net, 0).await;
    let req = br#"{"jsonrpc": "2.0", "method": "noSuchMethod", "params": [1], "id": 5}"#;
    let seq = c
        .send_new(ChannelType::RPC, Bytes::from_static(req))
        .await
        .unwrap();
    let a = c.recv_kind(ChannelType::RPC, WAIT).await.unwrap();
    assert_eq!(a.seq, seq);
    let v: serde_json::Value = serde_json::from_slice(&a.data).unwrap();
    assert_eq!(v["id"], 5);
    assert_eq!(v["error"]["code"], -32601);
}

#[tokio::test]
async fn a_client_that_never_reads_holds_up_neither_the_publisher_nor_other_subscribers() {
    // The default 4 MiB queues: the reading subscriber never falls that far behind, while
    // the stalled one is sent four times as much as its queue and socket buffers hold.
    let net = amop_net(1, None).await;
    let _stalled = subscriber(&net, 0, &["t1"]).await;
    let mut fast = subscriber(&net, 0, &["t1"]).await;
    let mut p = client(&net, 0).await;
    let payload = vec![7u8; 8 * 1024];
    let n = 2000;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match fast.recv_kind(ChannelType::AMOP_MULTICAST, WAIT).await {
                Some(_) => got += 1,
                None => break,
            }
        }
        got
    });
    let mut answered = 0;
    for _ in 0..n {
        p.publish(ChannelType::AMOP_MULTICAST, "t1", &payload)
            .await
            .unwrap();
        // Read the answers as they come, so the publisher's own queue never fills.
        while let Ok(ChannelReceived::Frame(_)) = p.recv(Duration::ZERO).await {
            answered += 1;
        }
    }
    while answered < n {
        answer_any(&mut p).await;
        answered += 1;
    }
    assert_eq!(reader.await.unwrap(), n);
    assert!(net.amop(0).stats().multicast_dropped > 0);
}

/// The next 0x31 on `c`, whatever its seq.
async fn answer_any(c: &mut RawChannel) {
    assert!(c
        .recv_kind(ChannelType::AMOP_RESPONSE, WAIT)
        .await
        .is_some());
}

#[tokio::test]
async fn a_unicast_over_the_nodes_in_flight_bound_gets_103() {
    let net = amop_net(1, Some(|_, c| c.channel.max_in_flight_total = 1)).await;
    let silent = subscriber(&net, 0, &["t1"]).await;
    second_unicast_over_the_bound_gets_103(&net, silent, 0).await;
}

#[tokio::test]
async fn sessions_over_the_per_certificate_cap_are_refused_and_counted() {
    let net = amop_net(2, Some(|_, c| c.channel.max_sessions_per_cert = 1)).await;
    let mut first = client(&net, 0).await;
    sync(&mut first).await;
    let identity = net.generated(0).load_identity().unwrap();
    if let Ok(mut again) = RawChannel::dial(&identity, &net.channel_addr(0)).await {
        assert!(again.closed_within(WAIT).await);
    }
    assert_eq!(net.amop(0).stats().sessions_refused, 1);
    // Another certificate still gets in.
    let other = net.generated(1).load_identity().unwrap();
    let mut other = RawChannel::dial(&other, &net.channel_addr(0))
        .await
        .unwrap();
    sync(&mut other).await;
}

#[tokio::test]
async fn a11_empty_heartbeats_keep_a_session_past_the_idle_timeout() {
    let net = amop_net(
        1,
        Some(|_, c| c.channel.idle_timeout = Duration::from_millis(600)),
    )
    .await;
    let mut c = client(&net, 0).await;
    let mut beat = tokio::time::interval(Duration::from_millis(150));
    for _ in 0..12 {
        beat.tick().await;
        c.send_new(ChannelType::HEARTBEAT, Bytes::new())
            .await
            .unwrap();
    }
    sync(&mut c).await;
    assert_eq!(net.amop(0).stats().sessions_open, 1);
}
