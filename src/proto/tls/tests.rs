//! Unit tests for the verifier pieces that need hand-made certificates (rcgen directly).

use super::verify::{check_common_name, CertCheckError};
use super::x509::LeafInfo;
use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca() -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "unit CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf with the given subject, KU and EKU lists; returns (cert PEM, key PEM, cert DER).
fn leaf(
    ca: &Ca,
    dn: &[(DnType, &str)],
    ku: Vec<KeyUsagePurpose>,
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String, Vec<u8>) {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for (t, v) in dn {
        p.distinguished_name.push(t.clone(), *v);
    }
    // rcgen only writes the extensions block when something other than KU forces it.
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = ku;
    p.extended_key_usages = eku;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn run(
    srv_cfg: Arc<ServerConfig>,
    cli_cfg: Arc<ClientConfig>,
) -> (
    Result<(), TlsError>,
    Result<(), TlsError>,
    TlsSession,
    TlsSession,
) {
    let mut s = TlsSession::new_server(srv_cfg).unwrap();
    let mut c = TlsSession::new_client(cli_cfg).unwrap();
    let (mut se, mut ce) = (Ok(()), Ok(()));
    for _ in 0..16 {
        let mut buf = Vec::new();
        c.take_ciphertext(&mut buf);
        if !buf.is_empty() && se.is_ok() {
            se = s.feed_ciphertext(&buf);
        }
        buf.clear();
        s.take_ciphertext(&mut buf);
        if !buf.is_empty() && ce.is_ok() {
            ce = c.feed_ciphertext(&buf);
        }
    }
    (se, ce, s, c)
}

fn server_side() -> (Ca, Arc<ServerConfig>, Arc<ClientConfig>) {
    let ca = ca();
    let (spem, skey, _) = leaf(
        &ca,
        &[(DnType::CommonName, "server")],
        vec![KeyUsagePurpose::DigitalSignature],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let (cpem, ckey, _) = leaf(
        &ca,
        &[(DnType::CommonName, "client")],
        vec![KeyUsagePurpose::DigitalSignature],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let ca_pem = ca.cert.pem();
    let srv = server_config(
        &TlsIdentity::from_pem(&spem, &skey).unwrap(),
        &TlsPolicy::new(ca_pem.clone()),
    )
    .unwrap();
    let cli = client_config(
        Some(&TlsIdentity::from_pem(&cpem, &ckey).unwrap()),
        &TlsPolicy::new(ca_pem),
    )
    .unwrap();
    (ca, srv, cli)
}

fn cert_check_error(e: &TlsError) -> Option<CertCheckError> {
    match e {
        TlsError::Tls(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
            o.0.downcast_ref::<CertCheckError>().cloned()
        }
        _ => None,
    }
}

#[test]
fn leaf_info_of_real_certificate() {
    let ca = ca();
    let (_, _, der) = leaf(
        &ca,
        &[
            (DnType::CountryName, "KG"),
            (DnType::OrganizationName, "OpenVPN-TEST"),
            (DnType::CommonName, "Test-Server"),
        ],
        vec![KeyUsagePurpose::DigitalSignature],
        vec![],
    );
    let info = LeafInfo::parse(&der).unwrap();
    assert!(info.has_key_usage);
    assert_eq!(info.common_name(), Some("Test-Server"));
    assert_eq!(
        info.subject_oneline(),
        "C=KG, O=OpenVPN-TEST, CN=Test-Server"
    );
    let (_, _, der) = leaf(&ca, &[(DnType::CommonName, "x")], vec![], vec![]);
    assert!(!LeafInfo::parse(&der).unwrap().has_key_usage);
    // Every truncation of a valid certificate is an error, never a panic.
    for n in 0..der.len() {
        assert!(LeafInfo::parse(&der[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn common_name_rules() {
    let ca = ca();
    let cn_of = |cn: &str| {
        let (_, _, der) = leaf(&ca, &[(DnType::CommonName, cn)], vec![], vec![]);
        check_common_name(&LeafInfo::parse(&der).unwrap())
    };
    assert_eq!(cn_of("alice\r\nx").unwrap(), "alice__x");
    assert_eq!(cn_of(&"a".repeat(64)).unwrap().len(), 64);
    assert_eq!(
        cn_of(&"a".repeat(65)),
        Err(CertCheckError::CommonNameTooLong)
    );
    assert_eq!(cn_of("a\0b"), Err(CertCheckError::CommonNameNul));
    let (_, _, der) = leaf(&ca, &[(DnType::OrganizationName, "o")], vec![], vec![]);
    assert_eq!(
        check_common_name(&LeafInfo::parse(&der).unwrap()),
        Err(CertCheckError::MissingCommonName)
    );
}

#[test]
fn sanitize() {
    assert_eq!(sanitize_common_name("a\nb\rc\x7f"), "a_b_c_");
    assert_eq!(sanitize_common_name("ünï"), "ünï");
    assert_eq!(sanitize_common_name(&"x".repeat(70)).len(), 64);
    // Cut on a char boundary: 63 ASCII + a 2-byte char must not split the char.
    let s = format!("{}é", "x".repeat(63));
    assert_eq!(sanitize_common_name(&s), "x".repeat(63));
}

#[test]
fn remote_cert_tls_requires_eku_and_ku() {
    let (ca, _, cli) = server_side();
    let ca_pem = ca.cert.pem();
    // Server cert without any EKU/KU: fine without remote-cert-tls, rejected with it.
    let (spem, skey, _) = leaf(&ca, &[(DnType::CommonName, "bare")], vec![], vec![]);
    let id = TlsIdentity::from_pem(&spem, &skey).unwrap();
    let srv = server_config(&id, &TlsPolicy::new(ca_pem.clone())).unwrap();
    let (se, ce, _, _) = run(srv.clone(), cli.clone());
    assert!(se.is_ok() && ce.is_ok(), "{se:?} {ce:?}");

    let client_id = {
        let (cpem, ckey, _) = leaf(
            &ca,
            &[(DnType::CommonName, "client")],
            vec![KeyUsagePurpose::DigitalSignature],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        TlsIdentity::from_pem(&cpem, &ckey).unwrap()
    };
    let mut strict = TlsPolicy::new(ca_pem.clone());
    strict.remote_cert_tls = Some(RemoteCertTls::Server);
    let cli_strict = client_config(Some(&client_id), &strict).unwrap();
    let (_, ce, _, _) = run(srv, cli_strict.clone());
    assert!(
        matches!(
            ce,
            Err(TlsError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose
            )))
        ),
        "{ce:?}"
    );

    // EKU serverAuth present but no keyUsage extension: remote-cert-tls rejects it.
    let (spem, skey, _) = leaf(
        &ca,
        &[(DnType::CommonName, "noku")],
        vec![],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let srv = server_config(
        &TlsIdentity::from_pem(&spem, &skey).unwrap(),
        &TlsPolicy::new(ca_pem),
    )
    .unwrap();
    let (_, ce, _, _) = run(srv, cli_strict);
    assert_eq!(
        ce.as_ref().err().and_then(cert_check_error),
        Some(CertCheckError::MissingKeyUsage),
        "{ce:?}"
    );
}

#[test]
fn default_handshake_and_names() {
    let (_, srv, cli) = server_side();
    let (se, ce, s, c) = run(srv, cli);
    assert!(se.is_ok() && ce.is_ok(), "{se:?} {ce:?}");
    assert_eq!(s.peer_common_name().as_deref(), Some("client"));
    assert_eq!(c.peer_common_name().as_deref(), Some("server"));
}

/// Our one-line subject must equal OpenSSL's rendering with the flags OpenVPN uses
/// (`x509_get_subject`), for a certificate OpenSSL itself produced (multi-valued RDN, UTF-8).
#[test]
fn subject_oneline_matches_openssl() {
    let openssl = std::path::Path::new("/usr/bin/openssl");
    if !openssl.exists() {
        eprintln!("SKIP: /usr/bin/openssl not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, crt) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
    let st = std::process::Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-nodes", "-utf8", "-multivalue-rdn", "-days", "2", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args([
            "-subj",
            "/C=KG/ST=NA/L=BISHKEK/O=OpenVPN-TEST/OU=a+OU=b/CN=Tëst-Server/emailAddress=me@example.org",
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let out = std::process::Command::new(openssl)
        .args(["x509", "-noout", "-subject", "-nameopt"])
        .arg("sep_comma_plus_space,sname,utf8,esc_ctrl")
        .arg("-in")
        .arg(&crt)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = text.trim_end().strip_prefix("subject=").unwrap();
    let pem = std::fs::read_to_string(&crt).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let info = LeafInfo::parse(der.as_ref()).unwrap();
    assert_eq!(info.subject_oneline(), expected);
    assert_eq!(info.common_name(), Some("Tëst-Server"));
}

proptest::proptest! {
    /// Arbitrary bytes and single-byte corruptions of a real certificate never panic the parser.
    #[test]
    fn parser_never_panics(junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                           pos in 0usize..4096, val in proptest::prelude::any::<u8>()) {
        let _ = LeafInfo::parse(&junk);
        static CERT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let der = CERT.get_or_init(|| {
            let ca = ca();
            leaf(&ca, &[(DnType::CommonName, "fuzz")], vec![KeyUsagePurpose::DigitalSignature],
                 vec![ExtendedKeyUsagePurpose::ClientAuth]).2
        });
        let mut m = der.clone();
        let i = pos % m.len();
        m[i] = val;
        if let Ok(info) = LeafInfo::parse(&m) {
            let _ = info.subject_oneline();
            let _ = check_common_name(&info);
        }
    }
}
