//! The hostile-member suite: a member holding a valid certificate of the chain, played by a
//! raw peer over real TLS, tries each class of attack on real nodes on 127.0.0.1.

mod hostile {
    mod connections;
}
