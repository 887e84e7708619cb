//! `GET /stats/summary`: the kubelet's `Summary` (stats/v1alpha1), what
//! metrics servers and `kubectl top` read. The node's CPU and memory are
//! the host's (`/proc/stat`, `/proc/meminfo`, as the kubelet's root
//! cgroup); each pod's and container's come from CRI ListPodSandboxStats.
//! `usageNanoCores` is the rate since the previous summary ([`Rates`]), so
//! the first summary after a start has none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State as Shared;
use k8s_cri::v1 as cri_api;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::State;
use super::error::Reply;
use crate::cri::labels;

/// Samples older than this give no rate.
const MAX_SAMPLE_AGE_NS: i64 = 10 * 60 * 1_000_000_000;
/// `/proc/stat` counts in USER_HZ (100 a second on Linux).
const NS_PER_TICK: u64 = 10_000_000;

/// The last CPU sample of each thing measured: (time ns, core-ns used).
#[derive(Debug, Default)]
pub(crate) struct Rates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl Rates {
    /// The usage rate in nano-cores since the last sample of `key`.
    pub fn rate(&self, key: &str, at_ns: i64, used_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|_, (t, _)| at_ns - *t < MAX_SAMPLE_AGE_NS);
        let before = last.insert(key.to_owned(), (at_ns, used_ns));
        let (t0, u0) = before?;
        let dt = u64::try_from(at_ns - t0).ok().filter(|d| *d > 0)?;
        let du = used_ns.checked_sub(u0)?;
        Some(u64::try_from(u128::from(du) * 1_000_000_000 / u128::from(dt)).unwrap_or(u64::MAX))
    }
}

fn time(ns: i64) -> String {
    Timestamp::from_nanosecond(i128::from(ns))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

fn value(v: &Option<cri_api::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

fn cpu(rates: &Rates, key: &str, c: Option<&cri_api::CpuUsage>) -> Value {
    let Some(c) = c else { return Value::Null };
    let mut out = json!({"time": time(c.timestamp)});
    if let Some(used) = value(&c.usage_core_nano_seconds) {
        out["usageCoreNanoSeconds"] = json!(used);
        let rate = value(&c.usage_nano_cores).or_else(|| rates.rate(key, c.timestamp, used));
        if let Some(r) = rate {
            out["usageNanoCores"] = json!(r);
        }
    }
    out
}

fn memory(m: Option<&cri_api::MemoryUsage>) -> Value {
    let Some(m) = m else { return Value::Null };
    let mut out = json!({"time": time(m.timestamp)});
    for (name, v) in [
        ("workingSetBytes", &m.working_set_bytes),
        ("usageBytes", &m.usage_bytes),
        ("availableBytes", &m.available_bytes),
        ("rssBytes", &m.rss_bytes),
        ("pageFaults", &m.page_faults),
        ("majorPageFaults", &m.major_page_faults),
    ] {
        if let Some(v) = value(v) {
            out[name] = json!(v);
        }
    }
    out
}

/// The host's CPU time used (all cores, not idle), in nanoseconds.
fn host_cpu_ns(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: u64 = ticks.iter().take(8).sum::<u64>()
        - ticks.get(3).copied().unwrap_or(0)
        - ticks.get(4).copied().unwrap_or(0);
    Some(busy * NS_PER_TICK)
}

fn meminfo(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// The node's part of the summary.
fn node(state: &State, now: i64) -> Value {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpu_usage = host_cpu_ns(&stat).map(|ns| cri_api::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: Some(cri_api::UInt64Value { value: ns }),
        usage_nano_cores: None,
    });
    let total = meminfo(&mem, "MemTotal");
    let available = meminfo(&mem, "MemAvailable");
    let free = meminfo(&mem, "MemFree");
    let v = |v: Option<u64>| v.map(|value| cri_api::UInt64Value { value });
    let memory_usage = cri_api::MemoryUsage {
        timestamp: now,
        working_set_bytes: v(total.zip(available).map(|(t, a)| t.saturating_sub(a))),
        usage_bytes: v(total.zip(free).map(|(t, f)| t.saturating_sub(f))),
        available_bytes: v(available),
        ..Default::default()
    };
    json!({
        "nodeName": state.node_name,
        "cpu": cpu(&state.rates, "node", cpu_usage.as_ref()),
        "memory": memory(Some(&memory_usage)),
    })
}

/// One pod's part: the newest instance of each container.
fn pod(rates: &Rates, s: &cri_api::PodSandboxStats) -> Option<Value> {
    let attrs = s.attributes.as_ref()?;
    let meta = attrs.metadata.as_ref()?;
    let linux = s.linux.as_ref();
    let mut newest: HashMap<String, &cri_api::ContainerStats> = HashMap::new();
    for c in linux.map(|l| l.containers.as_slice()).unwrap_or_default() {
        let Some(a) = c.attributes.as_ref() else {
            continue;
        };
        let name = a
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let restarts = |c: &cri_api::ContainerStats| -> i64 {
            c.attributes
                .as_ref()
                .and_then(|a| a.annotations.get(labels::RESTART_COUNT))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match newest.get(&name) {
            Some(old) if restarts(old) >= restarts(c) => {}
            _ => {
                newest.insert(name, c);
            }
        }
    }
    let mut containers: Vec<Value> = newest
        .into_iter()
        .map(|(name, c)| {
            let id = c
                .attributes
                .as_ref()
                .map(|a| a.id.as_str())
                .unwrap_or_default();
            json!({
                "name": name,
                "cpu": cpu(rates, id, c.cpu.as_ref()),
                "memory": memory(c.memory.as_ref()),
            })
        })
        .collect();
    containers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Some(json!({
        "podRef": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
        "containers": containers,
        "cpu": cpu(rates, &attrs.id, linux.and_then(|l| l.cpu.as_ref())),
        "memory": memory(linux.and_then(|l| l.memory.as_ref())),
    }))
}

pub(super) async fn summary(Shared(state): Shared<Arc<State>>) -> Result<Json<Value>, Reply> {
    let sandboxes = state
        .cri
        .list_pod_sandbox_stats()
        .await
        .map_err(Reply::runtime)?;
    let now = i64::try_from(Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
    // Only ready sandboxes: a stopped pod's last figures are not usage.
    let ready: std::collections::HashSet<String> = state
        .cri
        .list_pod_sandboxes(HashMap::new())
        .await
        .map_err(Reply::runtime)?
        .into_iter()
        .filter(|p| p.state == cri_api::PodSandboxState::SandboxReady as i32)
        .map(|p| p.id)
        .collect();
    let pods: Vec<Value> = sandboxes
        .iter()
        .filter(|s| s.attributes.as_ref().is_some_and(|a| ready.contains(&a.id)))
        .filter_map(|s| pod(&state.rates, s))
        .collect();
    Ok(Json(json!({"node": node(&state, now), "pods": pods})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_two_samples() {
        let r = Rates::default();
        assert_eq!(r.rate("a", 1_000_000_000, 5), None);
        // Half a core over two seconds.
        assert_eq!(r.rate("a", 3_000_000_000, 1_000_000_005), Some(500_000_000));
        // A counter that went back (a restart) gives no rate.
        assert_eq!(r.rate("a", 4_000_000_000, 0), None);
        // A sample far too old is forgotten.
        assert_eq!(r.rate("a", 4_000_000_000 + MAX_SAMPLE_AGE_NS, 10), None);
    }

    #[test]
    fn host_figures_parse() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n";
        assert_eq!(
            host_cpu_ns(stat),
            Some((100 + 5 + 50 + 1 + 2 + 3) * NS_PER_TICK)
        );
        assert_eq!(
            meminfo("MemTotal: 2 kB\nMemFree: 1 kB\n", "MemFree"),
            Some(1024)
        );
    }
}
