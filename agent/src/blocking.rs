//! Blocking calls made from async code without starving the runtime.
//!
//! The agent runs on two worker threads; a syscall that blocks (an
//! `SIOCETHTOOL` ioctl waiting for the kernel's `rtnl_lock` while the
//! kernel tears down namespaces after a perf run, an `fsync` of the
//! journal on a busy disk) used to hold a worker, and two of them stopped
//! the heartbeats: the controller saw its agent "silent for 3.0 s".
//! [`in_place`] hands the worker's other tasks to a new thread for the
//! duration of the call (`tokio::task::block_in_place`), so heartbeats and
//! other requests keep flowing. Outside a multi-thread runtime (tests, the
//! blocking pool, namespace threads) it just runs the call.

/// Runs blocking `f`, letting the runtime move this worker's other tasks
/// elsewhere meanwhile.
pub fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
