//! Stdin ([`Input`]): closed by default, or fed from an async reader that a
//! guest reads as it is written, to end-of-file when the writer is gone.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use wasi_shim::{
    Engine, EngineConfig, ExitReason, Input, MemoryOutput, ModuleSource, Output, Sandbox,
};

/// Waits until `cond` holds, or panics with `what` after 30 s.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).expect("engine")
}

#[tokio::test]
async fn stdin_is_closed_by_default() {
    let (out, err) = (MemoryOutput::new(1 << 20), MemoryOutput::new(1 << 20));
    let sandbox = Sandbox::builder()
        .arg("stdin-echo")
        .stdout(Output::Memory(out.clone()))
        .stderr(Output::Memory(err.clone()))
        .build();
    let exit = engine()
        .run(ModuleSource::file(artifacts::STDIN_ECHO), &sandbox)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}: {}", err.text());
    assert_eq!(
        (out.text(), err.text()),
        (String::new(), "EOF after 0 bytes\n".into())
    );
}

#[tokio::test]
async fn a_component_reads_a_stream_as_it_is_written_then_eof() {
    let (out, err) = (MemoryOutput::new(1 << 20), MemoryOutput::new(1 << 20));
    let (reader, mut writer) = tokio::io::duplex(64 * 1024);
    let sandbox = Sandbox::builder()
        .arg("stdin-echo")
        .stdin(Input::stream(reader))
        .stdout(Output::Memory(out.clone()))
        .stderr(Output::Memory(err.clone()))
        .build();
    let running = engine().spawn(ModuleSource::file(artifacts::STDIN_ECHO), &sandbox);
    drop(sandbox);

    writer.write_all(b"first\n").await.unwrap();
    wait_until("the first chunk echoed", || out.text() == "first\n").await;
    writer.write_all(b"second\n").await.unwrap();
    wait_until("the second chunk echoed", || {
        out.text() == "first\nsecond\n"
    })
    .await;
    assert_eq!(err.text(), "", "no EOF while the writer is open");

    drop(writer);
    let exit = tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("the guest ends at EOF")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(err.text(), "EOF after 13 bytes\n");
}

#[tokio::test]
async fn a_guest_blocked_on_stdin_can_be_killed() {
    let (reader, _writer) = tokio::io::duplex(1024);
    let sandbox = Sandbox::builder()
        .arg("stdin-echo")
        .stdin(Input::stream(reader))
        .build();
    let running = engine().spawn(ModuleSource::file(artifacts::STDIN_ECHO), &sandbox);
    // It is blocked in a read: nothing comes while the writer is open.
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.kill_handle().kill();
    let exit = tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("a kill ends a guest blocked on stdin")
        .unwrap();
    assert_eq!((exit.code, exit.reason), (137, ExitReason::Killed));
}
