//! OS glue: multi-queue tun, netlink (addresses, routes, MTU, link state), UDP sockets, and a
//! network-namespace helper for kernel-dependent tests.
//!
//! Everything here performs real system calls; nothing here parses packets. Every failing
//! operation maps to one [`OsError`] variant naming the operation, with the kernel's error as
//! its source, so callers can report "netlink add_route: File exists" without string matching.

pub mod epoll;
pub mod netlink;
pub mod netns;
pub mod privs;
pub mod signals;
pub mod tun;
pub mod udp;

use std::io;

/// Failure of an OS operation. `op` names the operation (`"add_route"`, `"TUNSETIFF"`, …).
#[derive(Debug, thiserror::Error)]
pub enum OsError {
    /// The kernel refused a netlink request (NLMSG_ERROR) or the socket failed.
    #[error("netlink {op} failed")]
    Netlink {
        /// The request that failed.
        op: &'static str,
        /// errno from the kernel's NLMSG_ERROR, or the socket error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered with something we could not decode.
    #[error("netlink {op}: malformed reply: {reason}")]
    NetlinkDecode {
        /// The request whose reply was malformed.
        op: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// No interface with that name exists.
    #[error("no such network interface: {0}")]
    NoSuchLink(String),
}

impl OsError {
    /// The errno behind this error, if the kernel supplied one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            OsError::Netlink { source, .. } => source.raw_os_error(),
            OsError::NetlinkDecode { .. } | OsError::NoSuchLink(_) => None,
        }
    }
}

/// Sets or clears `O_NONBLOCK` on a file descriptor.
pub fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a borrowed, open fd with F_GETFL/F_SETFL touches no memory.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        if unsafe { libc::fcntl(raw, libc::F_SETFL, new) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
