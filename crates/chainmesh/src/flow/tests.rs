use std::collections::BTreeMap;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn id(b: u8) -> NodeId {
    NodeId::from_bytes([b; 64])
}

fn ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn config() -> FlowConfig {
    FlowConfig {
        enable: true,
        time_window: Duration::from_millis(100),
        modules_without_limit: vec![1000],
        ..FlowConfig::default()
    }
}

fn packet(module: u16, group: &str, link: u8, bytes: u64) -> Outgoing<'_> {
    Outgoing {
        module,
        group,
        link: (id(link), ip()),
        bytes,
    }
}

#[test]
fn off_lets_everything_pass() {
    let f = FlowControl::new(&FlowConfig {
        enable: false,
        total_outgoing_bytes_per_sec: 1024,
        ..config()
    });
    let now = Instant::now();
    for _ in 0..100 {
        assert_eq!(f.outgoing(&packet(1, "g", 2, 1 << 20), now), Ok(()));
    }
    assert_eq!(f.incoming_module(1, now), Ok(()));
    assert!(!f.snapshot(now).enabled);
}

#[test]
fn the_total_limit_refuses_what_exceeds_the_burst_and_says_how_long_to_wait() {
    // 10 000 B/s, a 100 ms window: a burst of 1000 bytes.
    let f = FlowControl::new(&FlowConfig {
        total_outgoing_bytes_per_sec: 10_000,
        ..config()
    });
    let t0 = Instant::now();
    assert_eq!(f.outgoing(&packet(1, "g", 2, 600), t0), Ok(()));
    let over = f.outgoing(&packet(1, "g", 3, 600), t0).unwrap_err();
    assert_eq!(over.limit, BandwidthLimit::Total);
    assert_eq!(over.bytes_per_sec, 10_000);
    assert_eq!(over.wait, Some(20 * MS));
    assert_eq!(f.outgoing(&packet(1, "g", 3, 600), t0 + 20 * MS), Ok(()));
    let snap = f.snapshot(t0 + 20 * MS);
    let total = snap.total.unwrap();
    assert_eq!(
        (total.limit, total.burst, total.total),
        (10_000, 1000, 1200)
    );
}

#[test]
fn exempt_modules_pass_and_take_nothing() {
    let f = FlowControl::new(&FlowConfig {
        total_outgoing_bytes_per_sec: 10_000,
        ..config()
    });
    let t0 = Instant::now();
    for _ in 0..10 {
        assert_eq!(f.outgoing(&packet(1000, "g", 2, 900), t0), Ok(()));
    }
    assert_eq!(f.outgoing(&packet(1, "g", 2, 1000), t0), Ok(()));
}

#[test]
fn a_link_over_its_limit_does_not_hold_back_another_link() {
    let mut by_peer = BTreeMap::new();
    by_peer.insert(id(3).to_string(), 50_000);
    let f = FlowControl::new(&FlowConfig {
        conn_outgoing_bytes_per_sec: 10_000,
        conn_outgoing_bytes_per_sec_by_peer: by_peer,
        ..config()
    });
    let t0 = Instant::now();
    assert_eq!(f.outgoing(&packet(1, "g", 2, 1000), t0), Ok(()));
    let over = f.outgoing(&packet(1, "g", 2, 1000), t0).unwrap_err();
    assert_eq!(over.limit, BandwidthLimit::Connection(id(2)));
    // Link 3 has an override of 5000 bytes per window.
    for _ in 0..5 {
        assert_eq!(f.outgoing(&packet(1, "g", 3, 1000), t0), Ok(()));
    }
    let over = f.outgoing(&packet(1, "g", 3, 1000), t0).unwrap_err();
    assert_eq!(over.bytes_per_sec, 50_000);
}

#[test]
fn an_override_by_ip_applies_to_every_link_from_that_address() {
    let mut by_peer = BTreeMap::new();
    by_peer.insert("127.0.0.1".to_owned(), 20_000);
    let f = FlowControl::new(&FlowConfig {
        conn_outgoing_bytes_per_sec_by_peer: by_peer,
        ..config()
    });
    let t0 = Instant::now();
    assert_eq!(f.outgoing(&packet(1, "g", 4, 2000), t0), Ok(()));
    let over = f.outgoing(&packet(1, "g", 4, 1), t0).unwrap_err();
    assert_eq!(over.limit, BandwidthLimit::Connection(id(4)));
}

#[test]
fn groups_have_their_own_buckets_and_overrides() {
    let mut by_group = BTreeMap::new();
    by_group.insert("big".to_owned(), 100_000);
    let f = FlowControl::new(&FlowConfig {
        group_outgoing_bytes_per_sec: 10_000,
        group_outgoing_bytes_per_sec_by_group: by_group,
        ..config()
    });
    let t0 = Instant::now();
    assert_eq!(f.outgoing(&packet(1, "a", 2, 1000), t0), Ok(()));
    let over = f.outgoing(&packet(1, "a", 2, 1000), t0).unwrap_err();
    assert_eq!(over.limit, BandwidthLimit::Group("a".into()));
    assert_eq!(f.outgoing(&packet(1, "b", 2, 1000), t0), Ok(()));
    assert_eq!(f.outgoing(&packet(1, "big", 2, 10_000), t0), Ok(()));
}

#[test]
fn a_refused_packet_takes_nothing_from_the_limits_it_was_under() {
    let f = FlowControl::new(&FlowConfig {
        total_outgoing_bytes_per_sec: 100_000,
        conn_outgoing_bytes_per_sec: 10_000,
        ..config()
    });
    let t0 = Instant::now();
    assert_eq!(f.outgoing(&packet(1, "g", 2, 1000), t0), Ok(()));
    assert!(f.outgoing(&packet(1, "g", 2, 1000), t0).is_err());
    let snap = f.snapshot(t0);
    assert_eq!(snap.total.unwrap().total, 1000);
}

#[test]
fn a_packet_larger_than_the_burst_is_refused_for_good_unless_allowed() {
    let strict = FlowControl::new(&FlowConfig {
        total_outgoing_bytes_per_sec: 10_000,
        ..config()
    });
    let t0 = Instant::now();
    let over = strict.outgoing(&packet(1, "g", 2, 5000), t0).unwrap_err();
    assert_eq!(over.wait, None);
    let lenient = FlowControl::new(&FlowConfig {
        total_outgoing_bytes_per_sec: 10_000,
        allow_exceed_burst: true,
        ..config()
    });
    assert_eq!(lenient.outgoing(&packet(1, "g", 2, 5000), t0), Ok(()));
    // The debt of the 4000 bytes over the burst is waited out: the rate holds.
    let over = lenient.outgoing(&packet(1, "g", 2, 1), t0).unwrap_err();
    assert_eq!(over.wait, Some(Duration::from_nanos(400_100_000)));
}

#[test]
fn charged_traffic_passes_and_delays_what_follows() {
    let f = FlowControl::new(&FlowConfig {
        total_outgoing_bytes_per_sec: 10_000,
        ..config()
    });
    let t0 = Instant::now();
    f.charge(&packet(1, "g", 2, 800), t0);
    let over = f.outgoing(&packet(1, "g", 2, 800), t0).unwrap_err();
    assert_eq!(over.wait, Some(60 * MS));
}

#[test]
fn incoming_module_limits_refuse_and_count_per_module() {
    let mut by_module = BTreeMap::new();
    by_module.insert("7".to_owned(), 20);
    let f = FlowControl::new(&FlowConfig {
        time_window: Duration::from_secs(1),
        incoming_module_qps: 2,
        incoming_module_qps_by_module: by_module,
        ..config()
    });
    let t0 = Instant::now();
    assert_eq!(f.incoming_module(1, t0), Ok(()));
    assert_eq!(f.incoming_module(1, t0), Ok(()));
    assert_eq!(f.incoming_module(1, t0), Err(2));
    for _ in 0..20 {
        assert_eq!(f.incoming_module(7, t0), Ok(()));
    }
    assert_eq!(f.incoming_module(7, t0), Err(20));
    // Half a second refills one request of module 1.
    assert_eq!(f.incoming_module(1, t0 + 500 * MS), Ok(()));
    let snap = f.snapshot(t0);
    let counted: BTreeMap<u16, u64> = snap
        .modules
        .iter()
        .map(|(m, c)| (*m, c.incoming_refused))
        .collect();
    assert_eq!(counted, BTreeMap::from([(1, 1), (7, 1)]));
}

#[test]
fn only_listed_packet_types_are_limited_on_arrival() {
    let f = FlowControl::new(&FlowConfig {
        time_window: Duration::from_secs(1),
        incoming_packet_types: vec![9],
        incoming_packet_type_qps: 1,
        ..config()
    });
    let t0 = Instant::now();
    assert!(f.incoming_type(9, t0));
    assert!(!f.incoming_type(9, t0));
    assert!(f.incoming_type(5, t0) && f.incoming_type(5, t0));
    assert_eq!(f.snapshot(t0).types_dropped, vec![(9, 1)]);
}

#[test]
fn reconfiguring_replaces_the_limits_and_keeps_the_counters() {
    let f = FlowControl::new(&FlowConfig {
        total_outgoing_bytes_per_sec: 10_000,
        ..config()
    });
    let t0 = Instant::now();
    assert!(f.outgoing(&packet(1, "g", 2, 2000), t0).is_err());
    f.count_failed(1);
    f.reconfigure(&FlowConfig {
        total_outgoing_bytes_per_sec: 100_000,
        ..config()
    });
    assert_eq!(f.outgoing(&packet(1, "g", 2, 2000), t0), Ok(()));
    let snap = f.snapshot(t0);
    assert_eq!(snap.total.unwrap().limit, 100_000);
    assert_eq!(snap.modules[0].1.sends_failed, 1);
    f.reconfigure(&FlowConfig {
        enable: false,
        ..config()
    });
    assert!(!f.enabled());
}

#[test]
fn idle_link_buckets_are_forgotten_once_there_are_many() {
    let f = FlowControl::new(&FlowConfig {
        conn_outgoing_bytes_per_sec: 10_000,
        ..config()
    });
    let t0 = Instant::now();
    for i in 0..(MAX_IDLE_BUCKETS + 10) {
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let p = Outgoing {
            link: (NodeId::from_bytes(b), ip()),
            ..packet(1, "g", 0, 10)
        };
        // Each a window after the last: every earlier bucket is full again.
        let now = t0 + Duration::from_millis(100 * i as u64);
        assert_eq!(f.outgoing(&p, now), Ok(()));
    }
    assert!(f.snapshot(t0 + Duration::from_secs(200)).connections.len() <= MAX_IDLE_BUCKETS);
}
