//! Synchronous rtnetlink: link state, MTU, txqueuelen, addresses and routes.
//!
//! Every request carries a fresh sequence number and waits for the kernel's answer (the ACK
//! for changes, NLMSG_DONE for dumps); NLMSG_ERROR becomes [`OsError::Netlink`] with the
//! kernel's errno. Adds are idempotent (EEXIST counts as success) and so are deletes (the
//! "not there" errnos count as success), because the control plane replays them on
//! reconnect and teardown. Replies with a foreign sequence number are ignored.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr as NlSocketAddr};

use super::OsError;

/// Receive buffer size: the kernel's dump chunks are at most 32 KiB (NLMSG_GOODSIZE is one
/// page, but with large pages it can be 32 KiB); 64 KiB leaves room.
const RECV_BUF_LEN: usize = 64 * 1024;
/// Size of `struct nlmsghdr`.
const NLMSG_HDR_LEN: usize = 16;

/// The default route of one address family, as found in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Next hop, absent for device routes (`default dev tun0`).
    pub gateway: Option<IpAddr>,
    /// Outgoing interface index.
    pub ifindex: u32,
    /// Route metric (priority); the lowest wins.
    pub metric: u32,
}

/// An rtnetlink socket bound to the calling thread's network namespace at `open`.
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens and connects an rtnetlink socket.
    pub fn open() -> Result<Self, OsError> {
        let err = |source| OsError::Netlink { op: "open", source };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        sock.connect(&NlSocketAddr::new(0, 0)).map_err(err)?;
        Ok(Netlink {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Interface index of `name`; [`OsError::NoSuchLink`] if it does not exist.
    pub fn link_index(&mut self, name: &str) -> Result<u32, OsError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = match self.request("link_index", RouteNetlinkMessage::GetLink(msg), 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                return Err(OsError::NoSuchLink(name.to_owned()))
            }
            other => other?,
        };
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| OsError::NetlinkDecode {
                op: "link_index",
                reason: "no link in reply".into(),
            })
    }

    /// Sets IFF_UP.
    pub fn set_link_up(&mut self, idx: u32) -> Result<(), OsError> {
        self.set_link_flags("set_link_up", idx, true)
    }

    /// Clears IFF_UP.
    pub fn set_link_down(&mut self, idx: u32) -> Result<(), OsError> {
        self.set_link_flags("set_link_down", idx, false)
    }

    /// Sets the interface MTU in bytes.
    pub fn set_mtu(&mut self, idx: u32, mtu: u32) -> Result<(), OsError> {
        self.set_link_attr("set_mtu", idx, LinkAttribute::Mtu(mtu))
    }

    /// Sets the transmit queue length in packets.
    pub fn set_txqueuelen(&mut self, idx: u32, n: u32) -> Result<(), OsError> {
        self.set_link_attr("set_txqueuelen", idx, LinkAttribute::TxQueueLen(n))
    }

    /// Adds `addr/prefix_len` to interface `idx`; with `peer`, a point-to-point address
    /// (`ip addr add addr peer peer/prefix_len`). Already present counts as success.
    pub fn add_address(
        &mut self,
        idx: u32,
        addr: IpAddr,
        prefix_len: u8,
        peer: Option<IpAddr>,
    ) -> Result<(), OsError> {
        let msg = address_message(idx, addr, prefix_len, peer)?;
        let flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        ignore_errno(
            self.request("add_address", RouteNetlinkMessage::NewAddress(msg), flags),
            &[libc::EEXIST],
        )
    }

    /// Removes an address added by [`Netlink::add_address`]. Absent counts as success.
    pub fn del_address(
        &mut self,
        idx: u32,
        addr: IpAddr,
        prefix_len: u8,
        peer: Option<IpAddr>,
    ) -> Result<(), OsError> {
        let msg = address_message(idx, addr, prefix_len, peer)?;
        ignore_errno(
            self.request(
                "del_address",
                RouteNetlinkMessage::DelAddress(msg),
                NLM_F_ACK,
            ),
            &[libc::EADDRNOTAVAIL, libc::ENOENT, libc::ESRCH],
        )
    }

    /// Adds a route to `dst` via interface `idx` (optionally via `gateway`) in the main
    /// table. A route with the same key already present counts as success.
    pub fn add_route(
        &mut self,
        dst: IpNet,
        idx: u32,
        gateway: Option<IpAddr>,
        metric: Option<u32>,
    ) -> Result<(), OsError> {
        let msg = route_message(dst, idx, gateway, metric)?;
        let flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        ignore_errno(
            self.request("add_route", RouteNetlinkMessage::NewRoute(msg), flags),
            &[libc::EEXIST],
        )
    }

    /// Deletes a route added by [`Netlink::add_route`]. Absent counts as success.
    pub fn del_route(
        &mut self,
        dst: IpNet,
        idx: u32,
        gateway: Option<IpAddr>,
        metric: Option<u32>,
    ) -> Result<(), OsError> {
        let msg = route_message(dst, idx, gateway, metric)?;
        ignore_errno(
            self.request("del_route", RouteNetlinkMessage::DelRoute(msg), NLM_F_ACK),
            &[libc::ESRCH, libc::ENOENT],
        )
    }

    /// The IPv4 default route with the lowest metric in the main table (for
    /// `redirect-gateway`), if any.
    pub fn default_route_v4(&mut self) -> Result<Option<DefaultRoute>, OsError> {
        self.default_route(AddressFamily::Inet)
    }

    /// The IPv6 default route with the lowest metric in the main table, if any.
    pub fn default_route_v6(&mut self) -> Result<Option<DefaultRoute>, OsError> {
        self.default_route(AddressFamily::Inet6)
    }

    fn default_route(&mut self, family: AddressFamily) -> Result<Option<DefaultRoute>, OsError> {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        let replies = self.request(
            "default_route",
            RouteNetlinkMessage::GetRoute(req),
            NLM_F_DUMP,
        )?;
        let mut best: Option<DefaultRoute> = None;
        for m in replies {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.destination_prefix_length != 0 || r.header.kind != RouteType::Unicast {
                continue;
            }
            let mut table = u32::from(r.header.table);
            let mut found = DefaultRoute {
                gateway: None,
                ifindex: 0,
                metric: 0,
            };
            for a in &r.attributes {
                match a {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Oif(i) => found.ifindex = *i,
                    RouteAttribute::Priority(p) => found.metric = *p,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => {
                        found.gateway = Some((*g).into())
                    }
                    RouteAttribute::Gateway(RouteAddress::Inet6(g)) => {
                        found.gateway = Some((*g).into())
                    }
                    _ => {}
                }
            }
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) || found.ifindex == 0 {
                continue;
            }
            if best.is_none_or(|b| found.metric < b.metric) {
                best = Some(found);
            }
        }
        Ok(best)
    }

    fn set_link_flags(&mut self, op: &'static str, idx: u32, up: bool) -> Result<(), OsError> {
        let mut msg = LinkMessage::default();
        msg.header.index = idx;
        msg.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Up;
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    fn set_link_attr(
        &mut self,
        op: &'static str,
        idx: u32,
        attr: LinkAttribute,
    ) -> Result<(), OsError> {
        let mut msg = LinkMessage::default();
        msg.header.index = idx;
        msg.attributes.push(attr);
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Sends one request and collects the data messages of its answer. Returns after the
    /// ACK (NLMSG_ERROR with code 0), NLMSG_DONE, or — for a non-dump request without
    /// NLM_F_ACK — the first data reply.
    fn request(
        &mut self,
        op: &'static str,
        inner: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, OsError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | extra_flags;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(inner));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.sock
            .send(&out, 0)
            .map_err(|source| OsError::Netlink { op, source })?;

        let is_dump = extra_flags & NLM_F_DUMP == NLM_F_DUMP;
        let wants_ack = extra_flags & NLM_F_ACK != 0;
        let mut replies = Vec::new();
        loop {
            let n = self
                .recv()
                .map_err(|source| OsError::Netlink { op, source })?;
            let mut off = 0usize;
            while let Some(hdr) = self.buf.get(off..n).and_then(RawHeader::parse) {
                let end = off.saturating_add(hdr.len);
                let Some(whole) = self.buf.get(off..end) else {
                    return Err(OsError::NetlinkDecode {
                        op,
                        reason: "truncated message".into(),
                    });
                };
                // nlmsg_len is at least the header (checked in RawHeader::parse), so this advances.
                off = end.saturating_add(3) & !3;
                if hdr.seq != seq {
                    continue;
                }
                match hdr.kind {
                    NLMSG_ERROR => {
                        let code = whole
                            .get(NLMSG_HDR_LEN..NLMSG_HDR_LEN + 4)
                            .and_then(|b| b.try_into().ok())
                            .map(i32::from_ne_bytes)
                            .ok_or_else(|| OsError::NetlinkDecode {
                                op,
                                reason: "short NLMSG_ERROR".into(),
                            })?;
                        if code == 0 {
                            return Ok(replies);
                        }
                        return Err(OsError::Netlink {
                            op,
                            source: io::Error::from_raw_os_error(code.saturating_abs()),
                        });
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => match NetlinkMessage::<RouteNetlinkMessage>::deserialize(whole) {
                        Ok(NetlinkMessage {
                            payload: NetlinkPayload::InnerMessage(m),
                            ..
                        }) => replies.push(m),
                        Ok(_) => {}
                        // A dump may contain objects this crate version cannot decode; they
                        // are not the ones we asked about, so skip them.
                        Err(e) if is_dump => {
                            tracing::trace!(op, error = %e, "skipping undecodable netlink message")
                        }
                        Err(e) => {
                            return Err(OsError::NetlinkDecode {
                                op,
                                reason: e.to_string(),
                            })
                        }
                    },
                }
                if !is_dump && !wants_ack && !replies.is_empty() {
                    return Ok(replies);
                }
            }
        }
    }

    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // SAFETY: self.buf is valid for writes of its full length during the call.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n.unsigned_abs().min(self.buf.len()));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The fields of `struct nlmsghdr` the reply loop needs.
struct RawHeader {
    len: usize,
    kind: u16,
    seq: u32,
}

impl RawHeader {
    fn parse(b: &[u8]) -> Option<Self> {
        let len = u32::from_ne_bytes(b.get(0..4)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(b.get(4..6)?.try_into().ok()?);
        let seq = u32::from_ne_bytes(b.get(8..12)?.try_into().ok()?);
        (len >= NLMSG_HDR_LEN).then_some(RawHeader { len, kind, seq })
    }
}

fn ignore_errno(r: Result<Vec<RouteNetlinkMessage>, OsError>, ok: &[i32]) -> Result<(), OsError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error().is_some_and(|c| ok.contains(&c)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn family_of(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn address_message(
    idx: u32,
    addr: IpAddr,
    prefix_len: u8,
    peer: Option<IpAddr>,
) -> Result<AddressMessage, OsError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max || peer.is_some_and(|p| p.is_ipv4() != addr.is_ipv4()) {
        return Err(OsError::Netlink {
            op: "address",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad address {addr}/{prefix_len} peer {peer:?}"),
            ),
        });
    }
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(addr);
    msg.header.prefix_len = prefix_len;
    msg.header.index = idx;
    // IFA_LOCAL is the interface's own address, IFA_ADDRESS the peer on point-to-point links
    // (equal to IFA_LOCAL otherwise), as iproute2 sends it.
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes
        .push(AddressAttribute::Address(peer.unwrap_or(addr)));
    Ok(msg)
}

fn route_message(
    dst: IpNet,
    idx: u32,
    gateway: Option<IpAddr>,
    metric: Option<u32>,
) -> Result<RouteMessage, OsError> {
    let dst = dst.trunc();
    if gateway.is_some_and(|g| g.is_ipv4() != dst.addr().is_ipv4()) {
        return Err(OsError::Netlink {
            op: "route",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("gateway {gateway:?} family differs from {dst}"),
            ),
        });
    }
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(dst.addr());
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    // A route without a next hop is on-link; IPv6 routes always use universe scope.
    msg.header.scope = if gateway.is_none() && dst.addr().is_ipv4() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    msg.header.kind = RouteType::Unicast;
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(dst.addr().into()));
    }
    if let Some(g) = gateway {
        msg.attributes.push(RouteAttribute::Gateway(g.into()));
    }
    msg.attributes.push(RouteAttribute::Oif(idx));
    if let Some(m) = metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_message_truncates_and_scopes() {
        let m = route_message("10.1.2.3/24".parse().unwrap(), 7, None, Some(5)).unwrap();
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.scope, RouteScope::Link);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                "10.1.2.0".parse().unwrap()
            ))));
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(m.attributes.contains(&RouteAttribute::Priority(5)));
        let d = route_message(
            "::/0".parse().unwrap(),
            1,
            Some("fd00::1".parse().unwrap()),
            None,
        )
        .unwrap();
        assert_eq!(d.header.scope, RouteScope::Universe);
        assert!(!d
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
        assert!(route_message(
            "::/0".parse().unwrap(),
            1,
            Some("10.0.0.1".parse().unwrap()),
            None
        )
        .is_err());
    }

    #[test]
    fn address_message_rejects_bad_prefix_and_mixed_peer() {
        assert!(address_message(1, "10.0.0.1".parse().unwrap(), 33, None).is_err());
        assert!(address_message(
            1,
            "10.0.0.1".parse().unwrap(),
            32,
            Some("fd00::1".parse().unwrap())
        )
        .is_err());
        let m = address_message(
            1,
            "10.0.0.1".parse().unwrap(),
            32,
            Some("10.0.0.2".parse().unwrap()),
        )
        .unwrap();
        assert!(m
            .attributes
            .contains(&AddressAttribute::Address("10.0.0.2".parse().unwrap())));
    }

    #[test]
    fn raw_header_rejects_short_lengths() {
        let mut b = [0u8; 16];
        b[0] = 8;
        assert!(RawHeader::parse(&b).is_none());
        b[0] = 16;
        assert!(RawHeader::parse(&b).is_some());
        assert!(RawHeader::parse(&b[..10]).is_none());
    }
}
