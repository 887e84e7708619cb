//! `Engine::spawn_then`: the exit callback runs once, where the guest
//! ended, with the end `Running::wait` also gives; and a command already
//! compiled in memory starts from the spawning call itself, so it runs and
//! ends while its caller's runtime is blocked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use wasi_shim::{Engine, EngineConfig, ExitReason, ModuleSource, Sandbox};

const DEADLINE: Duration = Duration::from_secs(30);

/// What the callback saw: its thread's name and the exit code (or error).
type Seen = (Option<String>, Result<i32, String>);

fn reporting(
    tx: mpsc::Sender<Seen>,
) -> impl FnOnce(&Result<wasi_shim::Exit, wasi_shim::ShimError>) + Send + 'static {
    move |result| {
        let name = std::thread::current().name().map(str::to_owned);
        let code = result.as_ref().map(|e| e.code).map_err(|e| e.to_string());
        let _ = tx.send((name, code));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_compiled_command_runs_and_ends_while_its_caller_is_blocked() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    // Compiled once; the verified source names it by digest.
    let loaded = engine
        .load(&ModuleSource::file(artifacts::TRUE))
        .await
        .unwrap();
    let source = ModuleSource::verified(artifacts::TRUE, loaded.digest.clone());
    let (tx, rx) = mpsc::channel();
    let running = engine.spawn_then(
        source,
        &Sandbox::builder().arg("true").build(),
        reporting(tx),
    );
    // This is the runtime's only thread, and it does not yield here: no
    // task of it can run until the guest has ended.
    let (thread, code) = rx
        .recv_timeout(DEADLINE)
        .expect("the guest ended while the caller's runtime was blocked");
    assert_eq!(code, Ok(0));
    let thread = thread.unwrap_or_default();
    assert!(
        thread.starts_with("wasi-shim-"),
        "the callback ran on {thread:?}, not the guest's pool"
    );
    let exit = running.wait().await.unwrap();
    assert!(exit.success());
    assert!(rx.try_recv().is_err(), "the callback ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_runs_once_for_every_kind_of_end() {
    let engine = Engine::new(EngineConfig::default()).unwrap();

    // A module that does not load: the callback gets the load error.
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let counted = calls.clone();
    let report = reporting(tx);
    let running = engine.spawn_then(
        ModuleSource::bytes(&b"\0asm but not really"[..]),
        &Sandbox::builder().build(),
        move |r| {
            counted.fetch_add(1, Ordering::SeqCst);
            report(r);
        },
    );
    let waited = running.wait().await.unwrap_err().to_string();
    let (_, seen) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(seen, Err(waited));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A spinning guest, killed: the callback gets the kill.
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let counted = calls.clone();
    let report = reporting(tx);
    let running = engine.spawn_then(
        ModuleSource::file(artifacts::INFINITE_LOOP),
        &Sandbox::builder().arg("loop").build(),
        move |r| {
            counted.fetch_add(1, Ordering::SeqCst);
            report(r);
        },
    );
    let kill = running.kill_handle();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        kill.kill();
    });
    let exit = tokio::time::timeout(DEADLINE, running.wait())
        .await
        .expect("the killed guest ended")
        .unwrap();
    stopper.await.unwrap();
    assert_eq!(exit.reason, ExitReason::Killed);
    let (thread, seen) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(seen, Ok(exit.code));
    assert!(thread.unwrap_or_default().starts_with("wasi-shim-"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_from_memory_counts_one_hit_whichever_path_it_takes() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    // A command starts from the spawn call; an HTTP function from its task.
    for (wasm, sandbox) in [
        (artifacts::TRUE, Sandbox::builder().arg("true").build()),
        (
            artifacts::HELLO_HTTP,
            Sandbox::builder().http_listen(listen).build(),
        ),
    ] {
        let loaded = engine.load(&ModuleSource::file(wasm)).await.unwrap();
        let before = engine.cache_stats().memory_hits;
        let running = engine.spawn(
            ModuleSource::verified(wasm, loaded.digest.clone()),
            &sandbox,
        );
        // Loaded, and for the HTTP function listening.
        let _ = tokio::time::timeout(DEADLINE, running.http_addr())
            .await
            .expect("the guest was loaded");
        assert_eq!(engine.cache_stats().memory_hits, before + 1, "{wasm}");
        running.kill_handle().kill();
        let _ = tokio::time::timeout(DEADLINE, running.wait())
            .await
            .expect("the guest ended");
    }
}
