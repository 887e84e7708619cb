//! The status a pod worker reports, computed from the pod, what the runtime
//! holds for it ([`Observed`]), why containers wait, and what the probes
//! say: phase, conditions, container statuses, IPs, start time and QoS
//! class, as the kubelet computes them. [`patch`] turns it into a merge
//! patch of the fields that changed, so an unchanged status is never
//! written.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::resources;
use crate::runtime::{self, Observed, State};

/// Waiting reasons, as the kubelet's.
pub mod reason {
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    pub const POD_INITIALIZING: &str = "PodInitializing";
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
    pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";
}

/// The pod phases.
pub mod phase {
    pub const PENDING: &str = "Pending";
    pub const RUNNING: &str = "Running";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
}

/// The conditions the kubelet owns.
const OWNED_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// The status fields the kubelet owns (and patches).
const OWNED_FIELDS: [&str; 13] = [
    "observedGeneration",
    "phase",
    "conditions",
    "message",
    "reason",
    "hostIP",
    "hostIPs",
    "podIP",
    "podIPs",
    "startTime",
    "initContainerStatuses",
    "containerStatuses",
    "qosClass",
];

/// Why a container is not running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// A phase the worker decided (an active deadline passed, the pod was
/// rejected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminal {
    pub phase: &'static str,
    pub reason: String,
    pub message: String,
}

/// What the probes say about a running container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub started: bool,
    pub ready: bool,
}

/// Everything a status is computed from.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub observed: &'a Observed,
    /// By container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// By container id.
    pub health: &'a HashMap<String, Health>,
    pub host_ip: &'a str,
    pub terminal: Option<&'a Terminal>,
    pub now: Timestamp,
}

/// A CRI time (nanoseconds since the epoch) as an API time (seconds).
pub fn time_from_ns(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Timestamp::from_second(ns / 1_000_000_000).ok())
        .flatten()
        .map(Time)
}

fn now_seconds(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn terminated(c: &runtime::Container) -> ContainerState {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut message = c.message.clone();
    if !c.termination_message.is_empty() {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&c.termination_message);
    }
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("shoal://{}", c.id)),
            exit_code: c.exit_code,
            reason: Some(reason),
            message: (!message.is_empty()).then_some(message),
            started_at: time_from_ns(c.started_at),
            finished_at: time_from_ns(c.finished_at),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: (!message.is_empty()).then(|| message.to_owned()),
        }),
        ..Default::default()
    }
}

/// The status of one container of the spec.
fn container_status(i: &Inputs<'_>, c: &Container, default_reason: &str) -> ContainerStatus {
    let instances = i.observed.instances(&c.name);
    let latest = instances.first().copied();
    let previous = instances.get(1).copied();
    let waiting = i.waiting.get(&c.name);
    let wait = |default: &str| match waiting {
        Some(w) => waiting_state(&w.reason, &w.message),
        None => waiting_state(default, ""),
    };
    let last_of =
        |p: Option<&runtime::Container>| p.filter(|p| p.state == State::Exited).map(terminated);
    let (state, last_state) = match latest {
        None => (wait(default_reason), None),
        Some(l) => match l.state {
            State::Running => (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time_from_ns(l.started_at),
                    }),
                    ..Default::default()
                },
                last_of(previous),
            ),
            State::Created | State::Unknown => {
                (wait(reason::CONTAINER_CREATING), last_of(previous))
            }
            State::Exited if waiting.is_some() => {
                (wait(reason::CONTAINER_CREATING), Some(terminated(l)))
            }
            State::Exited => (terminated(l), last_of(previous)),
        },
    };
    let running = latest.filter(|l| l.state == State::Running);
    let health = running.map(|l| {
        i.health.get(&l.id).copied().unwrap_or(Health {
            started: true,
            ready: true,
        })
    });
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|l| format!("shoal://{}", l.id)),
        restart_count: latest.map_or(0, |l| l.restart_count),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready: health.is_some_and(|h| h.started && h.ready),
        started: Some(health.is_some_and(|h| h.started)),
        ..Default::default()
    }
}

fn is_terminated_ok(s: &ContainerStatus) -> Option<bool> {
    let term = |st: &Option<ContainerState>| {
        st.as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code == 0)
    };
    match s.state.as_ref() {
        Some(st) if st.terminated.is_some() => term(&s.state),
        Some(st) if st.waiting.is_some() => term(&s.last_state),
        _ => None,
    }
}

/// Kubernetes' `getPhase`.
pub fn phase_of(
    restart_policy: &str,
    init: &[ContainerStatus],
    main: &[ContainerStatus],
) -> &'static str {
    let (mut pending_init, mut failed_init) = (0, 0);
    for s in init {
        let st = s.state.as_ref();
        if st.is_some_and(|st| st.running.is_some()) {
            pending_init += 1;
            continue;
        }
        match is_terminated_ok(s) {
            Some(true) => {}
            Some(false) => failed_init += 1,
            None => pending_init += 1,
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return phase::FAILED;
    }
    if pending_init > 0 || failed_init > 0 {
        return phase::PENDING;
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in main {
        let Some(st) = s.state.as_ref() else {
            waiting += 1;
            continue;
        };
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
            if is_terminated_ok(s) == Some(true) {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return phase::PENDING;
    }
    if running > 0 {
        return phase::RUNNING;
    }
    if stopped > 0 {
        return match restart_policy {
            "Always" => phase::RUNNING,
            _ if stopped == succeeded => phase::SUCCEEDED,
            "Never" => phase::FAILED,
            _ => phase::RUNNING,
        };
    }
    phase::PENDING
}

/// Computes the pod's status.
pub fn compute(i: &Inputs<'_>) -> PodStatus {
    let pod = i.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");

    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(i, c, reason::POD_INITIALIZING))
        .collect();
    let init_done = init_statuses
        .iter()
        .all(|s| is_terminated_ok(s) == Some(true));
    let main_default = if init_done {
        reason::CONTAINER_CREATING
    } else {
        reason::POD_INITIALIZING
    };
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(i, c, main_default))
        .collect();

    let old_phase = old.phase.as_deref();
    let sticky = matches!(old_phase, Some(phase::SUCCEEDED | phase::FAILED));
    let (phase, reason, message) = if sticky {
        (
            old_phase.unwrap_or(phase::FAILED).to_owned(),
            old.reason.clone(),
            old.message.clone(),
        )
    } else if let Some(t) = i.terminal {
        let some = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        (t.phase.to_owned(), some(&t.reason), some(&t.message))
    } else {
        (
            phase_of(restart_policy, &init_statuses, &statuses).to_owned(),
            None,
            None,
        )
    };

    let sandbox = i.observed.current_sandbox().filter(|s| s.ready);
    let host_network = spec.host_network == Some(true);
    let pod_ip = match sandbox {
        Some(_) if host_network => Some(i.host_ip.to_owned()),
        Some(s) if !s.ip.is_empty() => Some(s.ip.clone()),
        _ => old.pod_ip.clone(),
    };

    // Conditions, keeping the ones the kubelet does not own.
    let now = now_seconds(i.now);
    let cond = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let previous = old.conditions.iter().flatten().find(|c| c.type_ == type_);
        let since = previous
            .filter(|p| p.status == status)
            .and_then(|p| p.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
            message,
            last_transition_time: Some(since),
            last_probe_time: None,
            observed_generation: None,
        }
    };
    let list = |names: Vec<&str>| format!("[{}]", names.join(" "));
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| is_terminated_ok(s) != Some(true))
        .map(|s| s.name.as_str())
        .collect();
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let succeeded = phase == phase::SUCCEEDED;
    let containers_ready = if succeeded {
        cond("ContainersReady", false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        cond("ContainersReady", true, None, None)
    } else {
        cond(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                list(unready.clone())
            )),
        )
    };
    let gates_unready: Vec<String> = spec
        .readiness_gates
        .iter()
        .flatten()
        .filter(|g| {
            !old.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        })
        .map(|g| g.condition_type.clone())
        .collect();
    let ready = if succeeded {
        cond("Ready", false, Some("PodCompleted"), None)
    } else if !unready.is_empty() {
        cond(
            "Ready",
            false,
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: {}", list(unready))),
        )
    } else if !gates_unready.is_empty() {
        cond(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate {:?} does not exist or is not True",
                gates_unready[0]
            )),
        )
    } else {
        cond("Ready", true, None, None)
    };
    let mut conditions = vec![
        cond("PodReadyToStartContainers", sandbox.is_some(), None, None),
        if incomplete.is_empty() {
            cond("Initialized", true, None, None)
        } else {
            cond(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: {}",
                    list(incomplete)
                )),
            )
        },
        ready,
        containers_ready,
    ];
    let mut scheduled = false;
    for c in old.conditions.iter().flatten() {
        if OWNED_CONDITIONS.contains(&c.type_.as_str()) {
            continue;
        }
        scheduled |= c.type_ == "PodScheduled";
        conditions.push(c.clone());
    }
    if !scheduled {
        conditions.push(cond("PodScheduled", true, None, None));
    }

    PodStatus {
        observed_generation: pod.metadata.generation.or(old.observed_generation),
        phase: Some(phase),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: Some(i.host_ip.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: i.host_ip.to_owned(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: old.start_time.clone().or(Some(now)),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: old
            .qos_class
            .clone()
            .or_else(|| Some(resources::qos_class(pod).to_owned())),
        ..old
    }
}

/// Whether writing `new` would repeat the worker's last write (`written`:
/// the status it computed and wrote, with the resourceVersion the write
/// made) while nobody else has written the pod since (`seen`: the newest
/// resourceVersion the worker has of the pod).
pub fn repeats_last_write(
    written: Option<&(u64, PodStatus)>,
    seen: Option<u64>,
    new: &PodStatus,
) -> bool {
    match written {
        Some((rv, last)) => last == new && seen.is_none_or(|seen| seen <= *rv),
        None => false,
    }
}

/// A merge patch (`{"status": {...}}`) of the owned fields that differ
/// between `old` and `new`, with `null` for the ones to remove; `None` when
/// nothing differs.
pub fn patch(old: Option<&PodStatus>, new: &PodStatus) -> Option<Value> {
    let old = serde_json::to_value(old.cloned().unwrap_or_default()).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let mut out = serde_json::Map::new();
    for k in OWNED_FIELDS {
        let (o, n) = (old.get(k), new.get(k));
        if o != n {
            out.insert(k.to_owned(), n.cloned().unwrap_or(Value::Null));
        }
    }
    (!out.is_empty()).then(|| serde_json::json!({ "status": out }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Container as Rt, Sandbox};
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_status_equal_to_the_last_write_is_not_written_again() {
        let running = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        let pending = PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        };
        let last = (7, running.clone());
        // (last write, newest resourceVersion seen, new status, repeats)
        let cases = [
            (None, Some(7), &running, false),
            (Some(&last), Some(7), &running, true),
            (Some(&last), Some(5), &running, true),
            (Some(&last), None, &running, true),
            (Some(&last), Some(7), &pending, false),
            // Someone wrote the pod after us: compare with what it holds.
            (Some(&last), Some(8), &running, false),
        ];
        for (i, (written, seen, new, want)) in cases.into_iter().enumerate() {
            assert_eq!(repeats_last_write(written, seen, new), want, "case {i}");
        }
    }

    fn pod(policy: &str, init: &[&str], main: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some(format!("{n}:v1")),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                uid: Some("u".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                containers: main.iter().map(c).collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                qos_class: Some("BestEffort".into()),
                ..Default::default()
            }),
        }
    }

    fn rt(name: &str, restarts: i32, state: State, code: i32) -> Rt {
        Rt {
            id: format!("{name}{restarts}"),
            sandbox_id: "sb".into(),
            name: name.into(),
            attempt: u32::try_from(restarts).unwrap(),
            state,
            created_at: (10 + i64::from(restarts)) * S,
            started_at: (11 + i64::from(restarts)) * S,
            finished_at: if state == State::Exited {
                (12 + i64::from(restarts)) * S
            } else {
                0
            },
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            image_ref: "sha256:abc".into(),
            restart_count: restarts,
            hash: String::new(),
            termination_message: String::new(),
        }
    }

    fn observed(containers: Vec<Rt>) -> Observed {
        Observed {
            sandboxes: vec![Sandbox {
                id: "sb".into(),
                attempt: 0,
                ready: true,
                ip: "127.42.0.9".into(),
                created_at: 9 * S,
            }],
            containers,
        }
    }

    fn compute_with(
        pod: &Pod,
        observed: &Observed,
        waiting: &[(&str, &str)],
        health: &[(&str, Health)],
    ) -> PodStatus {
        let waiting: HashMap<String, Waiting> = waiting
            .iter()
            .map(|(n, r)| {
                (
                    n.to_string(),
                    Waiting {
                        reason: r.to_string(),
                        message: format!("{r} message"),
                    },
                )
            })
            .collect();
        let health: HashMap<String, Health> =
            health.iter().map(|(id, h)| (id.to_string(), *h)).collect();
        compute(&Inputs {
            pod,
            observed,
            waiting: &waiting,
            health: &health,
            host_ip: "127.0.0.2",
            terminal: None,
            now: Timestamp::from_second(1_000).unwrap(),
        })
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    fn state(s: &ContainerStatus) -> (&'static str, String) {
        let st = s.state.as_ref().unwrap();
        if let Some(w) = &st.waiting {
            ("waiting", w.reason.clone().unwrap())
        } else if let Some(t) = &st.terminated {
            ("terminated", t.reason.clone().unwrap())
        } else {
            ("running", String::new())
        }
    }

    #[test]
    fn a_new_pod_is_pending_and_creating() {
        let p = pod("Always", &[], &["web"]);
        let s = compute_with(&p, &Observed::default(), &[], &[]);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            state(&s.container_statuses.as_ref().unwrap()[0]),
            ("waiting", "ContainerCreating".into())
        );
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            s.start_time,
            Some(Time(Timestamp::from_second(1000).unwrap()))
        );
        assert_eq!(s.pod_ip, None);
        assert_eq!(s.host_ip.as_deref(), Some("127.0.0.2"));
    }

    #[test]
    fn running_ready_and_probes() {
        let p = pod("Always", &[], &["web", "side"]);
        let o = observed(vec![
            rt("web", 0, State::Running, 0),
            rt("side", 0, State::Running, 0),
        ]);
        let s = compute_with(
            &p,
            &o,
            &[],
            &[(
                "side0",
                Health {
                    started: true,
                    ready: false,
                },
            )],
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("127.42.0.9"));
        let cs = s.container_statuses.as_ref().unwrap();
        assert!(cs[0].ready && cs[0].started == Some(true));
        assert!(!cs[1].ready);
        assert_eq!(cs[0].container_id.as_deref(), Some("shoal://web0"));
        assert_eq!(cs[0].image, "web:v1");
        assert_eq!(cs[0].image_id, "sha256:abc");
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [side]")
        );
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");

        let s2 = compute_with(&p, &o, &[], &[]);
        assert_eq!(cond(&s2, "Ready").status, "True");
        assert_eq!(cond(&s2, "ContainersReady").status, "True");
    }

    #[test]
    fn completion_and_failure_by_restart_policy() {
        let ok = observed(vec![rt("job", 0, State::Exited, 0)]);
        let bad = observed(vec![rt("job", 0, State::Exited, 2)]);
        for (policy, o, want) in [
            ("Never", &ok, "Succeeded"),
            ("OnFailure", &ok, "Succeeded"),
            ("Never", &bad, "Failed"),
            ("OnFailure", &bad, "Running"),
            ("Always", &ok, "Running"),
        ] {
            let s = compute_with(&pod(policy, &[], &["job"]), o, &[], &[]);
            assert_eq!(s.phase.as_deref(), Some(want), "{policy}");
        }
        let s = compute_with(&pod("Never", &[], &["job"]), &ok, &[], &[]);
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert_eq!(
            t.finished_at,
            Some(Time(Timestamp::from_second(12).unwrap()))
        );
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let s = compute_with(&pod("Never", &[], &["job"]), &bad, &[], &[]);
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("Error"));
    }

    #[test]
    fn crash_loop_shows_waiting_with_the_last_termination() {
        let mut crashed = rt("app", 3, State::Exited, 1);
        crashed.reason = "Trapped".into();
        crashed.message = "wasm trap: call stack exhausted".into();
        let o = observed(vec![rt("app", 2, State::Exited, 1), crashed]);
        let s = compute_with(
            &pod("Always", &[], &["app"]),
            &o,
            &[("app", reason::CRASH_LOOP_BACK_OFF)],
            &[],
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(state(cs), ("waiting", "CrashLoopBackOff".into()));
        assert_eq!(cs.restart_count, 3);
        let last = cs.last_state.clone().unwrap().terminated.unwrap();
        assert_eq!(last.reason.as_deref(), Some("Trapped"));
        assert_eq!(
            last.message.as_deref(),
            Some("wasm trap: call stack exhausted")
        );
        assert_eq!(last.container_id.as_deref(), Some("shoal://app3"));
    }

    #[test]
    fn init_containers_gate_the_rest() {
        let p = pod("Always", &["setup", "migrate"], &["web"]);
        let o = observed(vec![
            rt("setup", 0, State::Exited, 0),
            rt("migrate", 0, State::Running, 0),
        ]);
        let s = compute_with(&p, &o, &[], &[]);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            cond(&s, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [migrate]")
        );
        assert_eq!(
            state(&s.container_statuses.as_ref().unwrap()[0]),
            ("waiting", "PodInitializing".into())
        );
        assert_eq!(s.init_container_statuses.as_ref().unwrap().len(), 2);

        let o = observed(vec![
            rt("setup", 0, State::Exited, 0),
            rt("migrate", 0, State::Exited, 3),
        ]);
        assert_eq!(
            compute_with(&pod("Never", &["setup", "migrate"], &["web"]), &o, &[], &[])
                .phase
                .as_deref(),
            Some("Failed")
        );
        assert_eq!(
            compute_with(&p, &o, &[], &[]).phase.as_deref(),
            Some("Pending")
        );

        let o = observed(vec![
            rt("setup", 0, State::Exited, 0),
            rt("migrate", 0, State::Exited, 0),
            rt("web", 0, State::Running, 0),
        ]);
        let s = compute_with(&p, &o, &[], &[]);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Initialized").status, "True");
    }

    #[test]
    fn terminal_phases_stick_and_patches_are_minimal() {
        let mut p = pod("Always", &[], &["web"]);
        let o = observed(vec![rt("web", 0, State::Running, 0)]);
        let s = compute_with(&p, &o, &[], &[]);
        let first = patch(p.status.as_ref(), &s).unwrap();
        assert_eq!(first["status"]["phase"], "Running");
        assert!(
            first["status"].get("qosClass").is_none(),
            "unchanged fields are left out"
        );
        p.status = Some(s.clone());
        assert_eq!(
            patch(p.status.as_ref(), &compute_with(&p, &o, &[], &[])),
            None,
            "same status: no write"
        );

        // Transition times survive recomputation; a change moves them.
        let later = compute(&Inputs {
            pod: &p,
            observed: &o,
            waiting: &HashMap::new(),
            health: &HashMap::from([(
                "web0".to_string(),
                Health {
                    started: true,
                    ready: false,
                },
            )]),
            host_ip: "127.0.0.2",
            terminal: None,
            now: Timestamp::from_second(2_000).unwrap(),
        });
        assert_eq!(
            cond(&later, "PodScheduled").last_transition_time,
            cond(&s, "PodScheduled").last_transition_time
        );
        assert_eq!(
            cond(&later, "Ready").last_transition_time,
            Some(Time(Timestamp::from_second(2000).unwrap()))
        );

        let deadline = Terminal {
            phase: phase::FAILED,
            reason: "DeadlineExceeded".into(),
            message: "Pod was active on the node longer than the specified deadline".into(),
        };
        let failed = compute(&Inputs {
            pod: &p,
            observed: &o,
            waiting: &HashMap::new(),
            health: &HashMap::new(),
            host_ip: "127.0.0.2",
            terminal: Some(&deadline),
            now: Timestamp::from_second(3_000).unwrap(),
        });
        assert_eq!(
            (failed.phase.as_deref(), failed.reason.as_deref()),
            (Some("Failed"), Some("DeadlineExceeded"))
        );
        p.status = Some(failed);
        // A failed pod stays failed, whatever the runtime shows later.
        let again = compute_with(&p, &o, &[], &[]);
        assert_eq!(again.phase.as_deref(), Some("Failed"));
        assert_eq!(again.reason.as_deref(), Some("DeadlineExceeded"));

        // A field the kubelet dropped is patched to null.
        let mut old = again.clone();
        old.message = Some("stale".into());
        let mut new = again;
        new.message = None;
        assert_eq!(
            patch(Some(&old), &new).unwrap()["status"]["message"],
            Value::Null
        );
    }
}
