//! Key-method 2 messages and data-channel key derivation (wire spec §8–§10).
//!
//! Owns: the first plaintext message each side writes into every TLS session (one per key_id),
//! the OCC options string fwd announces, the legacy OpenVPN PRF (TLS 1.0 PRF with OpenVPN's
//! labels and both session ids) and the TLS-EKM derivation, both producing a
//! [`KeyBlock`](super::data::KeyBlock).
//!
//! Invariants:
//! * Strings are `u16 length (including the NUL) || bytes || NUL`; an absent string is `00 00`
//!   and a reader also accepts `00 01 00` (as an empty string).
//! * The server's message has no 48-byte pre_master; only the client's pre_master is secret
//!   input to the PRF.
//! * Parsing never panics and never trusts a length field beyond the buffer.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use sha1::Sha1;

use super::data::{KeyBlock, KEY_BLOCK_LEN};

/// Key method this implementation speaks (the low 4 bits of the method byte).
pub const KEY_METHOD_2: u8 = 2;
/// Capacity of the OCC options string including its NUL (OpenVPN `TLS_OPTIONS_LEN`).
pub const OPTIONS_MAX: usize = 512;
/// Username/password capacity of a stock 2.6 server (longer → AUTH_FAILED, not a protocol
/// error; builds with PKCS#11 allow 4096). Not enforced by the parser.
pub const USER_PASS_MAX: usize = 128;
/// TLS exporter label of the 2.6 `tls-ekm` key derivation (no context).
pub const EKM_LABEL: &str = "EXPORTER-OpenVPN-datakeys";
/// PRF label of the master secret.
const MASTER_LABEL: &[u8] = b"OpenVPN master secret";
/// PRF label of the key expansion.
const EXPANSION_LABEL: &[u8] = b"OpenVPN key expansion";

/// Errors reading or writing key-method 2 messages and deriving keys.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The message ended inside a field.
    #[error("key-method 2 message truncated")]
    Truncated,
    /// Key method byte's low 4 bits are not 2.
    #[error("unsupported key method/flags {0:#04x}")]
    BadKeyMethod(u8),
    /// The mandatory options string is absent.
    #[error("missing OCC options string")]
    MissingOptions,
    /// Options string longer than 511 characters.
    #[error("OCC options string longer than {OPTIONS_MAX} bytes including NUL")]
    OptionsTooLong,
    /// A string longer than a u16 length can describe.
    #[error("{0} is too long to encode")]
    TooLong(&'static str),
    /// A string to be written contains a NUL byte.
    #[error("{0} contains a NUL byte")]
    EmbeddedNul(&'static str),
    /// A received string is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// PRF derivation needs the client's pre_master.
    #[error("client key-method 2 message has no pre_master")]
    MissingPreMaster,
}

/// The key-method 2 message (§8.1 client → server, §8.2 server → client).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMethod2 {
    /// Client only: 48 random bytes, secret input of the legacy PRF.
    pub pre_master: Option<[u8; 48]>,
    /// Random seed for the PRF master secret.
    pub random1: [u8; 32],
    /// Random seed for the PRF key expansion.
    pub random2: [u8; 32],
    /// OCC options string (without NUL).
    pub options: String,
    /// Client username (`auth-user-pass`), `None` = absent.
    pub username: Option<String>,
    /// Client password or auth-token, `None` = absent.
    pub password: Option<String>,
    /// Client peer-info (`IV_...=...\n` lines); a 2.6 server sends none.
    pub peer_info: Option<String>,
}

impl std::fmt::Debug for KeyMethod2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets (pre_master, randoms, password) are never printed.
        f.debug_struct("KeyMethod2")
            .field("client", &self.pre_master.is_some())
            .field("options", &self.options)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("peer_info", &self.peer_info)
            .finish_non_exhaustive()
    }
}

fn put_string(out: &mut Vec<u8>, s: Option<&str>, what: &'static str) -> Result<(), KeyError> {
    let Some(s) = s else {
        out.extend_from_slice(&[0, 0]);
        return Ok(());
    };
    if s.as_bytes().contains(&0) {
        return Err(KeyError::EmbeddedNul(what));
    }
    let len = u16::try_from(s.len() + 1).map_err(|_| KeyError::TooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

/// Byte reader that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KeyError> {
        if self.0.len() < n {
            return Err(KeyError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], KeyError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A key-method 2 string; `Ok(None)` for `00 00` or when the message ends before the
    /// length field (old peers omit trailing fields).
    fn string(&mut self, what: &'static str) -> Result<Option<String>, KeyError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let len = u16::from_be_bytes(self.array::<2>()?) as usize;
        if len == 0 {
            return Ok(None);
        }
        let raw = self.take(len)?;
        // C semantics: the last byte is the terminator whatever it is; the string ends at the
        // first NUL.
        let body = raw.get(..len - 1).unwrap_or_default();
        let body = body.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8(body.to_vec())
            .map(Some)
            .map_err(|_| KeyError::NotUtf8(what))
    }
}

impl KeyMethod2 {
    /// Fresh random material; `client` adds the pre_master. No username/password/peer-info.
    pub fn random(rng: &mut dyn RngCore, client: bool, options: String) -> Self {
        let pre_master = client.then(|| {
            let mut p = [0u8; 48];
            rng.fill_bytes(&mut p);
            p
        });
        let mut random1 = [0u8; 32];
        let mut random2 = [0u8; 32];
        rng.fill_bytes(&mut random1);
        rng.fill_bytes(&mut random2);
        KeyMethod2 {
            pre_master,
            random1,
            random2,
            options,
            username: None,
            password: None,
            peer_info: None,
        }
    }

    /// Serialises the message. Fails on strings with NUL bytes, an options string longer than
    /// 511 bytes or a string longer than a u16 allows.
    pub fn encode(&self) -> Result<Vec<u8>, KeyError> {
        if self.options.len() + 1 > OPTIONS_MAX {
            return Err(KeyError::OptionsTooLong);
        }
        let mut out = Vec::with_capacity(
            4 + 1
                + 112
                + 2
                + self.options.len()
                + 1
                + 6
                + self.username.as_ref().map_or(0, |s| s.len() + 1)
                + self.password.as_ref().map_or(0, |s| s.len() + 1)
                + self.peer_info.as_ref().map_or(0, |s| s.len() + 1),
        );
        out.extend_from_slice(&[0, 0, 0, 0, KEY_METHOD_2]);
        if let Some(p) = &self.pre_master {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&self.random1);
        out.extend_from_slice(&self.random2);
        put_string(&mut out, Some(&self.options), "options string")?;
        put_string(&mut out, self.username.as_deref(), "username")?;
        put_string(&mut out, self.password.as_deref(), "password")?;
        put_string(&mut out, self.peer_info.as_deref(), "peer-info")?;
        Ok(out)
    }

    /// Parses a received message; `from_client` = the sender is the client (message carries
    /// the pre_master). Trailing username/password/peer-info may be missing; bytes after the
    /// peer-info are ignored (as OpenVPN does).
    pub fn parse(b: &[u8], from_client: bool) -> Result<Self, KeyError> {
        let mut r = Reader(b);
        // Leading u32 is ignored by OpenVPN (always written as zero).
        r.take(4)?;
        let [method] = r.array::<1>()?;
        if method & 0x0F != KEY_METHOD_2 {
            return Err(KeyError::BadKeyMethod(method));
        }
        let pre_master = if from_client {
            Some(r.array::<48>()?)
        } else {
            None
        };
        let random1 = r.array::<32>()?;
        let random2 = r.array::<32>()?;
        if let Some(len) = r.0.first_chunk::<2>() {
            if usize::from(u16::from_be_bytes(*len)) > OPTIONS_MAX {
                return Err(KeyError::OptionsTooLong);
            }
        }
        let options = r
            .string("options string")?
            .ok_or(KeyError::MissingOptions)?;
        let username = r.string("username")?;
        let password = r.string("password")?;
        let peer_info = r.string("peer-info")?;
        Ok(KeyMethod2 {
            pre_master,
            random1,
            random2,
            options,
            username,
            password,
            peer_info,
        })
    }
}

/// `P_hash(secret, seed)` XORed into `out` (RFC 2246 §5).
fn p_hash_xor<M: Mac + KeyInit + Clone>(secret: &[u8], seed: &[u8], out: &mut [u8]) {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(base) = <M as KeyInit>::new_from_slice(secret) else {
        return;
    };
    let mut a = {
        let mut m = base.clone();
        m.update(seed);
        m.finalize().into_bytes()
    };
    for chunk in out.chunks_mut(a.len()) {
        let mut m = base.clone();
        m.update(&a);
        m.update(seed);
        let block = m.finalize().into_bytes();
        for (o, b) in chunk.iter_mut().zip(block.iter()) {
            *o ^= b;
        }
        let mut m = base.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
}

/// TLS 1.0/1.1 PRF as OpenVPN uses it: `P_MD5(S1, seed) XOR P_SHA1(S2, seed)`, S1/S2 the
/// first/second half of `secret` (sharing the middle byte if the length is odd). No label is
/// added; OpenVPN puts its label into `seed`. Fills all of `out`.
pub fn tls1_prf(secret: &[u8], seed: &[u8], out: &mut [u8]) {
    let half = secret.len().div_ceil(2);
    let s1 = secret.get(..half).unwrap_or_default();
    let s2 = secret.get(secret.len() - half..).unwrap_or_default();
    out.fill(0);
    p_hash_xor::<Hmac<Md5>>(s1, seed, out);
    p_hash_xor::<Hmac<Sha1>>(s2, seed, out);
}

/// Legacy key derivation (§10.1) from both key-method 2 messages of the current key_id and
/// the two control-channel session ids.
pub fn prf_key_block(
    client: &KeyMethod2,
    server: &KeyMethod2,
    client_sid: [u8; 8],
    server_sid: [u8; 8],
) -> Result<KeyBlock, KeyError> {
    let pre_master = client
        .pre_master
        .as_ref()
        .ok_or(KeyError::MissingPreMaster)?;
    let mut seed = Vec::with_capacity(MASTER_LABEL.len() + 64 + 16);
    seed.extend_from_slice(MASTER_LABEL);
    seed.extend_from_slice(&client.random1);
    seed.extend_from_slice(&server.random1);
    let mut master = [0u8; 48];
    tls1_prf(pre_master, &seed, &mut master);

    seed.clear();
    seed.extend_from_slice(EXPANSION_LABEL);
    seed.extend_from_slice(&client.random2);
    seed.extend_from_slice(&server.random2);
    seed.extend_from_slice(&client_sid);
    seed.extend_from_slice(&server_sid);
    let mut block = KeyBlock::new([0u8; KEY_BLOCK_LEN]);
    tls1_prf(&master, &seed, block.as_mut_bytes());
    master.fill(0);
    Ok(block)
}

/// Modern key derivation (§10.2). `export` must fill its buffer with the TLS exporter output
/// for label [`EKM_LABEL`] and **no** context, e.g. with rustls:
/// `|out| conn.export_keying_material(out, EKM_LABEL.as_bytes(), None).map(|_| ())`.
pub fn ekm_key_block<E>(export: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<KeyBlock, E> {
    let mut block = KeyBlock::new([0u8; KEY_BLOCK_LEN]);
    export(block.as_mut_bytes())?;
    Ok(block)
}

/// Transport named in the OCC string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OccProto {
    /// `proto UDPv4` (also used over IPv6).
    Udp,
    /// `proto TCPv4_CLIENT`.
    TcpClient,
    /// `proto TCPv4_SERVER`.
    TcpServer,
}

/// The OCC options string a default OpenVPN 2.6 peer sends (no `--cipher`, default
/// `--auth SHA1`, tun device). Captured from openvpn 2.6.14 with `tun-mtu 1500`:
/// `V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-client`.
/// The receiver only compares it for warnings and reads `cipher`, so the exact link-mtu for
/// TCP (taken as +43, UNSURE) does not matter for interoperability.
pub fn options_string(role_client: bool, tun_mtu: u16, proto: OccProto) -> String {
    let (proto_name, extra) = match proto {
        OccProto::Udp => ("UDPv4", 41u32),
        OccProto::TcpClient => ("TCPv4_CLIENT", 43),
        OccProto::TcpServer => ("TCPv4_SERVER", 43),
    };
    format!(
        "V4,dev-type tun,link-mtu {},tun-mtu {},proto {},auth SHA1,keysize 128,key-method 2,{}",
        u32::from(tun_mtu) + extra,
        tun_mtu,
        proto_name,
        if role_client {
            "tls-client"
        } else {
            "tls-server"
        }
    )
}

/// Value of a `name value` item of an OCC options string (`occ_option(s, "cipher")`);
/// `Some("")` for a flag item without value, `None` if absent.
pub fn occ_option<'a>(options: &'a str, name: &str) -> Option<&'a str> {
    options.split(',').find_map(|item| {
        let (k, v) = item.split_once(' ').unwrap_or((item, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::data::{data_keys, Cipher, Side};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect::<String>().replace(':', "");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        hex(s).try_into().unwrap()
    }

    #[test]
    fn prf_openvpn_self_test_vector() {
        let mut out = [0u8; 8];
        tls1_prf(b"tls1-prf-test-secret", b"tls1-prf-test", &mut out);
        assert_eq!(out, [0x71, 0x44, 0xfe, 0x25, 0x40, 0x73, 0x75, 0x95]);
    }

    /// Vector from `openssl kdf -keylen 100 -kdfopt digest:MD5-SHA1 ... TLS1-PRF` with a
    /// 41-byte (odd) secret: exercises the shared middle byte and several hash blocks.
    #[test]
    fn prf_openssl_vector_odd_secret() {
        let secret: Vec<u8> = (1u8..=0x29).collect();
        let mut out = [0u8; 100];
        tls1_prf(&secret, b"odd secret length seed", &mut out);
        let expect = hex(
            "68:45:C4:48:AD:36:DB:7A:65:27:BB:D3:43:24:94:EB:87:55:B3:85:CC:E8:64:B1:00:6F:37:BE:\
             6F:93:93:49:46:0B:1C:94:6F:79:28:AB:C9:3B:E3:55:92:F5:7D:7C:82:60:F1:08:8E:B0:09:EA:\
             D7:A2:4F:7E:27:F4:A6:AF:31:AC:72:0F:85:61:93:FC:CB:DF:01:64:88:91:74:4D:62:59:F7:D2:\
             D6:4E:05:78:31:B7:79:83:C3:47:A6:F9:AE:E3:45:24",
        );
        assert_eq!(&out[..], &expect[..]);
    }

    /// Independent PRF: HMAC-MD5 built by hand from the md5 digest, HMAC-SHA1 from ring.
    fn reference_prf(secret: &[u8], seed: &[u8], n: usize) -> Vec<u8> {
        use md5::Digest;
        fn hmac_md5(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut k = [0u8; 64];
            if key.len() > 64 {
                k[..16].copy_from_slice(&Md5::digest(key));
            } else {
                k[..key.len()].copy_from_slice(key);
            }
            let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
            let inner = Md5::new().chain_update(&ipad).chain_update(data).finalize();
            Md5::new()
                .chain_update(&opad)
                .chain_update(inner)
                .finalize()
                .to_vec()
        }
        fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            ring::hmac::sign(&k, data).as_ref().to_vec()
        }
        fn p(h: fn(&[u8], &[u8]) -> Vec<u8>, s: &[u8], seed: &[u8], n: usize) -> Vec<u8> {
            let mut out = Vec::new();
            let mut a = h(s, seed);
            while out.len() < n {
                out.extend(h(s, &[&a[..], seed].concat()));
                a = h(s, &a);
            }
            out.truncate(n);
            out
        }
        let l = secret.len();
        let s1 = &secret[..l.div_ceil(2)];
        let s2 = &secret[l / 2..];
        p(hmac_md5, s1, seed, n)
            .iter()
            .zip(p(hmac_sha1, s2, seed, n))
            .map(|(a, b)| a ^ b)
            .collect()
    }

    #[test]
    fn prf_matches_independent_implementation() {
        for (sl, n) in [
            (0usize, 1usize),
            (1, 17),
            (48, 48),
            (48, 256),
            (70, 300),
            (129, 33),
        ] {
            let secret: Vec<u8> = (0..sl).map(|i| (i * 31 + 7) as u8).collect();
            let seed = b"OpenVPN key expansion some seed bytes";
            let mut out = vec![0u8; n];
            tls1_prf(&secret, seed, &mut out);
            assert_eq!(out, reference_prf(&secret, seed, n), "secret {sl} out {n}");
        }
    }

    fn vector_messages() -> (KeyMethod2, KeyMethod2, [u8; 8], [u8; 8]) {
        // tests/vectors/keys/openvpn-2.6.14-prf.txt
        let c = KeyMethod2 {
            pre_master: Some(arr(
                "5833727f 9e0b5317 5748f531 bdb50240 0cd679c7 860049e2 20a17b64 5960d480 \
                 1b8d8995 ad3a620e a86a6075 de7bebd8",
            )),
            random1: arr("58312852 224321a3 ea87c735 7c5a31fb 69ec93a7 8bb8056a a9d4a741 ae0e4b26"),
            random2: arr("c0ba5b44 c47d5ee0 d7517d3d 96d405ab a8c2eb50 04d6479c d195351e a7e5d220"),
            options: options_string(true, 1500, OccProto::Udp),
            username: None,
            password: None,
            peer_info: None,
        };
        let s = KeyMethod2 {
            pre_master: None,
            random1: arr("6fdc666c d454d952 8ad785c0 665875ae 316ba055 10cac689 c4ce07ee 256134e8"),
            random2: arr("e147de96 958b9784 8c351bfc 3cb8c68c e6a6651e 96497fb7 f7d89ceb 15ac9bdd"),
            options: options_string(false, 1500, OccProto::Udp),
            username: None,
            password: None,
            peer_info: None,
        };
        (c, s, arr("77866612 6b98e2ba"), arr("ef65dec4 c9761e50"))
    }

    /// Key block captured from the real openvpn 2.6.14 client (PRF path): the printed
    /// "Master Encrypt"/"Master Decrypt" AES-256-GCM keys are keyblock[0..32] and [128..160].
    #[test]
    fn prf_key_block_matches_openvpn_binary() {
        let (c, s, csid, ssid) = vector_messages();
        let kb = prf_key_block(&c, &s, csid, ssid).unwrap();
        let b = kb.as_bytes();
        assert_eq!(
            &b[0..32],
            &hex("6ffd8e08 561dd032 6b13fd72 7b95c5ca ea4aca34 4616f9b8 aa801619 6b27f9f4")[..]
        );
        assert_eq!(
            &b[128..160],
            &hex("52c16dcf 205101c5 6de44667 6132ceab e57bcb7c daedefb5 70c6580c 275ea4a1")[..]
        );
        // And the whole 256 bytes against the independent PRF.
        let mut seed = b"OpenVPN master secret".to_vec();
        seed.extend_from_slice(&c.random1);
        seed.extend_from_slice(&s.random1);
        let master = reference_prf(&c.pre_master.unwrap(), &seed, 48);
        let mut seed = b"OpenVPN key expansion".to_vec();
        for part in [&c.random2[..], &s.random2, &csid, &ssid] {
            seed.extend_from_slice(part);
        }
        assert_eq!(&b[..], &reference_prf(&master, &seed, 256)[..]);
        // Both sides build working keys from it.
        assert!(data_keys(Cipher::Aes256Gcm, &kb, Side::Client).is_ok());
        // Swapped session ids give a different block (client sid first matters).
        let kb2 = prf_key_block(&c, &s, ssid, csid).unwrap();
        assert_ne!(kb2.as_bytes(), kb.as_bytes());
        assert_eq!(
            prf_key_block(&s, &c, csid, ssid).err(),
            Some(KeyError::MissingPreMaster)
        );
    }

    #[test]
    fn ekm_block_uses_exporter_output() {
        let kb = ekm_key_block(|out: &mut [u8]| {
            assert_eq!(out.len(), 256);
            out.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(kb.as_bytes()[255], 255);
        assert_eq!(ekm_key_block(|_| Err::<(), _>("no")).err(), Some("no"));
    }

    fn rustls_pair(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (rustls::ClientConnection, rustls::ServerConnection) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use std::sync::Arc;
        let ck = rcgen::generate_simple_self_signed(vec!["fwd.test".into()]).unwrap();
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let scfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let ccfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut c = rustls::ClientConnection::new(
            Arc::new(ccfg),
            ServerName::try_from("fwd.test").unwrap(),
        )
        .unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(scfg)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        (c, s)
    }

    /// EKM through real rustls sessions: both ends derive the same block, for TLS 1.3 and 1.2.
    #[test]
    fn ekm_with_rustls_both_ends_agree() {
        for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (c, s) = rustls_pair(v);
            let kc = ekm_key_block(|o| {
                c.export_keying_material(o, EKM_LABEL.as_bytes(), None)
                    .map(|_| ())
            })
            .unwrap();
            let ks = ekm_key_block(|o| {
                s.export_keying_material(o, EKM_LABEL.as_bytes(), None)
                    .map(|_| ())
            })
            .unwrap();
            assert_eq!(kc.as_bytes(), ks.as_bytes());
            assert!(data_keys(Cipher::ChaCha20Poly1305, &kc, Side::Server).is_ok());
            // TLS 1.2 (RFC 5705): "no context" differs from an empty context (spec §17.8);
            // in TLS 1.3 they coincide.
            let ke = ekm_key_block(|o| {
                c.export_keying_material(o, EKM_LABEL.as_bytes(), Some(b""))
                    .map(|_| ())
            })
            .unwrap();
            if std::ptr::eq(v, &rustls::version::TLS12) {
                assert_ne!(ke.as_bytes(), kc.as_bytes());
            } else {
                assert_eq!(ke.as_bytes(), kc.as_bytes());
            }
        }
    }

    #[test]
    fn worked_example_sizes_client_and_server() {
        let options = options_string(true, 1500, OccProto::Udp);
        let peer = "IV_VER=2.6.14\nIV_PLAT=linux\n".to_string();
        let mut c = KeyMethod2::random(
            &mut rand::rngs::mock::StepRng::new(1, 1),
            true,
            options.clone(),
        );
        c.username = Some("alice".into());
        c.password = Some("secret".into());
        c.peer_info = Some(peer.clone());
        let b = c.encode().unwrap();
        let l = options.len() + 1;
        let p = peer.len() + 1;
        assert_eq!(b.len(), 4 + 1 + 112 + (2 + l) + 8 + 9 + (2 + p));
        assert_eq!(&b[..5], &[0, 0, 0, 0, 2]);
        let at = 117;
        assert_eq!(&b[at..at + 2], &(l as u16).to_be_bytes());
        assert_eq!(&b[at + 2..at + 4], b"V4");
        assert_eq!(b[at + 1 + l], 0);
        let u = at + 2 + l;
        assert_eq!(&b[u..u + 8], &[0, 6, b'a', b'l', b'i', b'c', b'e', 0]);
        assert_eq!(
            &b[u + 8..u + 17],
            &[0, 7, b's', b'e', b'c', b'r', b'e', b't', 0]
        );
        assert_eq!(*b.last().unwrap(), 0);
        assert_eq!(KeyMethod2::parse(&b, true).unwrap(), c);

        let s = KeyMethod2::random(
            &mut rand::rngs::mock::StepRng::new(9, 3),
            false,
            options.clone(),
        );
        let b = s.encode().unwrap();
        assert_eq!(b.len(), 4 + 1 + 64 + 2 + l + 6);
        assert_eq!(&b[b.len() - 6..], &[0; 6]);
        let back = KeyMethod2::parse(&b, false).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.peer_info, None);
    }

    #[test]
    fn parse_edge_cases() {
        let s = KeyMethod2 {
            pre_master: None,
            random1: [1; 32],
            random2: [2; 32],
            options: "V4".into(),
            username: None,
            password: None,
            peer_info: None,
        };
        let full = s.encode().unwrap();
        // Every strict prefix up to the end of the options string is an error; after it the
        // optional fields may be missing.
        let opt_end = 4 + 1 + 64 + 2 + 3;
        for n in 0..opt_end {
            assert!(KeyMethod2::parse(&full[..n], false).is_err(), "prefix {n}");
        }
        assert_eq!(KeyMethod2::parse(&full[..opt_end], false).unwrap(), s);
        // A length that points past the end.
        let mut bad = full[..opt_end].to_vec();
        bad.extend_from_slice(&[0, 9, b'x']);
        assert_eq!(KeyMethod2::parse(&bad, false), Err(KeyError::Truncated));
        // "00 01 00" is read as an empty string.
        let mut e = full[..opt_end].to_vec();
        e.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0]);
        let p = KeyMethod2::parse(&e, false).unwrap();
        assert_eq!(p.username.as_deref(), Some(""));
        assert_eq!(p.password, None);
        // Key method flags in the high bits are ignored; other methods refused.
        let mut m = full.clone();
        m[4] = 0x12;
        assert!(KeyMethod2::parse(&m, false).is_ok());
        m[4] = 0x01;
        assert_eq!(KeyMethod2::parse(&m, false), Err(KeyError::BadKeyMethod(1)));
        // Missing options string.
        let mut m = full[..69].to_vec();
        m.extend_from_slice(&[0, 0]);
        assert_eq!(KeyMethod2::parse(&m, false), Err(KeyError::MissingOptions));
        // Oversized options refused both ways.
        let big = KeyMethod2 {
            options: "x".repeat(512),
            ..s.clone()
        };
        assert_eq!(big.encode(), Err(KeyError::OptionsTooLong));
        let mut m = full[..69].to_vec();
        m.extend_from_slice(&513u16.to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', 513));
        assert_eq!(KeyMethod2::parse(&m, false), Err(KeyError::OptionsTooLong));
        // NUL inside a string cannot be encoded; non-UTF-8 cannot be parsed.
        let nul = KeyMethod2 {
            username: Some("a\0b".into()),
            ..s.clone()
        };
        assert_eq!(nul.encode(), Err(KeyError::EmbeddedNul("username")));
        let mut m = full[..opt_end].to_vec();
        m.extend_from_slice(&[0, 2, 0xff, 0]);
        assert_eq!(
            KeyMethod2::parse(&m, false),
            Err(KeyError::NotUtf8("username"))
        );
        // The pre_master is required from a client.
        assert!(KeyMethod2::parse(&full, true).is_err());
        assert!(!format!(
            "{:?}",
            KeyMethod2 {
                password: Some("pw".into()),
                ..s
            }
        )
        .contains("pw\""));
    }

    proptest::proptest! {
        #[test]
        fn parse_arbitrary_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300), client: bool) {
            let _ = KeyMethod2::parse(&b, client);
        }

        #[test]
        fn encode_parse_round_trip(user in "[ -~]{0,40}", pw in proptest::option::of("[ -~]{0,40}"), client: bool) {
            let mut m = KeyMethod2::random(&mut rand::rngs::mock::StepRng::new(3, 7), client, "V4,x".into());
            m.username = Some(user);
            m.password = pw;
            m.peer_info = Some("IV_VER=1\n".into());
            let b = m.encode().unwrap();
            proptest::prop_assert_eq!(KeyMethod2::parse(&b, client).unwrap(), m);
        }
    }

    #[test]
    fn options_string_matches_openvpn() {
        assert_eq!(
            options_string(true, 1500, OccProto::Udp),
            "V4,dev-type tun,link-mtu 1541,tun-mtu 1500,proto UDPv4,auth SHA1,keysize 128,key-method 2,tls-client"
        );
        let s = options_string(false, 1400, OccProto::Udp);
        assert!(s.ends_with(",tls-server") && s.contains("link-mtu 1441,tun-mtu 1400"));
        assert_eq!(occ_option(&s, "tun-mtu"), Some("1400"));
        assert_eq!(occ_option(&s, "cipher"), None);
        assert_eq!(occ_option(&s, "tls-server"), Some(""));
        assert_eq!(
            occ_option("V4,cipher AES-256-CBC,auth SHA1", "cipher"),
            Some("AES-256-CBC")
        );
    }
}
