//! IP and TCP header constants shared by the offload modules (segmentation, coalescing, MSS
//! clamping), from RFC 791, RFC 8200 and RFC 9293.

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Bytes of the fixed IPv6 header.
pub const IPV6_HDR_LEN: usize = 40;
/// Bytes of a UDP header.
pub const UDP_HDR_LEN: usize = 8;
/// Bytes of a TCP header without options.
pub const TCP_HDR_LEN: usize = 20;

/// TCP flag bits (header byte 13).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_CWR: u8 = 0x80;
