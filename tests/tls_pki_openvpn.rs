//! PKI output checked by the reference tools: `openssl verify` accepts the chain and CRL, and
//! two real `openvpn` 2.6 processes (p2p TLS mode, `--dev null`) complete a TLS handshake with
//! certificates from `fwd::pki`. Skips (with a printed reason) when the binaries are missing.

use fwd::pki::{init_dir, InitOptions, Pki};
use std::fs;
use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPENVPN: &str = "/usr/sbin/openvpn";

fn openssl() -> Option<PathBuf> {
    ["/usr/bin/openssl", "/usr/local/bin/openssl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn openssl_verifies_chain_and_crl() {
    let Some(openssl) = openssl() else {
        eprintln!("SKIP: openssl binary not found");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new_ca("fwd test CA").unwrap();
    let server = pki.issue_server("server").unwrap();
    let alice = pki.issue_client("alice").unwrap();
    let bob = pki.issue_client("bob").unwrap();
    let ca = write(dir.path(), "ca.crt", &pki.ca_cert_pem);
    let srv = write(dir.path(), "server.crt", &server.cert_pem);
    let a = write(dir.path(), "alice.crt", &alice.cert_pem);
    let b = write(dir.path(), "bob.crt", &bob.cert_pem);
    let crl = write(dir.path(), "crl.pem", &pki.crl(&[&bob]).unwrap());

    for (cert, purpose) in [(&srv, "sslserver"), (&a, "sslclient"), (&b, "sslclient")] {
        let ca_s = ca.as_os_str().to_str().unwrap();
        let out = Command::new(&openssl)
            .args(["verify", "-purpose", purpose, "-CAfile", ca_s])
            .arg(cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl verify {cert:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Wrong purpose must fail: a server certificate is no TLS client certificate.
    let out = Command::new(&openssl)
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca)
        .arg(&srv)
        .output()
        .unwrap();
    assert!(!out.status.success(), "server cert passed as sslclient");

    let crl_check = |cert: &Path| {
        let out = Command::new(&openssl)
            .args(["verify", "-crl_check", "-CAfile"])
            .arg(&ca)
            .arg("-CRLfile")
            .arg(&crl)
            .arg(cert)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = crl_check(&a);
    assert!(ok, "alice must pass the CRL check: {text}");
    let (ok, text) = crl_check(&b);
    assert!(!ok, "bob is revoked: {text}");
    assert!(text.contains("revoked"), "{text}");
}

/// Kills the child on drop so a failing assertion never leaks an openvpn process.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_openvpn(args: &[&str], log: &Path) -> Proc {
    let child = Command::new(OPENVPN)
        .args(args)
        .arg("--log")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn read_log(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

#[test]
fn openvpn_p2p_tls_handshake_with_init_dir() {
    if !Path::new(OPENVPN).exists() {
        eprintln!("SKIP: {OPENVPN} not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_dir(
        d,
        InitOptions {
            server_cn: "fwd-server".into(),
            clients: vec!["alice".into()],
            remote: "127.0.0.1".into(),
            port: 1194,
        },
    )
    .unwrap();
    let s = |name: &str| d.join(name).to_str().unwrap().to_string();
    let port = free_udp_port().to_string();
    let srv_log = d.join("server.log");
    let cli_log = d.join("client.log");
    let common = ["--dev", "null", "--proto", "udp", "--verb", "3"];
    let (ca, scrt, skey, ccrt, ckey, tc) = (
        s("ca.crt"),
        s("server.crt"),
        s("server.key"),
        s("alice.crt"),
        s("alice.key"),
        s("tls-crypt.key"),
    );
    let mut srv_args: Vec<&str> = common.to_vec();
    srv_args.extend([
        "--tls-server",
        "--dh",
        "none",
        "--ca",
        &ca,
        "--cert",
        &scrt,
        "--key",
        &skey,
        "--lport",
        &port,
        "--bind",
        "--local",
        "127.0.0.1",
        "--remote-cert-tls",
        "client",
        "--tls-crypt",
        &tc,
    ]);
    let _server = spawn_openvpn(&srv_args, &srv_log);
    let mut cli_args: Vec<&str> = common.to_vec();
    cli_args.extend([
        "--tls-client",
        "--remote",
        "127.0.0.1",
        &port,
        "--nobind",
        "--ca",
        &ca,
        "--cert",
        &ccrt,
        "--key",
        &ckey,
        "--remote-cert-tls",
        "server",
        "--verify-x509-name",
        "fwd-server",
        "name",
        "--tls-crypt",
        &tc,
    ]);
    let _client = spawn_openvpn(&cli_args, &cli_log);

    // A bounded wait for the log line, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = |p: &Path| read_log(p).contains("Peer Connection Initiated");
    while Instant::now() < deadline && !(done(&srv_log) && done(&cli_log)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sl, cl) = (read_log(&srv_log), read_log(&cli_log));
    assert!(
        sl.contains("Peer Connection Initiated") && cl.contains("Peer Connection Initiated"),
        "--- server log ---\n{sl}\n--- client log ---\n{cl}"
    );
    // The handshake really used our certificates and checks.
    assert!(cl.contains("CN=fwd-server"), "{cl}");
    assert!(sl.contains("CN=alice"), "{sl}");
    for line in cl.lines().chain(sl.lines()) {
        if line.contains("VERIFY") || line.contains("Control Channel:") {
            eprintln!("{line}");
        }
    }
}

#[test]
fn init_dir_layout_and_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("pki");
    let opts = InitOptions {
        server_cn: "srv".into(),
        clients: vec!["alice".into(), "bob".into()],
        remote: "vpn.example.org".into(),
        port: 1194,
    };
    init_dir(&d, opts.clone()).unwrap();
    let mode = |n: &str| fs::metadata(d.join(n)).unwrap().permissions().mode() & 0o777;
    for secret in [
        "ca.key",
        "server.key",
        "tls-crypt.key",
        "alice.key",
        "alice.ovpn",
        "bob.key",
    ] {
        assert_eq!(mode(secret), 0o600, "{secret}");
    }
    for public in [
        "ca.crt",
        "server.crt",
        "server.conf",
        "alice.crt",
        "bob.crt",
    ] {
        assert!(d.join(public).is_file(), "{public}");
    }
    assert!(d.join("ccd").is_dir());
    let tc = fs::read_to_string(d.join("tls-crypt.key")).unwrap();
    assert!(tc.starts_with(
        "#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n"
    ));
    let conf = fs::read_to_string(d.join("server.conf")).unwrap();
    let v6 = conf
        .lines()
        .find(|l| l.starts_with("server-ipv6 fd"))
        .unwrap();
    assert!(v6.ends_with("::/64"), "{v6}");
    let ovpn = fs::read_to_string(d.join("bob.ovpn")).unwrap();
    assert!(ovpn.contains("\nremote vpn.example.org 1194\n"));
    assert!(ovpn.contains(&fs::read_to_string(d.join("bob.crt")).unwrap()));
    assert!(ovpn.contains(&tc));
    // A second init must not clobber the CA.
    let before = fs::read_to_string(d.join("ca.key")).unwrap();
    assert!(init_dir(&d, opts).is_err());
    assert_eq!(fs::read_to_string(d.join("ca.key")).unwrap(), before);
    // Hostile client names are refused before anything is written.
    let bad = InitOptions {
        server_cn: "srv".into(),
        clients: vec!["../evil".into()],
        remote: "x".into(),
        port: 1,
    };
    assert!(init_dir(&dir.path().join("other"), bad).is_err());
    assert!(!dir.path().join("other").exists());
}
