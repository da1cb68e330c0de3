//! Linux tun devices, optionally multi-queue (`IFF_MULTI_QUEUE`), without packet info
//! (`IFF_NO_PI`): every read returns exactly one IP packet, every write takes one.
//!
//! Invariants: the device is never made persistent, so it disappears when the last queue fd
//! closes; all queue fds refer to the same device (`name()`); fds are blocking unless the
//! caller changes them with [`crate::os::set_nonblocking`] (the io_uring driver wants blocking
//! fds, the epoll driver non-blocking ones, so the driver decides).

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Path of the tun clone device.
const TUN_CLONE_DEV: &str = "/dev/net/tun";

/// `struct ifreq` restricted to the part TUNSETIFF uses: name then `short ifr_flags`, padded
/// to the kernel's 40-byte size.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `TUNSETOFFLOAD` (`_IOW('T', 208, unsigned int)`) and its flags, from
/// `include/uapi/linux/if_tun.h`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const TUN_F_TSO_ECN: libc::c_ulong = 0x08;
const TUN_F_USO4: libc::c_ulong = 0x20;
const TUN_F_USO6: libc::c_ulong = 0x40;

/// Offloads the kernel accepted for a tun (checksum offload is implied by both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// TCP super-packets (`TUN_F_TSO4` / `TUN_F_TSO6`).
    pub tso: bool,
    /// UDP super-packets (`TUN_F_USO4` / `TUN_F_USO6`).
    pub uso: bool,
}

/// An open tun device with one fd per queue.
#[derive(Debug)]
pub struct Tun {
    name: String,
    queues: Vec<OwnedFd>,
}

impl Tun {
    /// Creates (or attaches to) tun device `name` with `queues` queues. An empty name or one
    /// containing `%d` lets the kernel choose (`tun%d`). `queues > 1` sets `IFF_MULTI_QUEUE`.
    pub fn create(name: &str, queues: usize) -> io::Result<Tun> {
        Tun::create_with(name, queues, false)
    }

    /// [`Tun::create`], with `vnet_hdr` opening every queue with `IFF_VNET_HDR`: each read
    /// and write then starts with a 10-byte `virtio_net_hdr`, which is what lets the kernel
    /// hand over (and take) TCP/UDP super-packets once [`Tun::enable_offloads`] succeeded.
    pub fn create_with(name: &str, queues: usize, vnet_hdr: bool) -> io::Result<Tun> {
        if queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tun needs at least one queue",
            ));
        }
        if name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?} (at most 15 bytes, no '/')"),
            ));
        }
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        if queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let mut actual = name.to_owned();
        let mut fds = Vec::with_capacity(queues);
        for _ in 0..queues {
            let (fd, got) = attach(&actual, flags)?;
            // Later queues must name the device the first attach created.
            actual = got;
            fds.push(fd);
        }
        Ok(Tun {
            name: actual,
            queues: fds,
        })
    }

    /// Asks the kernel for the offloads fwd can take from a `vnet_hdr` tun, dropping the
    /// newest first where the kernel refuses them: partial checksums and TSO for IPv4/IPv6
    /// (with ECN), plus UDP segmentation (kernel >= 6.2). Returns what was enabled, or the
    /// error of the last attempt when not even checksum offload was accepted.
    pub fn enable_offloads(&self) -> io::Result<Offloads> {
        let fd = self.queue(0)?;
        let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        let mut last = io::Error::from(io::ErrorKind::Unsupported);
        for (flags, got) in [
            (
                tso | TUN_F_USO4 | TUN_F_USO6,
                Offloads {
                    tso: true,
                    uso: true,
                },
            ),
            (
                tso,
                Offloads {
                    tso: true,
                    uso: false,
                },
            ),
            (
                TUN_F_CSUM,
                Offloads {
                    tso: false,
                    uso: false,
                },
            ),
        ] {
            // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, flags) };
            if rc == 0 {
                return Ok(got);
            }
            last = io::Error::last_os_error();
        }
        Err(last)
    }

    /// The interface name the kernel assigned.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One fd per queue, in creation order.
    pub fn queue_fds(&self) -> &[OwnedFd] {
        &self.queues
    }

    /// Gives up the queue fds (one per shard). The device lives while any of them is open.
    pub fn into_queues(self) -> Vec<OwnedFd> {
        self.queues
    }

    /// Reads one packet from queue `queue`.
    pub fn read(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.queue(queue)?, buf)
    }

    /// Writes one packet to queue `queue`.
    pub fn write(&self, queue: usize, pkt: &[u8]) -> io::Result<usize> {
        write_fd(self.queue(queue)?, pkt)
    }

    fn queue(&self, queue: usize) -> io::Result<BorrowedFd<'_>> {
        self.queues
            .get(queue)
            .map(AsFd::as_fd)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such tun queue"))
    }
}

/// Reads one packet from a tun queue fd.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes for the duration of the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.unsigned_abs())
}

/// Writes one packet to a tun queue fd.
pub fn write_fd(fd: BorrowedFd<'_>, pkt: &[u8]) -> io::Result<usize> {
    // SAFETY: pkt is valid for reads of pkt.len() bytes for the duration of the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.unsigned_abs())
}

/// Opens the clone device and attaches it to `name` with `flags`; returns the fd and the
/// name the kernel reports.
fn attach(name: &str, flags: libc::c_int) -> io::Result<(OwnedFd, String)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_CLONE_DEV)?;
    let fd = OwnedFd::from(file);
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        // The IFF_* tun flags all fit in 16 bits (highest is IFF_MULTI_QUEUE = 0x100).
        flags: flags as libc::c_short,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; IfReqFlags has its layout and size.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel NUL-terminates ifr_name; force a terminator in case it did not.
    if let Some(last) = req.name.last_mut() {
        *last = 0;
    }
    // SAFETY: req.name is NUL-terminated (enforced above) and lives for this scope.
    let got = unsafe { CStr::from_ptr(req.name.as_ptr()) };
    Ok((fd, got.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_and_zero_queues() {
        let long = "x".repeat(libc::IFNAMSIZ);
        assert_eq!(
            Tun::create(&long, 1).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
        assert_eq!(
            Tun::create("a/b", 1).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
        assert_eq!(
            Tun::create("ok", 0).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
    }

    #[test]
    fn ifreq_has_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }
}
