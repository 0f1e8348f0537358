//! The hostile-member suite: a peer holding a valid certificate of the chain speaks the raw
//! protocol against real nodes over real TLS, and the honest nodes must stay within their
//! configured bounds, keep serving each other, and close or throttle the attacker's link.

#[path = "hostile/resources.rs"]
mod resources;
