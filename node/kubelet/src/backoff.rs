//! [`Backoff`]: the kubelet's per-item exponential back-off, for restarting
//! crashed containers (CrashLoopBackOff) and for retrying failed image pulls
//! (ImagePullBackOff).
//!
//! As Kubernetes' `flowcontrol.Backoff`: the first retry after a failure is
//! immediate; each retry after that waits, from the time of the failure,
//! the base delay doubled on every retry up to the cap; an item that has
//! not failed for `reset_after` starts over at the base.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// How a back-off grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay (Kubernetes: 10 s).
    pub base: Duration,
    /// The longest delay (Kubernetes: 5 min).
    pub max: Duration,
    /// After this long without a failure, the delay starts over (Kubernetes:
    /// 10 min of stable running).
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    /// The failure the delay was last computed for.
    last: SystemTime,
}

/// Back-off state per item.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            entries: HashMap::new(),
        }
    }

    /// How much longer an item that failed at `failed_at` must wait before
    /// its next retry at `now`; `None` if it may retry now.
    pub fn remaining(&self, key: &str, failed_at: SystemTime, now: SystemTime) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if self.expired(entry, failed_at) {
            return None;
        }
        let waited = now.duration_since(failed_at).unwrap_or_default();
        entry.delay.checked_sub(waited).filter(|d| !d.is_zero())
    }

    /// How much longer an item must wait after its last recorded failure
    /// (see [`Backoff::retried`]); `None` if it may retry now.
    pub fn remaining_since_last(&self, key: &str, now: SystemTime) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        self.remaining(key, entry.last, now)
    }

    /// The delay the item is at now (for messages); the base if it has none.
    pub fn delay(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(self.config.base, |e| e.delay)
    }

    /// Records a retry of an item that failed at `failed_at`: the next
    /// failure will wait longer.
    pub fn retried(&mut self, key: &str, failed_at: SystemTime) {
        let config = self.config;
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(e, failed_at) => (e.delay * 2).min(config.max),
            _ => config.base,
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                delay,
                last: failed_at,
            },
        );
    }

    /// Forgets an item (it succeeded).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn expired(&self, entry: &Entry, failed_at: SystemTime) -> bool {
        failed_at
            .duration_since(entry.last)
            .is_ok_and(|d| d > self.config.reset_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn backoff() -> Backoff {
        Backoff::new(BackoffConfig {
            base: 10 * S,
            max: 40 * S,
            reset_after: 100 * S,
        })
    }

    #[test]
    fn first_retry_is_immediate_then_doubles_to_the_cap() {
        let mut b = backoff();
        let t0 = SystemTime::UNIX_EPOCH + 1000 * S;
        assert_eq!(b.remaining("c", t0, t0), None);
        b.retried("c", t0);
        // Crashed again at t1: waits the base from then.
        let t1 = t0 + 2 * S;
        assert_eq!(b.remaining("c", t1, t1), Some(10 * S));
        assert_eq!(b.remaining("c", t1, t1 + 4 * S), Some(6 * S));
        assert_eq!(b.remaining("c", t1, t1 + 10 * S), None);
        b.retried("c", t1);
        assert_eq!(b.delay("c"), 20 * S);
        let mut t = t1;
        for want in [40, 40] {
            t += S;
            b.retried("c", t);
            assert_eq!(b.delay("c"), want * S);
        }
        assert_eq!(b.remaining("other", t, t), None);
    }

    #[test]
    fn a_long_quiet_spell_resets_the_delay() {
        let mut b = backoff();
        let t0 = SystemTime::UNIX_EPOCH + 1000 * S;
        b.retried("c", t0);
        b.retried("c", t0 + S);
        assert_eq!(b.delay("c"), 20 * S);
        // Ran for longer than reset_after before failing again.
        let late = t0 + 200 * S;
        assert_eq!(b.remaining("c", late, late), None);
        b.retried("c", late);
        assert_eq!(b.delay("c"), 10 * S);
        assert_eq!(b.remaining_since_last("c", late + 3 * S), Some(7 * S));
        b.reset("c");
        assert_eq!(b.remaining("c", late, late), None);
        assert_eq!(b.remaining_since_last("c", late), None);
    }
}
