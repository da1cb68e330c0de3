//! In-memory handshakes between two `fwd::proto::tls::TlsSession`s using certificates from
//! `fwd::pki`: TLS 1.2 and 1.3, message exchange, EKM, and every rejection path OpenVPN has
//! (wrong CA, missing client cert, remote-cert-tls, verify-x509-name, CRL).

use fwd::pki::{Issued, Pki};
use fwd::proto::tls::{
    client_config, server_config, CertCheckError, RemoteCertTls, TlsError, TlsIdentity, TlsPolicy,
    TlsSession, TlsVersion, X509NameType,
};
use rustls::CertificateError;

const EKM_LABEL: &[u8] = b"EXPORTER-OpenVPN-datakeys";

struct World {
    pki: Pki,
    server: Issued,
    client: Issued,
}

fn world() -> World {
    let pki = Pki::new_ca("session test CA").unwrap();
    let server = pki.issue_server("vpn-server").unwrap();
    let client = pki.issue_client("alice").unwrap();
    World {
        pki,
        server,
        client,
    }
}

fn id(i: &Issued) -> TlsIdentity {
    TlsIdentity::from_pem(&i.cert_pem, &i.key_pem).unwrap()
}

struct Outcome {
    server: TlsSession,
    client: TlsSession,
    server_err: Option<TlsError>,
    client_err: Option<TlsError>,
}

/// Shuttles ciphertext until both sides are quiet or one failed (then the failing side's
/// alert is still delivered once). `chunk` splits every flight into pieces of that size.
fn pump(server: TlsSession, client: TlsSession, chunk: usize) -> Outcome {
    let mut o = Outcome {
        server,
        client,
        server_err: None,
        client_err: None,
    };
    pump_more(&mut o, chunk);
    o
}

fn pump_more(o: &mut Outcome, chunk: usize) {
    for _ in 0..32 {
        let mut moved = false;
        let mut buf = Vec::new();
        o.client.take_ciphertext(&mut buf);
        if !buf.is_empty() && o.server_err.is_none() {
            moved = true;
            for piece in buf.chunks(chunk) {
                if let Err(e) = o.server.feed_ciphertext(piece) {
                    o.server_err = Some(e);
                    break;
                }
            }
        }
        buf.clear();
        o.server.take_ciphertext(&mut buf);
        if !buf.is_empty() && o.client_err.is_none() {
            moved = true;
            for piece in buf.chunks(chunk) {
                if let Err(e) = o.client.feed_ciphertext(piece) {
                    o.client_err = Some(e);
                    break;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

fn connect(srv_policy: &TlsPolicy, cli_policy: &TlsPolicy, w: &World) -> Outcome {
    let s = TlsSession::new_server(server_config(&id(&w.server), srv_policy).unwrap()).unwrap();
    let c =
        TlsSession::new_client(client_config(Some(&id(&w.client)), cli_policy).unwrap()).unwrap();
    pump(s, c, usize::MAX)
}

fn assert_ok(o: &Outcome) {
    assert!(
        o.server_err.is_none() && o.client_err.is_none(),
        "server: {:?} client: {:?}",
        o.server_err,
        o.client_err
    );
    assert!(!o.server.is_handshaking() && !o.client.is_handshaking());
}

fn invalid_cert(e: &Option<TlsError>) -> Option<&CertificateError> {
    match e {
        Some(TlsError::Tls(rustls::Error::InvalidCertificate(ce))) => Some(ce),
        _ => None,
    }
}

fn check_error(e: &Option<TlsError>) -> Option<CertCheckError> {
    match invalid_cert(e)? {
        CertificateError::Other(o) => o.0.downcast_ref::<CertCheckError>().cloned(),
        _ => None,
    }
}

fn exchange_and_ekm(o: &mut Outcome) {
    o.client.write_message(b"hello from client\0").unwrap();
    o.server.write_message(b"hello from server\0").unwrap();
    pump_more(o, usize::MAX);
    assert_ok(o);
    let out = o;
    let mut got = Vec::new();
    assert_eq!(out.server.read_plaintext(&mut got).unwrap(), 18);
    assert_eq!(got, b"hello from client\0");
    got.clear();
    out.client.read_plaintext(&mut got).unwrap();
    assert_eq!(got, b"hello from server\0");

    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    out.server
        .export_keying_material(&mut a, EKM_LABEL)
        .unwrap();
    out.client
        .export_keying_material(&mut b, EKM_LABEL)
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, [0u8; 256]);
    let mut other = [0u8; 256];
    out.client
        .export_keying_material(&mut other, b"EXPORTER-OpenVPN-dynamic-tls-crypt")
        .unwrap();
    assert_ne!(a, other);
}

#[test]
fn tls13_handshake_messages_and_ekm() {
    let w = world();
    let p = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    let mut o = connect(&p, &p, &w);
    assert_ok(&o);
    assert_eq!(o.client.protocol_version(), Some("TLSv1.3"));
    assert_eq!(o.server.protocol_version(), Some("TLSv1.3"));
    assert!(o.client.cipher_suite().unwrap().starts_with("TLS13_"));
    // No session tickets: the server has nothing left to send after the handshake.
    assert!(!o.server.wants_write() && !o.client.wants_write());
    assert_eq!(o.server.peer_common_name().as_deref(), Some("alice"));
    assert_eq!(o.client.peer_common_name().as_deref(), Some("vpn-server"));
    let fp = o.client.peer_cert_sha256().unwrap();
    let der = rustls_pemfile::certs(&mut w.server.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        fp.as_slice(),
        ring::digest::digest(&ring::digest::SHA256, der.as_ref()).as_ref()
    );
    exchange_and_ekm(&mut o);
}

#[test]
fn tls12_only_handshake_messages_and_ekm() {
    let w = world();
    let mut p = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    p.tls_version_max = Some(TlsVersion::V1_2);
    // Server allows 1.3, client caps at 1.2: must settle on 1.2.
    let srv = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    let mut o = connect(&srv, &p, &w);
    assert_ok(&o);
    assert_eq!(o.client.protocol_version(), Some("TLSv1.2"));
    assert_eq!(o.server.protocol_version(), Some("TLSv1.2"));
    assert!(o
        .server
        .cipher_suite()
        .unwrap()
        .starts_with("TLS_ECDHE_ECDSA_"));
    exchange_and_ekm(&mut o);
}

#[test]
fn tls13_min_against_tls12_max_fails() {
    let w = world();
    let mut srv = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    srv.tls_version_min = Some(TlsVersion::V1_3);
    let mut cli = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    cli.tls_version_max = Some(TlsVersion::V1_2);
    let o = connect(&srv, &cli, &w);
    assert!(o.server_err.is_some() || o.client_err.is_some());
    let mut bad = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    bad.tls_version_min = Some(TlsVersion::V1_3);
    bad.tls_version_max = Some(TlsVersion::V1_2);
    assert!(matches!(
        client_config(None, &bad),
        Err(TlsError::VersionRange)
    ));
}

#[test]
fn byte_by_byte_stream_and_early_writes() {
    let w = world();
    let p = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    let s = TlsSession::new_server(server_config(&id(&w.server), &p).unwrap()).unwrap();
    let mut c = TlsSession::new_client(client_config(Some(&id(&w.client)), &p).unwrap()).unwrap();
    let mut ekm = [0u8; 16];
    assert!(matches!(
        c.export_keying_material(&mut ekm, EKM_LABEL),
        Err(TlsError::Handshaking)
    ));
    // Written before the handshake: buffered, delivered afterwards.
    c.write_message(b"early").unwrap();
    let mut o = pump(s, c, 1);
    assert_ok(&o);
    let mut got = Vec::new();
    o.server.read_plaintext(&mut got).unwrap();
    assert_eq!(got, b"early");
}

#[test]
fn one_record_per_message() {
    let w = world();
    let p = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    let mut o = connect(&p, &p, &w);
    assert_ok(&o);
    o.client.write_message(&[b'a'; 1400]).unwrap();
    o.client.write_message(b"PUSH_REQUEST\0").unwrap();
    let mut ct = Vec::new();
    o.client.take_ciphertext(&mut ct);
    // Walk the TLS record headers: exactly two application_data records.
    let mut records = 0;
    let mut rest = ct.as_slice();
    while rest.len() >= 5 {
        assert_eq!(rest[0], 23, "application_data");
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        rest = &rest[5 + len..];
        records += 1;
    }
    assert!(rest.is_empty());
    assert_eq!(records, 2);
}

#[test]
fn wrong_ca_rejected_both_ways() {
    let w = world();
    let other = Pki::new_ca("other CA").unwrap();
    // Client trusts another CA: server cert unknown issuer.
    let o = connect(
        &TlsPolicy::new(w.pki.ca_cert_pem.clone()),
        &TlsPolicy::new(other.ca_cert_pem.clone()),
        &w,
    );
    assert_eq!(
        invalid_cert(&o.client_err),
        Some(&CertificateError::UnknownIssuer),
        "{:?}",
        o.client_err
    );
    // Server trusts another CA: client cert unknown issuer.
    let o = connect(
        &TlsPolicy::new(other.ca_cert_pem.clone()),
        &TlsPolicy::new(w.pki.ca_cert_pem.clone()),
        &w,
    );
    assert_eq!(
        invalid_cert(&o.server_err),
        Some(&CertificateError::UnknownIssuer),
        "{:?}",
        o.server_err
    );
}

#[test]
fn client_without_certificate_rejected() {
    let w = world();
    let p = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    let s = TlsSession::new_server(server_config(&id(&w.server), &p).unwrap()).unwrap();
    let c = TlsSession::new_client(client_config(None, &p).unwrap()).unwrap();
    let o = pump(s, c, usize::MAX);
    assert!(
        matches!(
            o.server_err,
            Some(TlsError::Tls(rustls::Error::NoCertificatesPresented))
        ),
        "{:?}",
        o.server_err
    );
}

#[test]
fn server_cert_as_client_cert_rejected() {
    let w = world();
    let second_server = w.pki.issue_server("impostor").unwrap();
    let mut srv = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    srv.remote_cert_tls = Some(RemoteCertTls::Client);
    let cli = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    let run = |srv: &TlsPolicy| {
        let s = TlsSession::new_server(server_config(&id(&w.server), srv).unwrap()).unwrap();
        let c = TlsSession::new_client(client_config(Some(&id(&second_server)), &cli).unwrap())
            .unwrap();
        pump(s, c, usize::MAX)
    };
    let o = run(&srv);
    assert_eq!(
        invalid_cert(&o.server_err),
        Some(&CertificateError::InvalidPurpose),
        "{:?}",
        o.server_err
    );
    // Like OpenSSL's ssl_client purpose, an EKU without clientAuth fails even without
    // remote-cert-tls.
    let o = run(&TlsPolicy::new(w.pki.ca_cert_pem.clone()));
    assert_eq!(
        invalid_cert(&o.server_err),
        Some(&CertificateError::InvalidPurpose)
    );
    // And the legitimate client passes remote-cert-tls client / server.
    let mut cli_strict = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    cli_strict.remote_cert_tls = Some(RemoteCertTls::Server);
    assert_ok(&connect(&srv, &cli_strict, &w));
    // A client certificate presented as the server's is rejected by remote-cert-tls server.
    let s = TlsSession::new_server(
        server_config(&id(&w.client), &TlsPolicy::new(w.pki.ca_cert_pem.clone())).unwrap(),
    )
    .unwrap();
    let c =
        TlsSession::new_client(client_config(Some(&id(&w.client)), &cli_strict).unwrap()).unwrap();
    let o = pump(s, c, usize::MAX);
    assert_eq!(
        invalid_cert(&o.client_err),
        Some(&CertificateError::InvalidPurpose)
    );
}

#[test]
fn verify_x509_name() {
    let w = world();
    let srv = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    let with = |name: &str, kind| {
        let mut p = TlsPolicy::new(w.pki.ca_cert_pem.clone());
        p.verify_x509_name = Some((name.to_string(), kind));
        p
    };
    assert_ok(&connect(&srv, &with("vpn-server", X509NameType::Name), &w));
    assert_ok(&connect(&srv, &with("vpn-", X509NameType::NamePrefix), &w));
    assert_ok(&connect(
        &srv,
        &with("CN=vpn-server", X509NameType::Subject),
        &w,
    ));
    for (name, kind) in [
        ("vpn-serve", X509NameType::Name),
        ("vpn-server2", X509NameType::Name),
        ("server", X509NameType::NamePrefix),
        ("vpn-server", X509NameType::Subject),
    ] {
        let o = connect(&srv, &with(name, kind), &w);
        assert!(
            matches!(
                check_error(&o.client_err),
                Some(CertCheckError::X509NameMismatch { .. })
            ),
            "{name} {kind:?}: {:?}",
            o.client_err
        );
    }
    // Server side check of the client name too.
    let mut s = with("alice", X509NameType::Name);
    assert_ok(&connect(&s, &TlsPolicy::new(w.pki.ca_cert_pem.clone()), &w));
    s.verify_x509_name = Some(("bob".into(), X509NameType::Name));
    let o = connect(&s, &TlsPolicy::new(w.pki.ca_cert_pem.clone()), &w);
    assert!(matches!(
        check_error(&o.server_err),
        Some(CertCheckError::X509NameMismatch { .. })
    ));
}

#[test]
fn crl_rejects_revoked_client_only() {
    let w = world();
    let bob = w.pki.issue_client("bob").unwrap();
    let crl = w.pki.crl(&[&bob]).unwrap();
    let mut srv = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    srv.crl_pem = Some(crl.clone());
    let cli = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    // alice is not revoked.
    assert_ok(&connect(&srv, &cli, &w));
    // bob is.
    let s = TlsSession::new_server(server_config(&id(&w.server), &srv).unwrap()).unwrap();
    let c = TlsSession::new_client(client_config(Some(&id(&bob)), &cli).unwrap()).unwrap();
    let o = pump(s, c, usize::MAX);
    assert_eq!(
        invalid_cert(&o.server_err),
        Some(&CertificateError::Revoked)
    );
    // The client sees the server's alert.
    assert!(o.client_err.is_some());
    // A CRL from a different CA leaves the status unknown, which is fatal like OpenSSL's
    // "unable to get certificate CRL".
    let other = Pki::new_ca("other CA").unwrap();
    let mut srv2 = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    srv2.crl_pem = Some(other.crl(&[]).unwrap());
    let o = connect(&srv2, &cli, &w);
    assert_eq!(
        invalid_cert(&o.server_err),
        Some(&CertificateError::UnknownRevocationStatus)
    );
    // Garbage instead of a CRL is a config error, not a silent pass.
    let mut bad = TlsPolicy::new(w.pki.ca_cert_pem.clone());
    bad.crl_pem = Some("not a crl".into());
    assert!(server_config(&id(&w.server), &bad).is_err());
}

#[test]
fn bad_pem_inputs_are_errors() {
    assert!(matches!(
        TlsIdentity::from_pem("nothing", "nothing"),
        Err(TlsError::Pem(_))
    ));
    let w = world();
    assert!(TlsIdentity::from_pem(&w.client.cert_pem, "").is_err());
    assert!(matches!(
        client_config(None, &TlsPolicy::new("")),
        Err(TlsError::Pem(_))
    ));
}
