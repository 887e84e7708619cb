//! End to end: `shoal server` driven by the real kubectl (the pinned PyPI
//! wheel), as a user would drive it.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use testbed::ShoalServer;

/// A `shoal server` on one store backend; the etcd member (if any) lives as long as it.
struct Cluster {
    server: ShoalServer,
    _etcd: Option<(testbed::Etcd, tokio::runtime::Runtime)>,
}

impl std::ops::Deref for Cluster {
    type Target = ShoalServer;
    fn deref(&self) -> &ShoalServer {
        &self.server
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Etcd,
}

fn server_on(backend: Backend) -> Cluster {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_shoal"));
    match backend {
        Backend::Embedded => Cluster {
            server: ShoalServer::start(bin, &[]).unwrap(),
            _etcd: None,
        },
        Backend::Etcd => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let etcd = rt.block_on(testbed::Etcd::start()).unwrap();
            let server = ShoalServer::start(bin, &["--etcd-endpoints", &etcd.endpoint()]).unwrap();
            Cluster {
                server,
                _etcd: Some((etcd, rt)),
            }
        }
    }
}

/// A server on the embedded store, for scenarios that do not touch storage semantics.
fn server() -> Cluster {
    server_on(Backend::Embedded)
}

/// Runs each scenario against both store backends.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn embedded() {
                    super::$scenario(super::server_on(super::Backend::Embedded));
                }
                #[test]
                fn etcd() {
                    super::$scenario(super::server_on(super::Backend::Etcd));
                }
            }
        )*
    };
}

on_both_stores!(
    apply_get_and_reapply_a_multi_document_manifest,
    pods_show_the_usual_columns_and_describe_works,
    label_annotate_patch_scale_edit_and_delete,
    get_watch_sees_a_change,
    discovery_serves_resources_and_versions,
    bad_input_gets_kubernetes_errors,
);

const APP_V1: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: registry.example/hello-http:v1
        env:
        - name: MODE
          value: fast
        - name: COLOR
          value: blue
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn apply_get_and_reapply_a_multi_document_manifest(s: Cluster) {
    let k = s.kubectl();
    let out = k.run_with_stdin(&["apply", "-f", "-"], Some(APP_V1)).ok();
    for line in [
        "namespace/shop created",
        "configmap/settings created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }

    let deploy = json(
        &k.run(&["get", "deployment", "web", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["metadata"]["generation"], 1);
    assert!(
        deploy["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let secret = json(
        &k.run(&["get", "secret", "creds", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    let svc = json(
        &k.run(&["get", "svc", "web", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.43."),
        "{svc}"
    );

    // Unchanged, then changed: image bumped, one env var dropped, replicas up.
    let again = k.run_with_stdin(&["apply", "-f", "-"], Some(APP_V1)).ok();
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    let v2 = APP_V1
        .replace("hello-http:v1", "hello-http:v2")
        .replace("        - name: COLOR\n          value: blue\n", "")
        .replace("replicas: 2", "replicas: 3");
    let out = k.run_with_stdin(&["apply", "-f", "-"], Some(&v2)).ok();
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let deploy = json(
        &k.run(&["get", "deploy", "web", "-n", "shop", "-o", "json"])
            .ok(),
    );
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example/hello-http:v2");
    assert_eq!(
        c["env"],
        serde_json::json!([{"name": "MODE", "value": "fast"}])
    );
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(deploy["metadata"]["generation"], 2);
    let svc2 = json(
        &k.run(&["get", "svc", "web", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(
        svc2["spec"]["clusterIP"], svc["spec"]["clusterIP"],
        "apply keeps the allocated cluster IP"
    );

    // Output formats.
    let yaml = k
        .run(&["get", "cm", "settings", "-n", "shop", "-o", "yaml"])
        .ok();
    assert!(
        yaml.contains("greeting: hello") && yaml.contains("kind: ConfigMap"),
        "{yaml}"
    );
    let names = k
        .run(&["get", "deploy,svc,cm", "-n", "shop", "-o", "name"])
        .ok();
    assert!(
        names.contains("deployment.apps/web")
            && names.contains("service/web")
            && names.contains("configmap/settings"),
        "{names}"
    );
    let table = k.run(&["get", "deployments", "-n", "shop"]).ok();
    assert!(
        table.starts_with("NAME")
            && table.contains("READY")
            && table.contains("UP-TO-DATE")
            && table.contains("web"),
        "{table}"
    );
    let wide = k
        .run(&["get", "deployments", "-n", "shop", "-o", "wide"])
        .ok();
    assert!(
        wide.contains("IMAGES") && wide.contains("registry.example/hello-http:v2"),
        "{wide}"
    );
    let svcs = k.run(&["get", "svc", "-A"]).ok();
    assert!(
        svcs.contains("NAMESPACE")
            && svcs.contains("kubernetes")
            && svcs.contains("10.43.0.1")
            && svcs.contains("80/TCP"),
        "{svcs}"
    );
}

fn pods_show_the_usual_columns_and_describe_works(s: Cluster) {
    let k = s.kubectl();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\n  labels:\n    app: hello\nspec:\n  containers:\n  - name: hello\n    image: registry.example/hello:v1\n";
    assert!(
        k.run_with_stdin(&["apply", "-f", "-"], Some(pod))
            .ok()
            .contains("pod/hello created")
    );
    let out = k.run(&["get", "pods"]).ok();
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert!(
        out.contains("hello") && out.contains("0/1") && out.contains("Pending"),
        "{out}"
    );
    let wide = k.run(&["get", "pods", "-o", "wide"]).ok();
    assert!(wide.lines().next().unwrap().contains("NODE"), "{wide}");
    let describe = k.run(&["describe", "pod", "hello"]).ok();
    assert!(
        describe.contains("Name:")
            && describe.contains("hello")
            && describe.contains("registry.example/hello:v1"),
        "{describe}"
    );
    let by_label = k
        .run(&["get", "pods", "-l", "app=hello", "-o", "name"])
        .ok();
    assert_eq!(by_label.trim(), "pod/hello");
    let none = k
        .run(&["get", "pods", "-l", "app=other", "-o", "name"])
        .ok();
    assert_eq!(none.trim(), "");
    let fs = k
        .run(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Pending",
            "-o",
            "name",
        ])
        .ok();
    assert_eq!(fs.trim(), "pod/hello");
    // Unbound pods go at once.
    assert!(
        k.run(&["delete", "pod", "hello"])
            .ok()
            .contains("pod \"hello\" deleted")
    );
    let gone = k.run(&["get", "pod", "hello"]).err();
    assert!(
        gone.contains("Error from server (NotFound): pods \"hello\" not found"),
        "{gone}"
    );
}

fn label_annotate_patch_scale_edit_and_delete(s: Cluster) {
    let k = s.kubectl();
    k.run_with_stdin(&["apply", "-f", "-"], Some(APP_V1)).ok();
    k.run(&["label", "deploy", "web", "-n", "shop", "tier=frontend"])
        .ok();
    k.run(&["annotate", "deploy", "web", "-n", "shop", "owner=team-a"])
        .ok();
    let d = json(
        &k.run(&["get", "deploy", "web", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(d["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(d["metadata"]["annotations"]["owner"], "team-a");
    k.run(&["label", "deploy", "web", "-n", "shop", "tier-"])
        .ok();

    k.run(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ])
    .ok();
    k.run(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/greeting","value":"hi"}]"#,
    ])
    .ok();
    let cm = json(
        &k.run(&["get", "cm", "settings", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(
        (
            cm["data"]["greeting"].as_str(),
            cm["data"]["extra"].as_str()
        ),
        (Some("hi"), Some("1"))
    );
    k.run(&["patch", "deploy", "web", "-n", "shop", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"registry.example/side:v1"}]}}}}"#]).ok();
    let d = json(
        &k.run(&["get", "deploy", "web", "-n", "shop", "-o", "json"])
            .ok(),
    );
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // Merged by name; Kubernetes puts items the patch adds before the ones it does not name.
    assert_eq!(
        names,
        ["sidecar", "web"],
        "a strategic patch merges containers by name"
    );
    assert!(d["metadata"]["labels"].get("tier").is_none());

    let bad = k
        .run(&[
            "patch",
            "cm",
            "settings",
            "-n",
            "shop",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/greeting","value":"nope"}]"#,
        ])
        .err();
    assert!(bad.contains("value did not match"), "{bad}");

    assert!(
        k.run(&["scale", "deploy", "web", "-n", "shop", "--replicas=5"])
            .ok()
            .contains("scaled")
    );
    let d = json(
        &k.run(&["get", "deploy", "web", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(d["spec"]["replicas"], 5);

    // edit through an editor that rewrites the greeting.
    let editor = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        editor.path(),
        "#!/bin/sh\nsed -i 's/greeting: hi/greeting: edited/' \"$1\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(editor.path())
        .status()
        .unwrap();
    let editor_path = editor.into_temp_path();
    let mut edit = k.command(&["edit", "cm", "settings", "-n", "shop"]);
    edit.env("KUBE_EDITOR", editor_path.to_str().unwrap());
    let out = edit.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = json(
        &k.run(&["get", "cm", "settings", "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(cm["data"]["greeting"], "edited");

    // delete by label, by name, by file.
    k.run_with_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: shop\n"),
    )
    .ok();
    k.run(&["label", "cm", "a", "-n", "shop", "doomed=yes"])
        .ok();
    assert!(
        k.run(&["delete", "cm", "-n", "shop", "-l", "doomed=yes"])
            .ok()
            .contains("configmap \"a\" deleted")
    );
    assert!(
        k.run(&["delete", "svc", "web", "-n", "shop"])
            .ok()
            .contains("deleted")
    );
    // The namespace goes Terminating; emptying it is the controller-manager's
    // namespace controller's job, so kubectl is not asked to wait for it.
    let out = k
        .run_with_stdin(
            &["delete", "-f", "-", "--ignore-not-found", "--wait=false"],
            Some(APP_V1),
        )
        .ok();
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let ns = json(&k.run(&["get", "ns", "shop", "-o", "json"]).ok());
    assert_eq!(ns["status"]["phase"], "Terminating");
    let refused = k
        .run_with_stdin(
            &["create", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: shop\n"),
        )
        .err();
    assert!(
        refused.contains("because it is being terminated"),
        "{refused}"
    );
}

/// Starts a long-running kubectl (`get -w`) and hands its stdout over line by line.
fn stream_lines(
    k: &testbed::Kubectl,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = k
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn get_watch_sees_a_change(s: Cluster) {
    let k = s.kubectl();
    k.run_with_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  k: v1\n"),
    )
    .ok();
    let (mut child, rx) = stream_lines(&k, &["get", "cm", "watched", "-w", "-o", "json"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let mut patched = false;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
        }
        if !patched && seen.contains("\"v1\"") {
            k.run(&[
                "patch",
                "cm",
                "watched",
                "--type=merge",
                "-p",
                r#"{"data":{"k":"v2"}}"#,
            ])
            .ok();
            patched = true;
        }
        if seen.contains("\"v2\"") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains("\"v2\""),
        "the watch printed the change:\n{seen}"
    );
}

fn discovery_serves_resources_and_versions(s: Cluster) {
    let k = s.kubectl();
    let resources = k.run(&["api-resources"]).ok();
    for needle in [
        "pods",
        "po",
        "deployments",
        "deploy",
        "apps/v1",
        "namespaces",
        "endpointslices",
        "leases",
        "horizontalpodautoscalers",
    ] {
        assert!(resources.contains(needle), "{needle} in:\n{resources}");
    }
    let versions = k.run(&["api-versions"]).ok();
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "rbac.authorization.k8s.io/v1",
    ] {
        assert!(versions.lines().any(|l| l == gv), "{gv} in:\n{versions}");
    }
    let all = k.run(&["get", "all", "-A"]).ok();
    assert!(all.contains("service/kubernetes"), "{all}");
    let ns = k.run(&["get", "ns"]).ok();
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    let version = k.run(&["version", "-o", "json"]).ok();
    assert_eq!(json(&version)["serverVersion"]["minor"], "37");
}

fn bad_input_gets_kubernetes_errors(s: Cluster) {
    let k = s.kubectl();
    let no_image =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\nspec:\n  containers:\n  - name: c\n";
    let err = k
        .run_with_stdin(&["apply", "-f", "-"], Some(no_image))
        .err();
    assert!(
        err.contains("is invalid") && err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );
    let bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n";
    let err = k
        .run_with_stdin(&["apply", "-f", "-"], Some(bad_name))
        .err();
    assert!(
        err.contains("metadata.name: Invalid value: \"Not_Valid\""),
        "{err}"
    );
    let err = k
        .run_with_stdin(
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n"),
        )
        .err();
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    let err = k
        .run_with_stdin(
            &["create", "-f", "-"],
            Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n"),
        )
        .err();
    assert!(
        err.contains("AlreadyExists") && err.contains("namespaces \"default\" already exists"),
        "{err}"
    );
    let err = k.run(&["get", "widgets"]).err();
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  k: {}\n",
        "x".repeat(1024 * 1024 + 10)
    );
    let err = k.run_with_stdin(&["apply", "-f", "-"], Some(&big)).err();
    assert!(
        err.contains("Too long") || err.contains("too large"),
        "{err}"
    );
}

#[test]
fn explain_describes_kinds_and_fields() {
    let s = server();
    let k = s.kubectl();
    let pods = k.run(&["explain", "pods"]).ok();
    for needle in [
        "KIND:       Pod",
        "VERSION:    v1",
        "DESCRIPTION:",
        "FIELDS:",
        "spec\t<PodSpec>",
        "Specification of the desired behavior of the pod.",
    ] {
        assert!(pods.contains(needle), "{needle:?} in:\n{pods}");
    }
    let replicas = k.run(&["explain", "deployment.spec.replicas"]).ok();
    for needle in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: replicas <integer>",
        "Number of desired pods.",
    ] {
        assert!(replicas.contains(needle), "{needle:?} in:\n{replicas}");
    }
    let containers = k
        .run(&["explain", "deployment.spec.template.spec.containers"])
        .ok();
    assert!(
        containers.contains("FIELD: containers <[]Container>")
            && containers.contains("image\t<string>"),
        "{containers}"
    );
    let svc = k.run(&["explain", "svc", "--recursive"]).ok();
    assert!(
        svc.contains("KIND:       Service") && svc.contains("      targetPort\t<IntOrString>"),
        "{svc}"
    );
    let err = k.run(&["explain", "pods.spec.nope"]).err();
    assert!(err.contains("field \"nope\" does not exist"), "{err}");
}

/// The typed-client commands, which send protobuf bodies.
fn create_and_expose_with_typed_clients(s: Cluster) {
    let k = s.kubectl();
    assert!(
        k.run(&["create", "namespace", "team"])
            .ok()
            .contains("namespace/team created")
    );
    k.run(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "team",
        "--from-literal=greeting=hello",
        "--from-literal=count=3",
    ])
    .ok();
    k.run(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "team",
        "--from-literal=password=hunter2",
    ])
    .ok();
    k.run(&[
        "create",
        "deployment",
        "web",
        "-n",
        "team",
        "--image=registry.example/hello-http:v1",
        "--replicas=2",
        "--port=8080",
    ])
    .ok();
    assert!(
        k.run(&[
            "expose",
            "deployment",
            "web",
            "-n",
            "team",
            "--port=80",
            "--target-port=8080"
        ])
        .ok()
        .contains("service/web exposed")
    );
    let cm = json(
        &k.run(&["get", "cm", "cfg", "-n", "team", "-o", "json"])
            .ok(),
    );
    assert_eq!(
        (
            cm["data"]["greeting"].as_str(),
            cm["data"]["count"].as_str()
        ),
        (Some("hello"), Some("3"))
    );
    let secret = json(
        &k.run(&["get", "secret", "pw", "-n", "team", "-o", "json"])
            .ok(),
    );
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    let deploy = json(
        &k.run(&["get", "deploy", "web", "-n", "team", "-o", "json"])
            .ok(),
    );
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/hello-http:v1"
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    let svc = json(
        &k.run(&["get", "svc", "web", "-n", "team", "-o", "json"])
            .ok(),
    );
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    let err = k.run(&["create", "configmap", "cfg", "-n", "team"]).err();
    assert!(err.contains("configmaps \"cfg\" already exists"), "{err}");
}

on_both_stores!(create_and_expose_with_typed_clients);

/// `kubectl get -w` with the default table output: a header, a row, then a
/// row per change, all from Tables.
fn get_watch_prints_table_rows(s: Cluster) {
    let k = s.kubectl();
    k.run_with_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rows\ndata:\n  a: '1'\n"),
    )
    .ok();
    let (mut child, rx) = stream_lines(&k, &["get", "cm", "-w"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines: Vec<String> = Vec::new();
    let mut patched = false;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
        let rows: Vec<&String> = lines.iter().filter(|l| l.starts_with("rows ")).collect();
        if !patched && !rows.is_empty() {
            k.run(&[
                "patch",
                "cm",
                "rows",
                "--type=merge",
                "-p",
                r#"{"data":{"b":"2"}}"#,
            ])
            .ok();
            patched = true;
        }
        if rows.len() >= 2 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let header: Vec<&str> = lines
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{lines:?}");
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.starts_with("rows "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() >= 2, "a row for the change: {lines:?}");
    assert_eq!((rows[0][1], rows[1][1]), ("1", "2"), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "one header: {lines:?}"
    );
}

on_both_stores!(get_watch_prints_table_rows);
