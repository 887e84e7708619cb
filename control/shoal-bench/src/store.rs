//! `shoal-bench store`: the embedded store against a real etcd, both durable
//! (fsync on every commit), on the same disk, in one run.
//!
//! - writes/s and p50/p99 create latency with 1 and 64 concurrent writers;
//! - watch delivery: from the start of a create to a watcher receiving it.

use crate::report::{Better, Latencies, emit};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::embedded::{EmbeddedConfig, EmbeddedStore};
use store::etcd::{EtcdConfig, EtcdStore};
use store::{DynStore, WatchEvent};

const VALUE_BYTES: usize = 256;

struct Figures {
    writes_1: (f64, Latencies),
    writes_64: (f64, Latencies),
    watch: Latencies,
}

pub async fn run(scale: f64) -> anyhow::Result<()> {
    let n = |x: f64| ((x * scale).round() as usize).max(1);
    let (seq, per_writer, watched) = (n(2000.0), n(300.0), n(1000.0));

    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-store")
        .tempdir_in("/var/tmp")?;
    let embedded: DynStore = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path()))?);
    let ours = measure(&embedded, seq, per_writer, watched).await?;
    drop(embedded);

    let etcd = testbed::Etcd::start().await?;
    let peer_store: DynStore =
        Arc::new(EtcdStore::connect(EtcdConfig::new([etcd.endpoint()])).await?);
    let peer = measure(&peer_store, seq, per_writer, watched).await?;
    let peer_name = etcd_version();

    report(ours, peer, &peer_name);
    Ok(())
}

fn report(mut ours: Figures, mut peer: Figures, name: &str) {
    let p = |v: f64, b: Better| Some((name, v, b));
    for (label, (o_rate, o_lat), (p_rate, p_lat)) in [
        ("1_writer", &mut ours.writes_1, &mut peer.writes_1),
        ("64_writers", &mut ours.writes_64, &mut peer.writes_64),
    ] {
        emit(
            "store",
            &format!("writes_per_s_{label}"),
            *o_rate,
            "writes/s",
            p(*p_rate, Better::Higher),
        );
        for pct in [50.0, 99.0] {
            emit(
                "store",
                &format!("write_p{pct}_{label}"),
                o_lat.percentile_ms(pct),
                "ms",
                p(p_lat.percentile_ms(pct), Better::Lower),
            );
        }
    }
    for pct in [50.0, 99.0] {
        emit(
            "store",
            &format!("watch_delivery_p{pct}"),
            ours.watch.percentile_ms(pct),
            "ms",
            p(peer.watch.percentile_ms(pct), Better::Lower),
        );
    }
}

async fn measure(
    s: &DynStore,
    seq: usize,
    per_writer: usize,
    watched: usize,
) -> anyhow::Result<Figures> {
    let value = vec![b'v'; VALUE_BYTES];
    let writes_1 = writers(s, "w1", 1, seq, &value).await?;
    let writes_64 = writers(s, "w64", 64, per_writer, &value).await?;
    let watch = watch_delivery(s, watched, &value).await?;
    Ok(Figures {
        writes_1,
        writes_64,
        watch,
    })
}

/// `count` writers each creating `each` keys; returns writes/s and latencies.
async fn writers(
    s: &DynStore,
    tag: &str,
    count: usize,
    each: usize,
    value: &[u8],
) -> anyhow::Result<(f64, Latencies)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|w| {
            let (s, value, tag) = (s.clone(), value.to_vec(), tag.to_string());
            tokio::spawn(async move {
                let mut lat = Latencies::default();
                for i in 0..each {
                    let key = format!("/bench/{tag}/{w}/{i}");
                    let t = Instant::now();
                    s.create(key.as_bytes(), &value, None).await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Latencies::default();
    for t in tasks {
        all.extend(t.await??);
    }
    let rate = (count * each) as f64 / started.elapsed().as_secs_f64();
    Ok((rate, all))
}

async fn watch_delivery(s: &DynStore, count: usize, value: &[u8]) -> anyhow::Result<Latencies> {
    let mut stream = s.watch(b"/bench/watch/", 0).await?;
    let mut lat = Latencies::default();
    for i in 0..count {
        let key = format!("/bench/watch/{i}");
        let t = Instant::now();
        s.create(key.as_bytes(), value, None).await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the watch ended"))??;
            if let WatchEvent::Put { kv, .. } = event
                && kv.key == key.as_bytes()
            {
                lat.push(t.elapsed());
                break;
            }
        }
    }
    Ok(lat)
}

fn etcd_version() -> String {
    let bin = std::env::var("SHOAL_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.replace("etcd Version: ", "etcd "))
        })
        .unwrap_or_else(|| "etcd".into())
}
