//! Helpers on objects as JSON: metadata access, timestamps, names, and the
//! stored form (the store's `mod_revision` is the `resourceVersion`).

use crate::status::ApiError;
use serde_json::{Map, Value, json};
use store::{KeyValue, Revision};

/// Now, as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Now plus `secs` seconds, formatted as [`now`].
pub fn now_plus(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Seconds since an RFC 3339 timestamp (negative when in the future).
pub fn seconds_since(ts: &str) -> Option<i64> {
    let t: jiff::Timestamp = ts.parse().ok()?;
    Some(jiff::Timestamp::now().as_second() - t.as_second())
}

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// The metadata map, created if missing.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|n| !n.is_empty())
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|n| !n.is_empty())
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `resourceVersion` an object or request carries, if any; a value that
/// is not a revision is a 400.
pub fn resource_version(obj: &Value) -> Result<Option<Revision>, ApiError> {
    match meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(rv) => parse_rv(rv).map(Some),
    }
}

pub fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// An object read from the store, with its `resourceVersion`.
pub fn from_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!(
            "stored object {} is not JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_resource_version(obj: &mut Value, rev: Revision) {
    metadata_mut(obj).insert("resourceVersion".into(), Value::String(rev.to_string()));
}

/// The bytes to store: the object without its `resourceVersion`, which the
/// store's revision supplies, with `metadata` as the first key so a list can
/// splice the revision in without parsing (see [`STORED_PREFIX`]).
pub fn to_stored(obj: &Value) -> Vec<u8> {
    let mut rest = obj.as_object().cloned().unwrap_or_default();
    let mut meta = rest.remove("metadata").unwrap_or_else(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"metadata\":");
    out.extend_from_slice(&serde_json::to_vec(&meta).expect("a JSON value serializes"));
    for (k, v) in &rest {
        out.push(b',');
        out.extend_from_slice(&serde_json::to_vec(k).expect("a string serializes"));
        out.push(b':');
        out.extend_from_slice(&serde_json::to_vec(v).expect("a JSON value serializes"));
    }
    out.push(b'}');
    out
}

/// How every stored object begins.
pub const STORED_PREFIX: &[u8] = b"{\"metadata\":{";

/// `prefix` plus five random characters, as Kubernetes' name generator.
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The value at a dotted path of object keys.
pub fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_objects_carry_no_resource_version_and_get_it_back() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = to_stored(&obj);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let kv = KeyValue {
            key: b"pods/ns/a".to_vec(),
            value: bytes,
            create_revision: 7,
            mod_revision: 9,
            version: 2,
            lease: None,
        };
        assert_eq!(
            from_stored(&kv).unwrap()["metadata"]["resourceVersion"],
            "9"
        );
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9);
        assert_ne!(generate_name("x-"), generate_name("x-"));
    }

    #[test]
    fn resource_versions_must_be_numbers() {
        assert_eq!(parse_rv("12").unwrap(), 12);
        assert_eq!(parse_rv("abc").unwrap_err().code, 400);
        assert_eq!(parse_rv("-1").unwrap_err().code, 400);
    }
}
