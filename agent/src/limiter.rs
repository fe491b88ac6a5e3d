//! Strangers cannot hold the agent hostage: a cap on connections that have
//! not yet authenticated, a handshake window that shrinks under pressure,
//! descriptors kept in reserve for the controller's session and the
//! journal, and warnings about bad handshakes rate-limited.
//!
//! [`Gate`] admits every new TCP connection: when [`Gate::max`] are already
//! waiting for their handshake, the *oldest* is evicted (it had the longest
//! time to finish and did not), so a flood of stalled connections never
//! locks a legitimate controller out, whose handshake takes milliseconds.
//! With more than half the places taken, a newcomer's handshake window
//! shrinks towards [`MIN_WINDOW`]. The cap is a quarter of the open-files
//! limit (at most [`MAX_PENDING`]), which [`raise_nofile`] raises to its
//! hard limit at start: the other three quarters stay for the session's
//! netlink sockets, job pipes and the journal. The server (`server.rs`)
//! holds a [`Permit`] until the peer has authenticated.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Most connections waiting for their handshake at once.
pub const MAX_PENDING: usize = 512;
/// The shortest handshake window under pressure.
pub const MIN_WINDOW: Duration = Duration::from_millis(500);

/// Raises the soft open-files limit to the hard one (systemd's default
/// soft limit is 1024); returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        if l.rlim_cur < l.rlim_max {
            let want = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
    }
    l.rlim_cur
}

/// The pending-handshake cap for an open-files limit of `nofile`.
pub fn cap_for(nofile: u64) -> usize {
    ((nofile / 4) as usize).clamp(8, MAX_PENDING)
}

/// Admission of connections that have not authenticated yet.
pub struct Gate {
    max: usize,
    /// A std mutex: held only to insert, evict or remove.
    pending: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    next: AtomicU64,
    evicted: AtomicU64,
}

/// One admitted connection's place; the place is freed on drop.
pub struct Permit {
    gate: Arc<Gate>,
    id: u64,
    /// Resolves when a newer connection took this place: give up.
    pub evicted: oneshot::Receiver<()>,
}

impl Permit {
    /// The gate that admitted it.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut p) = self.gate.pending.lock() {
            p.remove(&self.id);
        }
    }
}

impl Gate {
    /// A gate admitting `max` pending connections.
    pub fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max: max.max(1),
            pending: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections waiting now.
    pub fn pending(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }

    /// Connections evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Admits a connection, evicting the oldest waiting one when full.
    pub fn enter(self: &Arc<Self>) -> Permit {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while p.len() >= self.max {
            match p.pop_first() {
                Some((_, old)) => {
                    let _ = old.send(());
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        p.insert(id, tx);
        drop(p);
        Permit {
            gate: self.clone(),
            id,
            evicted: rx,
        }
    }

    /// The handshake window for a newcomer: `base` while at most half the
    /// places are taken, then shrinking linearly to [`MIN_WINDOW`] when
    /// all are.
    pub fn window(&self, base: Duration) -> Duration {
        let load = self.pending() as f64 / self.max as f64;
        if load <= 0.5 || base <= MIN_WINDOW {
            return base;
        }
        let f = ((1.0 - load) * 2.0).clamp(0.0, 1.0);
        MIN_WINDOW + (base - MIN_WINDOW).mul_f64(f)
    }
}

/// Bad handshakes logged per second (a flood of garbage wrote 12 MB of
/// log in 10 s); the rest are counted in the next line that passes.
pub static HANDSHAKE_WARNINGS: std::sync::LazyLock<RateLimit> =
    std::sync::LazyLock::new(|| RateLimit::new(5));

/// At most `per_sec` messages a second pass; the rest are counted and the
/// count is reported with the next message that passes.
pub struct RateLimit {
    per_sec: u32,
    /// A std mutex: held only to count.
    state: Mutex<(Instant, u32, u64)>,
}

impl RateLimit {
    pub const fn new_at(per_sec: u32, now: Instant) -> Self {
        RateLimit {
            per_sec,
            state: Mutex::new((now, 0, 0)),
        }
    }

    pub fn new(per_sec: u32) -> Self {
        Self::new_at(per_sec, Instant::now())
    }

    /// `Some(suppressed since the last one that passed)` if this message
    /// may be logged now, `None` if it is to be dropped.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(s.0) >= Duration::from_secs(1) {
            s.0 = now;
            s.1 = 0;
        }
        if s.1 < self.per_sec {
            s.1 += 1;
            let dropped = s.2;
            s.2 = 0;
            Some(dropped)
        } else {
            s.2 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_gate_evicts_the_oldest() {
        let g = Gate::new(2);
        let mut a = g.enter();
        let b = g.enter();
        assert_eq!(g.pending(), 2);
        let _c = g.enter();
        assert_eq!(g.pending(), 2);
        assert!(a.evicted.try_recv().is_ok(), "oldest not evicted");
        drop(b);
        assert_eq!(g.pending(), 1);
        assert_eq!(g.evicted(), 1);
    }

    #[test]
    fn window_shrinks_under_pressure() {
        let g = Gate::new(10);
        let base = Duration::from_secs(10);
        let _p: Vec<Permit> = (0..5).map(|_| g.enter()).collect();
        assert_eq!(g.window(base), base);
        let _q: Vec<Permit> = (0..5).map(|_| g.enter()).collect();
        assert_eq!(g.window(base), MIN_WINDOW);
    }

    #[test]
    fn cap_follows_the_limit() {
        assert_eq!(cap_for(1024), 256);
        assert_eq!(cap_for(1 << 20), MAX_PENDING);
        assert_eq!(cap_for(4), 8);
    }

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let r = RateLimit::new(2);
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        r.state.lock().unwrap().0 -= Duration::from_secs(2);
        assert_eq!(r.allow(), Some(2));
    }
}
