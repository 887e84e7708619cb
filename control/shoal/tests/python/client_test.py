"""End to end: the official Python Kubernetes client against a Shoal server.

Usage: client_test.py KUBECONFIG

Run by control/shoal/tests/python_client.rs. Exits 0 when every check holds;
otherwise prints which check failed (and what the server answered) to stderr
and exits 1.
"""

import json
import sys
import threading
import time
import traceback

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError as e:  # pragma: no cover - an environment problem
    print(
        f"FAIL: cannot import the kubernetes client ({e}); run tests/scripts/setup.sh",
        file=sys.stderr,
    )
    sys.exit(2)

NS = "pyclient"
# Bounds every request, so that a server that never answers fails the script
# instead of hanging it.
REQUEST_TIMEOUT = 30


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def expect_api_error(status, reason, what, fn, *args, **kwargs):
    """Calls fn, which must fail with an ApiException of `status`, whose
    Status body has `reason`. Returns the parsed Status."""
    try:
        got = fn(*args, **kwargs)
    except ApiException as e:
        check(
            e.status == status,
            f"{what}: expected HTTP {status}, got {e.status} {e.reason}: {e.body}",
        )
        try:
            body = json.loads(e.body)
        except (TypeError, ValueError):
            raise CheckFailed(f"{what}: the error body is not a JSON Status: {e.body!r}")
        check(
            body.get("kind") == "Status" and body.get("status") == "Failure",
            f"{what}: expected a Failure Status, got {body}",
        )
        check(body.get("code") == status, f"{what}: Status code {body.get('code')} in {body}")
        check(
            body.get("reason") == reason,
            f"{what}: expected reason {reason}, got {body.get('reason')} in {body}",
        )
        return body
    raise CheckFailed(f"{what}: expected HTTP {status} {reason}, the call succeeded: {got}")


def configmap(name, labels=None, data=None):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        data=data,
    )


def namespaces_and_configmaps(core):
    names = {n.metadata.name for n in core.list_namespace(_request_timeout=REQUEST_TIMEOUT).items}
    for want in ("default", "kube-system"):
        check(want in names, f"namespace {want} listed: {sorted(names)}")

    ns = core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)),
        _request_timeout=REQUEST_TIMEOUT,
    )
    check(ns.metadata.name == NS and ns.metadata.uid, f"namespace created: {ns.metadata}")
    check(
        ns.status is not None and ns.status.phase == "Active",
        f"a new namespace is Active: {ns.status}",
    )
    got = core.read_namespace(NS, _request_timeout=REQUEST_TIMEOUT)
    check(got.metadata.uid == ns.metadata.uid, "namespace read back")

    created = core.create_namespaced_config_map(
        NS,
        configmap("settings", {"app": "web", "tier": "front"}, {"greeting": "hello"}),
        _request_timeout=REQUEST_TIMEOUT,
    )
    check(created.metadata.namespace == NS, f"configmap namespace: {created.metadata}")
    check(created.metadata.resource_version, "configmap has a resourceVersion")
    check(created.metadata.creation_timestamp is not None, "configmap has a creationTimestamp")
    cm = core.read_namespaced_config_map("settings", NS, _request_timeout=REQUEST_TIMEOUT)
    check(cm.data == {"greeting": "hello"}, f"configmap data read back: {cm.data}")
    check(cm.metadata.labels == {"app": "web", "tier": "front"}, f"labels: {cm.metadata.labels}")
    check(cm.metadata.uid == created.metadata.uid, "same uid read back")

    # A dict body goes as a strategic merge patch.
    cm = core.patch_namespaced_config_map(
        "settings",
        NS,
        {"metadata": {"labels": {"patched": "yes"}}, "data": {"extra": "1"}},
        _request_timeout=REQUEST_TIMEOUT,
    )
    check(cm.data == {"greeting": "hello", "extra": "1"}, f"strategic patch data: {cm.data}")
    check(cm.metadata.labels.get("patched") == "yes", f"strategic patch labels: {cm.metadata.labels}")
    # A JSON merge patch, removing a key with null.
    cm = core.patch_namespaced_config_map(
        "settings",
        NS,
        {"data": {"extra": None, "more": "2"}},
        _content_type="application/merge-patch+json",
        _request_timeout=REQUEST_TIMEOUT,
    )
    check(cm.data == {"greeting": "hello", "more": "2"}, f"merge patch data: {cm.data}")
    # A list body goes as a JSON patch.
    cm = core.patch_namespaced_config_map(
        "settings",
        NS,
        [{"op": "replace", "path": "/data/greeting", "value": "hi"}],
        _request_timeout=REQUEST_TIMEOUT,
    )
    check(cm.data == {"greeting": "hi", "more": "2"}, f"json patch data: {cm.data}")
    cm = core.read_namespaced_config_map("settings", NS, _request_timeout=REQUEST_TIMEOUT)
    check(cm.data == {"greeting": "hi", "more": "2"}, f"patches stored: {cm.data}")

    core.create_namespaced_config_map(
        NS, configmap("other", {"app": "db"}), _request_timeout=REQUEST_TIMEOUT
    )
    core.create_namespaced_config_map(NS, configmap("unlabelled"), _request_timeout=REQUEST_TIMEOUT)
    for selector, want in [
        ("app=web", ["settings"]),
        ("app in (web,db)", ["other", "settings"]),
        ("app!=web", ["other", "unlabelled"]),
        ("patched", ["settings"]),
        ("!app", ["unlabelled"]),
        ("app=nothing", []),
    ]:
        got = sorted(
            i.metadata.name
            for i in core.list_namespaced_config_map(
                NS, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
            ).items
        )
        check(got == want, f"label_selector {selector!r}: expected {want}, got {got}")
    everywhere = core.list_config_map_for_all_namespaces(
        label_selector="app=web", _request_timeout=REQUEST_TIMEOUT
    )
    check(
        [(i.metadata.namespace, i.metadata.name) for i in everywhere.items] == [(NS, "settings")],
        f"label_selector across namespaces: {[(i.metadata.namespace, i.metadata.name) for i in everywhere.items]}",
    )


def watch_sees_a_configmap_created_from_a_thread(core):
    start = core.list_namespaced_config_map(NS, _request_timeout=REQUEST_TIMEOUT)
    rv = start.metadata.resource_version
    check(rv, f"a list has a resourceVersion: {start.metadata}")

    errors = []

    def create():
        try:
            core.create_namespaced_config_map(
                NS,
                configmap("from-thread", {"made-by": "thread"}, {"k": "v"}),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as e:  # reported by the main thread
            errors.append(e)

    w = watch.Watch()
    seen = []
    found = None
    creator = threading.Thread(target=create)
    started = time.monotonic()
    # Watching from the list's resourceVersion: the thread's creation comes
    # after it whether the thread runs before or after the watch request
    # reaches the server, so the watch must deliver it.
    creator.start()
    for event in w.stream(
        core.list_namespaced_config_map,
        NS,
        resource_version=rv,
        timeout_seconds=20,
        _request_timeout=REQUEST_TIMEOUT,
    ):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name))
        if event["type"] == "ADDED" and obj.metadata.name == "from-thread":
            found = obj
            w.stop()
            break
    creator.join(REQUEST_TIMEOUT)
    check(not errors, f"the thread created its configmap: {errors}")
    check(found is not None, f"the watch saw ADDED from-thread within 20 s; saw {seen}")
    check(found.data == {"k": "v"}, f"the watched object is whole: {found}")
    check(time.monotonic() - started < 25, "the watch event came in time")


def watch_ends_after_timeout_seconds(core):
    rv = core.list_namespaced_config_map(NS, _request_timeout=REQUEST_TIMEOUT).metadata.resource_version
    started = time.monotonic()
    events = []
    try:
        for event in watch.Watch().stream(
            core.list_namespaced_config_map,
            NS,
            resource_version=rv,
            timeout_seconds=2,
            _request_timeout=REQUEST_TIMEOUT,
        ):
            events.append((event["type"], event["object"].metadata.name))
    except Exception as e:
        raise CheckFailed(
            f"a watch with timeout_seconds=2 and no changes should end cleanly "
            f"within {REQUEST_TIMEOUT} s; it failed after {time.monotonic() - started:.1f} s: {e!r}"
        )
    took = time.monotonic() - started
    check(events == [], f"no changes, no events: {events}")
    check(1.0 <= took < 15, f"the server ended a timeout_seconds=2 watch after {took:.1f} s")


def errors(core):
    body = expect_api_error(
        404, "NotFound", "read a missing configmap", core.read_namespaced_config_map, "nowhere", NS,
        _request_timeout=REQUEST_TIMEOUT,
    )
    check(
        body.get("message") == 'configmaps "nowhere" not found',
        f"NotFound message: {body.get('message')}",
    )
    check(
        (body.get("details") or {}).get("name") == "nowhere"
        and (body.get("details") or {}).get("kind") == "configmaps",
        f"NotFound details: {body.get('details')}",
    )
    expect_api_error(
        404, "NotFound", "read a missing namespace", core.read_namespace, "nowhere",
        _request_timeout=REQUEST_TIMEOUT,
    )
    expect_api_error(
        409, "AlreadyExists", "create an existing configmap", core.create_namespaced_config_map,
        NS, configmap("settings"), _request_timeout=REQUEST_TIMEOUT,
    )
    # A replace carrying a stale resourceVersion.
    stale = core.read_namespaced_config_map("settings", NS, _request_timeout=REQUEST_TIMEOUT)
    fresh = core.read_namespaced_config_map("settings", NS, _request_timeout=REQUEST_TIMEOUT)
    fresh.data["greeting"] = "fresh"
    core.replace_namespaced_config_map("settings", NS, fresh, _request_timeout=REQUEST_TIMEOUT)
    stale.data["greeting"] = "stale"
    body = expect_api_error(
        409, "Conflict", "replace with a stale resourceVersion", core.replace_namespaced_config_map,
        "settings", NS, stale, _request_timeout=REQUEST_TIMEOUT,
    )
    check("the object has been modified" in body.get("message", ""), f"Conflict message: {body}")
    now = core.read_namespaced_config_map("settings", NS, _request_timeout=REQUEST_TIMEOUT)
    check(now.data["greeting"] == "fresh", f"the refused replace changed nothing: {now.data}")


def deployments(apps):
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="web", image="registry.example/hello-http:v1")]
                ),
            ),
        ),
    )
    d = apps.create_namespaced_deployment(NS, body, _request_timeout=REQUEST_TIMEOUT)
    check(d.metadata.generation == 1, f"a new deployment has generation 1: {d.metadata}")
    d = apps.read_namespaced_deployment("web", NS, _request_timeout=REQUEST_TIMEOUT)
    check(d.spec.replicas == 2, f"replicas read back: {d.spec.replicas}")
    check(
        d.spec.template.spec.containers[0].image == "registry.example/hello-http:v1",
        f"image read back: {d.spec.template.spec.containers[0]}",
    )
    names = [i.metadata.name for i in apps.list_namespaced_deployment(NS, _request_timeout=REQUEST_TIMEOUT).items]
    check(names == ["web"], f"deployments listed: {names}")
    scale = apps.patch_namespaced_deployment_scale(
        "web", NS, {"spec": {"replicas": 3}}, _request_timeout=REQUEST_TIMEOUT
    )
    check(scale.spec.replicas == 3, f"scale patched: {scale}")
    d = apps.read_namespaced_deployment("web", NS, _request_timeout=REQUEST_TIMEOUT)
    check(d.spec.replicas == 3, f"scaled deployment: {d.spec.replicas}")


def deletes(core, apps):
    status = core.delete_namespaced_config_map("other", NS, _request_timeout=REQUEST_TIMEOUT)
    check(status is not None, "delete answered")
    expect_api_error(
        404, "NotFound", "read a deleted configmap", core.read_namespaced_config_map, "other", NS,
        _request_timeout=REQUEST_TIMEOUT,
    )
    expect_api_error(
        404, "NotFound", "delete a deleted configmap", core.delete_namespaced_config_map, "other", NS,
        _request_timeout=REQUEST_TIMEOUT,
    )
    apps.delete_namespaced_deployment("web", NS, propagation_policy="Background", _request_timeout=REQUEST_TIMEOUT)
    expect_api_error(
        404, "NotFound", "read a deleted deployment", apps.read_namespaced_deployment, "web", NS,
        _request_timeout=REQUEST_TIMEOUT,
    )
    # A namespace goes Terminating; emptying it is the namespace controller's job.
    core.delete_namespace(NS, _request_timeout=REQUEST_TIMEOUT)
    try:
        ns = core.read_namespace(NS, _request_timeout=REQUEST_TIMEOUT)
        check(
            ns.metadata.deletion_timestamp is not None and ns.status.phase == "Terminating",
            f"a deleted namespace is Terminating until emptied: {ns.metadata.deletion_timestamp} {ns.status}",
        )
    except ApiException as e:
        check(e.status == 404, f"a deleted namespace is Terminating or gone: {e.status} {e.body}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    steps = [
        ("namespaces and configmaps", lambda: namespaces_and_configmaps(core)),
        ("watch", lambda: watch_sees_a_configmap_created_from_a_thread(core)),
        ("watch timeout", lambda: watch_ends_after_timeout_seconds(core)),
        ("errors", lambda: errors(core)),
        ("deployments", lambda: deployments(apps)),
        ("deletes", lambda: deletes(core, apps)),
    ]
    failed = []
    for name, step in steps:
        try:
            step()
            print(f"ok: {name}")
        except CheckFailed as e:
            print(f"FAIL: {name}: {e}", file=sys.stderr)
            failed.append(name)
        except ApiException as e:
            print(
                f"FAIL: {name}: unexpected API error {e.status} {e.reason}: {e.body}",
                file=sys.stderr,
            )
            failed.append(name)
        except Exception:
            print(f"FAIL: {name}: unexpected exception:\n{traceback.format_exc()}", file=sys.stderr)
            failed.append(name)
        sys.stdout.flush()
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
