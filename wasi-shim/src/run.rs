//! Starting a guest and running a command: [`Engine::spawn`] loads the
//! module and tells a command (a p1 module's `_start`, a p2 component's
//! `wasi:cli/run`) from an HTTP function (`crate::serve`). A command runs in
//! its own store on the engine's command pools (`crate::priority`: normal
//! priority for its first tick, then low), raced against its kill
//! handle and deadline; every epoch tick it yields to the executor
//! (`crate::host::Guard`), so a guest that never makes a call can still be
//! stopped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument;
use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::Command;

use crate::control::{Control, KillHandle, Phase, PhaseGuard, Running, Signal, Task};
use crate::engine::{CacheOutcome, Compiled, Engine, Loaded, ModuleSource};
use crate::error::{ShimError, chain};
use crate::host::{Guard, P1Host, P2Host, Stop};
use crate::limits::{Limiter, MemoryLimitExceeded};
use crate::priority::Started;
use crate::sandbox::Sandbox;
use crate::serve;
use crate::wasi;

/// The exit code of a guest killed, stopped at its deadline or out of memory,
/// as for a container ended by SIGKILL.
pub const KILLED_EXIT_CODE: i32 = 137;
/// The exit code of a guest that trapped.
pub const TRAP_EXIT_CODE: i32 = 1;
/// The exit code of a command stopped by [`KillHandle::terminate`], as for a
/// process ended by SIGTERM (128 + 15).
pub const TERMINATED_EXIT_CODE: i32 = 143;

/// How a guest's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// It returned from `_start` / `wasi:cli/run`, or called `proc_exit`.
    Exited,
    /// It trapped (or a host call failed fatally).
    Trapped {
        /// The trap message, for example `wasm trap: call stack exhausted`.
        message: String,
    },
    /// It tried to grow memory past its limit.
    OutOfMemory {
        /// What it asked for and what the limit was.
        message: String,
    },
    /// Its wall-clock deadline passed.
    Deadline,
    /// Its kill handle was used (for an HTTP function: killed, or its
    /// drain did not finish within the grace period).
    Killed,
    /// A command stopped by [`KillHandle::terminate`] (WASI has no signals:
    /// it ends at once, as a process with the default SIGTERM action).
    Terminated,
}

/// The end of a run.
#[derive(Clone, Debug)]
pub struct Exit {
    /// The exit code as Kubernetes shows it: the guest's own, 1 for a trap,
    /// 137 for killed, deadline and out of memory, 143 for terminated.
    pub code: i32,
    /// Why it ended.
    pub reason: ExitReason,
    /// The Wasm backtrace of a trap.
    pub backtrace: Option<String>,
    /// Time spent running guest code, measured between epoch checkpoints
    /// (to within about one tick per slice; for an HTTP function, summed
    /// over its requests).
    pub cpu_time: Duration,
    /// Time from instantiation to the end.
    pub wall_time: Duration,
    /// The largest total linear memory the guest had (for an HTTP function,
    /// summed over the instances alive at once).
    pub peak_memory_bytes: u64,
    /// Where the compiled code came from.
    pub cache: CacheOutcome,
}

impl Exit {
    /// Whether the guest exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.reason == ExitReason::Exited && self.code == 0
    }
}

pub(crate) enum Failure {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

/// How a race between a guest and its stop signals ended.
pub(crate) enum Outcome<T> {
    Done(T),
    Killed,
    Terminated,
    Deadline,
}

impl Engine {
    /// Runs a guest to its end in `sandbox` (on the engine's guest runtime;
    /// call inside a tokio runtime). Dropping the future kills the guest. An
    /// HTTP function only ends when stopped, so start one with
    /// [`spawn`](Self::spawn).
    ///
    /// A short command may run inline, in this future's first poll (see
    /// [`EngineConfig::inline_slice`](crate::EngineConfig::inline_slice)).
    pub async fn run(&self, source: ModuleSource, sandbox: &Sandbox) -> Result<Exit, ShimError> {
        let running = self.spawn_inner(Arc::default(), source, sandbox, None, true);
        let mut kill = KillOnDrop(Some(running.kill_handle()));
        let exit = running.wait().await;
        kill.0 = None;
        exit
    }

    /// Starts a guest (call inside a tokio runtime) and returns at once.
    ///
    /// The module is loaded (compiled once per digest) on a task of the
    /// calling runtime, then:
    /// - a core module, or a component exporting `wasi:cli/run`, is a
    ///   command: it runs on the engine's command pools (normal OS priority
    ///   for its first tick, then low) until it exits;
    /// - a component exporting `wasi:http/incoming-handler` and no
    ///   `wasi:cli/run` is an HTTP function: it is served on the sandbox's
    ///   [`http_listen`](crate::SandboxBuilder::http_listen) address by the
    ///   calling runtime, one fresh instance per request, until stopped.
    ///   Without a listen address it ends with [`ShimError::NoHttpListen`].
    pub fn spawn(&self, source: ModuleSource, sandbox: &Sandbox) -> Running {
        self.spawn_inner(Arc::default(), source, sandbox, None, false)
    }

    /// As [`spawn`](Self::spawn), and calls `on_exit` once with the run's
    /// end, on the thread where the guest ended (for a command, its pool's
    /// thread, before its task hands the result on), so a runtime records
    /// an exit without another thread being woken for it.
    /// [`Running::wait`] still gives the same result.
    pub fn spawn_then(
        &self,
        source: ModuleSource,
        sandbox: &Sandbox,
        on_exit: impl FnOnce(&Result<Exit, ShimError>) + Send + 'static,
    ) -> Running {
        self.spawn_inner(
            Arc::default(),
            source,
            sandbox,
            Some(Arc::new(ExitHook::new(on_exit))),
            false,
        )
    }

    /// A guest ready to start, with `on_exit` to be called once with its
    /// end: its [`KillHandle`] is there before it runs, so a runtime can
    /// record the start first and then [`start`](Prepared::start) it
    /// without holding its own locks, since a short command may end (and
    /// `on_exit` run) inside `start`, on the calling thread.
    pub fn prepare_then(
        &self,
        source: ModuleSource,
        sandbox: &Sandbox,
        on_exit: impl FnOnce(&Result<Exit, ShimError>) + Send + 'static,
    ) -> Prepared {
        Prepared {
            engine: self.clone(),
            source,
            sandbox: sandbox.clone(),
            hook: Arc::new(ExitHook::new(on_exit)),
            control: Arc::default(),
        }
    }

    fn spawn_inner(
        &self,
        control: Arc<Control>,
        source: ModuleSource,
        sandbox: &Sandbox,
        hook: Option<Arc<ExitHook>>,
        inline: bool,
    ) -> Running {
        // A command already compiled in memory starts from here: inline
        // when `inline` and its runs have been short (it may end before
        // this returns), else on its pool, so the guest starts while the
        // caller goes on (a runtime records the start meanwhile); anything
        // else is loaded on a task first.
        let run: Pin<Box<dyn Future<Output = Result<Exit, ShimError>> + Send>> =
            match self.compiled_command(&source) {
                Some(loaded) => {
                    let ended = PhaseGuard(control.clone());
                    match command(
                        self.clone(),
                        loaded,
                        sandbox.clone(),
                        control.clone(),
                        hook.clone(),
                        inline,
                    ) {
                        Started::Ended(result) => {
                            let result = result.and_then(|r| r);
                            // A no-op unless the guest panicked before it.
                            if let Some(hook) = hook {
                                hook.fire(&result);
                            }
                            drop(ended);
                            return Running {
                                control,
                                task: Task::Ended(result),
                            };
                        }
                        Started::Pool(task) => Box::pin(async move {
                            let _ended = ended;
                            task.await?
                        }),
                    }
                }
                None => Box::pin(run_to_end(
                    self.clone(),
                    source,
                    sandbox.clone(),
                    control.clone(),
                    hook.clone(),
                )),
            };
        let task = tokio::spawn(async move {
            let result = run.await;
            // A no-op when the guest's own thread has fired it.
            if let Some(hook) = hook {
                hook.fire(&result);
            }
            result
        });
        Running {
            control,
            task: Task::Spawned(task),
        }
    }
}

/// A guest made by [`Engine::prepare_then`], not started yet.
pub struct Prepared {
    engine: Engine,
    source: ModuleSource,
    sandbox: Sandbox,
    hook: Arc<ExitHook>,
    control: Arc<Control>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

impl Prepared {
    /// The handle that will stop the guest; a kill or terminate made before
    /// [`start`](Self::start) ends it as soon as it starts.
    pub fn kill_handle(&self) -> KillHandle {
        KillHandle(self.control.clone())
    }

    /// Starts the guest (call inside a tokio runtime), as
    /// [`Engine::spawn_then`] does, except that a command whose runs have
    /// been short runs its first slice here (see
    /// [`EngineConfig::inline_slice`](crate::EngineConfig::inline_slice)):
    /// if it ends there, the exit callback has been called on this thread
    /// by the time this returns.
    pub fn start(self) -> Running {
        self.engine.spawn_inner(
            self.control,
            self.source,
            &self.sandbox,
            Some(self.hook),
            true,
        )
    }
}

/// A callback for a run's end, called at most once: where the guest ended,
/// or, if it never ran (a load error, a lost task), where that was seen.
struct ExitHook(Mutex<Option<ExitFn>>);

type ExitFn = Box<dyn FnOnce(&Result<Exit, ShimError>) + Send + 'static>;

impl ExitHook {
    fn new(f: impl FnOnce(&Result<Exit, ShimError>) + Send + 'static) -> Self {
        Self(Mutex::new(Some(Box::new(f))))
    }

    fn fire(&self, result: &Result<Exit, ShimError>) {
        let f = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(f) = f {
            f(result);
        }
    }
}

/// Kills the guest if `run`'s future is dropped before the end.
struct KillOnDrop(Option<KillHandle>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(k) = self.0.take() {
            k.kill();
        }
    }
}

async fn run_to_end(
    engine: Engine,
    source: ModuleSource,
    sandbox: Sandbox,
    control: Arc<Control>,
    hook: Option<Arc<ExitHook>>,
) -> Result<Exit, ShimError> {
    let _ended = PhaseGuard(control.clone());
    let loaded = engine.load(&source).await?;
    if let Compiled::Component(component) = &loaded.compiled
        && serve::is_http_function(&engine.inner.wasmtime, component)
    {
        let span = tracing::info_span!("http_function", digest = %loaded.digest);
        return serve::serve(engine, loaded, sandbox, control)
            .instrument(span)
            .await;
    }
    match command(engine, loaded, sandbox, control, hook, false) {
        Started::Ended(result) => result?,
        Started::Pool(task) => task.await?,
    }
}

/// Starts a loaded command at once: inline if `inline` allows and its
/// module's runs have been short, else on the engine's pools. The hook
/// fires on the thread where it ends.
fn command(
    engine: Engine,
    loaded: Loaded,
    sandbox: Sandbox,
    control: Arc<Control>,
    hook: Option<Arc<ExitHook>>,
    inline: bool,
) -> Started<Result<Exit, ShimError>> {
    control.set_phase(Phase::Command);
    let span = tracing::info_span!("command", digest = %loaded.digest);
    let hint = loaded.hint.clone();
    let pools = &engine.inner.pools;
    let guest = pools.timed(
        execute(engine.clone(), loaded, sandbox, control).instrument(span),
        &hint,
        |end| matches!(end, Ok(exit) if exit.success()),
    );
    pools.start(
        async move {
            let result = guest.await;
            if let Some(hook) = hook {
                hook.fire(&result);
            }
            result
        },
        &hint,
        inline,
    )
}

impl Engine {
    /// `source` loaded from the in-memory cache, if it is there (by its
    /// known digest) and is a command (a core module, or a component that
    /// is not an HTTP function).
    fn compiled_command(&self, source: &ModuleSource) -> Option<Loaded> {
        let digest = source.known_digest().ok()??;
        let loaded = self.memory_lookup(&digest)?;
        match &loaded.compiled {
            Compiled::Component(component)
                if serve::is_http_function(&self.inner.wasmtime, component) =>
            {
                // Loaded (and counted) by its task.
                None
            }
            _ => {
                self.count_memory_hit();
                Some(loaded)
            }
        }
    }
}

async fn execute(
    engine: Engine,
    loaded: Loaded,
    sandbox: Sandbox,
    control: Arc<Control>,
) -> Result<Exit, ShimError> {
    let inner = &engine.inner;
    let limiter = Limiter::new(
        sandbox.memory_limit,
        sandbox.max_instances,
        control.meters.clone(),
    );
    let started = Instant::now();
    let deadline = sandbox.deadline.map(|d| started + d);
    let guard = Guard {
        control: control.clone(),
        deadline,
        cpu_limit: sandbox.cpu_limit,
        tick: inner.config.epoch_tick,
        stop_on_terminate: true,
    };

    let (outcome, cpu, limiter) = match &loaded.compiled {
        Compiled::Core(module) => {
            let host = P1Host {
                wasi: wasi::builder(&sandbox)?.build_p1(),
                limiter,
            };
            let mut store = Store::new(&inner.wasmtime, host);
            store.limiter(|h| &mut h.limiter);
            let cpu = guard.arm(&mut store);
            let outcome = race(&control, deadline, true, async {
                let instance = inner
                    .p1_linker
                    .instantiate_async(&mut store, module)
                    .await
                    .map_err(Failure::Instantiate)?;
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(Failure::Instantiate)?;
                start
                    .call_async(&mut store, ())
                    .await
                    .map_err(Failure::Run)?;
                Ok(0)
            })
            .await;
            (outcome, cpu, store.into_data().limiter)
        }
        Compiled::Component(component) => {
            let host = P2Host::new(&sandbox, limiter)?;
            let mut store = Store::new(&inner.wasmtime, host);
            store.limiter(|h| &mut h.limiter);
            let cpu = guard.arm(&mut store);
            let outcome = race(&control, deadline, true, async {
                let command = Command::instantiate_async(&mut store, component, &inner.p2_linker)
                    .await
                    .map_err(Failure::Instantiate)?;
                match command.wasi_cli_run().call_run(&mut store).await {
                    Ok(Ok(())) => Ok(0),
                    Ok(Err(())) => Ok(1),
                    Err(e) => Err(Failure::Run(e)),
                }
            })
            .await;
            (outcome, cpu, store.into_data().limiter)
        }
    };

    let ended = Instant::now();
    let exit = |code, reason, backtrace| Exit {
        code,
        reason,
        backtrace,
        cpu_time: cpu.get(),
        wall_time: ended - started,
        peak_memory_bytes: limiter.peak as u64,
        cache: loaded.cache,
    };
    let exit = match outcome {
        Outcome::Killed => exit(KILLED_EXIT_CODE, ExitReason::Killed, None),
        Outcome::Terminated => exit(TERMINATED_EXIT_CODE, ExitReason::Terminated, None),
        Outcome::Deadline => exit(KILLED_EXIT_CODE, ExitReason::Deadline, None),
        Outcome::Done(Ok(code)) => exit(code, ExitReason::Exited, None),
        Outcome::Done(Err(Failure::Instantiate(e))) => {
            if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
                exit(
                    KILLED_EXIT_CODE,
                    ExitReason::OutOfMemory {
                        message: m.to_string(),
                    },
                    None,
                )
            } else {
                return Err(ShimError::Instantiation { message: chain(&e) });
            }
        }
        Outcome::Done(Err(Failure::Run(e))) => {
            let (code, reason) = classify(&e, limiter.exceeded);
            let backtrace = match reason {
                ExitReason::Exited => None,
                _ => e.downcast_ref::<WasmBacktrace>().map(|b| b.to_string()),
            };
            exit(code, reason, backtrace)
        }
    };
    tracing::debug!(
        digest = %loaded.digest,
        code = exit.code,
        reason = ?exit.reason,
        cpu_ms = exit.cpu_time.as_millis() as u64,
        peak_memory = exit.peak_memory_bytes,
        "guest ended"
    );
    Ok(exit)
}

/// Maps a run's error to an exit code and reason.
pub(crate) fn classify(e: &wasmtime::Error, memory_exceeded: bool) -> (i32, ExitReason) {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return (exit.0, ExitReason::Exited);
    }
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return match stop {
            Stop::Killed => (KILLED_EXIT_CODE, ExitReason::Killed),
            Stop::Terminated => (TERMINATED_EXIT_CODE, ExitReason::Terminated),
            Stop::Deadline => (KILLED_EXIT_CODE, ExitReason::Deadline),
        };
    }
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return (
            KILLED_EXIT_CODE,
            ExitReason::OutOfMemory {
                message: m.to_string(),
            },
        );
    }
    if memory_exceeded {
        return (
            KILLED_EXIT_CODE,
            ExitReason::OutOfMemory {
                message: format!("memory limit exceeded, then {}", chain(e)),
            },
        );
    }
    let message = match e.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => format!("stack overflow: {}", Trap::StackOverflow),
        Some(Trap::MemoryOutOfBounds) if recursing(e) => format!(
            "stack overflow (the shadow stack in linear memory ran out): {}",
            Trap::MemoryOutOfBounds
        ),
        Some(t) => t.to_string(),
        None => chain(e),
    };
    (TRAP_EXIT_CODE, ExitReason::Trapped { message })
}

/// Whether a trap happened deep in a recursion: the innermost frames are all
/// one function. Rust guests keep their shadow stack at the bottom of linear
/// memory, so overflowing it is an out-of-bounds access, not a native stack
/// overflow.
fn recursing(e: &wasmtime::Error) -> bool {
    const DEPTH: usize = 16;
    let Some(bt) = e.downcast_ref::<WasmBacktrace>() else {
        return false;
    };
    let frames = bt.frames();
    frames.len() >= DEPTH
        && frames[..DEPTH]
            .iter()
            .all(|f| f.func_index() == frames[0].func_index())
}

/// Races the guest against its stop signals and deadline (which also catch
/// a guest blocked in a host call, where the epoch callback cannot run). A
/// terminate stops it only if `stop_on_terminate`.
pub(crate) async fn race<T>(
    control: &Control,
    deadline: Option<Instant>,
    stop_on_terminate: bool,
    guest: impl Future<Output = T>,
) -> Outcome<T> {
    let deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    let stop = async {
        if stop_on_terminate {
            match control.stopping().await {
                Signal::Kill => Outcome::Killed,
                _ => Outcome::Terminated,
            }
        } else {
            control.killed().await;
            Outcome::Killed
        }
    };
    tokio::select! {
        biased;
        o = stop => o,
        () = deadline => Outcome::Deadline,
        r = guest => Outcome::Done(r),
    }
}
