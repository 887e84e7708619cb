//! The store conformance suite: one set of checks every backend must pass.
//!
//! Each check takes a fresh, empty store. `conformance_tests!(make)` turns
//! them into tests for one backend, where `make()` returns a [`Backend`].

#![allow(dead_code)]

use futures::StreamExt;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::{
    DynStore, KeyValue, LeaseId, RangeRequest, Revision, StoreError, WatchEvent, WatchStream,
};

/// A store under test and whatever keeps it alive (a temp dir, a process).
pub struct Backend {
    pub store: DynStore,
    pub guard: Box<dyn Any + Send>,
}

/// Every check in the suite, by name.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make,
            create_then_get,
            create_refuses_an_existing_key,
            update_is_compare_and_swap,
            delete_is_guarded_and_returns_the_value,
            every_write_bumps_the_revision_by_one,
            range_pages_by_prefix_limit_and_start,
            range_reads_a_past_revision,
            range_refuses_a_future_revision,
            concurrent_cas_has_exactly_one_winner,
            concurrent_increments_lose_nothing,
            watch_orders_concurrent_writers,
            watch_resumes_from_a_revision_with_previous_values,
            watch_from_zero_sees_only_new_changes,
            watch_filters_by_prefix,
            compaction_expires_old_watches_and_reads,
            compaction_keeps_the_latest_versions,
            idle_watches_get_progress,
            leases_expire_and_revoke_their_keys,
            unknown_leases_are_refused,
            oversized_keys_and_values_are_refused
        );
    };
    (@each $make:path, $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let backend = $make().await;
                conformance::$name(&backend.store).await;
            }
        )*
    };
}

const DEADLINE: Duration = Duration::from_secs(20);

/// The next event that is not a progress notification.
pub async fn next_change(stream: &mut WatchStream) -> WatchEvent {
    loop {
        let item = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("a watch event before the deadline")
            .expect("the watch stream stays open");
        match item.expect("a watch event, not an error") {
            WatchEvent::Progress { .. } => continue,
            event => return event,
        }
    }
}

fn put_value(event: &WatchEvent) -> (&[u8], &[u8]) {
    match event {
        WatchEvent::Put { kv, .. } => (&kv.key, &kv.value),
        other => panic!("expected a put, got {other:?}"),
    }
}

pub async fn create_then_get(s: &DynStore) {
    let rev = s.create(b"/a/1", b"one", None).await.unwrap();
    assert!(rev > 0);
    let kv = s.get(b"/a/1").await.unwrap().expect("the key exists");
    assert_eq!(
        kv,
        KeyValue {
            key: b"/a/1".to_vec(),
            value: b"one".to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: None,
        }
    );
    assert_eq!(s.get(b"/a/2").await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), rev);
}

pub async fn create_refuses_an_existing_key(s: &DynStore) {
    let rev = s.create(b"/a/1", b"one", None).await.unwrap();
    let err = s.create(b"/a/1", b"two", None).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert!(err.is_determinate());
    assert_eq!(s.get(b"/a/1").await.unwrap().unwrap().value, b"one");
    assert_eq!(
        s.current_revision().await.unwrap(),
        rev,
        "a refused write bumps nothing"
    );
}

pub async fn update_is_compare_and_swap(s: &DynStore) {
    let r1 = s.create(b"/a/1", b"one", None).await.unwrap();
    let r2 = s.update(b"/a/1", b"two", r1, None).await.unwrap();
    assert!(r2 > r1);
    let kv = s.get(b"/a/1").await.unwrap().unwrap();
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (&b"two"[..], r1, r2, 2)
    );
    match s.update(b"/a/1", b"three", r1, None).await.unwrap_err() {
        StoreError::Conflict {
            expected, current, ..
        } => {
            assert_eq!(expected, r1);
            assert_eq!(current.mod_revision, r2);
            assert_eq!(current.value, b"two");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        s.update(b"/a/missing", b"x", r1, None).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert_eq!(s.get(b"/a/1").await.unwrap().unwrap().value, b"two");
}

pub async fn delete_is_guarded_and_returns_the_value(s: &DynStore) {
    let r1 = s.create(b"/a/1", b"one", None).await.unwrap();
    assert!(matches!(
        s.delete(b"/a/1", Some(r1 + 100)).await.unwrap_err(),
        StoreError::Conflict { .. }
    ));
    let (rev, prev) = s.delete(b"/a/1", Some(r1)).await.unwrap();
    assert!(rev > r1);
    assert_eq!(prev.value, b"one");
    assert_eq!(prev.mod_revision, r1);
    assert_eq!(s.get(b"/a/1").await.unwrap(), None);
    assert!(matches!(
        s.delete(b"/a/1", None).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    // Re-creating starts a new life: version 1, new create revision.
    let r3 = s.create(b"/a/1", b"again", None).await.unwrap();
    let kv = s.get(b"/a/1").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (r3, 1));
    let (_, prev) = s.delete(b"/a/1", None).await.unwrap();
    assert_eq!(prev.value, b"again");
}

pub async fn every_write_bumps_the_revision_by_one(s: &DynStore) {
    let start = s.current_revision().await.unwrap();
    let r1 = s.create(b"/r/1", b"v", None).await.unwrap();
    let r2 = s.update(b"/r/1", b"w", r1, None).await.unwrap();
    let (r3, _) = s.delete(b"/r/1", None).await.unwrap();
    assert_eq!((r1, r2, r3), (start + 1, start + 2, start + 3));
}

pub async fn range_pages_by_prefix_limit_and_start(s: &DynStore) {
    for i in 0..25 {
        s.create(format!("/pods/ns/p{i:02}").as_bytes(), b"v", None)
            .await
            .unwrap();
    }
    s.create(b"/pods/nt/x", b"v", None).await.unwrap();
    s.create(b"/pods/nsx", b"v", None).await.unwrap();
    s.create(b"/services/ns/s", b"v", None).await.unwrap();

    let all = s.range(RangeRequest::prefix("/pods/ns/")).await.unwrap();
    assert_eq!(all.kvs.len(), 25);
    assert!(!all.more);
    assert!(
        all.kvs.windows(2).all(|w| w[0].key < w[1].key),
        "keys come in order"
    );

    // Page through at the first page's revision while writes go on.
    let mut req = RangeRequest {
        limit: 10,
        ..RangeRequest::prefix("/pods/ns/")
    };
    let first = s.range(req.clone()).await.unwrap();
    assert_eq!(first.kvs.len(), 10);
    assert!(first.more);
    s.create(b"/pods/ns/p99", b"late", None).await.unwrap();
    let mut seen: Vec<Vec<u8>> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    req.revision = first.revision;
    let mut last = first;
    while last.more {
        let mut start = last.kvs.last().unwrap().key.clone();
        start.push(0);
        req.start = Some(start);
        last = s.range(req.clone()).await.unwrap();
        assert_eq!(last.revision, first_revision(&req));
        seen.extend(last.kvs.iter().map(|kv| kv.key.clone()));
    }
    assert_eq!(
        seen.len(),
        25,
        "the key written after the first page is not in this list"
    );
    assert_eq!(
        s.range(RangeRequest::prefix("/pods/"))
            .await
            .unwrap()
            .kvs
            .len(),
        28
    );
    assert!(matches!(
        s.range(RangeRequest {
            start: Some(b"/zzz".to_vec()),
            ..RangeRequest::prefix("/pods/")
        })
        .await
        .unwrap_err(),
        StoreError::Invalid(_)
    ));
}

fn first_revision(req: &RangeRequest) -> Revision {
    req.revision
}

pub async fn range_reads_a_past_revision(s: &DynStore) {
    let r1 = s.create(b"/h/a", b"a1", None).await.unwrap();
    let r2 = s.create(b"/h/b", b"b1", None).await.unwrap();
    s.update(b"/h/a", b"a2", r1, None).await.unwrap();
    s.delete(b"/h/b", None).await.unwrap();
    s.create(b"/h/c", b"c1", None).await.unwrap();

    let at = |rev| {
        let s = s.clone();
        async move {
            let resp = s
                .range(RangeRequest {
                    revision: rev,
                    ..RangeRequest::prefix("/h/")
                })
                .await
                .unwrap();
            assert_eq!(resp.revision, rev);
            resp.kvs
                .into_iter()
                .map(|kv| {
                    (
                        String::from_utf8(kv.key).unwrap(),
                        String::from_utf8(kv.value).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(at(r1).await, vec![("/h/a".into(), "a1".into())]);
    assert_eq!(
        at(r2).await,
        vec![
            ("/h/a".to_string(), "a1".to_string()),
            ("/h/b".into(), "b1".into())
        ]
    );
    let now = s.current_revision().await.unwrap();
    assert_eq!(
        at(now).await,
        vec![
            ("/h/a".to_string(), "a2".to_string()),
            ("/h/c".into(), "c1".into())
        ]
    );
    let paged = s
        .range(RangeRequest {
            revision: r2,
            limit: 1,
            ..RangeRequest::prefix("/h/")
        })
        .await
        .unwrap();
    assert_eq!(paged.kvs.len(), 1);
    assert!(paged.more);
}

pub async fn range_refuses_a_future_revision(s: &DynStore) {
    let rev = s.create(b"/f/a", b"a", None).await.unwrap();
    let err = s
        .range(RangeRequest {
            revision: rev + 10,
            ..RangeRequest::prefix("/f/")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

pub async fn concurrent_cas_has_exactly_one_winner(s: &DynStore) {
    let rev = s.create(b"/cas", b"0", None).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.update(b"/cas", format!("{i}").as_bytes(), rev, None)
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(s.get(b"/cas").await.unwrap().unwrap().version, 2);
}

pub async fn concurrent_increments_lose_nothing(s: &DynStore) {
    s.create(b"/counter", b"0", None).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let mut kv = s.get(b"/counter").await.unwrap().unwrap();
                    loop {
                        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        match s
                            .update(
                                b"/counter",
                                (n + 1).to_string().as_bytes(),
                                kv.mod_revision,
                                None,
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { current, .. }) => kv = *current,
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let kv = s.get(b"/counter").await.unwrap().unwrap();
    assert_eq!(kv.value, b"320");
    assert_eq!(kv.version, 321);
}

pub async fn watch_orders_concurrent_writers(s: &DynStore) {
    let mut watch = s.watch(b"/w/", 0).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..50 {
                    let key = format!("/w/{w}/{i}");
                    let rev = s.create(key.as_bytes(), b"v", None).await.unwrap();
                    acked.push((rev, key));
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeMap::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let mut seen = BTreeMap::new();
    let mut last = 0;
    while seen.len() < acked.len() {
        let event = next_change(&mut watch).await;
        assert!(event.revision() > last, "revisions strictly increase");
        last = event.revision();
        let key = String::from_utf8(event.key().unwrap().to_vec()).unwrap();
        assert!(seen.insert(event.revision(), key).is_none());
    }
    assert_eq!(
        seen, acked,
        "every acknowledged write, once, at its revision"
    );
}

pub async fn watch_resumes_from_a_revision_with_previous_values(s: &DynStore) {
    let r1 = s.create(b"/x/a", b"1", None).await.unwrap();
    let r2 = s.update(b"/x/a", b"2", r1, None).await.unwrap();
    let r3 = s.create(b"/x/b", b"b", None).await.unwrap();
    let (r4, _) = s.delete(b"/x/a", Some(r2)).await.unwrap();
    let mut watch = s.watch(b"/x/", r2).await.unwrap();
    match next_change(&mut watch).await {
        WatchEvent::Put { kv, prev } => {
            assert_eq!(
                (kv.value.as_slice(), kv.mod_revision, kv.version),
                (&b"2"[..], r2, 2)
            );
            assert_eq!(prev.unwrap().value, b"1");
        }
        other => panic!("{other:?}"),
    }
    match next_change(&mut watch).await {
        WatchEvent::Put { kv, prev } => {
            assert_eq!((kv.key.as_slice(), kv.mod_revision), (&b"/x/b"[..], r3));
            assert_eq!(prev, None);
        }
        other => panic!("{other:?}"),
    }
    match next_change(&mut watch).await {
        WatchEvent::Delete { prev, revision } => {
            assert_eq!(revision, r4);
            assert_eq!(
                (
                    prev.key.as_slice(),
                    prev.value.as_slice(),
                    prev.mod_revision
                ),
                (&b"/x/a"[..], &b"2"[..], r2)
            );
        }
        other => panic!("{other:?}"),
    }
    // And it goes on live after the history.
    let r5 = s.create(b"/x/c", b"c", None).await.unwrap();
    let event = next_change(&mut watch).await;
    assert_eq!((put_value(&event).0, event.revision()), (&b"/x/c"[..], r5));
}

pub async fn watch_from_zero_sees_only_new_changes(s: &DynStore) {
    s.create(b"/z/old", b"o", None).await.unwrap();
    let mut watch = s.watch(b"/z/", 0).await.unwrap();
    let rev = s.create(b"/z/new", b"n", None).await.unwrap();
    let event = next_change(&mut watch).await;
    assert_eq!(put_value(&event), (&b"/z/new"[..], &b"n"[..]));
    assert_eq!(event.revision(), rev);
}

pub async fn watch_filters_by_prefix(s: &DynStore) {
    let mut watch = s.watch(b"/p/a/", 0).await.unwrap();
    s.create(b"/p/b/1", b"no", None).await.unwrap();
    s.create(b"/p/a", b"no", None).await.unwrap();
    s.create(b"/p/a/1", b"yes", None).await.unwrap();
    let event = next_change(&mut watch).await;
    assert_eq!(put_value(&event), (&b"/p/a/1"[..], &b"yes"[..]));
}

pub async fn compaction_expires_old_watches_and_reads(s: &DynStore) {
    let r1 = s.create(b"/c/a", b"1", None).await.unwrap();
    let r2 = s.update(b"/c/a", b"2", r1, None).await.unwrap();
    let r3 = s.update(b"/c/a", b"3", r2, None).await.unwrap();
    let r4 = s.update(b"/c/a", b"4", r3, None).await.unwrap();
    s.compact(r3).await.unwrap();
    s.compact(r2).await.unwrap(); // already compacted: a no-op

    // A watch from before the compaction fails with a distinct error.
    let err = match s.watch(b"/c/", r2).await {
        Err(err) => err,
        Ok(mut stream) => tokio::time::timeout(DEADLINE, stream.next())
            .await
            .unwrap()
            .expect("an error item")
            .unwrap_err(),
    };
    match err {
        StoreError::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, r2);
            assert_eq!(compacted, r3);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let err = s
        .range(RangeRequest {
            revision: r1,
            ..RangeRequest::prefix("/c/")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");

    // At the compacted revision reads still work; after it, watches carry
    // their previous values.
    let at = s
        .range(RangeRequest {
            revision: r3,
            ..RangeRequest::prefix("/c/")
        })
        .await
        .unwrap();
    assert_eq!(at.kvs[0].value, b"3");
    let mut watch = s.watch(b"/c/", r4).await.unwrap();
    match next_change(&mut watch).await {
        WatchEvent::Put { kv, prev } => {
            assert_eq!(kv.value, b"4");
            assert_eq!(prev.unwrap().value, b"3");
        }
        other => panic!("{other:?}"),
    }
    let err = s.compact(r4 + 100).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

pub async fn compaction_keeps_the_latest_versions(s: &DynStore) {
    let mut rev = s.create(b"/k/a", b"0", None).await.unwrap();
    for i in 1..10 {
        rev = s
            .update(b"/k/a", i.to_string().as_bytes(), rev, None)
            .await
            .unwrap();
    }
    let b = s.create(b"/k/b", b"b", None).await.unwrap();
    s.delete(b"/k/b", Some(b)).await.unwrap();
    s.create(b"/k/c", b"c", None).await.unwrap();
    let now = s.current_revision().await.unwrap();
    s.compact(now).await.unwrap();
    let at = s
        .range(RangeRequest {
            revision: now,
            ..RangeRequest::prefix("/k/")
        })
        .await
        .unwrap();
    let keys: Vec<_> = at
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (b"/k/a".to_vec(), b"9".to_vec()),
            (b"/k/c".to_vec(), b"c".to_vec())
        ]
    );
    let a = s.get(b"/k/a").await.unwrap().unwrap();
    assert_eq!(a.version, 10);
    let r = s
        .update(b"/k/a", b"10", a.mod_revision, None)
        .await
        .unwrap();
    assert_eq!(r, now + 1);
}

pub async fn idle_watches_get_progress(s: &DynStore) {
    let rev = s.create(b"/other", b"v", None).await.unwrap();
    let mut watch = s.watch(b"/idle/", 0).await.unwrap();
    let item = tokio::time::timeout(DEADLINE, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match item {
        WatchEvent::Progress { revision } => {
            assert!(revision >= rev, "progress {revision} < {rev}")
        }
        other => panic!("expected progress, got {other:?}"),
    }
}

pub async fn leases_expire_and_revoke_their_keys(s: &DynStore) {
    let short = s.grant_lease(Duration::from_secs(1)).await.unwrap();
    let kept = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    let mut watch = s.watch(b"/l/", 0).await.unwrap();
    s.create(b"/l/short", b"s", Some(short)).await.unwrap();
    s.create(b"/l/kept", b"k", Some(kept)).await.unwrap();
    assert_eq!(
        s.get(b"/l/short").await.unwrap().unwrap().lease,
        Some(short)
    );
    assert_eq!(s.keep_alive(kept).await.unwrap(), Duration::from_secs(60));

    next_change(&mut watch).await;
    next_change(&mut watch).await;
    // An overall deadline: progress notifications keep `next_change` from
    // timing out, and without one a lost expiry shows only when the 60 s
    // lease ends.
    let expired = tokio::time::timeout(DEADLINE, next_change(&mut watch))
        .await
        .expect("the 1 s lease's key deleted within the deadline");
    match expired {
        WatchEvent::Delete { prev, .. } => assert_eq!(prev.key, b"/l/short"),
        other => panic!("expected the expired key's deletion, got {other:?}"),
    }
    assert_eq!(s.get(b"/l/short").await.unwrap(), None);
    assert!(matches!(
        s.keep_alive(short).await.unwrap_err(),
        StoreError::LeaseNotFound(_)
    ));
    assert!(s.get(b"/l/kept").await.unwrap().is_some());

    s.revoke_lease(kept).await.unwrap();
    match next_change(&mut watch).await {
        WatchEvent::Delete { prev, .. } => assert_eq!(prev.key, b"/l/kept"),
        other => panic!("expected the revoked key's deletion, got {other:?}"),
    }
    assert_eq!(s.get(b"/l/kept").await.unwrap(), None);
}

pub async fn unknown_leases_are_refused(s: &DynStore) {
    let rev = s.current_revision().await.unwrap();
    let err = s
        .create(b"/l/x", b"v", Some(LeaseId(424242)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseNotFound(424242)), "{err:?}");
    assert!(matches!(
        s.keep_alive(LeaseId(424242)).await.unwrap_err(),
        StoreError::LeaseNotFound(_)
    ));
    assert!(matches!(
        s.revoke_lease(LeaseId(424242)).await.unwrap_err(),
        StoreError::LeaseNotFound(_)
    ));
    assert_eq!(s.get(b"/l/x").await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), rev);
}

pub async fn oversized_keys_and_values_are_refused(s: &DynStore) {
    let big = vec![b'x'; store::MAX_VALUE_BYTES + 1];
    let err = s.create(b"/big", &big, None).await.unwrap_err();
    assert!(matches!(err, StoreError::ValueTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert!(matches!(
        s.create(&vec![b'k'; store::MAX_KEY_BYTES + 1], b"v", None)
            .await
            .unwrap_err(),
        StoreError::KeyTooLarge { .. }
    ));
    assert!(matches!(
        s.create(b"", b"v", None).await.unwrap_err(),
        StoreError::EmptyKey
    ));
    assert_eq!(s.get(b"/big").await.unwrap(), None);
    // The largest allowed value round-trips intact.
    let max = vec![7u8; store::MAX_VALUE_BYTES];
    s.create(b"/max", &max, None).await.unwrap();
    assert_eq!(s.get(b"/max").await.unwrap().unwrap().value, max);
}

/// Keeps an `Arc` store usable where the suite wants a `DynStore`.
pub fn dyn_store<S: store::Store>(s: S) -> DynStore {
    Arc::new(s)
}
