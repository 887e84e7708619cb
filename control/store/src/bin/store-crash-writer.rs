//! A test tool: opens the embedded store in a directory and creates `COUNT`
//! keys all at once, printing `ack INDEX REVISION` as each write is
//! acknowledged. The durability test kills it with SIGKILL mid-way and
//! checks that every acknowledged write survived, whole.
//!
//! Usage: `store-crash-writer DIR COUNT`

use std::io::Write;
use store::Store;
use store::embedded::{EmbeddedConfig, EmbeddedStore};

/// The value written for key `i`: its own index and length, then filler, so
/// a torn or misplaced value cannot pass for a whole one.
fn value_for(i: usize) -> Vec<u8> {
    let len = 64 + (i * 7919) % 8192;
    let mut v = format!("{i}:{len}:").into_bytes();
    v.resize(len, b'a' + (i % 26) as u8);
    v
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count)) = (args.next(), args.next()) else {
        return Err("usage: store-crash-writer DIR COUNT".into());
    };
    let count: usize = count.parse()?;
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..count {
        let (store, tx) = (store.clone(), tx.clone());
        tokio::spawn(async move {
            let key = format!("/crash/{i:05}");
            if let Ok(rev) = store.create(key.as_bytes(), &value_for(i), None).await {
                let _ = tx.send((i, rev));
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some((i, rev)) = rx.recv().await {
        writeln!(out, "ack {i} {rev}")?;
        out.flush()?;
    }
    Ok(())
}
