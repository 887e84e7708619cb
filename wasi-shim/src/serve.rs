//! HTTP functions: a component exporting `wasi:http/incoming-handler` (and
//! no `wasi:cli/run`) served on the sandbox's listen address, HTTP/1.1 with
//! keep-alive, one fresh instance per request from a pre-instantiated
//! [`ProxyPre`] (pooling allocator), each instance with the sandbox's memory
//! limit, CPU limit and deadline (per request).
//!
//! Admission: up to `http_concurrency` requests run at once; the next
//! `http_queue` wait for a slot; beyond that the answer is 503 at once.
//!
//! Stopping: a terminate drains (stop accepting, close idle keep-alive
//! connections, let the requests in flight finish) and exits 0; whatever is
//! left when the grace period ends, or on a kill, is killed (137).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::control::{Control, Phase, Signal};
use crate::engine::{Compiled, Engine, Loaded};
use crate::error::{ShimError, chain};
use crate::host::{Guard, P2Host};
use crate::limits::Limiter;
use crate::run::{Exit, ExitReason, Failure, KILLED_EXIT_CODE, Outcome, classify, race};
use crate::sandbox::Sandbox;
use crate::usage::Meters;

/// Whether a component is an HTTP function: it exports
/// `wasi:http/incoming-handler` and not `wasi:cli/run`.
pub(crate) fn is_http_function(engine: &wasmtime::Engine, component: &Component) -> bool {
    let (mut http, mut run) = (false, false);
    for (name, _) in component.component_type().exports(engine) {
        http |= name.starts_with("wasi:http/incoming-handler@");
        run |= name.starts_with("wasi:cli/run@");
    }
    http && !run
}

/// What every request of one HTTP function shares.
struct Server {
    pre: ProxyPre<P2Host>,
    sandbox: Sandbox,
    tick: Duration,
    control: Arc<Control>,
    permits: Arc<Semaphore>,
    /// Instances alive (their tasks may outlive the response).
    active: watch::Sender<usize>,
    next_id: AtomicU64,
}

/// Serves the HTTP function until it is stopped; see the module docs.
pub(crate) async fn serve(
    engine: Engine,
    loaded: Loaded,
    sandbox: Sandbox,
    control: Arc<Control>,
) -> Result<Exit, ShimError> {
    let Compiled::Component(component) = &loaded.compiled else {
        return Err(ShimError::Instantiation {
            message: "a core module cannot be an HTTP function".into(),
        });
    };
    let addr = sandbox.http_listen.ok_or(ShimError::NoHttpListen)?;
    let pre = engine
        .inner
        .p2_linker
        .instantiate_pre(component)
        .and_then(ProxyPre::new)
        .map_err(|e| ShimError::Instantiation { message: chain(&e) })?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ShimError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ShimError::Listen { addr, source })?;
    tracing::info!(
        %local,
        concurrency = sandbox.http_concurrency,
        queue = sandbox.http_queue,
        "serving"
    );
    let started = Instant::now();
    let (active, mut idle) = watch::channel(0usize);
    let server = Arc::new(Server {
        pre,
        tick: engine.inner.config.epoch_tick,
        permits: Arc::new(Semaphore::new(sandbox.http_concurrency)),
        sandbox,
        control: control.clone(),
        active,
        next_id: AtomicU64::new(0),
    });
    control.set_phase(Phase::Http(local));

    let (drain, draining) = watch::channel(false);
    let mut conns = JoinSet::new();
    let stopping = control.stopping();
    tokio::pin!(stopping);
    let signal = loop {
        tokio::select! {
            biased;
            s = &mut stopping => break s,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = tracing::debug_span!("connection", %peer);
                    conns.spawn(
                        connection(server.clone(), stream, draining.clone()).instrument(span),
                    );
                }
                Err(e) => {
                    // For example out of file descriptors: back off a little.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    };
    drop(listener);

    let clean = match signal {
        Signal::Terminate(deadline) => {
            tracing::info!(
                connections = conns.len(),
                in_flight = *idle.borrow(),
                "draining"
            );
            drain.send_replace(true);
            let drained = async {
                while conns.join_next().await.is_some() {}
                let _ = idle.wait_for(|n| *n == 0).await;
            };
            tokio::select! {
                biased;
                () = control.killed() => false,
                () = drained => true,
                () = tokio::time::sleep_until(deadline.into()) => false,
            }
        }
        Signal::Kill | Signal::Run => false,
    };
    if !clean {
        tracing::info!(in_flight = *idle.borrow(), "killing what is left");
        control.kill();
        conns.shutdown().await;
        // Every instance races against the kill, so this is quick.
        let _ = idle.wait_for(|n| *n == 0).await;
    }
    let usage = control.meters.snapshot();
    let (code, reason) = if clean {
        (0, ExitReason::Exited)
    } else {
        (KILLED_EXIT_CODE, ExitReason::Killed)
    };
    tracing::info!(code, served = usage.requests_served, "stopped");
    Ok(Exit {
        code,
        reason,
        backtrace: None,
        cpu_time: usage.cpu_time,
        wall_time: started.elapsed(),
        peak_memory_bytes: usage.peak_memory_bytes,
        cache: loaded.cache,
    })
}

/// Serves one connection's requests, and on drain finishes the one in
/// progress and closes.
async fn connection(server: Arc<Server>, stream: TcpStream, mut draining: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { let _ = draining.wait_for(|d| *d).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Uncounts a waiting request when dropped (admitted, or the client went
/// away).
struct Queued<'a>(&'a Meters);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.dequeue();
    }
}

/// Counts a live instance.
struct Active(watch::Sender<usize>);

impl Active {
    fn new(active: &watch::Sender<usize>) -> Self {
        active.send_modify(|n| *n += 1);
        Self(active.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Server {
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>) -> hyper::Response<WasiBody> {
        let Some(permit) = self.admit().await else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the function is busy: {} requests running and {} waiting; try again later",
                    self.sandbox.http_concurrency, self.sandbox.http_queue
                ),
            );
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span =
            tracing::debug_span!("request", id, method = %req.method(), path = %req.uri().path());
        self.respond(req, permit).instrument(span).await
    }

    /// A slot now, or after waiting in the queue; `None` when the queue is
    /// full.
    async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        let meters = &self.control.meters;
        if !meters.try_enqueue(self.sandbox.http_queue) {
            return None;
        }
        let _queued = Queued(meters);
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Runs the request in a fresh instance and returns its response, or an
    /// error response saying why there is none.
    async fn respond(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        permit: OwnedSemaphorePermit,
    ) -> hyper::Response<WasiBody> {
        let sandbox = &self.sandbox;
        let limiter = Limiter::new(
            sandbox.memory_limit,
            sandbox.max_instances,
            self.control.meters.clone(),
        );
        let host = match P2Host::new(sandbox, limiter) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up an instance");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot set up the function's sandbox: {e}"),
                );
            }
        };
        let mut store = Store::new(self.pre.engine(), host);
        store.limiter(|h| &mut h.limiter);
        let deadline = sandbox.deadline.map(|d| Instant::now() + d);
        let cpu = Guard {
            control: self.control.clone(),
            deadline,
            cpu_limit: sandbox.cpu_limit,
            tick: self.tick,
            stop_on_terminate: false,
        }
        .arm(&mut store);

        let (tx, rx) = oneshot::channel();
        let req = match store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
        {
            Ok(r) => r,
            Err(e) => return plain(StatusCode::BAD_REQUEST, chain(&e)),
        };
        let out = match store.data_mut().http().new_response_outparam(tx) {
            Ok(o) => o,
            Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, chain(&e)),
        };

        let active = Active::new(&self.active);
        let control = self.control.clone();
        let pre = self.pre.clone();
        control.meters.request_started();
        // The instance runs on its own task: it may go on streaming the body
        // after the response head is sent.
        let task = tokio::spawn(
            async move {
                let _slot = (permit, active);
                let outcome = race(&control, deadline, false, async {
                    let proxy = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(Failure::Instantiate)?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                        .map_err(Failure::Run)
                })
                .await;
                let memory_exceeded = store.data().limiter.exceeded;
                // Charges the last slice to the function's CPU time.
                cpu.get();
                drop(store);
                control.meters.request_ended();
                (outcome, memory_exceeded)
            }
            .in_current_span(),
        );

        match rx.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the function failed the request: {code:?}"),
            ),
            // The guest dropped its response-outparam unset: find out why.
            Err(_) => match task.await {
                Ok((outcome, memory_exceeded)) => no_response(outcome, memory_exceeded),
                Err(e) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the function's task failed: {e}"),
                ),
            },
        }
    }
}

/// The answer for an instance that ended without setting a response.
fn no_response(
    outcome: Outcome<Result<(), Failure>>,
    memory_exceeded: bool,
) -> hyper::Response<WasiBody> {
    match outcome {
        Outcome::Deadline => plain(
            StatusCode::GATEWAY_TIMEOUT,
            "the function did not answer within its deadline",
        ),
        Outcome::Killed | Outcome::Terminated => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "the function was stopped")
        }
        Outcome::Done(Ok(())) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the function returned without setting a response",
        ),
        Outcome::Done(Err(Failure::Instantiate(e))) => {
            let message = chain(&e);
            tracing::warn!(error = %message, "cannot instantiate the function");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot instantiate the function: {message}"),
            )
        }
        Outcome::Done(Err(Failure::Run(e))) => {
            let (_, reason) = classify(&e, memory_exceeded);
            let backtrace = e
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .map(ToString::to_string);
            tracing::warn!(?reason, backtrace, "the function failed");
            let why = match reason {
                ExitReason::Trapped { message } => format!("it trapped: {message}"),
                ExitReason::OutOfMemory { message } => format!("out of memory: {message}"),
                ExitReason::Deadline => "its deadline passed".to_owned(),
                other => format!("{other:?}"),
            };
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the function failed: {why}"),
            )
        }
    }
}

/// A plain-text response from the host (not from the guest).
fn plain(status: StatusCode, message: impl Into<String>) -> hyper::Response<WasiBody> {
    let mut text = message.into();
    text.push('\n');
    let body = Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
