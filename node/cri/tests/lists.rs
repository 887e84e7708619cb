//! Filtered lists on a node of many pods answer exactly what filtering the
//! whole list answers (same items, same order): ListContainers,
//! ListContainerStats and ListPodSandbox by id prefix, pod sandbox id
//! prefix, label selector and state, as the kubelet calls them per pod.

mod common;

use std::collections::HashMap;

use anyhow::Result;
use common::{Cri, container};
use k8s_cri::v1 as api;

const PODS: usize = 24;

fn selects(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_lists_equal_the_whole_list_filtered() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::TRUE, "true:v1")?;
    let mut pods = Vec::new();
    for p in 0..PODS {
        let (pod, config) = cri.pod(&format!("p{p}")).await?;
        for c in 0..2 {
            let mut cfg = container(&format!("c{c}"), &image, &[]);
            cfg.labels
                .insert("io.kubernetes.pod.uid".into(), format!("uid-p{p}"));
            let id = cri.create(&pod, &config, cfg).await?;
            if c == 0 && p % 3 == 0 {
                cri.rt
                    .start_container(api::StartContainerRequest {
                        container_id: id.clone(),
                    })
                    .await?;
                cri.wait_exited(&id).await?;
            }
        }
        pods.push(pod);
    }
    let mut rt = cri.rt.clone();
    let all = rt
        .list_containers(api::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    assert_eq!(all.len(), PODS * 2);
    let all_pods = rt
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert_eq!(all_pods.len(), PODS);

    let exited = api::ContainerStateValue {
        state: api::ContainerState::ContainerExited as i32,
    };
    let mut filters: Vec<api::ContainerFilter> = Vec::new();
    for (p, pod) in pods.iter().enumerate() {
        filters.push(api::ContainerFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        });
        filters.push(api::ContainerFilter {
            label_selector: [("io.kubernetes.pod.uid".to_owned(), format!("uid-p{p}"))].into(),
            ..Default::default()
        });
        filters.push(api::ContainerFilter {
            pod_sandbox_id: pod[..1].to_owned(),
            state: Some(exited),
            ..Default::default()
        });
    }
    for c in &all[..4] {
        filters.push(api::ContainerFilter {
            id: c.id[..2].to_owned(),
            ..Default::default()
        });
    }
    filters.push(api::ContainerFilter {
        label_selector: [
            ("container".to_owned(), "c0".to_owned()),
            ("io.kubernetes.pod.uid".to_owned(), "uid-p3".to_owned()),
        ]
        .into(),
        ..Default::default()
    });
    filters.push(api::ContainerFilter {
        label_selector: [("container".to_owned(), "c1".to_owned())].into(),
        ..Default::default()
    });
    filters.push(api::ContainerFilter {
        label_selector: [("container".to_owned(), "nobody".to_owned())].into(),
        ..Default::default()
    });

    for f in filters {
        let expected: Vec<&str> = all
            .iter()
            .filter(|c| c.id.starts_with(&f.id))
            .filter(|c| c.pod_sandbox_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| f.state.is_none_or(|s| s.state == c.state))
            .filter(|c| selects(&f.label_selector, &c.labels))
            .map(|c| c.id.as_str())
            .collect();
        let got: Vec<String> = rt
            .list_containers(api::ListContainersRequest {
                filter: Some(f.clone()),
            })
            .await?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(got, expected, "ListContainers {f:?}");
        if f.state.is_none() {
            let stats: Vec<String> = rt
                .list_container_stats(api::ListContainerStatsRequest {
                    filter: Some(api::ContainerStatsFilter {
                        id: f.id.clone(),
                        pod_sandbox_id: f.pod_sandbox_id.clone(),
                        label_selector: f.label_selector.clone(),
                    }),
                })
                .await?
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect();
            assert_eq!(stats, expected, "ListContainerStats {f:?}");
        }
    }

    let mut pod_filters: Vec<api::PodSandboxFilter> = (0..PODS)
        .map(|p| api::PodSandboxFilter {
            label_selector: [("app".to_owned(), format!("p{p}"))].into(),
            ..Default::default()
        })
        .collect();
    pod_filters.extend(pods.iter().map(|id| api::PodSandboxFilter {
        id: id[..1].to_owned(),
        ..Default::default()
    }));
    for f in pod_filters {
        let expected: Vec<&str> = all_pods
            .iter()
            .filter(|p| p.id.starts_with(&f.id))
            .filter(|p| selects(&f.label_selector, &p.labels))
            .map(|p| p.id.as_str())
            .collect();
        let got: Vec<String> = rt
            .list_pod_sandbox(api::ListPodSandboxRequest {
                filter: Some(f.clone()),
            })
            .await?
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(got, expected, "ListPodSandbox {f:?}");
    }
    cri.stop().await?;
    Ok(())
}
