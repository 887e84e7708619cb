//! The API at its boundary: requests through the router, as the TLS layer
//! hands them over, against a real embedded store.

use apiserver::tls::Identity;
use apiserver::{State, bootstrap, router};
use axum::Extension;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use store::embedded::{EmbeddedConfig, EmbeddedStore};
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    state: Arc<State>,
    _dir: tempfile::TempDir,
}

async fn api_with(max_inflight: usize) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path());
    config.progress_interval = Duration::from_millis(200);
    let store = Arc::new(EmbeddedStore::open(config).unwrap());
    let state = State::new(store, "127.0.0.1:6443".into(), max_inflight);
    bootstrap::run(&state, "127.0.0.1", 6443).await.unwrap();
    let admin = Identity {
        user: "shoal-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    };
    Api {
        app: router(state.clone()).layer(Extension(admin)),
        state,
        _dir: dir,
    }
}

async fn api() -> Api {
    api_with(400).await
}

impl Api {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.send(method, uri, "application/json", bytes).await
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, Some(body)).await
    }

    async fn put(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, uri, Some(body)).await
    }

    async fn patch(&self, uri: &str, kind: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, uri, kind, serde_json::to_vec(&body).unwrap())
            .await
    }

    async fn delete(&self, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Method::DELETE, uri, body).await
    }

    /// Reads a watch until `want` non-bookmark events arrived (or it ended).
    async fn watch(&self, uri: &str, want: usize) -> Vec<Value> {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while events
            .iter()
            .filter(|e: &&Value| e["type"] != "BOOKMARK")
            .count()
            < want
        {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .expect("watch events before the deadline");
            let Some(frame) = frame else { break };
            if let Ok(data) = frame.unwrap().into_data() {
                buf.extend_from_slice(&data);
            }
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                events.push(serde_json::from_slice(&line).unwrap());
            }
        }
        events
    }
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "demo"}}, "data": {"k": "v"}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "hello:v1"}]}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn anonymous_requests_get_401_except_health_and_version() {
    let a = api().await;
    let open = router(a.state.clone());
    for (path, code) in [
        ("/healthz", 200),
        ("/livez", 200),
        ("/readyz", 200),
        ("/version", 200),
        ("/api/v1/pods", 401),
        ("/apis", 401),
        ("/openapi/v2", 401),
    ] {
        let resp = open
            .clone()
            .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code, "{path}");
    }
    let anon = router(a.state.clone()).layer(Extension(Identity::anonymous()));
    let resp = anon
        .oneshot(
            Request::builder()
                .uri("/api/v1/pods")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["reason"].as_str()),
        (Some("Status"), Some("Unauthorized"))
    );
}

#[tokio::test]
async fn create_get_and_generate_names() {
    let a = api().await;
    let (code, created) = a.post(CMS, cm("one")).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert!(
        created["metadata"]["uid"].is_string()
            && created["metadata"]["creationTimestamp"].is_string()
    );
    let (code, got) = a.get(&format!("{CMS}/one")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, created);
    let (code, generated) = a
        .post(CMS, json!({"metadata": {"generateName": "web-"}}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{generated}");
    let name = generated["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    let (code, dup) = a.post(CMS, cm("one")).await;
    assert_eq!(
        (code, dup["reason"].as_str()),
        (StatusCode::CONFLICT, Some("AlreadyExists"))
    );
    let (code, missing) = a
        .post("/api/v1/namespaces/nowhere/configmaps", cm("x"))
        .await;
    assert_eq!(
        (code, missing["message"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("namespaces \"nowhere\" not found")
        )
    );
    let (code, mismatch) = a
        .post(
            CMS,
            json!({"metadata": {"name": "x", "namespace": "kube-system"}}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{mismatch}");
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let a = api().await;
    let (_, created) = a.post(CMS, cm("c")).await;
    let mut v1 = created.clone();
    v1["data"]["k"] = json!("v1");
    let (code, updated) = a.put(&format!("{CMS}/c"), v1).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let mut stale = created.clone();
    stale["data"]["k"] = json!("v2");
    let (code, err) = a.put(&format!("{CMS}/c"), stale).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(err["reason"], "Conflict");
    assert_eq!(
        err["message"],
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion the update is unconditional.
    let mut blind = cm("c");
    blind["data"]["k"] = json!("v3");
    let (code, _) = a.put(&format!("{CMS}/c"), blind).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn status_and_main_resource_change_only_their_part() {
    let a = api().await;
    let (_, created) = a.post(PODS, pod("p")).await;
    assert_eq!(created["status"]["phase"], "Pending");
    assert_eq!(created["metadata"]["generation"], 1);
    let mut status_write = created.clone();
    status_write["status"]["phase"] = json!("Running");
    status_write["spec"]["containers"][0]["image"] = json!("ignored:v9");
    let (code, after) = a.put(&format!("{PODS}/p/status"), status_write).await;
    assert_eq!(code, StatusCode::OK, "{after}");
    assert_eq!(after["status"]["phase"], "Running");
    assert_eq!(after["spec"]["containers"][0]["image"], "hello:v1");
    assert_eq!(
        after["metadata"]["generation"], 1,
        "status writes do not bump generation"
    );
    let (code, after) = a.patch(&format!("{PODS}/p"), "application/merge-patch+json", json!({"status": {"phase": "Failed"}, "spec": {"containers": [{"name": "c", "image": "hello:v2"}]}})).await;
    assert_eq!(code, StatusCode::OK, "{after}");
    assert_eq!(
        after["status"]["phase"], "Running",
        "the main resource ignores status"
    );
    assert_eq!(after["spec"]["containers"][0]["image"], "hello:v2");
    assert_eq!(after["metadata"]["generation"], 2);
    let (code, err) = a
        .patch(
            &format!("{PODS}/p"),
            "application/merge-patch+json",
            json!({"spec": {"restartPolicy": "Never"}}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
}

#[tokio::test]
async fn watch_resumes_exactly_once_in_order() {
    let a = api().await;
    let (_, created) = a.post(CMS, cm("w")).await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for v in ["a", "b"] {
        let (code, _) = a
            .patch(
                &format!("{CMS}/w"),
                "application/merge-patch+json",
                json!({"data": {"k": v}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK);
    }
    a.delete(&format!("{CMS}/w"), None).await;
    let events = a
        .watch(
            &format!("{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=5"),
            3,
        )
        .await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["MODIFIED", "MODIFIED", "DELETED"]);
    assert_eq!(events[0]["object"]["data"]["k"], "a");
    assert_eq!(events[1]["object"]["data"]["k"], "b");
    let rvs: Vec<i64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");

    // From "0": the current state first, as ADDED.
    a.post(CMS, cm("x")).await;
    let events = a
        .watch(
            &format!("{CMS}?watch=1&resourceVersion=0&timeoutSeconds=2"),
            1,
        )
        .await;
    assert_eq!(
        (
            events[0]["type"].as_str(),
            events[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("x"))
    );
}

#[tokio::test]
async fn watch_filters_by_label_and_bookmarks_on_request() {
    let a = api().await;
    let (_, start) = a.get(CMS).await;
    let rv = start["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    a.post(
        CMS,
        json!({"metadata": {"name": "other", "labels": {"app": "other"}}}),
    )
    .await;
    a.post(CMS, cm("mine")).await;
    // Relabelling out of the selector is a DELETED for this watcher.
    a.patch(
        &format!("{CMS}/mine"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"app": "gone"}}}),
    )
    .await;
    let events = a.watch(&format!("{CMS}?watch=true&labelSelector=app%3Ddemo&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3"), 2).await;
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] != "BOOKMARK")
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ADDED", "DELETED"]);
    let more = a
        .watch(
            &format!(
                "{CMS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2"
            ),
            99,
        )
        .await;
    let bookmark = more
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("an idle watch gets a bookmark");
    assert!(
        bookmark["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            >= rv.parse::<i64>().unwrap()
    );
}

#[tokio::test]
async fn a_compacted_resource_version_is_410_gone() {
    let a = api().await;
    let (_, created) = a.post(CMS, cm("old")).await;
    let rv: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    a.post(CMS, cm("new")).await;
    let now = a.state.store.current_revision().await.unwrap();
    a.state.store.compact(now).await.unwrap();
    let events = a
        .watch(&format!("{CMS}?watch=true&resourceVersion={}", rv - 1), 1)
        .await;
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    assert!(
        events[0]["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version:")
    );
    let (code, _) = a
        .get(&format!(
            "{CMS}?resourceVersion={}&resourceVersionMatch=Exact",
            rv - 1
        ))
        .await;
    assert_eq!(code, StatusCode::GONE);
}

#[tokio::test]
async fn lists_page_at_one_revision_and_filter() {
    let a = api().await;
    for i in 0..7 {
        a.post(CMS, cm(&format!("c{i}"))).await;
    }
    let (_, first) = a.get(&format!("{CMS}?limit=3")).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    a.post(CMS, cm("c9-late")).await;
    let mut names: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let (code, page) = a.get(&format!("{CMS}?limit=3&continue={t}")).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        assert_eq!(
            page["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        token = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(
        names,
        (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>(),
        "the late write is not in the paged list"
    );
    let (_, filtered) = a
        .get(&format!("{CMS}?fieldSelector=metadata.name%3Dc3"))
        .await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let (code, err) = a.get(&format!("{CMS}?labelSelector=app%20in%20(")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{err}");
    let (code, err) = a
        .get(&format!("{CMS}?fieldSelector=spec.nodeName%3Dx"))
        .await;
    assert_eq!(
        (code, err["message"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("field label not supported: spec.nodeName")
        )
    );
    let (code, err) = a.get(&format!("{CMS}?continue=bogus")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{err}");
}

#[tokio::test]
async fn tables_carry_columns_rows_and_a_resource_version() {
    let a = api().await;
    a.post(PODS, pod("p")).await;
    let req = Request::builder()
        .uri(PODS)
        .header(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Body::empty())
        .unwrap();
    let resp = a.app.clone().oneshot(req).await.unwrap();
    let table: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "p");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert!(table["metadata"]["resourceVersion"].is_string());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let a = api().await;
    let mut obj = cm("held");
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    a.post(CMS, obj).await;
    let (code, pending) = a.delete(&format!("{CMS}/held"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        pending["metadata"]["deletionTimestamp"].is_string(),
        "{pending}"
    );
    let (code, _) = a.get(&format!("{CMS}/held")).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "still there while a finalizer holds it"
    );
    let (code, _) = a
        .patch(
            &format!("{CMS}/held"),
            "application/json-patch+json",
            json!([{"op": "remove", "path": "/metadata/finalizers"}]),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = a.get(&format!("{CMS}/held")).await;
    assert_eq!(
        code,
        StatusCode::NOT_FOUND,
        "removing the last finalizer completes the deletion"
    );
}

#[tokio::test]
async fn bound_pods_terminate_gracefully_and_expire() {
    let a = api().await;
    a.post(PODS, pod("g")).await;
    let (code, bound) = a.post(&format!("{PODS}/g/binding"), json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "g"}, "target": {"kind": "Node", "name": "n1"}})).await;
    assert_eq!(code, StatusCode::CREATED, "{bound}");
    let (_, p) = a.get(&format!("{PODS}/g")).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    let (code, again) = a
        .post(
            &format!("{PODS}/g/binding"),
            json!({"target": {"kind": "Node", "name": "n2"}}),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{again}");

    let (code, terminating) = a
        .delete(&format!("{PODS}/g"), Some(json!({"gracePeriodSeconds": 1})))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 1);
    let (code, _) = a.get(&format!("{PODS}/g")).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "a bound pod waits for its kubelet or its grace"
    );
    // The reaper ends it once the grace is over.
    tokio::spawn(bootstrap::reap_expired_pods(Arc::downgrade(&a.state)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = a.get(&format!("{PODS}/g")).await;
        if code == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired pod was not reaped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Grace 0 (the kubelet's confirmation) deletes at once.
    a.post(PODS, pod("h")).await;
    a.post(
        &format!("{PODS}/h/binding"),
        json!({"target": {"kind": "Node", "name": "n1"}}),
    )
    .await;
    a.delete(&format!("{PODS}/h"), None).await;
    let (code, _) = a
        .delete(&format!("{PODS}/h"), Some(json!({"gracePeriodSeconds": 0})))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = a.get(&format!("{PODS}/h")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn binding_replaces_an_unschedulable_condition() {
    let a = api().await;
    a.post(PODS, pod("u")).await;
    // What the scheduler writes while no node fits.
    let (code, _) = a
        .patch(
            &format!("{PODS}/u/status"),
            "application/strategic-merge-patch+json",
            json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.", "lastProbeTime": null,
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, bound) = a
        .post(
            &format!("{PODS}/u/binding"),
            json!({"target": {"kind": "Node", "name": "n1"}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{bound}");
    let (_, p) = a.get(&format!("{PODS}/u")).await;
    let conditions = p["status"]["conditions"].as_array().unwrap();
    let scheduled: Vec<&Value> = conditions
        .iter()
        .filter(|c| c["type"] == "PodScheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "{conditions:?}");
    let c = scheduled[0];
    assert_eq!(c["status"], "True");
    assert!(c.get("reason").is_none(), "{c}");
    assert!(c.get("message").is_none(), "{c}");
    assert_ne!(c["lastTransitionTime"], "2026-01-01T00:00:00Z", "{c}");
}

#[tokio::test]
async fn delete_preconditions_dry_run_and_collections() {
    let a = api().await;
    a.post(CMS, cm("p1")).await;
    let (code, err) = a
        .delete(
            &format!("{CMS}/p1"),
            Some(json!({"preconditions": {"uid": "not-the-uid"}})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed: UID in precondition")
    );
    let (code, _) = a.post(&format!("{CMS}?dryRun=All"), cm("dry")).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(
        a.get(&format!("{CMS}/dry")).await.0,
        StatusCode::NOT_FOUND,
        "dry runs store nothing"
    );
    a.post(CMS, cm("p2")).await;
    a.post(
        CMS,
        json!({"metadata": {"name": "keep", "labels": {"app": "keep"}}}),
    )
    .await;
    let (code, deleted) = a
        .delete(&format!("{CMS}?labelSelector=app%3Ddemo"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deleted["items"].as_array().unwrap().len(), 2);
    let (_, left) = a.get(CMS).await;
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clear_errors() {
    let a = api().await;
    let (code, err) = a
        .send(Method::POST, CMS, "application/json", b"{not json".to_vec())
        .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest"))
    );
    let (code, _) = a
        .send(Method::POST, CMS, "application/json", b"[1,2]".to_vec())
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, err) = a
        .send(Method::POST, CMS, "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("UnsupportedMediaType")
        )
    );
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let (code, err) = a.send(Method::POST, CMS, "application/json", big).await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestEntityTooLarge"))
    );
    let (code, _) = a
        .call(Method::POST, &format!("{CMS}/x"), Some(cm("x")))
        .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    let (code, _) = a.get("/api/v1/widgets").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, err) = a
        .post(CMS, json!({"metadata": {"name": "t"}, "data": {"k": 5}}))
        .await;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "wrong types are a decode error: {err}"
    );
    let (code, err) = a
        .post(
            &format!("{CMS}?fieldValidation=Strict"),
            json!({"metadata": {"name": "u"}, "dta": {}}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"dta\""),
        "{err}"
    );
    let huge = json!({"metadata": {"name": "huge"}, "data": {"k": "x".repeat(1024 * 1024 + 1)}});
    let (code, err) = a.post(CMS, huge).await;
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ConfigMaps over 1 MiB are refused: {err}"
    );
    let (code, err) = a
        .post(
            PODS,
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        err["message"],
        "Pod \"p\" is invalid: spec.containers[0].image: Required value"
    );
    assert_eq!(
        err["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );
}

#[tokio::test]
async fn overload_answers_429() {
    let a = api_with(0).await;
    let (code, err) = a.get(CMS).await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("TooManyRequests"))
    );
}

#[tokio::test]
async fn services_get_unique_cluster_ips_and_node_ports() {
    let a = api().await;
    let svc = |name: &str, ty: &str| json!({"metadata": {"name": name}, "spec": {"type": ty, "ports": [{"port": 80}]}});
    let (_, s1) = a
        .post("/api/v1/namespaces/default/services", svc("a", "NodePort"))
        .await;
    let (_, s2) = a
        .post("/api/v1/namespaces/default/services", svc("b", "NodePort"))
        .await;
    assert_ne!(s1["spec"]["clusterIP"], s2["spec"]["clusterIP"]);
    assert_ne!(
        s1["spec"]["ports"][0]["nodePort"],
        s2["spec"]["ports"][0]["nodePort"]
    );
    let np = s1["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np));
    let mut clash = svc("c", "NodePort");
    clash["spec"]["ports"][0]["nodePort"] = json!(np);
    let (code, err) = a
        .post("/api/v1/namespaces/default/services", clash.clone())
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    a.delete("/api/v1/namespaces/default/services/a", None)
        .await;
    let (code, _) = a.post("/api/v1/namespaces/default/services", clash).await;
    assert_eq!(
        code,
        StatusCode::CREATED,
        "a deleted service's node port is free again"
    );
}

#[tokio::test]
async fn discovery_documents_describe_the_api() {
    let a = api().await;
    let (_, apis) = a.get("/apis").await;
    assert_eq!(apis["kind"], "APIGroupList");
    let (_, core) = a.get("/api/v1").await;
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/binding")
    );
    let (code, _) = a.get("/apis/nope/v1").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, version) = a.get("/version").await;
    assert_eq!(version["major"], "1");
}

#[tokio::test]
async fn watch_lists_end_their_initial_events_with_a_bookmark() {
    let a = api().await;
    a.post(CMS, cm("one")).await;
    a.post(CMS, cm("two")).await;
    let events = a
        .watch(&format!("{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2"), 3)
        .await;
    let end = events.iter().position(|e| {
        e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
    });
    let end = end.unwrap_or_else(|| panic!("an initial-events-end bookmark: {events:?}"));
    assert_eq!(events[end]["type"], "BOOKMARK");
    let added: Vec<&str> = events[..end]
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["one", "two"]);
    let (code, err) = a
        .get(&format!("{CMS}?watch=true&sendInitialEvents=true"))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let (code, _) = a
        .get(&format!(
            "{CMS}?watch=true&resourceVersionMatch=NotOlderThan"
        ))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
}
