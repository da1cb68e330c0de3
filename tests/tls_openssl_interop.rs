//! Interop of `fwd::proto::tls` with OpenSSL (the TLS library under OpenVPN 2.6) over loopback
//! TCP: our client against `openssl s_server`, our server against `openssl s_client`, for
//! TLS 1.2 and 1.3, with mutual certificate authentication. Both sides print the RFC 5705
//! exporter output for OpenVPN's label with no context, which must equal ours byte for byte.
//! Skips (with a printed reason) if the openssl binary is missing.

use fwd::pki::Pki;
use fwd::proto::tls::{
    client_config, server_config, RemoteCertTls, TlsIdentity, TlsPolicy, TlsSession, TlsVersion,
};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LABEL: &str = "EXPORTER-OpenVPN-datakeys";
const EKM_LEN: usize = 64;

fn openssl() -> Option<PathBuf> {
    ["/usr/bin/openssl", "/usr/local/bin/openssl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Kills the child on drop so a failing assertion never leaks a process.
struct Proc(Option<Child>);
impl Proc {
    /// Waits (bounded) for exit and returns stdout.
    fn output(mut self) -> String {
        let mut child = self.0.take().unwrap();
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let mut s = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut s);
        }
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut s);
        }
        s
    }
}
impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
    pki: Pki,
    server: fwd::pki::Issued,
    client: fwd::pki::Issued,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new_ca("interop CA").unwrap();
    let server = pki.issue_server("interop-server").unwrap();
    let client = pki.issue_client("interop-client").unwrap();
    let w = |n: &str, t: &str| {
        let p = dir.path().join(n);
        fs::write(&p, t).unwrap();
        p
    };
    Files {
        ca: w("ca.crt", &pki.ca_cert_pem),
        server_crt: w("server.crt", &server.cert_pem),
        server_key: w("server.key", &server.key_pem),
        client_crt: w("client.crt", &client.cert_pem),
        client_key: w("client.key", &client.key_pem),
        _dir: dir,
        pki,
        server,
        client,
    }
}

/// Blocking driver: runs the handshake over `sock`, then sends close_notify.
fn drive(sess: &mut TlsSession, sock: &mut TcpStream) -> Result<(), String> {
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut out = Vec::new();
        sess.take_ciphertext(&mut out);
        if !out.is_empty() {
            sock.write_all(&out).unwrap();
        }
        if !sess.is_handshaking() {
            return Ok(());
        }
        let n = sock.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("peer closed during handshake".into());
        }
        if let Err(e) = sess.feed_ciphertext(&buf[..n]) {
            let mut out = Vec::new();
            sess.take_ciphertext(&mut out);
            let _ = sock.write_all(&out);
            return Err(format!("handshake failed: {e}"));
        }
    }
}

fn openssl_ekm(output: &str) -> Vec<u8> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Keying material: "))
        .unwrap_or_else(|| panic!("no keying material in openssl output:\n{output}"));
    (0..line.len() / 2)
        .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn version_flag(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::V1_2 => "-tls1_2",
        TlsVersion::V1_3 => "-tls1_3",
    }
}

fn our_client_vs_s_server(openssl: &Path, v: TlsVersion) {
    let f = files();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(openssl)
        .arg("s_server")
        .args(["-accept", &format!("127.0.0.1:{port}"), "-naccept", "1"])
        .arg("-cert")
        .arg(&f.server_crt)
        .arg("-key")
        .arg(&f.server_key)
        .arg("-CAfile")
        .arg(&f.ca)
        .args(["-Verify", "2", "-verify_return_error", version_flag(v)])
        .args([
            "-keymatexport",
            LABEL,
            "-keymatexportlen",
            &EKM_LEN.to_string(),
        ])
        // s_server quits on stdin EOF, so hold a pipe open until `output()`.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let proc = Proc(Some(child));
    // Bounded wait for s_server to listen (not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sock = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("s_server never listened: {e}"),
        }
    };
    let mut policy = TlsPolicy::new(f.pki.ca_cert_pem.clone());
    policy.remote_cert_tls = Some(RemoteCertTls::Server);
    let id = TlsIdentity::from_pem(&f.client.cert_pem, &f.client.key_pem).unwrap();
    let mut sess = TlsSession::new_client(client_config(Some(&id), &policy).unwrap()).unwrap();
    if let Err(e) = drive(&mut sess, &mut sock) {
        panic!("{e}\n{}", proc.output());
    }
    let mut ours = vec![0u8; EKM_LEN];
    sess.export_keying_material(&mut ours, LABEL.as_bytes())
        .unwrap();
    assert_eq!(sess.peer_common_name().as_deref(), Some("interop-server"));
    // Let s_server see our Finished and the close before it exits.
    sess.send_close_notify();
    let mut out = Vec::new();
    sess.take_ciphertext(&mut out);
    sock.write_all(&out).unwrap();
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = sock.read_to_end(&mut sink);
    let text = proc.output();
    assert_eq!(openssl_ekm(&text), ours, "{text}");
}

fn s_client_vs_our_server(openssl: &Path, v: TlsVersion) {
    let f = files();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let child = Command::new(openssl)
        .arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(&f.client_crt)
        .arg("-key")
        .arg(&f.client_key)
        .arg("-CAfile")
        .arg(&f.ca)
        .args([
            "-verify",
            "2",
            "-verify_return_error",
            "-noservername",
            version_flag(v),
        ])
        .args([
            "-keymatexport",
            LABEL,
            "-keymatexportlen",
            &EKM_LEN.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(Some(child));
    let (mut sock, _) = listener.accept().unwrap();
    let mut policy = TlsPolicy::new(f.pki.ca_cert_pem.clone());
    policy.remote_cert_tls = Some(RemoteCertTls::Client);
    let id = TlsIdentity::from_pem(&f.server.cert_pem, &f.server.key_pem).unwrap();
    let mut sess = TlsSession::new_server(server_config(&id, &policy).unwrap()).unwrap();
    if let Err(e) = drive(&mut sess, &mut sock) {
        panic!("{e}\n{}", proc.output());
    }
    let mut ours = vec![0u8; EKM_LEN];
    sess.export_keying_material(&mut ours, LABEL.as_bytes())
        .unwrap();
    assert_eq!(sess.peer_common_name().as_deref(), Some("interop-client"));
    sess.send_close_notify();
    let mut out = Vec::new();
    sess.take_ciphertext(&mut out);
    let _ = sock.write_all(&out);
    let text = proc.output();
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert_eq!(openssl_ekm(&text), ours, "{text}");
}

#[test]
fn client_against_openssl_s_server_tls13() {
    let Some(o) = openssl() else {
        eprintln!("SKIP: openssl binary not found");
        return;
    };
    our_client_vs_s_server(&o, TlsVersion::V1_3);
}

#[test]
fn client_against_openssl_s_server_tls12() {
    let Some(o) = openssl() else {
        eprintln!("SKIP: openssl binary not found");
        return;
    };
    our_client_vs_s_server(&o, TlsVersion::V1_2);
}

#[test]
fn server_against_openssl_s_client_tls13() {
    let Some(o) = openssl() else {
        eprintln!("SKIP: openssl binary not found");
        return;
    };
    s_client_vs_our_server(&o, TlsVersion::V1_3);
}

#[test]
fn server_against_openssl_s_client_tls12() {
    let Some(o) = openssl() else {
        eprintln!("SKIP: openssl binary not found");
        return;
    };
    s_client_vs_our_server(&o, TlsVersion::V1_2);
}
