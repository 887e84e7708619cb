//! The on-disk encoding of records and log entries, and the table layout.
//!
//! Tables:
//! - `meta`: format version, current revision, compacted revision, lease counter;
//! - `kv`: key -> the key's current [`Record`];
//! - `history`: (key, revision) -> the [`Record`] written at that revision, or a
//!   tombstone; every version not yet compacted, for reads at a past revision;
//! - `log`: revision -> [`LogEntry`], the change made at that revision, for watches;
//! - `leases`: lease id -> TTL in seconds; `lease_keys`: (lease id, key) -> ().

use crate::error::StoreError;
use crate::kv::{KeyValue, LeaseId, Revision};
use redb::TableDefinition;

pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
pub(super) const KV: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("kv");
pub(super) const HISTORY: TableDefinition<'_, (&[u8], u64), &[u8]> =
    TableDefinition::new("history");
pub(super) const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
pub(super) const LEASES: TableDefinition<'_, i64, u64> = TableDefinition::new("leases");
pub(super) const LEASE_KEYS: TableDefinition<'_, (i64, &[u8]), ()> =
    TableDefinition::new("lease_keys");

pub(super) const FORMAT_KEY: &str = "format";
pub(super) const FORMAT_VERSION: u64 = 1;
pub(super) const REVISION_KEY: &str = "revision";
pub(super) const COMPACTED_KEY: &str = "compacted";
pub(super) const NEXT_LEASE_KEY: &str = "next_lease";

const RECORD_TAG: u8 = 1;
const TOMBSTONE_TAG: u8 = 2;
const HEADER: usize = 1 + 8 * 4;

/// One stored version of a key, without the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    pub lease: Option<LeaseId>,
    pub value: Vec<u8>,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.value.len());
        out.push(RECORD_TAG);
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.mod_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.lease.map_or(0, |l| l.0).to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes a version; `Ok(None)` is a tombstone.
    pub fn decode(bytes: &[u8]) -> Result<Option<Record>, StoreError> {
        match bytes.first() {
            Some(&TOMBSTONE_TAG) if bytes.len() == 1 => Ok(None),
            Some(&RECORD_TAG) if bytes.len() >= HEADER => {
                let field = |i: usize| {
                    let start = 1 + 8 * i;
                    i64::from_le_bytes(bytes[start..start + 8].try_into().expect("8 bytes"))
                };
                let lease = field(3);
                Ok(Some(Record {
                    create_revision: field(0),
                    mod_revision: field(1),
                    version: field(2),
                    lease: (lease != 0).then_some(LeaseId(lease)),
                    value: bytes[HEADER..].to_vec(),
                }))
            }
            _ => Err(StoreError::Corrupt {
                detail: format!(
                    "a stored record of {} bytes has no valid header",
                    bytes.len()
                ),
            }),
        }
    }

    pub fn tombstone() -> &'static [u8] {
        &[TOMBSTONE_TAG]
    }

    pub fn into_kv(self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

/// What happened at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LogEntry {
    pub deleted: bool,
    /// The key's previous version (0 when the write created it).
    pub prev_revision: Revision,
    pub key: Vec<u8>,
}

impl LogEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.key.len());
        out.push(if self.deleted { 2 } else { 1 });
        out.extend_from_slice(&self.prev_revision.to_le_bytes());
        out.extend_from_slice(&self.key);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LogEntry, StoreError> {
        match bytes.first() {
            Some(tag @ (1 | 2)) if bytes.len() >= 9 => Ok(LogEntry {
                deleted: *tag == 2,
                prev_revision: i64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes")),
                key: bytes[9..].to_vec(),
            }),
            _ => Err(StoreError::Corrupt {
                detail: format!("a log entry of {} bytes has no valid header", bytes.len()),
            }),
        }
    }
}

/// Maps a redb error to a store error: corruption is named, the rest means
/// the disk or database could not be used and nothing was applied.
pub(super) fn storage(err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::Corrupted(detail) => StoreError::Corrupt { detail },
        other => StoreError::unavailable(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = Record {
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: Some(LeaseId(7)),
            value: b"hello".to_vec(),
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), Some(r));
        assert_eq!(Record::decode(Record::tombstone()).unwrap(), None);
        assert!(matches!(
            Record::decode(&[1, 2, 3]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn log_entries_round_trip() {
        let e = LogEntry {
            deleted: true,
            prev_revision: 12,
            key: b"/a/b".to_vec(),
        };
        assert_eq!(LogEntry::decode(&e.encode()).unwrap(), e);
        assert!(LogEntry::decode(&[9; 12]).is_err());
    }
}
