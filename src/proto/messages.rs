//! Control-channel text messages, peer-info, cipher negotiation and data-channel magic
//! packets (wire spec §8.4, §12, §13, §14).
//!
//! Owns: parsing/encoding of the NUL-framed ASCII messages exchanged inside TLS after the
//! key-method 2 exchange (`PUSH_REQUEST`, `PUSH_REPLY`, `AUTH_FAILED`, ...), splitting a push
//! list into `PUSH_REPLY` messages exactly like a 2.6 server and re-assembling them on the
//! client, the pushed-option tokenizer, peer-info (`IV_*`) parsing and building, NCP, the
//! server's generated push options, and the keepalive/OCC plaintext magics.
//!
//! Invariants:
//! * Received messages are ASCII-printable after stripping trailing CR/LF; anything else is a
//!   typed error, never a panic.
//! * Options we push never contain a comma (it cannot be escaped) or a non-printable byte,
//!   and no `PUSH_REPLY` message reaches the 1024-byte bundle of the 2.6 server.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::data::Cipher;

/// `PUSH_REPLY` bundle size of the 2.6 server (`PUSH_BUNDLE_SIZE`).
pub const PUSH_BUNDLE_SIZE: usize = 1024;
/// A new `PUSH_REPLY` message starts when the next option would reach this length
/// (`PUSH_BUNDLE_SIZE - 84`).
pub const PUSH_SAFE_CAP: usize = PUSH_BUNDLE_SIZE - 84;
/// Upper bound for a buffered, not yet NUL-terminated control message.
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Upper bound of `PUSH_REPLY` parts the client accepts for one reply.
pub const MAX_PUSH_PARTS: usize = 64;
/// Maximum tokens in an option line (OpenVPN `MAX_PARMS`).
pub const MAX_OPTION_PARAMS: usize = 16;
/// Maximum length of one token (OpenVPN `OPTION_PARM_SIZE` minus the NUL).
pub const MAX_OPTION_PARAM_LEN: usize = 255;

const PUSH_REPLY: &str = "PUSH_REPLY";

/// Errors of this module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Received message with a byte outside printable ASCII (or an embedded CR/LF).
    #[error("control message contains non-printable characters")]
    NonPrintable,
    /// More than [`MAX_CONTROL_MESSAGE`] bytes without a NUL terminator.
    #[error("control message too long")]
    TooLong,
    /// A push option contains a comma, which cannot be escaped.
    #[error("push option contains a comma: {0:?}")]
    Comma(String),
    /// A push option contains a NUL, CR/LF or other non-printable byte.
    #[error("push option contains a non-printable character: {0:?}")]
    BadOption(String),
    /// A single push option does not fit into a `PUSH_REPLY` message.
    #[error("push option too long ({0} bytes)")]
    OptionTooLong(usize),
    /// A multi-part `PUSH_REPLY` never ended.
    #[error("too many PUSH_REPLY continuation messages")]
    TooManyParts,
}

/// A control-channel message (§13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMessage {
    /// `PUSH_REQUEST` (client → server).
    PushRequest,
    /// `PUSH_REPLY[,opt...]`. `options` excludes `push-continuation`, whose value is in
    /// `continuation` (2 = more follows, 1 = last part).
    PushReply {
        /// Option lines in order.
        options: Vec<String>,
        /// Value of a `push-continuation N` option, if present.
        continuation: Option<u32>,
    },
    /// `AUTH_FAILED[,reason]`.
    AuthFailed(Option<String>),
    /// `AUTH_PENDING[,extra]` (e.g. `timeout 60`).
    AuthPending(Option<String>),
    /// `RESTART[,[flags]message]`.
    Restart(Option<String>),
    /// `HALT[,message]`.
    Halt(Option<String>),
    /// `INFO,text`.
    Info(String),
    /// `INFO_PRE,text`.
    InfoPre(String),
    /// `EXIT` (client → server, with `protocol-flags cc-exit`).
    Exit,
    /// `CR_RESPONSE,base64`.
    CrResponse(String),
    /// Anything else (logged and ignored by OpenVPN).
    Unknown(String),
}

/// `NAME` → `None`, `NAME,rest` → `Some(rest)`; `None` overall if `s` is neither.
fn after_name<'a>(s: &'a str, name: &str) -> Option<Option<&'a str>> {
    let rest = s.strip_prefix(name)?;
    if rest.is_empty() {
        Some(None)
    } else {
        rest.strip_prefix(',').map(Some)
    }
}

fn opt_string(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `push-continuation N` → `Some(N)`.
fn continuation_value(option: &str) -> Option<u32> {
    let mut it = option.split_ascii_whitespace();
    if it.next()? != "push-continuation" {
        return None;
    }
    it.next()?.parse().ok()
}

impl ControlMessage {
    /// Parses one message (the bytes between NULs). Trailing CR/LF are stripped; any other
    /// byte outside printable ASCII is an error.
    pub fn parse(raw: &[u8]) -> Result<ControlMessage, MessageError> {
        let mut end = raw.len();
        while end > 0 && matches!(raw.get(end - 1), Some(b'\r' | b'\n')) {
            end -= 1;
        }
        let body = raw.get(..end).unwrap_or_default();
        if !body.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(MessageError::NonPrintable);
        }
        let s = std::str::from_utf8(body).map_err(|_| MessageError::NonPrintable)?;
        Ok(Self::parse_text(s))
    }

    fn parse_text(s: &str) -> ControlMessage {
        if let Some(rest) = s.strip_prefix("AUTH_FAILED") {
            // OpenVPN matches the prefix; a reason only follows a comma.
            return ControlMessage::AuthFailed(opt_string(rest.strip_prefix(',')));
        }
        if s == "PUSH_REQUEST" {
            return ControlMessage::PushRequest;
        }
        if let Some(rest) = after_name(s, PUSH_REPLY) {
            let mut options = Vec::new();
            let mut continuation = None;
            for o in rest.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
                match continuation_value(o) {
                    Some(n) => continuation = Some(n),
                    None => options.push(o.to_owned()),
                }
            }
            return ControlMessage::PushReply {
                options,
                continuation,
            };
        }
        if let Some(rest) = after_name(s, "RESTART") {
            return ControlMessage::Restart(opt_string(rest));
        }
        if let Some(rest) = after_name(s, "HALT") {
            return ControlMessage::Halt(opt_string(rest));
        }
        if let Some(rest) = after_name(s, "INFO_PRE") {
            return ControlMessage::InfoPre(rest.unwrap_or("").to_owned());
        }
        if let Some(rest) = after_name(s, "INFO") {
            return ControlMessage::Info(rest.unwrap_or("").to_owned());
        }
        if let Some(rest) = after_name(s, "CR_RESPONSE") {
            return ControlMessage::CrResponse(rest.unwrap_or("").to_owned());
        }
        if let Some(rest) = after_name(s, "AUTH_PENDING") {
            return ControlMessage::AuthPending(opt_string(rest));
        }
        if s == "EXIT" {
            return ControlMessage::Exit;
        }
        ControlMessage::Unknown(s.to_owned())
    }

    /// The message text without NUL.
    pub fn to_text(&self) -> String {
        fn with(name: &str, rest: Option<&str>) -> String {
            match rest {
                Some(r) => format!("{name},{r}"),
                None => name.to_owned(),
            }
        }
        match self {
            ControlMessage::PushRequest => "PUSH_REQUEST".to_owned(),
            ControlMessage::PushReply {
                options,
                continuation,
            } => {
                let mut s = PUSH_REPLY.to_owned();
                for o in options {
                    s.push(',');
                    s.push_str(o);
                }
                if let Some(n) = continuation {
                    s.push_str(&format!(",push-continuation {n}"));
                }
                s
            }
            ControlMessage::AuthFailed(r) => with("AUTH_FAILED", r.as_deref()),
            ControlMessage::AuthPending(r) => with("AUTH_PENDING", r.as_deref()),
            ControlMessage::Restart(r) => with("RESTART", r.as_deref()),
            ControlMessage::Halt(r) => with("HALT", r.as_deref()),
            ControlMessage::Info(t) => with("INFO", Some(t)),
            ControlMessage::InfoPre(t) => with("INFO_PRE", Some(t)),
            ControlMessage::Exit => "EXIT".to_owned(),
            ControlMessage::CrResponse(t) => with("CR_RESPONSE", Some(t)),
            ControlMessage::Unknown(t) => t.clone(),
        }
    }

    /// Wire form: text followed by a NUL (send as one TLS record).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.to_text().into_bytes();
        v.push(0);
        v
    }
}

impl fmt::Display for ControlMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Splits the TLS plaintext stream into NUL-terminated messages. Bytes after the last NUL
/// are kept until more data arrives.
#[derive(Debug, Default)]
pub struct ControlMessageReader {
    pending: Vec<u8>,
}

impl ControlMessageReader {
    /// Empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends plaintext read from TLS.
    pub fn feed(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
    }

    /// Next complete message. Empty messages (consecutive NULs) are skipped. A partial
    /// message longer than [`MAX_CONTROL_MESSAGE`] is discarded with [`MessageError::TooLong`].
    pub fn next_message(&mut self) -> Option<Result<ControlMessage, MessageError>> {
        loop {
            let Some(pos) = self.pending.iter().position(|&b| b == 0) else {
                if self.pending.len() > MAX_CONTROL_MESSAGE {
                    self.pending.clear();
                    return Some(Err(MessageError::TooLong));
                }
                return None;
            };
            let msg: Vec<u8> = self.pending.drain(..=pos).collect();
            let body = msg.get(..pos).unwrap_or_default();
            if body.is_empty() {
                continue;
            }
            return Some(ControlMessage::parse(body));
        }
    }
}

fn check_push_option(o: &str) -> Result<(), MessageError> {
    if o.contains(',') {
        return Err(MessageError::Comma(o.to_owned()));
    }
    if !o.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(MessageError::BadOption(o.to_owned()));
    }
    Ok(())
}

/// Splits a push list into `PUSH_REPLY` message texts (without NUL) exactly like the 2.6
/// server (`send_push_reply`): a new message starts when the current length plus the next
/// option's length reaches 940; all but the last end in `push-continuation 2`, the last in
/// `push-continuation 1` when split; a single message has none; an empty list gives
/// `PUSH_REPLY`.
pub fn build_push_reply(options: &[String]) -> Result<Vec<String>, MessageError> {
    let mut msgs = Vec::new();
    let mut cur = String::with_capacity(PUSH_BUNDLE_SIZE);
    cur.push_str(PUSH_REPLY);
    let mut multi = false;
    for o in options {
        check_push_option(o)?;
        if PUSH_REPLY.len() + o.len() >= PUSH_SAFE_CAP {
            return Err(MessageError::OptionTooLong(o.len()));
        }
        if cur.len() + o.len() >= PUSH_SAFE_CAP {
            cur.push_str(",push-continuation 2");
            msgs.push(std::mem::replace(&mut cur, PUSH_REPLY.to_owned()));
            multi = true;
        }
        cur.push(',');
        cur.push_str(o);
    }
    if multi {
        cur.push_str(",push-continuation 1");
    }
    msgs.push(cur);
    Ok(msgs)
}

/// Client side: collects the parts of a possibly split `PUSH_REPLY`.
#[derive(Debug, Default)]
pub struct PushReplyAccumulator {
    options: Vec<String>,
    parts: usize,
}

impl PushReplyAccumulator {
    /// Empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one `PUSH_REPLY`'s options and continuation value. Returns the complete option
    /// list (in order, without `push-continuation`) once a part without continuation or with
    /// `push-continuation 1` arrives; `None` while `push-continuation 2` parts come in.
    pub fn feed(
        &mut self,
        options: Vec<String>,
        continuation: Option<u32>,
    ) -> Result<Option<Vec<String>>, MessageError> {
        self.parts += 1;
        if self.parts > MAX_PUSH_PARTS {
            self.reset();
            return Err(MessageError::TooManyParts);
        }
        self.options.extend(options);
        if continuation == Some(2) {
            return Ok(None);
        }
        self.parts = 0;
        Ok(Some(std::mem::take(&mut self.options)))
    }

    /// Convenience: feeds a parsed message; other message kinds are ignored (`Ok(None)`).
    pub fn feed_message(
        &mut self,
        msg: ControlMessage,
    ) -> Result<Option<Vec<String>>, MessageError> {
        match msg {
            ControlMessage::PushReply {
                options,
                continuation,
            } => self.feed(options, continuation),
            _ => Ok(None),
        }
    }

    /// Drops a partial reply (e.g. on reconnect).
    pub fn reset(&mut self) {
        self.options.clear();
        self.parts = 0;
    }
}

/// Errors of [`tokenize_option`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    /// `"` without its closing quote.
    #[error("no closing quotation (\")")]
    UnclosedQuote,
    /// `'` without its closing quote.
    #[error("no closing single quotation (')")]
    UnclosedSingleQuote,
    /// Backslash before something other than `\`, `"` or whitespace.
    #[error("bad backslash ('\\') usage")]
    BadBackslash,
    /// A token longer than [`MAX_OPTION_PARAM_LEN`].
    #[error("parameter too long")]
    ParamTooLong,
    /// More than [`MAX_OPTION_PARAMS`] tokens.
    #[error("too many parameters")]
    TooManyParams,
}

/// Splits one option line into tokens like OpenVPN's config parser (`parse_line`):
/// whitespace separates; `"..."` quotes with `\\`, `\"` and `\<space>` escapes; `'...'` quotes
/// literally; outside single quotes a backslash escapes `\`, `"` or whitespace (anything else
/// is an error); `#` or `;` at the start of a token begins a comment.
pub fn tokenize_option(line: &str) -> Result<Vec<String>, TokenizeError> {
    #[derive(PartialEq)]
    enum St {
        Initial,
        Unquoted,
        Quoted,
        SQuoted,
    }
    let mut out = Vec::new();
    let mut tok = String::new();
    let mut st = St::Initial;
    let mut backslash = false;
    // A trailing NUL-equivalent (None) ends the last token like OpenVPN's loop does.
    let chars = line.chars().map(Some).chain(std::iter::once(None));
    for c in chars {
        let is_space = c.is_none_or(|c| c.is_whitespace());
        if !backslash && c == Some('\\') && st != St::SQuoted {
            backslash = true;
            continue;
        }
        let mut emit: Option<char> = None;
        let mut done = false;
        match st {
            St::Initial => {
                if !is_space {
                    if matches!(c, Some(';' | '#')) {
                        break;
                    }
                    if !backslash && c == Some('"') {
                        st = St::Quoted;
                    } else if !backslash && c == Some('\'') {
                        st = St::SQuoted;
                    } else {
                        emit = c;
                        st = St::Unquoted;
                    }
                }
            }
            St::Unquoted => {
                if !backslash && is_space {
                    done = true;
                } else {
                    emit = c;
                }
            }
            St::Quoted => {
                if !backslash && c == Some('"') {
                    done = true;
                } else {
                    emit = c;
                }
            }
            St::SQuoted => {
                if c == Some('\'') {
                    done = true;
                } else {
                    emit = c;
                }
            }
        }
        if backslash {
            if let Some(e) = emit {
                if !(e == '\\' || e == '"' || e.is_whitespace()) {
                    return Err(TokenizeError::BadBackslash);
                }
            }
        }
        backslash = false;
        if let Some(e) = emit {
            if tok.len() + e.len_utf8() > MAX_OPTION_PARAM_LEN {
                return Err(TokenizeError::ParamTooLong);
            }
            tok.push(e);
        }
        if done {
            if out.len() == MAX_OPTION_PARAMS {
                return Err(TokenizeError::TooManyParams);
            }
            out.push(std::mem::take(&mut tok));
            st = St::Initial;
        }
        if c.is_none() {
            break;
        }
    }
    match st {
        St::Quoted => Err(TokenizeError::UnclosedQuote),
        St::SQuoted => Err(TokenizeError::UnclosedSingleQuote),
        _ => Ok(out),
    }
}

/// IV_PROTO bit: supports `P_DATA_V2` and pushed `peer-id`.
pub const IV_PROTO_DATA_V2: u32 = 1 << 1;
/// IV_PROTO bit: server may push without waiting for `PUSH_REQUEST`.
pub const IV_PROTO_REQUEST_PUSH: u32 = 1 << 2;
/// IV_PROTO bit: supports TLS-EKM key derivation.
pub const IV_PROTO_TLS_KEY_EXPORT: u32 = 1 << 3;
/// IV_PROTO bit: understands `AUTH_PENDING,timeout N`.
pub const IV_PROTO_AUTH_PENDING_KW: u32 = 1 << 4;
/// IV_PROTO bit: peer runs in p2p mode.
pub const IV_PROTO_NCP_P2P: u32 = 1 << 5;
/// IV_PROTO bit: understands the pushed `dns` option.
pub const IV_PROTO_DNS_OPTION: u32 = 1 << 6;
/// IV_PROTO bit: supports the `EXIT` control message and `protocol-flags`.
pub const IV_PROTO_CC_EXIT_NOTIFY: u32 = 1 << 7;
/// IV_PROTO bit: understands `AUTH_FAILED,TEMP`.
pub const IV_PROTO_AUTH_FAIL_TEMP: u32 = 1 << 8;
/// IV_PROTO bit: supports dynamic tls-crypt (fwd does not).
pub const IV_PROTO_DYN_TLS_CRYPT: u32 = 1 << 9;
/// What a stock 2.6 client announces (990).
pub const IV_PROTO_OPENVPN_26: u32 = IV_PROTO_DATA_V2
    | IV_PROTO_REQUEST_PUSH
    | IV_PROTO_TLS_KEY_EXPORT
    | IV_PROTO_AUTH_PENDING_KW
    | IV_PROTO_DNS_OPTION
    | IV_PROTO_CC_EXIT_NOTIFY
    | IV_PROTO_AUTH_FAIL_TEMP
    | IV_PROTO_DYN_TLS_CRYPT;
/// What the fwd client announces: peer-id/`P_DATA_V2`, push without request, TLS-EKM,
/// `AUTH_PENDING` keywords and `EXIT`/`protocol-flags` (158). No dyn-tls-crypt, no `dns`.
pub const IV_PROTO_FWD: u32 = IV_PROTO_DATA_V2
    | IV_PROTO_REQUEST_PUSH
    | IV_PROTO_TLS_KEY_EXPORT
    | IV_PROTO_AUTH_PENDING_KW
    | IV_PROTO_CC_EXIT_NOTIFY;

/// Parsed client peer-info (§8.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// `IV_VER`.
    pub iv_ver: Option<String>,
    /// `IV_PROTO` bit field, 0 if absent or unparsable.
    pub iv_proto: u32,
    /// `IV_CIPHERS` split at `:` (names as sent).
    pub iv_ciphers: Option<Vec<String>>,
    /// `IV_NCP`.
    pub iv_ncp: Option<u32>,
    /// `IV_MTU`.
    pub iv_mtu: Option<u32>,
    /// `IV_PLAT`.
    pub iv_plat: Option<String>,
    /// The whole string as received.
    pub raw: String,
}

/// Leading decimal digits like C's `%d`/`atoi` (no sign support needed here).
fn leading_u32(s: &str) -> Option<u32> {
    s.get(..s.bytes().take_while(u8::is_ascii_digit).count())?
        .parse()
        .ok()
}

impl PeerInfo {
    /// Parses `NAME=VALUE` lines; unknown names are kept only in `raw`.
    pub fn parse(raw: &str) -> PeerInfo {
        let mut p = PeerInfo {
            raw: raw.to_owned(),
            ..PeerInfo::default()
        };
        for line in raw.split('\n') {
            let line = line.trim_end_matches('\r');
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "IV_VER" => p.iv_ver = Some(v.to_owned()),
                "IV_PROTO" => p.iv_proto = leading_u32(v).unwrap_or(0),
                "IV_CIPHERS" => {
                    p.iv_ciphers = Some(
                        v.split(':')
                            .filter(|c| !c.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                "IV_NCP" => p.iv_ncp = leading_u32(v),
                "IV_MTU" => p.iv_mtu = leading_u32(v),
                "IV_PLAT" => p.iv_plat = Some(v.to_owned()),
                _ => {}
            }
        }
        p
    }

    /// Value of any `NAME=` line in `raw`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw.split('\n').find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k == name).then_some(v.trim_end_matches('\r'))
        })
    }

    /// Whether all bits of `bits` are set in `IV_PROTO`.
    pub fn has_proto(&self, bits: u32) -> bool {
        self.iv_proto & bits == bits
    }

    /// Client supports NCP (`IV_NCP >= 2` or `IV_CIPHERS` present): push `cipher` to it.
    pub fn supports_ncp(&self) -> bool {
        self.iv_ciphers.is_some() || self.iv_ncp.is_some_and(|n| n >= 2)
    }

    /// The client's cipher list as the server sees it (§12.1): `IV_CIPHERS`, else
    /// AES-256-GCM:AES-128-GCM for `IV_NCP >= 2`, else empty. Unsupported names are skipped.
    pub fn client_ciphers(&self) -> Vec<Cipher> {
        match &self.iv_ciphers {
            Some(list) => list.iter().filter_map(|n| Cipher::from_name(n)).collect(),
            None if self.iv_ncp.is_some_and(|n| n >= 2) => {
                vec![Cipher::Aes256Gcm, Cipher::Aes128Gcm]
            }
            None => Vec::new(),
        }
    }
}

/// The peer-info string the fwd client sends (layout of a 2.6 client, §8.4): `IV_VER`,
/// `IV_PLAT=linux`, `IV_TCPNL=1`, `IV_MTU`, `IV_NCP=2` (only if both AES-GCM ciphers are in
/// `ciphers`), `IV_CIPHERS`, `IV_PROTO`; every line `\n`-terminated. No compression stubs are
/// announced since fwd does not implement compression framing.
pub fn peer_info_string(ciphers: &[Cipher], iv_proto: u32, iv_mtu: u16) -> String {
    let mut s = format!(
        "IV_VER=2.6.14-fwd-{}\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU={iv_mtu}\n",
        env!("CARGO_PKG_VERSION")
    );
    if ciphers.contains(&Cipher::Aes128Gcm) && ciphers.contains(&Cipher::Aes256Gcm) {
        s.push_str("IV_NCP=2\n");
    }
    let names: Vec<&str> = ciphers.iter().map(|c| c.name()).collect();
    s.push_str(&format!("IV_CIPHERS={}\n", names.join(":")));
    s.push_str(&format!("IV_PROTO={iv_proto}\n"));
    s
}

/// NCP failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NcpError {
    /// No common cipher and no applicable fallback; the AUTH_FAILED reason of 2.6.
    #[error("Data channel cipher negotiation failed (no shared cipher)")]
    NoSharedCipher,
}

/// Server-side cipher choice (§12.1): the first cipher of `server_list` that is in the
/// client's list, or — only for clients without `IV_CIPHERS` — equal to the client's OCC
/// `cipher` (`occ_cipher`, see `keys::occ_option`). If nothing matches and the client sent no
/// NCP information (no `IV_CIPHERS`, `IV_NCP < 2`), `fallback` (`--data-ciphers-fallback`)
/// is used when set.
pub fn negotiate_cipher(
    server_list: &[Cipher],
    peer: &PeerInfo,
    occ_cipher: Option<&str>,
    fallback: Option<Cipher>,
) -> Result<Cipher, NcpError> {
    let client = peer.client_ciphers();
    let occ = if peer.iv_ciphers.is_none() {
        occ_cipher.and_then(Cipher::from_name)
    } else {
        None
    };
    if let Some(c) = server_list
        .iter()
        .copied()
        .find(|c| client.contains(c) || occ == Some(*c))
    {
        return Ok(c);
    }
    if !peer.supports_ncp() {
        if let Some(f) = fallback {
            return Ok(f);
        }
    }
    Err(NcpError::NoSharedCipher)
}

/// Keepalive ping plaintext (exactly these 16 bytes).
pub const PING_MAGIC: [u8; 16] = [
    0x2a, 0x18, 0x7b, 0xf3, 0x64, 0x1e, 0xb4, 0xcb, 0x07, 0xed, 0x2d, 0x0a, 0x98, 0x1f, 0xc7, 0x48,
];
/// Prefix of OCC data-channel messages; the OCC opcode byte follows.
pub const OCC_MAGIC: [u8; 16] = [
    0x28, 0x7f, 0x34, 0x6b, 0xd4, 0xef, 0x7a, 0x81, 0x2d, 0x56, 0xb8, 0xd3, 0xaf, 0xc5, 0x45, 0x9c,
];
/// OCC opcode `OCC_REQUEST`.
pub const OCC_REQUEST: u8 = 0;
/// OCC opcode `OCC_REPLY`.
pub const OCC_REPLY: u8 = 1;
/// OCC opcode `OCC_MTU_LOAD_REQUEST`.
pub const OCC_MTU_LOAD_REQUEST: u8 = 2;
/// OCC opcode `OCC_MTU_LOAD`.
pub const OCC_MTU_LOAD: u8 = 3;
/// OCC opcode `OCC_MTU_REQUEST`.
pub const OCC_MTU_REQUEST: u8 = 4;
/// OCC opcode `OCC_MTU_REPLY`.
pub const OCC_MTU_REPLY: u8 = 5;
/// OCC opcode `OCC_EXIT`.
pub const OCC_EXIT: u8 = 6;
/// Plaintext of an explicit-exit-notify OCC packet (magic || `OCC_EXIT`).
pub const OCC_EXIT_PACKET: [u8; 17] = {
    let mut p = [OCC_EXIT; 17];
    let mut i = 0;
    while i < 16 {
        p[i] = OCC_MAGIC[i];
        i += 1;
    }
    p
};

/// What a decrypted data-channel plaintext is (§14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plain {
    /// Keepalive ping: drop, it only refreshes the receive timer.
    Ping,
    /// `OCC_EXIT`: the peer is going away.
    OccExit,
    /// Another OCC message (opcode); never forwarded to tun.
    Occ(u8),
    /// OCC magic without opcode byte; drop.
    OccEmpty,
    /// Anything else: a tunnelled packet.
    Ip,
}

/// Classifies a plaintext (after compression framing was removed).
pub fn classify_plaintext(p: &[u8]) -> Plain {
    if p == PING_MAGIC {
        return Plain::Ping;
    }
    match p.split_first_chunk::<16>() {
        Some((magic, rest)) if *magic == OCC_MAGIC => match rest.first() {
            Some(&OCC_EXIT) => Plain::OccExit,
            Some(&op) => Plain::Occ(op),
            None => Plain::OccEmpty,
        },
        _ => Plain::Ip,
    }
}

/// Inputs of the per-client options a 2.6 server appends to the push list
/// (`prepare_push_reply`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushTail {
    /// Client IPv6 address, prefix length of the server's `--ifconfig-ipv6`, server's own
    /// tun IPv6 address.
    pub ifconfig_ipv6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
    /// Client IPv4 address and netmask (subnet) or remote (net30).
    pub ifconfig: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `peer-id N` (give it when the client set IV_PROTO bit 1).
    pub peer_id: Option<u32>,
    /// `auth-token TOKEN` (only with `--auth-gen-token`).
    pub auth_token: Option<String>,
    /// `cipher NAME` (give it when the client supports NCP).
    pub cipher: Option<Cipher>,
    /// The client's IV_PROTO (bit 7 selects `protocol-flags` over `key-derivation`).
    pub iv_proto: u32,
    /// Whether the server uses TLS-EKM for this client.
    pub ekm: bool,
    /// `tun-mtu N` (give the server's tun-mtu when the client sent IV_MTU).
    pub tun_mtu: Option<u16>,
}

/// The generated per-client push options in the 2.6 order: `ifconfig-ipv6`, `ifconfig`,
/// `peer-id`, `auth-token`, `cipher`, `key-derivation tls-ekm` or `protocol-flags cc-exit
/// [tls-ekm]`, `tun-mtu`. fwd never announces `dyn-tls-crypt`.
pub fn server_push_tail(t: &PushTail) -> Vec<String> {
    let mut v = Vec::with_capacity(7);
    if let Some((addr, bits, remote)) = t.ifconfig_ipv6 {
        v.push(format!("ifconfig-ipv6 {addr}/{bits} {remote}"));
    }
    if let Some((local, mask)) = t.ifconfig {
        v.push(format!("ifconfig {local} {mask}"));
    }
    if let Some(id) = t.peer_id {
        v.push(format!("peer-id {id}"));
    }
    if let Some(tok) = &t.auth_token {
        v.push(format!("auth-token {tok}"));
    }
    if let Some(c) = t.cipher {
        v.push(format!("cipher {c}"));
    }
    if t.iv_proto & IV_PROTO_CC_EXIT_NOTIFY != 0 {
        v.push(if t.ekm {
            "protocol-flags cc-exit tls-ekm".to_owned()
        } else {
            "protocol-flags cc-exit".to_owned()
        });
    } else if t.ekm {
        v.push("key-derivation tls-ekm".to_owned());
    }
    if let Some(m) = t.tun_mtu {
        v.push(format!("tun-mtu {m}"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_and_encode_messages() {
        let cases: Vec<(&str, ControlMessage)> = vec![
            ("PUSH_REQUEST", ControlMessage::PushRequest),
            (
                "PUSH_REPLY",
                ControlMessage::PushReply {
                    options: vec![],
                    continuation: None,
                },
            ),
            (
                "PUSH_REPLY,ping 10,push-continuation 2",
                ControlMessage::PushReply {
                    options: strings(&["ping 10"]),
                    continuation: Some(2),
                },
            ),
            ("AUTH_FAILED", ControlMessage::AuthFailed(None)),
            (
                "AUTH_FAILED,Data channel cipher negotiation failed (no shared cipher)",
                ControlMessage::AuthFailed(Some(
                    "Data channel cipher negotiation failed (no shared cipher)".into(),
                )),
            ),
            (
                "AUTH_PENDING,timeout 60",
                ControlMessage::AuthPending(Some("timeout 60".into())),
            ),
            ("AUTH_PENDING", ControlMessage::AuthPending(None)),
            ("RESTART", ControlMessage::Restart(None)),
            ("RESTART,[N]", ControlMessage::Restart(Some("[N]".into()))),
            ("HALT,bye", ControlMessage::Halt(Some("bye".into()))),
            (
                "INFO_PRE,OPEN_URL:https://x",
                ControlMessage::InfoPre("OPEN_URL:https://x".into()),
            ),
            ("INFO,hello", ControlMessage::Info("hello".into())),
            ("EXIT", ControlMessage::Exit),
            (
                "CR_RESPONSE,aGk=",
                ControlMessage::CrResponse("aGk=".into()),
            ),
            ("FOO,bar", ControlMessage::Unknown("FOO,bar".into())),
        ];
        for (text, msg) in cases {
            assert_eq!(
                ControlMessage::parse(text.as_bytes()).unwrap(),
                msg,
                "{text}"
            );
            assert_eq!(msg.to_text(), text);
            let mut wire = text.as_bytes().to_vec();
            wire.push(0);
            assert_eq!(msg.encode(), wire);
        }
        assert_eq!(
            ControlMessage::parse(b"AUTH_FAILED,\r\n").unwrap(),
            ControlMessage::AuthFailed(None)
        );
        assert_eq!(
            ControlMessage::parse(b"PUSH_REQUEST\n").unwrap(),
            ControlMessage::PushRequest
        );
        assert_eq!(
            ControlMessage::parse(b"INFO,a\nb"),
            Err(MessageError::NonPrintable)
        );
        assert_eq!(
            ControlMessage::parse("INFO,caf\u{e9}".as_bytes()),
            Err(MessageError::NonPrintable)
        );
        assert_eq!(
            ControlMessage::parse(b"EXITNOW").unwrap(),
            ControlMessage::Unknown("EXITNOW".into())
        );
    }

    #[test]
    fn reader_splits_at_nuls_and_keeps_partial() {
        let mut r = ControlMessageReader::new();
        r.feed(b"PUSH_REQUEST\0\0INFO,x\0PUSH_RE");
        assert_eq!(r.next_message(), Some(Ok(ControlMessage::PushRequest)));
        assert_eq!(r.next_message(), Some(Ok(ControlMessage::Info("x".into()))));
        assert_eq!(r.next_message(), None);
        r.feed(b"PLY,ping 10\0");
        assert_eq!(
            r.next_message(),
            Some(Ok(ControlMessage::PushReply {
                options: strings(&["ping 10"]),
                continuation: None
            }))
        );
        r.feed(b"INFO,\x01\0");
        assert_eq!(r.next_message(), Some(Err(MessageError::NonPrintable)));
        r.feed(&vec![b'a'; MAX_CONTROL_MESSAGE + 1]);
        assert_eq!(r.next_message(), Some(Err(MessageError::TooLong)));
        assert_eq!(r.next_message(), None);
    }

    #[test]
    fn push_reply_single_and_empty() {
        assert_eq!(build_push_reply(&[]).unwrap(), vec!["PUSH_REPLY"]);
        assert_eq!(
            build_push_reply(&strings(&["ping 10", "ping-restart 60"])).unwrap(),
            vec!["PUSH_REPLY,ping 10,ping-restart 60"]
        );
        assert!(matches!(
            build_push_reply(&strings(&["dhcp-option DNS 1.1.1.1,8.8.8.8"])),
            Err(MessageError::Comma(_))
        ));
        assert!(matches!(
            build_push_reply(&strings(&["echo a\nb"])),
            Err(MessageError::BadOption(_))
        ));
        assert_eq!(
            build_push_reply(&["x".repeat(930)]),
            Err(MessageError::OptionTooLong(930))
        );
        assert!(build_push_reply(&["x".repeat(929)]).is_ok());
    }

    #[test]
    fn push_reply_split_like_openvpn() {
        // 200 routes of 25 bytes: split where len + next option length reaches 940.
        let opts: Vec<String> = (0..200)
            .map(|i| format!("route 10.{}.{}.0 255.255.255.0", i / 256, i % 256))
            .collect();
        let msgs = build_push_reply(&opts).unwrap();
        assert!(msgs.len() > 1);
        let mut acc = PushReplyAccumulator::new();
        let mut result = None;
        for (i, m) in msgs.iter().enumerate() {
            assert!(
                m.len() < PUSH_BUNDLE_SIZE,
                "message {i} is {} bytes",
                m.len()
            );
            let last = i + 1 == msgs.len();
            let suffix = if last {
                ",push-continuation 1"
            } else {
                ",push-continuation 2"
            };
            assert!(m.ends_with(suffix), "{m}");
            // Reproduce the server's rule: the message (before its continuation suffix) could
            // not take the next option.
            if !last {
                let body = m.strip_suffix(suffix).unwrap();
                let next_opt_len = msgs[i + 1]
                    .strip_prefix("PUSH_REPLY,")
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .len();
                assert!(body.len() + next_opt_len >= PUSH_SAFE_CAP);
                // The comma is not counted by the 2.6 rule, so a body may reach exactly 940.
                assert!(body.len() <= PUSH_SAFE_CAP);
            }
            let ControlMessage::PushReply {
                options,
                continuation,
            } = ControlMessage::parse(m.as_bytes()).unwrap()
            else {
                panic!("not a push reply")
            };
            let r = acc.feed(options, continuation).unwrap();
            assert_eq!(r.is_some(), last);
            result = r.or(result);
        }
        assert_eq!(result.unwrap(), opts);
    }

    #[test]
    fn push_reply_exact_boundary() {
        // "PUSH_REPLY" (10) + ",a…" options: with options of length 99 each message holds
        // 10 + 9*100 = 910 bytes; a 10th would need 910 + 99 >= 940 → new message.
        let opts: Vec<String> = (0..10).map(|i| format!("{i}").repeat(99)).collect();
        let msgs = build_push_reply(&opts).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].len(), 910 + ",push-continuation 2".len());
        assert_eq!(
            msgs[1],
            format!("PUSH_REPLY,{},push-continuation 1", "9".repeat(99))
        );
        // 929-byte body fits exactly (10 + 1 + 929 = 940 would reach the cap: check the rule).
        let opts = strings(&["a", &"b".repeat(928)]);
        let msgs = build_push_reply(&opts).unwrap();
        assert_eq!(msgs.len(), 2, "12 + 928 >= 940 forces a split");
    }

    #[test]
    fn accumulator_limits_and_other_messages() {
        let mut acc = PushReplyAccumulator::new();
        assert_eq!(acc.feed_message(ControlMessage::Exit).unwrap(), None);
        for _ in 0..MAX_PUSH_PARTS {
            assert_eq!(acc.feed(strings(&["x"]), Some(2)).unwrap(), None);
        }
        assert_eq!(
            acc.feed(strings(&["x"]), Some(2)),
            Err(MessageError::TooManyParts)
        );
        assert_eq!(
            acc.feed(strings(&["y"]), None).unwrap(),
            Some(strings(&["y"]))
        );
    }

    #[test]
    fn tokenizer_like_parse_line() {
        let t = |s: &str| tokenize_option(s);
        assert_eq!(
            t("route-ipv6 2000::/3").unwrap(),
            strings(&["route-ipv6", "2000::/3"])
        );
        assert_eq!(
            t("  setenv  FOO   \"a b\\\" c\"  ").unwrap(),
            strings(&["setenv", "FOO", "a b\" c"])
        );
        assert_eq!(
            t("echo 'it\\s raw' x\\ y").unwrap(),
            strings(&["echo", "it\\s raw", "x y"])
        );
        assert_eq!(t("a \"\" b").unwrap(), strings(&["a", "", "b"]));
        assert_eq!(t("dhcp-option DNS 1.1.1.1 # comment").unwrap().len(), 3);
        assert_eq!(t("a b;c").unwrap(), strings(&["a", "b;c"]));
        assert_eq!(t("").unwrap(), Vec::<String>::new());
        assert_eq!(t("a \"b"), Err(TokenizeError::UnclosedQuote));
        assert_eq!(t("a 'b"), Err(TokenizeError::UnclosedSingleQuote));
        assert_eq!(t("a \\q"), Err(TokenizeError::BadBackslash));
        assert_eq!(t("a c:\\\\x").unwrap(), strings(&["a", "c:\\x"]));
        assert_eq!(t(&"x".repeat(256)), Err(TokenizeError::ParamTooLong));
        assert!(t(&"x".repeat(255)).is_ok());
        assert_eq!(t(&["a"; 17].join(" ")), Err(TokenizeError::TooManyParams));
    }

    /// The peer-info a real openvpn 2.6.14 client sent (server log, --verb 4).
    const REAL_PEER_INFO: &str = "IV_VER=2.6.14\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nIV_PROTO=990\nIV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n";

    #[test]
    fn peer_info_parse_real_client() {
        let p = PeerInfo::parse(REAL_PEER_INFO);
        assert_eq!(p.iv_ver.as_deref(), Some("2.6.14"));
        assert_eq!(p.iv_proto, 990);
        assert_eq!(p.iv_proto, IV_PROTO_OPENVPN_26);
        assert_eq!(p.iv_ncp, Some(2));
        assert_eq!(p.iv_mtu, Some(1600));
        assert_eq!(p.iv_plat.as_deref(), Some("linux"));
        assert_eq!(p.client_ciphers(), Cipher::ALL.to_vec());
        assert!(p.supports_ncp());
        assert!(p.has_proto(IV_PROTO_DATA_V2 | IV_PROTO_CC_EXIT_NOTIFY));
        assert_eq!(p.get("IV_COMP_STUBv2"), Some("1"));
        assert_eq!(p.get("IV_SSO"), None);
        let junk = PeerInfo::parse("IV_PROTO=abc\nIV_MTU=16x\nnonsense\n=\n");
        assert_eq!((junk.iv_proto, junk.iv_mtu), (0, Some(16)));
    }

    #[test]
    fn peer_info_builder_round_trips() {
        let s = peer_info_string(&Cipher::ALL, IV_PROTO_FWD, 1600);
        assert!(s.starts_with("IV_VER=2.6.14-fwd-"));
        assert!(s.ends_with("\n"));
        assert!(s.contains("\nIV_PLAT=linux\nIV_TCPNL=1\nIV_MTU=1600\nIV_NCP=2\n"));
        assert!(s.contains("\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\n"));
        assert!(s.contains("\nIV_PROTO=158\n"));
        assert_eq!(IV_PROTO_FWD & IV_PROTO_DYN_TLS_CRYPT, 0);
        let p = PeerInfo::parse(&s);
        assert_eq!(p.iv_proto, IV_PROTO_FWD);
        assert_eq!(p.client_ciphers(), Cipher::ALL.to_vec());
        let only_chacha = peer_info_string(&[Cipher::ChaCha20Poly1305], 2, 1500);
        assert!(!only_chacha.contains("IV_NCP"));
    }

    #[test]
    fn ncp_rules() {
        let all = Cipher::ALL;
        let real = PeerInfo::parse(REAL_PEER_INFO);
        assert_eq!(
            negotiate_cipher(&all, &real, None, None),
            Ok(Cipher::Aes256Gcm)
        );
        // Server order wins.
        let srv = [Cipher::ChaCha20Poly1305, Cipher::Aes128Gcm];
        assert_eq!(
            negotiate_cipher(&srv, &real, None, None),
            Ok(Cipher::ChaCha20Poly1305)
        );
        // IV_NCP=2 without IV_CIPHERS means AES-256-GCM:AES-128-GCM.
        let ncp2 = PeerInfo::parse("IV_NCP=2\n");
        assert_eq!(
            negotiate_cipher(
                &[Cipher::ChaCha20Poly1305, Cipher::Aes128Gcm],
                &ncp2,
                None,
                None
            ),
            Ok(Cipher::Aes128Gcm)
        );
        // OCC cipher counts only without IV_CIPHERS.
        let legacy = PeerInfo::parse("IV_VER=2.3.18\n");
        assert_eq!(
            negotiate_cipher(&all, &legacy, Some("AES-128-GCM"), None),
            Ok(Cipher::Aes128Gcm)
        );
        let chacha_only = PeerInfo::parse("IV_CIPHERS=CHACHA20-POLY1305\n");
        assert_eq!(
            negotiate_cipher(
                &[Cipher::Aes256Gcm],
                &chacha_only,
                Some("AES-256-GCM"),
                None
            ),
            Err(NcpError::NoSharedCipher)
        );
        // Fallback only for clients without NCP information.
        assert_eq!(
            negotiate_cipher(&all, &legacy, Some("BF-CBC"), Some(Cipher::Aes256Gcm)),
            Ok(Cipher::Aes256Gcm)
        );
        assert_eq!(
            negotiate_cipher(&all, &legacy, Some("BF-CBC"), None),
            Err(NcpError::NoSharedCipher)
        );
        assert_eq!(
            negotiate_cipher(
                &[Cipher::Aes256Gcm],
                &chacha_only,
                None,
                Some(Cipher::Aes256Gcm)
            ),
            Err(NcpError::NoSharedCipher)
        );
        assert_eq!(
            NcpError::NoSharedCipher.to_string(),
            "Data channel cipher negotiation failed (no shared cipher)"
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = ControlMessage::parse(&b);
            let mut r = ControlMessageReader::new();
            r.feed(&b);
            while r.next_message().is_some() {}
            let s = String::from_utf8_lossy(&b);
            let _ = tokenize_option(&s);
            let _ = PeerInfo::parse(&s);
            let _ = classify_plaintext(&b);
        }

        /// Any list of valid options survives split + accumulate unchanged.
        #[test]
        fn push_split_round_trip(opts in proptest::collection::vec("[a-z0-9 ./:-]{1,200}", 0..60)) {
            let opts: Vec<String> = opts.into_iter().filter(|o| !o.trim().is_empty() && !o.trim_start().starts_with("push-continuation")).collect();
            let msgs = build_push_reply(&opts).unwrap();
            let mut acc = PushReplyAccumulator::new();
            let mut out = None;
            for m in &msgs {
                proptest::prop_assert!(m.len() < PUSH_BUNDLE_SIZE);
                out = acc.feed_message(ControlMessage::parse(m.as_bytes()).unwrap()).unwrap();
            }
            proptest::prop_assert_eq!(out.unwrap(), opts);
        }
    }

    #[test]
    fn magic_packets() {
        assert_eq!(classify_plaintext(&PING_MAGIC), Plain::Ping);
        let mut longer = PING_MAGIC.to_vec();
        longer.push(0);
        assert_eq!(classify_plaintext(&longer), Plain::Ip);
        assert_eq!(classify_plaintext(&OCC_EXIT_PACKET), Plain::OccExit);
        assert_eq!(OCC_EXIT_PACKET[16], 6);
        assert_eq!(&OCC_EXIT_PACKET[..16], &OCC_MAGIC);
        let mut reply = OCC_MAGIC.to_vec();
        reply.push(OCC_REPLY);
        reply.extend_from_slice(b"V4\0");
        assert_eq!(classify_plaintext(&reply), Plain::Occ(OCC_REPLY));
        assert_eq!(classify_plaintext(&OCC_MAGIC), Plain::OccEmpty);
        assert_eq!(classify_plaintext(&[0x45, 0, 0, 20]), Plain::Ip);
        assert_eq!(classify_plaintext(&[]), Plain::Ip);
    }

    /// The §13.2 example and the PUSH_REPLY a real openvpn 2.6.14 server sent (minus
    /// `dyn-tls-crypt`, which fwd does not implement).
    #[test]
    fn push_tail_reproduces_openvpn_example() {
        let real = PeerInfo::parse(REAL_PEER_INFO);
        let tail = server_push_tail(&PushTail {
            ifconfig_ipv6: Some((
                "2001:db8::1000".parse().unwrap(),
                64,
                "2001:db8::1".parse().unwrap(),
            )),
            ifconfig: Some((Ipv4Addr::new(10, 8, 0, 2), Ipv4Addr::new(255, 255, 255, 0))),
            peer_id: real.has_proto(IV_PROTO_DATA_V2).then_some(0),
            auth_token: None,
            cipher: real.supports_ncp().then_some(Cipher::Aes256Gcm),
            iv_proto: real.iv_proto,
            ekm: real.has_proto(IV_PROTO_TLS_KEY_EXPORT),
            tun_mtu: real.iv_mtu.map(|_| 1500),
        });
        let mut opts = strings(&[
            "route-ipv6 2000::/3",
            "tun-ipv6",
            "route-gateway 10.8.0.1",
            "topology subnet",
            "ping 10",
            "ping-restart 60",
        ]);
        opts.extend(tail);
        let msgs = build_push_reply(&opts).unwrap();
        assert_eq!(
            msgs,
            vec!["PUSH_REPLY,route-ipv6 2000::/3,tun-ipv6,route-gateway 10.8.0.1,topology subnet,ping 10,ping-restart 60,ifconfig-ipv6 2001:db8::1000/64 2001:db8::1,ifconfig 10.8.0.2 255.255.255.0,peer-id 0,cipher AES-256-GCM,protocol-flags cc-exit tls-ekm,tun-mtu 1500"]
        );
    }

    #[test]
    fn push_tail_variants() {
        // Client with EKM but without cc-exit gets key-derivation; auth-token before cipher.
        let t = server_push_tail(&PushTail {
            peer_id: Some(7),
            auth_token: Some("tok".into()),
            cipher: Some(Cipher::ChaCha20Poly1305),
            iv_proto: IV_PROTO_DATA_V2 | IV_PROTO_TLS_KEY_EXPORT,
            ekm: true,
            ..PushTail::default()
        });
        assert_eq!(
            t,
            strings(&[
                "peer-id 7",
                "auth-token tok",
                "cipher CHACHA20-POLY1305",
                "key-derivation tls-ekm"
            ])
        );
        let t = server_push_tail(&PushTail {
            ifconfig: Some((Ipv4Addr::new(10, 8, 0, 6), Ipv4Addr::new(10, 8, 0, 5))),
            iv_proto: IV_PROTO_CC_EXIT_NOTIFY,
            ..PushTail::default()
        });
        assert_eq!(
            t,
            strings(&["ifconfig 10.8.0.6 10.8.0.5", "protocol-flags cc-exit"])
        );
        assert!(server_push_tail(&PushTail::default()).is_empty());
    }
}
