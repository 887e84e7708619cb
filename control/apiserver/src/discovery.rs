//! Discovery: `/api`, `/apis`, each group-version's resource list, `/version`
//! and the OpenAPI documents kubectl asks for.

use crate::resources::{self, RESOURCES, Resource};
use serde_json::{Value, json};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": format!("v1.37.0+shoal-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// `GET /api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `GET /apis`.
pub fn api_groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/GROUP`.
pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = resources::groups()
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())?;
    let mut entry = group_entry(g, v);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut out = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
        "shortNames": r.short_names,
        "categories": r.categories,
        "storageVersionHash": "",
    })];
    for sub in r.subresources {
        let entry = match sub {
            resources::Sub::Status => {
                json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})
            }
            resources::Sub::Scale => {
                json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
            }
            resources::Sub::Binding => {
                json!({"name": format!("{}/binding", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": "Binding", "verbs": ["create"]})
            }
        };
        out.push(entry);
    }
    // Served by kubelets, as kube-apiserver lists them.
    for (plural, sub) in crate::kubelet::CONNECT_SUBRESOURCES {
        if r.group.is_empty() && *plural == r.plural {
            let (kind, verbs): (&str, &[&str]) = match *sub {
                "exec" => ("PodExecOptions", &["create", "get"]),
                _ => (r.kind, &["get"]),
            };
            out.push(json!({"name": format!("{plural}/{sub}"), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs}));
        }
    }
    out
}

/// `GET /api/v1` or `/apis/GROUP/VERSION`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let entries: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(resource_entries)
        .collect();
    if entries.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}),
    )
}

/// `GET /openapi/v2`: an empty OpenAPI v2 document in the protobuf encoding
/// kubectl asks for. With no schemas kubectl validates nothing client-side
/// and leaves validation to the server (`fieldValidation=Strict`), and takes
/// strategic-merge metadata from its compiled-in types.
pub async fn openapi_v2() -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let mut resp = Vec::<u8>::new().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_list_scale_as_autoscaling_v1() {
        let apps = resource_list("apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (
                scale["group"].as_str(),
                scale["version"].as_str(),
                scale["kind"].as_str()
            ),
            (Some("autoscaling"), Some("v1"), Some("Scale"))
        );
        let core = resource_list("", "v1").unwrap();
        let pods = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let sub = |name: &str| {
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .cloned()
        };
        assert_eq!(sub("pods/log").unwrap()["verbs"], json!(["get"]));
        assert_eq!(sub("pods/exec").unwrap()["kind"], "PodExecOptions");
        assert_eq!(sub("pods/exec").unwrap()["verbs"], json!(["create", "get"]));
        assert!(sub("pods/attach").is_none());
        assert!(sub("pods/portforward").is_none());
        assert!(resource_list("apps", "v2").is_none());
        assert!(
            api_groups()["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "apps")
        );
        assert_eq!(
            api_group("batch").unwrap()["preferredVersion"]["groupVersion"],
            "batch/v1"
        );
    }
}
