//! UDP sockets for the shards: one SO_REUSEPORT group per listening address, one socket per
//! shard, so the kernel spreads flows over shards by 4-tuple.
//!
//! Invariants: every socket of a group is bound to the same address and port (with port 0
//! the first socket's ephemeral port is reused for the rest); sockets are blocking and
//! close-on-exec; dual-stack (`[::]` with `v6only = Some(false)`) reports IPv4 peers as
//! v4-mapped IPv6, which [`normalize`] turns back into plain IPv4.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket options for a reuseport group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpOptions {
    /// For IPv6 addresses: `Some(true)` IPv6 only, `Some(false)` dual stack, `None` leave
    /// the system default (`net.ipv6.bindv6only`).
    pub v6only: Option<bool>,
    /// SO_SNDBUF in bytes (forced past `wmem_max` when privileged).
    pub sndbuf: Option<usize>,
    /// SO_RCVBUF in bytes (forced past `rmem_max` when privileged).
    pub rcvbuf: Option<usize>,
    /// Request IP_PKTINFO / IPV6_RECVPKTINFO ancillary data (the local address a datagram
    /// was sent to), for multi-homed servers.
    pub pktinfo: bool,
}

/// Binds `count` sockets to `addr` in one SO_REUSEPORT group.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    v6only: Option<bool>,
) -> io::Result<Vec<UdpSocket>> {
    bind_reuseport_with(
        addr,
        count,
        &UdpOptions {
            v6only,
            ..UdpOptions::default()
        },
    )
}

/// Binds `count` sockets to `addr` in one SO_REUSEPORT group with `opts`.
pub fn bind_reuseport_with(
    addr: SocketAddr,
    count: usize,
    opts: &UdpOptions,
) -> io::Result<Vec<UdpSocket>> {
    let mut out: Vec<UdpSocket> = Vec::with_capacity(count);
    let mut bind_to = addr;
    for _ in 0..count {
        let sock = Socket::new(
            Domain::for_address(bind_to),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        sock.set_reuse_port(true)?;
        if bind_to.is_ipv6() {
            if let Some(only) = opts.v6only {
                sock.set_only_v6(only)?;
            }
        }
        if let Some(n) = opts.sndbuf {
            set_buf(&sock, libc::SO_SNDBUFFORCE, n).or_else(|_| sock.set_send_buffer_size(n))?;
        }
        if let Some(n) = opts.rcvbuf {
            set_buf(&sock, libc::SO_RCVBUFFORCE, n).or_else(|_| sock.set_recv_buffer_size(n))?;
        }
        if opts.pktinfo {
            set_pktinfo(&sock, bind_to.is_ipv6())?;
        }
        sock.bind(&bind_to.into())?;
        let udp: UdpSocket = sock.into();
        if bind_to.port() == 0 {
            bind_to.set_port(udp.local_addr()?.port());
        }
        out.push(udp);
    }
    Ok(out)
}

/// Maps a v4-mapped IPv6 address (`::ffff:a.b.c.d`) to plain IPv4; other addresses unchanged.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The inverse of [`normalize`] for sending on an AF_INET6 socket: IPv4 becomes v4-mapped.
pub fn to_v6_mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        SocketAddr::V6(_) => addr,
    }
}

/// `UDP_SEGMENT` and `UDP_GRO` (`include/uapi/linux/udp.h`), at level `SOL_UDP`.
pub const UDP_SEGMENT: libc::c_int = 103;
pub const UDP_GRO: libc::c_int = 104;

/// Whether the kernel takes `UDP_SEGMENT` (UDP GSO, Linux >= 4.18) on this socket: the
/// option reads back on kernels that have it.
pub fn gso_supported(sock: &UdpSocket) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a live c_int and its size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// Turns on UDP GRO receive (Linux >= 5.0): the kernel may then hand over several
/// same-sized datagrams of one sender in one receive, with their size in a `UDP_GRO`
/// control message. Only a driver that reads that message may turn it on.
pub fn enable_gro(sock: &UdpSocket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets SO_SNDBUF / SO_RCVBUF of an already bound socket (forced past the system maximum
/// when privileged, as for the shards' sockets).
pub fn set_buffers(sock: &UdpSocket, sndbuf: usize, rcvbuf: usize) -> io::Result<()> {
    let s = socket2::SockRef::from(sock);
    set_buf(&s, libc::SO_SNDBUFFORCE, sndbuf).or_else(|_| s.set_send_buffer_size(sndbuf))?;
    set_buf(&s, libc::SO_RCVBUFFORCE, rcvbuf).or_else(|_| s.set_recv_buffer_size(rcvbuf))
}

fn set_buf(sock: &Socket, opt: libc::c_int, n: usize) -> io::Result<()> {
    let val = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    setsockopt_int(sock, libc::SOL_SOCKET, opt, val)
}

fn set_pktinfo(sock: &Socket, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt_int(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        // A dual-stack socket receives IPv4 too; IP_PKTINFO covers those datagrams.
        let _ = setsockopt_int(sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
        Ok(())
    } else {
        setsockopt_int(sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

fn setsockopt_int(
    sock: &Socket,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn normalize_maps_v4_mapped_only() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:1194".parse().unwrap();
        assert_eq!(normalize(mapped), "192.0.2.1:1194".parse().unwrap());
        let v6: SocketAddr = "[fd00::1]:1194".parse().unwrap();
        assert_eq!(normalize(v6), v6);
        let v4: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert_eq!(normalize(v4), v4);
        assert_eq!(normalize(to_v6_mapped(v4)), v4);
    }

    #[test]
    fn reuseport_group_shares_ephemeral_port() {
        let socks = bind_reuseport((Ipv4Addr::LOCALHOST, 0).into(), 3, None).unwrap();
        assert_eq!(socks.len(), 3);
        let port = socks[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap().port(), port);
        }
    }

    #[test]
    fn dual_stack_receives_v4_as_mapped() {
        let opts = UdpOptions {
            v6only: Some(false),
            rcvbuf: Some(1 << 20),
            pktinfo: true,
            ..UdpOptions::default()
        };
        let socks = match bind_reuseport_with((Ipv6Addr::UNSPECIFIED, 0).into(), 1, &opts) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping: no IPv6 ({e})");
                return;
            }
        };
        let port = socks[0].local_addr().unwrap().port();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        tx.send_to(b"hi", (Ipv4Addr::LOCALHOST, port)).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = socks[0].recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert!(from.is_ipv6());
        assert_eq!(normalize(from), tx.local_addr().unwrap());
    }
}
