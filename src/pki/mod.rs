//! `fwd init`: CA, server and client certificates, ready-to-use profiles.
//!
//! Owns certificate issuance (rcgen, ECDSA P-256) and the files `fwd init` writes. Invariants:
//! * every certificate is accepted by both rustls/webpki and OpenSSL-based OpenVPN 2.6: the CA
//!   has `basicConstraints CA:TRUE` + `keyCertSign, cRLSign`; server leaves have KU
//!   `digitalSignature, keyEncipherment` + EKU `serverAuth`; client leaves KU `digitalSignature`
//!   + EKU `clientAuth`; every certificate carries a CN;
//! * validity is `today - 1 day` (midnight UTC) .. `today + 10 years`, so clock skew of a day
//!   between the issuing host and peers does not break fresh certificates;
//! * serial numbers are 16 random bytes, positive, so CRLs can name them;
//! * private key material is written with mode 0600 and never overwritten (`init_dir` refuses a
//!   directory that already holds a CA key).

mod render;
mod static_key;

pub use render::{render_client_profile, render_server_conf, ServerConfParams};
pub use static_key::{render_static_key_v1, STATIC_KEY_LEN};

use rand::RngCore;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Days a freshly issued certificate (and a CRL) stays valid: ten years.
const VALIDITY_DAYS: i64 = 3653;
/// Length of the random serial numbers we assign.
const SERIAL_LEN: usize = 16;

/// Everything that can go wrong while issuing certificates or writing an `init` directory.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("{0} already exists; refusing to overwrite an existing PKI")]
    AlreadyInitialised(PathBuf),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("system clock is before 1970")]
    Clock,
}

/// A certificate authority held in memory: PEM text for writing out, plus the rcgen objects
/// needed to sign further certificates and CRLs.
pub struct Pki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    ca_cert: Certificate,
    ca_key: KeyPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the CA private key.
        f.debug_struct("Pki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .finish_non_exhaustive()
    }
}

/// One issued leaf certificate with its private key (PKCS#8 PEM) and its serial number
/// (big-endian, as written into the certificate, used for CRLs).
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// What kind of leaf certificate to issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeafKind {
    Server,
    Client,
}

impl Pki {
    /// Creates a new self-signed ECDSA P-256 CA with common name `cn`.
    pub fn new_ca(cn: &str) -> Result<Pki, PkiError> {
        check_cn(cn)?;
        let mut params = CertificateParams::default();
        set_validity(&mut params)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let ca_cert = params.self_signed(&ca_key)?;
        Ok(Pki {
            ca_cert_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            ca_cert,
            ca_key,
        })
    }

    /// Issues a server certificate (KU digitalSignature+keyEncipherment, EKU serverAuth).
    pub fn issue_server(&self, cn: &str) -> Result<Issued, PkiError> {
        self.issue(cn, LeafKind::Server)
    }

    /// Issues a client certificate (KU digitalSignature, EKU clientAuth).
    pub fn issue_client(&self, cn: &str) -> Result<Issued, PkiError> {
        self.issue(cn, LeafKind::Client)
    }

    fn issue(&self, cn: &str, kind: LeafKind) -> Result<Issued, PkiError> {
        check_cn(cn)?;
        let mut params = CertificateParams::default();
        set_validity(&mut params)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        // Explicit CA:FALSE: OpenSSL and webpki both accept it and it documents intent.
        params.is_ca = IsCa::ExplicitNoCa;
        match kind {
            LeafKind::Server => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            LeafKind::Client => {
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        // AKI lets OpenSSL pick the right issuer quickly when several CAs are loaded.
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: serial.to_bytes(),
        })
    }

    /// A CRL signed by this CA listing `revoked` (reason keyCompromise), valid for ten years.
    pub fn crl(&self, revoked: &[&Issued]) -> Result<String, PkiError> {
        let (from, to) = validity_window()?;
        let revoked_certs = revoked
            .iter()
            .map(|issued| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&issued.serial),
                revocation_time: rcgen::date_time_ymd(from.year, from.month, from.day),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(from.year, from.month, from.day),
            next_update: rcgen::date_time_ymd(to.year, to.month, to.day),
            crl_number: random_serial(),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.ca_cert, &self.ca_key)?.pem()?)
    }
}

/// Options of `fwd init`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// CN of the server certificate.
    pub server_cn: String,
    /// One client certificate + `<name>.ovpn` profile per entry; names are used as file names.
    pub clients: Vec<String>,
    /// Host name or address clients connect to (written into the profiles).
    pub remote: String,
    /// UDP port of the server.
    pub port: u16,
}

/// `fwd init`: creates `dir` (if needed) and writes a complete, ready-to-run PKI and configs.
///
/// Refuses to run when `dir/ca.key` already exists so an existing CA is never clobbered.
pub fn init_dir(dir: &Path, opts: InitOptions) -> Result<(), PkiError> {
    check_cn(&opts.server_cn)?;
    for client in &opts.clients {
        check_file_name(client)?;
    }
    if opts.remote.is_empty() || opts.remote.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(PkiError::InvalidName(
            opts.remote.clone(),
            "remote must be a single host name or address",
        ));
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PkiError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let ca_key_path = dir.join("ca.key");
    if ca_key_path.exists() {
        return Err(PkiError::AlreadyInitialised(ca_key_path));
    }

    let pki = Pki::new_ca(&format!("fwd CA {}", opts.server_cn))?;
    let server = pki.issue_server(&opts.server_cn)?;
    let mut rng = rand::thread_rng();
    let mut tls_crypt = [0u8; STATIC_KEY_LEN];
    rng.fill_bytes(&mut tls_crypt);
    let tls_crypt_text = render_static_key_v1(&tls_crypt);

    // A random /48 ULA (RFC 4193: fd00::/8 + 40-bit global ID), first /64 of it for clients.
    let mut global_id = [0u8; 5];
    rng.fill_bytes(&mut global_id);

    write_file(&ca_key_path, &pki.ca_key_pem, true)?;
    write_file(&dir.join("ca.crt"), &pki.ca_cert_pem, false)?;
    write_file(&dir.join("server.crt"), &server.cert_pem, false)?;
    write_file(&dir.join("server.key"), &server.key_pem, true)?;
    write_file(&dir.join("tls-crypt.key"), &tls_crypt_text, true)?;
    let ccd = dir.join("ccd");
    fs::create_dir_all(&ccd).map_err(io_err(&ccd))?;
    let conf = render_server_conf(&ServerConfParams {
        port: opts.port,
        ula_global_id: global_id,
    });
    write_file(&dir.join("server.conf"), &conf, false)?;

    for name in &opts.clients {
        let issued = pki.issue_client(name)?;
        write_file(&dir.join(format!("{name}.crt")), &issued.cert_pem, false)?;
        write_file(&dir.join(format!("{name}.key")), &issued.key_pem, true)?;
        let profile = render_client_profile(
            &opts.remote,
            opts.port,
            &pki.ca_cert_pem,
            &issued,
            &tls_crypt_text,
        );
        // The profile embeds the client key, so it gets the same protection.
        write_file(&dir.join(format!("{name}.ovpn")), &profile, true)?;
    }
    Ok(())
}

/// Writes a new file; `secret` files get mode 0600 from the moment they are created.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io_err = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    // `mode` only applies on creation; enforce it for pre-existing files too.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err)?;
    file.write_all(contents.as_bytes()).map_err(io_err)?;
    Ok(())
}

/// CNs must be what OpenVPN would pass through unchanged: 1..=64 bytes, no control characters.
fn check_cn(cn: &str) -> Result<(), PkiError> {
    if cn.is_empty() || cn.len() > 64 {
        return Err(PkiError::InvalidName(
            cn.to_string(),
            "common name must be 1..=64 bytes",
        ));
    }
    if cn.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(PkiError::InvalidName(
            cn.to_string(),
            "common name must not contain control characters",
        ));
    }
    Ok(())
}

/// Client names double as file names and CNs: keep them to a portable set.
fn check_file_name(name: &str) -> Result<(), PkiError> {
    check_cn(name)?;
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
        && !name.starts_with('.')
        && !name.starts_with('-');
    if !ok {
        return Err(PkiError::InvalidName(
            name.to_string(),
            "client names may only use A-Z a-z 0-9 - _ . @ and must not start with '.' or '-'",
        ));
    }
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; SERIAL_LEN];
    rand::thread_rng().fill_bytes(&mut bytes);
    // Positive and exactly SERIAL_LEN bytes in DER: clear the sign bit, force a non-zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// A calendar date (UTC), converted to rcgen's date type at the point of use so we do not need
/// to depend on the `time` crate ourselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ymd {
    year: i32,
    month: u8,
    day: u8,
}

impl Ymd {
    /// The date `days` days after 1970-01-01 (proleptic Gregorian, H. Hinnant's algorithm).
    fn from_days_since_epoch(days: i64) -> Ymd {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
        let mp = (5 * doy + 2) / 153; // [0, 11]
        let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
        let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
        let year = yoe + era * 400 + i64::from(month <= 2);
        Ymd {
            // Any date this code produces (1970 ± a few centuries) fits an i32 year.
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }
}

/// `(yesterday, today + 10 years)` as UTC dates; certificates start/end at midnight.
fn validity_window() -> Result<(Ymd, Ymd), PkiError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Clock)?
        .as_secs();
    let today = i64::try_from(secs / 86_400).map_err(|_| PkiError::Clock)?;
    Ok((
        Ymd::from_days_since_epoch(today - 1),
        Ymd::from_days_since_epoch(today + VALIDITY_DAYS),
    ))
}

/// Sets `not_before`/`not_after` of `params` to [`validity_window`].
fn set_validity(params: &mut CertificateParams) -> Result<(), PkiError> {
    let (from, to) = validity_window()?;
    params.not_before = rcgen::date_time_ymd(from.year, from.month, from.day);
    params.not_after = rcgen::date_time_ymd(to.year, to.month, to.day);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let d = |days| Ymd::from_days_since_epoch(days);
        assert_eq!(
            d(0),
            Ymd {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            d(-1),
            Ymd {
                year: 1969,
                month: 12,
                day: 31
            }
        );
        // 2000-02-29 (leap day of a /400 year) is day 11016.
        assert_eq!(
            d(11_016),
            Ymd {
                year: 2000,
                month: 2,
                day: 29
            }
        );
        assert_eq!(
            d(11_017),
            Ymd {
                year: 2000,
                month: 3,
                day: 1
            }
        );
        // 2024-12-31 is day 20088.
        assert_eq!(
            d(20_088),
            Ymd {
                year: 2024,
                month: 12,
                day: 31
            }
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_cn("").is_err());
        assert!(check_cn(&"a".repeat(65)).is_err());
        assert!(check_cn(&"a".repeat(64)).is_ok());
        assert!(check_cn("bad\nname").is_err());
        assert!(check_file_name("alice").is_ok());
        assert!(check_file_name("../etc").is_err());
        assert!(check_file_name("-x").is_err());
        assert!(check_file_name("a b").is_err());
    }

    #[test]
    fn issue_and_crl() {
        let pki = Pki::new_ca("Test CA").unwrap();
        assert!(pki.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.ca_key_pem.contains("PRIVATE KEY"));
        let s = pki.issue_server("server").unwrap();
        let c = pki.issue_client("alice").unwrap();
        assert_eq!(s.serial.len(), SERIAL_LEN);
        assert_ne!(s.serial, c.serial);
        assert!(s.serial[0] & 0x80 == 0);
        let crl = pki.crl(&[&c]).unwrap();
        assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
    }
}
