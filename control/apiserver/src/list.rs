//! List (paged, at a consistent revision, filtered by selectors) and watch
//! (a chunked stream of JSON events resuming from a `resourceVersion`).

use crate::object::{self, from_stored};
use crate::request::{Params, Target};
use crate::rest::json_response;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::{State, table};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use store::{KeyValue, RangeRequest, Revision, WatchEvent};

/// The selectors of a request, applied to objects.
#[derive(Debug)]
pub struct Filter {
    kind: &'static str,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    /// True when it selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn new(kind: &'static str, params: &Params) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(&params.label_selector)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(&params.field_selector)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(field) = fields.unsupported_field(kind) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {field}"
            )));
        }
        Ok(Filter {
            kind,
            labels,
            fields,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let empty = Map::new();
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.labels.matches(labels) && self.fields.matches_object(self.kind, obj)
    }
}

/// What a continue token carries: the revision of the first page and the
/// key to start from.
fn encode_continue(rev: Revision, start: &[u8]) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": String::from_utf8_lossy(start)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, Vec<u8>), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: the token is malformed");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if !start.starts_with(prefix) {
        return Err(ApiError::bad_request(
            "continue key is not valid: it is for another list",
        ));
    }
    Ok((rev, start.as_bytes().to_vec()))
}

/// One page of matching objects: items, the revision read at, and the
/// continue token if more follow.
async fn page(
    state: &State,
    t: &Target,
    params: &Params,
    filter: &Filter,
) -> Result<(Vec<Value>, Revision, Option<String>), ApiError> {
    let (kvs, revision, token) = page_raw(state, t, params, filter).await?;
    let items = kvs.iter().map(from_stored).collect::<Result<_, _>>()?;
    Ok((items, revision, token))
}

/// As [`page`], with the objects as stored: a list without selectors never
/// parses them.
async fn page_raw(
    state: &State,
    t: &Target,
    params: &Params,
    filter: &Filter,
) -> Result<(Vec<KeyValue>, Revision, Option<String>), ApiError> {
    let prefix = t.res.list_prefix(t.namespace.as_deref());
    let (mut revision, mut start) = match &params.continue_token {
        Some(token) => {
            let (rev, start) = decode_continue(token, &prefix)?;
            (rev, Some(start))
        }
        None => {
            let rv = params.resource_version.as_deref().filter(|r| !r.is_empty());
            match (rv, params.resource_version_match.as_deref()) {
                (Some(rv), Some("Exact")) => (object::parse_rv(rv)?, None),
                (Some(rv), _) if rv != "0" => {
                    let wanted = object::parse_rv(rv)?;
                    let current = state
                        .store
                        .current_revision()
                        .await
                        .map_err(|e| ApiError::from_store(e, t.res.plural, t.res.group, ""))?;
                    if wanted > current {
                        return Err(ApiError::timeout(format!(
                            "Too large resource version: {wanted}, current: {current}"
                        )));
                    }
                    (0, None)
                }
                (None, Some(m)) | (Some(_), Some(m)) if m != "NotOlderThan" && m != "Exact" => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch {m:?} is invalid"
                    )));
                }
                _ => (0, None),
            }
        }
    };
    let mut items = Vec::new();
    loop {
        let want = if params.limit == 0 {
            0
        } else {
            params.limit - items.len()
        };
        let resp = state
            .store
            .range(RangeRequest { prefix: prefix.clone().into_bytes(), start: start.clone(), limit: want, revision })
            .await
            .map_err(|e| match e {
                store::StoreError::Compacted { .. } if params.continue_token.is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                other => ApiError::from_store(other, t.res.plural, t.res.group, ""),
            })?;
        revision = resp.revision;
        let next_start = resp.kvs.last().map(|kv| next_key(&kv.key));
        for kv in resp.kvs {
            if filter.is_empty() || filter.matches(&from_stored(&kv)?) {
                items.push(kv);
            }
        }
        if !resp.more {
            return Ok((items, revision, None));
        }
        start = next_start;
        if params.limit > 0 && items.len() >= params.limit {
            let token = encode_continue(revision, start.as_deref().unwrap_or_default());
            return Ok((items, revision, Some(token)));
        }
    }
}

fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

pub async fn list(
    state: &State,
    t: &Target,
    params: &Params,
    as_table: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::new(t.res.kind, params)?;
    if !as_table {
        let (kvs, revision, token) = page_raw(state, t, params, &filter).await?;
        return Ok(raw_list(t, &kvs, revision, token.as_deref()));
    }
    let (items, revision, token) = page(state, t, params, &filter).await?;
    let rv = revision.to_string();
    Ok(json_response(
        StatusCode::OK,
        &table::table(
            t.res.kind,
            &items,
            &rv,
            token.as_deref(),
            None,
            jiff::Timestamp::now(),
        ),
    ))
}

/// A list response assembled from the stored bytes, each object given its
/// `resourceVersion` in place: no object is parsed or re-encoded.
fn raw_list(t: &Target, kvs: &[KeyValue], revision: Revision, token: Option<&str>) -> Response {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = token {
        meta["continue"] = json!(token);
    }
    let head = format!(
        r#"{{"kind":"{}List","apiVersion":"{}","metadata":{},"items":["#,
        t.res.kind,
        t.res.api_version(),
        meta
    );
    let size = head.len() + kvs.iter().map(|kv| kv.value.len() + 40).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        with_resource_version(&kv.value, kv.mod_revision, &mut body);
    }
    body.extend_from_slice(b"]}");
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Appends a stored object with `"resourceVersion"` added first in its
/// metadata, spliced after [`object::STORED_PREFIX`]; anything stored in
/// another shape is parsed instead.
fn with_resource_version(stored: &[u8], rev: Revision, out: &mut Vec<u8>) {
    let prefix = object::STORED_PREFIX;
    if stored.starts_with(prefix) {
        out.extend_from_slice(prefix);
        out.extend_from_slice(format!(r#""resourceVersion":"{rev}""#).as_bytes());
        if stored.get(prefix.len()) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(&stored[prefix.len()..]);
    } else {
        let mut v: Value = serde_json::from_slice(stored).unwrap_or(Value::Null);
        if v.is_object() {
            object::set_resource_version(&mut v, rev);
        }
        out.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
    }
}

/// Every object matching the request's selectors, at one revision.
pub async fn matching(state: &State, t: &Target, params: &Params) -> Result<Vec<Value>, ApiError> {
    let filter = Filter::new(t.res.kind, params)?;
    let all = Params {
        limit: 0,
        continue_token: None,
        ..params.clone()
    };
    Ok(page(state, t, &all, &filter).await?.0)
}

/// How one store change looks to a watcher with a filter.
fn to_watch_event(
    filter: &Filter,
    event: &WatchEvent,
) -> Result<Option<(&'static str, Value)>, ApiError> {
    Ok(match event {
        WatchEvent::Put { kv, prev } => {
            let obj = from_stored(kv)?;
            let now = filter.matches(&obj);
            let before = match prev {
                Some(p) => Some(filter.matches(&from_stored(p)?)),
                None => None,
            };
            match (before, now) {
                (None | Some(false), true) => Some(("ADDED", obj)),
                (Some(true), true) => Some(("MODIFIED", obj)),
                (Some(true), false) => Some(("DELETED", obj)),
                _ => None,
            }
        }
        WatchEvent::Delete { prev, revision } => {
            let mut obj = from_stored(&KeyValue {
                mod_revision: *revision,
                ..prev.clone()
            })?;
            object::set_resource_version(&mut obj, *revision);
            filter.matches(&obj).then_some(("DELETED", obj))
        }
        WatchEvent::Progress { .. } => None,
    })
}

/// A change as a watch line straight from the stored bytes, for a watch with
/// no selectors (the informers' kind): the object gets its
/// `resourceVersion` spliced in as a list's items do, and is neither
/// decoded nor encoded. `None` for a filtered watch or another stored shape.
fn raw_line(filter: &Filter, event: &WatchEvent) -> Option<bytes::Bytes> {
    if !filter.is_empty() {
        return None;
    }
    let (ty, stored, rev) = match event {
        WatchEvent::Put { kv, prev: None } => ("ADDED", &kv.value, kv.mod_revision),
        WatchEvent::Put { kv, prev: Some(_) } => ("MODIFIED", &kv.value, kv.mod_revision),
        WatchEvent::Delete { prev, revision } => ("DELETED", &prev.value, *revision),
        WatchEvent::Progress { .. } => return None,
    };
    if !stored.starts_with(object::STORED_PREFIX) {
        return None;
    }
    let mut out = Vec::with_capacity(stored.len() + 64);
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(br#"","object":"#);
    with_resource_version(stored, rev, &mut out);
    out.extend_from_slice(b"}\n");
    Some(bytes::Bytes::from(out))
}

fn line(ty: &str, object: Value) -> bytes::Bytes {
    let mut out = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
    out.push(b'\n');
    bytes::Bytes::from(out)
}

/// A watch: initial state when asked for ("" or "0"), then every change
/// after the given `resourceVersion`, once, in order; 410 Expired as an
/// ERROR event when that revision was compacted.
pub async fn watch(
    state: Arc<State>,
    t: &Target,
    params: &Params,
    as_table: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::new(t.res.kind, params)?;
    check_watch_list(params)?;
    let prefix = t.res.list_prefix(t.namespace.as_deref());
    let rv = params.resource_version.as_deref().unwrap_or("");
    let watch_list = params.send_initial_events == Some(true);
    let wants_initial = match params.send_initial_events {
        Some(send) => send,
        None => rv.is_empty() || rv == "0",
    };
    let (initial, from) = if wants_initial {
        let (items, revision, _) = page(
            &state,
            t,
            &Params {
                limit: 0,
                continue_token: None,
                resource_version: None,
                ..params.clone()
            },
            &filter,
        )
        .await?;
        (items, revision + 1)
    } else if rv.is_empty() || rv == "0" {
        let now = state
            .store
            .current_revision()
            .await
            .map_err(|e| ApiError::from_store(e, t.res.plural, t.res.group, ""))?;
        (Vec::new(), now + 1)
    } else {
        (Vec::new(), object::parse_rv(rv)? + 1)
    };
    let initial_end = watch_list.then_some(from - 1);
    let res = t.res;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let stream = match state.store.watch(prefix.as_bytes(), from).await {
        Ok(s) => Some(s),
        Err(store::StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let err = ApiError::gone(format!(
                "too old resource version: {} ({compacted})",
                requested - 1
            ));
            let _ = tx.try_send(Ok(line("ERROR", err.to_status())));
            None
        }
        Err(e) => return Err(ApiError::from_store(e, res.plural, res.group, "")),
    };
    let timeout = Duration::from_secs(
        params
            .timeout_seconds
            .filter(|s| *s > 0)
            .unwrap_or(1800 + rand_secs(1800)),
    );
    let bookmarks = params.allow_watch_bookmarks;
    let span = tracing::debug_span!("watch", resource = res.plural, from);
    let render = move |obj: Value, first: bool| -> Value {
        if as_table {
            let rv = object::meta_str(&obj, "resourceVersion")
                .unwrap_or("")
                .to_string();
            let mut t = table::table(
                res.kind,
                std::slice::from_ref(&obj),
                &rv,
                None,
                None,
                jiff::Timestamp::now(),
            );
            if !first {
                t["columnDefinitions"] = json!([]);
            }
            t
        } else {
            obj
        }
    };
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let mut first = true;
            for obj in initial {
                if tx
                    .send(Ok(line("ADDED", render(obj, first))))
                    .await
                    .is_err()
                {
                    return;
                }
                first = false;
            }
            if let Some(revision) = initial_end {
                let end = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {
                    "resourceVersion": revision.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                }});
                if tx.send(Ok(line("BOOKMARK", end))).await.is_err() {
                    return;
                }
            }
            let Some(mut stream) = stream else { return };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => return,
                    () = tx.closed() => return,
                    item = stream.next() => {
                        let Some(item) = item else { return };
                        let out = match item {
                            Ok(WatchEvent::Progress { revision }) if bookmarks => {
                                let mut obj = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": revision.to_string()}});
                                if as_table {
                                    obj = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": revision.to_string()}, "columnDefinitions": [], "rows": []});
                                }
                                Some(line("BOOKMARK", obj))
                            }
                            Ok(event) => match (!as_table).then(|| raw_line(&filter, &event)).flatten() {
                                Some(line) => {
                                    first = false;
                                    Some(line)
                                }
                                None => match to_watch_event(&filter, &event) {
                                    Ok(Some((ty, obj))) => {
                                        let rendered = render(obj, first);
                                        first = false;
                                        Some(line(ty, rendered))
                                    }
                                    Ok(None) => None,
                                    Err(e) => Some(line("ERROR", e.to_status())),
                                },
                            },
                            Err(store::StoreError::Compacted { requested, compacted }) => {
                                let err = ApiError::gone(format!("too old resource version: {} ({compacted})", requested - 1));
                                let _ = tx.send(Ok(line("ERROR", err.to_status()))).await;
                                return;
                            }
                            Err(e) => {
                                let err = ApiError::from_store(e, res.plural, res.group, "");
                                let _ = tx.send(Ok(line("ERROR", err.to_status()))).await;
                                return;
                            }
                        };
                        if let Some(bytes) = out
                            && tx.send(Ok(bytes)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        },
        span,
    ));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// The watch-list rules: `sendInitialEvents` needs bookmarks and
/// `resourceVersionMatch=NotOlderThan`; `resourceVersionMatch` on a watch
/// needs `sendInitialEvents`.
fn check_watch_list(params: &Params) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let rvm = params.resource_version_match.as_deref();
    match params.send_initial_events {
        Some(_) => {
            if rvm != Some("NotOlderThan") {
                causes.push(crate::status::Cause::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if params.send_initial_events == Some(true) && !params.allow_watch_bookmarks {
                causes.push(crate::status::Cause::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                ));
            }
        }
        None if rvm.is_some() => {
            causes.push(crate::status::Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        None => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", causes))
    }
}

/// Spreads watch timeouts so clients do not all reconnect at once.
fn rand_secs(max: u64) -> u64 {
    u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * max / 256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions_are_spliced_into_stored_objects() {
        for (stored, want) in [
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u"}, "data": {"metadata": {"x": "y"}}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", "resourceVersion": "7"}, "data": {"metadata": {"x": "y"}}}),
            ),
            (
                json!({"kind": "X", "metadata": {}}),
                json!({"kind": "X", "metadata": {"resourceVersion": "7"}}),
            ),
            (
                json!({"kind": "X"}),
                json!({"kind": "X", "metadata": {"resourceVersion": "7"}}),
            ),
        ] {
            for bytes in [
                object::to_stored(&stored),
                serde_json::to_vec(&stored).unwrap(),
            ] {
                let mut out = Vec::new();
                with_resource_version(&bytes, 7, &mut out);
                assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), want);
            }
        }
    }

    #[test]
    fn raw_watch_lines_carry_what_decoded_ones_do() {
        let kv = |value: &Value, rev| KeyValue {
            key: b"pods/default/a".to_vec(),
            value: object::to_stored(value),
            create_revision: 2,
            mod_revision: rev,
            version: 1,
            lease: None,
        };
        let before = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {}});
        let after = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"nodeName": "n"}});
        let events = [
            WatchEvent::Put {
                kv: kv(&before, 5),
                prev: None,
            },
            WatchEvent::Put {
                kv: kv(&after, 6),
                prev: Some(kv(&before, 5)),
            },
            WatchEvent::Delete {
                prev: kv(&after, 6),
                revision: 7,
            },
        ];
        let all = Filter::new("Pod", &Params::default()).unwrap();
        for (event, ty) in events.iter().zip(["ADDED", "MODIFIED", "DELETED"]) {
            let raw = raw_line(&all, event).expect("an unfiltered watch");
            assert!(raw.ends_with(b"\n"));
            let (want_ty, obj) = to_watch_event(&all, event).unwrap().unwrap();
            assert_eq!(want_ty, ty);
            let want: Value = serde_json::from_slice(&line(want_ty, obj)).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap(), want);
            assert_eq!(
                want["object"]["metadata"]["resourceVersion"],
                event.revision().to_string()
            );
        }
        let labelled = Filter::new(
            "Pod",
            &Params {
                label_selector: "x=y".into(),
                ..Params::default()
            },
        )
        .unwrap();
        assert!(raw_line(&labelled, &events[0]).is_none());
        assert!(raw_line(&all, &WatchEvent::Progress { revision: 9 }).is_none());
    }

    #[test]
    fn continue_tokens_round_trip_and_are_checked() {
        let token = encode_continue(42, b"pods/default/b\0");
        assert_eq!(
            decode_continue(&token, "pods/default/").unwrap(),
            (42, b"pods/default/b\0".to_vec())
        );
        assert_eq!(
            decode_continue(&token, "pods/other/").unwrap_err().code,
            400
        );
        assert_eq!(decode_continue("garbage!", "pods/").unwrap_err().code, 400);
    }
}
