//! The sandbox against the sample guests (`samples/guests`, built by the
//! `artifacts` crate): one test per guest behaviour.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use wasi_shim::{
    Access, CacheOutcome, Engine, EngineConfig, ExitReason, MemoryOutput, ModuleSource, NetGrant,
    Output, Sandbox, ShimError,
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

fn pipe() -> MemoryOutput {
    MemoryOutput::new(16 << 20)
}

#[tokio::test]
async fn hello_prints_its_args_and_env() {
    let out = pipe();
    let sandbox = Sandbox::builder()
        .args(["hello", "one", "two words"])
        .env("GREETING", "hi")
        .env("POD", "p-1")
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine()
        .run(ModuleSource::file(artifacts::HELLO), &sandbox)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        out.text(),
        "arg: hello\narg: one\narg: two words\nenv: GREETING=hi\nenv: POD=p-1\n"
    );
    assert!(exit.peak_memory_bytes > 0);
}

#[tokio::test]
async fn nothing_is_granted_by_default() {
    let out = pipe();
    let sandbox = Sandbox::builder()
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine()
        .run(ModuleSource::file(artifacts::HELLO), &sandbox)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(out.text(), "", "no argv, no env");
}

#[tokio::test]
async fn batch_pi_exits_0_then_2_on_bad_args() {
    let engine = engine();
    let out = pipe();
    let ok = Sandbox::builder()
        .args(["batch-pi", "10"])
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine
        .run(ModuleSource::file(artifacts::BATCH_PI), &ok)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(out.text(), "3.141592653\n");

    let err = pipe();
    let bad = Sandbox::builder()
        .args(["batch-pi", "many"])
        .stderr(Output::Memory(err.clone()))
        .build();
    let exit = engine
        .run(ModuleSource::file(artifacts::BATCH_PI), &bad)
        .await
        .unwrap();
    assert_eq!((exit.code, &exit.reason), (2, &ExitReason::Exited));
    assert!(err.text().contains("DIGITS must be"), "{}", err.text());
    assert_eq!(
        exit.cache,
        CacheOutcome::Memory,
        "second run reuses the compiled module"
    );
}

#[tokio::test]
async fn memory_bomb_is_stopped_at_its_limit() {
    let engine = engine();
    let out = pipe();
    let limit = 64 << 20;
    let sandbox = Sandbox::builder()
        .arg("memory-bomb")
        .memory_limit(limit)
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine
        .run(ModuleSource::file(artifacts::MEMORY_BOMB), &sandbox)
        .await
        .unwrap();
    match &exit.reason {
        ExitReason::OutOfMemory { message } => {
            assert!(message.contains("memory limit"), "{message}")
        }
        other => panic!("expected OutOfMemory, got {other:?}\n{}", out.text()),
    }
    assert_eq!(exit.code, 137);
    assert!(exit.peak_memory_bytes <= limit, "{exit:?}");
    assert!(exit.peak_memory_bytes > limit / 2, "{exit:?}");
    assert!(out.text().contains("memory-bomb: 32 MiB"), "{}", out.text());
    // The host (and the engine) carry on.
    let again = Sandbox::builder().arg("hello").build();
    assert!(
        engine
            .run(ModuleSource::file(artifacts::HELLO), &again)
            .await
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_deadline() {
    let sandbox = Sandbox::builder()
        .deadline(Duration::from_millis(300))
        .build();
    let started = Instant::now();
    let exit = engine()
        .run(ModuleSource::file(artifacts::INFINITE_LOOP), &sandbox)
        .await
        .unwrap();
    assert_eq!((exit.code, &exit.reason), (137, &ExitReason::Deadline));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // It was charged for spinning (not all of the 300 ms: on a busy machine
    // a low-priority guest thread gets less than its wall time).
    assert!(exit.cpu_time >= Duration::from_millis(50), "{exit:?}");
    assert!(exit.cpu_time <= exit.wall_time, "{exit:?}");
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_its_kill_handle() {
    let engine = engine();
    let out = pipe();
    let sandbox = Sandbox::builder()
        .stdout(Output::Memory(out.clone()))
        .build();
    let running = engine.spawn(ModuleSource::file(artifacts::INFINITE_LOOP), &sandbox);
    let until = Instant::now() + Duration::from_secs(10);
    while !out.text().contains("spinning") {
        assert!(Instant::now() < until, "the guest never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kill = running.kill_handle();
    let asked = Instant::now();
    kill.kill();
    let exit = running.wait().await.unwrap();
    assert_eq!((exit.code, &exit.reason), (137, &ExitReason::Killed));
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_yields_to_the_executor() {
    // On a single-threaded runtime, a timer still fires while the guest spins.
    let engine = engine();
    let running = engine.spawn(
        ModuleSource::file(artifacts::INFINITE_LOOP),
        &Sandbox::builder().build(),
    );
    let t = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    running.kill_handle().kill();
    assert_eq!(running.wait().await.unwrap().reason, ExitReason::Killed);
}

#[tokio::test]
async fn a_cpu_limit_slows_a_guest_down() {
    let engine = engine();
    let half = Sandbox::builder()
        .cpu_limit(0.25)
        .deadline(Duration::from_millis(800))
        .build();
    let exit = engine
        .run(ModuleSource::file(artifacts::INFINITE_LOOP), &half)
        .await
        .unwrap();
    assert_eq!(exit.reason, ExitReason::Deadline);
    let share = exit.cpu_time.as_secs_f64() / exit.wall_time.as_secs_f64();
    assert!(
        share < 0.5,
        "ran {share:.2} of a core under a 0.25 limit: {exit:?}"
    );
}

#[tokio::test]
async fn deep_recursion_traps_with_a_backtrace() {
    let exit = engine()
        .run(
            ModuleSource::file(artifacts::DEEP_RECURSION),
            &Sandbox::builder().build(),
        )
        .await
        .unwrap();
    let ExitReason::Trapped { message } = &exit.reason else {
        panic!("expected a trap, got {exit:?}");
    };
    assert_eq!(exit.code, 1);
    assert!(message.starts_with("stack overflow"), "{message}");
    assert!(message.contains("out of bounds memory access"), "{message}");
    let bt = exit.backtrace.expect("a backtrace");
    assert!(bt.contains("recurse"), "{bt}");
}

#[tokio::test]
async fn path_escape_is_denied_every_time() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(root.path().join("secret"), "top secret").unwrap();
    std::fs::write(data.join("inside"), "12345").unwrap();
    std::os::unix::fs::symlink("/etc", data.join("escape")).unwrap();
    let out = pipe();
    let sandbox = Sandbox::builder()
        .arg("path-escape")
        .preopen(&data, "/data", Access::ReadOnly)
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine()
        .run(ModuleSource::file(artifacts::PATH_ESCAPE), &sandbox)
        .await
        .unwrap();
    let text = out.text();
    assert!(exit.success(), "{exit:?}\n{text}");
    assert!(text.contains("INSIDE /data/inside: 5 bytes"), "{text}");
    assert!(!text.contains("READ "), "{text}");
    assert_eq!(text.matches("DENIED ").count(), 7, "{text}");
    assert!(text.contains("path-escape: all denied"), "{text}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("secret")).unwrap(),
        "top secret"
    );
}

#[tokio::test]
async fn a_missing_preopen_is_an_error() {
    let sandbox = Sandbox::builder()
        .preopen("/nonexistent/shoal", "/data", Access::ReadWrite)
        .build();
    let err = engine()
        .run(ModuleSource::file(artifacts::HELLO), &sandbox)
        .await
        .unwrap_err();
    assert!(matches!(err, ShimError::Preopen { .. }), "{err:?}");
}

#[tokio::test]
async fn log_flood_writes_its_lines_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let file = std::fs::File::create(&path).unwrap();
    let sandbox = Sandbox::builder()
        .args(["log-flood", "20000"])
        .stdout(Output::File(file.into()))
        .build();
    let exit = engine()
        .run(ModuleSource::file(artifacts::LOG_FLOOD), &sandbox)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 20000);
    assert!(text.ends_with("log-flood line 19999 the quick brown fox jumps over the lazy dog\n"));
}

#[tokio::test]
async fn log_flood_stops_when_its_sink_is_full() {
    let out = MemoryOutput::new(100_000);
    let sandbox = Sandbox::builder()
        .arg("log-flood")
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine()
        .run(ModuleSource::file(artifacts::LOG_FLOOD), &sandbox)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(out.len() <= 100_000 && !out.is_empty());
}

#[tokio::test]
async fn connect_out_is_denied_unless_granted() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let engine = engine();

    let out = pipe();
    let denied = Sandbox::builder()
        .args(["connect-out".to_owned(), addr.to_string()])
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine
        .run(ModuleSource::file(artifacts::CONNECT_OUT), &denied)
        .await
        .unwrap();
    assert_eq!(
        (exit.code, &exit.reason),
        (1, &ExitReason::Exited),
        "{}",
        out.text()
    );
    assert!(
        out.text().starts_with(&format!("DENIED {addr}")),
        "{}",
        out.text()
    );

    let other = SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port().wrapping_add(1)));
    let out = pipe();
    let granted = Sandbox::builder()
        .args(["connect-out".to_owned(), addr.to_string()])
        .allow_network(NetGrant::Addr(other))
        .allow_network(NetGrant::Addr(addr))
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine
        .run(ModuleSource::file(artifacts::CONNECT_OUT), &granted)
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}: {}", out.text());
    assert!(
        out.text().starts_with(&format!("CONNECTED {addr}")),
        "{}",
        out.text()
    );
}

#[tokio::test]
async fn malformed_and_truncated_modules_are_invalid() {
    let engine = engine();
    for path in [artifacts::MALFORMED, artifacts::TRUNCATED] {
        let err = engine
            .run(ModuleSource::file(path), &Sandbox::builder().build())
            .await
            .unwrap_err();
        let ShimError::InvalidModule { message } = &err else {
            panic!("{path}: expected InvalidModule, got {err:?}");
        };
        assert!(!message.is_empty());
        assert!(
            err.to_string().starts_with("invalid Wasm module: "),
            "{err}"
        );
    }
    for (bytes, expect) in [
        (&b"hello"[..], "preamble"),
        (b"\x7fELF\x02\x01\x01\x00", "magic"),
        (b"\0asm\x02\0\0\0", "version"),
    ] {
        let err = engine.load(&ModuleSource::bytes(bytes)).await.unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
    }
}

#[tokio::test]
async fn the_compile_cache_is_much_faster_than_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..EngineConfig::default()
    };
    let source = ModuleSource::file(artifacts::BATCH_PI);

    let first = Engine::new(config.clone()).unwrap();
    let t = Instant::now();
    assert_eq!(
        first.load(&source).await.unwrap().cache,
        CacheOutcome::Compiled
    );
    let compile = t.elapsed();
    let t = Instant::now();
    assert_eq!(
        first.load(&source).await.unwrap().cache,
        CacheOutcome::Memory
    );
    let memory = t.elapsed();
    drop(first);

    let second = Engine::new(config).unwrap();
    let t = Instant::now();
    let loaded = second.load(&source).await.unwrap();
    let disk = t.elapsed();
    assert_eq!(loaded.cache, CacheOutcome::Disk);
    assert!(loaded.digest.starts_with("sha256:"));
    let stats = second.cache_stats();
    assert_eq!((stats.disk_hits, stats.compiled), (1, 0));
    eprintln!("compile {compile:?}, memory hit {memory:?}, disk hit {disk:?}");
    assert!(
        memory * 10 < compile,
        "memory {memory:?} vs compile {compile:?}"
    );
    assert!(disk * 2 < compile, "disk {disk:?} vs compile {compile:?}");
}

#[tokio::test]
async fn components_and_modules_are_told_apart() {
    let engine = engine();
    let module = engine
        .load(&ModuleSource::file(artifacts::HELLO))
        .await
        .unwrap();
    let component = engine
        .load(&ModuleSource::file(artifacts::CONNECT_OUT))
        .await
        .unwrap();
    assert_eq!(module.kind, wasi_shim::ModuleKind::Core);
    assert_eq!(component.kind, wasi_shim::ModuleKind::Component);
}

#[tokio::test]
async fn deep_recursion_exhausts_a_small_native_stack() {
    let engine = Engine::new(EngineConfig {
        max_wasm_stack: 16 << 10,
        ..EngineConfig::default()
    })
    .unwrap();
    let exit = engine
        .run(
            ModuleSource::file(artifacts::DEEP_RECURSION),
            &Sandbox::builder().build(),
        )
        .await
        .unwrap();
    assert_eq!(
        exit.reason,
        ExitReason::Trapped {
            message: "stack overflow: wasm trap: call stack exhausted".into()
        },
        "{exit:?}"
    );
    assert!(exit.backtrace.is_some_and(|bt| bt.contains("recurse")));
}

#[tokio::test]
async fn terminate_ends_a_command_at_once_as_sigterm_would() {
    let engine = engine();
    let out = pipe();
    let sandbox = Sandbox::builder()
        .stdout(Output::Memory(out.clone()))
        .build();
    let running = engine.spawn(ModuleSource::file(artifacts::INFINITE_LOOP), &sandbox);
    wait_until("the guest spinning", || out.text().contains("spinning")).await;
    // Usage is live while it runs.
    wait_until("CPU time charged", || {
        running.usage().cpu_time >= Duration::from_millis(50)
    })
    .await;
    assert!(running.usage().memory_bytes > 0);
    let asked = Instant::now();
    running.kill_handle().terminate(Duration::from_secs(30));
    let exit = running.wait().await.unwrap();
    assert_eq!((exit.code, &exit.reason), (143, &ExitReason::Terminated));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
}

/// The address `echo-tcp` printed on its `LISTENING` line.
fn listening(out: &MemoryOutput) -> Option<SocketAddr> {
    out.text()
        .lines()
        .find_map(|l| l.strip_prefix("LISTENING "))
        .map(|a| a.parse().expect("echo-tcp prints IP:PORT"))
}

#[tokio::test]
async fn echo_tcp_listens_on_its_granted_address_and_echoes() {
    use std::io::{Read, Write};
    let engine = engine();
    let out = pipe();
    // A pod IP on loopback, as the CRI grants one; port 0: any port.
    let pod_ip = Ipv4Addr::new(127, 42, 0, 5);
    let sandbox = Sandbox::builder()
        .env("LISTEN", format!("{pod_ip}:0"))
        .allow_network(NetGrant::Listen(SocketAddr::from((pod_ip, 0))))
        .stdout(Output::Memory(out.clone()))
        .build();
    let running = engine.spawn(ModuleSource::file(artifacts::ECHO_TCP), &sandbox);
    assert_eq!(
        running.http_addr().await,
        None,
        "a command, not an HTTP function"
    );
    wait_until("echo-tcp listening", || listening(&out).is_some()).await;
    let addr = listening(&out).unwrap();
    assert_eq!(addr.ip(), pod_ip);
    let echoed = tokio::task::spawn_blocking(move || {
        let mut replies = Vec::new();
        for message in ["hello", "second connection"] {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(message.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).unwrap();
            replies.push(back);
        }
        replies
    })
    .await
    .unwrap();
    assert_eq!(echoed, ["hello", "second connection"]);
    running.kill_handle().kill();
    let exit = running.wait().await.unwrap();
    assert_eq!((exit.code, &exit.reason), (137, &ExitReason::Killed));
}

#[tokio::test]
async fn echo_tcp_may_not_listen_where_it_was_not_granted() {
    let engine = engine();
    let grant = NetGrant::Listen(SocketAddr::from((Ipv4Addr::new(127, 42, 0, 5), 0)));
    // Another loopback IP, and the default 0.0.0.0:7000 (the wildcard is
    // never implied by a grant for one IP).
    for listen in [Some("127.0.0.1:0"), Some("127.42.0.6:7000"), None] {
        let out = pipe();
        let mut b = Sandbox::builder()
            .allow_network(grant)
            .stdout(Output::Memory(out.clone()));
        if let Some(l) = listen {
            b = b.env("LISTEN", l);
        }
        let exit = engine
            .run(ModuleSource::file(artifacts::ECHO_TCP), &b.build())
            .await
            .unwrap();
        assert_eq!(
            (exit.code, &exit.reason),
            (1, &ExitReason::Exited),
            "{listen:?}: {}",
            out.text()
        );
        assert!(
            out.text().starts_with("DENIED "),
            "{listen:?}: {}",
            out.text()
        );
    }
    // Nor may it listen with only a connect grant.
    let out = pipe();
    let sandbox = Sandbox::builder()
        .env("LISTEN", "127.0.0.1:0")
        .allow_network(NetGrant::Ip(Ipv4Addr::LOCALHOST.into()))
        .stdout(Output::Memory(out.clone()))
        .build();
    let exit = engine
        .run(ModuleSource::file(artifacts::ECHO_TCP), &sandbox)
        .await
        .unwrap();
    assert_eq!(exit.code, 1, "{}", out.text());
    assert!(out.text().starts_with("DENIED "), "{}", out.text());
}
