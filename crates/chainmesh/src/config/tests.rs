use super::*;

const GOOD: &str = r#"
[identity]
ca_cert = "conf/ca.crt"
node_cert = "conf/node.crt"
node_key = "conf/node.key"

[p2p]
listen = "127.0.0.1:30300"
peers = ["127.0.0.1:30301", "node2.example:30302"]

[timers]
heartbeat_interval = "200ms"

[admin]
listen = "127.0.0.1:31300"
"#;

#[test]
fn parses_a_good_config_with_defaults() {
    let c = Config::parse(GOOD, Path::new("x.toml")).unwrap();
    assert_eq!(c.p2p.peers.len(), 2);
    assert_eq!(c.p2p.groups, vec!["group0".to_string()]);
    assert_eq!(c.timers.heartbeat_interval, Duration::from_millis(200));
    assert_eq!(c.timers.idle_timeout_intervals, 3);
    assert_eq!(c.p2p.max_packet_size, DEFAULT_MAX_PACKET);
}

#[test]
fn round_trips_through_toml() {
    let c = Config::parse(GOOD, Path::new("x.toml")).unwrap();
    let again = Config::parse(&c.to_toml(), Path::new("x.toml")).unwrap();
    assert_eq!(c, again);
}

#[test]
fn bad_listen_names_file_and_key() {
    let text = GOOD.replace("127.0.0.1:30300", "nonsense");
    let e = Config::parse(&text, Path::new("/etc/n0.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/etc/n0.toml") && e.contains("p2p.listen"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_refused_with_its_name() {
    let text = GOOD.replace("[admin]", "[admin]\nlisen = \"x\"");
    let e = Config::parse(&text, Path::new("n.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("lisen"), "{e}");
}

#[test]
fn bad_peer_and_zero_timer_are_refused() {
    let text = GOOD.replace("node2.example:30302", "node2.example");
    let e = Config::parse(&text, Path::new("n.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("p2p.peers[1]"), "{e}");
    let text = GOOD.replace("200ms", "0s");
    let e = Config::parse(&text, Path::new("n.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("timers.heartbeat_interval"), "{e}");
}

#[test]
fn limits_default_and_out_of_range_values_name_their_key() {
    let c = Config::parse(GOOD, Path::new("n.toml")).unwrap();
    assert_eq!(c.limits, LimitsConfig::default());
    for (line, key) in [
        ("session_queue_bytes = 1024", "limits.session_queue_bytes"),
        ("dedup_sources = 0", "limits.dedup_sources"),
        ("inbound_handshakes = 0", "limits.inbound_handshakes"),
        ("max_routing_nodes = 0", "limits.max_routing_nodes"),
        (
            "max_neighbours_per_list = 70000",
            "limits.max_neighbours_per_list",
        ),
        ("relay_wait = \"0s\"", "limits.relay_wait"),
        ("max_status_bytes = 10", "limits.max_status_bytes"),
        ("max_tracked_nodes = 0", "limits.max_tracked_nodes"),
        (
            "max_status_total_bytes = 1024",
            "limits.max_status_total_bytes",
        ),
        (
            "status_requests_per_sec = 0",
            "limits.status_requests_per_sec",
        ),
        (
            "max_decompressed_bytes = 1",
            "limits.max_decompressed_bytes",
        ),
        (
            "decompress_bytes_per_sec_per_peer = 5",
            "limits.decompress_bytes_per_sec_per_peer",
        ),
        ("decompress_workers = 0", "limits.decompress_workers"),
        ("decompress_queue = 100000", "limits.decompress_queue"),
        (
            "pending_requests_per_peer = 0",
            "limits.pending_requests_per_peer",
        ),
    ] {
        let text = format!("{GOOD}\n[limits]\n{line}\n");
        let e = Config::parse(&text, Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{line}: {e}");
    }
    let text = format!("{GOOD}\n[limits]\nrelay_wait = \"500ms\"\ndedup_sources = 64\n");
    let c = Config::parse(&text, Path::new("n.toml")).unwrap();
    assert_eq!(c.limits.relay_wait, Duration::from_millis(500));
    assert_eq!(c.limits.dedup_sources, 64);
}

/// Parses GOOD with `line` set in `[section]`, replacing the key if GOOD sets it.
fn with(section: &str, line: &str) -> Result<Config, ConfigError> {
    let key = line.split('=').next().unwrap_or_default().trim();
    let base: String = GOOD
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .map(|l| format!("{l}\n"))
        .collect();
    let header = format!("[{section}]\n");
    let text = if base.contains(&header) {
        base.replace(&header, &format!("{header}{line}\n"))
    } else {
        format!("{base}\n{header}{line}\n")
    };
    Config::parse(&text, Path::new("n.toml"))
}

#[test]
fn every_timer_and_size_is_refused_just_outside_its_bounds_naming_its_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("timers", "heartbeat_interval", "\"10ms\"", "\"9ms\""),
        ("timers", "heartbeat_interval", "\"1h\"", "\"3601s\""),
        ("timers", "idle_timeout_intervals", "1", "0"),
        ("timers", "idle_timeout_intervals", "1000", "1001"),
        ("timers", "connect_timeout", "\"10m\"", "\"601s\""),
        ("timers", "handshake_timeout", "\"10ms\"", "\"0s\""),
        ("timers", "backoff_initial", "\"1ms\"", "\"0s\""),
        ("timers", "status_interval", "\"1h\"", "\"2h\""),
        ("p2p", "max_packet_size", "1024", "1023"),
        ("p2p", "max_packet_size", "268435456", "268435457"),
        ("limits", "session_queue_bytes", "1073741824", "1073741825"),
        ("limits", "relay_wait", "\"60s\"", "\"61s\""),
        ("admin", "max_connections", "4096", "0"),
        ("admin", "header_timeout", "\"100ms\"", "\"99ms\""),
        ("admin", "body_timeout", "\"5m\"", "\"301s\""),
        ("admin", "max_body_bytes", "1024", "1023"),
        ("admin", "max_ping_bytes", "16777216", "16777217"),
        ("socket", "unsent_bytes", "16384", "16383"),
        ("socket", "unsent_bytes", "0", "67108865"),
        ("socket", "receive_buffer", "67108864", "1"),
        ("admin", "page_refresh", "\"100ms\"", "\"99ms\""),
        ("admin", "page_rate_window", "\"5m\"", "\"301s\""),
        ("admin", "page_ping_interval", "\"1h\"", "\"3601s\""),
        ("admin", "page_ping_timeout", "\"10ms\"", "\"9ms\""),
        ("admin", "page_max_events", "10000", "0"),
    ];
    for (section, key, ok, bad) in cases {
        if let Err(e) = with(section, &format!("{key} = {ok}")) {
            panic!("{section}.{key} = {ok} refused: {e}");
        }
        let e = with(section, &format!("{key} = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("key `{section}.{key}`")),
            "{key} = {bad}: {e}"
        );
        assert!(e.contains("n.toml"), "{e}");
    }
}

#[test]
fn an_idle_timeout_product_that_overflows_or_exceeds_a_day_is_refused() {
    let huge = GOOD.replace(
        "heartbeat_interval = \"200ms\"",
        "heartbeat_interval = \"10000000000s\"\nidle_timeout_intervals = 4294967295",
    );
    let e = Config::parse(&huge, Path::new("n.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `timers."), "{e}");
    let text = GOOD.replace(
        "heartbeat_interval = \"200ms\"",
        "heartbeat_interval = \"1h\"\nidle_timeout_intervals = 25",
    );
    let e = Config::parse(&text, Path::new("n.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `timers.idle_timeout_intervals`"), "{e}");
    assert!(e.contains("heartbeat_interval"), "{e}");
    let text = GOOD.replace(
        "heartbeat_interval = \"200ms\"",
        "heartbeat_interval = \"1h\"\nidle_timeout_intervals = 24",
    );
    assert!(Config::parse(&text, Path::new("n.toml")).is_ok());
}

#[test]
fn idle_timeout_never_overflows_for_a_hand_built_config() {
    let t = TimersConfig {
        heartbeat_interval: Duration::MAX,
        idle_timeout_intervals: u32::MAX,
        ..TimersConfig::default()
    };
    assert_eq!(t.idle_timeout(), TimersConfig::MAX_IDLE_TIMEOUT);
    assert_eq!(
        TimersConfig::default().idle_timeout(),
        Duration::from_secs(15)
    );
}

#[test]
fn admin_addresses_and_allowed_hosts_are_checked() {
    let e = with("admin", "read_listen = \"nowhere\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin.read_listen"), "{e}");
    let e = with("admin", "allowed_hosts = [\"a b\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin.allowed_hosts[0]"), "{e}");
    let c = with("admin", "allowed_hosts = [\"node0.example\"]").unwrap();
    assert_eq!(c.admin.allowed_hosts, ["node0.example".to_string()]);
    assert_eq!(c.admin.max_ping_bytes, 64 * 1024);
}

#[test]
fn write_peers_keeps_the_rest_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    let text = format!("# my node\n{GOOD}\n# trailing comment\n");
    std::fs::write(&f, &text).unwrap();
    write_peers(&f, &["127.0.0.1:40000".to_string()]).unwrap();
    let after = std::fs::read_to_string(&f).unwrap();
    assert!(after.starts_with("# my node\n"));
    assert!(after.contains("# trailing comment"));
    assert!(after.contains("heartbeat_interval = \"200ms\""));
    let c = Config::load(&f).unwrap();
    assert_eq!(c.p2p.peers, vec!["127.0.0.1:40000".to_string()]);
    assert_eq!(
        after.replace("[\"127.0.0.1:40000\"]", ""),
        text.replace("[\"127.0.0.1:30301\", \"node2.example:30302\"]", "")
    );
}

#[test]
fn write_peers_refuses_a_broken_file_and_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, "not [toml").unwrap();
    assert!(write_peers(&f, &[]).is_err());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "not [toml");
}

#[test]
fn relative_paths_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, GOOD).unwrap();
    let c = Config::load(&f).unwrap();
    assert_eq!(c.identity.ca_cert, dir.path().join("conf/ca.crt"));
}

#[test]
fn a_node_name_that_cannot_stand_in_a_log_line_is_refused_naming_its_key() {
    let ok = with("node", "name = \"bank-a_1.x\"").expect("a plain name loads");
    assert_eq!(ok.node.name, "bank-a_1.x");
    for bad in [
        "name = \"two words\"",
        "name = \"a\\nb\"",
        &format!("name = \"{}\"", "n".repeat(65)),
    ] {
        let err = with("node", bad).expect_err(bad).to_string();
        assert!(err.contains("node.name"), "{err}");
    }
}
