//! The verbs on resources: create, get, update, patch, delete, and the
//! `binding` and `scale` subresources. List and watch live in [`crate::list`].

use crate::list;
use crate::object::{self, from_stored, metadata_mut, to_stored};
use crate::request::{Params, Target, parse_object, read_body, wants_table};
use crate::resources::Resource;
use crate::status::{ApiError, Cause, success};
use crate::strategy::{self, Part};
use crate::{State, alloc, binding, patch, table, typed, validation};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{KeyValue, StoreError};

/// A JSON answer.
pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut resp = (code, serde_json::to_vec(value).unwrap_or_default()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Serves one request on a resource path.
pub async fn handle(
    state: Arc<State>,
    method: Method,
    t: Target,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let table = wants_table(&headers);
    match (&method, t.name.is_some(), t.sub.as_deref()) {
        (&Method::GET, false, None) if params.watch => list::watch(state, &t, &params, table).await,
        (&Method::GET, false, None) => list::list(&state, &t, &params, table).await,
        (&Method::GET, true, None | Some("status")) => get(&state, &t, &params, table).await,
        (&Method::GET, true, Some("scale")) => get_scale(&state, &t).await,
        (&Method::POST, false, None) => {
            let obj = parse_object(&read_body(body).await?, &content_type)?;
            create(&state, &t, &params, obj).await
        }
        (&Method::POST, true, Some("binding")) => {
            let obj = parse_object(&read_body(body).await?, &content_type)?;
            binding::bind(&state, &t, &params, obj).await
        }
        (&Method::PUT, true, None | Some("status")) => {
            let obj = parse_object(&read_body(body).await?, &content_type)?;
            let part = if t.sub.is_some() {
                Part::Status
            } else {
                Part::Main
            };
            update(&state, &t, &params, Change::Replace(obj), part).await
        }
        (&Method::PATCH, true, None | Some("status")) => {
            let kind = patch::PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let bytes = read_body(body).await?;
            let part = if t.sub.is_some() {
                Part::Status
            } else {
                Part::Main
            };
            update(&state, &t, &params, Change::Patch(kind, bytes), part).await
        }
        (&Method::PUT | &Method::PATCH, true, Some("scale")) => {
            let bytes = read_body(body).await?;
            let change = if method == Method::PUT {
                ScaleChange::Replace(parse_object(&bytes, &content_type)?)
            } else {
                let kind = patch::PatchType::from_content_type(&content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
                ScaleChange::Patch(kind, bytes)
            };
            update_scale(&state, &t, &params, change).await
        }
        (&Method::DELETE, true, None) => {
            let bytes = read_body(body).await?;
            let opts = if bytes.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                parse_object(&bytes, &content_type)?
            };
            delete(&state, &t, &params, &opts).await
        }
        (&Method::DELETE, false, None) => {
            let bytes = read_body(body).await?;
            let opts = if bytes.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                parse_object(&bytes, &content_type)?
            };
            delete_collection(&state, &t, &params, &opts).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {}{})",
            t.res.plural,
            t.sub
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default()
        ))),
    }
}

fn name_of(t: &Target) -> &str {
    t.name.as_deref().unwrap_or("")
}

fn store_err<'a>(t: &Target, name: &'a str) -> impl Fn(StoreError) -> ApiError + 'a {
    let res = t.res;
    move |e| ApiError::from_store(e, res.plural, res.group, name)
}

/// Reads one object, or 404.
pub async fn read(state: &State, t: &Target, name: &str) -> Result<(KeyValue, Value), ApiError> {
    let key = t.res.key(t.namespace.as_deref(), name);
    let kv = state
        .store
        .get(key.as_bytes())
        .await
        .map_err(store_err(t, name))?;
    let kv = kv.ok_or_else(|| ApiError::not_found(t.res.plural, t.res.group, name))?;
    let obj = from_stored(&kv)?;
    Ok((kv, obj))
}

async fn get(
    state: &State,
    t: &Target,
    _params: &Params,
    as_table: bool,
) -> Result<Response, ApiError> {
    let (kv, obj) = read(state, t, name_of(t)).await?;
    if as_table {
        let rv = kv.mod_revision.to_string();
        return Ok(json_response(
            StatusCode::OK,
            &table::table(t.res.kind, &[obj], &rv, None, None, jiff::Timestamp::now()),
        ));
    }
    Ok(json_response(StatusCode::OK, &obj))
}

/// The namespace must exist, and for new content must not be terminating.
async fn check_namespace(state: &State, t: &Target, creating: bool) -> Result<(), ApiError> {
    let Some(ns) = t.namespace.as_deref().filter(|_| t.res.namespaced) else {
        return Ok(());
    };
    let key = format!("namespaces/{ns}");
    let kv = state
        .store
        .get(key.as_bytes())
        .await
        .map_err(|e| ApiError::from_store(e, "namespaces", "", ns))?;
    let kv = kv.ok_or_else(|| ApiError::not_found("namespaces", "", ns))?;
    if creating {
        let nsobj = from_stored(&kv)?;
        if nsobj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
            return Err(ApiError::forbidden(format!(
                "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                crate::status::qualified(t.res.plural, t.res.group),
                name_of(t)
            )));
        }
    }
    Ok(())
}

/// Checks `apiVersion`/`kind` in a body against the resource, if given.
fn check_type(res: &Resource, obj: &Value) -> Result<(), ApiError> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the body ({kind}) does not match the resource ({})",
            res.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != res.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    Ok(())
}

/// Validation, then the typed round trip; returns the normalized object and
/// warnings for unknown fields (an error under `fieldValidation=Strict`).
fn validate(
    res: &Resource,
    obj: &Value,
    params: &Params,
) -> Result<(Value, Vec<String>), ApiError> {
    let name = object::name(obj).unwrap_or("").to_string();
    let mut causes = validation::metadata(res, obj);
    causes.extend(validation::kind(res, obj));
    if !causes.is_empty() {
        return Err(ApiError::invalid(res.kind, res.group, &name, causes));
    }
    let mut input = obj.clone();
    validation::normalize_quantities(&mut input);
    let typed = typed::round_trip(res.kind, &input).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })?;
    let unknown = validation::unknown_fields(&input, &typed);
    let mode = params.field_validation.as_deref().unwrap_or("Warn");
    if !unknown.is_empty() && mode == "Strict" {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            res.kind,
            res.version,
            res.kind,
            list.join(", ")
        )));
    }
    let warnings = if mode == "Warn" {
        unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect()
    } else {
        Vec::new()
    };
    Ok((typed, warnings))
}

pub async fn create(
    state: &State,
    t: &Target,
    params: &Params,
    mut obj: Value,
) -> Result<Response, ApiError> {
    let res = t.res;
    check_type(res, &obj)?;
    let body_ns = object::namespace(&obj).map(str::to_string);
    if res.namespaced {
        let ns = t.namespace.clone().ok_or_else(|| {
            ApiError::bad_request(format!("{} must be created in a namespace", res.plural))
        })?;
        if body_ns.as_deref().is_some_and(|b| b != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        metadata_mut(&mut obj).insert("namespace".into(), Value::String(ns));
    } else {
        metadata_mut(&mut obj).remove("namespace");
    }
    if object::name(&obj).is_none()
        && let Some(prefix) = object::meta_str(&obj, "generateName").filter(|p| !p.is_empty())
    {
        let generated = object::generate_name(prefix);
        metadata_mut(&mut obj).insert("name".into(), Value::String(generated));
    }
    let name = object::name(&obj).unwrap_or("").to_string();
    let t = Target {
        name: Some(name.clone()),
        ..t.clone()
    };
    check_namespace(state, &t, true).await?;
    strategy::prepare_create(res, &mut obj);
    let (mut obj, warnings) = validate(res, &obj, params)?;
    let key = res.key(t.namespace.as_deref(), &name);
    if res.kind == "Service" && !params.dry_run {
        // Allocation needs the object to be new; a duplicate would claim for nothing.
        if state
            .store
            .get(key.as_bytes())
            .await
            .map_err(store_err(&t, &name))?
            .is_some()
        {
            return Err(ApiError::already_exists(res.plural, res.group, &name));
        }
        alloc::allocate(&state.store, &mut obj, &key).await?;
    }
    if params.dry_run {
        return Ok(with_warnings(
            json_response(StatusCode::CREATED, &obj),
            &warnings,
        ));
    }
    match state
        .store
        .create(key.as_bytes(), &to_stored(&obj), None)
        .await
    {
        Ok(rev) => {
            object::set_resource_version(&mut obj, rev);
            tracing::debug!(key, rev, "created");
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &obj),
                &warnings,
            ))
        }
        Err(e) => {
            if res.kind == "Service" {
                alloc::release_service(&state.store, &obj).await;
            }
            Err(store_err(&t, &name)(e))
        }
    }
}

/// How an update changes the object.
#[derive(Debug)]
pub enum Change {
    Replace(Value),
    Patch(patch::PatchType, Vec<u8>),
}

/// Read-modify-write with compare-and-swap, retried on conflicts the client
/// did not ask to see (no `resourceVersion` precondition).
pub async fn update(
    state: &State,
    t: &Target,
    params: &Params,
    change: Change,
    part: Part,
) -> Result<Response, ApiError> {
    let res = t.res;
    let name = name_of(t).to_string();
    if let Change::Replace(obj) = &change {
        check_type(res, obj)?;
        if let Some(body_name) = object::name(obj)
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if res.namespaced
            && let Some(ns) = object::namespace(obj)
            && Some(ns) != t.namespace.as_deref()
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    for _ in 0..16 {
        let (kv, current) = read(state, t, &name).await?;
        let mut new = match &change {
            Change::Replace(obj) => obj.clone(),
            Change::Patch(kind, bytes) => patch::apply(*kind, &current, bytes, res.kind)
                .map_err(|e| patch_error(res, &name, e))?,
        };
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        if let Some(rv) = object::resource_version(&new)?
            && rv != kv.mod_revision
        {
            return Err(ApiError::modified(res.plural, res.group, &name));
        }
        let explicit_rv =
            matches!(change, Change::Replace(_)) && object::resource_version(&new)?.is_some();
        if object::name(&new).is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name(&new).unwrap_or("")
            )));
        }
        strategy::carry_over_allocations(res, &current, &mut new);
        let causes = strategy::prepare_update(res, &current, &mut new, part);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res.kind, res.group, &name, causes));
        }
        let (mut new, warnings) = validate(res, &new, params)?;
        if params.dry_run {
            object::set_resource_version(&mut new, kv.mod_revision);
            return Ok(with_warnings(
                json_response(StatusCode::OK, &new),
                &warnings,
            ));
        }
        let key = res.key(t.namespace.as_deref(), &name);
        // Finalization done: the last finalizer left an object being deleted.
        let finalized = object::meta_str(&new, "deletionTimestamp").is_some()
            && object::finalizers(&new).is_empty()
            && new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0;
        if finalized && !(res.kind == "Namespace" && spec_finalizers_left(&new)) {
            return match state
                .store
                .delete(key.as_bytes(), Some(kv.mod_revision))
                .await
            {
                Ok((rev, _)) => {
                    object::set_resource_version(&mut new, rev);
                    after_delete(state, res, &new).await;
                    Ok(json_response(StatusCode::OK, &new))
                }
                Err(StoreError::Conflict { .. }) if !explicit_rv => continue,
                Err(e) => Err(store_err(t, &name)(e)),
            };
        }
        if new == with_rv(&current, None) {
            // Nothing changed: answer with what is stored, write nothing.
            return Ok(with_warnings(
                json_response(StatusCode::OK, &current),
                &warnings,
            ));
        }
        match state
            .store
            .update(key.as_bytes(), &to_stored(&new), kv.mod_revision, None)
            .await
        {
            Ok(rev) => {
                object::set_resource_version(&mut new, rev);
                return Ok(with_warnings(
                    json_response(StatusCode::OK, &new),
                    &warnings,
                ));
            }
            Err(StoreError::Conflict { .. }) if !explicit_rv => continue,
            Err(e) => return Err(store_err(t, &name)(e)),
        }
    }
    Err(ApiError::modified(res.plural, res.group, &name))
}

/// Patch failures as Kubernetes answers them: 415 for server-side apply,
/// 422 for a patch that does not apply, 400 for a malformed one.
fn patch_error(res: &Resource, name: &str, e: patch::PatchError) -> ApiError {
    match e {
        patch::PatchError::Unsupported => {
            let mut err = ApiError::unsupported_media_type("application/apply-patch+yaml");
            err.message = e.to_string();
            err
        }
        patch::PatchError::JsonPatchFailed(_) | patch::PatchError::ResultNotAnObject => {
            let _ = (res, name);
            ApiError::unprocessable(e.to_string())
        }
        other => ApiError::bad_request(other.to_string()),
    }
}

fn spec_finalizers_left(ns: &Value) -> bool {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn with_rv(obj: &Value, rv: Option<&str>) -> Value {
    let mut o = obj.clone();
    match rv {
        Some(rv) => {
            metadata_mut(&mut o).insert("resourceVersion".into(), Value::String(rv.into()));
        }
        None => {
            metadata_mut(&mut o).remove("resourceVersion");
        }
    }
    o
}

/// Clean-up when an object is really gone.
async fn after_delete(state: &State, res: &Resource, obj: &Value) {
    if res.kind == "Service" {
        alloc::release_service(&state.store, obj).await;
    }
}

pub async fn delete(
    state: &State,
    t: &Target,
    params: &Params,
    opts: &Value,
) -> Result<Response, ApiError> {
    let res = t.res;
    let name = name_of(t).to_string();
    let dry_run = params.dry_run
        || opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace_opt = params
        .grace_period_seconds
        .or_else(|| opts.get("gracePeriodSeconds").and_then(Value::as_i64));
    let propagation = params.propagation_policy.clone().or_else(|| {
        opts.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if let Some(p) = &propagation
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "",
            "",
            vec![Cause::unsupported(
                "propagationPolicy",
                p,
                &["Foreground", "Background", "Orphan"],
            )],
        ));
    }
    for _ in 0..16 {
        let (kv, current) = read(state, t, &name).await?;
        if let Some(pre) = opts.get("preconditions") {
            if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
                let actual = object::meta_str(&current, "uid").unwrap_or("");
                if uid != actual {
                    return Err(ApiError::conflict(
                        res.plural,
                        res.group,
                        &name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
                let actual = kv.mod_revision.to_string();
                if rv != actual {
                    return Err(ApiError::conflict(
                        res.plural,
                        res.group,
                        &name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                        ),
                    ));
                }
            }
        }
        let mut next = current.clone();
        let mut finalizers = object::finalizers(&current);
        match propagation.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into())
            }
            _ => {}
        }
        // Pods bound to a node end gracefully: the kubelet confirms, or the grace runs out.
        let grace = if res.kind == "Pod" {
            let bound = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                current.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            let default = current
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            if bound && !terminal {
                grace_opt.unwrap_or(default).max(0)
            } else {
                0
            }
        } else {
            0
        };
        let already = object::meta_str(&current, "deletionTimestamp").is_some();
        let key = res.key(t.namespace.as_deref(), &name);
        if res.kind == "Namespace" {
            if already {
                return Ok(json_response(StatusCode::OK, &current));
            }
            let meta = metadata_mut(&mut next);
            meta.insert("deletionTimestamp".into(), Value::String(object::now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            next["status"]["phase"] = json!("Terminating");
        } else if grace > 0 || !finalizers.is_empty() {
            let old_grace = current
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if already
                && old_grace.is_some_and(|g| g <= grace)
                && object::finalizers(&current) == finalizers
            {
                return Ok(json_response(StatusCode::OK, &current));
            }
            let meta = metadata_mut(&mut next);
            meta.insert(
                "deletionTimestamp".into(),
                Value::String(object::now_plus(grace)),
            );
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            meta.insert("finalizers".into(), json!(finalizers));
        } else {
            if dry_run {
                return Ok(json_response(StatusCode::OK, &current));
            }
            match state
                .store
                .delete(key.as_bytes(), Some(kv.mod_revision))
                .await
            {
                Ok(_) => {
                    after_delete(state, res, &current).await;
                    let uid = object::meta_str(&current, "uid").unwrap_or("");
                    return Ok(json_response(
                        StatusCode::OK,
                        &success(
                            json!({"name": name, "group": res.group, "kind": res.plural, "uid": uid}),
                        ),
                    ));
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(store_err(t, &name)(e)),
            }
        }
        if dry_run {
            return Ok(json_response(StatusCode::OK, &next));
        }
        match state
            .store
            .update(key.as_bytes(), &to_stored(&next), kv.mod_revision, None)
            .await
        {
            Ok(rev) => {
                object::set_resource_version(&mut next, rev);
                return Ok(json_response(StatusCode::OK, &next));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(t, &name)(e)),
        }
    }
    Err(ApiError::modified(res.plural, res.group, &name))
}

async fn delete_collection(
    state: &State,
    t: &Target,
    params: &Params,
    opts: &Value,
) -> Result<Response, ApiError> {
    let items = list::matching(state, t, params).await?;
    let mut deleted = Vec::new();
    for obj in items {
        let name = object::name(&obj).unwrap_or("").to_string();
        let target = Target {
            name: Some(name),
            namespace: object::namespace(&obj).map(str::to_string),
            ..t.clone()
        };
        match delete(state, &target, params, opts).await {
            Ok(_) => deleted.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = state
        .store
        .current_revision()
        .await
        .map_err(store_err(t, ""))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", t.res.kind),
            "apiVersion": t.res.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": deleted,
        }),
    ))
}

/// The `autoscaling/v1` Scale view of a workload.
fn scale_of(obj: &Value, rv: i64) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object::name(obj),
            "namespace": object::namespace(obj),
            "uid": object::meta_str(obj, "uid"),
            "resourceVersion": rv.to_string(),
            "creationTimestamp": object::meta_str(obj, "creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    })
}

async fn get_scale(state: &State, t: &Target) -> Result<Response, ApiError> {
    let (kv, obj) = read(state, t, name_of(t)).await?;
    Ok(json_response(
        StatusCode::OK,
        &scale_of(&obj, kv.mod_revision),
    ))
}

#[derive(Debug)]
pub enum ScaleChange {
    Replace(Value),
    Patch(patch::PatchType, Vec<u8>),
}

async fn update_scale(
    state: &State,
    t: &Target,
    params: &Params,
    change: ScaleChange,
) -> Result<Response, ApiError> {
    let name = name_of(t).to_string();
    for _ in 0..16 {
        let (kv, obj) = read(state, t, &name).await?;
        let current = scale_of(&obj, kv.mod_revision);
        let wanted = match &change {
            ScaleChange::Replace(s) => s.clone(),
            ScaleChange::Patch(kind, bytes) => patch::apply(*kind, &current, bytes, "Scale")
                .map_err(|e| patch_error(t.res, &name, e))?,
        };
        if let Some(rv) = object::resource_version(&wanted)?
            && rv != kv.mod_revision
        {
            return Err(ApiError::modified(t.res.plural, t.res.group, &name));
        }
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                "autoscaling",
                &name,
                vec![Cause::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut next = obj.clone();
        next["spec"]["replicas"] = json!(replicas);
        if next != obj {
            let generation = obj
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                + 1;
            metadata_mut(&mut next).insert("generation".into(), json!(generation));
        }
        if params.dry_run {
            return Ok(json_response(
                StatusCode::OK,
                &scale_of(&next, kv.mod_revision),
            ));
        }
        let key = t.res.key(t.namespace.as_deref(), &name);
        match state
            .store
            .update(key.as_bytes(), &to_stored(&next), kv.mod_revision, None)
            .await
        {
            Ok(rev) => return Ok(json_response(StatusCode::OK, &scale_of(&next, rev))),
            Err(StoreError::Conflict { .. }) if object::resource_version(&wanted)?.is_none() => {
                continue;
            }
            Err(e) => return Err(store_err(t, &name)(e)),
        }
    }
    Err(ApiError::modified(t.res.plural, t.res.group, &name))
}
