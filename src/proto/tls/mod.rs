//! TLS session glue for the OpenVPN control channel: rustls 0.23 (ring provider, TLS 1.2 and
//! 1.3) driven entirely from memory.
//!
//! Owns: building rustls configs that behave like OpenVPN 2.6 with OpenSSL (wire notes
//! section 7) and a sans-IO [`TlsSession`] that turns received ciphertext into plaintext
//! messages and back. Invariants:
//! * no SNI, no host-name check; the peer is trusted by chain-to-CA plus the optional
//!   `--remote-cert-tls`, `--verify-x509-name` and CRL checks ([`verify`]);
//! * the server always requires a client certificate;
//! * no session tickets, no session cache, no resumption, no ALPN, no early data: OpenVPN
//!   renegotiates by running a fresh TLS session per key id;
//! * every [`TlsSession::write_message`] becomes its own TLS record(s) (OpenVPN framing, 13.1);
//! * the keying-material exporter is called with *no* context (matters for TLS 1.2, 10.2).
//!
//! Nothing here opens sockets or files. rustls reads the wall clock itself for certificate
//! validity; that is the only clock access.

pub mod verify;
mod x509;

pub use verify::CertCheckError;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::sync::Arc;
use verify::{OpenVpnClientCertVerifier, OpenVpnServerCertVerifier, PeerChecks};

/// OpenVPN's `TLS_USERNAME_LEN`: longer common names fail verification.
pub const MAX_COMMON_NAME_LEN: usize = 64;

/// Everything that can go wrong building configs or running a TLS session.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid PEM input: {0}")]
    Pem(&'static str),
    #[error("CA certificate or CRL rejected: {0}")]
    Pki(webpki::Error),
    #[error("invalid TLS version range (tls-version-min above tls-version-max)")]
    VersionRange,
    #[error("TLS configuration error: {0}")]
    Config(rustls::Error),
    /// A fatal protocol or verification error; the session is dead. The alert rustls queued
    /// is still available from [`TlsSession::take_ciphertext`].
    #[error("TLS error: {0}")]
    Tls(rustls::Error),
    #[error("TLS buffer error: {0}")]
    Io(std::io::Error),
    #[error("TLS handshake not complete")]
    Handshaking,
}

/// Our own certificate chain and private key.
pub struct TlsIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Parses `cert_pem` (leaf first, optional intermediates after it) and the first private key
    /// (PKCS#8, SEC1 or PKCS#1) in `key_pem`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<TlsIdentity, TlsError> {
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::Pem("malformed certificate PEM"))?;
        if certs.is_empty() {
            return Err(TlsError::Pem("no certificate found"));
        }
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|_| TlsError::Pem("malformed private key PEM"))?
            .ok_or(TlsError::Pem("no private key found"))?;
        Ok(TlsIdentity { certs, key })
    }
}

/// `--remote-cert-tls server|client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoteCertTls {
    Server,
    Client,
}

/// The field `--verify-x509-name` compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum X509NameType {
    /// The whole subject DN in OpenSSL one-line form (`C=.., O=.., CN=..`).
    Subject,
    /// The common name (OpenVPN's default type).
    Name,
    /// A prefix of the common name.
    NamePrefix,
}

/// A TLS protocol version for `--tls-version-min` / `--tls-version-max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// How the peer is authenticated, mirroring the OpenVPN options of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `--ca`: one or more PEM CA certificates (trust anchors).
    pub ca_pem: String,
    /// `--crl-verify`: PEM CRL(s); when set, every chain certificate needs a known status.
    pub crl_pem: Option<String>,
    pub remote_cert_tls: Option<RemoteCertTls>,
    pub verify_x509_name: Option<(String, X509NameType)>,
    /// `--tls-version-min`; `None` = TLS 1.2 (OpenVPN's default).
    pub tls_version_min: Option<TlsVersion>,
    /// `--tls-version-max`; `None` = the highest supported (TLS 1.3).
    pub tls_version_max: Option<TlsVersion>,
}

impl TlsPolicy {
    /// A policy trusting `ca_pem` with every optional check off.
    pub fn new(ca_pem: impl Into<String>) -> TlsPolicy {
        TlsPolicy {
            ca_pem: ca_pem.into(),
            crl_pem: None,
            remote_cert_tls: None,
            verify_x509_name: None,
            tls_version_min: None,
            tls_version_max: None,
        }
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
        let min = self.tls_version_min.unwrap_or(TlsVersion::V1_2);
        let max = self.tls_version_max.unwrap_or(TlsVersion::V1_3);
        if min > max {
            return Err(TlsError::VersionRange);
        }
        let mut v = Vec::new();
        if max >= TlsVersion::V1_3 {
            v.push(&rustls::version::TLS13);
        }
        if min <= TlsVersion::V1_2 {
            v.push(&rustls::version::TLS12);
        }
        Ok(v)
    }

    fn checks(
        &self,
        peer_role: RemoteCertTls,
        provider: &CryptoProvider,
    ) -> Result<PeerChecks, TlsError> {
        let cas = rustls_pemfile::certs(&mut self.ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::Pem("malformed CA PEM"))?;
        if cas.is_empty() {
            return Err(TlsError::Pem("no CA certificate found"));
        }
        let roots = cas
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|ta| ta.to_owned())
                    .map_err(TlsError::Pki)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut crls = Vec::new();
        if let Some(pem) = &self.crl_pem {
            for der in rustls_pemfile::crls(&mut pem.as_bytes()) {
                let der = der.map_err(|_| TlsError::Pem("malformed CRL PEM"))?;
                let crl = webpki::OwnedCertRevocationList::from_der(der.as_ref())
                    .map_err(TlsError::Pki)?;
                crls.push(crl.into());
            }
            if crls.is_empty() {
                return Err(TlsError::Pem("no CRL found in crl-verify input"));
            }
        }
        Ok(PeerChecks {
            roots,
            crls,
            peer_role,
            remote_cert_tls: self.remote_cert_tls,
            verify_x509_name: self.verify_x509_name.clone(),
            algs: provider.signature_verification_algorithms,
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server-side config: requires a client certificate chaining to the CA (no name check),
/// applies `remote-cert-tls client`, `verify-x509-name` and the CRL, disables tickets and the
/// session cache, prefers the server's cipher order.
pub fn server_config(
    identity: &TlsIdentity,
    policy: &TlsPolicy,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let checks = policy.checks(RemoteCertTls::Client, &provider)?;
    let subjects = checks.root_subjects();
    let verifier = Arc::new(OpenVpnClientCertVerifier { checks, subjects });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&policy.versions()?)
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())
        .map_err(TlsError::Config)?;
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.ignore_client_order = true;
    cfg.max_early_data_size = 0;
    cfg.alpn_protocols.clear();
    Ok(Arc::new(cfg))
}

/// Client-side config: verifies the server chain against the CA without any host-name check,
/// applies `remote-cert-tls server`, `verify-x509-name` and the CRL; sends no SNI and never
/// resumes. `identity` is `None` for certificate-less clients (server-side
/// `verify-client-cert none`).
pub fn client_config(
    identity: Option<&TlsIdentity>,
    policy: &TlsPolicy,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let checks = policy.checks(RemoteCertTls::Server, &provider)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&policy.versions()?)
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OpenVpnServerCertVerifier(checks)));
    let mut cfg = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
            .map_err(TlsError::Config)?,
        None => builder.with_no_client_auth(),
    };
    cfg.enable_sni = false;
    cfg.resumption = Resumption::disabled();
    cfg.enable_early_data = false;
    cfg.alpn_protocols.clear();
    Ok(Arc::new(cfg))
}

/// One TLS session (one OpenVPN key id), driven by the caller: feed received ciphertext, drain
/// ciphertext to send, write and read plaintext messages.
pub struct TlsSession {
    conn: rustls::Connection,
    /// Plaintext decrypted but not yet handed out (drained eagerly so rustls' bounded
    /// plaintext buffer never fills up).
    plaintext: Vec<u8>,
    peer_closed: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("pending_plaintext", &self.plaintext.len())
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

impl TlsSession {
    pub fn new_server(cfg: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(cfg).map_err(TlsError::Tls)?;
        Ok(Self::wrap(conn.into()))
    }

    pub fn new_client(cfg: Arc<ClientConfig>) -> Result<Self, TlsError> {
        // rustls wants a name; with SNI off and our verifier ignoring it, it never matters.
        let name = ServerName::IpAddress(std::net::IpAddr::from([0u8, 0, 0, 0]).into());
        let conn = ClientConnection::new(cfg, name).map_err(TlsError::Tls)?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(conn: rustls::Connection) -> Self {
        TlsSession {
            conn,
            plaintext: Vec::new(),
            peer_closed: false,
        }
    }

    /// Processes ciphertext received from the peer (any split of the byte stream). On error
    /// the session is dead; call [`take_ciphertext`](Self::take_ciphertext) once more to send
    /// the alert rustls queued.
    pub fn feed_ciphertext(&mut self, bytes: &[u8]) -> Result<(), TlsError> {
        let mut rest = bytes;
        // Never call read_tls with an empty reader: rustls treats a 0-byte read as EOF.
        while !rest.is_empty() {
            let n = self.conn.read_tls(&mut rest).map_err(TlsError::Io)?;
            let state = self.conn.process_new_packets().map_err(TlsError::Tls)?;
            self.drain_plaintext()?;
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    fn drain_plaintext(&mut self) -> Result<(), TlsError> {
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(n) => self
                    .plaintext
                    .extend_from_slice(buf.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(TlsError::Io(e)),
            }
        }
    }

    /// Appends all ciphertext waiting to be sent to `out`.
    pub fn take_ciphertext(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail or stall.
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Whether [`take_ciphertext`](Self::take_ciphertext) would produce bytes.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queues one plaintext control message. Messages written before the handshake finishes
    /// are buffered and sent once it does. Each message goes out in its own record(s).
    pub fn write_message(&mut self, msg: &[u8]) -> Result<(), TlsError> {
        self.conn.writer().write_all(msg).map_err(TlsError::Io)
    }

    /// Appends all plaintext received so far to `out`; returns how many bytes were appended.
    pub fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        let n = self.plaintext.len();
        out.append(&mut self.plaintext);
        Ok(n)
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues a close_notify alert.
    pub fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// RFC 5705 / RFC 8446 exporter with *no* context, filling all of `out`.
    pub fn export_keying_material(&self, out: &mut [u8], label: &[u8]) -> Result<(), TlsError> {
        if self.conn.is_handshaking() {
            return Err(TlsError::Handshaking);
        }
        self.conn
            .export_keying_material(out, label, None)
            .map(|_| ())
            .map_err(TlsError::Tls)
    }

    /// The peer's leaf certificate (DER), once received.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.conn.peer_certificates().and_then(|c| c.first())
    }

    /// Leaf CN as OpenVPN reports it: the last CN attribute, control characters and DEL mapped
    /// to `_`, at most [`MAX_COMMON_NAME_LEN`] bytes.
    pub fn peer_common_name(&self) -> Option<String> {
        let info = x509::LeafInfo::parse(self.peer_certificate()?.as_ref()).ok()?;
        Some(sanitize_common_name(info.common_name()?))
    }

    /// SHA-256 of the peer's leaf certificate (`--peer-fingerprint`, status output).
    pub fn peer_cert_sha256(&self) -> Option<[u8; 32]> {
        let der = self.peer_certificate()?;
        let d = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        d.as_ref().try_into().ok()
    }

    /// `"TLSv1.3"` / `"TLSv1.2"` once negotiated (OpenSSL spelling, for logs).
    pub fn protocol_version(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => Some("unknown"),
        }
    }

    /// IANA-style cipher suite name once negotiated, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
    }
}

/// OpenVPN's common-name sanitising: bytes below 0x20 (incl. CR/LF) and DEL become `_`, then
/// the result is cut to [`MAX_COMMON_NAME_LEN`] bytes (on a character boundary).
pub fn sanitize_common_name(cn: &str) -> String {
    let mut s = x509::remap_name(cn);
    if s.len() > MAX_COMMON_NAME_LEN {
        let mut end = MAX_COMMON_NAME_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests;
