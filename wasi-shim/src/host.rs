//! The data of a guest's store ([`P1Host`], [`P2Host`]) and its per-store
//! instrumentation ([`Guard`]): the epoch callback that stops a killed guest,
//! ends one past its deadline, meters CPU time, and yields to the executor
//! at every tick, after a pause that holds the guest to its CPU limit.
//!
//! CPU time is the time between epoch checkpoints (a slice is the time since
//! the guest last resumed, at most two ticks, so a guest blocked in a host
//! call is not charged for the wait beyond that): accurate to about one tick
//! per slice, which is what a CPU limit and `kubectl top` need.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::control::Control;
use crate::error::ShimError;
use crate::limits::Limiter;
use crate::outgoing::Outgoing;
use crate::sandbox::Sandbox;
use crate::usage::Meters;
use crate::wasi;

/// A p1 module's store data.
pub(crate) struct P1Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
}

/// A p2 component's store data: WASI, outgoing HTTP through the sandbox's
/// policy, and the limiter.
pub(crate) struct P2Host {
    ctx: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: Outgoing,
    pub(crate) limiter: Limiter,
}

impl P2Host {
    pub(crate) fn new(sandbox: &Sandbox, limiter: Limiter) -> Result<Self, ShimError> {
        Ok(Self {
            ctx: wasi::builder(sandbox)?.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: Outgoing::new(sandbox),
            limiter,
        })
    }
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for P2Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Why the epoch callback stopped a guest.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Stop {
    #[error("killed")]
    Killed,
    #[error("terminated")]
    Terminated,
    #[error("deadline exceeded")]
    Deadline,
}

/// One store's CPU meter.
#[derive(Debug)]
struct Meter {
    /// When the guest last resumed, while it runs.
    running_since: Option<Instant>,
    /// The longest slice charged at once.
    max_slice: Duration,
    /// Guest time since the last epoch yield (what a CPU limit throttles).
    since_yield: Duration,
    /// Guest time in this store.
    total: Duration,
    meters: Arc<Meters>,
}

impl Meter {
    /// Charges the time since the guest resumed.
    fn leave(&mut self, now: Instant) {
        if let Some(since) = self.running_since.take() {
            let d = now.saturating_duration_since(since).min(self.max_slice);
            self.since_yield += d;
            self.total += d;
            self.meters.add_cpu(d);
        }
    }
}

/// The CPU time a store's guest has used, readable after the run.
#[derive(Clone, Debug)]
pub(crate) struct CpuTime(Arc<Mutex<Meter>>);

impl CpuTime {
    pub(crate) fn get(&self) -> Duration {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.leave(Instant::now());
        m.total
    }
}

/// Arms a store: CPU metering, kill, deadline, CPU limit.
pub(crate) struct Guard {
    pub(crate) control: Arc<Control>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cpu_limit: Option<f64>,
    /// The engine's epoch tick.
    pub(crate) tick: Duration,
    /// Whether a terminate stops this store (commands) or only a kill does
    /// (an HTTP function's instances finish their request while draining).
    pub(crate) stop_on_terminate: bool,
}

impl Guard {
    pub(crate) fn arm<T: 'static>(self, store: &mut Store<T>) -> CpuTime {
        let Guard {
            control,
            deadline,
            cpu_limit,
            tick,
            stop_on_terminate,
        } = self;
        let meter = Arc::new(Mutex::new(Meter {
            running_since: Some(Instant::now()),
            max_slice: tick * 2,
            since_yield: Duration::ZERO,
            total: Duration::ZERO,
            meters: control.meters.clone(),
        }));
        let throttle = cpu_limit.filter(|&c| c > 0.0 && c < 1.0);
        let epoch_meter = meter.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if control.is_killed() {
                return Err(wasmtime::Error::new(Stop::Killed));
            }
            if stop_on_terminate && control.is_stopping() {
                return Err(wasmtime::Error::new(Stop::Terminated));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(wasmtime::Error::new(Stop::Deadline));
            }
            let pause = {
                let mut m = epoch_meter.lock().unwrap_or_else(|e| e.into_inner());
                m.leave(now);
                let ran = std::mem::take(&mut m.since_yield);
                throttle.map(|cores| ran.mul_f64((1.0 - cores) / cores))
            };
            let resume = epoch_meter.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    match pause {
                        Some(p) if !p.is_zero() => tokio::time::sleep(p).await,
                        _ => tokio::task::yield_now().await,
                    }
                    resume
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .running_since = Some(Instant::now());
                }),
            ))
        });
        CpuTime(meter)
    }
}
