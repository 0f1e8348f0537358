//! The hostile-member suite: a peer holding a valid certificate of the chain that speaks the
//! raw protocol (`chainmesh_testkit::raw::RawPeer`) and lies, floods or breaks the rules,
//! against real nodes over real TLS. One module per attack class.

#[path = "hostile/routing.rs"]
mod routing;
