//! OpenVPN 2.6 data channel, AEAD ciphers only (wire spec §10, §11.1–11.4).
//!
//! Owns: the cipher enum and its OpenVPN names, the 256-byte key block and how it is cut into
//! per-direction keys, sealing and opening `P_DATA_V1` / `P_DATA_V2` packets in place, the
//! short-form send packet-id and the receive replay window.
//!
//! Invariants:
//! * Wire layout (2.6, not the 2.7 "epoch" format): `op|key_id (1) [peer-id (3)] packet-id (4)
//!   tag (16) ciphertext`. The tag sits *before* the ciphertext, so a sender with
//!   [`HEADROOM`] bytes in front of the payload never needs tailroom and never copies.
//! * Nonce = packet-id (4, BE) || implicit IV (8) — concatenation, never XOR. The implicit IV
//!   is the first 8 bytes of the direction's *hmac* slot of the key block.
//! * Associated data: `P_DATA_V2` authenticates its whole 8-byte header, `P_DATA_V1` only the
//!   packet-id (the opcode byte is not covered, as in OpenVPN).
//! * Send packet-ids start at 1 and never wrap; id 0 is never valid on receive.
//! * The replay window is only *checked* before decryption and only *updated* after the tag
//!   verified, so forged packets cannot move it.
//! * Nothing here allocates per packet or panics on packet contents.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{self, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

/// Opcode of `P_DATA_V1` (1-byte header).
pub const P_DATA_V1: u8 = 6;
/// Opcode of `P_DATA_V2` (4-byte header with 24-bit peer-id).
pub const P_DATA_V2: u8 = 9;
/// The peer-id value meaning "no peer-id" in a `P_DATA_V2` header.
pub const NO_PEER_ID: u32 = 0x00FF_FFFF;
/// AEAD tag length of every supported cipher.
pub const TAG_LEN: usize = 16;
/// Bytes a sender must leave in front of the payload: op (1) + peer-id (3) + packet-id (4) +
/// tag (16). `P_DATA_V1` uses only the last 21 of them.
pub const HEADROOM: usize = 24;
/// Size of a derived key block (§10): two directions × (64-byte cipher + 64-byte hmac slot).
pub const KEY_BLOCK_LEN: usize = 256;
/// Length of the implicit IV taken from the hmac slot.
pub const IMPLICIT_IV_LEN: usize = 8;
/// Send packet-id from which a soft renegotiation should be started (§11.4, §15.1).
pub const RENEGOTIATE_PACKET_ID: u32 = 0xFF00_0000;

/// Default `--replay-window` size in packets.
pub const DEFAULT_REPLAY_WINDOW: u32 = 64;
/// Default `--replay-window` time in seconds.
pub const DEFAULT_REPLAY_TIME: u64 = 15;
/// Largest accepted `--replay-window` size (OpenVPN's `MAX_SEQ_BACKTRACK`).
pub const MAX_REPLAY_WINDOW: u32 = 65536;

/// A data-channel AEAD cipher fwd supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// `AES-128-GCM`, 16-byte key.
    Aes128Gcm,
    /// `AES-256-GCM`, 32-byte key.
    Aes256Gcm,
    /// `CHACHA20-POLY1305`, 32-byte key.
    ChaCha20Poly1305,
}

impl Cipher {
    /// All supported ciphers in the 2.6 default `--data-ciphers` order.
    pub const ALL: [Cipher; 3] = [
        Cipher::Aes256Gcm,
        Cipher::Aes128Gcm,
        Cipher::ChaCha20Poly1305,
    ];

    /// Parses an OpenVPN cipher name, case-insensitively (`aes-256-gcm` is accepted as
    /// OpenSSL accepts it). Unknown and non-AEAD names give `None`.
    pub fn from_name(name: &str) -> Option<Cipher> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The canonical OpenVPN name (what is pushed and put into `IV_CIPHERS`).
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes128Gcm => "AES-128-GCM",
            Cipher::Aes256Gcm => "AES-256-GCM",
            Cipher::ChaCha20Poly1305 => "CHACHA20-POLY1305",
        }
    }

    /// Key length in bytes (taken from the start of the cipher slot).
    pub fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => 32,
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm => &aead::AES_128_GCM,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`Cipher`]'s `FromStr`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported data-channel cipher {0:?}")]
pub struct UnknownCipher(pub String);

impl std::str::FromStr for Cipher {
    type Err = UnknownCipher;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cipher::from_name(s).ok_or_else(|| UnknownCipher(s.to_owned()))
    }
}

/// 256 bytes of derived key material laid out as in §10:
/// `[0..64)` c→s cipher, `[64..128)` c→s hmac / implicit IV, `[128..192)` s→c cipher,
/// `[192..256)` s→c hmac / implicit IV. Wiped on drop; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBlock([u8; KEY_BLOCK_LEN]);

impl KeyBlock {
    /// Wraps raw key material.
    pub fn new(bytes: [u8; KEY_BLOCK_LEN]) -> Self {
        KeyBlock(bytes)
    }

    /// The raw 256 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_BLOCK_LEN] {
        &self.0
    }

    /// Mutable access, for derivation functions that write in place.
    pub fn as_mut_bytes(&mut self) -> &mut [u8; KEY_BLOCK_LEN] {
        &mut self.0
    }

    /// Cipher slot of a direction (64 bytes; the key is its first `key_len` bytes).
    fn cipher_slot(&self, dir: Dir) -> &[u8] {
        let off = dir.offset();
        &self.0[off..off + 64]
    }

    /// First 8 bytes of the direction's hmac slot: the AEAD implicit IV.
    fn implicit_iv(&self, dir: Dir) -> [u8; IMPLICIT_IV_LEN] {
        let off = dir.offset() + 64;
        let mut iv = [0u8; IMPLICIT_IV_LEN];
        iv.copy_from_slice(&self.0[off..off + IMPLICIT_IV_LEN]);
        iv
    }
}

impl fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBlock(<redacted>)")
    }
}

impl Drop for KeyBlock {
    fn drop(&mut self) {
        // Best-effort wipe; the fence keeps the compiler from dropping the dead store.
        self.0.fill(0);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
}

/// Which end of the connection we are; decides which key block half we send with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Sends with keys\[0\] (bytes 0..128), receives with keys\[1\].
    Client,
    /// Sends with keys\[1\] (bytes 128..256), receives with keys\[0\].
    Server,
}

#[derive(Clone, Copy)]
enum Dir {
    ClientToServer,
    ServerToClient,
}

impl Dir {
    /// Start of the direction's 128-byte half in the key block.
    fn offset(self) -> usize {
        match self {
            Dir::ClientToServer => 0,
            Dir::ServerToClient => 128,
        }
    }
}

/// Why data keys could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataKeyError {
    /// The cipher key of a direction is all zeros (OpenVPN rejects such generated keys).
    #[error("derived data-channel cipher key is all zeros")]
    ZeroKey,
    /// A raw key had the wrong length for the cipher.
    #[error("data-channel key has the wrong length")]
    KeyLength,
}

/// Builds the send and receive keys of one key state (one key_id) from its key block.
pub fn data_keys(
    cipher: Cipher,
    block: &KeyBlock,
    side: Side,
) -> Result<(TxKey, RxKey), DataKeyError> {
    let (tx_dir, rx_dir) = match side {
        Side::Client => (Dir::ClientToServer, Dir::ServerToClient),
        Side::Server => (Dir::ServerToClient, Dir::ClientToServer),
    };
    let klen = cipher.key_len();
    let tx = TxKey::new(
        cipher,
        &block.cipher_slot(tx_dir)[..klen],
        block.implicit_iv(tx_dir),
    )?;
    let rx = RxKey::new(
        cipher,
        &block.cipher_slot(rx_dir)[..klen],
        block.implicit_iv(rx_dir),
    )?;
    Ok((tx, rx))
}

fn make_key(cipher: Cipher, key: &[u8]) -> Result<LessSafeKey, DataKeyError> {
    if key.len() != cipher.key_len() {
        return Err(DataKeyError::KeyLength);
    }
    if key.iter().all(|&b| b == 0) {
        return Err(DataKeyError::ZeroKey);
    }
    let unbound = UnboundKey::new(cipher.algorithm(), key).map_err(|_| DataKeyError::KeyLength)?;
    Ok(LessSafeKey::new(unbound))
}

fn nonce(packet_id: u32, iv: &[u8; IMPLICIT_IV_LEN]) -> Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    let (pid, rest) = n.split_at_mut(4);
    pid.copy_from_slice(&packet_id.to_be_bytes());
    rest.copy_from_slice(iv);
    Nonce::assume_unique_for_key(n)
}

/// Why [`TxKey::seal_in_place`] refused to produce a packet. Nothing was written and no
/// packet-id was consumed unless the variant is [`SealError::Crypto`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// `buf` is shorter than `HEADROOM + payload_len`.
    #[error("buffer too small for headroom and payload")]
    BufferTooSmall,
    /// Empty payload (a receiver would reject it as "missing payload").
    #[error("empty payload")]
    Empty,
    /// key_id above 7.
    #[error("key_id out of range")]
    KeyId,
    /// peer-id above 24 bits.
    #[error("peer-id out of range")]
    PeerId,
    /// All 2^32−1 packet-ids of this key were used; the key must be replaced.
    #[error("packet ID roll over")]
    PacketIdExhausted,
    /// ring refused to seal (payload larger than the AEAD limit).
    #[error("AEAD seal failed")]
    Crypto,
}

/// Send half of one key state. `Sync`: one instance may be shared by all shards; the packet-id
/// is a lock-free fetch-add.
pub struct TxKey {
    key: LessSafeKey,
    iv: [u8; IMPLICIT_IV_LEN],
    /// Number of packet-ids handed out so far; the next id is `used + 1`. 64 bits so the
    /// fetch-add itself can never wrap; ids above `u32::MAX` are refused.
    used: AtomicU64,
    cipher: Cipher,
}

impl fmt::Debug for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxKey")
            .field("cipher", &self.cipher)
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TxKey {
    /// Builds a send key from a raw key (exactly `cipher.key_len()` bytes) and implicit IV.
    pub fn new(
        cipher: Cipher,
        key: &[u8],
        implicit_iv: [u8; IMPLICIT_IV_LEN],
    ) -> Result<Self, DataKeyError> {
        Ok(TxKey {
            key: make_key(cipher, key)?,
            iv: implicit_iv,
            used: AtomicU64::new(0),
            cipher,
        })
    }

    /// The cipher of this key.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The packet-id the next sealed packet will carry (saturates past `u32::MAX` as
    /// `u32::MAX as u64 + 1` meaning "exhausted").
    pub fn next_packet_id(&self) -> u64 {
        self.used.load(Ordering::Relaxed).saturating_add(1)
    }

    /// True once packet-ids reached `0xFF000000`: start a soft renegotiation (§15.1).
    pub fn wants_renegotiation(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= u64::from(RENEGOTIATE_PACKET_ID)
    }

    /// Test hook: pretend `used` packet-ids were already sent.
    #[cfg(test)]
    pub(crate) fn set_used(&self, used: u64) {
        self.used.store(used, Ordering::Relaxed);
    }

    /// Seals the payload at `buf[HEADROOM..HEADROOM + payload_len]` in place and writes the
    /// header and tag into the headroom. With `peer_id = Some(n)` the packet is `P_DATA_V2`
    /// (use [`NO_PEER_ID`] for "none"), otherwise `P_DATA_V1`. Returns the wire packet's range
    /// inside `buf`: `0..HEADROOM + payload_len` for V2, `3..HEADROOM + payload_len` for V1.
    pub fn seal_in_place(
        &self,
        key_id: u8,
        peer_id: Option<u32>,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<Range<usize>, SealError> {
        if key_id > 7 {
            return Err(SealError::KeyId);
        }
        if peer_id.is_some_and(|p| p > NO_PEER_ID) {
            return Err(SealError::PeerId);
        }
        if payload_len == 0 {
            return Err(SealError::Empty);
        }
        let end = HEADROOM
            .checked_add(payload_len)
            .ok_or(SealError::BufferTooSmall)?;
        let buf = buf.get_mut(..end).ok_or(SealError::BufferTooSmall)?;
        let id = self.take_packet_id()?;

        let (head, payload) = buf.split_at_mut(HEADROOM);
        let (hdr, tag_slot) = head.split_at_mut(8);
        hdr[4..8].copy_from_slice(&id.to_be_bytes());
        let (start, ad_range) = match peer_id {
            Some(p) => {
                let word = (u32::from((P_DATA_V2 << 3) | key_id) << 24) | p;
                hdr[0..4].copy_from_slice(&word.to_be_bytes());
                (0, 0..8)
            }
            None => {
                hdr[0..3].fill(0);
                hdr[3] = (P_DATA_V1 << 3) | key_id;
                (3, 4..8)
            }
        };
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(id, &self.iv), Aad::from(&hdr[ad_range]), payload)
            .map_err(|_| SealError::Crypto)?;
        tag_slot.copy_from_slice(tag.as_ref());
        Ok(start..end)
    }

    fn take_packet_id(&self) -> Result<u32, SealError> {
        let prev = self.used.fetch_add(1, Ordering::Relaxed);
        // prev + 1 is the id; ids above u32::MAX are refused, the counter itself (u64) cannot
        // realistically wrap.
        u32::try_from(prev.saturating_add(1)).map_err(|_| SealError::PacketIdExhausted)
    }
}

/// Receive half of one key state. Immutable and `Sync`; the replay window is passed in so
/// that its owner decides about locking.
pub struct RxKey {
    key: LessSafeKey,
    iv: [u8; IMPLICIT_IV_LEN],
    cipher: Cipher,
}

impl fmt::Debug for RxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxKey")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// Why a received data packet was dropped. Cheap to count per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than header + packet-id + tag.
    Truncated,
    /// Not a data opcode (`P_DATA_V1` / `P_DATA_V2`).
    BadOpcode,
    /// No usable key for the packet's key_id (for callers selecting the [`RxKey`]).
    UnknownKeyId,
    /// No session matches the peer-id / source address (for callers).
    UnknownPeer,
    /// Packet-id 0, or already seen.
    Replay,
    /// Older than the replay window (by count or by time).
    TooOld,
    /// Authentication tag did not verify.
    BadTag,
    /// Well-formed but without a single byte of ciphertext ("missing payload").
    Empty,
}

impl DropReason {
    /// Short stable name, for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadOpcode => "bad opcode",
            DropReason::UnknownKeyId => "unknown key_id",
            DropReason::UnknownPeer => "unknown peer",
            DropReason::Replay => "replay",
            DropReason::TooOld => "too old",
            DropReason::BadTag => "bad tag",
            DropReason::Empty => "missing payload",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for DropReason {}

/// Parsed data packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    /// `P_DATA_V2` (4-byte header) rather than `P_DATA_V1` (1 byte).
    pub v2: bool,
    /// key_id 0..=7.
    pub key_id: u8,
    /// V2 peer-id; `None` for V1 and for the V2 "no peer-id" value `0xFFFFFF` (in both cases
    /// the sender is found by source address).
    pub peer_id: Option<u32>,
}

impl DataHeader {
    /// Length of the opcode (+ peer-id) header: 4 for V2, 1 for V1.
    pub fn len(&self) -> usize {
        if self.v2 {
            4
        } else {
            1
        }
    }

    /// Never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Reads the opcode/key_id byte and, for `P_DATA_V2`, the peer-id.
pub fn parse_data_header(pkt: &[u8]) -> Result<DataHeader, DropReason> {
    let (&first, rest) = pkt.split_first().ok_or(DropReason::Truncated)?;
    let key_id = first & 0x07;
    match first >> 3 {
        P_DATA_V1 => Ok(DataHeader {
            v2: false,
            key_id,
            peer_id: None,
        }),
        P_DATA_V2 => {
            let p = rest.first_chunk::<3>().ok_or(DropReason::Truncated)?;
            let id = u32::from_be_bytes([0, p[0], p[1], p[2]]);
            Ok(DataHeader {
                v2: true,
                key_id,
                peer_id: (id != NO_PEER_ID).then_some(id),
            })
        }
        _ => Err(DropReason::BadOpcode),
    }
}

impl RxKey {
    /// Builds a receive key from a raw key (exactly `cipher.key_len()` bytes) and implicit IV.
    pub fn new(
        cipher: Cipher,
        key: &[u8],
        implicit_iv: [u8; IMPLICIT_IV_LEN],
    ) -> Result<Self, DataKeyError> {
        Ok(RxKey {
            key: make_key(cipher, key)?,
            iv: implicit_iv,
            cipher,
        })
    }

    /// The cipher of this key.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Verifies and decrypts a whole data packet (V1 or V2) in place and returns the
    /// plaintext, a subslice of `pkt`. The caller has already chosen this key by the packet's
    /// key_id (see [`parse_data_header`]) and passes that key state's replay window. The
    /// window is checked first and updated only after the tag verified. On error the packet
    /// contents are unspecified.
    pub fn open_in_place<'a>(
        &self,
        pkt: &'a mut [u8],
        replay: &mut ReplayWindow,
        now_secs: u64,
    ) -> Result<&'a mut [u8], DropReason> {
        let hdr = parse_data_header(pkt)?;
        let hlen = hdr.len();
        // header | packet-id(4) | tag(16) | ciphertext(>=1)
        let min = hlen + 4 + TAG_LEN;
        if pkt.len() < min {
            return Err(DropReason::Truncated);
        }
        if pkt.len() == min {
            return Err(DropReason::Empty);
        }
        let (head, ct) = pkt.split_at_mut(min);
        let (ad_all, tag_bytes) = head.split_at(hlen + 4);
        let pid_bytes = ad_all
            .get(hlen..hlen + 4)
            .and_then(|s| s.first_chunk::<4>())
            .ok_or(DropReason::Truncated)?;
        let id = u32::from_be_bytes(*pid_bytes);
        replay.check(id, now_secs)?;
        let ad: &[u8] = if hdr.v2 { ad_all } else { pid_bytes };
        let tag = Tag::try_from(tag_bytes).map_err(|_| DropReason::Truncated)?;
        self.key
            .open_in_place_separate_tag(nonce(id, &self.iv), Aad::from(ad), tag, ct, 0..)
            .map_err(|_| DropReason::BadTag)?;
        replay.commit(id, now_secs);
        Ok(ct)
    }
}

/// Error of [`ReplayWindow::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("replay window size must be 1..=65536 packets")]
pub struct ReplayWindowSizeError;

/// One step of the "highest packet-id over time" history used for time expiry.
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    /// First second of this bucket.
    start: u64,
    /// Last second a new highest id was recorded in this bucket.
    last: u64,
    /// Highest id after that commit.
    highest: u32,
}

// Power of two so the ring index is a mask; at most ~18 steps are live (t/granularity + 2).
const MARKS: usize = 32;

/// Receive replay protection for short-form (32-bit, no time) packet-ids, with OpenVPN's
/// `--replay-window n t` semantics (§11.4):
///
/// * id 0 is invalid; an id above the highest seen is accepted;
/// * an id `<=` highest is accepted only if `highest - id < n`, it was not seen before, and it
///   is not expired. An id is expired once a *newer* packet has been known for more than `t`
///   seconds (OpenVPN's `packet_id_reap`); `t = 0` disables expiry.
///
/// Seen ids are a ring bitmap of `n` rounded up to a power of two (≥ 64) bits. Expiry uses a
/// short history of (time, highest id) steps: the newest step older than `t` seconds marks
/// every id at or below its highest as expired. For `t <= 16` the history has 1-second
/// resolution and is exact; for longer times steps are `ceil(t/16)` seconds wide, which can only
/// delay expiry by less than one step (OpenVPN itself reaps only every 5 s).
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    size: u32,
    time: u64,
    /// Highest id committed; 0 = none yet.
    highest: u32,
    /// Ids `<=` this are expired.
    expired_upto: u32,
    bits: Box<[u64]>,
    /// `bits.len() * 64 - 1` (a power of two minus one).
    mask: u32,
    marks: [Mark; MARKS],
    marks_head: usize,
    marks_len: usize,
    granularity: u64,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::with_params(DEFAULT_REPLAY_WINDOW, DEFAULT_REPLAY_TIME)
    }
}

impl ReplayWindow {
    /// `--replay-window size time`: `size` packets (1..=65536), `time` seconds (0 = no expiry).
    pub fn new(size: u32, time_secs: u64) -> Result<Self, ReplayWindowSizeError> {
        if size == 0 || size > MAX_REPLAY_WINDOW {
            return Err(ReplayWindowSizeError);
        }
        Ok(Self::with_params(size, time_secs))
    }

    fn with_params(size: u32, time: u64) -> Self {
        let words = size.div_ceil(64).next_power_of_two();
        let mask = words * 64 - 1;
        ReplayWindow {
            size,
            time,
            highest: 0,
            expired_upto: 0,
            bits: vec![0u64; words as usize].into_boxed_slice(),
            mask,
            marks: [Mark::default(); MARKS],
            marks_head: 0,
            marks_len: 0,
            granularity: time.div_ceil(16).max(1),
        }
    }

    /// Highest packet-id accepted so far (0 = none).
    pub fn highest(&self) -> u32 {
        self.highest
    }

    fn bit(&self, id: u32) -> (usize, u64) {
        let i = id & self.mask;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn is_set(&self, id: u32) -> bool {
        let (w, b) = self.bit(id);
        self.bits.get(w).is_some_and(|word| word & b != 0)
    }

    fn set(&mut self, id: u32, on: bool) {
        let (w, b) = self.bit(id);
        if let Some(word) = self.bits.get_mut(w) {
            if on {
                *word |= b;
            } else {
                *word &= !b;
            }
        }
    }

    fn mark(&self, i: usize) -> Option<&Mark> {
        if i >= self.marks_len {
            return None;
        }
        self.marks.get((self.marks_head + i) % MARKS)
    }

    /// Expiry boundary as of `now` without mutating (ids `<=` result are expired).
    fn expired_boundary(&self, now: u64) -> u32 {
        let mut boundary = self.expired_upto;
        if self.time == 0 {
            return boundary;
        }
        for i in 0..self.marks_len {
            match self.mark(i) {
                Some(m) if m.last.saturating_add(self.time) < now => {
                    boundary = boundary.max(m.highest)
                }
                _ => break,
            }
        }
        boundary
    }

    /// Would `id` be accepted at `now`? Does not change the window.
    pub fn check(&self, id: u32, now_secs: u64) -> Result<(), DropReason> {
        if id == 0 {
            return Err(DropReason::Replay);
        }
        if id > self.highest {
            return Ok(());
        }
        if self.highest - id >= self.size {
            return Err(DropReason::TooOld);
        }
        if self.is_set(id) {
            return Err(DropReason::Replay);
        }
        if id <= self.expired_boundary(now_secs) {
            return Err(DropReason::TooOld);
        }
        Ok(())
    }

    /// Records `id` as seen at `now`. Call only after the packet authenticated and
    /// [`check`](Self::check) passed; committing an id outside the window is a no-op.
    pub fn commit(&mut self, id: u32, now_secs: u64) {
        if id == 0 {
            return;
        }
        if id > self.highest {
            let step = id - self.highest;
            if step > self.mask {
                self.bits.fill(0);
            } else {
                // Clear the slots of the skipped ids (holes) that reuse old ring positions.
                for hole in self.highest + 1..id {
                    self.set(hole, false);
                }
            }
            self.set(id, true);
            self.highest = id;
            self.record_mark(id, now_secs);
        } else if self.highest - id < self.size {
            self.set(id, true);
        }
        self.prune_marks(now_secs);
    }

    fn record_mark(&mut self, highest: u32, now: u64) {
        if self.time == 0 {
            return;
        }
        let back = self
            .marks_len
            .checked_sub(1)
            .map(|i| (self.marks_head + i) % MARKS);
        if let Some(m) = back.and_then(|i| self.marks.get_mut(i)) {
            if now < m.start.saturating_add(self.granularity) {
                m.last = m.last.max(now);
                m.highest = highest;
                return;
            }
        }
        if self.marks_len == MARKS {
            // Full (only with a clock jumping around): expire the oldest step early, which is
            // the safe direction.
            if let Some(m) = self.marks.get(self.marks_head) {
                self.expired_upto = self.expired_upto.max(m.highest);
            }
            self.marks_head = (self.marks_head + 1) % MARKS;
            self.marks_len -= 1;
        }
        let slot = (self.marks_head + self.marks_len) % MARKS;
        if let Some(m) = self.marks.get_mut(slot) {
            *m = Mark {
                start: now,
                last: now,
                highest,
            };
            self.marks_len += 1;
        }
    }

    fn prune_marks(&mut self, now: u64) {
        if self.time == 0 {
            return;
        }
        while let Some(m) = self.mark(0).copied() {
            if m.last.saturating_add(self.time) < now {
                self.expired_upto = self.expired_upto.max(m.highest);
                self.marks_head = (self.marks_head + 1) % MARKS;
                self.marks_len -= 1;
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> KeyBlock {
        let mut b = [0u8; KEY_BLOCK_LEN];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(7).wrapping_add(1);
        }
        KeyBlock::new(b)
    }

    fn ip_packet(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        for (i, x) in p.iter_mut().enumerate().skip(1) {
            *x = i as u8;
        }
        p
    }

    fn seal(tx: &TxKey, key_id: u8, peer: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADROOM + payload.len()];
        buf[HEADROOM..].copy_from_slice(payload);
        let r = tx
            .seal_in_place(key_id, peer, &mut buf, payload.len())
            .unwrap();
        buf[r].to_vec()
    }

    #[test]
    fn cipher_names() {
        assert_eq!(Cipher::from_name("aes-256-gcm"), Some(Cipher::Aes256Gcm));
        assert_eq!(Cipher::from_name("AES-128-GCM"), Some(Cipher::Aes128Gcm));
        assert_eq!(
            Cipher::from_name("ChaCha20-Poly1305"),
            Some(Cipher::ChaCha20Poly1305)
        );
        assert_eq!(Cipher::from_name("BF-CBC"), None);
        assert_eq!("AES-256-GCM".parse::<Cipher>(), Ok(Cipher::Aes256Gcm));
        assert!("none".parse::<Cipher>().is_err());
        for c in Cipher::ALL {
            assert_eq!(Cipher::from_name(c.name()), Some(c));
            assert_eq!(c.to_string(), c.name());
        }
    }

    /// §11.2 worked example: AES-256-GCM, server→client, key_id 0, peer-id 5, packet-id 1,
    /// 84-byte IPv4 packet. Checked against an independent computation with ring directly.
    #[test]
    fn worked_example_v2_known_answer() {
        let kb = block();
        let (tx, _) = data_keys(Cipher::Aes256Gcm, &kb, Side::Server).unwrap();
        let (_, rx) = data_keys(Cipher::Aes256Gcm, &kb, Side::Client).unwrap();
        let plain = ip_packet(84);
        let wire = seal(&tx, 0, Some(5), &plain);
        assert_eq!(wire.len(), 108);
        assert_eq!(&wire[..8], &[0x48, 0, 0, 5, 0, 0, 0, 1]);

        // Independent: key = keyblock[128..160], nonce = pid || keyblock[192..200],
        // AD = 8-byte header, output = ciphertext || tag (ring's append form).
        let kbb = kb.as_bytes();
        let key = LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, &kbb[128..160]).unwrap());
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&1u32.to_be_bytes());
        n[4..].copy_from_slice(&kbb[192..200]);
        let mut expect = plain.clone();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(n),
            Aad::from([0x48, 0, 0, 5, 0, 0, 0, 1]),
            &mut expect,
        )
        .unwrap();
        assert_eq!(&wire[8..24], &expect[84..], "tag before ciphertext");
        assert_eq!(&wire[24..], &expect[..84]);

        let mut pkt = wire.clone();
        let mut w = ReplayWindow::default();
        let got = rx.open_in_place(&mut pkt, &mut w, 100).unwrap();
        assert_eq!(got, &plain[..]);
        assert_eq!(w.highest(), 1);
    }

    #[test]
    fn v1_round_trip_and_ad_is_packet_id_only() {
        let kb = block();
        for c in Cipher::ALL {
            let (tx, _) = data_keys(c, &kb, Side::Client).unwrap();
            let (_, rx) = data_keys(c, &kb, Side::Server).unwrap();
            let plain = ip_packet(60);
            let mut buf = vec![0u8; HEADROOM + 60];
            buf[HEADROOM..].copy_from_slice(&plain);
            let r = tx.seal_in_place(3, None, &mut buf, 60).unwrap();
            assert_eq!(r, 3..HEADROOM + 60);
            let wire = buf[r].to_vec();
            assert_eq!(wire.len(), 1 + 4 + 16 + 60);
            assert_eq!(wire[0], 0x33);
            assert_eq!(&wire[1..5], &[0, 0, 0, 1]);

            // Independent ring computation: key = keyblock[0..klen], iv = [64..72], AD = pid.
            let kbb = kb.as_bytes();
            let key =
                LessSafeKey::new(UnboundKey::new(c.algorithm(), &kbb[..c.key_len()]).unwrap());
            let mut n = [0u8; 12];
            n[..4].copy_from_slice(&1u32.to_be_bytes());
            n[4..].copy_from_slice(&kbb[64..72]);
            let mut expect = plain.clone();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(n),
                Aad::from([0, 0, 0, 1]),
                &mut expect,
            )
            .unwrap();
            assert_eq!(&wire[5..21], &expect[60..]);
            assert_eq!(&wire[21..], &expect[..60]);

            let mut w = ReplayWindow::default();
            let mut pkt = wire.clone();
            assert_eq!(rx.open_in_place(&mut pkt, &mut w, 0).unwrap(), &plain[..]);
            // The V1 opcode byte is not authenticated: a different key_id still opens.
            let mut pkt = wire.clone();
            pkt[0] = 0x30;
            pkt[1..5].copy_from_slice(&[0, 0, 0, 1]);
            let mut w2 = ReplayWindow::default();
            assert!(rx.open_in_place(&mut pkt, &mut w2, 0).is_ok());
        }
    }

    #[test]
    fn every_cipher_round_trips_both_directions() {
        let kb = block();
        for c in Cipher::ALL {
            let (ctx, crx) = data_keys(c, &kb, Side::Client).unwrap();
            let (stx, srx) = data_keys(c, &kb, Side::Server).unwrap();
            let mut ws = ReplayWindow::default();
            let mut wc = ReplayWindow::default();
            for len in [1usize, 16, 1400] {
                let p = ip_packet(len);
                let mut a = seal(&ctx, 1, Some(77), &p);
                assert_eq!(srx.open_in_place(&mut a, &mut ws, 0).unwrap(), &p[..]);
                let mut b = seal(&stx, 1, None, &p);
                assert_eq!(crx.open_in_place(&mut b, &mut wc, 0).unwrap(), &p[..]);
                // Wrong direction key fails.
                let mut d = seal(&ctx, 1, Some(77), &p);
                let mut w = ReplayWindow::default();
                assert_eq!(
                    crx.open_in_place(&mut d, &mut w, 0),
                    Err(DropReason::BadTag)
                );
            }
        }
    }

    #[test]
    fn tampering_any_byte_fails_and_does_not_move_window() {
        let kb = block();
        let (tx, _) = data_keys(Cipher::Aes256Gcm, &kb, Side::Server).unwrap();
        let (_, rx) = data_keys(Cipher::Aes256Gcm, &kb, Side::Client).unwrap();
        let wire = seal(&tx, 2, Some(5), &ip_packet(40));
        for i in 0..wire.len() {
            let mut pkt = wire.clone();
            pkt[i] ^= 0x01;
            let mut w = ReplayWindow::default();
            let r = rx.open_in_place(&mut pkt, &mut w, 0);
            // Byte 0 flips the key_id (still V2, authenticated) → BadTag; flipping the
            // packet-id low bit to 0 makes it invalid → Replay.
            let expect = if i == 7 {
                DropReason::Replay
            } else {
                DropReason::BadTag
            };
            assert_eq!(r, Err(expect), "byte {i}");
            assert_eq!(w.highest(), 0, "window moved on forged packet {i}");
        }
        let mut pkt = wire.clone();
        let mut w = ReplayWindow::default();
        assert!(rx.open_in_place(&mut pkt, &mut w, 0).is_ok());
        let mut pkt = wire.clone();
        assert_eq!(
            rx.open_in_place(&mut pkt, &mut w, 0),
            Err(DropReason::Replay)
        );
    }

    #[test]
    fn malformed_packets() {
        let kb = block();
        let (_, rx) = data_keys(Cipher::Aes128Gcm, &kb, Side::Client).unwrap();
        let mut w = ReplayWindow::default();
        assert_eq!(
            rx.open_in_place(&mut [], &mut w, 0),
            Err(DropReason::Truncated)
        );
        assert_eq!(
            rx.open_in_place(&mut [0x48, 0], &mut w, 0),
            Err(DropReason::Truncated)
        );
        assert_eq!(
            rx.open_in_place(&mut [0x20; 40], &mut w, 0),
            Err(DropReason::BadOpcode)
        );
        let mut v2 = [0u8; 24];
        v2[0] = 0x48;
        v2[7] = 1;
        assert_eq!(rx.open_in_place(&mut v2, &mut w, 0), Err(DropReason::Empty));
        assert_eq!(
            rx.open_in_place(&mut v2[..23], &mut w, 0),
            Err(DropReason::Truncated)
        );
        let mut v1 = [0u8; 21];
        v1[0] = 0x30;
        assert_eq!(rx.open_in_place(&mut v1, &mut w, 0), Err(DropReason::Empty));
    }

    #[test]
    fn header_parse() {
        assert_eq!(
            parse_data_header(&[0x4b, 0, 1, 2]),
            Ok(DataHeader {
                v2: true,
                key_id: 3,
                peer_id: Some(0x102)
            })
        );
        assert_eq!(
            parse_data_header(&[0x48, 0xff, 0xff, 0xff]).map(|h| h.peer_id),
            Ok(None)
        );
        let h = parse_data_header(&[0x37]).unwrap();
        assert_eq!((h.v2, h.key_id, h.peer_id, h.len()), (false, 7, None, 1));
        assert_eq!(parse_data_header(&[0x48, 0]), Err(DropReason::Truncated));
        assert_eq!(parse_data_header(&[0x38]), Err(DropReason::BadOpcode));
        assert_eq!(parse_data_header(&[]), Err(DropReason::Truncated));
    }

    #[test]
    fn seal_argument_errors_do_not_consume_ids() {
        let kb = block();
        let (tx, _) = data_keys(Cipher::Aes256Gcm, &kb, Side::Client).unwrap();
        let mut buf = [0u8; 30];
        assert_eq!(
            tx.seal_in_place(8, None, &mut buf, 1),
            Err(SealError::KeyId)
        );
        assert_eq!(
            tx.seal_in_place(0, Some(0x0100_0000), &mut buf, 1),
            Err(SealError::PeerId)
        );
        assert_eq!(
            tx.seal_in_place(0, None, &mut buf, 0),
            Err(SealError::Empty)
        );
        assert_eq!(
            tx.seal_in_place(0, None, &mut buf, 7),
            Err(SealError::BufferTooSmall)
        );
        assert_eq!(
            tx.seal_in_place(0, None, &mut buf, usize::MAX),
            Err(SealError::BufferTooSmall)
        );
        assert_eq!(tx.next_packet_id(), 1);
        assert_eq!(tx.seal_in_place(0, None, &mut buf, 6), Ok(3..30));
        assert_eq!(tx.next_packet_id(), 2);
    }

    #[test]
    fn packet_id_never_wraps_and_asks_for_renegotiation() {
        let kb = block();
        let (tx, _) = data_keys(Cipher::Aes256Gcm, &kb, Side::Client).unwrap();
        assert!(!tx.wants_renegotiation());
        tx.set_used(u64::from(RENEGOTIATE_PACKET_ID) - 1);
        assert!(!tx.wants_renegotiation());
        let mut buf = [0u8; 25];
        tx.seal_in_place(0, None, &mut buf, 1).unwrap();
        assert_eq!(&buf[4..8], &RENEGOTIATE_PACKET_ID.to_be_bytes());
        assert!(tx.wants_renegotiation());
        tx.set_used(u64::from(u32::MAX) - 1);
        tx.seal_in_place(0, None, &mut buf, 1).unwrap();
        assert_eq!(&buf[4..8], &[0xff; 4]);
        assert_eq!(
            tx.seal_in_place(0, None, &mut buf, 1),
            Err(SealError::PacketIdExhausted)
        );
        assert_eq!(
            tx.seal_in_place(0, None, &mut buf, 1),
            Err(SealError::PacketIdExhausted)
        );
    }

    #[test]
    fn zero_key_rejected() {
        let kb = KeyBlock::new([0u8; KEY_BLOCK_LEN]);
        assert_eq!(
            data_keys(Cipher::Aes256Gcm, &kb, Side::Client).err(),
            Some(DataKeyError::ZeroKey)
        );
        assert_eq!(
            TxKey::new(Cipher::Aes128Gcm, &[1u8; 32], [0; 8]).err(),
            Some(DataKeyError::KeyLength)
        );
        assert!(format!("{kb:?}").contains("redacted"));
    }

    #[test]
    fn replay_in_order_duplicates_and_zero() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(0, 0), Err(DropReason::Replay));
        for id in 1..=200 {
            assert_eq!(w.check(id, 0), Ok(()));
            w.commit(id, 0);
            assert_eq!(w.check(id, 0), Err(DropReason::Replay));
        }
        assert_eq!(w.check(150, 0), Err(DropReason::Replay));
        assert_eq!(w.check(100, 0), Err(DropReason::TooOld));
    }

    #[test]
    fn replay_hole_filling_and_64_boundary() {
        let mut w = ReplayWindow::default();
        w.commit(1, 0);
        w.commit(100, 0);
        // Window = 37..=100. Holes 37..=99 acceptable once, 36 and below too old.
        assert_eq!(w.check(37, 0), Ok(()));
        assert_eq!(w.check(36, 0), Err(DropReason::TooOld));
        assert_eq!(w.check(1, 0), Err(DropReason::TooOld));
        for id in [99, 37, 50] {
            assert_eq!(w.check(id, 0), Ok(()));
            w.commit(id, 0);
            assert_eq!(w.check(id, 0), Err(DropReason::Replay));
        }
        assert_eq!(w.check(38, 0), Ok(()));
        // Jump by exactly 64: 101..163 are holes, 100 is at distance 64 → too old.
        w.commit(164, 0);
        assert_eq!(w.check(100, 0), Err(DropReason::TooOld));
        assert_eq!(w.check(101, 0), Ok(()));
        assert_eq!(w.check(163, 0), Ok(()));
        // Big jump clears everything.
        w.commit(1_000_000, 0);
        assert_eq!(w.check(1_000_000 - 63, 0), Ok(()));
        assert_eq!(w.check(1_000_000 - 64, 0), Err(DropReason::TooOld));
        // Ring slots reused by the jump are clear: an old bit must not leak.
        let mut w = ReplayWindow::default();
        for id in 1..=64 {
            w.commit(id, 0);
        }
        w.commit(95, 0); // ids 65..=94 are holes whose ring slots 1..=30 used before
        for id in 65..95 {
            assert_eq!(w.check(id, 0), Ok(()), "{id}");
        }
        for id in 32..=64 {
            assert_eq!(w.check(id, 0), Err(DropReason::Replay), "{id}");
        }
    }

    #[test]
    fn replay_larger_window() {
        let mut w = ReplayWindow::new(1000, 0).unwrap();
        w.commit(2000, 0);
        assert_eq!(w.check(1001, 0), Ok(()));
        assert_eq!(w.check(1000, 0), Err(DropReason::TooOld));
        w.commit(1001, 0);
        assert_eq!(w.check(1001, 0), Err(DropReason::Replay));
        assert!(ReplayWindow::new(0, 15).is_err());
        assert!(ReplayWindow::new(65537, 15).is_err());
        // Odd size below 64: still exact by count.
        let mut w = ReplayWindow::new(5, 0).unwrap();
        w.commit(10, 0);
        assert_eq!(w.check(6, 0), Ok(()));
        assert_eq!(w.check(5, 0), Err(DropReason::TooOld));
    }

    #[test]
    fn replay_time_expiry() {
        let mut w = ReplayWindow::default(); // 64 packets, 15 s
        w.commit(1, 100);
        w.commit(3, 100); // hole 2
        assert_eq!(
            w.check(2, 115),
            Ok(()),
            "newer packet known for exactly 15 s"
        );
        assert_eq!(w.check(2, 116), Err(DropReason::TooOld));
        // A later newer packet does not revive the hole.
        w.commit(4, 200);
        assert_eq!(w.check(2, 200), Err(DropReason::TooOld));
        // Hole 5 created at 200 by id 6 — valid until 215.
        w.commit(6, 200);
        assert_eq!(w.check(5, 210), Ok(()));
        w.commit(5, 210);
        assert_eq!(w.check(5, 210), Err(DropReason::Replay));
        // Time 0 disables expiry.
        let mut w = ReplayWindow::new(64, 0).unwrap();
        w.commit(3, 0);
        assert_eq!(w.check(2, 1_000_000), Ok(()));
        // Long time window (coarse steps) still expires eventually and never early.
        let mut w = ReplayWindow::new(64, 3600).unwrap();
        w.commit(3, 1000);
        assert_eq!(w.check(2, 4600), Ok(()));
        assert_eq!(w.check(2, 1000 + 3600 + 226), Err(DropReason::TooOld));
        // Clock going backwards never panics.
        w.commit(10, 5);
        assert_eq!(w.check(9, 0), Ok(()));
    }

    #[test]
    fn replay_many_seconds_of_traffic() {
        // One packet per second for an hour with hole every 10th id; holes older than 15 s
        // must be expired, recent ones accepted; the history never overflows.
        let mut w = ReplayWindow::new(64, 15).unwrap();
        for t in 1..3600u64 {
            let id = t as u32;
            if id % 10 != 0 {
                w.commit(id, t);
            }
        }
        assert_eq!(w.check(3590, 3599), Ok(()));
        assert_eq!(w.check(3570, 3599), Err(DropReason::TooOld));
    }

    #[test]
    fn keys_are_send_and_sync() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<TxKey>();
        assert_sync::<RxKey>();
        assert_sync::<ReplayWindow>();
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic and never move the window.
        #[test]
        fn open_arbitrary_bytes_never_panics(mut pkt in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let kb = block();
            let (_, rx) = data_keys(Cipher::Aes256Gcm, &kb, Side::Client).unwrap();
            let mut w = ReplayWindow::default();
            proptest::prop_assert!(rx.open_in_place(&mut pkt, &mut w, 0).is_err());
            proptest::prop_assert_eq!(w.highest(), 0);
        }

        /// The window agrees with a naive model (set of seen ids, count limit only).
        #[test]
        fn replay_matches_model(ids in proptest::collection::vec(1u32..300, 1..400)) {
            let mut w = ReplayWindow::new(64, 0).unwrap();
            let mut seen = std::collections::BTreeSet::new();
            let mut highest = 0u32;
            for id in ids {
                let model_ok = id > highest || (highest - id < 64 && !seen.contains(&id));
                proptest::prop_assert_eq!(w.check(id, 0).is_ok(), model_ok, "id {}", id);
                if model_ok {
                    w.commit(id, 0);
                    seen.insert(id);
                    highest = highest.max(id);
                }
            }
        }
    }

    #[test]
    fn key_block_slots() {
        let kb = block();
        let b = kb.as_bytes();
        assert_eq!(kb.cipher_slot(Dir::ClientToServer), &b[0..64]);
        assert_eq!(kb.cipher_slot(Dir::ServerToClient), &b[128..192]);
        assert_eq!(&kb.implicit_iv(Dir::ClientToServer)[..], &b[64..72]);
        assert_eq!(&kb.implicit_iv(Dir::ServerToClient)[..], &b[192..200]);
    }
}
