use super::*;
use crate::identity::{Curve, NetworkCa};
use openssl::ec::{EcGroup, EcKey};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn ec_key(nid: Nid) -> EcKey<Private> {
    EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap()
}

#[test]
fn every_key_and_cert_form_gives_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let ca = NetworkCa::generate(Curve::Secp256k1).unwrap();
    let node = ca.issue_node("n").unwrap();
    let cert = X509::stack_from_pem(&node.cert_pem).unwrap().remove(0);
    let key = PKey::private_key_from_pem(&node.key_pem).unwrap();
    let ec = key.ec_key().unwrap();
    let want = node.node_id;
    let files = [
        write(dir.path(), "node.crt", &node.cert_pem),
        write(dir.path(), "node.der", &cert.to_der().unwrap()),
        write(dir.path(), "pkcs8.key", &node.key_pem),
        write(dir.path(), "sec1.key", &ec.private_key_to_pem().unwrap()),
        write(dir.path(), "pub.pem", &key.public_key_to_pem().unwrap()),
        write(dir.path(), "key.der", &key.private_key_to_der().unwrap()),
    ];
    for f in &files {
        assert_eq!(node_id_of_file(f).unwrap(), want, "{}", f.display());
    }
    // `openssl ecparam -genkey` puts an EC PARAMETERS block before the key.
    let mut with_params =
        b"-----BEGIN EC PARAMETERS-----\nBgUrgQQACg==\n-----END EC PARAMETERS-----\n".to_vec();
    with_params.extend(ec.private_key_to_pem().unwrap());
    let f = write(dir.path(), "params.key", &with_params);
    assert_eq!(node_id_of_file(&f).unwrap(), want);
    assert_eq!(node_id_of_cert(&cert).unwrap(), want);
}

#[test]
fn unsupported_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let f = write(
        dir.path(),
        "rsa.key",
        &rsa.private_key_to_pem_pkcs8().unwrap(),
    );
    let e = node_id_of_file(&f).unwrap_err().to_string();
    assert!(e.contains("rsa.key") && e.contains("RSA"), "{e}");

    let p384 = PKey::from_ec_key(ec_key(Nid::SECP384R1)).unwrap();
    let f = write(
        dir.path(),
        "p384.key",
        &p384.private_key_to_pem_pkcs8().unwrap(),
    );
    let e = node_id_of_file(&f).unwrap_err().to_string();
    assert!(e.contains("p384.key") && e.contains("secp384r1"), "{e}");

    let k = PKey::from_ec_key(ec_key(Nid::X9_62_PRIME256V1)).unwrap();
    let enc = k
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_128_cbc(), b"pw")
        .unwrap();
    let f = write(dir.path(), "enc.key", &enc);
    let e = node_id_of_file(&f).unwrap_err().to_string();
    assert!(e.contains("enc.key") && e.contains("encrypted"), "{e}");
}

#[test]
fn unreadable_and_garbage_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.crt");
    let e = node_id_of_file(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.crt") && e.contains("cannot read"), "{e}");

    let f = write(dir.path(), "junk.crt", b"hello world\n");
    let e = node_id_of_file(&f).unwrap_err().to_string();
    assert!(e.contains("junk.crt"), "{e}");

    let f = write(
        dir.path(),
        "bad.crt",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let e = node_id_of_file(&f).unwrap_err().to_string();
    assert!(e.contains("bad.crt") && e.contains("cannot parse"), "{e}");

    let f = write(
        dir.path(),
        "csr.pem",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    );
    let e = node_id_of_file(&f).unwrap_err().to_string();
    assert!(
        e.contains("csr.pem") && e.contains("CERTIFICATE REQUEST"),
        "{e}"
    );
}

#[test]
fn load_checks_key_match_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let ca = NetworkCa::generate(Curve::Prime256v1).unwrap();
    let a = ca.issue_node("a").unwrap();
    let b = ca.issue_node("b").unwrap();
    let ca_f = write(dir.path(), "ca.crt", &a.ca_pem);
    let crt = write(dir.path(), "node.crt", &a.cert_pem);
    let key = write(dir.path(), "node.key", &a.key_pem);
    let id = Identity::load(&ca_f, &crt, &key).unwrap();
    assert_eq!(id.node_id, a.node_id);
    assert_eq!(id.chain.len(), 2);
    assert_eq!(id.ca.len(), 1);
    assert!(!format!("{id:?}").contains("PRIVATE"));

    let other_key = write(dir.path(), "other.key", &b.key_pem);
    let e = Identity::load(&ca_f, &crt, &other_key)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other.key") && e.contains("node.crt") && e.contains("does not match"),
        "{e}"
    );

    // Without the agency certificate the leaf cannot reach the chain CA.
    let leaf_only = X509::stack_from_pem(&a.cert_pem).unwrap()[0]
        .to_pem()
        .unwrap();
    let leaf_f = write(dir.path(), "leaf.crt", &leaf_only);
    let e = Identity::load(&ca_f, &leaf_f, &key)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("leaf.crt") && e.contains("ca.crt") && e.contains("unable to get local issuer"),
        "{e}"
    );

    let foreign = NetworkCa::generate(Curve::Prime256v1).unwrap();
    let foreign_ca = write(
        dir.path(),
        "foreign-ca.crt",
        &foreign.issue_node("x").unwrap().ca_pem,
    );
    let e = Identity::load(&foreign_ca, &crt, &key)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("foreign-ca.crt") && e.contains("does not verify"),
        "{e}"
    );

    let e = Identity::load(&ca_f, &crt, &ca_f).unwrap_err().to_string();
    assert!(
        e.contains("ca.crt") && e.contains("no PEM private key"),
        "{e}"
    );
    let e = Identity::load(&key, &crt, &key).unwrap_err().to_string();
    assert!(
        e.contains("node.key") && e.contains("no PEM certificate"),
        "{e}"
    );
}
