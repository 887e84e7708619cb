//! Lowering a thread's OS scheduling priority (its nice value), so that
//! guest threads yield the CPU to the node's serving threads.

use std::sync::atomic::{AtomicBool, Ordering};

/// Sets the calling thread's nice value to `nice` (Linux keeps one per
/// thread). Raising it needs no privilege; a failure is logged once and
/// otherwise ignored (the guest then runs at normal priority).
pub(crate) fn lower_this_thread(nice: i32) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(nice, error = %e, "cannot lower the guest threads' priority");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_can_lower_its_own_priority_only() {
        std::thread::spawn(|| {
            super::lower_this_thread(7);
            let tid = rustix::thread::gettid();
            assert_eq!(rustix::process::getpriority_process(Some(tid)).unwrap(), 7);
        })
        .join()
        .unwrap();
        let me = rustix::thread::gettid();
        assert_ne!(rustix::process::getpriority_process(Some(me)).unwrap(), 7);
    }
}
