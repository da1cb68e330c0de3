//! OpenVPN-style peer certificate verification for rustls, on both sides of the handshake.
//!
//! OpenVPN never checks host names: trust is "chain to `--ca`" plus optional
//! `--remote-cert-tls`, `--verify-x509-name` and CRL checks (wire notes section 7). rustls'
//! stock verifiers insist on a server name, so both directions use [`PeerChecks`] here.
//! Invariants:
//! * the chain is validated by webpki against the configured CA(s) only;
//! * the default EKU rule mirrors OpenSSL's `ssl_server`/`ssl_client` purposes: the peer's EKU
//!   must include the expected purpose *if the certificate has an EKU extension*;
//!   `--remote-cert-tls` makes the EKU mandatory and additionally requires a keyUsage extension;
//! * with a CRL configured every certificate of the chain must have a known, non-revoked status
//!   and an unexpired CRL (OpenSSL `CRL_CHECK | CRL_CHECK_ALL`, as OpenVPN sets it);
//! * the leaf must carry a CN of at most 64 bytes without NUL, as OpenVPN requires for the
//!   username it derives from it.

use super::x509::{remap_name, LeafInfo, X509Error};
use super::{RemoteCertTls, X509NameType, MAX_COMMON_NAME_LEN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use std::sync::Arc;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

/// DER value of id-kp-serverAuth (1.3.6.1.5.5.7.3.1).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// DER value of id-kp-clientAuth (1.3.6.1.5.5.7.3.2).
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// An OpenVPN-specific certificate check failed. Carried inside
/// `rustls::CertificateError::Other` so callers can downcast it for logging.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertCheckError {
    #[error("peer certificate has no keyUsage extension (required by remote-cert-tls)")]
    MissingKeyUsage,
    #[error("peer certificate has no common name")]
    MissingCommonName,
    #[error("peer certificate common name is longer than {MAX_COMMON_NAME_LEN} bytes")]
    CommonNameTooLong,
    #[error("peer certificate common name contains a NUL byte")]
    CommonNameNul,
    #[error("verify-x509-name: expected {expected:?}, peer has {actual:?}")]
    X509NameMismatch { expected: String, actual: String },
    #[error("peer certificate could not be parsed: {0}")]
    Parse(#[from] X509Error),
}

/// The checks shared by the client- and server-side verifiers.
#[derive(Debug)]
pub(crate) struct PeerChecks {
    pub roots: Vec<TrustAnchor<'static>>,
    pub crls: Vec<CertRevocationList<'static>>,
    /// What the peer is supposed to be; selects the default EKU purpose.
    pub peer_role: RemoteCertTls,
    pub remote_cert_tls: Option<RemoteCertTls>,
    pub verify_x509_name: Option<(String, X509NameType)>,
    pub algs: WebPkiSupportedAlgorithms,
}

fn eku_oid(role: RemoteCertTls) -> &'static [u8] {
    match role {
        RemoteCertTls::Server => EKU_SERVER_AUTH,
        RemoteCertTls::Client => EKU_CLIENT_AUTH,
    }
}

fn other(e: CertCheckError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Maps webpki's verdict onto rustls' error type (which picks the TLS alert to send).
// The deprecated unit variants are still produced by some webpki code paths.
#[allow(deprecated)]
fn map_webpki(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let ce = match e {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => CertificateError::BadEncoding,
        W::CertExpired { .. } | W::InvalidCertValidity => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::CertRevoked => CertificateError::Revoked,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        W::CrlExpired { .. } => CertificateError::ExpiredRevocationList,
        W::InvalidSignatureForPublicKey
        | W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::BadSignature,
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        W::UnsupportedCriticalExtension => CertificateError::UnhandledCriticalExtension,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(ce)
}

impl PeerChecks {
    /// Root hints for the CertificateRequest (OpenSSL sends the `--ca` subjects too).
    pub fn root_subjects(&self) -> Vec<DistinguishedName> {
        self.roots
            .iter()
            .map(|ta| DistinguishedName::in_sequence(ta.subject.as_ref()))
            .collect()
    }

    /// Full OpenVPN verification of a peer chain at time `now`.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let cert = EndEntityCert::try_from(end_entity).map_err(map_webpki)?;
        let usage = match self.remote_cert_tls {
            Some(role) => KeyUsage::required(eku_oid(role)),
            None => KeyUsage::required_if_present(eku_oid(self.peer_role)),
        };
        let crl_refs: Vec<&CertRevocationList<'static>> = self.crls.iter().collect();
        let revocation = match RevocationOptionsBuilder::new(&crl_refs) {
            Ok(builder) => Some(
                builder
                    .with_depth(RevocationCheckDepth::Chain)
                    .with_status_policy(UnknownStatusPolicy::Deny)
                    .with_expiration_policy(ExpirationPolicy::Enforce)
                    .build(),
            ),
            Err(_) => None, // no CRL configured
        };
        cert.verify_for_usage(
            self.algs.all,
            &self.roots,
            intermediates,
            now,
            usage,
            revocation,
            None,
        )
        .map_err(map_webpki)?;

        let info =
            LeafInfo::parse(end_entity.as_ref()).map_err(|e| other(CertCheckError::Parse(e)))?;
        let cn = check_common_name(&info).map_err(other)?;
        if self.remote_cert_tls.is_some() && !info.has_key_usage {
            return Err(other(CertCheckError::MissingKeyUsage));
        }
        if let Some((expected, kind)) = &self.verify_x509_name {
            check_x509_name(&info, &cn, expected, *kind).map_err(other)?;
        }
        Ok(())
    }
}

/// The leaf's CN after OpenVPN's checks and remapping (see module invariants).
pub(crate) fn check_common_name(info: &LeafInfo) -> Result<String, CertCheckError> {
    let cn = info
        .common_name()
        .ok_or(CertCheckError::MissingCommonName)?;
    if cn.contains('\0') {
        return Err(CertCheckError::CommonNameNul);
    }
    if cn.len() > MAX_COMMON_NAME_LEN {
        return Err(CertCheckError::CommonNameTooLong);
    }
    Ok(remap_name(cn))
}

/// `--verify-x509-name NAME TYPE` against the remapped CN / subject, as OpenVPN compares them.
fn check_x509_name(
    info: &LeafInfo,
    cn: &str,
    expected: &str,
    kind: X509NameType,
) -> Result<(), CertCheckError> {
    let (ok, actual) = match kind {
        X509NameType::Name => (cn == expected, cn.to_string()),
        X509NameType::NamePrefix => (cn.starts_with(expected), cn.to_string()),
        X509NameType::Subject => {
            let mut subject = remap_name(&info.subject_oneline());
            // OpenVPN `string_replace_leading(subject, '-', '_')`.
            if subject.starts_with('-') {
                subject.replace_range(..1, "_");
            }
            (subject == expected, subject)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(CertCheckError::X509NameMismatch {
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Client side: verifies the server's certificate; the server name is ignored.
#[derive(Debug)]
pub(crate) struct OpenVpnServerCertVerifier(pub PeerChecks);

impl ServerCertVerifier for OpenVpnServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.verify(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}

/// Server side: requires and verifies a client certificate (`--verify-client-cert require`).
#[derive(Debug)]
pub(crate) struct OpenVpnClientCertVerifier {
    pub checks: PeerChecks,
    pub subjects: Vec<DistinguishedName>,
}

impl ClientCertVerifier for OpenVpnClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.checks.verify(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.checks.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.checks.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.checks.algs.supported_schemes()
    }
}
