//! What `chainmesh node` answers on the channel port beyond the library's built-in network
//! methods: `getBlockNumber`, which FISCO BCOS's python-sdk calls first and waits for.

use chainmesh::amop::{RpcFuture, RpcHandler};
use chainmesh::NodeHandle;
use serde_json::Value;

/// Answers `getBlockNumber` (for any group) from the node's application status: a number
/// written in decimal, alone or as `height=N` (surrounding whitespace ignored), is the block
/// number; any other status, or none, is block 0. The answer is FISCO's hex string, `"0x2a"`.
pub struct BlockNumber {
    node: NodeHandle,
}

impl BlockNumber {
    /// The handler for `node`.
    pub fn new(node: NodeHandle) -> BlockNumber {
        BlockNumber { node }
    }
}

impl RpcHandler for BlockNumber {
    fn call(&self, method: &str, _params: &Value) -> Option<RpcFuture> {
        if method != "getBlockNumber" {
            return None;
        }
        let (_, status) = self.node.status().local();
        let answer = Value::String(format!("{:#x}", block_number(&status.app)));
        Some(Box::pin(async move { Ok(answer) }))
    }
}

/// The block number an application status holds, or 0.
fn block_number(app: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(app) else {
        return 0;
    };
    let text = text.trim();
    let digits = text.strip_prefix("height=").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    digits.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chainmesh_testkit::{LocalNet, LocalNetOptions};
    use serde_json::json;

    #[test]
    fn block_numbers_are_read_from_decimal_or_height_statuses() {
        assert_eq!(block_number(b"42"), 42);
        assert_eq!(block_number(b"height=1024"), 1024);
        assert_eq!(block_number(b" height=7\n"), 7);
        assert_eq!(block_number(b"18446744073709551615"), u64::MAX);
        for other in [
            &b""[..],
            b"height=",
            b"view=7",
            b"0x10",
            b"-1",
            b"4 2",
            b"height=1 hash=ab",
            b"18446744073709551616",
            b"\xff",
        ] {
            assert_eq!(block_number(other), 0, "{other:?}");
        }
    }

    #[tokio::test]
    async fn get_block_number_answers_the_nodes_status_in_hex_and_nothing_else() {
        let net = LocalNet::start(LocalNetOptions::new(1)).await.unwrap();
        let handler = BlockNumber::new(net.handle(0));
        let ask = |method: &str| handler.call(method, &json!([1]));
        assert!(ask("getPeers").is_none());
        assert_eq!(ask("getBlockNumber").unwrap().await, Ok(json!("0x0")));
        net.handle(0)
            .set_app_status(Bytes::from_static(b"height=26"))
            .unwrap();
        assert_eq!(ask("getBlockNumber").unwrap().await, Ok(json!("0x1a")));
        net.shutdown().await;
    }
}
