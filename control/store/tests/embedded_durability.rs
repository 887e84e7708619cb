//! The embedded store on disk: crashes, restarts and bad data directories.

use futures::StreamExt;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use store::embedded::{EmbeddedConfig, EmbeddedStore, FILE_NAME};
use store::{RangeRequest, Store, StoreError, WatchEvent};

fn value_for(i: usize) -> Vec<u8> {
    let len = 64 + (i * 7919) % 8192;
    let mut v = format!("{i}:{len}:").into_bytes();
    v.resize(len, b'a' + (i % 26) as u8);
    v
}

fn open(dir: &std::path::Path) -> Result<EmbeddedStore, StoreError> {
    EmbeddedStore::open(EmbeddedConfig::new(dir))
}

/// SIGKILL in the middle of 10,000 concurrent writes: after reopening,
/// every acknowledged write is there at its revision, every key present is
/// whole, and the log agrees with the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_write_loses_no_acknowledged_write() {
    const COUNT: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(dir.path())
        .arg(COUNT.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = BTreeMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < 3_000 {
        assert!(
            Instant::now() < deadline,
            "the writer acknowledged only {} writes",
            acked.len()
        );
        let line = lines.next().expect("the writer is still writing").unwrap();
        let mut parts = line.split(' ').skip(1).map(|p| p.parse::<i64>().unwrap());
        acked.insert(parts.next().unwrap() as usize, parts.next().unwrap());
    }
    child.kill().unwrap(); // SIGKILL
    // Acknowledgements already printed before the kill count too.
    for line in lines.map_while(Result::ok) {
        let mut parts = line.split(' ').skip(1).map(|p| p.parse::<i64>().unwrap());
        acked.insert(parts.next().unwrap() as usize, parts.next().unwrap());
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");
    assert!(
        acked.len() < COUNT,
        "the kill came mid-way ({} of {COUNT} acknowledged)",
        acked.len()
    );

    let store = open(dir.path()).unwrap();
    let all = store.range(RangeRequest::prefix("/crash/")).await.unwrap();
    let present: BTreeMap<usize, _> = all
        .kvs
        .iter()
        .map(|kv| {
            let i: usize = std::str::from_utf8(&kv.key[7..]).unwrap().parse().unwrap();
            assert_eq!(kv.value, value_for(i), "key {i} is whole");
            assert_eq!((kv.version, kv.create_revision), (1, kv.mod_revision));
            (i, kv.mod_revision)
        })
        .collect();
    for (i, rev) in &acked {
        assert_eq!(
            present.get(i),
            Some(rev),
            "acknowledged write {i} at revision {rev} survived"
        );
    }
    assert_eq!(
        all.revision as usize,
        present.len(),
        "one revision per surviving write"
    );

    // The log replays exactly the surviving writes, in revision order.
    let mut watch = store.watch(b"/crash/", 1).await.unwrap();
    let mut replayed = 0;
    while replayed < present.len() {
        match watch.next().await.unwrap().unwrap() {
            WatchEvent::Put { kv, prev: None } => {
                replayed += 1;
                assert_eq!(kv.mod_revision, replayed as i64);
            }
            WatchEvent::Progress { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // And the store takes writes again.
    let next = store.create(b"/after", b"v", None).await.unwrap();
    assert_eq!(next, all.revision + 1);
}

#[tokio::test]
async fn reopening_keeps_data_revision_compaction_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let (rev, lease) = {
        let s = open(dir.path()).unwrap();
        let r1 = s.create(b"/a", b"1", None).await.unwrap();
        let r2 = s.update(b"/a", b"2", r1, None).await.unwrap();
        s.compact(r2).await.unwrap();
        let lease = s.grant_lease(Duration::from_secs(600)).await.unwrap();
        let r3 = s.create(b"/leased", b"x", Some(lease)).await.unwrap();
        (r3, lease)
    };
    let s = open(dir.path()).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), rev);
    assert_eq!(s.compacted_revision(), rev - 1);
    assert_eq!(s.get(b"/a").await.unwrap().unwrap().value, b"2");
    assert_eq!(s.keep_alive(lease).await.unwrap(), Duration::from_secs(600));
    assert_eq!(s.get(b"/leased").await.unwrap().unwrap().lease, Some(lease));
    let next_lease = s.grant_lease(Duration::from_secs(5)).await.unwrap();
    assert!(next_lease.0 > lease.0, "lease ids are not reused");
}

#[tokio::test]
async fn a_store_is_opened_by_one_owner_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path()).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains("another process has this store open"),
        "{chain}"
    );
}

fn assert_refused_untouched(dir: &std::path::Path, bytes: &[u8], what: &str) {
    let err = open(dir).expect_err(what);
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Foreign { .. }), "{what}: {err:?}");
    assert!(
        msg.contains(FILE_NAME) && msg.contains("not a Shoal store"),
        "{what}: the error names the file: {msg}"
    );
    assert_eq!(
        std::fs::read(dir.join(FILE_NAME)).unwrap(),
        bytes,
        "{what}: the file is left as it was"
    );
}

#[test]
fn a_foreign_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join(FILE_NAME), &bytes).unwrap();
    assert_refused_untouched(dir.path(), &bytes, "random bytes");
    let text = b"apiVersion: v1\nkind: Config\n".repeat(200);
    std::fs::write(dir.path().join(FILE_NAME), &text).unwrap();
    assert_refused_untouched(dir.path(), &text, "a text file");
}

#[test]
fn another_applications_redb_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("accounts");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("accounts"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn a_damaged_store_fails_with_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path()).unwrap();
        for i in 0..200 {
            s.create(format!("/k/{i}").as_bytes(), &[7u8; 2000], None)
                .await
                .unwrap();
        }
    }
    let path = dir.path().join(FILE_NAME);
    let good = std::fs::read(&path).unwrap();
    // Truncated, then scribbled over: each must be refused or read back
    // without panicking, and never silently return wrong values.
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 3);
    let mut scribbled = good.clone();
    for b in scribbled.iter_mut().skip(good.len() / 2).take(64 * 1024) {
        *b ^= 0x5a;
    }
    for (what, bytes) in [("truncated", truncated), ("scribbled", scribbled)] {
        std::fs::write(&path, &bytes).unwrap();
        let outcome = std::panic::AssertUnwindSafe(async {
            match open(dir.path()) {
                Err(err) => format!("refused: {err}"),
                Ok(s) => match s.range(RangeRequest::prefix("/k/")).await {
                    Err(err) => format!("read failed: {err}"),
                    Ok(resp) => {
                        assert!(
                            resp.kvs.iter().all(|kv| kv.value == [7u8; 2000]),
                            "{what}: no wrong values"
                        );
                        format!("read {} keys", resp.kvs.len())
                    }
                },
            }
        });
        let outcome = futures::FutureExt::catch_unwind(outcome).await;
        assert!(outcome.is_ok(), "{what}: the store panicked");
    }
}

#[test]
fn a_data_dir_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = open(&file).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
