//! The hostile-member suite: a peer holding a valid certificate of the chain speaks the raw
//! protocol (`chainmesh_testkit::raw::RawPeer`) and lies, floods or breaks the rules against
//! real nodes over real TLS; the honest nodes must stay within their configured bounds, keep
//! serving each other, and close or throttle the attacker's link. One module per attack class.

#[path = "hostile/auth.rs"]
mod auth;
#[path = "hostile/connections.rs"]
mod connections;
#[path = "hostile/resources.rs"]
mod resources;
#[path = "hostile/routing.rs"]
mod routing;
