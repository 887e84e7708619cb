//! The embedded backend: a durable redb database in the data directory.
//!
//! One file, `DIR/state.redb`. Writes go through a group-commit writer
//! ([`writer`]) so concurrent writers share an fsync; reads are MVCC
//! snapshots on the blocking pool; watches ([`watch`]) follow the writer and
//! fall back to the log on disk. Lease deadlines live in memory and restart
//! at their full TTL when the store is reopened, as etcd's do after a leader
//! change.

mod codec;
mod watch;
mod writer;

use crate::Store;
use crate::error::StoreError;
use crate::kv::{
    KeyValue, LeaseId, RangeRequest, RangeResponse, Revision, WatchStream, check_key, check_value,
    lossy,
};
use async_trait::async_trait;
use codec::{
    FORMAT_KEY, FORMAT_VERSION, HISTORY, KV, LEASE_KEYS, LEASES, LOG, META, Record, storage,
};
use futures::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use watch::{Hub, Watcher};
use writer::{Done, Op, Published, Request};

/// The file name of the database inside the store directory.
pub const FILE_NAME: &str = "state.redb";

/// How to open an [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// The directory holding the database; created if missing.
    pub dir: PathBuf,
    /// How long a watch stays silent before it gets a progress event.
    pub progress_interval: Duration,
    /// The most writes committed together in one transaction.
    pub max_batch: usize,
    /// The page cache, in bytes.
    pub cache_bytes: usize,
    /// Reads run at once on the blocking pool. Few threads doing reads keep
    /// few malloc arenas holding large freed read buffers.
    pub read_concurrency: usize,
}

impl EmbeddedConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            dir: dir.into(),
            progress_interval: Duration::from_secs(5),
            max_batch: 1024,
            cache_bytes: 32 << 20,
            read_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

/// The embedded store. Cheap to clone; the database closes when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<Database>,
    writer: Option<mpsc::Sender<Request>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    hub: Hub,
    published: Arc<Published>,
    leases: Mutex<HashMap<i64, (Duration, Instant)>>,
    readers: Arc<tokio::sync::Semaphore>,
    config: EmbeddedConfig,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has answered what it holds.
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `config.dir`. A file that is not a
    /// Shoal store, or is damaged, is refused and left as it is.
    pub fn open(config: EmbeddedConfig) -> Result<EmbeddedStore, StoreError> {
        let path = config.dir.join(FILE_NAME);
        let open_err = |source: crate::BoxError| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(|e| StoreError::Open {
            path: config.dir.display().to_string(),
            source: e.into(),
        })?;
        let db = open_database(&path, config.cache_bytes)?;
        let db = Arc::new(db);
        let revision = read_meta(&db, codec::REVISION_KEY)?;
        let hub = Hub::new(revision, 1024);
        let published = Arc::new(Published::default());
        published
            .compacted
            .store(read_meta(&db, codec::COMPACTED_KEY)?, Ordering::SeqCst);
        let now = Instant::now();
        let leases = load_leases(&db)?
            .into_iter()
            .map(|(id, ttl)| (id, (ttl, now + ttl)))
            .collect();
        let (tx, rx) = mpsc::channel(config.max_batch * 4);
        let writer_thread = {
            let (db, hub, published, max) =
                (db.clone(), hub.clone(), published.clone(), config.max_batch);
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer::run(db, rx, hub, published, max))
                .map_err(|e| open_err(e.into()))?
        };
        let inner = Arc::new(Inner {
            db,
            writer: Some(tx),
            writer_thread: Some(writer_thread),
            hub,
            published,
            leases: Mutex::new(leases),
            readers: Arc::new(tokio::sync::Semaphore::new(config.read_concurrency.max(1))),
            config,
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(expire_leases(Arc::downgrade(&inner)));
        }
        tracing::info!(path = %path.display(), revision, "embedded store open");
        Ok(EmbeddedStore { inner })
    }

    /// Revisions below this one have been compacted away.
    pub fn compacted_revision(&self) -> Revision {
        self.inner.published.compacted.load(Ordering::SeqCst)
    }

    async fn write(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        let writer = self.inner.writer.as_ref().ok_or(StoreError::Closed)?;
        writer
            .send((op, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        // A writer that vanished after taking the request may have committed it.
        answer
            .await
            .map_err(|_| StoreError::indeterminate("the store writer stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.clone();
        let permit = self
            .inner
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&db)
        })
        .await
        .map_err(read_failed)?
    }
}

/// Opens the database file, checking an existing one read-only first so that
/// a foreign file is refused before anything is written to it. redb can
/// panic on some damaged files; that becomes [`StoreError::Corrupt`].
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let shown = path.display().to_string();
    let open_err = |source: crate::BoxError| StoreError::Open {
        path: shown.clone(),
        source,
    };
    let map = |e: redb::DatabaseError| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            open_err("another process has this store open".into())
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StoreError::Foreign {
                path: shown.clone(),
                reason: format!("not a readable database ({reason})"),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Foreign {
                path: shown.clone(),
                reason: e.to_string(),
            }
        }
        other => open_err(other.into()),
    };
    let existing = std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if existing {
            match Database::builder().open_read_only(path) {
                Ok(ro) => {
                    check_schema(&ro, path)?;
                }
                // Needs repair after a crash: the read-write open repairs it.
                Err(redb::DatabaseError::RepairAborted) => {}
                Err(e) => return Err(map(e)),
            }
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(map)?;
        if check_schema(&db, path)? == Schema::Empty {
            create_schema(&db)?;
        }
        Ok(db)
    }));
    attempt.unwrap_or_else(|_| {
        Err(StoreError::Corrupt {
            detail: format!(
                "{} could not be read (the database library failed on it)",
                path.display()
            ),
        })
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Schema {
    Empty,
    Ours,
}

fn check_schema(db: &impl ReadableDatabase, path: &Path) -> Result<Schema, StoreError> {
    let foreign = |reason: String| StoreError::Foreign {
        path: path.display().to_string(),
        reason,
    };
    let txn = db.begin_read().map_err(storage)?;
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(storage)?
        .map(|t| t.name().to_string())
        .collect();
    if !tables.is_empty() {
        if !tables.iter().any(|t| t == META.name()) {
            return Err(foreign(format!(
                "a redb database with other tables ({})",
                tables.join(", ")
            )));
        }
        let format = txn
            .open_table(META)
            .map_err(|e| foreign(format!("its meta table is of another kind ({e})")))?
            .get(FORMAT_KEY)
            .map_err(storage)?
            .map(|v| v.value());
        return match format {
            Some(FORMAT_VERSION) => Ok(Schema::Ours),
            Some(other) => Err(foreign(format!(
                "store format {other}, this build reads format {FORMAT_VERSION}"
            ))),
            None => Err(foreign("a redb database without a store format".into())),
        };
    }
    Ok(Schema::Empty)
}

fn create_schema(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut meta = txn.open_table(META).map_err(storage)?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(storage)?;
        txn.open_table(KV).map_err(storage)?;
        txn.open_table(HISTORY).map_err(storage)?;
        txn.open_table(LOG).map_err(storage)?;
        txn.open_table(LEASES).map_err(storage)?;
        txn.open_table(LEASE_KEYS).map_err(storage)?;
    }
    txn.commit().map_err(storage)
}

fn read_meta(db: &Database, key: &str) -> Result<i64, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let meta = txn.open_table(META).map_err(storage)?;
    Ok(meta
        .get(key)
        .map_err(storage)?
        .map_or(0, |v| v.value() as i64))
}

fn load_leases(db: &Database) -> Result<Vec<(i64, Duration)>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let leases = txn.open_table(LEASES).map_err(storage)?;
    let mut out = Vec::new();
    for entry in leases.iter().map_err(storage)? {
        let (id, ttl) = entry.map_err(storage)?;
        out.push((id.value(), Duration::from_secs(ttl.value())));
    }
    Ok(out)
}

/// Revokes expired leases until the store is dropped.
async fn expire_leases(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<(i64, (Duration, Instant))> = {
            let mut leases = inner.leases.lock().expect("lease table lock");
            let ids: Vec<i64> = leases
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| leases.remove(&id).map(|lease| (id, lease)))
                .collect()
        };
        let store = EmbeddedStore { inner };
        for (id, lease) in expired {
            tracing::debug!(lease = id, "lease expired");
            match store.write(Op::RevokeLease { lease: LeaseId(id) }).await {
                Ok(_) | Err(StoreError::LeaseNotFound(_)) => {}
                Err(err) => {
                    // Kept, still expired, so the next tick tries again: a
                    // lease dropped here would never be revoked.
                    tracing::warn!(lease = id, error = %err, "cannot revoke an expired lease; retrying");
                    store
                        .inner
                        .leases
                        .lock()
                        .expect("lease table lock")
                        .entry(id)
                        .or_insert(lease);
                }
            }
        }
    }
}

fn range_at(db: &Database, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
    let start = match &req.start {
        Some(start) if !start.starts_with(&req.prefix) => {
            return Err(StoreError::Invalid(format!(
                "the start key {:?} is outside the prefix {:?}",
                lossy(start),
                lossy(&req.prefix)
            )));
        }
        Some(start) => start.clone(),
        None => req.prefix.clone(),
    };
    let txn = db.begin_read().map_err(storage)?;
    let meta = txn.open_table(META).map_err(storage)?;
    let get = |k| -> Result<i64, StoreError> {
        Ok(meta
            .get(k)
            .map_err(storage)?
            .map_or(0, |v| v.value() as i64))
    };
    let current = get(codec::REVISION_KEY)?;
    let compacted = get(codec::COMPACTED_KEY)?;
    let revision = if req.revision == 0 {
        current
    } else {
        req.revision
    };
    if revision > current {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current,
        });
    }
    if revision < compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted,
        });
    }
    let limit = if req.limit == 0 {
        usize::MAX
    } else {
        req.limit
    };
    let mut kvs = Vec::new();
    let mut more = false;
    if revision == current {
        let kv = txn.open_table(KV).map_err(storage)?;
        for entry in kv.range(start.as_slice()..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let key = k.value();
            if !key.starts_with(&req.prefix) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            if let Some(record) = Record::decode(v.value())? {
                kvs.push(record.into_kv(key));
            }
        }
    } else {
        // A past revision: per key, the newest version at or before it.
        let history = txn.open_table(HISTORY).map_err(storage)?;
        let mut pending: Option<(Vec<u8>, Option<Record>)> = None;
        let flush = |pending: Option<(Vec<u8>, Option<Record>)>, kvs: &mut Vec<KeyValue>| {
            if let Some((key, Some(record))) = pending {
                kvs.push(record.into_kv(&key));
            }
        };
        for entry in history.range((start.as_slice(), 0u64)..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let (key, rev) = k.value();
            if !key.starts_with(&req.prefix) {
                break;
            }
            let same = pending.as_ref().is_some_and(|(p, _)| p.as_slice() == key);
            if !same {
                flush(pending.take(), &mut kvs);
                if kvs.len() == limit {
                    more = true;
                    break;
                }
                pending = Some((key.to_vec(), None));
            }
            if rev as i64 <= revision
                && let Some((_, slot)) = pending.as_mut()
            {
                *slot = Record::decode(v.value())?;
            }
        }
        if !more {
            flush(pending.take(), &mut kvs);
            if kvs.len() > limit {
                kvs.truncate(limit);
                more = true;
            }
        }
        // A page can end on a key that is absent at this revision; that is fine.
    }
    Ok(RangeResponse {
        kvs,
        revision,
        more,
    })
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let key = key.to_vec();
        self.read(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let kv = txn.open_table(KV).map_err(storage)?;
            match kv.get(key.as_slice()).map_err(storage)? {
                Some(v) => Ok(Record::decode(v.value())?.map(|r| r.into_kv(&key))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.read(move |db| range_at(db, &req)).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.hub.committed())
    }

    async fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        check_value(value)?;
        match self
            .write(Op::Create {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
            })
            .await?
        {
            Done::Revision(rev) => Ok(rev),
            other => unexpected(other),
        }
    }

    async fn update(
        &self,
        key: &[u8],
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        check_value(value)?;
        match self
            .write(Op::Update {
                key: key.to_vec(),
                value: value.to_vec(),
                expected,
                lease,
            })
            .await?
        {
            Done::Revision(rev) => Ok(rev),
            other => unexpected(other),
        }
    }

    async fn delete(
        &self,
        key: &[u8],
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StoreError> {
        check_key(key)?;
        match self
            .write(Op::Delete {
                key: key.to_vec(),
                expected,
            })
            .await?
        {
            Done::Deleted(rev, prev) => Ok((rev, prev)),
            other => unexpected(other),
        }
    }

    async fn watch(&self, prefix: &[u8], from: Revision) -> Result<WatchStream, StoreError> {
        let watcher = Watcher {
            db: Arc::downgrade(&self.inner.db),
            hub: self.inner.hub.clone(),
            published: self.inner.published.clone(),
            prefix: prefix.to_vec(),
            progress_interval: self.inner.config.progress_interval,
        };
        let rx = watcher.spawn(from)?;
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let ttl = Duration::from_secs(ttl.as_secs_f64().ceil().max(1.0) as u64);
        let Done::Lease(id) = self
            .write(Op::GrantLease {
                ttl_secs: ttl.as_secs(),
            })
            .await?
        else {
            return Err(StoreError::Invalid(
                "the writer answered a lease grant with something else".into(),
            ));
        };
        self.inner
            .leases
            .lock()
            .expect("lease table lock")
            .insert(id.0, (ttl, Instant::now() + ttl));
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        let mut leases = self.inner.leases.lock().expect("lease table lock");
        match leases.get_mut(&lease.0) {
            Some((ttl, deadline)) => {
                *deadline = Instant::now() + *ttl;
                Ok(*ttl)
            }
            None => Err(StoreError::LeaseNotFound(lease.0)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner
            .leases
            .lock()
            .expect("lease table lock")
            .remove(&lease.0);
        self.write(Op::RevokeLease { lease }).await.map(|_| ())
    }
}

/// A read task that died: a panic in the database library means damaged data.
pub(super) fn read_failed(err: tokio::task::JoinError) -> StoreError {
    if err.is_panic() {
        StoreError::Corrupt {
            detail: "a read failed inside the database library".into(),
        }
    } else {
        StoreError::Closed
    }
}

fn unexpected<T>(done: Done) -> Result<T, StoreError> {
    Err(StoreError::Invalid(format!(
        "the store writer gave an unexpected answer: {done:?}"
    )))
}
