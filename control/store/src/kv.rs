//! The data model shared by every backend: keys, values, revisions, events.

use crate::error::StoreError;
use futures::stream::BoxStream;

/// A global revision: every write bumps it by one. Revision 0 is "none".
pub type Revision = i64;

/// The largest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// The largest value accepted, in bytes: 1.5 MiB, etcd's default request limit.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// A lease: keys attached to it are deleted when it expires or is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation, starting at 1.
    pub version: i64,
    pub lease: Option<LeaseId>,
}

/// A range read: every key that starts with `prefix`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: Vec<u8>,
    /// Start at this key (inclusive) instead of the prefix; it must start
    /// with `prefix`. Paging passes the key after the last one returned.
    pub start: Option<Vec<u8>>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read at this revision; 0 means the current one.
    pub revision: Revision,
}

impl RangeRequest {
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            prefix: prefix.into(),
            ..Default::default()
        }
    }
}

/// The answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// The revision the range was read at.
    pub revision: Revision,
    /// More keys follow the last one returned.
    pub more: bool,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// `kv` was written; `prev` is the value it replaced, if any.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// `prev.key` was deleted at `revision`.
    Delete { prev: KeyValue, revision: Revision },
    /// Every change up to `revision` has been delivered.
    Progress { revision: Revision },
}

impl WatchEvent {
    /// The revision the event happened at (or reports, for progress).
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }

    /// The key changed, or `None` for progress.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            WatchEvent::Put { kv, .. } => Some(&kv.key),
            WatchEvent::Delete { prev, .. } => Some(&prev.key),
            WatchEvent::Progress { .. } => None,
        }
    }
}

/// A stream of watch events; it ends after yielding an error.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// Checks a key against the store's limits.
pub fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLarge {
            size: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Checks a value against the store's limits.
pub fn check_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The smallest key greater than every key starting with `prefix`, or an
/// empty vector when there is none (the prefix is all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

pub(crate) fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        assert_eq!(prefix_end(&[0xff, 0xff]), Vec::<u8>::new());
    }

    #[test]
    fn limits_are_enforced() {
        assert!(matches!(check_key(b""), Err(StoreError::EmptyKey)));
        assert!(check_key(&vec![b'k'; MAX_KEY_BYTES]).is_ok());
        assert!(matches!(
            check_key(&vec![b'k'; MAX_KEY_BYTES + 1]),
            Err(StoreError::KeyTooLarge { .. })
        ));
        assert!(check_value(&vec![0; MAX_VALUE_BYTES]).is_ok());
        assert!(matches!(
            check_value(&vec![0; MAX_VALUE_BYTES + 1]),
            Err(StoreError::ValueTooLarge { .. })
        ));
    }
}
