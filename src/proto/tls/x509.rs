//! Just enough X.509 DER parsing for OpenVPN's certificate checks that webpki does not expose:
//! the leaf's subject name (CN, OpenSSL one-line DN) and whether a keyUsage extension exists.
//!
//! Chain validation, signatures, validity and EKU stay with webpki; this module only reads
//! fields of a certificate webpki has already parsed (or is about to reject). Every malformed
//! input is an [`X509Error`], never a panic. Only single-byte tags and definite lengths of up to
//! four length bytes are supported, which covers every DER certificate.

use std::fmt::Write;

/// A certificate field could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("malformed DER in certificate")]
    BadDer,
    #[error("certificate subject attribute is not a decodable string")]
    BadString,
}

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_VERSION: u8 = 0xa0;
const TAG_EXTENSIONS: u8 = 0xa3;

/// DER value of OID 2.5.29.15 (keyUsage).
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// DER value of OID 2.5.4.3 (commonName).
pub(crate) const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Sequential reader over a DER byte string.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(data: &'a [u8]) -> Self {
        Der { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one TLV, returns `(tag, contents)`.
    fn read_any(&mut self) -> Result<(u8, &'a [u8]), X509Error> {
        let (&tag, rest) = self.rest.split_first().ok_or(X509Error::BadDer)?;
        if tag & 0x1f == 0x1f {
            return Err(X509Error::BadDer); // high tag numbers never occur in certificates
        }
        let (&first, mut rest) = rest.split_first().ok_or(X509Error::BadDer)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(X509Error::BadDer);
            }
            let (bytes, after) = rest.split_at_checked(n).ok_or(X509Error::BadDer)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (contents, after) = rest.split_at_checked(len).ok_or(X509Error::BadDer)?;
        self.rest = after;
        Ok((tag, contents))
    }

    fn read(&mut self, tag: u8) -> Result<&'a [u8], X509Error> {
        match self.read_any()? {
            (t, contents) if t == tag => Ok(contents),
            _ => Err(X509Error::BadDer),
        }
    }

    fn skip_if(&mut self, tag: u8) -> Result<(), X509Error> {
        if self.peek_tag() == Some(tag) {
            self.read_any()?;
        }
        Ok(())
    }
}

/// One attribute of a distinguished name: OID (DER value bytes) + decoded UTF-8 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub oid: Vec<u8>,
    pub value: String,
}

/// The fields fwd needs from a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeafInfo {
    /// Subject RDNs in certificate order; each RDN holds one or more attributes.
    pub subject: Vec<Vec<Attribute>>,
    /// Whether a keyUsage extension is present (OpenVPN `--remote-cert-tls` requires one).
    pub has_key_usage: bool,
}

impl LeafInfo {
    /// Parses the subject and extension list of a DER certificate.
    pub fn parse(cert_der: &[u8]) -> Result<LeafInfo, X509Error> {
        let mut outer = Der::new(cert_der);
        let cert = outer.read(TAG_SEQUENCE)?;
        let mut cert = Der::new(cert);
        let tbs = cert.read(TAG_SEQUENCE)?;
        let mut tbs = Der::new(tbs);
        tbs.skip_if(TAG_VERSION)?;
        tbs.read(TAG_INTEGER)?; // serialNumber
        tbs.read(TAG_SEQUENCE)?; // signature algorithm
        tbs.read(TAG_SEQUENCE)?; // issuer
        tbs.read(TAG_SEQUENCE)?; // validity
        let subject = parse_name(tbs.read(TAG_SEQUENCE)?)?;
        tbs.read(TAG_SEQUENCE)?; // subjectPublicKeyInfo
        let mut has_key_usage = false;
        while !tbs.is_empty() {
            let (tag, contents) = tbs.read_any()?;
            if tag != TAG_EXTENSIONS {
                continue; // issuerUniqueID / subjectUniqueID
            }
            let mut exts = Der::new(Der::new(contents).read(TAG_SEQUENCE)?);
            while !exts.is_empty() {
                let mut ext = Der::new(exts.read(TAG_SEQUENCE)?);
                let oid = ext.read(TAG_OID)?;
                ext.skip_if(TAG_BOOLEAN)?;
                ext.read(TAG_OCTET_STRING)?;
                if oid == OID_KEY_USAGE {
                    has_key_usage = true;
                }
            }
        }
        Ok(LeafInfo {
            subject,
            has_key_usage,
        })
    }

    /// The value of the *last* CN attribute (OpenVPN picks the last one), unsanitised.
    pub fn common_name(&self) -> Option<&str> {
        self.subject
            .iter()
            .flatten()
            .rfind(|a| a.oid == OID_COMMON_NAME)
            .map(|a| a.value.as_str())
    }

    /// The subject in OpenSSL's `X509_NAME_print_ex(XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN |
    /// ASN1_STRFLGS_UTF8_CONVERT | ASN1_STRFLGS_ESC_CTRL)` form, which OpenVPN uses for
    /// `--verify-x509-name … subject`: `C=KG, ST=NA, O=OpenVPN-TEST, CN=Test-Server`.
    pub fn subject_oneline(&self) -> String {
        let mut out = String::new();
        for (i, rdn) in self.subject.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            for (j, attr) in rdn.iter().enumerate() {
                if j > 0 {
                    out.push_str(" + ");
                }
                match short_name(&attr.oid) {
                    Some(name) => out.push_str(name),
                    None => out.push_str(&dotted_oid(&attr.oid)),
                }
                out.push('=');
                for c in attr.value.chars() {
                    if (c as u32) < 0x20 || c as u32 == 0x7f {
                        let _ = write!(out, "\\{:02X}", c as u32);
                    } else {
                        out.push(c);
                    }
                }
            }
        }
        out
    }
}

fn parse_name(name: &[u8]) -> Result<Vec<Vec<Attribute>>, X509Error> {
    let mut rdns = Vec::new();
    let mut name = Der::new(name);
    while !name.is_empty() {
        let mut set = Der::new(name.read(TAG_SET)?);
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let mut atv = Der::new(set.read(TAG_SEQUENCE)?);
            let oid = atv.read(TAG_OID)?.to_vec();
            let (tag, raw) = atv.read_any()?;
            let value = decode_string(tag, raw)?;
            rdn.push(Attribute { oid, value });
        }
        rdns.push(rdn);
    }
    Ok(rdns)
}

/// Converts an ASN.1 string to UTF-8 the way `ASN1_STRING_to_UTF8` does.
fn decode_string(tag: u8, raw: &[u8]) -> Result<String, X509Error> {
    match tag {
        // UTF8String
        0x0c => String::from_utf8(raw.to_vec()).map_err(|_| X509Error::BadString),
        // NumericString, PrintableString, IA5String, VisibleString: ASCII subsets.
        0x12 | 0x13 | 0x16 | 0x1a => {
            if raw.is_ascii() {
                Ok(raw.iter().map(|&b| char::from(b)).collect())
            } else {
                Err(X509Error::BadString)
            }
        }
        // T61String: OpenSSL treats it as Latin-1.
        0x14 => Ok(raw.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2 big endian.
        0x1e => {
            if raw.len() % 2 != 0 {
                return Err(X509Error::BadString);
            }
            raw.chunks_exact(2)
                .map(|p| match p {
                    &[a, b] => char::from_u32(u32::from(u16::from_be_bytes([a, b])))
                        .ok_or(X509Error::BadString),
                    _ => Err(X509Error::BadString),
                })
                .collect()
        }
        // UniversalString: UCS-4 big endian.
        0x1c => {
            if raw.len() % 4 != 0 {
                return Err(X509Error::BadString);
            }
            raw.chunks_exact(4)
                .map(|p| match p {
                    &[a, b, c, d] => {
                        char::from_u32(u32::from_be_bytes([a, b, c, d])).ok_or(X509Error::BadString)
                    }
                    _ => Err(X509Error::BadString),
                })
                .collect()
        }
        _ => Err(X509Error::BadString),
    }
}

/// OpenSSL short names of the attribute types that appear in practice.
fn short_name(oid: &[u8]) -> Option<&'static str> {
    const X520: &[u8] = &[0x55, 0x04];
    if let Some(&[n]) = oid.strip_prefix(X520) {
        return Some(match n {
            3 => "CN",
            4 => "SN",
            5 => "serialNumber",
            6 => "C",
            7 => "L",
            8 => "ST",
            9 => "street",
            10 => "O",
            11 => "OU",
            12 => "title",
            13 => "description",
            15 => "businessCategory",
            17 => "postalCode",
            41 => "name",
            42 => "GN",
            43 => "initials",
            44 => "generationQualifier",
            46 => "dnQualifier",
            65 => "pseudonym",
            97 => "organizationIdentifier",
            _ => return None,
        });
    }
    match oid {
        // 1.2.840.113549.1.9.1
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => Some("emailAddress"),
        // 0.9.2342.19200300.100.1.25
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => Some("DC"),
        // 0.9.2342.19200300.100.1.1
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => Some("UID"),
        _ => None,
    }
}

/// Dotted-decimal form of a DER OID value (used for attribute types without a short name).
fn dotted_oid(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    let mut s = String::new();
    for (i, a) in arcs.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        let _ = write!(s, "{a}");
    }
    s
}

/// OpenVPN's `string_mod_remap_name`: bytes below 0x20 and DEL become `_` (UTF-8 stays).
pub(crate) fn remap_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 0x20 || c as u32 == 0x7f {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted() {
        assert_eq!(dotted_oid(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(
            dotted_oid(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]),
            "1.3.6.1.5.5.7.3.1"
        );
        assert_eq!(dotted_oid(&[0x2a, 0x86, 0x48]), "1.2.840");
    }

    #[test]
    fn strings() {
        assert_eq!(decode_string(0x0c, "ü".as_bytes()).unwrap(), "ü");
        assert_eq!(decode_string(0x13, b"abc").unwrap(), "abc");
        assert_eq!(decode_string(0x14, &[0xfc]).unwrap(), "ü");
        assert_eq!(
            decode_string(0x1e, &[0x00, 0x41, 0x00, 0xfc]).unwrap(),
            "Aü"
        );
        assert!(decode_string(0x1e, &[0x00]).is_err());
        assert!(decode_string(0x13, &[0xff]).is_err());
        assert!(decode_string(0x04, b"x").is_err());
    }

    #[test]
    fn truncated_der_is_an_error() {
        assert_eq!(LeafInfo::parse(&[]), Err(X509Error::BadDer));
        assert_eq!(LeafInfo::parse(&[0x30, 0x82, 0x01]), Err(X509Error::BadDer));
        assert_eq!(LeafInfo::parse(&[0x30, 0x05, 0x30]), Err(X509Error::BadDer));
        assert_eq!(LeafInfo::parse(&[0x1f, 0x00]), Err(X509Error::BadDer));
    }

    #[test]
    fn remap() {
        assert_eq!(remap_name("a\r\nb\x7fc\u{1}ü"), "a__b_c_ü");
    }

    #[test]
    fn oneline_format() {
        let a = |oid: &[u8], v: &str| Attribute {
            oid: oid.to_vec(),
            value: v.into(),
        };
        let info = LeafInfo {
            subject: vec![
                vec![a(&[0x55, 0x04, 0x06], "KG")],
                vec![
                    a(&[0x55, 0x04, 0x0a], "OpenVPN-TEST"),
                    a(&[0x55, 0x04, 0x0b], "x"),
                ],
                vec![a(&[0x55, 0x04, 0x63], "odd")],
                vec![a(OID_COMMON_NAME, "Test\nServer")],
            ],
            has_key_usage: false,
        };
        assert_eq!(
            info.subject_oneline(),
            "C=KG, O=OpenVPN-TEST + OU=x, 2.5.4.99=odd, CN=Test\\0AServer"
        );
        assert_eq!(info.common_name(), Some("Test\nServer"));
    }
}
