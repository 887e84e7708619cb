//! Writing decisions back: the Binding (`POST pods/NAME/binding`, which
//! sets `spec.nodeName` and `PodScheduled=True`), and for a pod no node
//! fits, `PodScheduled=False` with reason `Unschedulable` and the message.

use crate::pod::PodInfo;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::time::Duration;

/// How a binding failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The pod is gone, or is another pod now (deleted, recreated, being deleted).
    #[error("the pod is gone")]
    Gone,
    /// Someone bound it first (another scheduler, or a client setting `nodeName`).
    #[error("the pod is already bound")]
    AlreadyBound,
    #[error("the binding failed")]
    Api(#[source] kube::Error),
}

/// Errors worth retrying at once: overload, server trouble, the connection.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Binds a pod to a node, retrying overload and connection errors a few times.
pub async fn bind(client: &kube::Client, pod: &PodInfo, node: &str) -> Result<(), BindError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &pod.name,
                &PostParams::default(),
                &binding,
            )
            .await;
        match result {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(BindError::Gone),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(if s.message.contains("already assigned") {
                    BindError::AlreadyBound
                } else {
                    BindError::Gone
                });
            }
            Err(e) if transient(&e) && attempt < 5 => {
                tracing::debug!(error = %e, attempt, "binding failed, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(BindError::Api(e)),
        }
    }
}

/// The `PodScheduled` condition a pod no node fits should carry, as a
/// strategic merge patch of its status; `None` when it already does.
pub fn unschedulable_patch(pod: &Pod, message: &str) -> Option<serde_json::Value> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let transition = match current {
        Some(c)
            if c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message) =>
        {
            return None;
        }
        Some(c) if c.status == "False" => c
            .last_transition_time
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0),
        _ => Timestamp::now(),
    };
    Some(serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }]}}))
}

/// Sets `PodScheduled=False`, reason `Unschedulable`, on a pod (unless it
/// already says so); a pod that is gone is not an error.
pub async fn mark_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    message: &str,
) -> Result<(), kube::Error> {
    let Some(patch) = unschedulable_patch(pod, message) else {
        return Ok(());
    };
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_condition_is_patched_only_when_it_changes() {
        let pod = |conditions: serde_json::Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "status": {"conditions": conditions}}),
            )
            .unwrap()
        };
        let msg = "0/1 nodes are available: 1 Insufficient cpu.";
        let patch = unschedulable_patch(&pod(json!([])), msg).unwrap();
        let c = &patch["status"]["conditions"][0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"], &c["message"]),
            (
                &json!("PodScheduled"),
                &json!("False"),
                &json!("Unschedulable"),
                &json!(msg)
            )
        );
        assert!(c["lastProbeTime"].is_null());

        let same = pod(
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]),
        );
        assert_eq!(unschedulable_patch(&same, msg), None);

        let earlier = "2020-01-01T00:00:00Z";
        let other_message = pod(
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "before", "lastTransitionTime": earlier}]),
        );
        let patch = unschedulable_patch(&other_message, msg).unwrap();
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            json!(earlier),
            "still False: same transition"
        );

        let was_true =
            pod(json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": earlier}]));
        let patch = unschedulable_patch(&was_true, msg).unwrap();
        assert_ne!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            json!(earlier)
        );
    }
}
