//! `Usage`: what a running guest uses, readable while it runs (a CRI
//! runtime's `ContainerStats`). The meters are atomics shared by the guest's
//! stores: the CPU meter and the memory limiter of each store add to them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of a guest's usage so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Time spent running guest code (measured between epoch checkpoints),
    /// across every instance: an HTTP function adds up its requests.
    pub cpu_time: Duration,
    /// Linear memory held now, across every live instance.
    pub memory_bytes: u64,
    /// The most linear memory held at once so far.
    pub peak_memory_bytes: u64,
    /// HTTP function: requests whose instance has finished.
    pub requests_served: u64,
    /// HTTP function: requests running in an instance now (queued ones are
    /// not counted).
    pub requests_in_flight: u64,
    /// HTTP function: requests waiting for a free slot now.
    pub requests_queued: u64,
}

/// The live counters behind [`Usage`].
#[derive(Debug, Default)]
pub(crate) struct Meters {
    cpu_nanos: AtomicU64,
    memory: AtomicU64,
    peak: AtomicU64,
    served: AtomicU64,
    in_flight: AtomicU64,
    queued: AtomicU64,
}

impl Meters {
    pub(crate) fn add_cpu(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn grow(&self, bytes: u64) {
        let now = self.memory.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn shrink(&self, bytes: u64) {
        self.memory.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request into the queue unless `limit` are waiting already.
    pub(crate) fn try_enqueue(&self, limit: usize) -> bool {
        let limit = limit as u64;
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < limit).then_some(q + 1)
            })
            .is_ok()
    }

    pub(crate) fn dequeue(&self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn snapshot(&self) -> Usage {
        Usage {
            cpu_time: Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed)),
            memory_bytes: self.memory.load(Ordering::Relaxed),
            peak_memory_bytes: self.peak.load(Ordering::Relaxed),
            requests_served: self.served.load(Ordering::Relaxed),
            requests_in_flight: self.in_flight.load(Ordering::Relaxed),
            requests_queued: self.queued.load(Ordering::SeqCst),
        }
    }
}
