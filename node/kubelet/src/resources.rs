//! A container's resources: limits as CRI Linux resources (the runtime turns
//! the memory limit into a cap on linear memory and the CPU quota into an
//! epoch-based share), requests summed for admission, the node's
//! allocatable amounts, and the pod's QoS class.

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

use crate::quantity;

/// The CFS period the CPU quota is expressed in (as the kubelet's).
pub const CPU_PERIOD: i64 = 100_000;

/// What the node offers pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
}

/// What a pod asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

fn get(r: Option<&ResourceRequirements>, which: Which, name: &str) -> Option<i64> {
    let r = r?;
    let map = match which {
        Which::Limits => r.limits.as_ref()?,
        Which::Requests => r.requests.as_ref()?,
    };
    let q = map.get(name)?;
    if name == "cpu" {
        quantity::millicores(q)
    } else {
        quantity::units(q)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Limits,
    Requests,
}

/// A container's limit (`Limits`) or request (`Requests`) of `name`
/// (`cpu` in millicores, others in units). A request not given defaults to
/// the limit, as the apiserver defaults it.
pub fn amount(c: &Container, which: Which, name: &str) -> Option<i64> {
    let r = c.resources.as_ref();
    match which {
        Which::Limits => get(r, Which::Limits, name),
        Which::Requests => get(r, Which::Requests, name).or_else(|| get(r, Which::Limits, name)),
    }
}

/// The CRI resources of a container: memory limit, CPU quota and shares.
pub fn linux_resources(c: &Container) -> cri::LinuxContainerResources {
    let mut out = cri::LinuxContainerResources {
        cpu_period: CPU_PERIOD,
        ..Default::default()
    };
    if let Some(bytes) = amount(c, Which::Limits, "memory") {
        out.memory_limit_in_bytes = bytes;
    }
    if let Some(millis) = amount(c, Which::Limits, "cpu") {
        // At least 1 ms of every period, as the kubelet's minimum quota.
        out.cpu_quota = (millis * CPU_PERIOD / 1000).max(1000);
    } else {
        out.cpu_period = 0;
    }
    let shares = amount(c, Which::Requests, "cpu").map_or(2, |m| (m * 1024 / 1000).max(2));
    out.cpu_shares = shares;
    out
}

/// What a pod requests: the larger of its containers' sum and its largest
/// init container (init containers run one at a time).
pub fn pod_requests(pod: &Pod) -> Requests {
    let Some(spec) = pod.spec.as_ref() else {
        return Requests::default();
    };
    let sum = |name: &str| {
        spec.containers
            .iter()
            .filter_map(|c| amount(c, Which::Requests, name))
            .sum::<i64>()
    };
    let init_max = |name: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .filter_map(|c| amount(c, Which::Requests, name))
            .max()
            .unwrap_or(0)
    };
    Requests {
        cpu_millis: sum("cpu").max(init_max("cpu")),
        memory_bytes: sum("memory").max(init_max("memory")),
    }
}

/// The pod's QoS class: Guaranteed when every container has cpu and
/// memory limits equal to its requests, BestEffort when none asks for
/// anything, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let asks = |c: &Container| {
        c.resources.as_ref().is_some_and(|r| {
            r.limits.as_ref().is_some_and(|m| !m.is_empty())
                || r.requests.as_ref().is_some_and(|m| !m.is_empty())
        })
    };
    if !all.iter().any(|c| asks(c)) {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = amount(c, Which::Limits, r);
            limit.is_some() && limit == amount(c, Which::Requests, r)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: map(limits),
                requests: map(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn limits_become_cri_resources() {
        let r = linux_resources(&container(&[("cpu", "500m"), ("memory", "64Mi")], &[]));
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!((r.cpu_quota, r.cpu_period), (50_000, CPU_PERIOD));
        assert_eq!(r.cpu_shares, 512, "the request defaults to the limit");
        let r = linux_resources(&container(&[], &[]));
        assert_eq!(
            (
                r.memory_limit_in_bytes,
                r.cpu_quota,
                r.cpu_period,
                r.cpu_shares
            ),
            (0, 0, 0, 2)
        );
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod(vec![container(&[], &[])])), "BestEffort");
        assert_eq!(
            qos_class(&pod(vec![container(
                &[("cpu", "1"), ("memory", "1Gi")],
                &[]
            )])),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(vec![container(
                &[("cpu", "1"), ("memory", "1Gi")],
                &[("cpu", "500m")]
            )])),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(vec![container(&[], &[("memory", "1Mi")])])),
            "Burstable"
        );
    }

    #[test]
    fn pod_requests_count_init_containers_once() {
        let mut p = pod(vec![
            container(&[], &[("cpu", "100m"), ("memory", "10Mi")]),
            container(&[], &[("cpu", "200m")]),
        ]);
        p.spec.as_mut().unwrap().init_containers = Some(vec![container(&[], &[("cpu", "1")])]);
        assert_eq!(
            pod_requests(&p),
            Requests {
                cpu_millis: 1000,
                memory_bytes: 10 << 20
            }
        );
    }
}
