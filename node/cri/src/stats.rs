//! ContainerStats and ListContainerStats: CPU and memory from the guest (a
//! running one's live meters, an exited one's figures at its end: Wasm
//! linear memory never shrinks, so that is what it held when it ended), and
//! the writable layer as the bytes of the container's log files (a guest
//! writes nowhere else of its own).

use k8s_cri::v1 as cri;

use crate::error::CriError;
use crate::logs;
use crate::runtime::{Container, Runtime, find, now_ns, selects};
use crate::tables::Tables;

impl Runtime {
    pub fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, CriError> {
        let t = self.tables();
        let id = find(t.containers(), id, "container")?
            .ok_or_else(|| CriError::not_found("container", id))?;
        Ok(self.stats_of(&t.containers()[&id]))
    }

    pub fn list_container_stats(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> Vec<cri::ContainerStats> {
        let t = self.tables();
        let f = filter.unwrap_or_default();
        t.container_candidates(&f.id, &f.pod_sandbox_id, &f.label_selector)
            .into_iter()
            .filter(|c| f.id.is_empty() || c.rec.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.rec.pod_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| selects(&f.label_selector, &c.rec.config.labels))
            .map(|c| self.stats_of(c))
            .collect()
    }

    fn stats_of(&self, c: &Container) -> cri::ContainerStats {
        let now = now_ns();
        let r = &c.rec;
        let (cpu_nanos, memory) = match &c.live {
            Some(live) => {
                let u = live.kill.usage();
                (
                    u64::try_from(u.cpu_time.as_nanos()).unwrap_or(u64::MAX),
                    u.memory_bytes,
                )
            }
            None => (r.cpu_nanos, r.memory_bytes),
        };
        let (log_bytes, log_files) = r
            .log_path
            .as_deref()
            .map_or((0, 0), |p| logs::disk_usage(p, self.config.log_max_files));
        let value = |v: u64| Some(cri::UInt64Value { value: v });
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: r.id.clone(),
                metadata: r.config.metadata.clone(),
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
            }),
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: value(cpu_nanos),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: value(memory),
                usage_bytes: value(memory),
                ..Default::default()
            }),
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: r
                        .log_path
                        .as_deref()
                        .and_then(|p| p.parent())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                }),
                used_bytes: value(log_bytes),
                inodes_used: value(log_files),
            }),
            swap: None,
        }
    }
}

impl Runtime {
    pub fn pod_sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats, CriError> {
        let t = self.tables();
        let id = find(t.pods(), id, "pod sandbox")?
            .ok_or_else(|| CriError::not_found("pod sandbox", id))?;
        Ok(self.pod_stats_of(&t, &id))
    }

    pub fn list_pod_sandbox_stats(
        &self,
        filter: Option<cri::PodSandboxStatsFilter>,
    ) -> Vec<cri::PodSandboxStats> {
        let t = self.tables();
        let f = filter.unwrap_or_default();
        t.pod_candidates(&f.id, &f.label_selector)
            .into_iter()
            .filter(|p| f.id.is_empty() || p.id.starts_with(&f.id))
            .filter(|p| selects(&f.label_selector, &p.config.labels))
            .map(|p| self.pod_stats_of(&t, &p.id))
            .collect()
    }

    /// A pod's stats: its containers', and their sums.
    fn pod_stats_of(&self, t: &Tables, pod_id: &str) -> cri::PodSandboxStats {
        let pod = &t.pods()[pod_id];
        let containers: Vec<cri::ContainerStats> =
            t.pod_containers(pod_id).map(|c| self.stats_of(c)).collect();
        let now = now_ns();
        let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| {
            Some(cri::UInt64Value {
                value: containers.iter().filter_map(f).sum(),
            })
        };
        let running = t
            .pod_containers(pod_id)
            .filter(|c| c.live.is_some())
            .count();
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: pod.config.metadata.clone(),
                labels: pod.config.labels.clone(),
                annotations: pod.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: sum(&|s| {
                        s.cpu
                            .as_ref()?
                            .usage_core_nano_seconds
                            .as_ref()
                            .map(|v| v.value)
                    }),
                    usage_nano_cores: None,
                }),
                memory: Some(cri::MemoryUsage {
                    timestamp: now,
                    working_set_bytes: sum(&|s| {
                        s.memory
                            .as_ref()?
                            .working_set_bytes
                            .as_ref()
                            .map(|v| v.value)
                    }),
                    usage_bytes: sum(&|s| s.memory.as_ref()?.usage_bytes.as_ref().map(|v| v.value)),
                    ..Default::default()
                }),
                network: None,
                process: Some(cri::ProcessUsage {
                    timestamp: now,
                    process_count: Some(cri::UInt64Value {
                        value: running as u64,
                    }),
                }),
                containers,
            }),
            windows: None,
        }
    }
}
