//! Shortest paths over attested links, as pure logic: no I/O, no clocks, no locks.
//!
//! A link between two other nodes counts only when **both** of their signed neighbour lists
//! name each other, so one node's claim alone adds no link. A link at the local node counts
//! when it has a live session to the neighbour: the session is authenticated by TLS, which
//! is stronger and fresher evidence than the neighbour's list, and a neighbour that has not
//! sent its list yet is still one hop away.

use std::collections::HashMap;

use super::table::{Route, UNREACHABLE};
use crate::identity::NodeId;

/// Breadth-first shortest paths from `local`, whose live links are `first_hops` (any
/// order), over the links that both ends' lists attest. `list_of(n)` is node `n`'s sorted
/// neighbour list, if held. Among equally short paths the one whose next hop has the
/// smallest node ID wins, so every node computes the same routes from the same lists.
/// Routes are at most `UNREACHABLE - 1` hops.
pub fn shortest_paths<'a>(
    local: &NodeId,
    first_hops: impl IntoIterator<Item = NodeId>,
    list_of: impl Fn(&NodeId) -> Option<&'a [NodeId]>,
) -> HashMap<NodeId, Route> {
    let mut routes: HashMap<NodeId, Route> = HashMap::new();
    let mut frontier: Vec<NodeId> = Vec::new();
    for n in first_hops {
        if n != *local && !routes.contains_key(&n) {
            routes.insert(
                n,
                Route {
                    next_hop: n,
                    distance: 1,
                },
            );
            frontier.push(n);
        }
    }
    let mut distance = 1u8;
    while !frontier.is_empty() && distance.saturating_add(1) < UNREACHABLE {
        distance += 1;
        let mut next = Vec::new();
        for u in &frontier {
            let Some(via) = routes.get(u).map(|r| r.next_hop) else {
                continue;
            };
            let Some(claimed) = list_of(u) else {
                continue;
            };
            for v in claimed {
                if v == local || !list_of(v).is_some_and(|l| l.binary_search(u).is_ok()) {
                    continue;
                }
                match routes.get_mut(v) {
                    None => {
                        routes.insert(
                            *v,
                            Route {
                                next_hop: via,
                                distance,
                            },
                        );
                        next.push(*v);
                    }
                    Some(r) if r.distance == distance && via < r.next_hop => r.next_hop = via,
                    Some(_) => {}
                }
            }
        }
        frontier = next;
    }
    routes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::test_support::id;

    /// Lists from (origin, neighbours) pairs.
    fn lists(spec: &[(u8, &[u8])]) -> BTreeMap<NodeId, Vec<NodeId>> {
        spec.iter()
            .map(|(o, ns)| {
                let mut v: Vec<NodeId> = ns.iter().map(|b| id(*b)).collect();
                v.sort();
                (id(*o), v)
            })
            .collect()
    }

    fn paths(local: u8, hops: &[u8], l: &BTreeMap<NodeId, Vec<NodeId>>) -> Vec<(u8, u8, u8)> {
        let r = shortest_paths(&id(local), hops.iter().map(|b| id(*b)), |n| {
            l.get(n).map(Vec::as_slice)
        });
        let mut v: Vec<(u8, u8, u8)> = r
            .iter()
            .map(|(d, r)| (d.as_bytes()[0], r.next_hop.as_bytes()[0], r.distance))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_link_counts_only_when_both_ends_name_each_other() {
        // 1 - 2 - 3 as both attest; 2 also claims 4, which does not confirm.
        let l = lists(&[(2, &[1, 3, 4]), (3, &[2]), (4, &[])]);
        assert_eq!(paths(1, &[2], &l), vec![(2, 2, 1), (3, 2, 2)]);
    }

    #[test]
    fn equal_paths_take_the_smallest_next_hop() {
        // 1 has links to 5 and 3; both reach 9.
        let l = lists(&[(5, &[1, 9]), (3, &[1, 9]), (9, &[3, 5])]);
        assert_eq!(paths(1, &[5, 3], &l), vec![(3, 3, 1), (5, 5, 1), (9, 3, 2)]);
    }

    #[test]
    fn routes_stop_short_of_unreachable() {
        // A line 1 - 2 - ... - 12.
        let spec: Vec<(u8, Vec<u8>)> = (2..=12u8)
            .map(|n| (n, [n - 1, n + 1].into_iter().filter(|m| *m <= 12).collect()))
            .collect();
        let spec: Vec<(u8, &[u8])> = spec.iter().map(|(o, v)| (*o, v.as_slice())).collect();
        let r = paths(1, &[2], &lists(&spec));
        assert_eq!(r.len(), usize::from(UNREACHABLE - 1));
        assert!(r.iter().all(|(_, _, d)| *d < UNREACHABLE));
    }
}
