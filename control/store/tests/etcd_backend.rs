//! Checks specific to the etcd backend, against real etcd processes: what
//! happens when etcd is unreachable or loses a member, and how keys are
//! laid out under the configured prefix.

use anyhow::{Context as _, bail};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use store::etcd::{EtcdConfig, EtcdStore};
use store::{RangeRequest, Revision, Store, StoreError, WatchEvent, WatchStream};
use testbed::{Etcd, EtcdCluster};
use tokio::time::{Instant, sleep, timeout};

const DEADLINE: Duration = Duration::from_secs(30);

fn config(endpoints: Vec<String>, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        prefix: prefix.as_bytes().to_vec(),
        progress_interval: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..EtcdConfig::new(endpoints)
    }
}

/// Every message in an error's source chain, joined.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The next item that is not progress, within the deadline.
async fn next_change(watch: &mut WatchStream) -> anyhow::Result<WatchEvent> {
    loop {
        let item = timeout(DEADLINE, watch.next())
            .await
            .context("no watch event before the deadline")?
            .context("the watch ended")??;
        if !matches!(item, WatchEvent::Progress { .. }) {
            return Ok(item);
        }
    }
}

#[tokio::test]
async fn an_unreachable_etcd_is_unavailable_and_named() {
    let endpoint = format!("http://127.0.0.1:{}", testbed::free_port());
    let started = Instant::now();
    let err = EtcdStore::connect(config(vec![endpoint.clone()], "/registry/"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let text = chain(&err);
    assert!(text.contains(&endpoint), "{text}");
}

#[tokio::test]
async fn keys_live_under_the_prefix_and_prefixes_do_not_mix() -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let a = EtcdStore::connect(config(vec![etcd.endpoint()], "/a/")).await?;
    let b = EtcdStore::connect(config(vec![etcd.endpoint()], "/b/")).await?;
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    raw.put("/pods/x", "outside", None).await?;

    let mut watch_a = a.watch(b"/pods/", 0).await?;
    let ra = a.create(b"/pods/x", b"from a", None).await?;
    let rb = b.create(b"/pods/x", b"from b", None).await?;
    assert!(rb > ra, "both stores share etcd's revisions");

    // The configured prefix is prepended as is: "/a/" + "/pods/x".
    for (key, value) in [("/a//pods/x", "from a"), ("/b//pods/x", "from b")] {
        let got = raw.get(key, None).await?;
        assert_eq!(got.kvs().len(), 1, "{key}");
        assert_eq!(got.kvs()[0].value(), value.as_bytes(), "{key}");
    }
    assert_eq!(a.get(b"/pods/x").await?.unwrap().value, b"from a");
    assert_eq!(b.get(b"/pods/x").await?.unwrap().value, b"from b");

    let listed = a.range(RangeRequest::prefix("/")).await?;
    let keys: Vec<&[u8]> = listed.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(
        keys,
        vec![&b"/pods/x"[..]],
        "only a's key, without the prefix"
    );

    b.create(b"/pods/y", b"from b", None).await?;
    let rz = a.create(b"/pods/z", b"from a", None).await?;
    for (key, rev) in [(&b"/pods/x"[..], ra), (b"/pods/z", rz)] {
        let event = next_change(&mut watch_a).await?;
        assert_eq!((event.key(), event.revision()), (Some(key), rev));
    }
    Ok(())
}

#[tokio::test]
async fn idle_watches_learn_the_revision_from_etcd_progress() -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let store = EtcdStore::connect(config(vec![etcd.endpoint()], "/registry/")).await?;
    let mut watch = store.watch(b"/quiet/", 0).await?;
    let rev = store.create(b"/busy/1", b"v", None).await?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let item = timeout(DEADLINE, watch.next())
            .await?
            .context("the watch ended")??;
        match item {
            WatchEvent::Progress { revision } if revision >= rev => return Ok(()),
            WatchEvent::Progress { .. } if Instant::now() < deadline => continue,
            other => bail!("expected progress to at least {rev}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn compaction_reports_the_compacted_revision() -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let store = EtcdStore::connect(config(vec![etcd.endpoint()], "/registry/")).await?;
    let r1 = store.create(b"/c/a", b"1", None).await?;
    let r2 = store.update(b"/c/a", b"2", r1, None).await?;
    let r3 = store.update(b"/c/a", b"3", r2, None).await?;
    store.compact(r3).await?;
    store.compact(r2).await?;

    let range = RangeRequest {
        revision: r1,
        ..RangeRequest::prefix("/c/")
    };
    match store.range(range).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (r1, r3)),
        other => bail!("expected Compacted, got {other:?}"),
    }
    let mut watch = store.watch(b"/c/", r2).await?;
    match timeout(DEADLINE, watch.next()).await? {
        Some(Err(StoreError::Compacted {
            requested,
            compacted,
        })) => assert_eq!((requested, compacted), (r2, r3)),
        other => bail!("expected Compacted, got {other:?}"),
    }
    assert!(
        timeout(DEADLINE, watch.next()).await?.is_none(),
        "the stream ends"
    );
    match store.compact(r3 + 10).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (r3 + 10, r3));
        }
        other => bail!("expected FutureRevision, got {other:?}"),
    }
    Ok(())
}

/// Creates `key`, retrying through failover until it is known to exist;
/// returns the revision it was created at.
async fn create_surely(store: &EtcdStore, key: &str) -> anyhow::Result<Revision> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match store.create(key.as_bytes(), b"v", None).await {
            Ok(rev) => return Ok(rev),
            // An earlier indeterminate attempt landed.
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) if e.is_retryable() => {
                tracing::info!(key, error = %chain(&e), "retrying a write");
            }
            Err(e) => return Err(e.into()),
        }
        if let Ok(Some(kv)) = store.get(key.as_bytes()).await {
            return Ok(kv.mod_revision);
        }
        if Instant::now() > deadline {
            bail!("could not write {key} within {DEADLINE:?}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_survives_losing_its_member() -> anyhow::Result<()> {
    let mut cluster = EtcdCluster::start(3).await?;
    // A write in flight when the leader dies hangs until the timeout.
    let config = EtcdConfig {
        request_timeout: Duration::from_secs(2),
        ..config(cluster.endpoints(), "/registry/")
    };
    let watching = EtcdStore::connect(config.clone()).await?;
    let writer = EtcdStore::connect(config).await?;
    let mut watch = watching.watch(b"/chaos/", 0).await?;

    // Collect every change until the final key shows up, checking order and
    // that no event comes at or below a revision progress already reported.
    let collector = tokio::spawn(async move {
        let mut seen: BTreeMap<Revision, String> = BTreeMap::new();
        let mut last_event = 0;
        let mut last_progress = 0;
        loop {
            let item = timeout(DEADLINE, watch.next())
                .await
                .context("no watch item before the deadline")?
                .context("the watch ended")??;
            let (key, revision) = match item {
                WatchEvent::Progress { revision } => {
                    anyhow::ensure!(revision >= last_event, "progress {revision} went back");
                    last_progress = revision;
                    continue;
                }
                WatchEvent::Put { kv, prev: None } => (String::from_utf8(kv.key)?, kv.mod_revision),
                other => bail!("expected only creations, got {other:?}"),
            };
            anyhow::ensure!(
                revision > last_event,
                "event at {revision} after one at {last_event}"
            );
            anyhow::ensure!(
                revision > last_progress,
                "event at {revision} after progress to {last_progress}"
            );
            last_event = revision;
            if key == "/chaos/done" {
                return Ok::<_, anyhow::Error>(seen);
            }
            anyhow::ensure!(seen.insert(revision, key).is_none(), "a repeated revision");
        }
    });

    let mut acked = BTreeMap::new();
    let mut n = 0;
    let mut write_some = async |count: usize| -> anyhow::Result<()> {
        for _ in 0..count {
            let key = format!("/chaos/{n:03}");
            acked.insert(create_surely(&writer, &key).await?, key);
            n += 1;
        }
        Ok(())
    };
    for member in 0..3 {
        write_some(10).await?;
        cluster.kill_member(member);
        write_some(10).await?;
        cluster.restart_member(member).await?;
    }
    write_some(10).await?;
    create_surely(&writer, "/chaos/done").await?;

    let seen = collector.await??;
    assert_eq!(seen, acked, "every acknowledged write, once, in order");
    for (rev, key) in &acked {
        let kv = writer
            .get(key.as_bytes())
            .await?
            .context("an acked key is readable")?;
        assert_eq!(kv.mod_revision, *rev, "{key}");
    }
    Ok(())
}
