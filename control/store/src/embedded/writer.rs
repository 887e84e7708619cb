//! The single writer: group commit.
//!
//! Every write goes through one thread. It takes all requests waiting (up to
//! a batch limit), applies them one after another in one redb transaction,
//! each with its own revision, commits with an fsync, then publishes the
//! events and answers every request. Many concurrent writers thus share one
//! fsync, and revisions are assigned in commit order.

use super::codec::{
    COMPACTED_KEY, HISTORY, KV, LEASE_KEYS, LEASES, LOG, LogEntry, META, NEXT_LEASE_KEY,
    REVISION_KEY, Record, storage,
};
use super::watch::{Batch, Hub};
use crate::error::StoreError;
use crate::kv::{KeyValue, LeaseId, Revision, WatchEvent, lossy};
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// A write the writer thread applies.
#[derive(Debug)]
pub(super) enum Op {
    Create {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Update {
        key: Vec<u8>,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    },
    Delete {
        key: Vec<u8>,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
    GrantLease {
        ttl_secs: u64,
    },
    RevokeLease {
        lease: LeaseId,
    },
}

/// What a successful [`Op`] gives back.
#[derive(Debug)]
pub(super) enum Done {
    Revision(Revision),
    Deleted(Revision, KeyValue),
    Lease(LeaseId),
    Nothing,
}

pub(super) type Reply = oneshot::Sender<Result<Done, StoreError>>;
pub(super) type Request = (Op, Reply);

/// State the writer keeps between batches; reloaded from disk after a failed commit.
#[derive(Debug)]
struct State {
    revision: Revision,
    compacted: Revision,
    next_lease: i64,
}

impl State {
    fn load(db: &Database) -> Result<State, StoreError> {
        use redb::ReadableDatabase;
        let txn = db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let get = |k| -> Result<i64, StoreError> {
            Ok(meta
                .get(k)
                .map_err(storage)?
                .map_or(0, |v| v.value() as i64))
        };
        Ok(State {
            revision: get(REVISION_KEY)?,
            compacted: get(COMPACTED_KEY)?,
            next_lease: get(NEXT_LEASE_KEY)?.max(1),
        })
    }
}

/// Shared numbers the readers need without a transaction.
#[derive(Debug, Default)]
pub(super) struct Published {
    pub compacted: AtomicI64,
}

/// Runs the writer loop until every sender is gone.
pub(super) fn run(
    db: Arc<Database>,
    mut requests: mpsc::Receiver<Request>,
    hub: Hub,
    published: Arc<Published>,
    max_batch: usize,
) {
    let mut state = match State::load(&db) {
        Ok(state) => state,
        Err(err) => {
            tracing::error!(error = %err, "store writer cannot read its state");
            return;
        }
    };
    published.compacted.store(state.compacted, Ordering::SeqCst);
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let first_revision = state.revision + 1;
        match commit_batch(&db, &mut state, &mut batch) {
            Ok(outcomes) => {
                published.compacted.store(state.compacted, Ordering::SeqCst);
                let mut events = Vec::new();
                let mut replies = Vec::with_capacity(outcomes.len());
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    match outcome {
                        Ok((done, evs)) => {
                            events.extend(evs);
                            replies.push((reply, Ok(done)));
                        }
                        Err(err) => replies.push((reply, Err(err))),
                    }
                }
                // Publish before answering: a writer that saw its revision
                // can count on watchers getting it.
                hub.publish(Batch {
                    first: first_revision,
                    last: state.revision,
                    events,
                });
                for (reply, result) in replies {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, ops = batch.len(), "store commit failed");
                let determinate = err.is_determinate();
                for (_, reply) in batch.drain(..) {
                    let e = if determinate {
                        StoreError::unavailable(err.to_string())
                    } else {
                        StoreError::indeterminate(err.to_string())
                    };
                    let _ = reply.send(Err(e));
                }
                match State::load(&db) {
                    Ok(reloaded) => state = reloaded,
                    Err(e) => {
                        tracing::error!(error = %e, "store writer cannot reload its state; stopping");
                        return;
                    }
                }
            }
        }
    }
}

type Outcome = Result<(Done, Vec<WatchEvent>), StoreError>;

/// Applies a batch in one durable transaction. An error here means the whole
/// transaction was lost (determinate) or its commit is in doubt.
fn commit_batch(
    db: &Database,
    state: &mut State,
    batch: &mut [Request],
) -> Result<Vec<Outcome>, StoreError> {
    let mut txn = db.begin_write().map_err(storage)?;
    txn.set_durability(Durability::Immediate).map_err(storage)?;
    let before = (state.revision, state.compacted, state.next_lease);
    let outcomes = match apply_all(&txn, state, batch) {
        Ok(outcomes) => outcomes,
        Err(err) => {
            (state.revision, state.compacted, state.next_lease) = before;
            let _ = txn.abort();
            return Err(err);
        }
    };
    if let Err(err) = txn.commit() {
        (state.revision, state.compacted, state.next_lease) = before;
        return Err(StoreError::indeterminate(err));
    }
    Ok(outcomes)
}

struct Tables<'t> {
    meta: Table<'t, &'static str, u64>,
    kv: Table<'t, &'static [u8], &'static [u8]>,
    history: Table<'t, (&'static [u8], u64), &'static [u8]>,
    log: Table<'t, u64, &'static [u8]>,
    leases: Table<'t, i64, u64>,
    lease_keys: Table<'t, (i64, &'static [u8]), ()>,
}

fn apply_all(
    txn: &WriteTransaction,
    state: &mut State,
    batch: &mut [Request],
) -> Result<Vec<Outcome>, StoreError> {
    let mut t = Tables {
        meta: txn.open_table(META).map_err(storage)?,
        kv: txn.open_table(KV).map_err(storage)?,
        history: txn.open_table(HISTORY).map_err(storage)?,
        log: txn.open_table(LOG).map_err(storage)?,
        leases: txn.open_table(LEASES).map_err(storage)?,
        lease_keys: txn.open_table(LEASE_KEYS).map_err(storage)?,
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for (op, _) in batch.iter() {
        outcomes.push(apply(&mut t, state, op)?);
    }
    t.meta
        .insert(REVISION_KEY, state.revision as u64)
        .map_err(storage)?;
    t.meta
        .insert(COMPACTED_KEY, state.compacted as u64)
        .map_err(storage)?;
    t.meta
        .insert(NEXT_LEASE_KEY, state.next_lease as u64)
        .map_err(storage)?;
    Ok(outcomes)
}

/// Applies one op. The outer `Err` is a storage failure that dooms the whole
/// batch; the inner one is this op's own refusal, which changes nothing.
fn apply(t: &mut Tables<'_>, state: &mut State, op: &Op) -> Result<Outcome, StoreError> {
    match op {
        Op::Create { key, value, lease } => {
            if t.kv.get(key.as_slice()).map_err(storage)?.is_some() {
                return Ok(Err(StoreError::AlreadyExists { key: lossy(key) }));
            }
            if let Some(refused) = check_lease(t, *lease)? {
                return Ok(Err(refused));
            }
            let ev = put(t, state, key, value, *lease, None)?;
            Ok(Ok((Done::Revision(state.revision), vec![ev])))
        }
        Op::Update {
            key,
            value,
            expected,
            lease,
        } => {
            let Some(current) = current(t, key)? else {
                return Ok(Err(StoreError::NotFound { key: lossy(key) }));
            };
            if current.mod_revision != *expected {
                return Ok(Err(StoreError::Conflict {
                    key: lossy(key),
                    expected: *expected,
                    current: Box::new(current.into_kv(key)),
                }));
            }
            if let Some(refused) = check_lease(t, *lease)? {
                return Ok(Err(refused));
            }
            let ev = put(t, state, key, value, *lease, Some(current))?;
            Ok(Ok((Done::Revision(state.revision), vec![ev])))
        }
        Op::Delete { key, expected } => {
            let Some(current) = current(t, key)? else {
                return Ok(Err(StoreError::NotFound { key: lossy(key) }));
            };
            if let Some(expected) = expected
                && current.mod_revision != *expected
            {
                return Ok(Err(StoreError::Conflict {
                    key: lossy(key),
                    expected: *expected,
                    current: Box::new(current.into_kv(key)),
                }));
            }
            let ev = delete(t, state, key, current)?;
            let WatchEvent::Delete { prev, revision } = &ev else {
                unreachable!("delete gives a delete event")
            };
            Ok(Ok((Done::Deleted(*revision, prev.clone()), vec![ev])))
        }
        Op::Compact { revision } => {
            if *revision > state.revision {
                return Ok(Err(StoreError::FutureRevision {
                    requested: *revision,
                    current: state.revision,
                }));
            }
            if *revision > state.compacted {
                compact(t, state.compacted, *revision)?;
                state.compacted = *revision;
            }
            Ok(Ok((Done::Nothing, Vec::new())))
        }
        Op::GrantLease { ttl_secs } => {
            let id = state.next_lease;
            state.next_lease += 1;
            t.leases.insert(id, *ttl_secs).map_err(storage)?;
            Ok(Ok((Done::Lease(LeaseId(id)), Vec::new())))
        }
        Op::RevokeLease { lease } => {
            if t.leases.remove(lease.0).map_err(storage)?.is_none() {
                return Ok(Err(StoreError::LeaseNotFound(lease.0)));
            }
            let mut keys = Vec::new();
            for entry in t
                .lease_keys
                .range((lease.0, &[][..])..(lease.0 + 1, &[][..]))
                .map_err(storage)?
            {
                let (k, _) = entry.map_err(storage)?;
                keys.push(k.value().1.to_vec());
            }
            let mut events = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(current) = current(t, &key)? {
                    events.push(delete(t, state, &key, current)?);
                }
            }
            Ok(Ok((Done::Nothing, events)))
        }
    }
}

fn current(t: &Tables<'_>, key: &[u8]) -> Result<Option<Record>, StoreError> {
    match t.kv.get(key).map_err(storage)? {
        Some(bytes) => Record::decode(bytes.value()),
        None => Ok(None),
    }
}

fn check_lease(t: &Tables<'_>, lease: Option<LeaseId>) -> Result<Option<StoreError>, StoreError> {
    match lease {
        Some(l) if t.leases.get(l.0).map_err(storage)?.is_none() => {
            Ok(Some(StoreError::LeaseNotFound(l.0)))
        }
        _ => Ok(None),
    }
}

fn put(
    t: &mut Tables<'_>,
    state: &mut State,
    key: &[u8],
    value: &[u8],
    lease: Option<LeaseId>,
    prev: Option<Record>,
) -> Result<WatchEvent, StoreError> {
    state.revision += 1;
    let rev = state.revision;
    let record = Record {
        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
        mod_revision: rev,
        version: prev.as_ref().map_or(1, |p| p.version + 1),
        lease,
        value: value.to_vec(),
    };
    let encoded = record.encode();
    t.kv.insert(key, encoded.as_slice()).map_err(storage)?;
    t.history
        .insert((key, rev as u64), encoded.as_slice())
        .map_err(storage)?;
    let entry = LogEntry {
        deleted: false,
        prev_revision: prev.as_ref().map_or(0, |p| p.mod_revision),
        key: key.to_vec(),
    };
    t.log
        .insert(rev as u64, entry.encode().as_slice())
        .map_err(storage)?;
    let old_lease = prev.as_ref().and_then(|p| p.lease);
    if old_lease != lease {
        if let Some(old) = old_lease {
            t.lease_keys.remove((old.0, key)).map_err(storage)?;
        }
        if let Some(new) = lease {
            t.lease_keys.insert((new.0, key), ()).map_err(storage)?;
        }
    }
    Ok(WatchEvent::Put {
        kv: record.into_kv(key),
        prev: prev.map(|p| p.into_kv(key)),
    })
}

fn delete(
    t: &mut Tables<'_>,
    state: &mut State,
    key: &[u8],
    current: Record,
) -> Result<WatchEvent, StoreError> {
    state.revision += 1;
    let rev = state.revision;
    t.kv.remove(key).map_err(storage)?;
    t.history
        .insert((key, rev as u64), Record::tombstone())
        .map_err(storage)?;
    let entry = LogEntry {
        deleted: true,
        prev_revision: current.mod_revision,
        key: key.to_vec(),
    };
    t.log
        .insert(rev as u64, entry.encode().as_slice())
        .map_err(storage)?;
    if let Some(lease) = current.lease {
        t.lease_keys.remove((lease.0, key)).map_err(storage)?;
    }
    Ok(WatchEvent::Delete {
        prev: current.into_kv(key),
        revision: rev,
    })
}

/// Drops the log below `to` and every version superseded before it: per key,
/// of the versions older than `to` only the newest stays, and not even that
/// when it is a deletion. Reads at `to` or later, and the previous values of
/// events at `to` or later, stay answerable.
fn compact(t: &mut Tables<'_>, from: Revision, to: Revision) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    for entry in t
        .log
        .range((from.max(0) as u64)..(to as u64))
        .map_err(storage)?
    {
        let (rev, bytes) = entry.map_err(storage)?;
        entries.push((rev.value(), LogEntry::decode(bytes.value())?));
    }
    for (rev, entry) in entries {
        let key = entry.key.as_slice();
        let superseded = t
            .history
            .range((key, rev + 1)..(key, to as u64))
            .map_err(storage)?
            .next()
            .is_some();
        if superseded || entry.deleted {
            t.history.remove((key, rev)).map_err(storage)?;
        }
        t.log.remove(rev).map_err(storage)?;
    }
    Ok(())
}
