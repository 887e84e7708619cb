//! Inline starts (`EngineConfig::inline_slice`): a command whose module's
//! runs have been short takes its first slice on the thread that starts it
//! (`Prepared::start`), so it ends, and its exit callback runs, before
//! `start` returns; a module that once took longer does not run inline
//! again; a long command started inline goes on on the pools after at most
//! one epoch tick; a kill made before the start holds.

use std::sync::mpsc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wasi_shim::{
    Engine, EngineConfig, Exit, ExitReason, ModuleSource, Output, Running, Sandbox, ShimError,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// Where and how the exit callback saw a run end.
#[derive(Debug)]
struct Seen {
    thread: ThreadId,
    name: String,
    code: Result<i32, String>,
}

/// A command module, compiled, named by its digest.
async fn verified(engine: &Engine, path: &str) -> ModuleSource {
    let loaded = engine.load(&ModuleSource::file(path)).await.unwrap();
    ModuleSource::verified(path, loaded.digest)
}

/// Starts `source` with `args`; gives the run and the channel its exit
/// callback reports on.
fn start(engine: &Engine, source: &ModuleSource, args: &[&str]) -> (Running, mpsc::Receiver<Seen>) {
    let mut sandbox = Sandbox::builder().stdout(Output::Null).stderr(Output::Null);
    for a in args {
        sandbox = sandbox.arg(*a);
    }
    let (tx, rx) = mpsc::channel();
    let prepared = engine.prepare_then(
        source.clone(),
        &sandbox.build(),
        move |result: &Result<Exit, ShimError>| {
            let here = std::thread::current();
            let _ = tx.send(Seen {
                thread: here.id(),
                name: here.name().unwrap_or_default().to_owned(),
                code: result.as_ref().map(|e| e.code).map_err(|e| e.to_string()),
            });
        },
    );
    (prepared.start(), rx)
}

/// Runs `source` to its end; answers whether it ended inside `start`, on
/// this thread (where the callback ran says so; a run on the pools may also
/// have ended by the time `start` returns).
async fn ended_inline(engine: &Engine, source: &ModuleSource, args: &[&str]) -> bool {
    let (running, rx) = start(engine, source, args);
    let at_once = rx.try_recv().ok();
    let reported_at_once = at_once.is_some();
    let exit = running.wait().await.unwrap();
    assert!(exit.success(), "{args:?}: {exit:?}");
    let seen = at_once.unwrap_or_else(|| rx.recv_timeout(DEADLINE).unwrap());
    assert!(rx.try_recv().is_err(), "the callback ran twice");
    assert_eq!(seen.code, Ok(0));
    let inline = seen.thread == std::thread::current().id();
    if inline {
        assert!(
            reported_at_once,
            "{seen:?}: ran here, but after start returned"
        );
    } else {
        assert!(seen.name.starts_with("wasi-shim-"), "{seen:?}");
    }
    inline
}

/// An inline limit far above a short run's time in a debug build on a busy
/// machine.
const GENEROUS: Duration = Duration::from_secs(1);

/// `inline_slice`, no epoch tick within a test, so a run's first poll lasts
/// until its end, and a normal-priority allowance no test spends (a spent
/// one starts commands lowered, never inline).
fn untimed(inline_slice: Duration) -> EngineConfig {
    EngineConfig {
        inline_slice,
        epoch_tick: Duration::from_secs(600),
        normal_priority_budget: Duration::from_secs(600),
        ..Default::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_short_command_ends_inline_once_its_module_is_known_short() {
    let engine = Engine::new(untimed(GENEROUS)).unwrap();
    let source = verified(&engine, artifacts::TRUE).await;
    // Unknown: the first run is on the pools, and teaches the engine.
    assert!(!ended_inline(&engine, &source, &["true"]).await);
    for _ in 0..3 {
        assert!(ended_inline(&engine, &source, &["true"]).await);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_module_that_once_ran_long_never_runs_inline_again() {
    let limit = Duration::from_millis(200);
    let engine = Engine::new(untimed(limit)).unwrap();
    let pi = verified(&engine, artifacts::BATCH_PI).await;
    assert!(!ended_inline(&engine, &pi, &["batch-pi", "5"]).await);
    assert!(ended_inline(&engine, &pi, &["batch-pi", "5"]).await);
    // Inline, and past the limit (no tick cuts its first poll short).
    let began = Instant::now();
    assert!(ended_inline(&engine, &pi, &["batch-pi", "10000"]).await);
    assert!(began.elapsed() > limit, "{:?}", began.elapsed());
    for _ in 0..2 {
        assert!(!ended_inline(&engine, &pi, &["batch-pi", "5"]).await);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_command_started_inline_goes_on_on_the_pools_after_a_tick() {
    let engine = Engine::new(EngineConfig {
        inline_slice: GENEROUS,
        ..Default::default()
    })
    .unwrap();
    let tick = engine.config().epoch_tick;
    let pi = verified(&engine, artifacts::BATCH_PI).await;
    assert!(!ended_inline(&engine, &pi, &["batch-pi", "5"]).await);
    // Known short now. With the real tick, one may come during a run's
    // inline poll and send the rest to the pools: the module stays short.
    let mut tries = 0;
    while !ended_inline(&engine, &pi, &["batch-pi", "5"]).await {
        tries += 1;
        assert!(tries < 20, "no run of a short module ended inline");
    }
    // Seconds of work: its inline slice ends at the next epoch tick, then
    // it runs on the pools while this thread goes on.
    let began = Instant::now();
    let (running, rx) = start(&engine, &pi, &["batch-pi", "100000"]);
    let blocked = began.elapsed();
    assert!(
        blocked < tick * 50,
        "start blocked its caller {blocked:?} (tick {tick:?})"
    );
    assert!(rx.try_recv().is_err(), "it cannot have ended yet");
    running.kill_handle().kill();
    let exit = tokio::time::timeout(DEADLINE, running.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.reason, ExitReason::Killed);
    let seen = rx.recv_timeout(DEADLINE).unwrap();
    assert!(seen.name.starts_with("wasi-shim-"), "{seen:?}");
    assert_eq!(seen.code, Ok(137));
}

#[tokio::test(flavor = "current_thread")]
async fn a_kill_before_the_start_ends_the_run_inline_or_not() {
    let engine = Engine::new(untimed(GENEROUS)).unwrap();
    let source = verified(&engine, artifacts::TRUE).await;
    for inline in [false, true] {
        let sandbox = Sandbox::builder().arg("true").build();
        let prepared = engine.prepare_then(source.clone(), &sandbox, |_| {});
        prepared.kill_handle().kill();
        let exit = prepared.start().wait().await.unwrap();
        assert_eq!(exit.reason, ExitReason::Killed, "inline known: {inline}");
        assert_eq!(exit.code, 137);
        // Then a run that is not killed, which makes the module short.
        ended_inline(&engine, &source, &["true"]).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_zero_inline_slice_never_runs_a_command_inline() {
    let engine = Engine::new(EngineConfig {
        inline_slice: Duration::ZERO,
        ..untimed(GENEROUS)
    })
    .unwrap();
    let source = verified(&engine, artifacts::TRUE).await;
    for _ in 0..3 {
        assert!(!ended_inline(&engine, &source, &["true"]).await);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_command_that_prints_still_ends_inline_with_all_its_output() {
    let engine = Engine::new(untimed(GENEROUS)).unwrap();
    let hello = verified(&engine, artifacts::HELLO).await;
    assert!(!ended_inline(&engine, &hello, &["hello"]).await);
    // Its writes go straight to the sink: no writer task to wait for.
    let out = wasi_shim::MemoryOutput::new(1 << 20);
    let sandbox = Sandbox::builder()
        .arg("hello")
        .arg("one")
        .stdout(Output::Memory(out.clone()))
        .build();
    let (tx, rx) = mpsc::channel();
    let prepared = engine.prepare_then(hello, &sandbox, move |r| {
        let _ = tx.send(r.as_ref().map(|e| e.code).map_err(|e| e.to_string()));
    });
    let running = prepared.start();
    assert_eq!(rx.try_recv(), Ok(Ok(0)), "not ended inline");
    let text = String::from_utf8(out.contents()).unwrap();
    assert!(text.starts_with("arg: hello\narg: one\n"), "{text:?}");
    assert!(running.wait().await.unwrap().success());
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_command_never_runs_inline() {
    let engine = Engine::new(untimed(GENEROUS)).unwrap();
    let pi = verified(&engine, artifacts::BATCH_PI).await;
    // Short but failing, as a crash loop is: it teaches nothing.
    for _ in 0..3 {
        let (running, rx) = start(&engine, &pi, &["batch-pi", "zero"]);
        assert_eq!(running.wait().await.unwrap().code, 2);
        let seen = rx.recv_timeout(DEADLINE).unwrap();
        assert!(seen.name.starts_with("wasi-shim-"), "{seen:?}");
    }
    assert_eq!(engine.inline_stats().started, 0);
    // A clean run of the same module makes it short.
    assert!(!ended_inline(&engine, &pi, &["batch-pi", "5"]).await);
    assert!(ended_inline(&engine, &pi, &["batch-pi", "5"]).await);
}
