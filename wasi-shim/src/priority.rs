//! Where commands run, and at what OS priority: [`Pools`], two tokio
//! runtimes of `guest_threads` workers each. A command starts on the *start*
//! pool, at the node's normal priority. Once it has been polled there for
//! its budget ([`EngineConfig::normal_priority_budget`], one epoch tick by
//! default), at the next point where it is pending (its epoch yield, at the
//! latest a tick later) the task driving it hands the guest's future to the
//! *low* pool, whose threads run at `guest_nice`, where it runs to its end.
//! A short command (most execs, a job of a few milliseconds) so ends without
//! waiting behind busy normal-priority threads, while a spinning or flooding
//! one is at the low priority after its first tick, and HTTP functions,
//! served on the caller's runtime at normal priority, keep the CPU.
//!
//! All commands together get normal priority for at most
//! [`EngineConfig::normal_priority_share`] of a core: a token bucket
//! ([`Allowance`], holding at most two budgets) is charged with every poll
//! on the start pool; a command starting while it is empty starts on the
//! low pool, and one running on the start pool moves at its next pending
//! point. Without it a crash loop of short commands, each ending within its
//! budget, would be a normal-priority load as heavy as a spinning guest.
//!
//! Why the task moves instead of its thread being reniced: a tokio worker
//! polls whatever task it takes next (its own queue, its LIFO slot, tasks
//! stolen from the other workers), so a nice value set on a worker for one
//! guest would also hold for the next tasks it polls (short commands
//! lowered, spinners raised) unless it were set again around every poll; and
//! setting it back up (a lower nice value) needs `CAP_SYS_NICE` or an
//! `RLIMIT_NICE` allowance that an unprivileged node does not have. So every
//! thread keeps one priority for its life, and a command's priority follows
//! it by moving it once, in one direction. The future moves whole (boxed and
//! `Send`, as tokio's own work stealing moves it between threads); a waker
//! it left registered wakes the old task, which is gone, and the low pool's
//! first poll registers its own; timers and sockets it created on the start
//! pool stay driven by that pool's drivers, and both pools live as long as
//! the engine.
//!
//! At most `guest_threads` (cores − 1) workers run commands at normal
//! priority, so a core is left to HTTP serving even while commands start.
//!
//! A command whose module has run cleanly within
//! [`EngineConfig::inline_slice`] in a first poll, and never taken longer
//! since ([`RunHint`]), may take that first poll on the thread that starts
//! it ([`Pools::start`]), at that thread's priority and charged to the
//! allowance like any first slice: a short command (a probe's exec, a
//! job's step, `true`) then starts, runs and ends with no thread woken for
//! it. If it is still pending after that poll, the rest goes to the start
//! pool as above. A guest yields at the next epoch tick at the latest, so
//! an inline start blocks its caller for at most about one tick; and once a
//! first poll took longer than the limit, its module never runs inline
//! again.
//!
//! [`EngineConfig::normal_priority_budget`]: crate::EngineConfig::normal_priority_budget
//! [`EngineConfig::normal_priority_share`]: crate::EngineConfig::normal_priority_share
//! [`EngineConfig::inline_slice`]: crate::EngineConfig::inline_slice

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::task::{JoinError, JoinHandle};

use crate::error::ShimError;

/// The two command pools of an engine.
pub(crate) struct Pools {
    start: Handle,
    low: Handle,
    budget: Duration,
    allowance: Arc<Allowance>,
    /// The longest first poll after which a module counts as short
    /// ([`RunHint`]); zero never runs a command inline.
    inline: Duration,
    /// Commands whose first poll ran inline, and those that ended in it.
    inline_counts: [AtomicU64; 2],
    /// Owned here only to be shut down without blocking when the engine goes.
    runtimes: Vec<Runtime>,
}

impl Drop for Pools {
    fn drop(&mut self) {
        for rt in self.runtimes.drain(..) {
            // The last engine may be dropped inside an async context, where
            // a blocking shutdown would panic.
            rt.shutdown_background();
        }
    }
}

impl Pools {
    /// Starts both pools: `threads` workers each, the low pool's at `nice`.
    /// A command runs on the start pool for at most `budget`, all of them
    /// together for at most `share` of a core; a zero budget or share runs
    /// every command on the low pool from its start. A module that ended
    /// cleanly within `inline` of a first poll starts inline
    /// ([`start`](Self::start)).
    pub(crate) fn new(
        threads: usize,
        nice: i32,
        budget: Duration,
        share: f64,
        inline: Duration,
    ) -> Result<Self, ShimError> {
        let build = |name: &str, nice: Option<i32>| {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads.max(1))
                .thread_name(name)
                .enable_all();
            if let Some(nice) = nice {
                b.on_thread_start(move || lower_this_thread(nice));
            }
            b.build().map_err(|e| ShimError::Engine {
                message: format!("cannot start the {name} runtime: {e}"),
            })
        };
        let budget = if share > 0.0 { budget } else { Duration::ZERO };
        let low = build("wasi-shim-low", Some(nice))?;
        let start = if budget.is_zero() {
            None
        } else {
            Some(build("wasi-shim-start", None)?)
        };
        Ok(Self {
            start: start.as_ref().unwrap_or(&low).handle().clone(),
            low: low.handle().clone(),
            budget,
            allowance: Arc::new(Allowance::new(share, budget * 2)),
            inline,
            inline_counts: Default::default(),
            runtimes: start.into_iter().chain([low]).collect(),
        })
    }

    /// `guest`, teaching `hint` how its first poll went (before whatever
    /// awaits the guest sees it end, so that a run started after this one
    /// ended is started knowing it): how long it took, and whether the run
    /// ended in it as `clean` says. Nothing is learnt when inline starts
    /// are off.
    pub(crate) fn timed<F: Future>(
        &self,
        guest: F,
        hint: &Arc<RunHint>,
        clean: fn(&F::Output) -> bool,
    ) -> Timed<F> {
        Timed {
            guest: Box::pin(guest),
            learn: (!self.inline.is_zero()).then(|| (hint.clone(), self.inline)),
            clean,
        }
    }

    /// Starts a command as [`spawn`](Self::spawn) does. When `inline` is
    /// allowed and `hint` says the module's runs are short (and the
    /// allowance is not spent), its first poll happens here, on the calling
    /// thread, inside the start pool's runtime context (timers and sockets
    /// the guest makes belong to that pool): a command that ends in it is
    /// [`Started::Ended`], and one still pending goes on on the start pool.
    pub(crate) fn start<F>(&self, guest: F, hint: &RunHint, inline: bool) -> Started<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if !(inline && hint.is_short()) || self.lowered_from_start() {
            return Started::Pool(self.schedule(guest));
        }
        self.inline_counts[0].fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_slice(guest);
        let polled = {
            let _pool = self.start.enter();
            // A panic is the task error it would be on a pool.
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                Pin::new(&mut first).poll(&mut Context::from_waker(Waker::noop()))
            }))
        };
        match polled {
            Ok(Poll::Ready(Slice::Ended(out))) => {
                self.inline_counts[1].fetch_add(1, Ordering::Relaxed);
                Started::Ended(Ok(out))
            }
            Ok(Poll::Ready(Slice::Lowered(guest))) => Started::Pool(self.lowered(guest)),
            Ok(Poll::Pending) => Started::Pool(self.go_on(first)),
            Err(panic) => Started::Ended(Err(ShimError::Task {
                message: format!("the command panicked: {}", panic_message(&*panic)),
            })),
        }
    }

    /// Starts a command's future on the start pool (on the low pool when
    /// the allowance is spent), to move to the low pool once past its
    /// budget. The returned future awaits its output.
    #[cfg(test)]
    pub(crate) fn spawn<F>(&self, guest: F) -> PoolTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.schedule(guest)
    }

    fn schedule<F>(&self, guest: F) -> PoolTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.lowered_from_start() {
            return self.lowered(guest);
        }
        let first = self.first_slice(guest);
        self.go_on(first)
    }

    /// Commands started inline, and those of them that ended inline.
    pub(crate) fn inline_counts(&self) -> (u64, u64) {
        let [started, ended] = &self.inline_counts;
        (
            started.load(Ordering::Relaxed),
            ended.load(Ordering::Relaxed),
        )
    }

    /// Runs a command on the low pool to its end.
    fn lowered<F>(&self, guest: F) -> PoolTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        PoolTask(self.low.spawn(async move { Ok(guest.await) }))
    }

    /// Whether a command starts on the low pool: no budget, or the
    /// allowance spent.
    fn lowered_from_start(&self) -> bool {
        self.budget.is_zero() || !self.allowance.available()
    }

    fn first_slice<F: Future>(&self, guest: F) -> FirstSlice<F> {
        FirstSlice {
            guest: Some(Box::pin(guest)),
            budget: self.budget,
            used: Duration::ZERO,
            allowance: self.allowance.clone(),
        }
    }

    /// Polls `first` on the start pool from now on, then on the low pool
    /// once it is lowered.
    fn go_on<F>(&self, first: FirstSlice<F>) -> PoolTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let low = self.low.clone();
        PoolTask(self.start.spawn(async move {
            match first.await {
                Slice::Ended(out) => Ok(out),
                Slice::Lowered(guest) => low.spawn(guest).await,
            }
        }))
    }
}

/// How [`Pools::start`] left a command.
pub(crate) enum Started<T> {
    /// It ended in its first poll, on the calling thread (or panicked
    /// there: a task error).
    Ended(Result<T, ShimError>),
    /// It runs on the pools.
    Pool(PoolTask<T>),
}

/// A command on the pools: awaits its output (or why its task failed).
pub(crate) struct PoolTask<T>(JoinHandle<Result<T, JoinError>>);

impl<T> Future for PoolTask<T> {
    type Output = Result<T, ShimError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) | Err(e) => Err(task_error(&e)),
        })
    }
}

/// How a module's runs went in their first poll, whose length is how long
/// an inline start blocks its caller (a poll slowed by CPU contention only
/// makes the module look longer, which is the safe side): short once a run
/// ended cleanly (exit 0) in a first poll of at most the inline limit; long,
/// for good, once a short module's first poll took more. A failing run
/// teaches nothing, so a crash loop (restarted under back-off anyway) never
/// takes its caller's threads; a server pending on its socket never becomes
/// short either. A first poll longer than the limit leaves an unknown module
/// unknown (a module's first run also pays for setting up its memory
/// image), so a module that is always slow never runs inline. Shared by
/// every run of the module (kept with its compiled code).
#[derive(Debug, Default)]
pub(crate) struct RunHint(AtomicU8);

const UNKNOWN: u8 = 0;
const SHORT: u8 = 1;
const LONG: u8 = 2;

impl RunHint {
    pub(crate) fn is_short(&self) -> bool {
        self.0.load(Ordering::Relaxed) == SHORT
    }

    fn learn(&self, took: Duration, ended_clean: bool, limit: Duration) {
        let (from, to) = if took > limit {
            (SHORT, LONG)
        } else if ended_clean {
            (UNKNOWN, SHORT)
        } else {
            return;
        };
        // Never back from long.
        let _ = self
            .0
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed);
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

fn task_error(e: &JoinError) -> ShimError {
    ShimError::Task {
        message: e.to_string(),
    }
}

/// The normal-priority time left to commands: a token bucket refilled at
/// `share` seconds per second, holding at most `capacity`, and charged with
/// every poll on the start pool (it may go into debt, which later commands
/// wait out on the low pool).
#[derive(Debug)]
struct Allowance {
    share: f64,
    capacity: Duration,
    /// Tokens in nanoseconds (negative: debt), as of the instant.
    state: Mutex<(i64, Instant)>,
}

impl Allowance {
    fn new(share: f64, capacity: Duration) -> Self {
        Self {
            share,
            capacity,
            state: Mutex::new((nanos(capacity), Instant::now())),
        }
    }

    /// Refills, then takes `used` (zero to only look); the tokens left.
    fn take(&self, used: Duration) -> i64 {
        self.take_at(used, Instant::now())
    }

    fn take_at(&self, used: Duration, now: Instant) -> i64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let refill = nanos(now.saturating_duration_since(state.1).mul_f64(self.share));
        state.0 = state
            .0
            .saturating_add(refill)
            .min(nanos(self.capacity))
            .saturating_sub(nanos(used));
        state.1 = now;
        state.0
    }

    fn available(&self) -> bool {
        self.take(Duration::ZERO) > 0
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A guest whose first poll is timed into its module's [`RunHint`].
pub(crate) struct Timed<F: Future> {
    guest: Pin<Box<F>>,
    /// The hint and the inline limit, until the first poll.
    learn: Option<(Arc<RunHint>, Duration)>,
    /// Whether an output is a clean end (a command that exited 0).
    clean: fn(&F::Output) -> bool,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let polled = Instant::now();
        let result = self.guest.as_mut().poll(cx);
        if let Some((hint, limit)) = self.learn.take() {
            let clean = matches!(&result, Poll::Ready(out) if (self.clean)(out));
            hint.learn(polled.elapsed(), clean, limit);
        }
        result
    }
}

/// Polls a command on the start pool until it ends, or until it is pending
/// after its budget (or the allowance) ran out: then it gives the future
/// back, to be spawned on the low pool.
struct FirstSlice<F> {
    guest: Option<Pin<Box<F>>>,
    budget: Duration,
    /// Time spent in its polls so far.
    used: Duration,
    allowance: Arc<Allowance>,
}

enum Slice<F: Future> {
    Ended(F::Output),
    Lowered(Pin<Box<F>>),
}

impl<F: Future> Future for FirstSlice<F> {
    type Output = Slice<F>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Slice<F>> {
        let Some(guest) = self.guest.as_mut() else {
            unreachable!("FirstSlice polled after it completed");
        };
        let polled = Instant::now();
        let result = guest.as_mut().poll(cx);
        let took = polled.elapsed();
        self.used += took;
        let left = self.allowance.take(took);
        match result {
            Poll::Ready(out) => Poll::Ready(Slice::Ended(out)),
            Poll::Pending if self.used >= self.budget || left <= 0 => {
                tracing::debug!(
                    used_us = self.used.as_micros() as u64,
                    "command moves to the low-priority pool"
                );
                match self.guest.take() {
                    Some(guest) => Poll::Ready(Slice::Lowered(guest)),
                    None => unreachable!("checked above"),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Sets the calling thread's nice value to `nice` (Linux keeps one per
/// thread). Raising it needs no privilege; a failure is logged once and
/// otherwise ignored (the guest then runs at normal priority).
fn lower_this_thread(nice: i32) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(nice, error = %e, "cannot lower the guest threads' priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_millis(10);

    fn this_thread_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    /// A stand-in for a guest: `slices` times, notes the nice value of the
    /// thread it runs on, keeps that thread busy for `slice` and yields, as
    /// a spinning guest does at each epoch tick; then notes it once more.
    async fn guest(slices: u32, slice: Duration) -> Vec<i32> {
        let mut seen = Vec::new();
        for _ in 0..slices {
            seen.push(this_thread_nice());
            let until = Instant::now() + slice;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
        seen.push(this_thread_nice());
        seen
    }

    fn low_nice() -> (i32, i32) {
        let base = this_thread_nice();
        let low = (base + 5).min(19);
        assert_ne!(base, low, "the test already runs at the lowest priority");
        (base, low)
    }

    #[test]
    fn a_thread_can_lower_its_own_priority_only() {
        std::thread::spawn(|| {
            lower_this_thread(7);
            assert_eq!(this_thread_nice(), 7);
        })
        .join()
        .unwrap();
        assert_ne!(this_thread_nice(), 7);
    }

    #[tokio::test]
    async fn a_command_runs_at_normal_priority_until_it_used_its_budget() {
        let (base, low) = low_nice();
        let pools = Pools::new(1, low, BUDGET, 1.0, Duration::ZERO).unwrap();

        // A short one never leaves the start pool.
        assert_eq!(pools.spawn(guest(0, BUDGET)).await.unwrap(), [base]);
        // A long one moves at the first yield past its budget (the second
        // at the latest: time in a poll counts even while the thread is
        // preempted), and stays.
        let long = pools.spawn(guest(5, BUDGET * 6 / 10)).await.unwrap();
        let at_base = long.iter().take_while(|&&n| n == base).count();
        assert!((1..=2).contains(&at_base), "{long:?}");
        assert!(long[at_base..].iter().all(|&n| n == low), "{long:?}");

        // With no budget, or no share, everything runs lowered.
        for pools in [
            Pools::new(1, low, Duration::ZERO, 1.0, Duration::ZERO).unwrap(),
            Pools::new(1, low, BUDGET, 0.0, Duration::ZERO).unwrap(),
        ] {
            assert_eq!(pools.spawn(guest(1, BUDGET)).await.unwrap(), [low, low]);
        }
    }

    #[tokio::test]
    async fn commands_past_the_share_start_lowered() {
        let (base, low) = low_nice();
        // A share too small to refill within the test: only the bucket's
        // first two budgets run at normal priority.
        let pools = Pools::new(1, low, BUDGET, 1e-6, Duration::ZERO).unwrap();
        assert_eq!(pools.spawn(guest(0, BUDGET)).await.unwrap(), [base]);
        // One poll of three budgets: it ends where it started, in debt.
        let greedy = pools.spawn(guest(1, BUDGET * 3)).await.unwrap();
        assert_eq!(greedy, [base, low]);
        assert_eq!(pools.spawn(guest(0, BUDGET)).await.unwrap(), [low]);
    }

    #[test]
    fn the_allowance_refills_at_its_share_up_to_its_capacity() {
        let ms = |n: u64| Duration::from_millis(n);
        let a = Allowance::new(0.5, ms(20));
        let t0 = a.state.lock().unwrap().1;
        assert_eq!(a.take_at(ms(50), t0), -nanos(ms(30)));
        assert_eq!(a.take_at(ms(0), t0 + ms(20)), -nanos(ms(20)));
        assert_eq!(a.take_at(ms(5), t0 + ms(80)), nanos(ms(5)));
        // Never more than its capacity, however long it waits.
        assert_eq!(a.take_at(ms(0), t0 + ms(10_000)), nanos(ms(20)));
    }

    #[tokio::test]
    async fn a_panicking_command_is_a_task_error_on_either_pool() {
        let pools = Pools::new(1, 12, BUDGET, 1.0, Duration::ZERO).unwrap();
        for slices in [0, 3] {
            let err = pools
                .spawn(async move {
                    guest(slices, BUDGET).await;
                    panic!("guest {slices} panicked");
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ShimError::Task { message } if message.contains("panicked")),
                "{err:?}"
            );
        }
    }
}
