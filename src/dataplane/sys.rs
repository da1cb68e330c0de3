//! Raw socket-address conversions and thin syscall wrappers used by both drivers.
//!
//! Invariants: conversions never read past the length the kernel reported and reject
//! families other than AF_INET/AF_INET6; addresses handed to the handler are normalized
//! (v4-mapped → IPv4), addresses sent on an AF_INET6 socket are v4-mapped back.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::os::udp::{normalize, to_v6_mapped};

/// Decodes a kernel-filled sockaddr of `len` bytes.
pub(crate) fn from_sockaddr(
    st: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(st.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say the storage holds a sockaddr_in; storage is
            // aligned for every sockaddr type.
            let sin =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let a = SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            );
            Some(normalize(SocketAddr::V6(a)))
        }
        _ => None,
    }
}

/// Encodes `addr` for a socket of family `family`; `None` if it cannot be reached from it
/// (an IPv6 destination on an AF_INET socket).
pub(crate) fn to_sockaddr(
    addr: SocketAddr,
    family: libc::c_int,
    st: &mut libc::sockaddr_storage,
) -> Option<libc::socklen_t> {
    let addr = if family == libc::AF_INET6 {
        to_v6_mapped(addr)
    } else {
        normalize(addr)
    };
    match addr {
        SocketAddr::V4(a) if family == libc::AF_INET => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            Some(mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) if family == libc::AF_INET6 => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            Some(mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
        SocketAddr::V4(_) | SocketAddr::V6(_) => None,
    }
}

/// The address family (AF_INET/AF_INET6) a socket was created with.
pub(crate) fn socket_family(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a live c_int and its size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// A zeroed sockaddr_storage.
pub(crate) fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    unsafe { mem::zeroed() }
}

/// `CMSG_SPACE(sizeof(int))`: room for one UDP_GRO / UDP_SEGMENT control message (a
/// 16-byte `cmsghdr` and the value padded to 8 bytes).
pub(crate) const UDP_CMSG_SPACE: usize = 24;

/// Storage for one UDP_GRO / UDP_SEGMENT control message, aligned for `cmsghdr`.
pub(crate) type UdpCmsg = [u64; UDP_CMSG_SPACE / 8];

/// Errors that mean the fd itself is unusable, as opposed to one datagram failing.
pub(crate) fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EBADFD | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT)
    )
}

/// Bytes of a `cmsghdr` on this platform (len: size_t, level, type: int), 8-aligned.
const CMSG_HDR_LEN: usize = mem::size_of::<libc::cmsghdr>();

/// Writes one `SOL_UDP`/`UDP_SEGMENT` control message carrying `segment` into `ctrl`
/// (which must be `CMSG_SPACE(sizeof(u16))` or more: 24 bytes on 64-bit Linux).
pub(crate) fn write_segment_cmsg(ctrl: &mut UdpCmsg, segment: u16) {
    *ctrl = [0; 3];
    // SAFETY: `ctrl` is 24 bytes, 8-aligned: room for a cmsghdr (16 bytes) and a u16 after
    // it; every byte pattern is valid for both.
    unsafe {
        let c = ctrl.as_mut_ptr().cast::<libc::cmsghdr>();
        (*c).cmsg_len = (CMSG_HDR_LEN + mem::size_of::<u16>()) as _;
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = crate::os::udp::UDP_SEGMENT;
        ctrl.as_mut_ptr()
            .cast::<u8>()
            .add(CMSG_HDR_LEN)
            .cast::<u16>()
            .write_unaligned(segment);
    }
}

/// The segment size of a `SOL_UDP`/`UDP_GRO` control message in the control bytes `ctrl`
/// the kernel wrote (walked with bounds checks; other messages skipped).
pub(crate) fn gro_segment_size(ctrl: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(h) = ctrl.get(at..at + CMSG_HDR_LEN) {
        let len = usize::from_ne_bytes(h.get(..8)?.try_into().ok()?);
        let level = i32::from_ne_bytes(h.get(8..12)?.try_into().ok()?);
        let ty = i32::from_ne_bytes(h.get(12..16)?.try_into().ok()?);
        if len < CMSG_HDR_LEN {
            return None;
        }
        if level == libc::SOL_UDP && ty == crate::os::udp::UDP_GRO {
            let v = ctrl.get(at + CMSG_HDR_LEN..at + CMSG_HDR_LEN + 4)?;
            let seg = i32::from_ne_bytes(v.try_into().ok()?);
            return usize::try_from(seg).ok().filter(|&s| s > 0);
        }
        at = at.checked_add(len.checked_add(7)? & !7)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_cmsg_reads_back_as_gro_size() {
        let mut c = [0u64; 3];
        write_segment_cmsg(&mut c, 1452);
        let mut bytes: Vec<u8> = c.iter().flat_map(|w| w.to_ne_bytes()).collect();
        // Same layout as UDP_GRO but a u16 payload and another type: not a GRO message.
        assert_eq!(gro_segment_size(&bytes), None);
        bytes[12..16].copy_from_slice(&crate::os::udp::UDP_GRO.to_ne_bytes());
        bytes[16..20].copy_from_slice(&1452i32.to_ne_bytes());
        assert_eq!(gro_segment_size(&bytes), Some(1452));
        assert_eq!(gro_segment_size(&bytes[..18]), None, "truncated value");
        assert_eq!(gro_segment_size(&[0xff; 40]), None, "garbage never panics");
        assert_eq!(gro_segment_size(&[]), None);
    }

    #[test]
    fn sockaddr_round_trips() {
        for (addr, fam) in [
            ("10.1.2.3:1194", libc::AF_INET),
            ("10.1.2.3:1194", libc::AF_INET6),
            ("[fd00::5]:53", libc::AF_INET6),
        ] {
            let a: SocketAddr = addr.parse().unwrap();
            let mut st = zeroed_storage();
            let len = to_sockaddr(a, fam, &mut st).unwrap();
            assert_eq!(from_sockaddr(&st, len), Some(a), "{addr} via {fam}");
        }
        let mut st = zeroed_storage();
        assert_eq!(
            to_sockaddr("[fd00::5]:53".parse().unwrap(), libc::AF_INET, &mut st),
            None
        );
        assert_eq!(from_sockaddr(&st, 0), None);
        let len = to_sockaddr(
            "[::ffff:10.0.0.1]:7".parse().unwrap(),
            libc::AF_INET,
            &mut st,
        )
        .unwrap();
        assert_eq!(from_sockaddr(&st, len), Some("10.0.0.1:7".parse().unwrap()));
        assert_eq!(from_sockaddr(&st, 4), None, "short length rejected");
    }
}
