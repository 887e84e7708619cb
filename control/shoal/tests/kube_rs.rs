//! End to end: `shoal server` driven by the kube-rs client (typed `Api`s,
//! subresources, paging, patches, errors and the `watcher`), configured from
//! the `admin.kubeconfig` the server writes.

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use testbed::ShoalServer;

/// How long any one wait on the server may take.
const DEADLINE: Duration = Duration::from_secs(30);

fn server() -> ShoalServer {
    ShoalServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_shoal")), &[]).unwrap()
}

/// A kube-rs client from the server's `admin.kubeconfig`.
async fn client(s: &ShoalServer) -> anyhow::Result<Client> {
    // Both ring and aws-lc-rs are linked in (oci-client's reqwest brings the
    // latter), so rustls cannot pick one by itself: pick ring, as Shoal does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(s.kubeconfig())?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("kubeconfig to kube::Config")?;
    Ok(Client::try_from(config)?)
}

/// Creates namespace `name`.
async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn deployment(name: &str, replicas: i32) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "registry.example/hello-http:v1",
                    "ports": [{"containerPort": 8080}]
                }]}
            }
        }
    }))?)
}

fn data_of(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The API error (`Status`) inside a kube error, or a failure naming what came instead.
fn api_error<T: std::fmt::Debug>(
    r: Result<T, kube::Error>,
) -> anyhow::Result<Box<kube::core::Status>> {
    match r {
        Err(kube::Error::Api(ae)) => Ok(ae),
        Err(other) => bail!("expected an API error (Status), got {other:?}"),
        Ok(v) => bail!("expected an API error, the call succeeded: {v:?}"),
    }
}

/// Names of the items of a list.
fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn typed_create_get_and_list_of_configmaps_and_deployments() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    namespace(&client, "typed").await?;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "typed");
    let created = cms
        .create(
            &PostParams::default(),
            &configmap("settings", &[("app", "web")], &[("greeting", "hello")]),
        )
        .await?;
    assert_eq!(created.metadata.namespace.as_deref(), Some("typed"));
    assert!(created.metadata.uid.is_some(), "{created:?}");
    assert!(created.metadata.resource_version.is_some(), "{created:?}");
    assert!(created.metadata.creation_timestamp.is_some(), "{created:?}");

    let got = cms.get("settings").await?;
    assert_eq!(data_of(&got), map(&[("greeting", "hello")]));
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        got.metadata.labels.unwrap_or_default(),
        map(&[("app", "web")])
    );
    assert!(cms.get_opt("absent").await?.is_none());

    let list = cms.list(&ListParams::default()).await?;
    assert!(
        list.metadata.resource_version.is_some(),
        "{:?}",
        list.metadata
    );
    assert_eq!(names(&list.items), ["settings"]);

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "typed");
    let d = deploys
        .create(&PostParams::default(), &deployment("web", 2)?)
        .await?;
    assert_eq!(d.metadata.generation, Some(1), "{d:?}");
    let got = deploys.get("web").await?;
    let spec = &got.spec;
    assert_eq!(spec.replicas, Some(2));
    let container = &spec.template.spec.as_ref().context("pod spec")?.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/hello-http:v1")
    );
    assert_eq!(
        names(&deploys.list(&ListParams::default()).await?.items),
        ["web"]
    );
    // Across namespaces, and the namespace scoping holds.
    let everywhere: Api<Deployment> = Api::all(client.clone());
    let all = everywhere.list(&ListParams::default()).await?;
    assert!(
        all.items
            .iter()
            .any(|d| d.metadata.namespace.as_deref() == Some("typed")
                && d.metadata.name.as_deref() == Some("web")),
        "{:?}",
        names(&all.items)
    );
    let elsewhere: Api<Deployment> = Api::namespaced(client.clone(), "default");
    assert!(
        elsewhere
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "the default namespace has no deployments"
    );
    Ok(())
}

#[tokio::test]
async fn lists_by_label_selector_and_pages_with_limit_and_continue() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    namespace(&client, "labels").await?;
    namespace(&client, "paging").await?;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "labels");
    for (name, labels) in [
        ("a-front", &[("app", "a"), ("tier", "front")][..]),
        ("a-back", &[("app", "a"), ("tier", "back")][..]),
        ("b-front", &[("app", "b"), ("tier", "front")][..]),
        ("plain", &[][..]),
    ] {
        cms.create(&PostParams::default(), &configmap(name, labels, &[]))
            .await?;
    }
    for (selector, want) in [
        ("app=a", &["a-back", "a-front"][..]),
        ("app==a,tier=front", &["a-front"][..]),
        ("app!=a", &["b-front", "plain"][..]),
        ("tier in (front,middle)", &["a-front", "b-front"][..]),
        ("tier notin (front)", &["a-back", "plain"][..]),
        ("tier", &["a-back", "a-front", "b-front"][..]),
        ("!tier", &["plain"][..]),
        ("app=c", &[][..]),
    ] {
        let mut got = names(
            &cms.list(&ListParams::default().labels(selector))
                .await?
                .items,
        );
        got.sort();
        assert_eq!(got, want, "label selector {selector:?}");
    }

    // 25 configmaps, read 10 at a time.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "paging");
    let mut want = BTreeSet::new();
    for i in 0..25 {
        let name = format!("page-{i:02}");
        cms.create(
            &PostParams::default(),
            &configmap(&name, &[("batch", "paging")], &[]),
        )
        .await?;
        want.insert(name);
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    let mut snapshot_rv = None;
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await?;
        assert!(page.items.len() <= 10, "a page holds at most limit items");
        sizes.push(page.items.len());
        seen.extend(names(&page.items));
        if snapshot_rv.is_none() {
            snapshot_rv = page.metadata.resource_version.clone();
            if let Some(n) = page.metadata.remaining_item_count {
                assert_eq!(n, 15, "remainingItemCount on the first page");
            }
            // Created after the first page: a continued list reads the
            // first page's snapshot, so this one is not in it.
            cms.create(&PostParams::default(), &configmap("page-99-late", &[], &[]))
                .await?;
        } else {
            assert_eq!(
                page.metadata.resource_version, snapshot_rv,
                "every page is read at the first page's resourceVersion"
            );
        }
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end: {sizes:?}");
    }
    assert_eq!(sizes, [10, 10, 5], "page sizes");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "each object once: {seen:?}");
    assert_eq!(unique, want, "every object, from the first page's snapshot");

    // Paging composes with a label selector.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().labels("batch=paging").limit(7);
    loop {
        let page = cms.list(&lp).await?;
        assert!(page.items.len() <= 7);
        seen.extend(names(&page.items));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => {
                lp = ListParams::default()
                    .labels("batch=paging")
                    .limit(7)
                    .continue_token(&t)
            }
            None => break,
        }
        assert!(seen.len() <= 25, "paging does not end: {seen:?}");
    }
    assert_eq!(seen.len(), 25, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), want);
    Ok(())
}

#[tokio::test]
async fn entry_inserts_then_modifies() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let mut entry = cms
        .entry("via-entry")
        .await?
        .or_insert(|| configmap("via-entry", &[], &[("k", "v1")]));
    entry.commit(&PostParams::default()).await?;
    let first = entry.get().clone();
    assert!(first.metadata.uid.is_some(), "created: {first:?}");
    assert_eq!(data_of(&cms.get("via-entry").await?), map(&[("k", "v1")]));

    // Occupied now: or_insert keeps the stored object, and_modify replaces it.
    let mut entry = cms
        .entry("via-entry")
        .await?
        .or_insert(|| unreachable!("the configmap exists"))
        .and_modify(|cm| {
            cm.data
                .get_or_insert_with(BTreeMap::new)
                .insert("k".into(), "v2".into());
        });
    entry.commit(&PostParams::default()).await?;
    let second = entry.get();
    assert_eq!(second.metadata.uid, first.metadata.uid);
    assert_ne!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(data_of(&cms.get("via-entry").await?), map(&[("k", "v2")]));

    // An unchanged entry commits without a write.
    let mut entry = cms
        .entry("via-entry")
        .await?
        .or_insert(|| unreachable!("the configmap exists"));
    let before = entry.get().metadata.resource_version.clone();
    entry.commit(&PostParams::default()).await?;
    assert_eq!(
        cms.get("via-entry").await?.metadata.resource_version,
        before
    );
    Ok(())
}

#[tokio::test]
async fn merge_strategic_and_json_patches() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::default();
    cms.create(
        &PostParams::default(),
        &configmap("patched", &[("app", "x")], &[("a", "1"), ("b", "2")]),
    )
    .await?;

    // Merge: add, change, and remove (null) keys.
    let cm = cms
        .patch(
            "patched",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "yes"}}, "data": {"a": "10", "b": null, "c": "3"}})),
        )
        .await?;
    assert_eq!(data_of(&cm), map(&[("a", "10"), ("c", "3")]));
    assert_eq!(
        cm.metadata.labels.unwrap_or_default(),
        map(&[("app", "x"), ("extra", "yes")])
    );

    // JSON patch: test, replace, add, remove.
    let cm = cms
        .patch(
            "patched",
            &pp,
            &Patch::<()>::Json(serde_json::from_value(json!([
                {"op": "test", "path": "/data/a", "value": "10"},
                {"op": "replace", "path": "/data/a", "value": "11"},
                {"op": "add", "path": "/data/d", "value": "4"},
                {"op": "remove", "path": "/data/c"}
            ]))?),
        )
        .await?;
    assert_eq!(data_of(&cm), map(&[("a", "11"), ("d", "4")]));
    // A failing `test` op refuses the whole patch (422 Invalid) and changes nothing.
    let ae = api_error(
        cms.patch(
            "patched",
            &pp,
            &Patch::<()>::Json(serde_json::from_value(json!([
                {"op": "replace", "path": "/data/a", "value": "12"},
                {"op": "test", "path": "/data/a", "value": "nope"}
            ]))?),
        )
        .await,
    )?;
    assert_eq!(ae.code, 422, "{ae:?}");
    assert_eq!(
        data_of(&cms.get("patched").await?),
        map(&[("a", "11"), ("d", "4")])
    );

    // Strategic merge on a Deployment: containers merge by name, env by name,
    // `$patch: delete` removes one.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("web", 1)?;
    d.spec
        .template
        .spec
        .as_mut()
        .context("pod spec")?
        .containers[0]
        .env = Some(serde_json::from_value(
        json!([{"name": "MODE", "value": "fast"}, {"name": "COLOR", "value": "blue"}]),
    )?);
    deploys.create(&PostParams::default(), &d).await?;
    let d = deploys
        .patch(
            "web",
            &pp,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "registry.example/side:v1"},
                {"name": "web", "image": "registry.example/hello-http:v2",
                 "env": [{"name": "COLOR", "$patch": "delete"}, {"name": "LEVEL", "value": "3"}]}
            ]}}}})),
        )
        .await?;
    let containers = &d
        .spec
        .template
        .spec
        .as_ref()
        .context("pod spec")?
        .containers;
    let by_name: BTreeMap<&str, &k8s_openapi::api::core::v1::Container> =
        containers.iter().map(|c| (c.name.as_str(), c)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        ["sidecar", "web"],
        "a strategic patch merges containers by name: {containers:?}"
    );
    let web = by_name["web"];
    assert_eq!(web.image.as_deref(), Some("registry.example/hello-http:v2"));
    assert_eq!(
        web.ports.as_ref().map(|p| p[0].container_port),
        Some(8080),
        "fields the patch does not name are kept"
    );
    let mut env: Vec<(String, Option<String>)> = web
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    env.sort();
    assert_eq!(
        env,
        [
            ("LEVEL".to_string(), Some("3".to_string())),
            ("MODE".to_string(), Some("fast".to_string()))
        ]
    );
    assert_eq!(
        d.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );
    Ok(())
}

#[tokio::test]
async fn stale_replace_is_a_conflict_and_a_missing_object_not_found() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stale = cms
        .create(
            &PostParams::default(),
            &configmap("contended", &[], &[("k", "v1")]),
        )
        .await?;

    let mut fresh = stale.clone();
    fresh.data = Some(map(&[("k", "v2")]));
    let replaced = cms
        .replace("contended", &PostParams::default(), &fresh)
        .await?;
    assert_ne!(
        replaced.metadata.resource_version,
        stale.metadata.resource_version
    );

    let mut late = stale.clone();
    late.data = Some(map(&[("k", "late")]));
    let ae = api_error(
        cms.replace("contended", &PostParams::default(), &late)
            .await,
    )?;
    assert_eq!(ae.code, 409, "{ae:?}");
    assert_eq!(ae.reason, "Conflict", "{ae:?}");
    assert!(ae.is_conflict());
    assert!(
        ae.message.contains("the object has been modified"),
        "{ae:?}"
    );
    assert_eq!(
        data_of(&cms.get("contended").await?),
        map(&[("k", "v2")]),
        "the refused write changed nothing"
    );

    // Creating what exists: 409 AlreadyExists.
    let ae = api_error(
        cms.create(&PostParams::default(), &configmap("contended", &[], &[]))
            .await,
    )?;
    assert_eq!(
        (ae.code, ae.reason.as_str()),
        (409, "AlreadyExists"),
        "{ae:?}"
    );

    let ae = api_error(cms.get("nowhere").await)?;
    assert_eq!(ae.code, 404, "{ae:?}");
    assert_eq!(ae.reason, "NotFound", "{ae:?}");
    assert!(ae.is_not_found());
    assert_eq!(ae.message, "configmaps \"nowhere\" not found", "{ae:?}");
    let details = ae.details.as_ref().context("NotFound has details")?;
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("nowhere", "configmaps"),
        "{ae:?}"
    );
    for r in [
        api_error(cms.delete("nowhere", &DeleteParams::default()).await)?,
        api_error(
            cms.patch(
                "nowhere",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": "v"}})),
            )
            .await,
        )?,
        api_error(
            cms.replace(
                "nowhere",
                &PostParams::default(),
                &configmap("nowhere", &[], &[]),
            )
            .await,
        )?,
    ] {
        assert_eq!((r.code, r.reason.as_str()), (404, "NotFound"), "{r:?}");
    }
    let in_missing_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "no-such-ns");
    let ae = api_error(
        in_missing_ns
            .create(&PostParams::default(), &configmap("x", &[], &[]))
            .await,
    )?;
    assert_eq!((ae.code, ae.reason.as_str()), (404, "NotFound"), "{ae:?}");
    Ok(())
}

/// The watcher's next event, within [`DEADLINE`].
async fn next_event<S>(stream: &mut S) -> anyhow::Result<watcher::Event<ConfigMap>>
where
    S: futures::Stream<Item = watcher::Result<watcher::Event<ConfigMap>>> + Unpin,
{
    match tokio::time::timeout(DEADLINE, stream.next()).await {
        Err(_) => bail!("no watcher event within {DEADLINE:?}"),
        Ok(None) => bail!("the watcher stream ended"),
        Ok(Some(r)) => Ok(r?),
    }
}

#[tokio::test]
async fn watcher_sees_init_then_a_later_change() -> anyhow::Result<()> {
    watcher_scenario(watcher::Config::default()).await
}

/// The watch-list protocol (`sendInitialEvents`): the initial state ends with
/// a bookmark, so the watcher reaches InitDone without a separate list.
#[tokio::test]
async fn streaming_list_watcher_sees_init_then_a_later_change() -> anyhow::Result<()> {
    watcher_scenario(watcher::Config::default().streaming_lists()).await
}

async fn watcher_scenario(config: watcher::Config) -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &configmap("before", &[], &[("k", "v1")]),
    )
    .await?;

    let mut stream = watcher(cms.clone(), config).boxed();
    let mut next = async || next_event(&mut stream).await;

    let ev = next().await?;
    assert!(matches!(ev, watcher::Event::Init), "first event: {ev:?}");
    let mut initial = Vec::new();
    loop {
        match next().await? {
            watcher::Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            other => bail!("during the initial list: {other:?}"),
        }
    }
    assert!(
        initial.iter().any(|n| n == "before"),
        "the initial list has the existing object: {initial:?}"
    );

    // Changes made after the watcher started.
    cms.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v2"}})),
    )
    .await?;
    cms.create(
        &PostParams::default(),
        &configmap("after", &[], &[("k", "new")]),
    )
    .await?;
    let mut saw_update = false;
    let mut saw_create = false;
    while !(saw_update && saw_create) {
        match next().await? {
            watcher::Event::Apply(cm) => match cm.metadata.name.as_deref() {
                Some("before") if data_of(&cm) == map(&[("k", "v2")]) => saw_update = true,
                Some("after") => saw_create = true,
                _ => {}
            },
            other => bail!("expected Apply events, got {other:?}"),
        }
    }

    cms.delete("after", &DeleteParams::default()).await?;
    loop {
        match next().await? {
            watcher::Event::Delete(cm) if cm.metadata.name.as_deref() == Some("after") => break,
            watcher::Event::Apply(_) => {}
            other => bail!("expected the Delete event, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn delete_with_params_removes_the_object() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("doomed", &[], &[]))
        .await?;
    cms.create(&PostParams::default(), &configmap("kept", &[], &[]))
        .await?;

    // A dry run deletes nothing.
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    cms.delete("doomed", &dry).await?;
    assert!(
        cms.get_opt("doomed").await?.is_some(),
        "a dry run deletes nothing"
    );

    // A stale precondition is refused.
    let pre = DeleteParams::default().preconditions(kube::api::Preconditions {
        uid: Some("00000000-0000-0000-0000-000000000000".into()),
        resource_version: None,
    });
    let ae = api_error(cms.delete("doomed", &pre).await)?;
    assert_eq!((ae.code, ae.reason.as_str()), (409, "Conflict"), "{ae:?}");

    let uid = cms.get("doomed").await?.metadata.uid;
    let dp = DeleteParams::background().grace_period(0);
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid,
            resource_version: None,
        }),
        ..dp
    };
    cms.delete("doomed", &dp).await?;
    // A configmap without finalizers goes at once; waiting with a deadline
    // all the same.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while cms.get_opt("doomed").await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("configmap doomed still there after {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ae = api_error(cms.get("doomed").await)?;
    assert_eq!((ae.code, ae.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        names(&cms.list(&ListParams::default()).await?.items)
            .into_iter()
            .filter(|n| n == "doomed" || n == "kept")
            .collect::<Vec<_>>(),
        ["kept"]
    );
    Ok(())
}

#[tokio::test]
async fn pod_status_subresource_changes_status_only() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello", "labels": {"app": "hello"}},
        "spec": {"containers": [{"name": "hello", "image": "registry.example/hello:v1"}]}
    }))?;
    let created = pods.create(&PostParams::default(), &pod).await?;
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending"),
        "{created:?}"
    );

    // Through pods/status: status changes, a spec change in the same patch
    // is ignored.
    let patched = pods
        .patch_status(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": {"activeDeadlineSeconds": 5},
                "status": {"phase": "Running", "message": "from the test"}
            })),
        )
        .await?;
    let status = patched.status.as_ref().context("status")?;
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.message.as_deref(), Some("from the test"));
    assert_eq!(
        serde_json::to_value(&patched.spec)?,
        serde_json::to_value(&created.spec)?,
        "the status subresource leaves the spec alone"
    );
    let got = pods.get("hello").await?;
    assert_eq!(
        got.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    assert_eq!(
        serde_json::to_value(&got.spec)?,
        serde_json::to_value(&created.spec)?
    );
    assert_eq!(
        pods.get_status("hello").await?.status.and_then(|s| s.phase),
        Some("Running".into())
    );

    // And the main resource leaves status alone.
    let main = pods
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"extra": "yes"}}, "status": {"phase": "Failed"}}),
            ),
        )
        .await?;
    assert_eq!(
        main.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running"),
        "a patch of pods/hello does not change status"
    );
    assert_eq!(
        main.metadata.labels.unwrap_or_default(),
        map(&[("app", "hello"), ("extra", "yes")])
    );
    Ok(())
}

#[tokio::test]
async fn deployment_scale_subresource() -> anyhow::Result<()> {
    let s = server();
    let client = client(&s).await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let created = deploys
        .create(&PostParams::default(), &deployment("web", 2)?)
        .await?;

    let scale = deploys.get_scale("web").await?;
    assert_eq!(scale.metadata.name.as_deref(), Some("web"));
    assert_eq!(scale.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(scale.metadata.uid, created.metadata.uid);
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.as_ref().and_then(|s| s.selector.as_deref()),
        Some("app=web"),
        "{scale:?}"
    );

    let scaled = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await?;
    assert_eq!(scaled.spec.as_ref().and_then(|s| s.replicas), Some(4));
    let d = deploys.get("web").await?;
    assert_eq!(d.spec.replicas, Some(4));
    assert_eq!(d.metadata.generation, Some(2), "scaling bumps generation");
    assert_eq!(
        deploys
            .get_scale("web")
            .await?
            .spec
            .and_then(|s| s.replicas),
        Some(4)
    );

    // A scale read before the change is stale now.
    let mut stale = scale.clone();
    stale.spec.get_or_insert_with(Default::default).replicas = Some(1);
    let ae = api_error(
        deploys
            .replace_scale("web", &PostParams::default(), &stale)
            .await,
    )?;
    assert_eq!((ae.code, ae.reason.as_str()), (409, "Conflict"), "{ae:?}");

    let ae = api_error(deploys.get_scale("absent").await)?;
    assert_eq!((ae.code, ae.reason.as_str()), (404, "NotFound"), "{ae:?}");
    Ok(())
}
