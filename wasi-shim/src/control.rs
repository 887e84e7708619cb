//! How a started guest is watched and stopped: [`Running`] (its task, its
//! bound HTTP address, its live [`Usage`]) and [`KillHandle`] (kill now, or
//! terminate with a grace period). Both share one `Control`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::ShimError;
use crate::run::Exit;
use crate::usage::{Meters, Usage};

/// What the guest's owner asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Keep running.
    Run,
    /// Stop gracefully; kill what is left at the deadline.
    Terminate(Instant),
    /// Stop now.
    Kill,
}

/// How far the start got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Loading and compiling.
    Starting,
    /// Running as a command.
    Command,
    /// Serving as an HTTP function on this address.
    Http(SocketAddr),
    /// The start failed or the run ended.
    Ended,
}

const RUN: u8 = 0;
const TERMINATE: u8 = 1;
const KILL: u8 = 2;

/// Shared by a guest's task, its stores' epoch callbacks and its handles.
#[derive(Debug)]
pub(crate) struct Control {
    /// The signal, readable without a lock from the epoch callback.
    state: AtomicU8,
    signal: watch::Sender<Signal>,
    phase: watch::Sender<Phase>,
    pub(crate) meters: Arc<Meters>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(RUN),
            signal: watch::Sender::new(Signal::Run),
            phase: watch::Sender::new(Phase::Starting),
            meters: Arc::default(),
        }
    }
}

impl Control {
    pub(crate) fn kill(&self) {
        self.state.store(KILL, Ordering::SeqCst);
        self.signal.send_replace(Signal::Kill);
    }

    fn terminate(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.signal.send_if_modified(|s| match *s {
            Signal::Run => {
                *s = Signal::Terminate(deadline);
                true
            }
            Signal::Terminate(d) if deadline < d => {
                *s = Signal::Terminate(deadline);
                true
            }
            _ => false,
        });
        let _ = self
            .state
            .compare_exchange(RUN, TERMINATE, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether a kill was asked for (the epoch callback's fast path).
    pub(crate) fn is_killed(&self) -> bool {
        self.state.load(Ordering::SeqCst) == KILL
    }

    /// Whether a terminate or a kill was asked for.
    pub(crate) fn is_stopping(&self) -> bool {
        self.state.load(Ordering::SeqCst) != RUN
    }

    /// Resolves when a kill is asked for.
    pub(crate) async fn killed(&self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|s| *s == Signal::Kill).await;
    }

    /// Resolves with the first stop signal (terminate or kill).
    pub(crate) async fn stopping(&self) -> Signal {
        let mut rx = self.signal.subscribe();
        match rx.wait_for(|s| *s != Signal::Run).await {
            Ok(s) => *s,
            // The sender lives in `self`: never closed while borrowed.
            Err(_) => Signal::Kill,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }
}

/// Marks the start as ended when the guest's task ends, however it ends.
pub(crate) struct PhaseGuard(pub(crate) Arc<Control>);

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.0.set_phase(Phase::Ended);
    }
}

/// Stops a running guest, within about one epoch tick even if it never
/// makes a call. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KillHandle(pub(crate) Arc<Control>);

impl KillHandle {
    /// Stops the guest now; its exit reason becomes
    /// [`ExitReason::Killed`](crate::ExitReason::Killed) (code 137).
    pub fn kill(&self) {
        self.0.kill();
    }

    /// Stops the guest gracefully, as a container runtime's StopContainer
    /// with a timeout.
    ///
    /// - An HTTP function drains: it stops accepting connections, closes idle
    ///   keep-alive connections, lets the requests in flight finish, and
    ///   exits 0 ([`ExitReason::Exited`](crate::ExitReason::Exited)); what is
    ///   still running when `grace` runs out is killed and the exit is 137,
    ///   [`ExitReason::Killed`](crate::ExitReason::Killed).
    /// - A command is stopped at once: WASI has no signals, so it cannot
    ///   catch one, and it ends as a process with the default SIGTERM action
    ///   does: code 143, [`ExitReason::Terminated`](crate::ExitReason::Terminated).
    ///
    /// A second call can shorten the grace period, never lengthen it; a
    /// [`kill`](Self::kill) ends it.
    pub fn terminate(&self, grace: Duration) {
        self.0.terminate(grace);
    }

    /// The guest's usage so far (the same figures as [`Running::usage`]).
    pub fn usage(&self) -> Usage {
        self.0.meters.snapshot()
    }
}

/// A guest running on a tokio task, or one that already ended on the
/// thread that started it. Dropping it detaches the guest (it runs on); use
/// [`KillHandle::kill`] or [`KillHandle::terminate`] to stop it.
#[derive(Debug)]
pub struct Running {
    pub(crate) control: Arc<Control>,
    pub(crate) task: Task,
}

/// Where a run's end comes from.
#[derive(Debug)]
pub(crate) enum Task {
    /// The task driving it.
    Spawned(tokio::task::JoinHandle<Result<Exit, ShimError>>),
    /// It ended before [`Running`] was made (a command run inline).
    Ended(Result<Exit, ShimError>),
}

impl Running {
    /// A handle that stops the guest and reads its usage.
    pub fn kill_handle(&self) -> KillHandle {
        KillHandle(self.control.clone())
    }

    /// Where an HTTP function is being served, once it is: waits until the
    /// guest is loaded and, for an HTTP function, its listener is bound (so a
    /// sandbox's port 0 becomes the real port). `None` for a command, or when
    /// the start failed ([`wait`](Self::wait) then says why).
    pub async fn http_addr(&self) -> Option<SocketAddr> {
        let mut rx = self.control.phase.subscribe();
        let phase = match rx.wait_for(|p| *p != Phase::Starting).await {
            Ok(p) => *p,
            Err(_) => Phase::Ended,
        };
        match phase {
            Phase::Http(addr) => Some(addr),
            _ => None,
        }
    }

    /// The guest's usage so far: CPU time, memory now and at peak, and for an
    /// HTTP function the requests served and in flight.
    pub fn usage(&self) -> Usage {
        self.control.meters.snapshot()
    }

    /// Waits for the end of the run.
    pub async fn wait(self) -> Result<Exit, ShimError> {
        match self.task {
            Task::Spawned(task) => task.await.map_err(|e| ShimError::Task {
                message: e.to_string(),
            })?,
            Task::Ended(result) => result,
        }
    }
}
