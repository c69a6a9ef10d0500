//! SIGINT/SIGTERM as a flag the engine's loops poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag set by SIGINT/SIGTERM.
pub fn shutdown_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        SIGNALLED.store(Arc::as_ptr(&flag) as usize, Ordering::SeqCst);
        extern "C" fn on_signal(_: libc::c_int) {
            // SeqCst: pairs with the store above; the pointer is set before the handler
            // is installed and the Arc lives for the whole program (OnceLock).
            let p = SIGNALLED.load(Ordering::SeqCst) as *const AtomicBool;
            if !p.is_null() {
                // SAFETY: `p` points into the Arc kept alive forever by the OnceLock;
                // storing to an atomic is async-signal-safe.
                unsafe { (*p).store(true, Ordering::SeqCst) };
            }
        }
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: installing a handler that only stores to an atomic.
            unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        }
        flag
    })
    .clone()
}

static SIGNALLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
