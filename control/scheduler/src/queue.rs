//! The scheduling queue, after kube-scheduler's: pods waiting to be tried
//! (*active*, highest priority first, then oldest), pods that failed and
//! wait out an exponential back-off (1 s doubling to 10 s by default), and
//! *unschedulable* pods that wait for the cluster to change: a node added or
//! changed, a pod gone, a RuntimeClass added ([`Queue::move_all`]). A pod
//! that waited as unschedulable for a minute is tried again anyway.

use k8s_openapi::api::core::v1::Pod;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Back-off and waiting limits.
#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    /// The back-off after the first failure; it doubles with each.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest a pod waits as unschedulable with nothing changing.
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Active,
    Backoff,
    Unschedulable,
    /// Popped: being scheduled or bound.
    InFlight {
        /// [`State::moves`] when it was popped.
        moves_at_pop: u64,
        /// The pod changed in a way that matters meanwhile.
        updated: bool,
    },
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    priority: i32,
    failures: u32,
    place: Where,
    /// Matches the heap item that stands for this entry; older ones are stale.
    seq: u64,
    backoff_until: Instant,
    unschedulable_since: Instant,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// (priority, oldest first, uid).
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    /// (ready at, seq, uid), soonest first.
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    /// Counts [`Queue::move_all`] calls.
    moves: u64,
    last_flush: Option<Instant>,
    closed: bool,
}

/// A pod taken from the queue to be scheduled.
#[derive(Debug, Clone)]
pub struct Popped {
    pub uid: String,
    pub pod: Arc<Pod>,
    /// How many times it failed before.
    pub failures: u32,
}

/// The queue; shared between the watchers that fill it and the loop that
/// drains it.
#[derive(Debug, Default)]
pub struct Queue {
    config: QueueConfig,
    state: Mutex<State>,
    notify: Notify,
}

/// Whether an update can change where a pod fits.
fn matters(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec || old.metadata.labels != new.metadata.labels
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn activate(&mut self, uid: &str) {
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.place = Where::Active;
        e.seq = seq;
        self.active
            .push((e.priority, Reverse(seq), uid.to_string()));
    }

    fn back_off(&mut self, uid: &str) {
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.place = Where::Backoff;
        e.seq = seq;
        self.backoff
            .push(Reverse((e.backoff_until, seq, uid.to_string())));
    }

    /// Active if its back-off is over, else waiting it out.
    fn requeue(&mut self, uid: &str, now: Instant) {
        match self.entries.get(uid) {
            Some(e) if e.backoff_until <= now => self.activate(uid),
            Some(_) => self.back_off(uid),
            None => {}
        }
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, uid))) = self.backoff.peek() {
            if *until > now {
                break;
            }
            let (seq, uid) = (*seq, uid.clone());
            self.backoff.pop();
            if self
                .entries
                .get(&uid)
                .is_some_and(|e| e.place == Where::Backoff && e.seq == seq)
            {
                self.activate(&uid);
            }
        }
    }

    fn flush_unschedulable(&mut self, now: Instant, max_wait: Duration) {
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.place == Where::Unschedulable && now - e.unschedulable_since >= max_wait
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.requeue(&uid, now);
        }
    }

    fn pop_active(&mut self) -> Option<Popped> {
        while let Some((_, Reverse(seq), uid)) = self.active.pop() {
            let moves = self.moves;
            let Some(e) = self.entries.get_mut(&uid) else {
                continue;
            };
            if e.place != Where::Active || e.seq != seq {
                continue;
            }
            e.place = Where::InFlight {
                moves_at_pop: moves,
                updated: false,
            };
            return Some(Popped {
                uid,
                pod: e.pod.clone(),
                failures: e.failures,
            });
        }
        None
    }
}

impl Queue {
    pub fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            ..Queue::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn backoff_for(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.config
            .initial_backoff
            .saturating_mul(1 << shift)
            .min(self.config.max_backoff)
    }

    /// Adds a pod that needs a node, or updates the one queued; an update
    /// that matters brings an unschedulable pod back.
    pub fn add(&self, uid: &str, pod: Arc<Pod>) {
        let mut s = self.lock();
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let now = Instant::now();
        match s.entries.get_mut(uid) {
            None => {
                s.entries.insert(
                    uid.to_string(),
                    Entry {
                        pod,
                        priority,
                        failures: 0,
                        place: Where::Active,
                        seq: 0,
                        backoff_until: now,
                        unschedulable_since: now,
                    },
                );
                s.activate(uid);
                drop(s);
                self.notify.notify_one();
            }
            Some(e) => {
                let changed = matters(&e.pod, &pod);
                e.pod = pod;
                e.priority = priority;
                match e.place {
                    Where::Unschedulable if changed => {
                        s.requeue(uid, now);
                        drop(s);
                        self.notify.notify_one();
                    }
                    Where::InFlight { moves_at_pop, .. } if changed => {
                        e.place = Where::InFlight {
                            moves_at_pop,
                            updated: true,
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn remove(&self, uid: &str) {
        self.lock().entries.remove(uid);
    }

    /// The next pod to schedule; waits for one. `None` once closed.
    pub async fn pop(&self) -> Option<Popped> {
        loop {
            let wake = {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                let now = Instant::now();
                s.flush_backoff(now);
                let flush_every = self.config.max_unschedulable / 8;
                if s.last_flush.is_none_or(|t| now - t >= flush_every) {
                    s.flush_unschedulable(now, self.config.max_unschedulable);
                    s.last_flush = Some(now);
                }
                if let Some(p) = s.pop_active() {
                    return Some(p);
                }
                let next_backoff = s.backoff.peek().map(|Reverse((t, _, _))| *t);
                let next_flush = s.last_flush.map(|t| t + flush_every);
                [next_backoff, next_flush].into_iter().flatten().min()
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }

    /// The pod was placed and bound: it leaves the queue.
    pub fn done(&self, uid: &str) {
        let mut s = self.lock();
        if matches!(
            s.entries.get(uid).map(|e| e.place),
            Some(Where::InFlight { .. })
        ) {
            s.entries.remove(uid);
        }
    }

    /// No node fits the pod: it waits for the cluster to change, or backs
    /// off if the cluster (or the pod) changed while it was tried.
    pub fn unschedulable(&self, uid: &str) {
        let backoff = |f| self.backoff_for(f);
        let mut s = self.lock();
        let moves = s.moves;
        let now = Instant::now();
        let Some(e) = s.entries.get_mut(uid) else {
            return;
        };
        let Where::InFlight {
            moves_at_pop,
            updated,
        } = e.place
        else {
            return;
        };
        e.failures += 1;
        e.backoff_until = now + backoff(e.failures);
        if updated || moves != moves_at_pop {
            s.back_off(uid);
        } else {
            e.place = Where::Unschedulable;
            e.unschedulable_since = now;
        }
        drop(s);
        self.notify.notify_one();
    }

    /// Scheduling or binding failed for another reason: try again after
    /// the back-off.
    pub fn retry(&self, uid: &str) {
        let backoff = |f| self.backoff_for(f);
        let mut s = self.lock();
        let now = Instant::now();
        let Some(e) = s.entries.get_mut(uid) else {
            return;
        };
        if !matches!(e.place, Where::InFlight { .. }) {
            return;
        }
        e.failures += 1;
        e.backoff_until = now + backoff(e.failures);
        s.back_off(uid);
        drop(s);
        self.notify.notify_one();
    }

    /// The cluster changed so that unschedulable pods may fit now.
    pub fn move_all(&self) {
        let mut s = self.lock();
        s.moves += 1;
        let now = Instant::now();
        let waiting: Vec<String> = s
            .entries
            .iter()
            .filter(|(_, e)| e.place == Where::Unschedulable)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &waiting {
            s.requeue(uid, now);
        }
        drop(s);
        if !waiting.is_empty() {
            self.notify.notify_one();
        }
    }

    /// Keeps only the given pods (after a re-list); pods in flight stay.
    pub fn retain(&self, uids: &std::collections::HashSet<String>) {
        self.lock()
            .entries
            .retain(|uid, e| uids.contains(uid) || matches!(e.place, Where::InFlight { .. }));
    }

    /// Wakes [`Queue::pop`] for good with `None`.
    #[cfg(test)]
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Pods queued or in flight.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "ns", "uid": name},
                "spec": {"priority": priority, "containers": []}}),
            )
            .unwrap(),
        )
    }

    async fn pop_now(q: &Queue) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(1), q.pop())
            .await
            .ok()
            .flatten()
            .map(|p| p.uid)
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_age() {
        let q = Queue::new(QueueConfig::default());
        q.add("a", pod("a", 0));
        q.add("b", pod("b", 10));
        q.add("c", pod("c", 0));
        q.add("a", pod("a", 0)); // an update keeps its place
        let order = [
            pop_now(&q).await,
            pop_now(&q).await,
            pop_now(&q).await,
            pop_now(&q).await,
        ];
        assert_eq!(
            order,
            [Some("b".into()), Some("a".into()), Some("c".into()), None]
        );
        assert_eq!(q.len(), 3, "in flight until done");
        for uid in ["a", "b", "c"] {
            q.done(uid);
        }
        assert_eq!(q.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_change_then_back_off() {
        let q = Queue::new(QueueConfig::default());
        q.add("p", pod("p", 0));
        assert_eq!(pop_now(&q).await.as_deref(), Some("p"));
        q.unschedulable("p");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(pop_now(&q).await, None, "nothing changed");
        q.move_all();
        assert_eq!(
            pop_now(&q).await.as_deref(),
            Some("p"),
            "its 1 s back-off is over"
        );
        q.unschedulable("p");
        q.move_all();
        assert_eq!(pop_now(&q).await, None, "backing off 2 s");
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert_eq!(pop_now(&q).await.as_deref(), Some("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_cap() {
        let q = Queue::new(QueueConfig::default());
        let want = [1, 2, 4, 8, 10, 10];
        q.add("p", pod("p", 0));
        assert!(pop_now(&q).await.is_some());
        for secs in want {
            q.retry("p");
            tokio::time::advance(Duration::from_millis(secs * 1000 - 100)).await;
            assert_eq!(pop_now(&q).await, None, "still backing off before {secs} s");
            tokio::time::advance(Duration::from_millis(200)).await;
            assert_eq!(
                pop_now(&q).await.as_deref(),
                Some("p"),
                "back after {secs} s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_while_in_flight_means_back_off_not_waiting() {
        let q = Queue::new(QueueConfig::default());
        q.add("p", pod("p", 0));
        assert!(pop_now(&q).await.is_some());
        q.move_all(); // a node appeared while the pod was being tried
        q.unschedulable("p");
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(pop_now(&q).await.as_deref(), Some("p"));

        // Same for an update of the pod itself.
        let mut changed = (*pod("p", 0)).clone();
        changed.spec.as_mut().unwrap().node_selector =
            Some([("a".to_string(), "b".to_string())].into());
        q.add("p", Arc::new(changed));
        q.unschedulable("p");
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert_eq!(pop_now(&q).await.as_deref(), Some("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn updates_that_matter_bring_unschedulable_pods_back() {
        let q = Queue::new(QueueConfig::default());
        q.add("p", pod("p", 0));
        assert!(pop_now(&q).await.is_some());
        q.unschedulable("p");
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut status_only = (*pod("p", 0)).clone();
        status_only.status = Some(Default::default());
        q.add("p", Arc::new(status_only));
        assert_eq!(pop_now(&q).await, None, "a status change does not matter");
        let mut relabelled = (*pod("p", 0)).clone();
        relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        q.add("p", Arc::new(relabelled));
        assert_eq!(pop_now(&q).await.as_deref(), Some("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_are_retried_after_a_while_anyway() {
        let q = Queue::new(QueueConfig::default());
        q.add("p", pod("p", 0));
        assert!(pop_now(&q).await.is_some());
        q.unschedulable("p");
        let popped = tokio::time::timeout(Duration::from_secs(120), q.pop()).await;
        assert_eq!(popped.unwrap().unwrap().uid, "p");
    }

    #[tokio::test(start_paused = true)]
    async fn removed_pods_are_not_popped_and_close_ends_pop() {
        let q = Arc::new(Queue::new(QueueConfig::default()));
        q.add("a", pod("a", 0));
        q.add("b", pod("b", 0));
        q.remove("a");
        q.retain(&["c".to_string()].into());
        assert_eq!(pop_now(&q).await, None);
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await.map(|p| p.uid) }
        });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
