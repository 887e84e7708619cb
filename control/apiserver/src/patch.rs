//! PATCH bodies applied to objects held as `serde_json::Value`: JSON patch
//! (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic merge
//! patch.
//!
//! Strategic merge follows apimachinery's `strategicpatch` (patch.go, apply
//! side): maps merge and `null` deletes, lists with a merge key merge item by
//! item, merge lists of scalars are ordered sets, other lists are replaced, and
//! the directives `$patch`, `$retainKeys`, `$setElementOrder/F` and
//! `$deleteFromPrimitiveList/F` are honoured and never stored. Which list is
//! which comes from `KINDS`, a small schema copied from the `patchStrategy`
//! and `patchMergeKey` tags of the Kubernetes Go types; kinds not in it (custom
//! resources) get a JSON merge patch, as kubectl and Kubernetes do for types
//! they have no Go struct for.

use serde_json::{Map, Value};

/// How a PATCH body is to be read, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7386.
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply (not supported).
    Apply,
}

const MEDIA_TYPES: &[(&str, PatchType)] = &[
    ("application/json-patch+json", PatchType::Json),
    ("application/merge-patch+json", PatchType::Merge),
    (
        "application/strategic-merge-patch+json",
        PatchType::StrategicMerge,
    ),
    ("application/apply-patch+yaml", PatchType::Apply),
];

impl PatchType {
    /// The patch type of a `Content-Type` header; parameters such as
    /// `;charset=utf-8` are ignored. `None` for anything else.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        MEDIA_TYPES
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(media))
            .map(|&(_, t)| t)
    }

    /// The media type this patch type is sent as.
    pub fn content_type(self) -> &'static str {
        MEDIA_TYPES
            .iter()
            .find(|&&(_, t)| t == self)
            .map(|&(m, _)| m)
            .unwrap_or_default()
    }
}

/// Why a patch was not applied. Details are part of the message because the
/// message is what kubectl prints. Kubernetes answers 400 for a malformed patch,
/// 422 for one that does not apply, 415 for [`PatchError::Unsupported`].
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON (400).
    #[error("the patch is not valid JSON: {0}")]
    Body(serde_json::Error),
    /// A JSON patch that is not a list of operations (400).
    #[error("invalid JSON patch: {0}")]
    JsonPatchFormat(serde_json::Error),
    /// A JSON patch operation failed: a `test` that did not match, a path
    /// that does not exist (422).
    #[error("the JSON patch could not be applied: {0}")]
    JsonPatchFailed(json_patch::PatchError),
    /// A merge or strategic merge patch whose body is not an object (400).
    #[error("the patch is not a JSON object")]
    NotAnObject,
    /// A strategic merge patch the Kubernetes rules reject (400).
    #[error("invalid strategic merge patch: {0}")]
    Strategic(String),
    /// The patch turned the object into something else (422).
    #[error("the patched document is not a JSON object")]
    ResultNotAnObject,
    /// Server-side apply (415, on which kubectl prints "Server-side apply not
    /// available").
    #[error(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, \
         application/strategic-merge-patch+json (server-side apply is not available)"
    )]
    Unsupported,
}

/// Applies `patch` to `original`, an object of `kind` (e.g. `Deployment`),
/// and returns the patched object.
pub fn apply(
    patch_type: PatchType,
    original: &Value,
    patch: &[u8],
    kind: &str,
) -> Result<Value, PatchError> {
    let patched = match patch_type {
        PatchType::Apply => return Err(PatchError::Unsupported),
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_value(parse(patch)?).map_err(PatchError::JsonPatchFormat)?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops).map_err(PatchError::JsonPatchFailed)?;
            doc
        }
        PatchType::Merge => merge(original, object(parse(patch)?)?),
        PatchType::StrategicMerge => {
            let patch = object(parse(patch)?)?;
            match schema_of(kind) {
                None => merge(original, patch),
                Some(schema) => {
                    let original = original.as_object().cloned().unwrap_or_default();
                    Value::Object(merge_map(Some(original), patch, schema)?.unwrap_or_default())
                }
            }
        }
    };
    if !patched.is_object() {
        return Err(PatchError::ResultNotAnObject);
    }
    Ok(patched)
}

fn parse(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(PatchError::Body)
}

fn object(patch: Value) -> Result<Map<String, Value>, PatchError> {
    match patch {
        Value::Object(map) => Ok(map),
        _ => Err(PatchError::NotAnObject),
    }
}

fn merge(original: &Value, patch: Map<String, Value>) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &Value::Object(patch));
    doc
}

// ---------------------------------------------------------------------------
// The schema: which fields merge how.
// ---------------------------------------------------------------------------

/// How one field is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    /// Maps merge key by key and lists are replaced: every unlisted field.
    Default,
    /// Replaced whole (`+listType=atomic`); listed to record the decision.
    Atomic,
    /// A list of objects merged by this key (`patchStrategy:"merge"` with a
    /// `patchMergeKey`).
    Keyed(&'static str),
    /// A list of scalars merged as an ordered set (`patchStrategy:"merge"`
    /// without a key).
    Set,
}

/// A field with patch metadata, and the fields of its value (of each item,
/// for a list).
#[derive(Debug)]
struct Field {
    name: &'static str,
    strategy: Strategy,
    fields: Schema,
}

/// The fields of one Go struct that carry patch metadata.
type Schema = &'static [Field];

const fn nested(name: &'static str, fields: Schema) -> Field {
    Field {
        name,
        strategy: Strategy::Default,
        fields,
    }
}

const fn keyed(name: &'static str, key: &'static str, fields: Schema) -> Field {
    Field {
        name,
        strategy: Strategy::Keyed(key),
        fields,
    }
}

const fn set(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Set,
        fields: &[],
    }
}

const fn atomic(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Atomic,
        fields: &[],
    }
}

/// What an unlisted field gets.
const UNLISTED: Field = nested("", &[]);

// metav1.ObjectMeta, under every kind's `metadata` and every pod template's.
const OBJECT_META: Schema = &[set("finalizers"), keyed("ownerReferences", "uid", &[])];
const METADATA: Field = nested("metadata", OBJECT_META);

// core/v1 Container (and EphemeralContainer).
const CONTAINER: Schema = &[
    keyed("ports", "containerPort", &[]),
    keyed("env", "name", &[]),
    atomic("envFrom"),
    keyed("volumeMounts", "mountPath", &[]),
    keyed("volumeDevices", "devicePath", &[]),
];

// core/v1 PodSpec. `volumes` and `resourceClaims` are also `retainKeys`: the
// client sends `$retainKeys`, which is honoured wherever it appears.
const POD_SPEC: Schema = &[
    keyed("containers", "name", CONTAINER),
    keyed("initContainers", "name", CONTAINER),
    keyed("ephemeralContainers", "name", CONTAINER),
    keyed("volumes", "name", &[]),
    keyed("imagePullSecrets", "name", &[]),
    keyed("hostAliases", "ip", &[]),
    keyed("topologySpreadConstraints", "topologyKey", &[]),
    keyed("resourceClaims", "name", &[]),
    keyed("schedulingGates", "name", &[]),
    atomic("tolerations"),
];

// core/v1 PodTemplateSpec: wherever a pod template is embedded, it is this.
const POD_TEMPLATE_SPEC: Schema = &[METADATA, nested("spec", POD_SPEC)];

const CONDITIONS: Field = keyed("conditions", "type", &[]);

/// A status whose only merge list is `conditions`, by `type`: Deployment,
/// ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController, Service,
/// Namespace, PersistentVolumeClaim, HorizontalPodAutoscaler, ...
const STATUS_CONDITIONS: Schema = &[CONDITIONS];

const POD_STATUS: Schema = &[
    CONDITIONS,
    keyed("podIPs", "ip", &[]),
    keyed("hostIPs", "ip", &[]),
    keyed("resourceClaimStatuses", "name", &[]),
];

/// A spec that embeds a pod template at `template` (Deployment, ReplicaSet,
/// StatefulSet, DaemonSet, Job, ReplicationController).
const TEMPLATE_SPEC: Schema = &[nested("template", POD_TEMPLATE_SPEC)];
const JOB_TEMPLATE_SPEC: Schema = &[METADATA, nested("spec", TEMPLATE_SPEC)];
const CRON_JOB_SPEC: Schema = &[nested("jobTemplate", JOB_TEMPLATE_SPEC)];
const SERVICE_SPEC: Schema = &[keyed("ports", "port", &[])];
const NODE_SPEC: Schema = &[set("podCIDRs"), atomic("taints")];
const NODE_STATUS: Schema = &[
    CONDITIONS,
    keyed("addresses", "type", &[]),
    atomic("images"),
];

// Top-level shapes.
const PLAIN: Schema = &[METADATA];
const WITH_CONDITIONS: Schema = &[METADATA, nested("status", STATUS_CONDITIONS)];
const WORKLOAD: Schema = &[
    METADATA,
    nested("spec", TEMPLATE_SPEC),
    nested("status", STATUS_CONDITIONS),
];
const POD: Schema = &[
    METADATA,
    nested("spec", POD_SPEC),
    nested("status", POD_STATUS),
];
const POD_TEMPLATE: Schema = &[METADATA, nested("template", POD_TEMPLATE_SPEC)];
const CRON_JOB: Schema = &[METADATA, nested("spec", CRON_JOB_SPEC)];
const SERVICE: Schema = &[
    METADATA,
    nested("spec", SERVICE_SPEC),
    nested("status", STATUS_CONDITIONS),
];
const NODE: Schema = &[
    METADATA,
    nested("spec", NODE_SPEC),
    nested("status", NODE_STATUS),
];
const SERVICE_ACCOUNT: Schema = &[METADATA, keyed("secrets", "name", &[])];
const ENDPOINTS: Schema = &[METADATA, atomic("subsets")];
const COMPONENT_STATUS: Schema = &[METADATA, CONDITIONS];
const BINDING: Schema = &[METADATA, atomic("subjects")];
const WEBHOOKS: Schema = &[METADATA, keyed("webhooks", "name", &[])];

/// The kinds Kubernetes has Go types for, so patches them strategically, and
/// the fields of each. The schema is by type, not by path, so a pod template
/// gets the same rules at `spec.template` (Deployment), `template`
/// (PodTemplate) or `spec.jobTemplate.spec.template` (CronJob).
const KINDS: &[(&str, Schema)] = &[
    ("Pod", POD),
    ("PodTemplate", POD_TEMPLATE),
    ("Deployment", WORKLOAD),
    ("ReplicaSet", WORKLOAD),
    ("StatefulSet", WORKLOAD),
    ("DaemonSet", WORKLOAD),
    ("Job", WORKLOAD),
    ("ReplicationController", WORKLOAD),
    ("CronJob", CRON_JOB),
    ("Service", SERVICE),
    ("Node", NODE),
    ("ServiceAccount", SERVICE_ACCOUNT),
    ("Endpoints", ENDPOINTS),
    ("ComponentStatus", COMPONENT_STATUS),
    ("Namespace", WITH_CONDITIONS),
    ("PersistentVolumeClaim", WITH_CONDITIONS),
    ("HorizontalPodAutoscaler", WITH_CONDITIONS),
    ("PodDisruptionBudget", WITH_CONDITIONS),
    ("APIService", WITH_CONDITIONS),
    ("RoleBinding", BINDING),
    ("ClusterRoleBinding", BINDING),
    ("MutatingWebhookConfiguration", WEBHOOKS),
    ("ValidatingWebhookConfiguration", WEBHOOKS),
    ("Binding", PLAIN),
    ("CertificateSigningRequest", PLAIN),
    ("ClusterRole", PLAIN),
    ("ConfigMap", PLAIN),
    ("ControllerRevision", PLAIN),
    ("CSIDriver", PLAIN),
    ("CSINode", PLAIN),
    ("CustomResourceDefinition", PLAIN),
    ("EndpointSlice", PLAIN),
    ("Event", PLAIN),
    ("Ingress", PLAIN),
    ("IngressClass", PLAIN),
    ("Lease", PLAIN),
    ("LimitRange", PLAIN),
    ("NetworkPolicy", PLAIN),
    ("PersistentVolume", PLAIN),
    ("PriorityClass", PLAIN),
    ("ResourceQuota", PLAIN),
    ("Role", PLAIN),
    ("RuntimeClass", PLAIN),
    ("Secret", PLAIN),
    ("StorageClass", PLAIN),
    ("VolumeAttachment", PLAIN),
];

fn schema_of(kind: &str) -> Option<Schema> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|&(_, s)| s)
}

fn lookup(schema: Schema, name: &str) -> &'static Field {
    schema.iter().find(|f| f.name == name).unwrap_or(&UNLISTED)
}

// ---------------------------------------------------------------------------
// Strategic merge.
// ---------------------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

fn invalid(message: impl Into<String>) -> PatchError {
    PatchError::Strategic(message.into())
}

fn no_merge_key(item: &Map<String, Value>, key: &str) -> PatchError {
    invalid(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(item.clone())
    ))
}

/// Merges `patch` into a map whose fields are `schema`; `original` is `None`
/// when the patch brings a new value. Returns `None` when the value is to be
/// left out: a new map marked `$patch: delete`.
fn merge_map(
    original: Option<Map<String, Value>>,
    mut patch: Map<String, Value>,
    schema: Schema,
) -> Result<Option<Map<String, Value>>, PatchError> {
    let existed = original.is_some();
    let mut original = original.unwrap_or_default();
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => original.clear(),
            Some("delete") => return Ok(existed.then(Map::new)),
            Some("merge") => {}
            _ => return Err(invalid(format!("unknown patch type: {directive} in map"))),
        }
    }
    if let Some(keys) = patch.remove(RETAIN_KEYS) {
        retain_keys(&mut original, &patch, keys)?;
    }
    for directive in directive_keys(&patch, SET_ORDER) {
        let order = patch.remove(&directive).unwrap_or_default();
        let name = &directive[SET_ORDER.len()..];
        let list = patch.remove(name);
        set_element_order(&mut original, name, list, order, lookup(schema, name))?;
    }
    for directive in directive_keys(&patch, DELETE_FROM) {
        let Some(Value::Array(gone)) = patch.remove(&directive) else {
            return Err(invalid("invalid patch format of primitive list"));
        };
        if let Some(Value::Array(list)) = original.get_mut(&directive[DELETE_FROM.len()..]) {
            list.retain(|v| !gone.contains(v));
        }
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue; // an unknown directive: never stored
        }
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let field = lookup(schema, &key);
        match original.get_mut(&key) {
            Some(slot) => match merge_value(Some(slot.take()), value, field)? {
                Some(merged) => *slot = merged,
                None => {
                    original.remove(&key);
                }
            },
            None => {
                if let Some(merged) = merge_value(None, value, field)? {
                    original.insert(key, merged);
                }
            }
        }
    }
    Ok(Some(original))
}

/// `$retainKeys`: drops the keys of `original` not listed. Kubernetes also
/// rejects a patch that sets a key it does not list.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keys: Value,
) -> Result<(), PatchError> {
    let Value::Array(keys) = keys else {
        return Err(invalid("invalid patch format of retainKeys"));
    };
    let listed = |k: &str| keys.iter().any(|x| x.as_str() == Some(k));
    if let Some(k) = patch
        .iter()
        .find(|(k, v)| !v.is_null() && !k.starts_with('$') && !listed(k))
        .map(|(k, _)| k)
    {
        return Err(invalid(format!(
            "invalid patch format of retainKeys: {k:?} is not listed"
        )));
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// The keys of `patch` that start with `prefix`.
fn directive_keys(patch: &Map<String, Value>, prefix: &str) -> Vec<String> {
    patch
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect()
}

/// Merges one field's patch value into its original value (`None`: absent).
/// A value of another type is replaced, as if new. `None` leaves the field out.
fn merge_value(
    original: Option<Value>,
    patch: Value,
    field: &Field,
) -> Result<Option<Value>, PatchError> {
    Ok(match patch {
        Value::Object(patch) => {
            let original = match original {
                Some(Value::Object(o)) if field.strategy != Strategy::Atomic => Some(o),
                _ => None,
            };
            merge_map(original, patch, field.fields)?.map(Value::Object)
        }
        Value::Array(patch) => {
            let original = match original {
                Some(Value::Array(o)) => o,
                _ => Vec::new(),
            };
            Some(Value::Array(merge_list(original, patch, field)?))
        }
        scalar => Some(scalar),
    })
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &Field,
) -> Result<Vec<Value>, PatchError> {
    match field.strategy {
        Strategy::Keyed(key) => merge_keyed(original, patch, key, field),
        Strategy::Set => merge_set(original, patch, field.name),
        Strategy::Default | Strategy::Atomic => replace_list(patch, field.fields),
    }
}

/// A list taken whole: the directives in its items apply to nothing.
fn replace_list(patch: Vec<Value>, schema: Schema) -> Result<Vec<Value>, PatchError> {
    let mut list = Vec::with_capacity(patch.len());
    for item in patch {
        match item {
            Value::Object(item) => list.extend(merge_map(None, item, schema)?.map(Value::Object)),
            other => list.push(other),
        }
    }
    Ok(list)
}

/// Merges a list of objects by `key`: `{key: K, $patch: delete}` deletes the
/// items with K, an item `{$patch: replace}` replaces the whole list with the
/// other items, and other items merge into the item with their key or are
/// added.
fn merge_keyed(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    field: &Field,
) -> Result<Vec<Value>, PatchError> {
    let mut items = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(mut item) = item else {
            return Err(invalid(format!(
                "{}: list items must be objects merged by {key:?}",
                field.name
            )));
        };
        let Some(directive) = item.get(DIRECTIVE).cloned() else {
            items.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let id = item.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                original.retain(|o| o.get(key) != Some(id));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                item.remove(DIRECTIVE);
                if !item.is_empty() {
                    items.push(item);
                }
            }
            _ => {
                return Err(invalid(format!(
                    "unknown patch type: {directive} in map: {}",
                    Value::Object(item)
                )));
            }
        }
    }
    if replace {
        return replace_list(items.into_iter().map(Value::Object).collect(), field.fields);
    }
    let patch_ids = items
        .iter()
        .map(|item| {
            item.get(key)
                .cloned()
                .ok_or_else(|| no_merge_key(item, key))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let server_ids: Vec<Value> = original
        .iter()
        .filter_map(|o| o.get(key))
        .cloned()
        .collect();
    for (item, id) in items.into_iter().zip(&patch_ids) {
        match original.iter().position(|o| o.get(key) == Some(id)) {
            Some(i) => {
                let existing = match original[i].take() {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                let merged = merge_map(Some(existing), item, field.fields)?;
                original[i] = Value::Object(merged.unwrap_or_default());
            }
            None => original.extend(merge_map(None, item, field.fields)?.map(Value::Object)),
        }
    }
    Ok(order(original, &patch_ids, &server_ids, Some(key)))
}

/// Merges a list of scalars as an ordered set.
fn merge_set(
    original: Vec<Value>,
    patch: Vec<Value>,
    name: &str,
) -> Result<Vec<Value>, PatchError> {
    if original
        .iter()
        .chain(&patch)
        .any(|v| v.is_object() || v.is_array())
    {
        return Err(invalid(format!(
            "cannot merge lists without merge key for {name}"
        )));
    }
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for v in original.iter().chain(&patch) {
        if !merged.contains(v) {
            merged.push(v.clone());
        }
    }
    Ok(order(merged, &patch, &original, None))
}

/// `$setElementOrder/NAME`: merges the patch's `NAME` list (if any) and then
/// orders the list as `order` says.
fn set_element_order(
    original: &mut Map<String, Value>,
    name: &str,
    patch: Option<Value>,
    order_list: Value,
    field: &Field,
) -> Result<(), PatchError> {
    let bad_format = || invalid("invalid patch format of setElementOrder list");
    let Value::Array(order_list) = order_list else {
        return Err(bad_format());
    };
    let key = match field.strategy {
        Strategy::Keyed(key) => Some(key),
        _ => None,
    };
    let order_ids = order_list
        .iter()
        .map(|item| match (identity(item, key), item) {
            (Some(id), _) => Ok(id.clone()),
            (None, Value::Object(item)) => Err(no_merge_key(item, key.unwrap_or_default())),
            (None, _) => Err(bad_format()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let server = match original.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "$setElementOrder/{name}: {name} is not a list"
            )));
        }
    };
    let patch = match patch {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(_) => {
            return Err(invalid(format!(
                "$setElementOrder/{name}: {name} is not a list"
            )));
        }
    };
    if let Some(patch) = &patch {
        check_order(patch, &order_ids, key, name)?;
    }
    let merged = match (&server, patch) {
        (None, None) => return Ok(()),
        (Some(server), None) => server.clone(),
        (server, Some(patch)) => merge_list(server.clone().unwrap_or_default(), patch, field)?,
    };
    let server_ids: Vec<Value> = server
        .iter()
        .flatten()
        .filter_map(|item| identity(item, key).cloned())
        .collect();
    let ordered = order(merged, &order_ids, &server_ids, key);
    original.insert(name.to_owned(), Value::Array(ordered));
    Ok(())
}

/// Kubernetes rejects a patch list whose items are missing from
/// `$setElementOrder` or appear in another order.
fn check_order(
    patch: &[Value],
    order_ids: &[Value],
    key: Option<&str>,
    name: &str,
) -> Result<(), PatchError> {
    if order_ids.is_empty() {
        return Ok(());
    }
    let mut rest = order_ids;
    for item in patch.iter().filter(|item| item.get(DIRECTIVE).is_none()) {
        let Some(id) = identity(item, key) else {
            continue; // reported by the merge
        };
        match rest.iter().position(|o| o == id) {
            Some(i) => rest = &rest[i + 1..],
            None => {
                return Err(invalid(format!(
                    "the order in the patch list {name} doesn't match $setElementOrder/{name}"
                )));
            }
        }
    }
    Ok(())
}

/// What identifies a list item: its merge key's value, or the item itself.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

/// Orders a merged list as Kubernetes does (`normalizeElementOrder`): the
/// items named in `patch_order` follow it, the others keep their
/// `server_order`, and the two runs interleave by server order where both
/// items are known to the server. So a new item without `$setElementOrder`
/// lands before the items the patch does not name.
fn order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let pos = |list: &[Value], item: &Value| {
        identity(item, key).and_then(|id| list.iter().position(|x| x == id))
    };
    let (mut named, mut rest): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| pos(patch_order, item).is_some());
    named.sort_by_key(|item| pos(patch_order, item));
    rest.sort_by_key(|item| pos(server_order, item).unwrap_or(usize::MAX));
    let mut list = Vec::with_capacity(named.len() + rest.len());
    let mut named = named.into_iter().peekable();
    let mut rest = rest.into_iter().peekable();
    loop {
        let from_rest = match (rest.peek(), named.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(r), Some(n)) => matches!(
                (pos(server_order, r), pos(server_order, n)),
                (Some(r), Some(n)) if r < n
            ),
        };
        list.extend(if from_rest { rest.next() } else { named.next() });
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
        apply(
            PatchType::StrategicMerge,
            original,
            patch.to_string().as_bytes(),
            kind,
        )
    }

    /// (what, kind, original, patch, expected) for strategic merge patches.
    type Case = (&'static str, &'static str, Value, Value, Value);

    fn run(cases: Vec<Case>) {
        for (what, kind, original, patch, expected) in cases {
            match smp(kind, &original, &patch) {
                Ok(got) => assert_eq!(got, expected, "{what}"),
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    fn pod(containers: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    fn container_names(pod: &Value) -> Vec<&str> {
        let containers = pod["spec"]["containers"].as_array().unwrap();
        containers
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect()
    }

    #[test]
    fn content_types() {
        for (ct, want) in [
            ("application/json-patch+json", Some(PatchType::Json)),
            ("application/merge-patch+json", Some(PatchType::Merge)),
            (
                "application/strategic-merge-patch+json",
                Some(PatchType::StrategicMerge),
            ),
            ("application/apply-patch+yaml", Some(PatchType::Apply)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            (
                " Application/JSON-Patch+JSON ;charset=UTF-8",
                Some(PatchType::Json),
            ),
            ("application/json", None),
            ("application/yaml", None),
            ("", None),
        ] {
            assert_eq!(PatchType::from_content_type(ct), want, "{ct:?}");
            if let Some(t) = want {
                assert_eq!(PatchType::from_content_type(t.content_type()), want);
            }
        }
    }

    #[test]
    fn maps_and_nulls() {
        run(vec![
            (
                "maps merge recursively, null deletes",
                "ConfigMap",
                json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}}),
                json!({"metadata": {"labels": {"b": null, "c": "3"}}, "data": {"y": "2"}}),
                json!({"metadata": {"name": "c", "labels": {"a": "1", "c": "3"}}, "data": {"x": "1", "y": "2"}}),
            ),
            (
                "null for an absent key is dropped, also inside new maps",
                "ConfigMap",
                json!({"metadata": {"name": "c"}}),
                json!({"data": null, "metadata": {"annotations": {"a": "1", "b": null}}}),
                json!({"metadata": {"name": "c", "annotations": {"a": "1"}}}),
            ),
            (
                "a value of another type replaces",
                "ConfigMap",
                json!({"metadata": {"name": "c"}, "data": {"x": "1"}}),
                json!({"data": "flat"}),
                json!({"metadata": {"name": "c"}, "data": "flat"}),
            ),
            (
                "lists without a strategy are replaced",
                "Pod",
                json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "containers": [{"name": "c", "args": ["1", "2"]}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}], "containers": [{"name": "c", "args": ["3"]}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}], "containers": [{"name": "c", "args": ["3"]}]}}),
            ),
        ]);
    }

    #[test]
    fn merge_keys() {
        run(vec![
            (
                "containers merge by name",
                "Pod",
                pod(
                    json!([{"name": "a", "image": "x:1", "args": ["-v"]}, {"name": "b", "image": "y"}]),
                ),
                json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}}),
                pod(
                    json!([{"name": "a", "image": "x:2", "args": ["-v"]}, {"name": "b", "image": "y"}]),
                ),
            ),
            (
                "ports by containerPort, env by name, volumeMounts by mountPath, envFrom replaced",
                "Pod",
                pod(json!([{"name": "a",
                    "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "volumeMounts": [{"mountPath": "/data", "name": "d", "readOnly": true}],
                    "envFrom": [{"configMapRef": {"name": "one"}}]}])),
                json!({"spec": {"containers": [{"name": "a",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "B", "value": "3"}],
                    "volumeMounts": [{"mountPath": "/data", "name": "e"}],
                    "envFrom": [{"secretRef": {"name": "two"}}]}]}}),
                pod(json!([{"name": "a",
                    "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
                    "volumeMounts": [{"mountPath": "/data", "name": "e", "readOnly": true}],
                    "envFrom": [{"secretRef": {"name": "two"}}]}])),
            ),
            (
                "volumes, imagePullSecrets and hostAliases merge; initContainers by name",
                "Pod",
                json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}], "imagePullSecrets": [{"name": "r"}],
                    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}], "initContainers": [{"name": "i", "image": "x"}]}}),
                json!({"spec": {"volumes": [{"name": "w", "emptyDir": {}}], "imagePullSecrets": [{"name": "r"}],
                    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}], "initContainers": [{"name": "i", "image": "z"}]}}),
                json!({"spec": {"volumes": [{"name": "w", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
                    "imagePullSecrets": [{"name": "r"}], "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                    "initContainers": [{"name": "i", "image": "z"}]}}),
            ),
            (
                "ownerReferences merge by uid",
                "ReplicaSet",
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "d", "controller": true}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "blockOwnerDeletion": true}, {"uid": "2", "name": "e"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "d", "controller": true, "blockOwnerDeletion": true}, {"uid": "2", "name": "e"}]}}),
            ),
            (
                "service ports merge by port",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443, "targetPort": 8443, "name": "https"}]}}),
                json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}], "ports": [{"port": 443, "targetPort": 9443}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443, "targetPort": 9443, "name": "https"}]}}),
            ),
            (
                "pod status conditions merge by type",
                "Pod",
                json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}),
                json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True", "lastProbeTime": null}]}}),
                json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}}),
            ),
            (
                "deployment status conditions merge by type",
                "Deployment",
                json!({"status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}}),
            ),
            (
                "node addresses and conditions merge by type, taints are replaced",
                "Node",
                json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
                       "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}], "conditions": [{"type": "Ready", "status": "False"}]}}),
                json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                       "status": {"addresses": [{"type": "Hostname", "address": "n1"}], "conditions": [{"type": "Ready", "status": "True"}]}}),
                json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                       "status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}], "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
            (
                "rolebinding subjects are replaced",
                "RoleBinding",
                json!({"subjects": [{"kind": "User", "name": "a"}]}),
                json!({"subjects": [{"kind": "User", "name": "b"}]}),
                json!({"subjects": [{"kind": "User", "name": "b"}]}),
            ),
        ]);
    }

    #[test]
    fn pod_templates_anywhere() {
        let template = |image: &str| {
            json!({"metadata": {"labels": {"app": "a"}},
                   "spec": {"containers": [{"name": "main", "image": image, "env": [{"name": "A", "value": "1"}]}, {"name": "side", "image": "s"}]}})
        };
        let patch_template = json!({"spec": {"containers": [{"name": "main", "image": "new", "env": [{"name": "B", "value": "2"}]}]}});
        let merged = json!({"metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "main", "image": "new", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}, {"name": "side", "image": "s"}]}});
        let cases: Vec<(&str, &str)> = vec![
            ("Deployment", "/spec/template"),
            ("ReplicaSet", "/spec/template"),
            ("StatefulSet", "/spec/template"),
            ("DaemonSet", "/spec/template"),
            ("Job", "/spec/template"),
            ("ReplicationController", "/spec/template"),
            ("PodTemplate", "/template"),
            ("CronJob", "/spec/jobTemplate/spec/template"),
        ];
        for (kind, path) in cases {
            let wrap = |v: Value| {
                path.rsplit('/')
                    .filter(|key| !key.is_empty())
                    .fold(v, |inner, key| json!({ key: inner }))
            };
            let got = smp(kind, &wrap(template("old")), &wrap(patch_template.clone())).unwrap();
            assert_eq!(got, wrap(merged.clone()), "{kind}");
        }
    }

    #[test]
    fn directives() {
        run(vec![
            (
                "$patch: delete removes the item with that key",
                "Pod",
                pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
                json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
                pod(json!([{"name": "a"}, {"name": "c"}])),
            ),
            (
                "$patch: delete removes every duplicate; deleting a missing key is fine",
                "Pod",
                pod(json!([{"name": "a"}, {"name": "a", "image": "x"}, {"name": "b"}])),
                json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "z", "$patch": "delete"}]}}),
                pod(json!([{"name": "b"}])),
            ),
            (
                "a {$patch: replace} item replaces the list",
                "Pod",
                pod(json!([{"name": "a", "image": "x"}, {"name": "b"}])),
                json!({"spec": {"containers": [{"name": "c", "image": "y"}, {"$patch": "replace"}]}}),
                pod(json!([{"name": "c", "image": "y"}])),
            ),
            (
                "a lone {$patch: replace} empties the list",
                "Pod",
                pod(json!([{"name": "a"}])),
                json!({"spec": {"containers": [{"$patch": "replace"}]}}),
                pod(json!([])),
            ),
            (
                "$patch: replace on a map replaces it",
                "Deployment",
                json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "replicas": 1}}),
                json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"c": "3"}}}}),
                json!({"spec": {"selector": {"matchLabels": {"c": "3"}}, "replicas": 1}}),
            ),
            (
                "$patch: replace on a list item's map",
                "Pod",
                pod(
                    json!([{"name": "a", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]),
                ),
                json!({"spec": {"containers": [{"name": "a", "resources": {"$patch": "replace", "limits": {"cpu": "2"}}}]}}),
                pod(json!([{"name": "a", "resources": {"limits": {"cpu": "2"}}}])),
            ),
            (
                "$patch: delete on a map empties it; on a new map leaves it out",
                "Pod",
                json!({"spec": {"nodeSelector": {"a": "1"}}}),
                json!({"spec": {"nodeSelector": {"$patch": "delete"}, "affinity": {"$patch": "delete"}}}),
                json!({"spec": {"nodeSelector": {}}}),
            ),
            (
                "$patch: merge is the default",
                "Deployment",
                json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}}),
                json!({"spec": {"selector": {"$patch": "merge", "matchLabels": {"b": "2"}}}}),
                json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}}),
            ),
            (
                "$patch: merge items in a list are no-ops",
                "Pod",
                pod(json!([{"name": "a"}])),
                json!({"spec": {"containers": [{"$patch": "merge"}, {"name": "a", "image": "x"}]}}),
                pod(json!([{"name": "a", "image": "x"}])),
            ),
            (
                "$retainKeys drops unlisted keys (strategy switch as kubectl sends it)",
                "Deployment",
                json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
            (
                "$retainKeys in a volume item",
                "Pod",
                json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
                json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "v"}]}}),
                json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}}),
            ),
            (
                "$setElementOrder orders a merged list",
                "Pod",
                pod(json!([{"name": "a"}, {"name": "b"}])),
                json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "c"}, {"name": "b"}],
                                "containers": [{"name": "c", "image": "z"}]}}),
                pod(json!([{"name": "a"}, {"name": "c", "image": "z"}, {"name": "b"}])),
            ),
            (
                "$setElementOrder alone reorders what it names; the rest interleave by server order",
                "Pod",
                pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
                json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}}),
                pod(json!([{"name": "b"}, {"name": "c"}, {"name": "a"}])),
            ),
            (
                "$setElementOrder may name items that are not there",
                "Pod",
                pod(json!([{"name": "a"}, {"name": "c"}])),
                json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
                                "containers": [{"name": "c", "image": "3"}, {"name": "a", "image": "1"}]}}),
                pod(json!([{"name": "c", "image": "3"}, {"name": "a", "image": "1"}])),
            ),
            (
                "$setElementOrder on a new list",
                "Pod",
                json!({"spec": {}}),
                json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                                "containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            ),
            (
                "no $setElementOrder: patch order first, server-only items interleave (Kubernetes' order)",
                "Pod",
                pod(json!([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}])),
                json!({"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}}),
                pod(
                    json!([{"name": "2", "image": "b"}, {"name": "3", "image": "c"}, {"name": "1", "image": "a"}]),
                ),
            ),
            (
                "no $setElementOrder: a new item goes before items the patch does not name",
                "Pod",
                pod(json!([{"name": "a"}])),
                json!({"spec": {"containers": [{"name": "new"}]}}),
                pod(json!([{"name": "new"}, {"name": "a"}])),
            ),
            (
                "no directive survives in new values",
                "Deployment",
                json!({"spec": {}}),
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "a"}],
                    "containers": [{"name": "a", "$setElementOrder/env": [{"name": "A"}],
                                    "env": [{"name": "A", "value": "1"}, {"name": "X", "$patch": "delete"}]},
                                   {"name": "gone", "$patch": "delete"}],
                    "volumes": [{"$retainKeys": ["name", "emptyDir"], "name": "v", "emptyDir": {}}],
                    "$deleteFromPrimitiveList/finalizers": ["x"],
                    "$unknownDirective": 1}}}}),
                json!({"spec": {"template": {"spec": {
                    "containers": [{"name": "a", "env": [{"name": "A", "value": "1"}]}],
                    "volumes": [{"name": "v", "emptyDir": {}}]}}}}),
            ),
        ]);
    }

    #[test]
    fn primitive_lists() {
        let meta = |f: Value| json!({"metadata": {"name": "x", "finalizers": f}});
        run(vec![
            (
                "finalizer added by a patch (Kubernetes puts it first)",
                "ConfigMap",
                meta(json!(["a"])),
                json!({"metadata": {"finalizers": ["b"]}}),
                meta(json!(["b", "a"])),
            ),
            (
                "finalizer added by kubectl apply",
                "ConfigMap",
                meta(json!(["a"])),
                json!({"metadata": {"$setElementOrder/finalizers": ["a", "b"], "finalizers": ["b"]}}),
                meta(json!(["a", "b"])),
            ),
            (
                "merge lists of scalars are sets",
                "ConfigMap",
                meta(json!(["a", "b"])),
                json!({"metadata": {"finalizers": ["b", "a", "a"]}}),
                meta(json!(["b", "a"])),
            ),
            (
                "an empty list changes nothing",
                "ConfigMap",
                meta(json!(["a"])),
                json!({"metadata": {"finalizers": []}}),
                meta(json!(["a"])),
            ),
            (
                "finalizer removed",
                "ConfigMap",
                meta(json!(["a", "b", "c"])),
                json!({"metadata": {"$setElementOrder/finalizers": ["a", "c"], "$deleteFromPrimitiveList/finalizers": ["b"]}}),
                meta(json!(["a", "c"])),
            ),
            (
                "removing from an absent list adds nothing",
                "ConfigMap",
                json!({"metadata": {"name": "x"}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                json!({"metadata": {"name": "x"}}),
            ),
            (
                "removing from a list without merge strategy",
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "args": ["1", "2", "3"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["2"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "args": ["1", "3"]}]}}),
            ),
            (
                "node podCIDRs merge as a set",
                "Node",
                json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}}),
                json!({"spec": {"$setElementOrder/podCIDRs": ["10.0.0.0/24", "fd00::/64"], "podCIDRs": ["fd00::/64"]}}),
                json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}),
            ),
        ]);
    }

    /// What `kubectl apply` sends for a Deployment (three-way patches, with
    /// the last-applied annotation, as kubectl generates them).
    #[test]
    fn kubectl_apply_patches() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "deployment.kubernetes.io/revision": "1"},
                         "finalizers": ["example.com/keep"], "resourceVersion": "7"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                                                           "env": [{"name": "A", "value": "1"}, {"name": "X", "value": "2"}],
                                                           "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                                           "restartPolicy": "Always"}}},
            "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
        });
        let with = |f: &dyn Fn(&mut Value)| {
            let mut d = deployment.clone();
            d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
                json!("{\"new\":true}");
            f(&mut d);
            d
        };
        let annotation =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}"});
        run(vec![
            (
                "image changed",
                "Deployment",
                deployment.clone(),
                json!({"metadata": {"annotations": annotation.clone()},
                       "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}],
                                                      "containers": [{"image": "nginx:1.26", "name": "app"}]}}}}),
                with(&|d| {
                    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26")
                }),
            ),
            (
                "container added",
                "Deployment",
                deployment.clone(),
                json!({"metadata": {"annotations": annotation.clone()},
                       "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                                                      "containers": [{"image": "busybox", "name": "sidecar", "args": ["sleep", "inf"]}]}}}}),
                with(&|d| {
                    d["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap()
                        .push(json!({"name": "sidecar", "image": "busybox", "args": ["sleep", "inf"]}));
                }),
            ),
            (
                "env var removed",
                "Deployment",
                deployment.clone(),
                json!({"metadata": {"annotations": annotation.clone()},
                       "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}],
                                                      "containers": [{"$setElementOrder/env": [{"name": "A"}],
                                                                      "env": [{"$patch": "delete", "name": "X"}],
                                                                      "name": "app"}]}}}}),
                with(&|d| {
                    d["spec"]["template"]["spec"]["containers"][0]["env"] =
                        json!([{"name": "A", "value": "1"}])
                }),
            ),
            (
                "label removed",
                "Deployment",
                deployment.clone(),
                json!({"metadata": {"annotations": annotation.clone(), "labels": {"tier": null}},
                       "spec": {"template": {"metadata": {"labels": {"tier": null}}}}}),
                with(&|d| {
                    d["metadata"]["labels"]
                        .as_object_mut()
                        .unwrap()
                        .remove("tier");
                    d["spec"]["template"]["metadata"]["labels"]
                        .as_object_mut()
                        .unwrap()
                        .remove("tier");
                }),
            ),
            (
                "strategy switched to Recreate",
                "Deployment",
                deployment.clone(),
                json!({"metadata": {"annotations": annotation.clone()},
                       "spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
                with(&|d| d["spec"]["strategy"] = json!({"type": "Recreate"})),
            ),
            (
                "finalizer removed and one added",
                "Deployment",
                deployment.clone(),
                json!({"metadata": {"annotations": annotation.clone(),
                                    "$setElementOrder/finalizers": ["example.com/new"],
                                    "$deleteFromPrimitiveList/finalizers": ["example.com/keep"],
                                    "finalizers": ["example.com/new"]}}),
                with(&|d| d["metadata"]["finalizers"] = json!(["example.com/new"])),
            ),
        ]);
    }

    #[test]
    fn unknown_kinds_get_a_merge_patch() {
        let original = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                              "spec": {"items": [{"name": "a", "size": 1}, {"name": "b"}], "keep": true}});
        let patch = json!({"spec": {"items": [{"name": "a", "size": 2}], "gone": null}});
        let got = smp("Widget", &original, &patch).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                   "spec": {"items": [{"name": "a", "size": 2}], "keep": true}})
        );
        // The same document as a known kind merges the list instead.
        let got = smp(
            "Pod",
            &pod(json!([{"name": "a"}, {"name": "b"}])),
            &json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
        )
        .unwrap();
        assert_eq!(container_names(&got), ["a", "b"]);
    }

    #[test]
    fn json_patches() {
        let deployment = json!({
            "metadata": {"name": "web", "annotations": {"deployment.kubernetes.io/revision": "2", "kubernetes.io/change-cause": "v2"}},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                                                 "spec": {"containers": [{"name": "app", "image": "v2"}]}}}
        });
        // `kubectl rollout undo`: the old ReplicaSet's template (pod-template-hash removed) and annotations.
        let undo = json!([
            {"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"app": "web"}},
                                                                  "spec": {"containers": [{"name": "app", "image": "v1"}]}}},
            {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "1", "kubernetes.io/change-cause": "v1"}}
        ]);
        let cases: Vec<(&str, Value, Result<Value, &str>)> = vec![
            (
                "rollout undo",
                undo,
                Ok(json!({
                    "metadata": {"name": "web", "annotations": {"deployment.kubernetes.io/revision": "1", "kubernetes.io/change-cause": "v1"}},
                    "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                                                         "spec": {"containers": [{"name": "app", "image": "v1"}]}}}
                })),
            ),
            (
                "test then add, remove",
                json!([{"op": "test", "path": "/spec/replicas", "value": 3},
                       {"op": "add", "path": "/spec/paused", "value": true},
                       {"op": "remove", "path": "/metadata/annotations/kubernetes.io~1change-cause"}]),
                Ok({
                    let mut d = deployment.clone();
                    d["spec"]["paused"] = json!(true);
                    d["metadata"]["annotations"]
                        .as_object_mut()
                        .unwrap()
                        .remove("kubernetes.io/change-cause");
                    d
                }),
            ),
            ("empty patch", json!([]), Ok(deployment.clone())),
            (
                "failing test",
                json!([{"op": "test", "path": "/spec/replicas", "value": 4}]),
                Err("could not be applied"),
            ),
            (
                "missing path",
                json!([{"op": "replace", "path": "/spec/nope/x", "value": 1}]),
                Err("could not be applied"),
            ),
            (
                "remove missing",
                json!([{"op": "remove", "path": "/status"}]),
                Err("could not be applied"),
            ),
            (
                "not a list",
                json!({"op": "add", "path": "/a", "value": 1}),
                Err("invalid JSON patch"),
            ),
            (
                "unknown op",
                json!([{"op": "frobnicate", "path": "/a"}]),
                Err("invalid JSON patch"),
            ),
            (
                "replace the root with a scalar",
                json!([{"op": "replace", "path": "", "value": 1}]),
                Err("not a JSON object"),
            ),
        ];
        for (what, patch, want) in cases {
            let got = apply(
                PatchType::Json,
                &deployment,
                patch.to_string().as_bytes(),
                "Deployment",
            );
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{what}"),
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{what}: {e}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn merge_patches() {
        let original = json!({"metadata": {"name": "web", "labels": {"app": "web", "old": "x"}},
                              "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "kubectl label env=prod old-",
                json!({"metadata": {"labels": {"env": "prod", "old": null}}}),
                json!({"metadata": {"name": "web", "labels": {"app": "web", "env": "prod"}},
                       "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            ),
            (
                "kubectl annotate",
                json!({"metadata": {"annotations": {"note": "hi"}}}),
                json!({"metadata": {"name": "web", "labels": {"app": "web", "old": "x"}, "annotations": {"note": "hi"}},
                       "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            ),
            (
                "lists are replaced, even for a known kind",
                json!({"spec": {"containers": [{"name": "c"}]}}),
                json!({"metadata": {"name": "web", "labels": {"app": "web", "old": "x"}},
                       "spec": {"containers": [{"name": "c"}]}}),
            ),
        ];
        for (what, patch, want) in cases {
            let got = apply(
                PatchType::Merge,
                &original,
                patch.to_string().as_bytes(),
                "Pod",
            )
            .unwrap();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn malformed_patches() {
        let original = pod(json!([{"name": "a"}, {"name": "b"}]));
        let cases: Vec<(&str, PatchType, &str, &str)> = vec![
            ("json: not JSON", PatchType::Json, "[{", "not valid JSON"),
            (
                "merge: not JSON",
                PatchType::Merge,
                "{\"a\":",
                "not valid JSON",
            ),
            (
                "strategic: not JSON",
                PatchType::StrategicMerge,
                "nope",
                "not valid JSON",
            ),
            (
                "strategic: empty body",
                PatchType::StrategicMerge,
                "",
                "not valid JSON",
            ),
            ("merge: a list", PatchType::Merge, "[]", "not a JSON object"),
            (
                "merge: a string",
                PatchType::Merge,
                "\"x\"",
                "not a JSON object",
            ),
            (
                "strategic: a list",
                PatchType::StrategicMerge,
                "[{\"op\":\"add\"}]",
                "not a JSON object",
            ),
            (
                "strategic (unknown kind): a list",
                PatchType::StrategicMerge,
                "[]",
                "not a JSON object",
            ),
            (
                "apply",
                PatchType::Apply,
                "{}",
                "server-side apply is not available",
            ),
            (
                "missing merge key",
                PatchType::StrategicMerge,
                r#"{"spec":{"containers":[{"image":"x"}]}}"#,
                "does not contain declared merge key: name",
            ),
            (
                "delete without merge key",
                PatchType::StrategicMerge,
                r#"{"spec":{"containers":[{"$patch":"delete"}]}}"#,
                "does not contain declared merge key: name",
            ),
            (
                "unknown $patch in a map",
                PatchType::StrategicMerge,
                r#"{"spec":{"$patch":"explode"}}"#,
                "unknown patch type: \"explode\"",
            ),
            (
                "unknown $patch in a list",
                PatchType::StrategicMerge,
                r#"{"spec":{"containers":[{"name":"a","$patch":"explode"}]}}"#,
                "unknown patch type",
            ),
            (
                "list items that are not objects",
                PatchType::StrategicMerge,
                r#"{"spec":{"containers":["a"]}}"#,
                "containers: list items must be objects",
            ),
            (
                "objects in a set",
                PatchType::StrategicMerge,
                r#"{"metadata":{"finalizers":[{"a":1}]}}"#,
                "cannot merge lists without merge key for finalizers",
            ),
            (
                "$setElementOrder not matching the patch list",
                PatchType::StrategicMerge,
                r#"{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"name":"b"},{"name":"a"}]}}"#,
                "doesn't match $setElementOrder/containers",
            ),
            (
                "$setElementOrder missing a patched item",
                PatchType::StrategicMerge,
                r#"{"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":[{"name":"c"}]}}"#,
                "doesn't match",
            ),
            (
                "$setElementOrder not a list",
                PatchType::StrategicMerge,
                r#"{"spec":{"$setElementOrder/containers":{"name":"a"}}}"#,
                "invalid patch format of setElementOrder list",
            ),
            (
                "$setElementOrder item without merge key",
                PatchType::StrategicMerge,
                r#"{"spec":{"$setElementOrder/containers":[{"image":"a"}]}}"#,
                "does not contain declared merge key",
            ),
            (
                "$deleteFromPrimitiveList not a list",
                PatchType::StrategicMerge,
                r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}}"#,
                "invalid patch format of primitive list",
            ),
            (
                "$retainKeys not a list",
                PatchType::StrategicMerge,
                r#"{"spec":{"$retainKeys":"containers"}}"#,
                "invalid patch format of retainKeys",
            ),
            (
                "$retainKeys not naming a patched key",
                PatchType::StrategicMerge,
                r#"{"spec":{"$retainKeys":["containers"],"nodeName":"n"}}"#,
                "invalid patch format of retainKeys",
            ),
        ];
        for (what, patch_type, body, want) in cases {
            let kind = if what.contains("unknown kind") {
                "Widget"
            } else {
                "Pod"
            };
            match apply(patch_type, &original, body.as_bytes(), kind) {
                Ok(v) => panic!("{what}: accepted, gave {v}"),
                Err(e) => assert!(e.to_string().contains(want), "{what}: {e}"),
            }
        }
    }
}
