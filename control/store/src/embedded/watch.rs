//! Watches: catch up from the log on disk, then follow the writer live.
//!
//! A watcher subscribes to the writer's broadcast *before* reading the log,
//! so every commit is either in what it reads or in what it receives;
//! revisions it has already passed are skipped. A watcher that falls behind
//! the broadcast reads the missed revisions from the log again.

use super::codec::{HISTORY, LOG, LogEntry, META, REVISION_KEY, Record, storage};
use super::writer::Published;
use crate::error::StoreError;
use crate::kv::{KeyValue, Revision, WatchEvent};
use redb::{Database, ReadableDatabase};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

/// The events of one committed transaction, revisions `first..=last`.
#[derive(Debug)]
pub(super) struct Batch {
    pub first: Revision,
    pub last: Revision,
    pub events: Vec<WatchEvent>,
}

/// Where the writer announces commits.
#[derive(Clone, Debug)]
pub(super) struct Hub {
    batches: broadcast::Sender<Arc<Batch>>,
    committed: watch::Sender<Revision>,
}

impl Hub {
    pub fn new(revision: Revision, capacity: usize) -> Hub {
        Hub {
            batches: broadcast::Sender::new(capacity),
            committed: watch::Sender::new(revision),
        }
    }

    pub fn publish(&self, batch: Batch) {
        let last = batch.last;
        if !batch.events.is_empty() {
            let _ = self.batches.send(Arc::new(batch));
        }
        self.committed.send_replace(last);
    }

    pub fn committed(&self) -> Revision {
        *self.committed.borrow()
    }
}

/// One watch, as spawned by the store.
#[derive(Debug)]
pub(super) struct Watcher {
    pub db: Weak<Database>,
    pub hub: Hub,
    pub published: Arc<Published>,
    pub prefix: Vec<u8>,
    pub progress_interval: Duration,
}

impl Watcher {
    /// Starts the watcher task; events arrive on the returned receiver.
    pub fn spawn(
        self,
        from: Revision,
    ) -> Result<mpsc::Receiver<Result<WatchEvent, StoreError>>, StoreError> {
        let compacted = self.published.compacted.load(Ordering::SeqCst);
        if from != 0 && from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(256);
        let live = self.hub.batches.subscribe();
        let span =
            tracing::debug_span!("watch", prefix = %String::from_utf8_lossy(&self.prefix), from);
        tokio::spawn(
            async move {
                if let Err(err) = self.run(from, live, &tx).await {
                    let _ = tx.send(Err(err)).await;
                }
            }
            .instrument(span),
        );
        Ok(rx)
    }

    async fn run(
        self,
        from: Revision,
        mut live: broadcast::Receiver<Arc<Batch>>,
        tx: &mpsc::Sender<Result<WatchEvent, StoreError>>,
    ) -> Result<(), StoreError> {
        let mut next = if from == 0 {
            self.hub.committed() + 1
        } else {
            self.catch_up(from, tx).await?
        };
        loop {
            let idle = tokio::time::sleep(self.progress_interval);
            tokio::select! {
                received = live.recv() => match received {
                    Ok(batch) => {
                        if batch.last < next {
                            continue;
                        }
                        if batch.first > next {
                            // A gap: fill it from the log (it re-reads this batch too).
                            next = self.catch_up(next, tx).await?;
                            continue;
                        }
                        for event in &batch.events {
                            if event.revision() >= next
                                && event.key().is_some_and(|k| k.starts_with(&self.prefix))
                                && tx.send(Ok(event.clone())).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                        next = batch.last + 1;
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "watcher lagged; reading the log");
                        next = self.catch_up(next, tx).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Closed),
                },
                () = idle => {
                    let revision = (next - 1).min(self.hub.committed());
                    if tx.send(Ok(WatchEvent::Progress { revision })).await.is_err() {
                        return Ok(());
                    }
                }
                () = tx.closed() => return Ok(()),
            }
        }
    }

    /// Sends every matching event from `next` up to the current revision, read
    /// from the log; returns the next revision to look for.
    async fn catch_up(
        &self,
        mut next: Revision,
        tx: &mpsc::Sender<Result<WatchEvent, StoreError>>,
    ) -> Result<Revision, StoreError> {
        loop {
            let db = self.db.upgrade().ok_or(StoreError::Closed)?;
            let prefix = self.prefix.clone();
            let compacted = self.published.compacted.load(Ordering::SeqCst);
            let page = tokio::task::spawn_blocking(move || {
                read_log(&db, &prefix, next, compacted, CATCH_UP_PAGE)
            })
            .await
            .map_err(super::read_failed)??;
            for event in page.events {
                if tx.send(Ok(event)).await.is_err() {
                    return Err(StoreError::Closed);
                }
            }
            next = page.next;
            if page.done {
                return Ok(next);
            }
        }
    }
}

const CATCH_UP_PAGE: usize = 1024;

struct LogPage {
    events: Vec<WatchEvent>,
    next: Revision,
    done: bool,
}

fn read_log(
    db: &Database,
    prefix: &[u8],
    from: Revision,
    compacted: Revision,
    page: usize,
) -> Result<LogPage, StoreError> {
    if from < compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted,
        });
    }
    let txn = db.begin_read().map_err(storage)?;
    let current = txn
        .open_table(META)
        .map_err(storage)?
        .get(REVISION_KEY)
        .map_err(storage)?
        .map_or(0, |v| v.value() as i64);
    let log = txn.open_table(LOG).map_err(storage)?;
    let history = txn.open_table(HISTORY).map_err(storage)?;
    let version = |key: &[u8], rev: Revision| -> Result<KeyValue, StoreError> {
        let bytes = history
            .get((key, rev as u64))
            .map_err(storage)?
            .ok_or_else(|| StoreError::Corrupt {
                detail: format!(
                    "revision {rev} of {:?} is missing from the history",
                    String::from_utf8_lossy(key)
                ),
            })?;
        Record::decode(bytes.value())?
            .map(|r| r.into_kv(key))
            .ok_or_else(|| StoreError::Corrupt {
                detail: format!("revision {rev} is a deletion where a value was expected"),
            })
    };
    let mut events = Vec::new();
    let mut next = from;
    let mut scanned = 0;
    for entry in log.range(from.max(1) as u64..).map_err(storage)? {
        let (rev, bytes) = entry.map_err(storage)?;
        let rev = rev.value() as i64;
        next = rev + 1;
        let entry = LogEntry::decode(bytes.value())?;
        if entry.key.starts_with(prefix) {
            let prev = (entry.prev_revision > 0)
                .then(|| version(&entry.key, entry.prev_revision))
                .transpose()?;
            events.push(if entry.deleted {
                WatchEvent::Delete {
                    prev: prev.ok_or_else(|| StoreError::Corrupt {
                        detail: format!("the deletion at revision {rev} has no previous value"),
                    })?,
                    revision: rev,
                }
            } else {
                WatchEvent::Put {
                    kv: version(&entry.key, rev)?,
                    prev,
                }
            });
        }
        scanned += 1;
        if scanned == page {
            return Ok(LogPage {
                events,
                next,
                done: next > current,
            });
        }
    }
    Ok(LogPage {
        events,
        next: next.max(current + 1),
        done: true,
    })
}
