//! Dropping root after setup (`user` / `group`), as OpenVPN does once the tun device, sockets
//! and routes exist.

use std::ffi::CString;
use std::io;

/// Switch to `group` then `user` (names from the config). Supplementary groups are cleared.
pub fn drop_to(user: Option<&str>, group: Option<&str>) -> io::Result<()> {
    if let Some(g) = group {
        let name = CString::new(g).map_err(|_| io::Error::other("group name contains NUL"))?;
        // SAFETY: getgrnam reads a NUL-terminated string and returns a pointer into static
        // storage that we read immediately, on this thread, before any other getgr* call.
        let gr = unsafe { libc::getgrnam(name.as_ptr()) };
        if gr.is_null() {
            return Err(io::Error::other(format!("group {g}: no such group")));
        }
        // SAFETY: gr is non-null and points to a valid struct group (see above).
        let gid = unsafe { (*gr).gr_gid };
        // SAFETY: plain syscalls with integer / null arguments.
        if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 || unsafe { libc::setgid(gid) } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    if let Some(u) = user {
        let name = CString::new(u).map_err(|_| io::Error::other("user name contains NUL"))?;
        // SAFETY: as for getgrnam above.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            return Err(io::Error::other(format!("user {u}: no such user")));
        }
        // SAFETY: pw is non-null and points to a valid struct passwd.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        // SAFETY: plain syscalls with integer / null arguments.
        unsafe {
            if group.is_none()
                && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(uid) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
