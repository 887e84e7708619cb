//! What each kind does on create and update beyond the generic rules:
//! defaults, initial status, which part a subresource may change, fields
//! that may not change, and `metadata.generation`.

use crate::object::{metadata_mut, new_uid, now};
use crate::resources::Resource;
use crate::status::Cause;
use serde_json::{Map, Value, json};

/// Sets identity, timestamps and the kind's defaults on a new object.
pub fn prepare_create(res: &Resource, obj: &mut Value) {
    let meta = metadata_mut(obj);
    meta.insert("uid".into(), Value::String(new_uid()));
    meta.insert("creationTimestamp".into(), Value::String(now()));
    if tracks_generation(res) {
        meta.insert("generation".into(), json!(1));
    }
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(field);
    }
    obj["apiVersion"] = Value::String(res.api_version());
    obj["kind"] = Value::String(res.kind.to_string());
    match res.kind {
        "Namespace" => {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        "Pod" => obj["status"] = json!({"phase": "Pending"}),
        "Deployment" | "Job" => obj["status"] = json!({}),
        "ReplicaSet" => obj["status"] = json!({"replicas": 0}),
        "Service" => obj["status"] = json!({"loadBalancer": {}}),
        _ => {}
    }
    apply_defaults(res, obj);
    if res.kind == "Pod" {
        obj["status"]["qosClass"] = json!(qos_class(&obj["spec"]));
    }
}

/// Fills in the fields Kubernetes defaults, on every write (as its decoder
/// does), so a client that leaves them out changes nothing by it.
pub fn apply_defaults(res: &Resource, obj: &mut Value) {
    match res.kind {
        "Pod" => default_pod_spec(&mut obj["spec"]),
        "Deployment" => {
            let spec = ensure_object(&mut obj["spec"]);
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            spec.entry("strategy").or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
        }
        "ReplicaSet" => {
            ensure_object(&mut obj["spec"])
                .entry("replicas")
                .or_insert(json!(1));
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
        }
        "Job" => {
            let spec = ensure_object(&mut obj["spec"]);
            spec.entry("backoffLimit").or_insert(json!(6));
            spec.entry("completions").or_insert(json!(1));
            spec.entry("parallelism").or_insert(json!(1));
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
        }
        "Service" => {
            let spec = ensure_object(&mut obj["spec"]);
            spec.entry("type").or_insert(json!("ClusterIP"));
            spec.entry("sessionAffinity").or_insert(json!("None"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    let port = p.get("port").cloned().unwrap_or(Value::Null);
                    if let Some(p) = p.as_object_mut() {
                        p.entry("protocol").or_insert(json!("TCP"));
                        p.entry("targetPort").or_insert(port);
                    }
                }
            }
        }
        "Secret" => {
            ensure_object(obj).entry("type").or_insert(json!("Opaque"));
            fold_string_data(obj);
        }
        _ => {}
    }
}

fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("an object")
}

/// Secret `stringData` is write-only: merged into `data` as base64.
pub fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let data = ensure_object(&mut obj["data"]);
    for (k, v) in string_data.as_object().into_iter().flatten() {
        if let Some(s) = v.as_str() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
            data.insert(k.clone(), Value::String(encoded));
        }
    }
}

fn default_pod_spec(spec: &mut Value) {
    let s = ensure_object(spec);
    s.entry("restartPolicy").or_insert(json!("Always"));
    s.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    s.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    s.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    s.entry("securityContext").or_insert(json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.entry("terminationMessagePath")
                    .or_insert(json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy").or_insert(json!("File"));
                let pull = if c
                    .get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| i.ends_with(":latest") || !i.contains(':'))
                {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                c.entry("imagePullPolicy").or_insert(json!(pull));
                c.entry("resources").or_insert(json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.entry("protocol").or_insert(json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Guaranteed when every container has equal cpu and memory requests and
/// limits; BestEffort when none has any; else Burstable.
fn qos_class(spec: &Value) -> &'static str {
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let res = |c: &Value, which: &str, r: &str| {
        c.get("resources")
            .and_then(|x| x.get(which))
            .and_then(|x| x.get(r))
            .cloned()
    };
    let any = containers.iter().any(|c| {
        ["limits", "requests"].iter().any(|w| {
            c.get("resources")
                .and_then(|x| x.get(*w))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = res(c, "limits", r);
            limit.is_some() && (res(c, "requests", r).is_none() || res(c, "requests", r) == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but status (when the kind has a status subresource).
    Main,
    /// The status subresource: status only.
    Status,
}

/// Builds the object to store from the current one and the one sent:
/// identity and server-owned metadata stay, the part not being written
/// stays, and `generation` counts spec changes. Returns field errors for
/// changes the kind forbids.
pub fn prepare_update(res: &Resource, old: &Value, new: &mut Value, part: Part) -> Vec<Cause> {
    let has_status = res.has(crate::resources::Sub::Status);
    if part == Part::Status {
        let status = new.get("status").cloned().unwrap_or(Value::Null);
        let mut merged = old.clone();
        merged["status"] = status;
        *new = merged;
    } else if has_status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    {
        let meta = metadata_mut(new);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => {
                    meta.insert(field.into(), v.clone());
                }
                None => {
                    meta.remove(field);
                }
            }
        }
    }
    new["apiVersion"] = Value::String(res.api_version());
    new["kind"] = Value::String(res.kind.to_string());
    if part == Part::Main {
        apply_defaults(res, new);
    }
    let causes = immutable(res, old, new);
    if tracks_generation(res) && spec_of(old) != spec_of(new) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            + 1;
        metadata_mut(new).insert("generation".into(), json!(generation));
    }
    if res.kind == "Namespace" && part == Part::Main {
        new["spec"] = old.get("spec").cloned().unwrap_or(Value::Null);
    }
    causes
}

/// Kinds whose spec changes are counted in `metadata.generation`.
fn tracks_generation(res: &Resource) -> bool {
    matches!(
        res.kind,
        "Pod" | "Deployment" | "ReplicaSet" | "Job" | "HorizontalPodAutoscaler" | "NetworkPolicy"
    )
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_of(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(o) = v.as_object_mut() {
        for field in ["metadata", "status", "apiVersion", "kind"] {
            o.remove(field);
        }
    }
    v
}

fn immutable(res: &Resource, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let changed = |path: &[&str]| crate::object::at(old, path) != crate::object::at(new, path);
    match res.kind {
        "Pod" => {
            let old_node = crate::object::at(old, &["spec", "nodeName"])
                .and_then(Value::as_str)
                .unwrap_or("");
            if !old_node.is_empty() && changed(&["spec", "nodeName"]) {
                causes.push(Cause::forbidden(
                    "spec.nodeName",
                    "field is immutable once the pod is scheduled",
                ));
            }
            let mutable_cleared = |obj: &Value| {
                let mut spec = obj.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(s) = spec.as_object_mut() {
                    for f in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "nodeName",
                        "terminationGracePeriodSeconds",
                    ] {
                        s.remove(f);
                    }
                    for list in ["containers", "initContainers"] {
                        for c in s
                            .get_mut(list)
                            .and_then(Value::as_array_mut)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(c) = c.as_object_mut() {
                                c.remove("image");
                            }
                        }
                    }
                }
                spec
            };
            if mutable_cleared(old) != mutable_cleared(new) {
                causes.push(Cause::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        "Deployment" | "ReplicaSet" | "Job"
            if changed(&["spec", "selector"]) && old.pointer("/spec/selector").is_some() =>
        {
            causes.push(Cause::invalid(
                "spec.selector",
                new.pointer("/spec/selector").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        "Service" => {
            let old_ip = crate::object::at(old, &["spec", "clusterIP"])
                .and_then(Value::as_str)
                .unwrap_or("");
            let new_ip = crate::object::at(new, &["spec", "clusterIP"])
                .and_then(Value::as_str)
                .unwrap_or("");
            if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
                causes.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    &Value::String(new_ip.into()),
                    "may not change once set",
                ));
            }
        }
        _ => {}
    }
    causes
}

/// Keeps server-assigned Service fields a client left out of an update
/// (`kubectl apply` never sends the cluster IP it did not choose).
pub fn carry_over_allocations(res: &Resource, old: &Value, new: &mut Value) {
    if res.kind != "Service" {
        return;
    }
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if new.pointer(&format!("/spec/{field}")).is_none()
            && let Some(v) = old.pointer(&format!("/spec/{field}"))
        {
            ensure_object(&mut new["spec"]).insert(field.into(), v.clone());
        }
    }
    let old_ports = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("nodePort").is_none()
                && let Some(np) = old_ports
                    .iter()
                    .find(|o| o.get("port") == p.get("port"))
                    .and_then(|o| o.get("nodePort"))
            {
                p.insert("nodePort".into(), np.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn create_sets_identity_and_defaults() {
        let pods = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p", "resourceVersion": "9"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        prepare_create(pods, &mut pod);
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["metadata"]["generation"], 1);
        assert!(pod["metadata"]["uid"].as_str().unwrap().len() == 36);
        assert!(pod["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn spec_changes_bump_generation_and_status_is_kept() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "d", "uid": "other", "labels": {"a": "b"}}, "spec": {"replicas": 2}, "status": {"replicas": 99}});
        assert!(prepare_update(deploy, &old, &mut new, Part::Main).is_empty());
        assert_eq!(new["metadata"]["generation"], 4);
        assert_eq!(new["metadata"]["uid"], "u");
        assert_eq!(new["status"]["replicas"], 1);
        assert_eq!(new["metadata"]["labels"]["a"], "b");

        let mut status_only =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 7}, "status": {"replicas": 2}});
        prepare_update(deploy, &old, &mut status_only, Part::Status);
        assert_eq!(status_only["spec"]["replicas"], 1);
        assert_eq!(status_only["status"]["replicas"], 2);
        assert_eq!(status_only["metadata"]["generation"], 3);
    }

    #[test]
    fn pods_may_change_only_images_and_a_few_fields() {
        let pods = find("", "v1", "pods").unwrap();
        let mut old = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "a"}]}});
        apply_defaults(pods, &mut old);
        let mut image = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "b"}]}});
        assert!(prepare_update(pods, &old, &mut image, Part::Main).is_empty());
        let mut rename = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n2", "containers": [{"name": "d", "image": "a"}]}});
        let causes = prepare_update(pods, &old, &mut rename, Part::Main);
        assert_eq!(causes.len(), 2, "{causes:?}");
    }

    #[test]
    fn secrets_fold_string_data() {
        let secrets = find("", "v1", "secrets").unwrap();
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}});
        prepare_create(secrets, &mut s);
        assert_eq!(s["data"]["pw"], "aHVudGVyMg==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }
}
