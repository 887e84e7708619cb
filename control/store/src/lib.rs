//! The cluster store: the one place cluster state lives.
//!
//! Kubernetes needs a small, exact contract from its store, the one etcd
//! gives: a global revision bumped by every write, reads at a revision,
//! compare-and-swap on a key's `mod_revision`, an ordered watch that can
//! resume from any revision not yet compacted, and leases. [`Store`] is that
//! contract; [`embedded::EmbeddedStore`] (redb, group commit) and
//! [`etcd::EtcdStore`] (a real etcd) implement it, and [`faults::Faulty`]
//! wraps either to inject failures in chaos tests.
//!
//! Only the apiserver talks to a store.

pub mod embedded;
mod error;
pub mod etcd;
pub mod faults;
mod kv;

pub use error::{BoxError, StoreError};
pub use kv::{
    KeyValue, LeaseId, MAX_KEY_BYTES, MAX_VALUE_BYTES, RangeRequest, RangeResponse, Revision,
    WatchEvent, WatchStream, check_key, check_value, prefix_end,
};

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A revisioned key-value store with the semantics Kubernetes expects from etcd.
///
/// Every successful write returns the new global revision. Writes are
/// linearizable, and a write that returned is durable.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The latest revision of the key, or `None` when it does not exist.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError>;

    /// Keys under a prefix in key order, at one revision (the current one by
    /// default), paged with `limit` and a start key.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;

    /// The current global revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists.
    async fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError>;

    /// Replaces `key` if its `mod_revision` is still `expected`; else
    /// [`StoreError::Conflict`] carrying the current value, or
    /// [`StoreError::NotFound`].
    async fn update(
        &self,
        key: &[u8],
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError>;

    /// Deletes `key`, guarded by its `mod_revision` when `expected` is given.
    /// Returns the revision of the deletion and the deleted value.
    async fn delete(
        &self,
        key: &[u8],
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StoreError>;

    /// Streams every change under `prefix` with a revision `>= from`, in
    /// revision order, each once, with the previous value; `from == 0`
    /// means changes after now. Idle streams get [`WatchEvent::Progress`].
    /// (An event exactly at the compacted revision may lack its previous
    /// value: etcd reads it one revision earlier.)
    /// A `from` older than the compacted revision fails with
    /// [`StoreError::Compacted`], as the first item or at once.
    async fn watch(&self, prefix: &[u8], from: Revision) -> Result<WatchStream, StoreError>;

    /// Forgets superseded versions older than `revision`: reads and watches
    /// below it then fail with [`StoreError::Compacted`]. Compacting an
    /// already compacted revision is a no-op.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// Grants a lease; keys written with it are deleted when it expires.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renews a lease for its full TTL, returning that TTL.
    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError>;

    /// Revokes a lease now, deleting its keys.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;
}

/// A shared handle to any store backend.
pub type DynStore = Arc<dyn Store>;
