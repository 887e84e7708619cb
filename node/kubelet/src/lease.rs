//! The node's heartbeat: the Lease `kube-node-lease/NODE`, held by the
//! node, renewed every period (10 s) with a duration of 40 s, owned by the
//! Node so that it goes with it. A failed renewal is retried sooner
//! (200 ms doubling to 7 s, as the kubelet's lease controller).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use crate::Shared;
use crate::error::{KubeletError, is_status};

/// The namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";

/// The lease as the node holds it now.
pub fn lease(node: &str, node_uid: Option<&str>, duration_secs: i32, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_owned()),
            namespace: Some(NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.to_owned(),
                    uid: uid.to_owned(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_owned()),
            lease_duration_seconds: Some(duration_secs),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Renews the lease once: creates it, or updates the one there.
async fn renew(shared: &Shared, node_uid: &mut Option<String>) -> Result<(), KubeletError> {
    let name = &shared.config.node_name;
    if node_uid.is_none() {
        let nodes: Api<Node> = Api::all(shared.client.clone());
        if let Ok(n) = nodes.get(name).await {
            *node_uid = n.metadata.uid;
        }
    }
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), NAMESPACE);
    let secs = i32::try_from(shared.config.lease_duration.as_secs()).unwrap_or(40);
    let mut want = lease(name, node_uid.as_deref(), secs, Timestamp::now());
    match api
        .get_opt(name)
        .await
        .map_err(KubeletError::api("read the node lease"))?
    {
        None => {
            api.create(&PostParams::default(), &want)
                .await
                .map_err(KubeletError::api("create the node lease"))?;
        }
        Some(current) => {
            want.metadata.resource_version = current.metadata.resource_version;
            if want.metadata.owner_references.is_none() {
                want.metadata.owner_references = current.metadata.owner_references;
            }
            if let (Some(spec), Some(old)) = (want.spec.as_mut(), current.spec) {
                spec.acquire_time = old.acquire_time;
                spec.lease_transitions = old.lease_transitions;
            }
            match api.replace(name, &PostParams::default(), &want).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) => {
                    return Err(KubeletError::api(
                        "renew the node lease (it changed meanwhile)",
                    )(e));
                }
                Err(e) => return Err(KubeletError::api("renew the node lease")(e)),
            }
        }
    }
    Ok(())
}

/// Renews the lease every period, once the Node is registered, until
/// dropped.
pub(crate) async fn run(shared: Arc<Shared>, mut registered: tokio::sync::watch::Receiver<bool>) {
    if registered.wait_for(|r| *r).await.is_err() {
        return;
    }
    let mut node_uid = None;
    let mut retry = Duration::from_millis(200);
    let mut failing = false;
    loop {
        let next = match renew(&shared, &mut node_uid).await {
            Ok(()) => {
                if failing {
                    tracing::info!("node lease renewed again");
                    failing = false;
                }
                retry = Duration::from_millis(200);
                shared.config.lease_period
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %crate::error::chain(&e), "cannot renew the node lease; retrying");
                    failing = true;
                }
                let r = retry;
                retry = (retry * 2).min(Duration::from_secs(7));
                r
            }
        };
        tokio::time::sleep(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_names_its_holder_and_owner() {
        let l = lease("n1", Some("uid-1"), 40, Timestamp::from_second(5).unwrap());
        assert_eq!(l.metadata.namespace.as_deref(), Some(NAMESPACE));
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(l.metadata.owner_references.unwrap()[0].uid, "uid-1");
        assert!(
            lease("n1", None, 40, Timestamp::now())
                .metadata
                .owner_references
                .is_none()
        );
    }
}
