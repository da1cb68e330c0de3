//! OpenVPN control-packet codec (openvpn-wire.md §2, §3.1).
//!
//! Owns the opcode/key-id byte, session ids and the *unwrapped* control packet layout
//! (`op | own sid | ack_count | acks | [peer sid] | [message id] | payload`). Wrapping with
//! tls-auth / tls-crypt lives in [`crate::proto::wrap`], reliability in
//! [`crate::proto::reliable`].
//!
//! Invariants: parsing never panics and never allocates more than the input size; every
//! rejected input is a [`WireError`]. A parsed [`ControlPacket`] always has ≤ 8 acks, a
//! peer session id iff it has acks, a message id iff its opcode is not `P_ACK_V1`, and a
//! non-zero own session id.

use std::fmt;

/// Maximum number of ACK entries a receiver accepts in one packet (`RELIABLE_ACK_SIZE`).
pub const MAX_ACKS: usize = 8;
/// Maximum ACK entries we piggy-back on a packet that carries a message
/// (`CONTROL_SEND_ACK_MAX`).
pub const MAX_PIGGYBACK_ACKS: usize = 4;
/// Size of a session id on the wire.
pub const SESSION_ID_LEN: usize = 8;

/// Errors of the packet codec. Every malformed input maps to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Input ended before a mandatory field (`what`) was complete.
    #[error("packet truncated in {0}")]
    Truncated(&'static str),
    /// The 5-bit opcode is not one OpenVPN defines (0, 12..31).
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// Key-method 1 resets (opcodes 1 and 2), rejected by 2.6.
    #[error("unsupported key-method 1 opcode {0:?}")]
    KeyMethod1(Opcode),
    /// A data-channel opcode was handed to the control-packet parser.
    #[error("{0:?} is not a control opcode")]
    NotControl(Opcode),
    /// `ack_count` above [`MAX_ACKS`]; OpenVPN drops such packets entirely.
    #[error("ack count {0} exceeds 8")]
    TooManyAcks(u8),
    /// The sender's session id is all zero ("undefined").
    #[error("all-zero session id")]
    ZeroSessionId,
    /// A key id above 7 was supplied where a 3-bit key id is required.
    #[error("key id {0} out of range 0..=7")]
    BadKeyId(u8),
}

/// The 5-bit opcode of every OpenVPN packet (openvpn-wire.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Key-method 1 client reset, obsolete.
    ControlHardResetClientV1 = 1,
    /// Key-method 1 server reset, obsolete.
    ControlHardResetServerV1 = 2,
    /// Start of a renegotiation.
    ControlSoftResetV1 = 3,
    /// Reliable control message carrying TLS bytes.
    ControlV1 = 4,
    /// ACK only: no message id, no payload.
    AckV1 = 5,
    /// Data packet with the 1-byte header.
    DataV1 = 6,
    /// First packet of a session (client).
    ControlHardResetClientV2 = 7,
    /// Server answer to a hard reset.
    ControlHardResetServerV2 = 8,
    /// Data packet with the 4-byte header (24-bit peer id).
    DataV2 = 9,
    /// Client reset with tls-crypt-v2 WKc appended.
    ControlHardResetClientV3 = 10,
    /// `P_CONTROL_V1` with tls-crypt-v2 WKc appended.
    ControlWkcV1 = 11,
}

impl Opcode {
    /// Decodes a 5-bit opcode value; `None` for values OpenVPN does not define.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::ControlHardResetClientV1,
            2 => Self::ControlHardResetServerV1,
            3 => Self::ControlSoftResetV1,
            4 => Self::ControlV1,
            5 => Self::AckV1,
            6 => Self::DataV1,
            7 => Self::ControlHardResetClientV2,
            8 => Self::ControlHardResetServerV2,
            9 => Self::DataV2,
            10 => Self::ControlHardResetClientV3,
            11 => Self::ControlWkcV1,
            _ => return None,
        })
    }

    /// The 5-bit numeric value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Data-channel opcodes (`P_DATA_V1`, `P_DATA_V2`).
    pub fn is_data(self) -> bool {
        matches!(self, Self::DataV1 | Self::DataV2)
    }

    /// Control opcodes legal in 2.6 (3..=11 minus the data opcodes).
    pub fn is_control(self) -> bool {
        !self.is_data()
            && !matches!(
                self,
                Self::ControlHardResetClientV1 | Self::ControlHardResetServerV1
            )
    }

    /// Hard resets (V2 client/server and V3 client); these must carry message id 0.
    pub fn is_hard_reset(self) -> bool {
        matches!(
            self,
            Self::ControlHardResetClientV2
                | Self::ControlHardResetServerV2
                | Self::ControlHardResetClientV3
        )
    }

    /// Whether packets with this opcode carry a reliable message id.
    pub fn has_message_id(self) -> bool {
        self.is_control() && self != Self::AckV1
    }
}

/// 3-bit key id (key generation). 0 is the initial negotiation; renegotiations count
/// 1..=7 and wrap 7 → 1, never back to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyId(u8);

impl KeyId {
    /// Key id 0, used by the first negotiation and all hard resets.
    pub const ZERO: KeyId = KeyId(0);

    /// Validated constructor: `v` must be in `0..=7`.
    pub fn new(v: u8) -> Result<Self, WireError> {
        if v <= 7 {
            Ok(KeyId(v))
        } else {
            Err(WireError::BadKeyId(v))
        }
    }

    /// The numeric value (0..=7).
    pub fn get(self) -> u8 {
        self.0
    }

    /// Key id of the next renegotiation: +1, wrapping 7 → 1.
    pub fn next(self) -> Self {
        if self.0 >= 7 {
            KeyId(1)
        } else {
            KeyId(self.0 + 1)
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// 8-byte session id, opaque; all-zero means "undefined" and is rejected on input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionId(pub [u8; SESSION_ID_LEN]);

impl SessionId {
    /// True for the all-zero ("undefined") session id.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; SESSION_ID_LEN]
    }

    /// A fresh random, non-zero session id.
    pub fn random(rng: &mut dyn rand::RngCore) -> Self {
        loop {
            let mut b = [0u8; SESSION_ID_LEN];
            rng.fill_bytes(&mut b);
            let sid = SessionId(b);
            if !sid.is_zero() {
                return sid;
            }
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Splits the first packet byte into opcode (5 bits) and key id (3 bits).
pub fn split_op(b: u8) -> (Result<Opcode, WireError>, KeyId) {
    let op = b >> 3;
    (
        Opcode::from_u8(op).ok_or(WireError::UnknownOpcode(op)),
        KeyId(b & 0x07),
    )
}

/// Builds the first packet byte: `(opcode << 3) | key_id`.
pub fn op_byte(op: Opcode, key_id: KeyId) -> u8 {
    (op.as_u8() << 3) | (key_id.0 & 0x07)
}

/// Reads the cleartext prefix shared by the plain and both wrapped forms: opcode, key id
/// and the sender's session id. Lets a dispatcher route a datagram before unwrapping it.
pub fn peek_header(b: &[u8]) -> Result<(Opcode, KeyId, SessionId), WireError> {
    let mut r = Reader::new(b);
    let (op, key_id) = split_op(r.u8("opcode")?);
    let op = op?;
    let sid = r.session_id("session id")?;
    Ok((op, key_id, sid))
}

/// A control packet in its unwrapped form (openvpn-wire.md §3.1).
///
/// Field rules (enforced by [`ControlPacket::parse`], assumed by [`ControlPacket::encode`]):
/// `acks.len() <= 8`; `remote_session_id` is `Some` iff `acks` is non-empty;
/// `message_id` is `None` iff `opcode == AckV1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    /// Control opcode.
    pub opcode: Opcode,
    /// Key generation this packet belongs to.
    pub key_id: KeyId,
    /// The sender's own session id.
    pub session_id: SessionId,
    /// Acknowledged message ids (not cumulative, ≤ 8).
    pub acks: Vec<u32>,
    /// The receiver's session id, present iff `acks` is non-empty.
    pub remote_session_id: Option<SessionId>,
    /// Reliable message id; `None` only for `P_ACK_V1`.
    pub message_id: Option<u32>,
    /// TLS bytes (or early-negotiation TLVs on resets).
    pub payload: Vec<u8>,
}

impl ControlPacket {
    /// Parses the unwrapped form. Rejects data/unknown/key-method-1 opcodes, more than 8
    /// acks, truncation and an all-zero sender session id.
    pub fn parse(plain: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(plain);
        let (opcode, key_id) = split_op(r.u8("opcode")?);
        let opcode = opcode?;
        if opcode.is_data() {
            return Err(WireError::NotControl(opcode));
        }
        if !opcode.is_control() {
            return Err(WireError::KeyMethod1(opcode));
        }
        let session_id = r.session_id("session id")?;
        if session_id.is_zero() {
            return Err(WireError::ZeroSessionId);
        }
        let n = r.u8("ack count")?;
        if usize::from(n) > MAX_ACKS {
            return Err(WireError::TooManyAcks(n));
        }
        let mut acks = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            acks.push(r.u32("ack list")?);
        }
        let remote_session_id = if n > 0 {
            Some(r.session_id("peer session id")?)
        } else {
            None
        };
        let message_id = if opcode.has_message_id() {
            Some(r.u32("message id")?)
        } else {
            None
        };
        // Trailing bytes of a P_ACK_V1 are kept as payload (OpenVPN ignores them); this keeps
        // parse→encode byte-exact for every accepted input.
        let payload = r.rest().to_vec();
        Ok(ControlPacket {
            opcode,
            key_id,
            session_id,
            acks,
            remote_session_id,
            message_id,
            payload,
        })
    }

    /// Appends the unwrapped form to `out`.
    ///
    /// Out-of-contract fields are normalised rather than panicking: only the first 8 acks
    /// are written, a missing `remote_session_id` next to acks is written as zeros (which
    /// the peer rejects), a missing `message_id` on a non-ACK opcode is written as 0.
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.acks.len() <= MAX_ACKS, "more than 8 acks");
        debug_assert_eq!(self.acks.is_empty(), self.remote_session_id.is_none());
        debug_assert_eq!(self.opcode.has_message_id(), self.message_id.is_some());
        out.reserve(self.encoded_len());
        out.push(op_byte(self.opcode, self.key_id));
        out.extend_from_slice(&self.session_id.0);
        let acks = self.acks.get(..MAX_ACKS).unwrap_or(&self.acks);
        // acks.len() <= 8 by the slice above, so the cast is lossless.
        out.push(acks.len() as u8);
        for a in acks {
            out.extend_from_slice(&a.to_be_bytes());
        }
        if !acks.is_empty() {
            out.extend_from_slice(&self.remote_session_id.unwrap_or_default().0);
        }
        if self.opcode.has_message_id() {
            out.extend_from_slice(&self.message_id.unwrap_or(0).to_be_bytes());
        }
        out.extend_from_slice(&self.payload);
    }

    /// Convenience: the encoded bytes in a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Exact length [`ControlPacket::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let n = self.acks.len().min(MAX_ACKS);
        1 + SESSION_ID_LEN
            + 1
            + 4 * n
            + if n > 0 { SESSION_ID_LEN } else { 0 }
            + if self.opcode.has_message_id() { 4 } else { 0 }
            + self.payload.len()
    }
}

/// Bounds-checked big-endian reader; every short read is a [`WireError::Truncated`].
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        match self.buf.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.buf = rest;
                Ok(*head)
            }
            None => Err(WireError::Truncated(what)),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take::<4>(what)?))
    }

    fn session_id(&mut self, what: &'static str) -> Result<SessionId, WireError> {
        Ok(SessionId(self.take::<SESSION_ID_LEN>(what)?))
    }

    fn rest(self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: [u8; 8] = [0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8];
    const S: [u8; 8] = [0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn opcode_byte_table() {
        // Table of §2: byte with key id 0 is opcode << 3.
        let table = [
            (Opcode::ControlHardResetClientV1, 0x08),
            (Opcode::ControlHardResetServerV1, 0x10),
            (Opcode::ControlSoftResetV1, 0x18),
            (Opcode::ControlV1, 0x20),
            (Opcode::AckV1, 0x28),
            (Opcode::DataV1, 0x30),
            (Opcode::ControlHardResetClientV2, 0x38),
            (Opcode::ControlHardResetServerV2, 0x40),
            (Opcode::DataV2, 0x48),
            (Opcode::ControlHardResetClientV3, 0x50),
            (Opcode::ControlWkcV1, 0x58),
        ];
        for (op, byte) in table {
            assert_eq!(op_byte(op, KeyId::ZERO), byte);
            let (o, k) = split_op(byte | 5);
            assert_eq!(o, Ok(op));
            assert_eq!(k.get(), 5);
        }
        assert_eq!(split_op(0x00).0, Err(WireError::UnknownOpcode(0)));
        assert_eq!(split_op(12 << 3).0, Err(WireError::UnknownOpcode(12)));
        assert_eq!(split_op(0xff).0, Err(WireError::UnknownOpcode(31)));
    }

    #[test]
    fn key_id_wraps_to_one() {
        let mut k = KeyId::ZERO;
        let mut seen = vec![];
        for _ in 0..9 {
            k = k.next();
            seen.push(k.get());
        }
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7, 1, 2]);
        assert_eq!(KeyId::new(8), Err(WireError::BadKeyId(8)));
        assert_eq!(KeyId::new(7).map(KeyId::get), Ok(7));
    }

    #[test]
    fn client_hard_reset_example() {
        // §3.3 first example (14 bytes).
        let bytes = cat(&[&[0x38], &C, &[0, 0, 0, 0, 0]]);
        assert_eq!(bytes.len(), 14);
        let p = ControlPacket::parse(&bytes).unwrap();
        assert_eq!(p.opcode, Opcode::ControlHardResetClientV2);
        assert_eq!(p.key_id, KeyId::ZERO);
        assert_eq!(p.session_id, SessionId(C));
        assert!(p.acks.is_empty());
        assert_eq!(p.remote_session_id, None);
        assert_eq!(p.message_id, Some(0));
        assert!(p.payload.is_empty());
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn server_reset_example() {
        // §3.3 second example (26 bytes).
        let bytes = cat(&[&[0x40], &S, &[1, 0, 0, 0, 0], &C, &[0, 0, 0, 0]]);
        assert_eq!(bytes.len(), 26);
        let p = ControlPacket::parse(&bytes).unwrap();
        assert_eq!(p.opcode, Opcode::ControlHardResetServerV2);
        assert_eq!(p.acks, vec![0]);
        assert_eq!(p.remote_session_id, Some(SessionId(C)));
        assert_eq!(p.message_id, Some(0));
        assert_eq!(p.to_bytes(), bytes);
        assert_eq!(p.encoded_len(), 26);
    }

    #[test]
    fn ack_only_example() {
        // §3.3 third example (22 bytes, no message id).
        let bytes = cat(&[&[0x28], &C, &[1, 0, 0, 0, 0], &S]);
        assert_eq!(bytes.len(), 22);
        let p = ControlPacket::parse(&bytes).unwrap();
        assert_eq!(p.opcode, Opcode::AckV1);
        assert_eq!(p.message_id, None);
        assert_eq!(p.remote_session_id, Some(SessionId(S)));
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn control_with_piggyback_example() {
        // §3.3 fourth example.
        let bytes = cat(&[
            &[0x20],
            &C,
            &[1, 0, 0, 0, 0],
            &S,
            &[0, 0, 0, 1],
            b"\x16\x03\x01",
        ]);
        let p = ControlPacket::parse(&bytes).unwrap();
        assert_eq!(p.opcode, Opcode::ControlV1);
        assert_eq!(p.message_id, Some(1));
        assert_eq!(p.payload, b"\x16\x03\x01");
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn eight_acks_ok_nine_rejected() {
        let mut ok = cat(&[&[0x28], &C, &[8]]);
        for i in 0..8u32 {
            ok.extend_from_slice(&i.to_be_bytes());
        }
        ok.extend_from_slice(&S);
        let p = ControlPacket::parse(&ok).unwrap();
        assert_eq!(p.acks, (0..8).collect::<Vec<_>>());

        let mut bad = cat(&[&[0x28], &C, &[9]]);
        for i in 0..9u32 {
            bad.extend_from_slice(&i.to_be_bytes());
        }
        bad.extend_from_slice(&S);
        assert_eq!(ControlPacket::parse(&bad), Err(WireError::TooManyAcks(9)));
    }

    #[test]
    fn rejects_bad_inputs() {
        assert_eq!(
            ControlPacket::parse(&[]),
            Err(WireError::Truncated("opcode"))
        );
        let zero = cat(&[&[0x38], &[0; 8], &[0, 0, 0, 0, 0]]);
        assert_eq!(ControlPacket::parse(&zero), Err(WireError::ZeroSessionId));
        let data = cat(&[&[0x48], &C, &[0, 0, 0, 0, 0]]);
        assert_eq!(
            ControlPacket::parse(&data),
            Err(WireError::NotControl(Opcode::DataV2))
        );
        let km1 = cat(&[&[0x08], &C, &[0, 0, 0, 0, 0]]);
        assert_eq!(
            ControlPacket::parse(&km1),
            Err(WireError::KeyMethod1(Opcode::ControlHardResetClientV1))
        );
        // Missing message id.
        let short = cat(&[&[0x38], &C, &[0, 0, 0]]);
        assert_eq!(
            ControlPacket::parse(&short),
            Err(WireError::Truncated("message id"))
        );
        // Ack count 1 but no peer session id.
        let nopeer = cat(&[&[0x28], &C, &[1, 0, 0, 0, 0], &S[..7]]);
        assert_eq!(
            ControlPacket::parse(&nopeer),
            Err(WireError::Truncated("peer session id"))
        );
        // Every prefix of a valid packet fails cleanly (except the full ones).
        let full = cat(&[&[0x20], &C, &[2, 0, 0, 0, 0, 0, 0, 0, 1], &S, &[0, 0, 0, 1]]);
        for i in 0..full.len() {
            assert!(ControlPacket::parse(&full[..i]).is_err(), "prefix {i}");
        }
        assert!(ControlPacket::parse(&full).is_ok());
    }

    #[test]
    fn peek_header_works_on_any_form() {
        let bytes = cat(&[&[0x3a], &C, &[0xff; 30]]);
        let (op, k, sid) = peek_header(&bytes).unwrap();
        assert_eq!(op, Opcode::ControlHardResetClientV2);
        assert_eq!(k.get(), 2);
        assert_eq!(sid, SessionId(C));
        assert!(peek_header(&bytes[..8]).is_err());
    }

    #[test]
    fn random_session_id_nonzero() {
        let mut rng = rand::thread_rng();
        assert!(!SessionId::random(&mut rng).is_zero());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_roundtrips(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(p) = ControlPacket::parse(&data) {
                proptest::prop_assert_eq!(p.to_bytes(), data);
            }
        }
    }
}
