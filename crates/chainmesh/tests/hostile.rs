//! A member that holds a valid certificate and speaks the raw protocol, against real nodes
//! over real TLS: one module per attack class.

#[path = "hostile/auth.rs"]
mod auth;
