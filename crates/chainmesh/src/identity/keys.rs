//! What a node can prove with its key to nodes it is not linked to: ECDSA signatures that any
//! node can check from the signer's node ID, and a static ECDH secret that exactly two nodes
//! can compute, each from its own key and the other's node ID.
//!
//! A node ID is a public point without its curve, so a peer's ID is read on the local key's
//! curve: a network uses one curve (its CA's), and an ID that is not a point on it cannot sign
//! or agree on anything with us.
//!
//! On secp256k1, FISCO BCOS's curve, the arithmetic is libsecp256k1's: OpenSSL has no code of
//! its own for that curve and takes about ten times as long per signature, check or agreement
//! (`docs/performance.md`, "Fifth round"). Every other curve is OpenSSL's. The bytes are
//! the same either way: a signature made by one verifies under the other, and both agree on
//! the same secret.

use openssl::bn::{BigNum, BigNumContext};
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcKeyRef, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
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
    /// The node key is not a usable secp256k1 secret scalar.
    #[error("the node key is not a valid secp256k1 secret")]
    InvalidSecret,
    /// A peer key read on one curve was used with a local key on another.
    #[error("the peer key is not on the node key's curve")]
    CurveMismatch,
    /// OpenSSL failed.
    #[error("openssl: {0}")]
    OpenSsl(#[from] ErrorStack),
}

/// Another node's public key, read from its node ID on the network's curve.
#[derive(Clone)]
pub struct PeerKey(PeerKeyOn);

#[derive(Clone)]
enum PeerKeyOn {
    Secp256k1(secp256k1::PublicKey),
    OpenSsl(PKey<Public>),
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
pub fn public_key_of(node: &NodeId, curve: Nid) -> Result<PeerKey, KeyError> {
    let mut uncompressed = [0u8; 65];
    uncompressed[0] = 0x04;
    uncompressed[1..].copy_from_slice(node.as_bytes());
    let not_on_curve = || KeyError::NotOnCurve {
        node: node.short(),
        curve: curve.short_name().unwrap_or("(unnamed)"),
    };
    if curve == Nid::SECP256K1 {
        return secp256k1::PublicKey::from_byte_array_uncompressed(uncompressed)
            .map(|k| PeerKey(PeerKeyOn::Secp256k1(k)))
            .map_err(|_| not_on_curve());
    }
    let group = EcGroup::from_curve_name(curve)?;
    let mut ctx = BigNumContext::new()?;
    let point = EcPoint::from_bytes(&group, &uncompressed, &mut ctx).map_err(|_| not_on_curve())?;
    let key = EcKey::from_public_key(&group, &point).map_err(|_| not_on_curve())?;
    key.check_key().map_err(|_| not_on_curve())?;
    Ok(PeerKey(PeerKeyOn::OpenSsl(PKey::from_ec_key(key)?)))
}

/// The local key in libsecp256k1's form, if it is on secp256k1.
fn secp256k1_key(key: &EcKeyRef<Private>) -> Result<Option<secp256k1::SecretKey>, KeyError> {
    if key.group().curve_name() != Some(Nid::SECP256K1) {
        return Ok(None);
    }
    let mut scalar = [0u8; 32];
    scalar.copy_from_slice(&key.private_key().to_vec_padded(32)?);
    // A key OpenSSL loaded as a secp256k1 key is a scalar in range; refused regardless
    // rather than trusted.
    let secret =
        secp256k1::SecretKey::from_secret_bytes(scalar).map_err(|_| KeyError::InvalidSecret);
    scalar.fill(0);
    secret.map(Some)
}

/// Signs SHA-256 of `msg` with the node's key.
pub fn sign(identity: &Identity, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], KeyError> {
    let digest = sha256(msg);
    let key = identity.key.ec_key()?;
    if let Some(secret) = secp256k1_key(&key)? {
        let msg = secp256k1::Message::from_digest(digest);
        return Ok(secp256k1::ecdsa::sign(msg, &secret).serialize_compact());
    }
    Ok(raw_signature(&EcdsaSig::sign(&digest, &key)?)?)
}

/// An OpenSSL signature as it goes on the wire: `r || s`.
fn raw_signature(sig: &EcdsaSig) -> Result<[u8; SIGNATURE_LEN], ErrorStack> {
    let mut out = [0u8; SIGNATURE_LEN];
    out[..32].copy_from_slice(&sig.r().to_vec_padded(32)?);
    out[32..].copy_from_slice(&sig.s().to_vec_padded(32)?);
    Ok(out)
}

/// Whether `sig` is `signer`'s signature of `msg`. A malformed signature or a node ID that is
/// not a key is simply not a valid signature.
pub fn verify(signer: &PeerKey, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    let digest = sha256(msg);
    let signer = match &signer.0 {
        PeerKeyOn::Secp256k1(key) => {
            let Ok(mut sig) = secp256k1::ecdsa::Signature::from_compact(sig) else {
                return false;
            };
            // libsecp256k1 takes only the lower of the two values of s that verify; OpenSSL,
            // and so a node of an earlier version, signs with either.
            sig.normalize_s();
            let msg = secp256k1::Message::from_digest(digest);
            return secp256k1::ecdsa::verify(&sig, msg, key).is_ok();
        }
        PeerKeyOn::OpenSsl(key) => key,
    };
    let check = || -> Result<bool, ErrorStack> {
        let r = BigNum::from_slice(&sig[..32])?;
        let s = BigNum::from_slice(&sig[32..])?;
        let sig = EcdsaSig::from_private_components(r, s)?;
        sig.verify(&digest, &*signer.ec_key()?)
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
    peer: &PeerKey,
) -> Result<[u8; SHARED_SECRET_LEN], KeyError> {
    let mut out = [0u8; SHARED_SECRET_LEN];
    let key = identity.key.ec_key()?;
    match (&peer.0, secp256k1_key(&key)?) {
        (PeerKeyOn::Secp256k1(public), Some(secret)) => {
            let mut point = secp256k1::ecdh::shared_secret_point(public, &secret);
            out.copy_from_slice(&point[..SHARED_SECRET_LEN]);
            point.fill(0);
        }
        (PeerKeyOn::OpenSsl(public), None) => {
            let mut deriver = Deriver::new(&identity.key)?;
            deriver.set_peer(public)?;
            let secret = deriver.derive_to_vec()?;
            let n = secret.len().min(SHARED_SECRET_LEN);
            out[..n].copy_from_slice(&secret[..n]);
        }
        _ => return Err(KeyError::CurveMismatch),
    }
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
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let (a, b, _dir) = identities(curve);
            let nid = curve_of(&a).unwrap();
            let ab = shared_secret(&a, &public_key_of(&b.node_id, nid).unwrap()).unwrap();
            let ba = shared_secret(&b, &public_key_of(&a.node_id, nid).unwrap()).unwrap();
            assert_eq!(ab, ba);
            assert_ne!(ab, [0; SHARED_SECRET_LEN]);
        }
    }

    /// OpenSSL's own view of `node`'s key on `curve`, apart from [`public_key_of`].
    fn openssl_key(node: &NodeId, curve: Nid) -> EcKey<Public> {
        let group = EcGroup::from_curve_name(curve).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let mut bytes = vec![0x04];
        bytes.extend_from_slice(node.as_bytes());
        let point = EcPoint::from_bytes(&group, &bytes, &mut ctx).unwrap();
        EcKey::from_public_key(&group, &point).unwrap()
    }

    #[test]
    fn secp256k1_signatures_verify_across_libsecp256k1_and_openssl_both_ways() {
        let (a, _b, _dir) = identities(Curve::Secp256k1);
        let nid = curve_of(&a).unwrap();
        let digest = sha256(b"neighbours");
        let theirs = openssl_key(&a.node_id, nid);
        // Ours, checked by OpenSSL (as a node of an earlier version checks it).
        let ours = sign(&a, b"neighbours").unwrap();
        let parsed = EcdsaSig::from_private_components(
            BigNum::from_slice(&ours[..32]).unwrap(),
            BigNum::from_slice(&ours[32..]).unwrap(),
        )
        .unwrap();
        assert!(parsed.verify(&digest, &theirs).unwrap());
        // OpenSSL's, with either value of s, checked by ours.
        let mine = public_key_of(&a.node_id, nid).unwrap();
        let group = EcGroup::from_curve_name(nid).unwrap();
        let mut order = BigNum::new().unwrap();
        group
            .order(&mut order, &mut BigNumContext::new().unwrap())
            .unwrap();
        for _ in 0..4 {
            let sig = EcdsaSig::sign(&digest, &*a.key.ec_key().unwrap()).unwrap();
            let mut flipped = BigNum::new().unwrap();
            flipped.checked_sub(&order, sig.s()).unwrap();
            let other =
                EcdsaSig::from_private_components(sig.r().to_owned().unwrap(), flipped).unwrap();
            assert!(other.verify(&digest, &theirs).unwrap());
            assert!(verify(&mine, b"neighbours", &raw_signature(&sig).unwrap()));
            assert!(verify(
                &mine,
                b"neighbours",
                &raw_signature(&other).unwrap()
            ));
            assert!(!verify(
                &mine,
                b"neighbourz",
                &raw_signature(&other).unwrap()
            ));
        }
    }

    #[test]
    fn a_secp256k1_signature_out_of_range_is_refused() {
        let (a, _b, _dir) = identities(Curve::Secp256k1);
        let nid = curve_of(&a).unwrap();
        let key = public_key_of(&a.node_id, nid).unwrap();
        let sig = sign(&a, b"neighbours").unwrap();
        let mut zero_s = sig;
        zero_s[32..].fill(0);
        let mut huge_r = sig;
        huge_r[..32].fill(0xff);
        for bad in [[0; SIGNATURE_LEN], zero_s, huge_r] {
            assert!(!verify(&key, b"neighbours", &bad));
        }
    }

    #[test]
    fn the_secp256k1_secret_is_the_one_openssl_derives() {
        let (a, b, _dir) = identities(Curve::Secp256k1);
        let nid = curve_of(&a).unwrap();
        let ours = shared_secret(&a, &public_key_of(&b.node_id, nid).unwrap()).unwrap();
        let peer = PKey::from_ec_key(openssl_key(&b.node_id, nid)).unwrap();
        let mut deriver = Deriver::new(&a.key).unwrap();
        deriver.set_peer(&peer).unwrap();
        assert_eq!(&ours[..], &deriver.derive_to_vec().unwrap()[..]);
    }

    #[test]
    fn a_key_of_another_curve_agrees_on_nothing() {
        let (a, _b, _dir) = identities(Curve::Secp256k1);
        let (p, _q, _dir2) = identities(Curve::Prime256v1);
        let on_p256 = public_key_of(&p.node_id, curve_of(&p).unwrap()).unwrap();
        assert!(matches!(
            shared_secret(&a, &on_p256),
            Err(KeyError::CurveMismatch)
        ));
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
