//! `POST pods/NAME/binding`: assigns a pending pod to a node, once.
//!
//! The scheduler binds every pod, so the stored pod is edited where it lies
//! rather than decoded whole: its top level and `spec` are split into raw
//! JSON members, `spec.nodeName` is put in its place, only `status` is
//! decoded (to set the `PodScheduled` condition), and the rest is copied as
//! stored. The result is byte for byte what decoding the pod, editing it
//! and [`to_stored`] give (a test holds it to that); a pod stored in
//! another shape takes that slower path.

use crate::State;
use crate::object::{self, from_stored, to_stored};
use crate::request::{Params, Target};
use crate::rest::json_response;
use crate::status::{ApiError, Cause, success};
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::fmt;
use store::StoreError;

/// Serves the binding: checks the pod, then writes it with `spec.nodeName`
/// set and `PodScheduled=True`, guarded by the revision it read.
pub async fn bind(
    state: &State,
    t: &Target,
    params: &Params,
    binding: Value,
) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or("").to_string();
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            &name,
            vec![Cause::required("target.name")],
        ));
    }
    let uid = binding.pointer("/metadata/uid").and_then(Value::as_str);
    let key = t.res.key(t.namespace.as_deref(), &name);
    for _ in 0..16 {
        let kv = state
            .store
            .get(key.as_bytes())
            .await
            .map_err(|e| ApiError::from_store(e, t.res.plural, t.res.group, &name))?
            .ok_or_else(|| ApiError::not_found(t.res.plural, t.res.group, &name))?;
        let now = object::now();
        let next = match assign(&kv.value, &name, uid, node, &now) {
            Some(result) => result?,
            None => assign_decoded(&from_stored(&kv)?, &name, uid, node, &now)?,
        };
        if params.dry_run {
            return Ok(json_response(StatusCode::CREATED, &success(json!({}))));
        }
        match state
            .store
            .update(key.as_bytes(), &next, kv.mod_revision, None)
            .await
        {
            Ok(_) => return Ok(json_response(StatusCode::CREATED, &success(json!({})))),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, t.res.plural, t.res.group, &name)),
        }
    }
    Err(ApiError::modified("pods", "", &name))
}

/// Why a pod cannot be bound: a 409, as Kubernetes answers.
fn refuse(
    name: &str,
    pod_uid: Option<&str>,
    uid: Option<&str>,
    deleting: bool,
    current: &str,
) -> Result<(), ApiError> {
    if let Some(uid) = uid
        && Some(uid) != pod_uid
    {
        return Err(ApiError::conflict(
            "pods",
            "",
            name,
            "the UID in the binding does not match the pod",
        ));
    }
    if deleting {
        return Err(ApiError::conflict(
            "pods",
            "",
            name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    if !current.is_empty() {
        return Err(ApiError::conflict(
            "pods",
            "",
            name,
            &format!("pod {name} is already assigned to node {current:?}"),
        ));
    }
    Ok(())
}

/// The binding on a decoded pod: the general path, for any stored shape.
fn assign_decoded(
    pod: &Value,
    name: &str,
    uid: Option<&str>,
    node: &str,
    now: &str,
) -> Result<Vec<u8>, ApiError> {
    let current = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    refuse(
        name,
        object::meta_str(pod, "uid"),
        uid,
        object::meta_str(pod, "deletionTimestamp").is_some(),
        current,
    )?;
    let mut pod = pod.clone();
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    pod["spec"]["nodeName"] = Value::String(node.to_string());
    set_condition(&mut pod, "PodScheduled", "True", None, now);
    Ok(to_stored(&pod))
}

/// The binding on the stored bytes, or `None` when they are not in the shape
/// [`to_stored`] writes (`metadata` first, then the other members in key
/// order, `spec` and `status` objects with their members in key order).
fn assign(
    stored: &[u8],
    name: &str,
    uid: Option<&str>,
    node: &str,
    now: &str,
) -> Option<Result<Vec<u8>, ApiError>> {
    let top: Members<'_> = serde_json::from_slice(stored).ok()?;
    let (first, rest) = top.0.split_first()?;
    if first.0 != "metadata" || !sorted(rest) {
        return None;
    }
    let meta: Meta<'_> = serde_json::from_str(first.1.get()).ok()?;
    let spec = match member(rest, "spec") {
        Some(raw) => serde_json::from_str::<Members<'_>>(raw.get()).ok()?,
        None => Members(Vec::new()),
    };
    if !sorted(&spec.0) {
        return None;
    }
    let current = match member(&spec.0, "nodeName") {
        Some(raw) => text(raw),
        None => None,
    };
    let pod_uid = meta.uid.and_then(text);
    let deleting = meta.deletion_timestamp.and_then(text).is_some();
    if let Err(e) = refuse(
        name,
        pod_uid.as_deref(),
        uid,
        deleting,
        current.as_deref().unwrap_or(""),
    ) {
        return Some(Err(e));
    }
    let mut status = json!({});
    if let Some(raw) = member(rest, "status") {
        status["status"] = serde_json::from_str(raw.get()).ok()?;
    }
    set_condition(&mut status, "PodScheduled", "True", None, now);
    let status = serde_json::to_vec(&status["status"]).ok()?;
    let node = serde_json::to_vec(node).ok()?;
    let mut spec_out = Vec::with_capacity(member(rest, "spec").map_or(0, |r| r.get().len()) + 64);
    write_object(&mut spec_out, &spec.0, &[("nodeName", &node)]);
    let mut out = Vec::with_capacity(stored.len() + node.len() + 160);
    out.extend_from_slice(b"{\"metadata\":");
    out.extend_from_slice(first.1.get().as_bytes());
    write_members(
        &mut out,
        rest,
        &[("spec", &spec_out), ("status", &status)],
        true,
    );
    out.push(b'}');
    Some(Ok(out))
}

/// Writes `{members}` with `set` put in key order, each replacing the member
/// of its name. `members` and `set` are in key order.
fn write_object(out: &mut Vec<u8>, members: &[(Cow<'_, str>, &RawValue)], set: &[(&str, &[u8])]) {
    out.push(b'{');
    write_members(out, members, set, false);
    out.push(b'}');
}

/// Writes `members` as [`write_object`] does, without the braces, after a
/// comma when `comma` (something was written before).
fn write_members(
    out: &mut Vec<u8>,
    members: &[(Cow<'_, str>, &RawValue)],
    set: &[(&str, &[u8])],
    mut comma: bool,
) {
    let mut put = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        if comma {
            out.push(b',');
        }
        comma = true;
        serde_json::to_writer(&mut *out, key).expect("a string serializes");
        out.push(b':');
        out.extend_from_slice(value);
    };
    let mut set = set.iter().peekable();
    for (key, raw) in members {
        let mut replaced = false;
        while let Some((k, v)) = set.next_if(|(k, _)| *k <= key.as_ref()) {
            put(out, k, v);
            replaced |= *k == key.as_ref();
        }
        if !replaced {
            put(out, key, raw.get().as_bytes());
        }
    }
    for (k, v) in set {
        put(out, k, v);
    }
}

/// A member's raw value by name.
fn member<'a>(members: &[(Cow<'_, str>, &'a RawValue)], key: &str) -> Option<&'a RawValue> {
    members.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// Strictly in key order (so no name twice), as a `serde_json::Map` writes.
fn sorted(members: &[(Cow<'_, str>, &RawValue)]) -> bool {
    members.windows(2).all(|w| w[0].0 < w[1].0)
}

/// A raw value as a string, if it is one (as `Value::as_str`).
fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s: Cow<'_, str> = serde_json::from_str::<BorrowedStr<'_>>(raw.get()).ok()?.0;
    Some(s)
}

#[derive(serde::Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// The metadata a binding checks.
#[derive(serde::Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    uid: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<&'a RawValue>,
}

/// A JSON object's members in the order written, values left raw.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    out.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Sets a status condition, replacing its reason and message (as
/// Kubernetes' `UpdatePodCondition`), keeping its transition time when the
/// status is unchanged.
pub fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: Option<&str>, now: &str) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conditions = obj["status"]["conditions"]
        .as_array_mut()
        .expect("an array");
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
    {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) != Some(status) {
                c["status"] = json!(status);
                c["lastTransitionTime"] = json!(now);
            }
            if let Some(c) = c.as_object_mut() {
                c.remove("message");
                match reason {
                    Some(r) => c.insert("reason".into(), json!(r)),
                    None => c.remove("reason"),
                };
            }
        }
        None => {
            let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            conditions.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::KeyValue;

    const NOW: &str = "2026-11-26T06:00:00Z";

    fn stored(pod: &Value) -> Vec<u8> {
        to_stored(pod)
    }

    /// The binding as the apiserver made it before the in-place edit: the
    /// pod decoded from the store, edited as a `Value`, encoded again.
    fn decoded(bytes: &[u8], uid: Option<&str>, node: &str) -> Result<Vec<u8>, ApiError> {
        let kv = KeyValue {
            key: b"pods/default/p".to_vec(),
            value: bytes.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 1,
            lease: None,
        };
        assign_decoded(&from_stored(&kv).unwrap(), "p", uid, node, NOW)
    }

    fn pending() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u-1", "labels": {"app": "x", "we\"ird": "é"}},
            "spec": {"containers": [{"name": "fn", "image": "r/x:v1", "resources": {"requests": {"cpu": "10m"}}}],
                     "restartPolicy": "Always", "schedulerName": "default-scheduler", "priority": 0, "weight": 1.5},
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        })
    }

    #[track_caller]
    fn same_as_decoded(pod: &Value, node: &str) -> Value {
        let bytes = stored(pod);
        let fast = assign(&bytes, "p", None, node, NOW)
            .expect("stored by to_stored")
            .unwrap();
        let slow = decoded(&bytes, None, node).unwrap();
        assert_eq!(
            String::from_utf8(fast.clone()).unwrap(),
            String::from_utf8(slow).unwrap()
        );
        serde_json::from_slice(&fast).unwrap()
    }

    #[test]
    fn the_edit_in_place_gives_the_bytes_of_the_decoded_edit() {
        let bound = same_as_decoded(&pending(), "node-1");
        assert_eq!(bound["spec"]["nodeName"], "node-1");
        assert_eq!(bound["spec"]["containers"][0]["image"], "r/x:v1");
        assert_eq!(bound["metadata"]["labels"]["we\"ird"], "é");
        assert_eq!(
            bound["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": NOW}])
        );
    }

    #[test]
    fn an_unschedulable_condition_is_replaced_and_others_are_kept() {
        let mut pod = pending();
        pod["status"]["conditions"] = json!([
            {"type": "Other", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes",
             "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]);
        let bound = same_as_decoded(&pod, "n");
        let c = &bound["status"]["conditions"][1];
        assert_eq!(c["status"], "True");
        assert_eq!(c["lastTransitionTime"], NOW);
        assert!(c.get("reason").is_none() && c.get("message").is_none());
        assert_eq!(bound["status"]["conditions"][0]["type"], "Other");
    }

    #[test]
    fn missing_spec_status_and_empty_node_names_are_filled_in() {
        let mut pod = pending();
        pod.as_object_mut().unwrap().remove("status");
        same_as_decoded(&pod, "n");
        pod["spec"]["nodeName"] = json!("");
        same_as_decoded(&pod, "n");
        pod.as_object_mut().unwrap().remove("spec");
        let bound = same_as_decoded(&pod, "n");
        assert_eq!(bound["spec"], json!({"nodeName": "n"}));
        let bare = json!({"metadata": {"name": "p"}});
        same_as_decoded(&bare, "n");
        let zzz = json!({"metadata": {"name": "p"}, "zzz": 1, "aaa": [1]});
        same_as_decoded(&zzz, "n");
    }

    #[test]
    fn a_bound_pod_is_a_conflict_on_both_paths() {
        let mut pod = pending();
        pod["spec"]["nodeName"] = json!("other");
        let bytes = stored(&pod);
        for err in [
            assign(&bytes, "p", None, "n", NOW).unwrap().unwrap_err(),
            decoded(&bytes, None, "n").unwrap_err(),
        ] {
            assert_eq!(err.code, 409);
            assert!(
                err.message.contains("already assigned to node \"other\""),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn a_wrong_uid_or_a_deleting_pod_is_a_conflict_on_both_paths() {
        let bytes = stored(&pending());
        assert!(assign(&bytes, "p", Some("u-1"), "n", NOW).unwrap().is_ok());
        for err in [
            assign(&bytes, "p", Some("u-2"), "n", NOW)
                .unwrap()
                .unwrap_err(),
            decoded(&bytes, Some("u-2"), "n").unwrap_err(),
        ] {
            assert_eq!(err.code, 409);
            assert!(err.message.contains("UID"), "{}", err.message);
        }
        let mut pod = pending();
        pod["metadata"]["deletionTimestamp"] = json!(NOW);
        let bytes = stored(&pod);
        for err in [
            assign(&bytes, "p", None, "n", NOW).unwrap().unwrap_err(),
            decoded(&bytes, None, "n").unwrap_err(),
        ] {
            assert_eq!(err.code, 409);
            assert!(err.message.contains("being deleted"), "{}", err.message);
        }
    }

    #[test]
    fn other_shapes_take_the_decoding_path() {
        // Members out of key order, a repeated member, metadata not first.
        for raw in [
            r#"{"metadata":{"name":"p"},"status":{},"spec":{}}"#,
            r#"{"metadata":{"name":"p"},"spec":{"nodeName":"","b":1,"a":2}}"#,
            r#"{"metadata":{"name":"p"},"spec":{},"spec":{}}"#,
            r#"{"spec":{},"metadata":{"name":"p"}}"#,
            r#"{"metadata":{"name":"p"},"spec":[]}"#,
        ] {
            assert!(
                assign(raw.as_bytes(), "p", None, "n", NOW).is_none(),
                "{raw}"
            );
        }
    }
}
