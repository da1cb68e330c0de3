//! Test PKI fixture: a CA, a server certificate and client certificates, plus a tls-crypt key.
//!
//! Owns: key/cert generation for tests, with the `openssl` CLI until fwd's own `pki` module
//! lands (then `test_pki` can switch to it without changing `PkiPaths`).
//!
//! Invariants: ECDSA P-256 keys; the CA has `CA:TRUE` + keyCertSign; the server certificate
//! has EKU serverAuth (so `remote-cert-tls server` accepts it), client certificates have
//! clientAuth; the CN of each client certificate is its name (ccd files are looked up by CN).
//! The tls-crypt key comes from `openvpn --genkey secret`, i.e. the real 2048-bit key file
//! format.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::lab::find_bin;

/// One client's certificate and key.
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// Certificate CN, also the ccd file name.
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Paths of every file `test_pki` wrote.
#[derive(Clone, Debug)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub clients: Vec<ClientCert>,
    /// `openvpn --genkey secret` output, for `tls-crypt`.
    pub tls_crypt: PathBuf,
}

impl PkiPaths {
    /// The client called `name`; panics if `test_pki_with_clients` did not make it.
    pub fn client(&self, name: &str) -> &ClientCert {
        self.clients
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no client cert {name:?} in test PKI"))
    }
}

/// A PKI with clients `client1` and `client2`, written under `dir/pki`.
pub fn test_pki(dir: &Path) -> PkiPaths {
    test_pki_with_clients(dir, &["client1", "client2"])
}

/// A PKI with the named clients, written under `dir/pki`.
pub fn test_pki_with_clients(dir: &Path, clients: &[&str]) -> PkiPaths {
    let dir = dir.join("pki");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let p = |n: &str| dir.join(n);
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (ca_cert, ca_key) = (p("ca.crt"), p("ca.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca_cert),
        "-subj",
        "/CN=fwd-test-ca",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    let leaf = |name: &str, eku: &str| -> (PathBuf, PathBuf) {
        let (cert, key, csr, ext) = (
            p(&format!("{name}.crt")),
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.ext")),
        );
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            &format!("/CN={name}"),
        ]);
        let ext_text = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage={eku}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        );
        std::fs::write(&ext, ext_text).unwrap_or_else(|e| panic!("write {}: {e}", ext.display()));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca_cert),
            "-CAkey",
            &s(&ca_key),
            "-set_serial",
            &serial(name),
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            &s(&ext),
            "-out",
            &s(&cert),
        ]);
        (cert, key)
    };
    let (server_cert, server_key) = leaf("server", "serverAuth");
    let clients = clients
        .iter()
        .map(|name| {
            let (cert, key) = leaf(name, "clientAuth");
            ClientCert {
                name: name.to_string(),
                cert,
                key,
            }
        })
        .collect();
    let tls_crypt = p("tc.key");
    run("openvpn", &["--genkey", "secret", &s(&tls_crypt)]);
    PkiPaths {
        dir,
        ca_cert,
        ca_key,
        server_cert,
        server_key,
        clients,
        tls_crypt,
    }
}

/// A distinct serial per certificate name (hex, positive), so no serial file is shared.
fn serial(name: &str) -> String {
    let h = name.bytes().fold(0x1000_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    format!("0x{:x}", h & 0x7fff_ffff_ffff_ffff)
}

fn openssl(args: &[&str]) {
    run("openssl", args);
}

fn run(prog: &str, args: &[&str]) {
    let bin = find_bin(prog).unwrap_or_else(|| panic!("{prog} not found"));
    let out = Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
