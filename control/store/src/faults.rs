//! A fault-injecting wrapper for chaos tests.
//!
//! [`Faulty`] wraps any [`Store`] and, by a seeded pseudo-random draw per
//! call, fails operations the ways a real store fails:
//! - *unavailable*: refused before reaching the store (nothing applied);
//! - *indeterminate*: a write reaches the store and is applied, but the
//!   caller gets [`StoreError::Indeterminate`], as after a timeout;
//! - *broken watch*: a watch stream ends with an error mid-way, as when a
//!   connection drops, so the consumer must resume from its last revision.
//!
//! Draws are deterministic for a seed, so a failing chaos run can be replayed.

use crate::Store;
use crate::error::StoreError;
use crate::kv::{KeyValue, LeaseId, RangeRequest, RangeResponse, Revision, WatchStream};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each kind of fault fires, as a probability per call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    pub unavailable: f64,
    pub indeterminate: f64,
    pub broken_watch: f64,
}

/// How many faults were injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub unavailable: u64,
    pub indeterminate: u64,
    pub broken_watches: u64,
}

/// A store that fails on purpose.
#[derive(Clone, Debug)]
pub struct Faulty<S> {
    inner: S,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    rates: Mutex<FaultRates>,
    rng: AtomicU64,
    unavailable: AtomicU64,
    indeterminate: AtomicU64,
    broken_watches: AtomicU64,
}

impl Shared {
    /// splitmix64 over an atomic counter: a uniform draw in [0, 1).
    fn draw(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn rates(&self) -> FaultRates {
        *self.rates.lock().expect("fault rates lock")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected fault")]
struct Injected;

impl<S: Store> Faulty<S> {
    /// Wraps `inner`; no faults fire until rates are set.
    pub fn new(inner: S, seed: u64) -> Self {
        Faulty {
            inner,
            shared: Arc::new(Shared {
                rates: Mutex::new(FaultRates::default()),
                rng: AtomicU64::new(seed),
                unavailable: AtomicU64::new(0),
                indeterminate: AtomicU64::new(0),
                broken_watches: AtomicU64::new(0),
            }),
        }
    }

    pub fn set_rates(&self, rates: FaultRates) {
        *self.shared.rates.lock().expect("fault rates lock") = rates;
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        self.set_rates(FaultRates::default());
    }

    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            unavailable: self.shared.unavailable.load(Ordering::Relaxed),
            indeterminate: self.shared.indeterminate.load(Ordering::Relaxed),
            broken_watches: self.shared.broken_watches.load(Ordering::Relaxed),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn before(&self) -> Result<(), StoreError> {
        if self.shared.draw() < self.shared.rates().unavailable {
            self.shared.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::unavailable(Injected));
        }
        Ok(())
    }

    /// After a write the store applied: maybe hide its outcome.
    fn after_write<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if self.shared.draw() < self.shared.rates().indeterminate {
            self.shared.indeterminate.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::indeterminate(Injected));
        }
        result
    }
}

#[async_trait]
impl<S: Store + Clone> Store for Faulty<S> {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        self.before()?;
        self.inner.get(key).await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.before()?;
        self.inner.range(req).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.before()?;
        self.inner.current_revision().await
    }

    async fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        self.before()?;
        let result = self.inner.create(key, value, lease).await;
        self.after_write(result)
    }

    async fn update(
        &self,
        key: &[u8],
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        self.before()?;
        let result = self.inner.update(key, value, expected, lease).await;
        self.after_write(result)
    }

    async fn delete(
        &self,
        key: &[u8],
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StoreError> {
        self.before()?;
        let result = self.inner.delete(key, expected).await;
        self.after_write(result)
    }

    async fn watch(&self, prefix: &[u8], from: Revision) -> Result<WatchStream, StoreError> {
        self.before()?;
        let stream = self.inner.watch(prefix, from).await?;
        let shared = self.shared.clone();
        // After each event, maybe break the stream: the consumer sees an
        // error and nothing more, as when a connection drops.
        let stream = stream
            .flat_map(move |item| {
                let broken = item.is_ok() && shared.draw() < shared.rates().broken_watch;
                if broken {
                    shared.broken_watches.fetch_add(1, Ordering::Relaxed);
                }
                let mut out = vec![item];
                if broken {
                    out.push(Err(StoreError::unavailable(Injected)));
                }
                futures::stream::iter(out)
            })
            .scan(false, |ended, item| {
                if *ended {
                    return futures::future::ready(None);
                }
                *ended = item.is_err();
                futures::future::ready(Some(item))
            });
        Ok(stream.boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.before()?;
        self.inner.compact(revision).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.before()?;
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        self.before()?;
        self.inner.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.before()?;
        self.inner.revoke_lease(lease).await
    }
}
