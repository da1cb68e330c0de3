//! Renderer for the "OpenVPN Static key V1" file format (tls-auth / tls-crypt keys).
//!
//! Output matches what `openvpn --genkey secret` writes (wire notes 5.1): a fixed comment
//! header, the BEGIN line, 256 bytes as lowercase hex with 16 bytes per line, the END line.
//! Parsing lives with the wrapping code (`proto::wrap`); this module only writes.

/// Size of a static key file body: two 128-byte keys (cipher + HMAC halves each).
pub const STATIC_KEY_LEN: usize = 256;

/// Renders `key` in OpenVPN Static key V1 format (trailing newline included).
pub fn render_static_key_v1(key: &[u8; STATIC_KEY_LEN]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(STATIC_KEY_LEN * 2 + 16 * 2 + 128);
    out.push_str("#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n");
    for line in key.chunks(16) {
        for &b in line {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out.push('\n');
    }
    out.push_str("-----END OpenVPN Static key V1-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_openvpn() {
        let mut key = [0u8; STATIC_KEY_LEN];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        let text = render_static_key_v1(&key);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 + 16 + 1);
        assert_eq!(lines[0], "#");
        assert_eq!(lines[1], "# 2048 bit OpenVPN static key");
        assert_eq!(lines[2], "#");
        assert_eq!(lines[3], "-----BEGIN OpenVPN Static key V1-----");
        assert_eq!(lines[4], "000102030405060708090a0b0c0d0e0f");
        assert_eq!(lines[19], "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        assert_eq!(lines[20], "-----END OpenVPN Static key V1-----");
        assert!(text.ends_with('\n'));
    }
}
