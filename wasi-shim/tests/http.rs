//! HTTP functions against the sample guests `hello-http` and `fanout-http`:
//! served on a real loopback port and driven by a real HTTP client.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use http::StatusCode;
use wasi_shim::{
    Access, Engine, EngineConfig, ExitReason, MemoryOutput, ModuleSource, NetGrant, Output,
    Running, Sandbox, SandboxBuilder, ShimError,
};

use common::{Backend, Conn, get, wait_until, within};

const LONG: Duration = Duration::from_secs(30);

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).expect("engine")
}

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn function() -> SandboxBuilder {
    Sandbox::builder().http_listen(loopback())
}

async fn serve(engine: &Engine, guest: &str, sandbox: &Sandbox) -> (Running, SocketAddr) {
    let running = engine.spawn(ModuleSource::file(guest), sandbox);
    let addr = within(LONG, "the listener", running.http_addr())
        .await
        .expect("hello-http is an HTTP function");
    assert_ne!(addr.port(), 0, "port 0 is resolved to the bound port");
    (running, addr)
}

#[tokio::test]
async fn hello_http_serves_each_request_in_a_fresh_instance() {
    let engine = engine();
    let out = MemoryOutput::new(1 << 20);
    let sandbox = function()
        .env("POD_NAME", "web-1")
        .stdout(Output::Memory(out.clone()))
        .build();
    let (running, addr) = serve(&engine, artifacts::HELLO_HTTP, &sandbox).await;

    // One keep-alive connection, three requests: each one sees a fresh
    // instance, so the instance-local counter is always 1.
    let mut conn = Conn::open(addr).await;
    for _ in 0..3 {
        assert_eq!(
            conn.get("/").await,
            (StatusCode::OK, "hello from web-1 (request 1)\n".to_owned())
        );
    }
    assert_eq!(
        conn.get("/healthz").await,
        (StatusCode::OK, "ok".to_owned())
    );
    wait_until(LONG, "4 requests served", || {
        running.usage().requests_served == 4
    })
    .await;
    let usage = running.usage();
    assert_eq!(usage.requests_in_flight, 0);
    assert!(usage.peak_memory_bytes > 0, "{usage:?}");
    assert!(usage.cpu_time > Duration::ZERO, "{usage:?}");
    assert_eq!(out.text().matches("hello-http: request 1\n").count(), 3);

    running.kill_handle().terminate(Duration::from_secs(5));
    let exit = within(LONG, "the exit", running.wait()).await.unwrap();
    assert_eq!((exit.code, &exit.reason), (0, &ExitReason::Exited));
    assert!(exit.cpu_time > Duration::ZERO);
}

#[tokio::test]
async fn hello_http_counts_requests_in_a_writable_state_dir() {
    let engine = engine();
    let state = tempfile::tempdir().unwrap();
    let sandbox = function()
        .env("POD_NAME", "counter-0")
        .preopen(state.path(), "/state", Access::ReadWrite)
        .build();
    let (running, addr) = serve(&engine, artifacts::HELLO_HTTP, &sandbox).await;
    for n in 1..=3 {
        assert_eq!(
            get(addr, "/").await,
            (
                StatusCode::OK,
                format!("hello from counter-0 (request {n})\n")
            )
        );
    }
    assert_eq!(
        std::fs::read_to_string(state.path().join("count")).unwrap(),
        "3\n"
    );
    running.kill_handle().kill();
    let exit = running.wait().await.unwrap();
    assert_eq!((exit.code, &exit.reason), (137, &ExitReason::Killed));
}

#[tokio::test]
async fn an_http_function_without_a_listen_address_is_an_error() {
    let running = engine().spawn(
        ModuleSource::file(artifacts::HELLO_HTTP),
        &Sandbox::builder().build(),
    );
    assert_eq!(running.http_addr().await, None);
    let err = running.wait().await.unwrap_err();
    assert!(matches!(err, ShimError::NoHttpListen), "{err:?}");
    assert!(err.to_string().contains("http_listen"), "{err}");
}

#[tokio::test]
async fn a_command_has_no_http_address() {
    let running = engine().spawn(ModuleSource::file(artifacts::HELLO), &function().build());
    assert_eq!(running.http_addr().await, None);
    assert!(running.wait().await.unwrap().success());
}

#[tokio::test]
async fn the_concurrency_limit_holds() {
    let engine = engine();
    let sandbox = function().http_concurrency(2).http_queue(16).build();
    let (running, addr) = serve(&engine, artifacts::HELLO_HTTP, &sandbox).await;
    let started = Instant::now();
    let requests: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { get(addr, "/slow?ms=300").await }))
        .collect();
    let mut max_in_flight = 0;
    while !requests.iter().all(|r| r.is_finished()) {
        let usage = running.usage();
        max_in_flight = max_in_flight.max(usage.requests_in_flight);
        assert!(started.elapsed() < LONG, "requests did not finish");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for r in requests {
        assert_eq!(
            r.await.unwrap(),
            (StatusCode::OK, "slept 300 ms\n".to_owned())
        );
    }
    let elapsed = started.elapsed();
    assert_eq!(max_in_flight, 2, "at most 2 at once, and 2 reached");
    // Six 300 ms requests two at a time take three rounds.
    assert!(elapsed >= Duration::from_millis(850), "{elapsed:?}");
    running.kill_handle().kill();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn requests_past_the_queue_get_503() {
    let engine = engine();
    let sandbox = function().http_concurrency(1).http_queue(1).build();
    let (running, addr) = serve(&engine, artifacts::HELLO_HTTP, &sandbox).await;
    let first = tokio::spawn(async move { get(addr, "/slow?ms=1500").await });
    wait_until(LONG, "the first request running", || {
        running.usage().requests_in_flight == 1
    })
    .await;
    let second = tokio::spawn(async move { get(addr, "/slow?ms=10").await });
    wait_until(LONG, "the second request queued", || {
        running.usage().requests_queued == 1
    })
    .await;
    let (status, body) = get(addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("busy"), "{body}");
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    assert_eq!(
        second.await.unwrap(),
        (StatusCode::OK, "slept 10 ms\n".to_owned())
    );
    running.kill_handle().kill();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn terminate_drains_an_in_flight_request_then_exits_0() {
    let engine = engine();
    let (running, addr) = serve(&engine, artifacts::HELLO_HTTP, &function().build()).await;
    let mut idle = Conn::open(addr).await;
    assert_eq!(idle.get("/healthz").await.0, StatusCode::OK);
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=700").await });
    wait_until(LONG, "the slow request running", || {
        running.usage().requests_in_flight == 1
    })
    .await;
    let asked = Instant::now();
    running.kill_handle().terminate(Duration::from_secs(20));
    // The listener closes at once; the idle keep-alive connection too.
    wait_until(LONG, "the listener closed", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(idle.try_get("/healthz").await.is_err());
    // The request in flight finishes.
    assert_eq!(
        slow.await.unwrap(),
        (StatusCode::OK, "slept 700 ms\n".to_owned())
    );
    let exit = within(LONG, "the exit", running.wait()).await.unwrap();
    assert_eq!((exit.code, &exit.reason), (0, &ExitReason::Exited));
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn what_outlives_the_grace_period_is_killed() {
    let engine = engine();
    let (running, addr) = serve(&engine, artifacts::HELLO_HTTP, &function().build()).await;
    let slow = tokio::spawn(async move { Conn::open(addr).await.try_get("/slow?ms=30000").await });
    wait_until(LONG, "the slow request running", || {
        running.usage().requests_in_flight == 1
    })
    .await;
    let asked = Instant::now();
    running.kill_handle().terminate(Duration::from_millis(300));
    let kill = running.kill_handle();
    let exit = within(LONG, "the exit", running.wait()).await.unwrap();
    assert_eq!((exit.code, &exit.reason), (137, &ExitReason::Killed));
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(slow.await.unwrap().is_err(), "the client's request was cut");
    assert_eq!(kill.usage().requests_in_flight, 0);
    assert_eq!(kill.usage().memory_bytes, 0, "every instance was freed");
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504() {
    let engine = engine();
    let sandbox = function().deadline(Duration::from_millis(200)).build();
    let (running, addr) = serve(&engine, artifacts::HELLO_HTTP, &sandbox).await;
    let (status, body) = get(addr, "/slow?ms=10000").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    // The deadline is per request: the function serves on.
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    running.kill_handle().kill();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn fanout_calls_a_granted_backend_and_nothing_else() {
    let engine = engine();
    let backend = Backend::start().await;
    let url = format!("http://{}/", backend.addr);

    let granted = function()
        .env("BACKEND_URL", &url)
        .allow_network(NetGrant::Addr(backend.addr))
        .build();
    let (running, addr) = serve(&engine, artifacts::FANOUT_HTTP, &granted).await;
    assert_eq!(
        get(addr, "/").await,
        (StatusCode::OK, "backend 200: pong".to_owned())
    );
    assert_eq!(backend.hits(), 1);
    running.kill_handle().kill();
    running.wait().await.unwrap();

    // The same call without a grant (a grant for another port does not
    // count) is refused before any connection is made.
    let other = SocketAddr::from((Ipv4Addr::LOCALHOST, backend.addr.port().wrapping_add(1)));
    let refused = function()
        .env("BACKEND_URL", &url)
        .allow_network(NetGrant::Addr(other))
        .build();
    let (running, addr) = serve(&engine, artifacts::FANOUT_HTTP, &refused).await;
    let (status, body) = get(addr, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("DestinationIpProhibited"), "{body}");
    assert_eq!(
        backend.hits(),
        1,
        "the refused call never reached the backend"
    );
    running.kill_handle().kill();
    running.wait().await.unwrap();

    // A name needs name lookup granted.
    let by_name = function()
        .env(
            "BACKEND_URL",
            format!("http://localhost:{}/", backend.addr.port()),
        )
        .allow_network(NetGrant::Addr(backend.addr))
        .build();
    let (running, addr) = serve(&engine, artifacts::FANOUT_HTTP, &by_name).await;
    let (status, body) = get(addr, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("name lookup is not granted"), "{body}");
    assert_eq!(backend.hits(), 1);
    running.kill_handle().kill();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn fanout_resolves_a_name_when_lookup_is_granted() {
    let engine = engine();
    let backend = Backend::start().await;
    let sandbox = function()
        .env(
            "BACKEND_URL",
            format!("http://localhost:{}/", backend.addr.port()),
        )
        .allow_network(NetGrant::Addr(backend.addr))
        .allow_name_lookup()
        .build();
    let (running, addr) = serve(&engine, artifacts::FANOUT_HTTP, &sandbox).await;
    assert_eq!(
        get(addr, "/").await,
        (StatusCode::OK, "backend 200: pong".to_owned())
    );
    running.kill_handle().kill();
    running.wait().await.unwrap();
}
