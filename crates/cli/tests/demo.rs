//! `chainmesh demo`, the README's first command: the tour runs every step on a real local
//! network and exits 0.

mod common;

#[test]
fn the_demo_tours_every_step_and_exits_0() {
    let out = common::chainmesh_ok(["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for step in [
        "links",
        "unicast",
        "request/response",
        "status sync",
        "broadcast and multicast",
        "AMOP",
        "a node stopped and rejoining",
        "relay",
    ] {
        assert!(
            text.contains(&format!("/8] {step}\n")),
            "no step `{step}`:\n{text}"
        );
    }
    assert!(
        text.contains("live network page (node0's admin port): http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("demo passed: all 8 steps worked"), "{text}");
}

#[test]
fn the_demo_refuses_a_network_too_small_to_tour() {
    let out = common::chainmesh(["demo", "--nodes", "1"]);
    assert!(!out.status.success());
}
