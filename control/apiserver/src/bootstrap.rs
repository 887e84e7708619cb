//! The objects every cluster has from its first start, and the apiserver's
//! housekeeping: the reaper that ends pods whose termination grace ran out,
//! and the compactor that bounds the store's history.

use crate::object::{self, from_stored};
use crate::request::{Params, Target};
use crate::resources;
use crate::status::ApiError;
use crate::{State, alloc, rest};
use serde_json::{Value, json};
use std::sync::{Arc, Weak};
use std::time::Duration;
use store::RangeRequest;

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what is missing: the system namespaces, the `kubernetes` Service
/// and its Endpoints pointing at this apiserver.
pub async fn run(state: &State, host: &str, port: u16) -> Result<(), ApiError> {
    let params = Params::default();
    let ns_res = resources::find("", "v1", "namespaces").expect("namespaces are served");
    for ns in SYSTEM_NAMESPACES {
        let t = Target {
            res: ns_res,
            namespace: None,
            name: None,
            sub: None,
        };
        ignore_exists(rest::create(state, &t, &params, json!({"metadata": {"name": ns}})).await)?;
    }
    let svc_res = resources::find("", "v1", "services").expect("services are served");
    let t = Target {
        res: svc_res,
        namespace: Some("default".into()),
        name: None,
        sub: None,
    };
    let svc = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": alloc::KUBERNETES_SERVICE_IP, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    ignore_exists(rest::create(state, &t, &params, svc).await)?;
    let ep_res = resources::find("", "v1", "endpoints").expect("endpoints are served");
    let t = Target {
        res: ep_res,
        namespace: Some("default".into()),
        name: None,
        sub: None,
    };
    let ep = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    ignore_exists(rest::create(state, &t, &params, ep).await)?;
    Ok(())
}

fn ignore_exists<T>(r: Result<T, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes pods whose `deletionTimestamp` (deletion time plus grace) has
/// passed without their kubelet confirming, once they have no finalizers.
pub async fn reap_expired_pods(state: Weak<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        if let Err(e) = reap_once(&state).await {
            tracing::warn!(error = %e, "cannot reap expired pods");
        }
    }
}

async fn reap_once(state: &Arc<State>) -> Result<(), ApiError> {
    let resp = state
        .store
        .range(RangeRequest::prefix("pods/"))
        .await
        .map_err(|e| ApiError::from_store(e, "pods", "", ""))?;
    for kv in resp.kvs {
        // Most pods are not being deleted: skip decoding those (a full
        // decode of every pod each second cost a tenth of a core with
        // 10,000 pods).
        if !std::str::from_utf8(&kv.value).is_ok_and(|s| s.contains("\"deletionTimestamp\"")) {
            continue;
        }
        let pod: Value = from_stored(&kv)?;
        let Some(ts) = object::meta_str(&pod, "deletionTimestamp") else {
            continue;
        };
        let expired = object::seconds_since(ts).is_some_and(|s| s >= 0);
        if expired && object::finalizers(&pod).is_empty() {
            match state.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    tracing::info!(pod = %String::from_utf8_lossy(&kv.key), "termination grace expired; pod deleted")
                }
                Err(store::StoreError::Conflict { .. } | store::StoreError::NotFound { .. }) => {}
                Err(e) => return Err(ApiError::from_store(e, "pods", "", "")),
            }
        }
    }
    Ok(())
}

/// Every `interval`, compacts the store to the revision it had one interval
/// earlier, as kube-apiserver does: watches and continue tokens younger than
/// that keep working, older ones get 410 Expired.
pub async fn compact_history(state: Weak<State>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    let mut previous: Option<store::Revision> = None;
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        if let Some(rev) = previous
            && let Err(e) = state.store.compact(rev).await
        {
            tracing::warn!(revision = rev, error = %e, "cannot compact the store");
        } else if let Some(rev) = previous {
            tracing::debug!(revision = rev, "store compacted");
        }
        previous = state.store.current_revision().await.ok();
    }
}
