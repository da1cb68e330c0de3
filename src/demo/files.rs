//! The demo's throw-away files: a private work directory, a fresh PKI and the OpenVPN-syntax
//! configs (server.conf, ccd/, one inline `.ovpn` profile per client).
//!
//! Invariants: the work directory is created fresh (mode 0700, never an existing one) and is
//! removed with everything in it when [`WorkDir`] is dropped; private keys are written 0600
//! from the moment they exist. The configs are plain OpenVPN 2.6 syntax: the same
//! `server.conf` runs under `openvpn`, the profiles work with `openvpn` and `fwd`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::{DemoError, Plan};
use crate::pki::{render_client_profile, render_static_key_v1, Pki, STATIC_KEY_LEN};

/// A private temporary directory, removed on drop.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `$TMPDIR/fwd-demo-<pid>-<random>` with mode 0700.
    pub fn create() -> Result<WorkDir, DemoError> {
        let tag = rand::thread_rng().next_u32();
        let path = std::env::temp_dir().join(format!("fwd-demo-{}-{tag:08x}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| DemoError::Failed(format!("creating {}: {e}", path.display())))?;
        Ok(WorkDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `rel` (relative to the directory; parents are created) — 0600 when `secret`.
    pub fn write(&self, rel: &str, text: &str, secret: bool) -> Result<PathBuf, DemoError> {
        let path = self.path.join(rel);
        let fail =
            |e: std::io::Error| DemoError::Failed(format!("writing {}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(fail)?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&path)
            .map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        Ok(path)
    }
}

impl WorkDir {
    /// Leaves the directory in place (for reading the logs afterwards).
    pub fn keep(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Which program runs a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientProgram {
    /// The stock `openvpn` binary at this path.
    OpenVpn(PathBuf),
    /// fwd itself (`fwd --config client.ovpn`).
    Fwd(PathBuf),
}

impl ClientProgram {
    /// Short name for the output.
    pub fn label(&self) -> &'static str {
        match self {
            ClientProgram::OpenVpn(_) => "openvpn",
            ClientProgram::Fwd(_) => "fwd",
        }
    }

    /// The program's path.
    pub fn path(&self) -> &Path {
        match self {
            ClientProgram::OpenVpn(p) | ClientProgram::Fwd(p) => p,
        }
    }
}

/// One client of the demo.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// Certificate CN, ccd file name and profile name.
    pub name: &'static str,
    /// Server address it connects to (over the underlay).
    pub remote: IpAddr,
    pub program: ClientProgram,
}

/// The server config, in OpenVPN syntax, paths relative to the work directory.
pub fn server_conf(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "\
# fwd demo server: a plain OpenVPN 2.6 server config
port {port}
proto udp
dev tun
topology subnet
server {v4net} 255.255.255.0
server-ipv6 {v6net}
ca ca.crt
cert server.crt
key server.key
dh none
tls-crypt tls-crypt.key
client-config-dir ccd
client-to-client
ifconfig-pool-persist ipp.txt
route {lan4} 255.255.255.0
route-ipv6 {lan6}
push \"route {lan4} 255.255.255.0\"
push \"route-ipv6 {lan6}\"
keepalive 10 60
verb 3
",
        port = plan.port,
        v4net = plan.vpn_v4_net,
        v6net = plan.vpn_v6_net,
        lan4 = plan.lan_v4_net,
        lan6 = plan.lan_v6_net,
    );
    s
}

/// ccd files: `client1` owns the LAN behind it (iroute + iroute-ipv6); `client2` gets a
/// fixed IPv6 address.
pub fn ccd_files(plan: &Plan) -> [(&'static str, String); 2] {
    [
        (
            "ccd/client1",
            format!(
                "iroute {} 255.255.255.0\niroute-ipv6 {}\n",
                plan.lan_v4_net, plan.lan_v6_net
            ),
        ),
        (
            "ccd/client2",
            format!(
                "ifconfig-ipv6-push {}/64 {}\n",
                plan.client2_fixed_v6, plan.vpn_v6_server
            ),
        ),
    ]
}

/// Everything the demo wrote.
pub struct Written {
    /// Lines describing what was written, for the output.
    pub summary: Vec<String>,
    /// The server config text (printed by the demo).
    pub server_conf: String,
}

/// Creates the PKI and writes every file into `dir`.
pub fn write_all(dir: &WorkDir, plan: &Plan, clients: &[ClientSpec]) -> Result<Written, DemoError> {
    let pki_err = |e: crate::pki::PkiError| DemoError::Failed(format!("PKI: {e}"));
    let pki = Pki::new_ca("fwd demo CA").map_err(pki_err)?;
    let server = pki.issue_server("server").map_err(pki_err)?;
    let mut key = [0u8; STATIC_KEY_LEN];
    rand::thread_rng().fill_bytes(&mut key);
    let tls_crypt = render_static_key_v1(&key);

    dir.write("ca.crt", &pki.ca_cert_pem, false)?;
    dir.write("server.crt", &server.cert_pem, false)?;
    dir.write("server.key", &server.key_pem, true)?;
    dir.write("tls-crypt.key", &tls_crypt, true)?;
    let conf = server_conf(plan);
    dir.write("server.conf", &conf, false)?;
    let mut summary = vec![
        "CA \"fwd demo CA\" (ECDSA P-256), server certificate CN=server, tls-crypt key".to_string(),
        "server.conf (below), ccd/client1: iroute + iroute-ipv6 for the LAN behind client1,"
            .to_string(),
        "ccd/client2: ifconfig-ipv6-push (a fixed IPv6 address)".to_string(),
    ];
    for (rel, text) in ccd_files(plan) {
        dir.write(rel, &text, false)?;
    }
    for c in clients {
        let issued = pki.issue_client(c.name).map_err(pki_err)?;
        let mut profile = render_client_profile(
            &c.remote.to_string(),
            plan.port,
            &pki.ca_cert_pem,
            &issued,
            &tls_crypt,
        );
        // The lab has no DCO kernel module: tell openvpn so instead of relying on its
        // fallback. fwd has no DCO option; the OpenVPN idiom `ignore-unknown-option` keeps
        // one profile valid for both programs.
        profile
            .push_str("connect-retry 1\nverb 3\nignore-unknown-option disable-dco\ndisable-dco\n");
        dir.write(&format!("{}.ovpn", c.name), &profile, true)?;
        summary.push(format!(
            "{}.ovpn: inline profile (cert CN={}, remote {} {}) for {}",
            c.name,
            c.name,
            c.remote,
            plan.port,
            c.program.label()
        ));
    }
    Ok(Written {
        summary,
        server_conf: conf,
    })
}
