//! Store errors: what went wrong, and whether the write may have happened.

use crate::kv::{KeyValue, Revision};

/// Any error source kept behind a store error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a store operation can fail with.
///
/// [`StoreError::is_determinate`] splits them: a determinate error means the
/// operation did not happen; an indeterminate one (a timeout, a lost
/// connection after sending) means it may have.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error(
        "key {key:?} was modified: expected mod_revision {expected}, found {}",
        current.mod_revision
    )]
    Conflict {
        key: String,
        expected: Revision,
        /// The value as it is now, so a caller can retry without a read.
        current: Box<KeyValue>,
    },
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is {size} bytes, over the limit of {limit}")]
    KeyTooLarge { size: usize, limit: usize },
    #[error("the value is {size} bytes, over the limit of {limit}")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("lease {0} not found or expired")]
    LeaseNotFound(i64),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the store is unavailable; the operation was not applied")]
    Unavailable {
        #[source]
        source: BoxError,
    },
    #[error("the store did not confirm the operation; it may or may not have been applied")]
    Indeterminate {
        #[source]
        source: BoxError,
    },
    #[error("stored data is corrupt: {detail}")]
    Corrupt { detail: String },
    #[error("{path} is not a Shoal store: {reason}")]
    Foreign { path: String, reason: String },
    #[error("cannot open the store at {path}")]
    Open {
        path: String,
        #[source]
        source: BoxError,
    },
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// True when the operation certainly did not take effect.
    pub fn is_determinate(&self) -> bool {
        !matches!(self, StoreError::Indeterminate { .. })
    }

    /// True for failures a caller may retry as they are (after re-reading
    /// for an indeterminate write).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Indeterminate { .. }
        )
    }

    pub(crate) fn unavailable(source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            source: source.into(),
        }
    }

    pub(crate) fn indeterminate(source: impl Into<BoxError>) -> Self {
        StoreError::Indeterminate {
            source: source.into(),
        }
    }
}
