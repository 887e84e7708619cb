//! The typed round trip: every object passes through its `k8s-openapi` type,
//! which rejects wrong types and drops fields the kind does not have.

use serde_json::Value;

/// Decodes `obj` as `kind` and encodes it back. The error is serde's, for a
/// 400 that reads like Kubernetes' decode errors.
pub fn round_trip(kind: &str, obj: &Value) -> Result<Value, String> {
    macro_rules! kinds {
        ($($name:literal => $ty:ty),* $(,)?) => {
            match kind {
                $($name => through::<$ty>(obj),)*
                other => Err(format!("no type known for kind {other}")),
            }
        };
    }
    use k8s_openapi::api::{
        apps, autoscaling, batch, coordination, core, discovery, networking, node, rbac,
    };
    kinds! {
        "Namespace" => core::v1::Namespace,
        "Pod" => core::v1::Pod,
        "Node" => core::v1::Node,
        "Service" => core::v1::Service,
        "Endpoints" => core::v1::Endpoints,
        "ConfigMap" => core::v1::ConfigMap,
        "Secret" => core::v1::Secret,
        "Event" => core::v1::Event,
        "ServiceAccount" => core::v1::ServiceAccount,
        "ResourceQuota" => core::v1::ResourceQuota,
        "LimitRange" => core::v1::LimitRange,
        "Binding" => core::v1::Binding,
        "Deployment" => apps::v1::Deployment,
        "ReplicaSet" => apps::v1::ReplicaSet,
        "Job" => batch::v1::Job,
        "HorizontalPodAutoscaler" => autoscaling::v2::HorizontalPodAutoscaler,
        "Scale" => autoscaling::v1::Scale,
        "Lease" => coordination::v1::Lease,
        "EndpointSlice" => discovery::v1::EndpointSlice,
        "NetworkPolicy" => networking::v1::NetworkPolicy,
        "Role" => rbac::v1::Role,
        "ClusterRole" => rbac::v1::ClusterRole,
        "RoleBinding" => rbac::v1::RoleBinding,
        "ClusterRoleBinding" => rbac::v1::ClusterRoleBinding,
        "RuntimeClass" => node::v1::RuntimeClass,
    }
}

fn through<T: serde::de::DeserializeOwned + serde::Serialize>(
    obj: &Value,
) -> Result<Value, String> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_fail_and_unknown_fields_drop() {
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": "nope"}});
        assert!(
            round_trip("Pod", &bad)
                .unwrap_err()
                .contains("expected a sequence")
                || round_trip("Pod", &bad).is_err()
        );
        let extra = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}, "bogus": 1});
        let out = round_trip("ConfigMap", &extra).unwrap();
        assert_eq!(out["data"]["k"], "v");
        assert!(out.get("bogus").is_none());
        assert_eq!(out["kind"], "ConfigMap");
    }
}
