//! Identity loading, certificate generation, mutual TLS and `chainmesh init`/`node-id`,
//! checked against the `openssl` command-line tool and over real TCP.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chainmesh::admission::{Admission, Refusal};
use chainmesh::config::Config;
use chainmesh::identity::{
    generate_node_files, node_id_of_file, Curve, Identity, NetworkCa, NodeId,
};
use chainmesh::tls::{TlsContext, TlsError, TlsStream};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_openssl::SslStream;

use common::{assert_ok, chainmesh, chainmesh_ok};

const TIMEOUT: Duration = Duration::from_secs(10);
const CURVES: [Curve; 2] = [Curve::Secp256k1, Curve::Prime256v1];

// ---------------------------------------------------------------------------------------------
// The openssl command-line tool
// ---------------------------------------------------------------------------------------------

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_agency]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_node]
basicConstraints = CA:FALSE
keyUsage = nonRepudiation,digitalSignature,keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
";

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Which form `openssl` writes a key in.
#[derive(Clone, Copy)]
enum KeyForm {
    /// `openssl ecparam -genkey`: EC PARAMETERS + SEC1 `EC PRIVATE KEY`.
    Sec1,
    /// `openssl genpkey`: PKCS#8 `PRIVATE KEY`.
    Pkcs8,
}

/// A CA, optional agency and nodes made by the openssl binary in a directory.
struct OpensslPki {
    dir: PathBuf,
    cnf: PathBuf,
}

/// The files of one node.
#[derive(Clone)]
struct NodeFiles {
    ca: PathBuf,
    crt: PathBuf,
    key: PathBuf,
}

impl NodeFiles {
    fn identity(&self) -> Identity {
        Identity::load(&self.ca, &self.crt, &self.key).unwrap()
    }
}

impl OpensslPki {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).unwrap();
        OpensslPki {
            dir: dir.to_owned(),
            cnf,
        }
    }

    fn key(&self, name: &str, curve: Curve, form: KeyForm) -> PathBuf {
        let path = self.dir.join(format!("{name}.key"));
        match form {
            KeyForm::Sec1 => {
                openssl(&[
                    "ecparam",
                    "-name",
                    curve.name(),
                    "-genkey",
                    "-out",
                    p(&path),
                ]);
            }
            KeyForm::Pkcs8 => {
                let opt = format!("ec_paramgen_curve:{}", curve.name());
                openssl(&[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    &opt,
                    "-pkeyopt",
                    "ec_param_enc:named_curve",
                    "-out",
                    p(&path),
                ]);
            }
        }
        path
    }

    fn root(&self, name: &str, curve: Curve) -> (PathBuf, PathBuf) {
        let key = self.key(name, curve, KeyForm::Sec1);
        let crt = self.dir.join(format!("{name}.crt"));
        let subj = format!("/CN={name}/O=openssl-test");
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            p(&key),
            "-subj",
            &subj,
            "-days",
            "3650",
            "-sha256",
            "-config",
            p(&self.cnf),
            "-extensions",
            "v3_ca",
            "-out",
            p(&crt),
        ]);
        (crt, key)
    }

    fn issue(&self, name: &str, key: &Path, issuer: &(PathBuf, PathBuf), section: &str) -> PathBuf {
        let csr = self.dir.join(format!("{name}.csr"));
        let crt = self.dir.join(format!("{name}.crt"));
        let subj = format!("/CN={name}/O=openssl-test");
        openssl(&[
            "req",
            "-new",
            "-key",
            p(key),
            "-subj",
            &subj,
            "-config",
            p(&self.cnf),
            "-out",
            p(&csr),
        ]);
        let mut serial = [0u8; 16];
        openssl::rand::rand_bytes(&mut serial).unwrap();
        serial[0] |= 0x40;
        serial[0] &= 0x7f;
        let serial = format!("0x{}", hex::encode(serial));
        openssl(&[
            "x509",
            "-req",
            "-in",
            p(&csr),
            "-CA",
            p(&issuer.0),
            "-CAkey",
            p(&issuer.1),
            "-set_serial",
            &serial,
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            p(&self.cnf),
            "-extensions",
            section,
            "-out",
            p(&crt),
        ]);
        crt
    }

    /// A CA on `ca_curve`, optionally an agency, and one node per entry of `node_curves`.
    /// node.crt is the leaf followed by the agency certificate when there is one.
    fn network(&self, ca_curve: Curve, agency: bool, node_curves: &[Curve]) -> Vec<NodeFiles> {
        let ca = self.root("ca", ca_curve);
        let issuer = if agency {
            let key = self.key("agency", ca_curve, KeyForm::Pkcs8);
            let crt = self.issue("agency", &key, &ca, "v3_agency");
            (crt, key)
        } else {
            ca.clone()
        };
        node_curves
            .iter()
            .enumerate()
            .map(|(k, curve)| {
                let name = format!("node{k}");
                let form = if k % 2 == 0 {
                    KeyForm::Sec1
                } else {
                    KeyForm::Pkcs8
                };
                let key = self.key(&name, *curve, form);
                let leaf = self.issue(&name, &key, &issuer, "v3_node");
                let crt = if agency {
                    let chained = self.dir.join(format!("{name}-chain.crt"));
                    let mut pem = std::fs::read(&leaf).unwrap();
                    pem.extend(std::fs::read(&issuer.0).unwrap());
                    std::fs::write(&chained, pem).unwrap();
                    chained
                } else {
                    leaf
                };
                NodeFiles {
                    ca: ca.0.clone(),
                    crt,
                    key,
                }
            })
            .collect()
    }
}

/// What `openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER` gives, last 64 bytes.
fn openssl_node_id(crt: &Path) -> String {
    let pubkey = openssl(&["x509", "-noout", "-pubkey", "-in", p(crt)]).stdout;
    let mut child = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&pubkey).unwrap();
    let der = child.wait_with_output().unwrap().stdout;
    assert!(der.len() > 64);
    hex::encode(&der[der.len() - 64..])
}

fn bin_node_id(file: &Path) -> String {
    let out = chainmesh_ok(["node-id", p(file)]);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `openssl x509 -noout -text` of a certificate file.
fn cert_text(crt: &Path) -> String {
    String::from_utf8(openssl(&["x509", "-noout", "-text", "-in", p(crt)]).stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// TLS over TCP
// ---------------------------------------------------------------------------------------------

fn tls(identity: &Identity, admission: Admission) -> TlsContext {
    TlsContext::new(identity, Arc::new(RwLock::new(admission))).unwrap()
}

/// An accept loop on 127.0.0.1:0 that reports every handshake and echoes what honest peers
/// send.
async fn serve(ctx: TlsContext) -> (SocketAddr, Handshakes) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (ctx, tx) = (ctx.clone(), tx.clone());
            tokio::spawn(async move {
                match ctx.accept(tcp).await {
                    Ok((mut s, id)) => {
                        let _ = tx.send(Ok(id));
                        let mut buf = [0u8; 256];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn dial(
    ctx: &TlsContext,
    addr: SocketAddr,
) -> Result<(TlsStream<TcpStream>, NodeId), TlsError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(TIMEOUT, ctx.connect(tcp))
        .await
        .expect("connect timed out")
}

/// What [`serve`] reports: the node ID of each client it admitted, or why it refused one.
type Handshakes = mpsc::UnboundedReceiver<Result<NodeId, TlsError>>;

/// Dials the server at `addr` as `client` and checks that the server admitted it (its next
/// report is the client's node ID); returns the link and the node ID the server proved.
async fn admitted(
    client: &Identity,
    addr: SocketAddr,
    rx: &mut Handshakes,
) -> (TlsStream<TcpStream>, NodeId) {
    let (s, server_id) = dial(&tls(client, Admission::default()), addr)
        .await
        .unwrap();
    assert_eq!(next(rx).await.unwrap(), client.node_id);
    (s, server_id)
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("no handshake result")
        .expect("server loop ended")
}

async fn echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, msg);
}

/// Whether `e` is a chain that did not verify for want of its issuer: signed by another CA.
fn is_unknown_issuer(e: &TlsError) -> bool {
    matches!(e, TlsError::Verify { reason, .. } if reason == "unable to get local issuer certificate")
}

/// A client the server refused: either its handshake failed or, in TLS 1.3 where the client
/// finishes first, its first read fails or hits EOF.
async fn assert_client_sees_refusal<S>(result: Result<(TlsStream<S>, NodeId), TlsError>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Ok((mut s, _)) = result {
        assert_first_read_fails(&mut s).await;
    }
}

/// A refused client whose handshake completed (TLS 1.3): its first read fails or hits EOF.
async fn assert_first_read_fails<S>(s: &mut S)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
        .await
        .expect("refused client read timed out");
    assert!(
        matches!(r, Err(_) | Ok(0)),
        "refused client could read: {r:?}"
    );
}

/// Handshakes `client` to a server running `server`, checks both IDs and echoes bytes.
async fn check_link(server: &Identity, client: &Identity, version: Option<&str>) {
    let (addr, mut rx) = serve(tls(server, Admission::default())).await;
    let (mut s, server_id) = admitted(client, addr, &mut rx).await;
    assert_eq!(server_id, server.node_id);
    if let Some(v) = version {
        assert_eq!(s.ssl().version_str(), v);
    }
    echo(&mut s, b"hello over mutual TLS").await;
    echo(&mut s, &[0u8, 1, 2, 3, 255]).await;
}

// ---------------------------------------------------------------------------------------------
// Node IDs of openssl-made files
// ---------------------------------------------------------------------------------------------

#[test]
fn openssl_cli_files_give_openssls_node_id() {
    let tmp = tempfile::tempdir().unwrap();
    for curve in CURVES {
        for agency in [false, true] {
            let pki = OpensslPki::new(&tmp.path().join(format!("{curve}-{agency}")));
            for node in pki.network(curve, agency, &[curve, curve]) {
                let want = openssl_node_id(&node.crt);
                assert_eq!(want.len(), 128);
                assert_eq!(node_id_of_file(&node.crt).unwrap().to_string(), want);
                assert_eq!(node_id_of_file(&node.key).unwrap().to_string(), want);
                assert_eq!(bin_node_id(&node.crt), want);
                assert_eq!(bin_node_id(&node.key), want);
                let id = node.identity();
                assert_eq!(id.node_id.to_string(), want);
                assert_eq!(id.chain.len(), if agency { 2 } else { 1 });
            }
        }
    }
}

#[test]
fn node_id_command_names_the_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.crt");
    let out = chainmesh(["node-id", p(&missing)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.crt"), "{err}");

    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let out = chainmesh(["node-id", p(&junk)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.pem"));
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn generated_identities_handshake_over_tcp() {
    for (curve, version) in [
        (Curve::Secp256k1, "TLSv1.2"),
        (Curve::Prime256v1, "TLSv1.3"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = generate_node_files(tmp.path(), 2, curve).unwrap();
        let a = nodes[0].load_identity().unwrap();
        let b = nodes[1].load_identity().unwrap();
        assert_eq!(a.node_id, nodes[0].node_id);
        check_link(&a, &b, Some(version)).await;
        check_link(&b, &a, Some(version)).await;
    }
}

#[tokio::test]
async fn openssl_cli_identities_handshake_over_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    for curve in CURVES {
        for agency in [false, true] {
            let pki = OpensslPki::new(&tmp.path().join(format!("{curve}-{agency}")));
            let nodes = pki.network(curve, agency, &[curve, curve]);
            let (a, b) = (nodes[0].identity(), nodes[1].identity());
            check_link(&a, &b, None).await;
        }
    }
}

#[tokio::test]
async fn mixed_curves_handshake_in_both_directions() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = OpensslPki::new(tmp.path());
    let nodes = pki.network(
        Curve::Prime256v1,
        true,
        &[Curve::Secp256k1, Curve::Prime256v1],
    );
    let (k1, r1) = (nodes[0].identity(), nodes[1].identity());
    check_link(&k1, &r1, Some("TLSv1.2")).await;
    check_link(&r1, &k1, Some("TLSv1.2")).await;
}

#[tokio::test]
async fn peer_from_another_ca_is_refused_and_server_keeps_accepting() {
    for curve in CURVES {
        let tmp = tempfile::tempdir().unwrap();
        let ours = generate_node_files(&tmp.path().join("ours"), 2, curve).unwrap();
        let theirs = generate_node_files(&tmp.path().join("theirs"), 1, curve).unwrap();
        let server = ours[0].load_identity().unwrap();
        let honest = ours[1].load_identity().unwrap();
        let foreign = theirs[0].load_identity().unwrap();
        let (addr, mut rx) = serve(tls(&server, Admission::default())).await;

        // The foreign client checks the server first and refuses it.
        let e = dial(&tls(&foreign, Admission::default()), addr)
            .await
            .unwrap_err();
        assert!(is_unknown_issuer(&e), "{e}");
        let e = next(&mut rx).await.unwrap_err();
        assert!(matches!(e, TlsError::PeerAlert { .. }), "{e}");

        // A foreign client that trusts our CA too gets as far as being checked by the server.
        let mut trusting = foreign.clone();
        trusting.ca.extend(server.ca.iter().cloned());
        let r = dial(&tls(&trusting, Admission::default()), addr).await;
        assert_client_sees_refusal(r).await;
        let e = next(&mut rx).await.unwrap_err();
        assert!(e.is_local_refusal());
        assert!(is_unknown_issuer(&e), "{e}");

        let (mut s, id) = admitted(&honest, addr, &mut rx).await;
        assert_eq!(id, server.node_id);
        echo(&mut s, b"still serving").await;
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    for curve in CURVES {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = generate_node_files(tmp.path(), 2, curve).unwrap();
        let server = nodes[0].load_identity().unwrap();
        let (addr, mut rx) = serve(tls(&server, Admission::default())).await;

        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        // Without secp256k1 in its groups the server could not use a secp256k1 certificate
        // and would fail earlier with "no shared cipher".
        b.set_groups_list("X25519:P-256:secp256k1").unwrap();
        let ssl = b
            .build()
            .configure()
            .unwrap()
            .verify_hostname(false)
            .use_server_name_indication(false)
            .into_ssl("peer")
            .unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut bare = SslStream::new(ssl, tcp).unwrap();
        let r = tokio::time::timeout(TIMEOUT, Pin::new(&mut bare).connect())
            .await
            .unwrap();
        if r.is_ok() {
            assert_first_read_fails(&mut bare).await;
        }
        let e = next(&mut rx).await.unwrap_err();
        assert!(matches!(e, TlsError::NoPeerCertificate), "{e}");

        let honest = nodes[1].load_identity().unwrap();
        let (mut s, _) = admitted(&honest, addr, &mut rx).await;
        echo(&mut s, b"ok").await;
    }
}

#[tokio::test]
async fn blacklist_and_whitelist_refuse_during_the_handshake() {
    for curve in CURVES {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = generate_node_files(tmp.path(), 4, curve).unwrap();
        let ids: Vec<Identity> = nodes.iter().map(|n| n.load_identity().unwrap()).collect();
        let (server, bad, outsider, friend) = (&ids[0], &ids[1], &ids[2], &ids[3]);
        let admission = Arc::new(RwLock::new(Admission::new(
            [bad.node_id],
            [bad.node_id, friend.node_id],
        )));
        let ctx = TlsContext::new(server, Arc::clone(&admission)).unwrap();
        let (addr, mut rx) = serve(ctx).await;

        let r = dial(&tls(bad, Admission::default()), addr).await;
        assert_client_sees_refusal(r).await;
        let e = next(&mut rx).await.unwrap_err();
        assert!(
            matches!(e, TlsError::Refused { refusal: Refusal::Blacklisted, id } if id == bad.node_id),
            "{e}"
        );

        let r = dial(&tls(outsider, Admission::default()), addr).await;
        assert_client_sees_refusal(r).await;
        let e = next(&mut rx).await.unwrap_err();
        assert!(
            matches!(e, TlsError::Refused { refusal: Refusal::NotWhitelisted, id } if id == outsider.node_id),
            "{e}"
        );

        let (mut s, _) = admitted(friend, addr, &mut rx).await;
        echo(&mut s, b"friend").await;

        // Admission is read on every handshake: lifting the lists admits the outsider.
        *admission.write() = Admission::default();
        let (mut s, _) = admitted(outsider, addr, &mut rx).await;
        echo(&mut s, b"outsider").await;

        // The dialling side applies its own policy to the server.
        let e = dial(&tls(friend, Admission::new([server.node_id], [])), addr)
            .await
            .unwrap_err();
        assert!(
            matches!(e, TlsError::Refused { refusal: Refusal::Blacklisted, id } if id == server.node_id),
            "{e}"
        );
        let _ = next(&mut rx).await.unwrap_err();
    }
}

// ---------------------------------------------------------------------------------------------
// chainmesh init
// ---------------------------------------------------------------------------------------------

fn init(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["init", "--nodes", "3", "--dir", p(dir)];
    args.extend_from_slice(extra);
    chainmesh(args)
}

#[test]
fn init_writes_a_network_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let out = init(&dir, &["--base-port", "40100"]);
    assert_ok(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");

    for f in [
        "ca/ca.crt",
        "ca/ca.key",
        "agency/agency.crt",
        "agency/agency.key",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let text = cert_text(&dir.join("node0/conf/node.crt"));
    assert!(text.contains("ASN1 OID: secp256k1"), "{text}");

    for (k, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], format!("node{k}"));
        assert_eq!(fields[1], format!("127.0.0.1:{}", 40100 + k));
        let node_dir = dir.join(format!("node{k}"));
        for f in [
            "conf/ca.crt",
            "conf/node.crt",
            "conf/node.key",
            "config.toml",
        ] {
            assert!(node_dir.join(f).is_file(), "node{k}/{f}");
        }
        assert_eq!(bin_node_id(&node_dir.join("conf/node.crt")), fields[2]);
        assert_eq!(bin_node_id(&node_dir.join("conf/node.key")), fields[2]);
        assert_eq!(openssl_node_id(&node_dir.join("conf/node.crt")), fields[2]);

        let cfg = Config::load(&node_dir.join("config.toml")).unwrap();
        assert_eq!(cfg.p2p.listen, fields[1]);
        assert_eq!(cfg.admin.listen, format!("127.0.0.1:{}", 41100 + k));
        let mut want_peers: Vec<String> = (0..3)
            .filter(|j| *j != k)
            .map(|j| format!("127.0.0.1:{}", 40100 + j))
            .collect();
        want_peers.sort();
        let mut peers = cfg.p2p.peers.clone();
        peers.sort();
        assert_eq!(peers, want_peers);
        let id = Identity::load(
            &cfg.identity.ca_cert,
            &cfg.identity.node_cert,
            &cfg.identity.node_key,
        )
        .unwrap();
        assert_eq!(id.node_id.to_string(), fields[2]);
    }
}

#[test]
fn init_refuses_a_non_empty_dir_without_force_and_keeps_the_ca_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    assert!(init(&dir, &[]).status.success());
    let before = std::fs::read(dir.join("node0/conf/node.crt")).unwrap();

    let out = init(&dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(p(&dir)) && err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("node0/conf/node.crt")).unwrap(),
        before
    );

    // --force keeps the chain CA: it re-issues the nodes from it and refuses another curve.
    let ca = std::fs::read(dir.join("ca/ca.crt")).unwrap();
    let out = init(&dir, &["--force", "--curve", "prime256v1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept"));
    assert_ok(&init(&dir, &["--force"]));
    assert_eq!(std::fs::read(dir.join("ca/ca.crt")).unwrap(), ca);
    assert_ne!(
        std::fs::read(dir.join("node0/conf/node.crt")).unwrap(),
        before
    );
    let cfg = Config::load(&dir.join("node2/config.toml")).unwrap();
    Identity::load(
        &cfg.identity.ca_cert,
        &cfg.identity.node_cert,
        &cfg.identity.node_key,
    )
    .unwrap();
}

#[test]
fn init_rejects_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let out = chainmesh(["init", "--nodes", "0", "--dir", p(&dir)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes"));
    let out = chainmesh([
        "init",
        "--nodes",
        "2",
        "--dir",
        p(&dir),
        "--base-port",
        "64535",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("65535"));
    let out = chainmesh([
        "init",
        "--nodes",
        "2",
        "--dir",
        p(&dir),
        "--curve",
        "ed25519",
    ]);
    assert!(!out.status.success());
    assert!(!dir.exists(), "nothing is written when arguments are bad");
}

// ---------------------------------------------------------------------------------------------
// Identity::load errors
// ---------------------------------------------------------------------------------------------

#[test]
fn identity_load_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = generate_node_files(tmp.path(), 2, Curve::Secp256k1).unwrap();
    let (ca, crt, key) = (
        nodes[0].ca_cert(),
        nodes[0].node_cert(),
        nodes[0].node_key(),
    );
    let other_key = nodes[1].node_key();

    let e = Identity::load(&ca, &crt, &other_key)
        .unwrap_err()
        .to_string();
    assert!(e.contains(p(&other_key)) && e.contains(p(&crt)), "{e}");
    assert!(e.contains("does not match"), "{e}");

    let missing = tmp.path().join("node0/conf/absent.crt");
    let e = Identity::load(&missing, &crt, &key)
        .unwrap_err()
        .to_string();
    assert!(e.contains(p(&missing)) && e.contains("cannot read"), "{e}");

    let garbage = tmp.path().join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = Identity::load(&ca, &garbage, &key).unwrap_err().to_string();
    assert!(e.contains(p(&garbage)) && e.contains("cannot parse"), "{e}");

    let garbage_key = tmp.path().join("garbage.key");
    std::fs::write(
        &garbage_key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = Identity::load(&ca, &crt, &garbage_key)
        .unwrap_err()
        .to_string();
    assert!(e.contains(p(&garbage_key)), "{e}");

    let empty = tmp.path().join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    let e = Identity::load(&empty, &crt, &key).unwrap_err().to_string();
    assert!(
        e.contains(p(&empty)) && e.contains("no PEM certificate"),
        "{e}"
    );

    // A node certificate from another network does not chain to this ca.crt.
    let other = NetworkCa::generate(Curve::Secp256k1)
        .unwrap()
        .issue_node("x")
        .unwrap();
    other.write_conf(&tmp.path().join("other")).unwrap();
    let e = Identity::load(
        &ca,
        &tmp.path().join("other/node.crt"),
        &tmp.path().join("other/node.key"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(p(&ca)) && e.contains("other/node.crt"), "{e}");
    assert!(e.contains("unable to get local issuer certificate"), "{e}");
}
