//! A minimal level-triggered epoll set: the portable data-plane driver waits on its socket,
//! tun queue and waker with it, and one load-generator thread watches hundreds or thousands
//! of client sockets, where poll(2) over all of them on every wake-up would cost O(n).
//!
//! Invariant: the epoll descriptor is owned and closed on drop; registered descriptors are
//! borrowed and must outlive their registration (the caller keeps the sockets).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// An epoll set that reports up to `batch` ready descriptors per wait.
    pub fn new(batch: usize) -> io::Result<Epoll> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epoll_create1 returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let empty = libc::epoll_event { events: 0, u64: 0 };
        Ok(Epoll {
            fd,
            events: vec![empty; batch.max(1)],
        })
    }

    /// Watch `fd` for input; `token` comes back from [`Epoll::wait`].
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout_ms` and return the tokens of ready descriptors.
    pub fn wait(&mut self, timeout_ms: i32, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        let max = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` has room for `max` entries and lives across the call.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                max,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        let n = usize::try_from(n).unwrap_or(0).min(self.events.len());
        ready.extend(self.events[..n].iter().map(|e| e.u64));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn reports_ready_sockets_by_token() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ep = Epoll::new(8).unwrap();
        ep.add(a.as_raw_fd(), 11).unwrap();
        ep.add(b.as_raw_fd(), 22).unwrap();
        let mut ready = Vec::new();
        ep.wait(0, &mut ready).unwrap();
        assert!(ready.is_empty());
        b.send_to(b"x", a.local_addr().unwrap()).unwrap();
        ep.wait(1000, &mut ready).unwrap();
        assert_eq!(ready, vec![11]);
    }
}
