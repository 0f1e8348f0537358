//! What a node can prove with its key to nodes it is not linked to: ECDSA signatures that any
//! node can check from the signer's node ID, and a static ECDH secret that exactly two nodes
//! can compute, each from its own key and the other's node ID.
//!
//! A node ID is a public point without its curve, so a peer's ID is read on the local key's
//! curve: a network uses one curve (its CA's), and an ID that is not a point on it cannot sign
//! or agree on anything with us.

use openssl::bn::{BigNum, BigNumContext};
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::sha::sha256;

use super::{Identity, NodeId};

/// Bytes of a signature on the wire: `r || s`, each a 32-byte big-endian integer.
pub const SIGNATURE_LEN: usize = 64;

/// Bytes of a static ECDH secret: the shared point's X coordinate.
pub const SHARED_SECRET_LEN: usize = 32;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The node ID is not a point on the network's curve.
    #[error("node ID {node} is not a public key on {curve}")]
    NotOnCurve {
        /// The node ID, abbreviated.
        node: String,
        /// The curve it was read on.
        curve: &'static str,
    },
    /// The local key's curve is not one node IDs are defined for.
    #[error("the node key has no named curve")]
    NoCurve,
    /// OpenSSL failed.
    #[error("openssl: {0}")]
    OpenSsl(#[from] ErrorStack),
}

/// The curve of the local key: the curve peers' node IDs are read on.
pub fn curve_of(identity: &Identity) -> Result<Nid, KeyError> {
    identity
        .key
        .ec_key()?
        .group()
        .curve_name()
        .ok_or(KeyError::NoCurve)
}

/// `node`'s public key on `curve`, checked to be a point on it.
pub fn public_key_of(node: &NodeId, curve: Nid) -> Result<PKey<Public>, KeyError> {
    let group = EcGroup::from_curve_name(curve)?;
    let mut ctx = BigNumContext::new()?;
    let mut uncompressed = [0u8; 65];
    uncompressed[0] = 0x04;
    uncompressed[1..].copy_from_slice(node.as_bytes());
    let not_on_curve = || KeyError::NotOnCurve {
        node: node.short(),
        curve: curve.short_name().unwrap_or("(unnamed)"),
    };
    let point = EcPoint::from_bytes(&group, &uncompressed, &mut ctx).map_err(|_| not_on_curve())?;
    let key = EcKey::from_public_key(&group, &point).map_err(|_| not_on_curve())?;
    key.check_key().map_err(|_| not_on_curve())?;
    Ok(PKey::from_ec_key(key)?)
}

/// Signs SHA-256 of `msg` with the node's key.
pub fn sign(identity: &Identity, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], KeyError> {
    let key = identity.key.ec_key()?;
    let sig = EcdsaSig::sign(&sha256(msg), &key)?;
    let mut out = [0u8; SIGNATURE_LEN];
    out[..32].copy_from_slice(&sig.r().to_vec_padded(32)?);
    out[32..].copy_from_slice(&sig.s().to_vec_padded(32)?);
    Ok(out)
}

/// Whether `sig` is `signer`'s signature of `msg`. A malformed signature or a node ID that is
/// not a key is simply not a valid signature.
pub fn verify(signer: &PKey<Public>, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    let check = || -> Result<bool, ErrorStack> {
        let r = BigNum::from_slice(&sig[..32])?;
        let s = BigNum::from_slice(&sig[32..])?;
        let sig = EcdsaSig::from_private_components(r, s)?;
        sig.verify(&sha256(msg), &*signer.ec_key()?)
    };
    let valid = check().unwrap_or(false);
    if !valid {
        // A signature whose r or s is out of range (all zeros, say) is reported as
        // `Ok(false)` but also leaves "bad signature" on this thread's error queue. Left
        // there, it would make the next TLS operation on the thread fail with it, on any
        // link (`tls::TlsStream` empties the queue first as well); it is not ours to keep.
        discard_thread_errors();
    }
    valid
}

/// Empties this thread's OpenSSL error queue. A call that fails without returning the queue
/// as an error must leave it empty, because `SSL_get_error` reads it to classify the outcome
/// of every TLS operation later made on the same thread.
pub(crate) fn discard_thread_errors() {
    drop(ErrorStack::get());
}

/// The static ECDH secret of the local node and `peer`: the same bytes on both sides, known
/// to no third node.
pub fn shared_secret(
    identity: &Identity,
    peer: &PKey<Public>,
) -> Result<[u8; SHARED_SECRET_LEN], KeyError> {
    let mut deriver = Deriver::new(&identity.key)?;
    deriver.set_peer(peer)?;
    let secret = deriver.derive_to_vec()?;
    let mut out = [0u8; SHARED_SECRET_LEN];
    let n = secret.len().min(SHARED_SECRET_LEN);
    out[..n].copy_from_slice(&secret[..n]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{generate_node_files, Curve};

    fn identities(curve: Curve) -> (Identity, Identity, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let nodes = generate_node_files(dir.path(), 2, curve).unwrap();
        let a = nodes[0].load_identity().unwrap();
        let b = nodes[1].load_identity().unwrap();
        (a, b, dir)
    }

    #[test]
    fn a_signature_verifies_under_the_signers_node_id_only() {
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let (a, b, _dir) = identities(curve);
            let nid = curve_of(&a).unwrap();
            let sig = sign(&a, b"neighbours").unwrap();
            let pa = public_key_of(&a.node_id, nid).unwrap();
            let pb = public_key_of(&b.node_id, nid).unwrap();
            assert!(verify(&pa, b"neighbours", &sig));
            assert!(!verify(&pa, b"neighbourz", &sig));
            assert!(!verify(&pb, b"neighbours", &sig));
            let mut bent = sig;
            bent[5] ^= 1;
            assert!(!verify(&pa, b"neighbours", &bent));
        }
    }

    #[test]
    fn a_bad_signature_leaves_no_error_for_the_next_tls_operation_on_the_thread() {
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let (a, b, _dir) = identities(curve);
            let nid = curve_of(&a).unwrap();
            let sig = sign(&a, b"neighbours").unwrap();
            let pb = public_key_of(&b.node_id, nid).unwrap();
            assert!(!verify(&pb, b"neighbours", &sig));
            let mut zero_r = sig;
            zero_r[..32].fill(0);
            assert!(!verify(&pb, b"neighbours", &zero_r));
            assert!(ErrorStack::get().errors().is_empty());
        }
    }

    #[test]
    fn both_ends_derive_the_same_secret() {
        let (a, b, _dir) = identities(Curve::Secp256k1);
        let nid = curve_of(&a).unwrap();
        let ab = shared_secret(&a, &public_key_of(&b.node_id, nid).unwrap()).unwrap();
        let ba = shared_secret(&b, &public_key_of(&a.node_id, nid).unwrap()).unwrap();
        assert_eq!(ab, ba);
        assert_ne!(ab, [0; SHARED_SECRET_LEN]);
    }

    #[test]
    fn a_node_id_off_the_curve_is_refused() {
        let (a, _b, _dir) = identities(Curve::Secp256k1);
        let nid = curve_of(&a).unwrap();
        let bogus = NodeId::from_bytes([7; crate::identity::NODE_ID_LEN]);
        assert!(matches!(
            public_key_of(&bogus, nid),
            Err(KeyError::NotOnCurve { .. })
        ));
    }
}
