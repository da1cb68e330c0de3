//! SIGINT / SIGTERM: the handler only sets the process's stop flag.
//!
//! Invariant: the handler does nothing but an atomic load of the installed flag and an
//! atomic store into it (async-signal-safe). No `SA_RESTART`, so a blocking call returns
//! early with EINTR and its loop looks at the flag. Child processes get the default
//! dispositions back on `exec`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(flag) = STOP.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// Install the handlers (once per process) and return the flag they set; the server, the
/// client and the demo poll it.
pub fn install() -> Arc<AtomicBool> {
    let flag = STOP
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is
        // async-signal-safe (see the module invariant).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    flag
}

/// True once SIGINT or SIGTERM arrived (after [`install`]).
pub fn interrupted() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::SeqCst))
}
