//! Routing: which peer a message goes to next.
//!
//! - [`table`]: the link-state routing table, pure logic: every node's signed neighbour
//!   list, the caps on them, and the routes computed over the links both ends attest;
//! - [`graph`]: the shortest-path computation itself;
//! - [`failures`]: next hops that silently drop what they should relay, excluded for a
//!   hold-down;
//! - [`parked`]: lists that arrived before the list that anchors them, held for a moment;
//! - [`signing`]: signing this node's neighbour list and checking other nodes' lists;
//! - [`service`]: the task that keeps the table up to date from peer events and the
//!   RouterSeq / RouterRequest / RouterResponse exchange, and publishes [`Reachability`];
//! - [`dedup`]: handling each message (source, Seq) once, in bounded memory;
//! - [`membership`]: the [`Membership`] seam through which broadcast and multicast learn
//!   their targets (filled by status synchronization);
//! - [`fanout`]: splitting a broadcast's or multicast's targets by next hop, so one encoding
//!   serves every neighbour;
//! - [`decision`]: what a node does with an addressed packet it receives (deliver, relay,
//!   split, drop), pure logic like the table.
//!
//! The node (`crate::node`) uses all of these; the wire format is in `docs/protocol.md`,
//! sections Routing and Relaying.

mod counters;
pub mod decision;
pub mod dedup;
pub mod failures;
pub mod fanout;
pub mod graph;
pub mod membership;
pub mod parked;
pub mod service;
pub mod signing;
pub mod table;

pub use decision::{decide, link_for, Decision, DropReason, Onward};
pub use dedup::Dedup;
pub use fanout::{plan, FanoutPlan};
pub use membership::{Membership, StaticMembership};
pub use service::{
    Links, Reachability, RouteInfo, Router, RoutingCounters, ANNOUNCE_INTERVAL, ASKED_HOLD,
    LIST_HOLD, OWN_LIST_SPACING,
};
pub use table::{Rejection, Route, RouteChange, RoutingLimits, RoutingTable, Verdict, UNREACHABLE};
