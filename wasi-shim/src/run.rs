//! Running a guest: a p1 module's `_start` or a p2 command's `wasi:cli/run`,
//! in its own store, raced against its kill handle and deadline. Every epoch
//! tick the guest yields to the executor (after a pause that holds it to its
//! CPU limit), so a guest that never makes a call can still be stopped.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::engine::{CacheOutcome, Compiled, Engine, ModuleSource};
use crate::error::{ShimError, chain};
use crate::limits::{Limiter, MemoryLimitExceeded};
use crate::sandbox::Sandbox;
use crate::wasi;

/// The exit code of a guest killed, stopped at its deadline or out of memory,
/// as for a container ended by SIGKILL.
pub const KILLED_EXIT_CODE: i32 = 137;
/// The exit code of a guest that trapped.
pub const TRAP_EXIT_CODE: i32 = 1;

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
    /// Its kill handle was used.
    Killed,
}

/// The end of a run.
#[derive(Clone, Debug)]
pub struct Exit {
    /// The exit code as Kubernetes shows it: the guest's own, 1 for a trap,
    /// 137 for killed, deadline and out of memory.
    pub code: i32,
    /// Why it ended.
    pub reason: ExitReason,
    /// The Wasm backtrace of a trap.
    pub backtrace: Option<String>,
    /// Time spent running guest code (measured between epoch checkpoints, so
    /// to within about one epoch tick per slice).
    pub cpu_time: Duration,
    /// Time from instantiation to the end.
    pub wall_time: Duration,
    /// The largest total linear memory the guest had.
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

/// Stops a running guest, within about one epoch tick even if it never
/// makes a call.
#[derive(Clone, Debug)]
pub struct KillHandle(Arc<Control>);

impl KillHandle {
    /// Asks the guest to stop; its exit reason becomes [`ExitReason::Killed`].
    pub fn kill(&self) {
        self.0.killed.store(true, Ordering::SeqCst);
        self.0.notify.notify_one();
    }
}

/// A guest running on a tokio task. Dropping it detaches the guest (it runs
/// on); use [`KillHandle::kill`] to stop it.
#[derive(Debug)]
pub struct Running {
    kill: KillHandle,
    task: tokio::task::JoinHandle<Result<Exit, ShimError>>,
}

impl Running {
    /// A handle that stops the guest.
    pub fn kill_handle(&self) -> KillHandle {
        self.kill.clone()
    }

    /// Waits for the end of the run.
    pub async fn wait(self) -> Result<Exit, ShimError> {
        self.task.await.map_err(|e| ShimError::Task {
            message: e.to_string(),
        })?
    }
}

#[derive(Debug, Default)]
struct Control {
    killed: AtomicBool,
    notify: Notify,
}

impl Control {
    async fn killed(&self) {
        while !self.killed.load(Ordering::SeqCst) {
            self.notify.notified().await;
        }
    }
}

/// Why the epoch callback stopped a guest.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("killed")]
    Killed,
    #[error("deadline exceeded")]
    Deadline,
}

pub(crate) struct P1Host {
    pub(crate) wasi: WasiP1Ctx,
    limiter: Limiter,
}

pub(crate) struct P2Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// CPU accounting shared with the epoch callback.
#[derive(Debug)]
struct Meter {
    cpu: Duration,
    last_resume: Instant,
}

enum Failure {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

enum Outcome {
    Done(Result<i32, Failure>),
    Killed,
    Deadline,
}

impl Engine {
    /// Runs a guest to its end in `sandbox`.
    pub async fn run(&self, source: ModuleSource, sandbox: &Sandbox) -> Result<Exit, ShimError> {
        execute(self.clone(), source, sandbox.clone(), Arc::default()).await
    }

    /// Starts a guest on a tokio task (call inside a tokio runtime).
    pub fn spawn(&self, source: ModuleSource, sandbox: &Sandbox) -> Running {
        let control = Arc::new(Control::default());
        let task = tokio::spawn(execute(
            self.clone(),
            source,
            sandbox.clone(),
            control.clone(),
        ));
        Running {
            kill: KillHandle(control),
            task,
        }
    }
}

async fn execute(
    engine: Engine,
    source: ModuleSource,
    sandbox: Sandbox,
    control: Arc<Control>,
) -> Result<Exit, ShimError> {
    let loaded = engine.load(&source).await?;
    let inner = &engine.inner;
    let mut wasi = wasi::builder(&sandbox)?;
    let limiter = Limiter::new(sandbox.memory_limit, sandbox.max_instances);
    let started = Instant::now();
    let deadline = sandbox.deadline.map(|d| started + d);
    let meter = Arc::new(Mutex::new(Meter {
        cpu: Duration::ZERO,
        last_resume: started,
    }));
    let arm = Arming {
        control: control.clone(),
        deadline,
        cpu_limit: sandbox.cpu_limit,
        meter: meter.clone(),
        tick: inner.config.epoch_tick,
    };

    let (outcome, limiter) = match loaded.compiled {
        Compiled::Core(module) => {
            let host = P1Host {
                wasi: wasi.build_p1(),
                limiter,
            };
            let mut store = Store::new(&inner.wasmtime, host);
            store.limiter(|h| &mut h.limiter);
            arm.arm(&mut store);
            let outcome = race(&control, deadline, async {
                let instance = inner
                    .p1_linker
                    .instantiate_async(&mut store, &module)
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
            (outcome, store.into_data().limiter)
        }
        Compiled::Component(component) => {
            let host = P2Host {
                ctx: wasi.build(),
                table: ResourceTable::new(),
                limiter,
            };
            let mut store = Store::new(&inner.wasmtime, host);
            store.limiter(|h| &mut h.limiter);
            arm.arm(&mut store);
            let outcome = race(&control, deadline, async {
                let command = Command::instantiate_async(&mut store, &component, &inner.p2_linker)
                    .await
                    .map_err(Failure::Instantiate)?;
                match command.wasi_cli_run().call_run(&mut store).await {
                    Ok(Ok(())) => Ok(0),
                    Ok(Err(())) => Ok(1),
                    Err(e) => Err(Failure::Run(e)),
                }
            })
            .await;
            (outcome, store.into_data().limiter)
        }
    };

    let ended = Instant::now();
    let cpu_time = {
        let m = meter.lock().unwrap_or_else(|e| e.into_inner());
        m.cpu
            + ended
                .saturating_duration_since(m.last_resume)
                .min(inner.config.epoch_tick * 2)
    };
    let exit = |code, reason, backtrace| Exit {
        code,
        reason,
        backtrace,
        cpu_time,
        wall_time: ended - started,
        peak_memory_bytes: limiter.peak as u64,
        cache: loaded.cache,
    };
    let exit = match outcome {
        Outcome::Killed => exit(KILLED_EXIT_CODE, ExitReason::Killed, None),
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
fn classify(e: &wasmtime::Error, memory_exceeded: bool) -> (i32, ExitReason) {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return (exit.0, ExitReason::Exited);
    }
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return match stop {
            Stop::Killed => (KILLED_EXIT_CODE, ExitReason::Killed),
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

/// Races the guest against its kill handle and deadline (which also catch a
/// guest blocked in a host call, where the epoch callback cannot run).
async fn race(
    control: &Control,
    deadline: Option<Instant>,
    guest: impl Future<Output = Result<i32, Failure>>,
) -> Outcome {
    let deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = control.killed() => Outcome::Killed,
        () = deadline => Outcome::Deadline,
        r = guest => Outcome::Done(r),
    }
}

/// The epoch callback's state.
struct Arming {
    control: Arc<Control>,
    deadline: Option<Instant>,
    cpu_limit: Option<f64>,
    meter: Arc<Mutex<Meter>>,
    tick: Duration,
}

impl Arming {
    /// At every epoch tick: stop if killed or past the deadline; count the
    /// slice just run; yield, pausing long enough to keep the guest within
    /// its CPU limit.
    fn arm<T: 'static>(self, store: &mut Store<T>) {
        let Arming {
            control,
            deadline,
            cpu_limit,
            meter,
            tick,
        } = self;
        let throttle = cpu_limit.filter(|&c| c > 0.0 && c < 1.0);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if control.killed.load(Ordering::SeqCst) {
                return Err(wasmtime::Error::new(Stop::Killed));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(wasmtime::Error::new(Stop::Deadline));
            }
            let mut m = meter.lock().unwrap_or_else(|e| e.into_inner());
            let slice = now.saturating_duration_since(m.last_resume).min(tick * 2);
            m.cpu += slice;
            match throttle {
                Some(cores) => {
                    let pause = slice.mul_f64((1.0 - cores) / cores);
                    m.last_resume = now + pause;
                    Ok(UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(tokio::time::sleep(pause)),
                    ))
                }
                None => {
                    m.last_resume = now;
                    Ok(UpdateDeadline::Yield(1))
                }
            }
        });
    }
}
