//! Chaos: clients that retry and resume correctly lose nothing through a
//! store that refuses calls, hides write outcomes and breaks watches.

use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use store::embedded::{EmbeddedConfig, EmbeddedStore};
use store::faults::{FaultRates, Faulty};
use store::{Revision, Store, StoreError, WatchEvent};

const WRITERS: usize = 8;
const KEYS_PER_WRITER: usize = 60;
const INCREMENTS_PER_WRITER: usize = 15;

/// Creates `key`, retrying through faults. After an indeterminate attempt an
/// `AlreadyExists` means the earlier attempt landed.
async fn create_reliably(s: &Faulty<EmbeddedStore>, key: &str) -> Revision {
    let mut in_doubt = false;
    for _ in 0..1000 {
        match s.create(key.as_bytes(), key.as_bytes(), None).await {
            Ok(rev) => return rev,
            Err(StoreError::AlreadyExists { .. }) => {
                assert!(
                    in_doubt,
                    "{key} exists though no earlier attempt was in doubt"
                );
                loop {
                    match s.get(key.as_bytes()).await {
                        Ok(Some(kv)) => return kv.mod_revision,
                        Ok(None) => panic!("{key} vanished"),
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            Err(e) if e.is_determinate() && e.is_retryable() => {}
            Err(e) if !e.is_determinate() => in_doubt = true,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    panic!("{key} never got written");
}

/// Adds one to the counter with compare-and-swap. Each write is tagged, so
/// after an indeterminate attempt a re-read tells whether it landed.
async fn increment_reliably(s: &Faulty<EmbeddedStore>, tag: &str) {
    loop {
        let kv = match s.get(b"/chaos-counter").await {
            Ok(kv) => kv.unwrap(),
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("{e}"),
        };
        let text = String::from_utf8(kv.value.clone()).unwrap();
        let (n, _) = text.split_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        let value = format!("{} {tag}", n + 1);
        match s
            .update(b"/chaos-counter", value.as_bytes(), kv.mod_revision, None)
            .await
        {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) if e.is_determinate() && e.is_retryable() => {}
            Err(e) if !e.is_determinate() => {
                // Did it land? Either the counter still carries our tag, or
                // someone updated on top of ours: then our write is in the
                // history right after kv.mod_revision.
                loop {
                    match s.get(b"/chaos-counter").await {
                        Ok(Some(now)) => {
                            let landed = String::from_utf8(now.value)
                                .unwrap()
                                .ends_with(&format!(" {tag}"));
                            if landed
                                || now.mod_revision > kv.mod_revision
                                    && written_after(s, kv.mod_revision, tag).await
                            {
                                return;
                            }
                            break;
                        }
                        Ok(None) => panic!("the counter vanished"),
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// Whether the counter's version right after `rev` carries `tag`, read
/// through a watch from the log.
async fn written_after(s: &Faulty<EmbeddedStore>, rev: Revision, tag: &str) -> bool {
    let mut stream = s.inner().watch(b"/chaos-counter", rev + 1).await.unwrap();
    loop {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Put { kv, .. } => {
                return String::from_utf8(kv.value)
                    .unwrap()
                    .ends_with(&format!(" {tag}"));
            }
            WatchEvent::Progress { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
}

/// Follows `/chaos/` from `from`, resuming after every broken stream, until
/// `want` keys were seen; returns key -> revision, checking order on the way.
async fn follow(
    s: Faulty<EmbeddedStore>,
    from: Revision,
    want: usize,
) -> BTreeMap<String, Revision> {
    let mut seen = BTreeMap::new();
    let mut next = from;
    let mut resumes = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < want {
        assert!(
            Instant::now() < deadline,
            "the watcher saw only {} of {want}",
            seen.len()
        );
        let mut stream = match s.watch(b"/chaos/", next).await {
            Ok(stream) => stream,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("{e}"),
        };
        resumes += 1;
        while let Some(item) = stream.next().await {
            match item {
                Ok(WatchEvent::Put { kv, .. }) => {
                    assert!(kv.mod_revision >= next, "no event before the resume point");
                    next = kv.mod_revision + 1;
                    let key = String::from_utf8(kv.key).unwrap();
                    assert!(
                        seen.insert(key.clone(), kv.mod_revision).is_none(),
                        "{key} seen twice"
                    );
                }
                Ok(WatchEvent::Progress { revision }) => next = next.max(revision + 1),
                Ok(other) => panic!("{other:?}"),
                Err(_) => break,
            }
            if seen.len() == want {
                break;
            }
        }
    }
    assert!(
        resumes > 1,
        "the watch was broken and resumed at least once"
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_clients_lose_nothing_through_faults() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path());
    config.progress_interval = Duration::from_millis(100);
    let inner = EmbeddedStore::open(config).unwrap();
    let start = inner
        .create(b"/chaos-counter", b"0 init", None)
        .await
        .unwrap();
    let s = Faulty::new(inner, 0x5eed);
    s.set_rates(FaultRates {
        unavailable: 0.15,
        indeterminate: 0.15,
        broken_watch: 0.03,
    });

    let watcher = tokio::spawn(follow(s.clone(), start + 1, WRITERS * KEYS_PER_WRITER));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut acked = BTreeMap::new();
                for i in 0..KEYS_PER_WRITER {
                    let key = format!("/chaos/{w}/{i:03}");
                    acked.insert(key.clone(), create_reliably(&s, &key).await);
                    if i < INCREMENTS_PER_WRITER {
                        increment_reliably(&s, &format!("{w}-{i}")).await;
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeMap::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let seen = tokio::time::timeout(Duration::from_secs(90), watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen, acked,
        "the watcher saw every acknowledged write once, at its revision"
    );

    s.heal();
    let counter = s.get(b"/chaos-counter").await.unwrap().unwrap();
    let n: usize = String::from_utf8(counter.value)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        n,
        WRITERS * INCREMENTS_PER_WRITER,
        "no increment lost or doubled"
    );
    assert_eq!(counter.version as usize, n + 1);

    let counts = s.counts();
    assert!(
        counts.unavailable > 10 && counts.indeterminate > 10 && counts.broken_watches > 0,
        "{counts:?}"
    );
}
