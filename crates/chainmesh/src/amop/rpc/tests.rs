use std::time::Duration;

use serde_json::json;

use super::network::{self, fisco_group_id, Network, Peer};
use super::*;
use crate::config::{Config, IdentityConfig};
use crate::identity::{generate_node_files, Curve, NodeId};
use crate::node::Node;
use crate::test_support::id;

/// A network as the built-in methods see it, made up.
struct Fake {
    groups: Vec<&'static str>,
    peers: Vec<Peer>,
}

impl Network for Fake {
    fn local_id(&self) -> NodeId {
        id(1)
    }

    fn connected(&self) -> Vec<Peer> {
        self.peers.clone()
    }

    fn local_groups(&self) -> Vec<String> {
        self.groups.iter().map(|g| (*g).to_owned()).collect()
    }

    fn group_members(&self, group: &str) -> Vec<NodeId> {
        match group {
            "group1" => vec![id(1), id(2)],
            "1" => vec![id(1), id(3)],
            "group0" => vec![id(1)],
            _ => Vec::new(),
        }
    }
}

fn fake() -> Fake {
    Fake {
        groups: vec!["1", "group0", "group1", "group01", "ops"],
        peers: vec![
            Peer {
                id: id(2),
                addr: "127.0.0.1:30301".into(),
                topics: vec!["t1".into()],
            },
            Peer {
                id: id(3),
                addr: "127.0.0.1:30302".into(),
                topics: Vec::new(),
            },
        ],
    }
}

fn builtin(method: &str, params: Value) -> Option<Result<Value, RpcError>> {
    network::call(&fake(), method, &params)
}

fn hex(b: u8) -> String {
    id(b).to_string()
}

#[test]
fn a_request_object_is_read_with_its_id_method_and_params() {
    let call =
        parse_call(br#"{"jsonrpc": "2.0", "method": "getBlockNumber", "params": [1], "id": 0}"#);
    assert_eq!(
        call,
        Ok(RpcCall {
            id: json!(0),
            method: "getBlockNumber".into(),
            params: json!([1]),
        })
    );
    let call = parse_call(br#"{"jsonrpc":"2.0","method":"m","id":"a-1"}"#);
    assert_eq!(
        call.map(|c| (c.id, c.params)),
        Ok((json!("a-1"), Value::Null))
    );
}

#[test]
fn malformed_requests_get_their_json_rpc_error_codes() {
    let code = |text: &[u8]| parse_call(text).map(|_| ()).map_err(|(id, e)| (id, e.code));
    let invalid = RpcError::INVALID_REQUEST;
    assert_eq!(
        code(b"{not json"),
        Err((Value::Null, RpcError::PARSE_ERROR))
    );
    assert_eq!(code(b""), Err((Value::Null, RpcError::PARSE_ERROR)));
    assert_eq!(code(b"42"), Err((Value::Null, invalid)));
    assert_eq!(
        code(br#"[{"jsonrpc":"2.0","method":"getPeers","id":1}]"#),
        Err((Value::Null, invalid))
    );
    assert_eq!(code(b"[]"), Err((Value::Null, invalid)));
    assert_eq!(
        code(br#"{"jsonrpc":"2.0","method":"m","id":[1]}"#),
        Err((Value::Null, invalid))
    );
    // From here on the id could be read, so the error carries it.
    assert_eq!(
        code(br#"{"jsonrpc":"1.0","method":"m","id":7}"#),
        Err((json!(7), invalid))
    );
    assert_eq!(code(br#"{"method":"m","id":7}"#), Err((json!(7), invalid)));
    assert_eq!(
        code(br#"{"jsonrpc":"2.0","method":3,"id":7}"#),
        Err((json!(7), invalid))
    );
    assert_eq!(
        code(br#"{"jsonrpc":"2.0","method":"m","params":1,"id":7}"#),
        Err((json!(7), invalid))
    );
}

#[test]
fn responses_echo_the_id_with_a_result_or_an_error_object() {
    let text = respond(&json!(9), Ok(json!("0x1")));
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v, json!({"jsonrpc": "2.0", "id": 9, "result": "0x1"}));
    let text = respond(
        &json!("x"),
        Err(RpcError::new(
            RpcError::METHOD_NOT_FOUND,
            "Method not found: m",
        )),
    );
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(
        v,
        json!({"jsonrpc": "2.0", "id": "x",
               "error": {"code": -32601, "message": "Method not found: m"}})
    );
}

#[test]
fn group_names_map_to_fisco_group_ids_only_when_numeric() {
    assert_eq!(fisco_group_id("group1"), Some(1));
    assert_eq!(fisco_group_id("1"), Some(1));
    assert_eq!(fisco_group_id("group0"), Some(0));
    assert_eq!(fisco_group_id("group32767"), Some(32767));
    for name in [
        "ops",
        "group01",
        "01",
        "group",
        "",
        "group-1",
        "+1",
        "group1a",
        "99999999999999999999",
    ] {
        assert_eq!(fisco_group_id(name), None, "{name}");
    }
}

#[test]
fn get_group_list_lists_each_numeric_group_once_in_order() {
    assert_eq!(builtin("getGroupList", json!([])), Some(Ok(json!([0, 1]))));
}

#[test]
fn get_group_peers_unites_the_groups_of_one_id() {
    let expected = json!([hex(1), hex(2), hex(3)]);
    assert_eq!(
        builtin("getGroupPeers", json!([1])),
        Some(Ok(expected.clone()))
    );
    assert_eq!(builtin("getGroupPeers", json!(["1"])), Some(Ok(expected)));
    assert_eq!(
        builtin("getGroupPeers", json!([0])),
        Some(Ok(json!([hex(1)])))
    );
}

#[test]
fn get_group_peers_of_an_unknown_group_is_fiscos_group_error() {
    let unknown = builtin("getGroupPeers", json!([5])).unwrap().unwrap_err();
    assert_eq!(unknown.code, -40001);
    assert_eq!(unknown.message, "GroupID does not exist");
    for params in [
        json!([]),
        Value::Null,
        json!(["one"]),
        json!([-1]),
        json!([1.5]),
    ] {
        let e = builtin("getGroupPeers", params.clone())
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code, RpcError::INVALID_PARAMS, "{params}");
    }
}

#[test]
fn get_peers_and_node_id_list_have_fiscos_shapes() {
    assert_eq!(
        builtin("getPeers", json!([1])),
        Some(Ok(json!([
            {"IPAndPort": "127.0.0.1:30301", "NodeID": hex(2), "Topic": ["t1"]},
            {"IPAndPort": "127.0.0.1:30302", "NodeID": hex(3), "Topic": []},
        ])))
    );
    assert_eq!(
        builtin("getNodeIDList", json!([1])),
        Some(Ok(json!([hex(1), hex(2), hex(3)])))
    );
}

#[test]
fn client_version_has_fiscos_keys_and_node_version_is_its_alias() {
    let v = builtin("getClientVersion", json!([])).unwrap().unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Build Time",
            "Build Type",
            "Chain Id",
            "FISCO-BCOS Version",
            "Git Branch",
            "Git Commit Hash",
            "Supported Version"
        ]
    );
    assert_eq!(v["Supported Version"], SUPPORTED_VERSION);
    assert!(v["FISCO-BCOS Version"]
        .as_str()
        .unwrap()
        .starts_with("chainmesh "));
    assert_eq!(builtin("getNodeVersion", Value::Null), Some(Ok(v)));
}

#[test]
fn methods_that_are_not_built_in_are_left_to_others() {
    assert_eq!(builtin("getBlockNumber", json!([1])), None);
    assert_eq!(builtin("getpeers", json!([1])), None);
}

/// Three real nodes on 127.0.0.1, TLS included: node 0 in groups `group0` and `group1`,
/// node 1 in `group1`, node 2 in `ops`; every node connected to every other.
async fn three_nodes(dir: &std::path::Path) -> Vec<Node> {
    let generated = generate_node_files(dir, 3, Curve::Secp256k1).unwrap();
    let groups: [&[&str]; 3] = [&["group0", "group1"], &["group1"], &["ops"]];
    let mut nodes = Vec::new();
    for (g, groups) in generated.iter().zip(groups) {
        let identity = IdentityConfig {
            ca_cert: g.ca_cert(),
            node_cert: g.node_cert(),
            node_key: g.node_key(),
        };
        let mut cfg = Config::new(identity, "127.0.0.1:0");
        cfg.p2p.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        nodes.push(Node::start(cfg, None).await.unwrap());
    }
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            a.handle()
                .peers()
                .add_target(&b.handle().listen_addr().to_string());
        }
    }
    nodes
}

/// Polls `cond` every 20 ms until it holds; whether it did within 20 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

async fn ask(rpc: &Rpc, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let text = rpc.answer(request.to_string().as_bytes()).await;
    let response: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(response["id"], 1, "{response}");
    response
}

struct BlockNumber;

impl RpcHandler for BlockNumber {
    fn call(&self, method: &str, _params: &Value) -> Option<RpcFuture> {
        (method == "getBlockNumber" || method == "getGroupList")
            .then(|| Box::pin(async { Ok(json!("0x2a")) }) as RpcFuture)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_methods_answer_from_a_real_three_node_network() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path()).await;
    let h: Vec<NodeHandle> = nodes.iter().map(Node::handle).collect();
    let ids: Vec<String> = h.iter().map(|n| n.node_id().to_string()).collect();
    h[1].status().set_amop_topics(["t1"]).unwrap();
    // Connected both ways, and node 0 holds node 1's status with its AMOP topic.
    assert!(
        eventually(|| {
            h.iter().all(|n| n.peers().sessions().len() == 2)
                && h[0]
                    .peer_status(&h[1].node_id())
                    .is_some_and(|p| p.status.amop_topics == ["t1"])
                && h[0].status().network_group_members("group1").len() == 2
        })
        .await
    );
    let rpc = Rpc::new(h[0].clone());

    let peers = ask(&rpc, "getPeers", json!([1])).await["result"].clone();
    let mut expected = vec![
        json!({"IPAndPort": h[1].listen_addr().to_string(), "NodeID": ids[1], "Topic": ["t1"]}),
        json!({"IPAndPort": h[2].listen_addr().to_string(), "NodeID": ids[2], "Topic": []}),
    ];
    expected.sort_by_key(|p| p["NodeID"].as_str().unwrap_or_default().to_owned());
    assert_eq!(peers, Value::Array(expected));

    let list = ask(&rpc, "getNodeIDList", json!([1])).await["result"].clone();
    let mut others = [ids[1].clone(), ids[2].clone()];
    others.sort();
    assert_eq!(list, json!([ids[0], others[0], others[1]]));

    let mut group1 = [ids[0].clone(), ids[1].clone()];
    group1.sort();
    assert_eq!(
        ask(&rpc, "getGroupPeers", json!([1])).await["result"],
        json!(group1)
    );
    assert_eq!(
        ask(&rpc, "getGroupPeers", json!([0])).await["result"],
        json!([ids[0]])
    );
    assert_eq!(
        ask(&rpc, "getGroupList", json!([])).await["result"],
        json!([0, 1])
    );
    // Node 2's only group has no FISCO ID; node 0 is not in group 7.
    let rpc2 = Rpc::new(h[2].clone());
    assert_eq!(
        ask(&rpc2, "getGroupList", json!([])).await["result"],
        json!([])
    );
    assert_eq!(
        ask(&rpc, "getGroupPeers", json!([7])).await["error"]["code"],
        -40001
    );

    // Without a handler, getBlockNumber is nobody's; a handler answers it, and is asked
    // before the built-ins.
    let missing = ask(&rpc, "getBlockNumber", json!([1])).await;
    assert_eq!(missing["error"]["code"], -32601);
    rpc.set_handler(Arc::new(BlockNumber));
    assert_eq!(
        ask(&rpc, "getBlockNumber", json!([1])).await["result"],
        "0x2a"
    );
    assert_eq!(ask(&rpc, "getGroupList", json!([])).await["result"], "0x2a");
    assert_eq!(ask(&rpc, "getPeers", json!([1])).await["result"], peers);
    assert_eq!(
        ask(&rpc, "noSuchMethod", json!([])).await["error"]["code"],
        -32601
    );
    // A request that cannot be read is still answered.
    let text = rpc.answer(b"{\"jsonrpc\":").await;
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );

    for node in nodes {
        node.shutdown().await;
    }
}
