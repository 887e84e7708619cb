//! OpenAPI v3, for `kubectl explain` and `kubectl apply`: `/openapi/v3`
//! indexes one document per served group-version; each holds the paths of
//! its resources and the `k8s-openapi` schemas of its kinds (via `schemars`),
//! named and tagged with `x-kubernetes-group-version-kind` as kube-apiserver
//! does. Documents are built once and addressed by content hash.
//!
//! Every PATCH takes `fieldValidation`, so kubectl leaves validation to the
//! server. PATCH offers JSON and merge patches only: the schemas carry no
//! strategic-merge metadata, so kubectl keeps its compiled-in metadata.

use crate::resources::{self, RESOURCES, Resource, Sub};
use crate::status::ApiError;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use k8s_openapi::api::{
    apps, autoscaling, batch, coordination, core, discovery, networking, node, rbac,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A kind with a `k8s-openapi` type: its group-version-kind and how to add
/// its schema to a generator.
struct Typed {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    add: fn(&mut SchemaGenerator) -> String,
}

const fn typed<T: k8s_openapi::Resource + JsonSchema>() -> Typed {
    Typed {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        add: add::<T>,
    }
}

/// Adds `T`'s schema (and those it refers to) and returns its name.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The types of every served kind and subresource kind.
static TYPES: &[Typed] = &[
    typed::<core::v1::Namespace>(),
    typed::<core::v1::Pod>(),
    typed::<core::v1::Node>(),
    typed::<core::v1::Service>(),
    typed::<core::v1::Endpoints>(),
    typed::<core::v1::ConfigMap>(),
    typed::<core::v1::Secret>(),
    typed::<core::v1::Event>(),
    typed::<core::v1::ServiceAccount>(),
    typed::<core::v1::ResourceQuota>(),
    typed::<core::v1::LimitRange>(),
    typed::<core::v1::Binding>(),
    typed::<apps::v1::Deployment>(),
    typed::<apps::v1::ReplicaSet>(),
    typed::<batch::v1::Job>(),
    typed::<autoscaling::v2::HorizontalPodAutoscaler>(),
    typed::<autoscaling::v1::Scale>(),
    typed::<coordination::v1::Lease>(),
    typed::<discovery::v1::EndpointSlice>(),
    typed::<networking::v1::NetworkPolicy>(),
    typed::<rbac::v1::Role>(),
    typed::<rbac::v1::ClusterRole>(),
    typed::<rbac::v1::RoleBinding>(),
    typed::<rbac::v1::ClusterRoleBinding>(),
    typed::<node::v1::RuntimeClass>(),
];

fn typed_kind(group: &str, version: &str, kind: &str) -> Option<&'static Typed> {
    TYPES
        .iter()
        .find(|t| t.group == group && t.version == version && t.kind == kind)
}

/// `api/v1` or `apis/GROUP/VERSION`: a document's name in the index.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// The OpenAPI v3 document of one group-version, or `None` if nothing is
/// served there.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut generator = SchemaSettings::openapi3().into_generator();
    let names = Names {
        status: add::<meta::Status>(&mut generator),
        delete_options: add::<meta::DeleteOptions>(&mut generator),
        patch: add::<meta::Patch>(&mut generator),
    };
    let list_meta = add::<meta::ListMeta>(&mut generator);
    // Schema name -> the group-version-kinds it stands for.
    let mut kinds: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    kinds
        .entry(names.status.clone())
        .or_default()
        .push(gvk("", "v1", "Status"));
    kinds
        .entry(names.delete_options.clone())
        .or_default()
        .push(gvk(group, version, "DeleteOptions"));
    let mut lists = Vec::new();
    let mut paths = Map::new();
    for r in served {
        let Some(t) = typed_kind(r.group, r.version, r.kind) else {
            continue;
        };
        let kind = Kind::new(t, (t.add)(&mut generator));
        let list = Kind {
            schema: format!("{}List", kind.schema),
            gvk: gvk(r.group, r.version, &format!("{}List", r.kind)),
        };
        lists.push((
            list.schema.clone(),
            list_schema(r, &kind.schema, &list_meta),
        ));
        for k in [&kind, &list] {
            kinds
                .entry(k.schema.clone())
                .or_default()
                .push(k.gvk.clone());
        }
        let sub_kinds: Vec<(Sub, Kind)> = r
            .subresources
            .iter()
            .map(|&sub| {
                let t = match sub {
                    Sub::Status => t,
                    Sub::Scale => typed_kind("autoscaling", "v1", "Scale")?,
                    Sub::Binding => typed_kind("", "v1", "Binding")?,
                };
                Some((sub, Kind::new(t, (t.add)(&mut generator))))
            })
            .collect::<Option<_>>()?;
        for (_, k) in &sub_kinds {
            let gvks = kinds.entry(k.schema.clone()).or_default();
            if !gvks.contains(&k.gvk) {
                gvks.push(k.gvk.clone());
            }
        }
        Paths {
            r,
            names: &names,
            kind: &kind,
            list: &list,
        }
        .add_to(&mut paths, &sub_kinds);
    }
    let mut schemas = generator.take_definitions(true);
    for (name, schema) in lists {
        schemas.insert(name, schema);
    }
    for (name, gvks) in kinds {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
            // `k8s-openapi` types require metadata; Kubernetes' schemas don't.
            if let Some(Value::Array(required)) = schema.get_mut("required") {
                required.retain(|f| f != "metadata");
                if required.is_empty() {
                    schema.remove("required");
                }
            }
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Schemas every document has.
struct Names {
    status: String,
    delete_options: String,
    patch: String,
}

/// A schema and the kind it is.
struct Kind {
    schema: String,
    gvk: Value,
}

impl Kind {
    fn new(t: &Typed, schema: String) -> Kind {
        Kind {
            schema,
            gvk: gvk(t.group, t.version, t.kind),
        }
    }
}

fn list_schema(r: &Resource, item: &str, list_meta: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this \
                    representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", r.plural),
                "type": "array",
                "items": {"allOf": [schema_ref(item)], "default": {}},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource \
                    this object represents.",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [schema_ref(list_meta)],
                "default": {},
            },
        },
    })
}

fn param(name: &str, location: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({
        "name": name,
        "in": location,
        "description": description,
        "schema": {"type": ty, "uniqueItems": true},
    });
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn list_params() -> Vec<Value> {
    vec![
        param(
            "labelSelector",
            "query",
            "string",
            "A selector to restrict the list of returned objects by their labels.",
        ),
        param(
            "fieldSelector",
            "query",
            "string",
            "A selector to restrict the list of returned objects by their fields.",
        ),
        param(
            "limit",
            "query",
            "integer",
            "The maximum number of objects to return; the rest follow with `continue`.",
        ),
        param(
            "continue",
            "query",
            "string",
            "The token of a previous paged list, to fetch the next page.",
        ),
        param(
            "resourceVersion",
            "query",
            "string",
            "Which resource version the list or watch is served from.",
        ),
        param(
            "resourceVersionMatch",
            "query",
            "string",
            "How resourceVersion applies to list calls.",
        ),
        param(
            "watch",
            "query",
            "boolean",
            "Watch for changes to the described resources instead of listing them.",
        ),
        param(
            "allowWatchBookmarks",
            "query",
            "boolean",
            "Ask for BOOKMARK events in a watch.",
        ),
        param(
            "timeoutSeconds",
            "query",
            "integer",
            "Timeout for the list or watch call.",
        ),
    ]
}

fn write_params() -> Vec<Value> {
    vec![
        param(
            "dryRun",
            "query",
            "string",
            "When present (`All`), modifications are not persisted.",
        ),
        param(
            "fieldManager",
            "query",
            "string",
            "The name of the actor or entity making these changes.",
        ),
        param(
            "fieldValidation",
            "query",
            "string",
            "How to handle unknown or duplicate fields in the request: Ignore, Warn or \
             Strict (a BadRequest error naming them).",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        param(
            "dryRun",
            "query",
            "string",
            "When present (`All`), modifications are not persisted.",
        ),
        param(
            "gracePeriodSeconds",
            "query",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        param(
            "propagationPolicy",
            "query",
            "string",
            "Whether and how garbage collection is performed: Orphan, Background or \
             Foreground.",
        ),
    ]
}

/// An operation, named as in kube-apiserver's operation ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    List,
    Create,
    DeleteCollection,
    Read,
    Replace,
    Patch,
    Delete,
}

impl Verb {
    /// The value of `x-kubernetes-action`.
    fn action(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Create => "post",
            Verb::DeleteCollection => "deletecollection",
            Verb::Read => "get",
            Verb::Replace => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    fn describe(self, kind: &str) -> String {
        match self {
            Verb::List => format!("list or watch objects of kind {kind}"),
            Verb::Create => format!("create a {kind}"),
            Verb::DeleteCollection => format!("delete collection of {kind}"),
            Verb::Read => format!("read the specified {kind}"),
            Verb::Replace => format!("replace the specified {kind}"),
            Verb::Patch => format!("partially update the specified {kind}"),
            Verb::Delete => format!("delete a {kind}"),
        }
    }

    fn parameters(self) -> Vec<Value> {
        match self {
            Verb::List => list_params(),
            Verb::Create | Verb::Replace | Verb::Patch => write_params(),
            Verb::DeleteCollection => [delete_params(), list_params()].concat(),
            Verb::Delete => delete_params(),
            Verb::Read => Vec::new(),
        }
    }
}

/// The paths of one resource.
struct Paths<'a> {
    r: &'a Resource,
    names: &'a Names,
    kind: &'a Kind,
    list: &'a Kind,
}

impl Paths<'_> {
    fn add_to(&self, paths: &mut Map<String, Value>, subs: &[(Sub, Kind)]) {
        let r = self.r;
        let prefix = format!("/{}", gv_path(r.group, r.version));
        let name = param("name", "path", "string", &format!("name of the {}", r.kind));
        let namespace = param(
            "namespace",
            "path",
            "string",
            "object name and auth scope, such as for teams and projects",
        );
        let (collection, scope, mut parameters) = if r.namespaced {
            let path = format!("{prefix}/namespaces/{{namespace}}/{}", r.plural);
            (path, "Namespaced", vec![namespace])
        } else {
            (format!("{prefix}/{}", r.plural), "", vec![])
        };
        let (k, list) = (self.kind, self.list);
        paths.insert(
            collection.clone(),
            json!({
                "get": self.op(Verb::List, list, scope, ""),
                "post": self.op(Verb::Create, k, scope, ""),
                "delete": self.op(Verb::DeleteCollection, k, scope, ""),
                "parameters": parameters,
            }),
        );
        if r.namespaced {
            let all = json!({"get": self.op(Verb::List, list, "", "ForAllNamespaces")});
            paths.insert(format!("{prefix}/{}", r.plural), all);
        }
        parameters.insert(0, name);
        let item = format!("{collection}/{{name}}");
        let mut ops = self.item_ops(k, scope, "", &parameters);
        ops["delete"] = self.op(Verb::Delete, k, scope, "");
        paths.insert(item.clone(), ops);
        for (sub, k) in subs {
            let suffix = capitalized(sub.name());
            let ops = if *sub == Sub::Binding {
                json!({"post": self.op(Verb::Create, k, scope, &suffix), "parameters": parameters})
            } else {
                self.item_ops(k, scope, &suffix, &parameters)
            };
            paths.insert(format!("{item}/{}", sub.name()), ops);
        }
    }

    /// get, put and patch of one object or its subresource.
    fn item_ops(&self, k: &Kind, scope: &str, suffix: &str, parameters: &[Value]) -> Value {
        json!({
            "get": self.op(Verb::Read, k, scope, suffix),
            "put": self.op(Verb::Replace, k, scope, suffix),
            "patch": self.op(Verb::Patch, k, scope, suffix),
            "parameters": parameters,
        })
    }

    /// One operation on kind `k`; `scope` is `Namespaced` or empty, `suffix`
    /// names a subresource or `ForAllNamespaces`.
    fn op(&self, verb: Verb, k: &Kind, scope: &str, suffix: &str) -> Value {
        let r = self.r;
        let (tag, gv) = names_of(r.group, r.version);
        let kind = r.kind;
        let id = match verb {
            Verb::List => format!("list{gv}{scope}{kind}{suffix}"),
            Verb::Create => format!("create{gv}{scope}{kind}{suffix}"),
            Verb::DeleteCollection => format!("delete{gv}Collection{scope}{kind}{suffix}"),
            Verb::Read => format!("read{gv}{scope}{kind}{suffix}"),
            Verb::Replace => format!("replace{gv}{scope}{kind}{suffix}"),
            Verb::Patch => format!("patch{gv}{scope}{kind}{suffix}"),
            Verb::Delete => format!("delete{gv}{scope}{kind}{suffix}"),
        };
        let json_body = |schema: &str| {
            let content = json!({"application/json": {"schema": schema_ref(schema)}});
            json!({"content": content, "required": true})
        };
        // No strategic merge patch: see the module docs.
        let patch = json!({"schema": schema_ref(&self.names.patch)});
        let (request, response) = match verb {
            Verb::List | Verb::Read => (None, &k.schema),
            Verb::Create | Verb::Replace => (Some(json_body(&k.schema)), &k.schema),
            Verb::Patch => (
                Some(json!({
                    "content": {
                        "application/json-patch+json": patch,
                        "application/merge-patch+json": patch,
                    },
                    "required": true,
                })),
                &k.schema,
            ),
            Verb::Delete | Verb::DeleteCollection => (
                Some(json_body(&self.names.delete_options)),
                &self.names.status,
            ),
        };
        let content = json!({"application/json": {"schema": schema_ref(response)}});
        let mut responses = json!({
            "200": {"description": "OK", "content": content},
            "401": {"description": "Unauthorized"},
        });
        match verb {
            Verb::Create | Verb::Replace => {
                responses["201"] = json!({"description": "Created", "content": content});
            }
            Verb::Delete | Verb::DeleteCollection => {
                responses["202"] = json!({"description": "Accepted", "content": content});
            }
            _ => {}
        }
        let mut op = json!({
            "tags": [tag],
            "description": verb.describe(k.gvk["kind"].as_str().unwrap_or(kind)),
            "operationId": id,
            "parameters": verb.parameters(),
            "responses": responses,
            "x-kubernetes-action": verb.action(),
            "x-kubernetes-group-version-kind": k.gvk,
        });
        if let Some(body) = request {
            op["requestBody"] = body;
        }
        op
    }
}

/// The tag (`core_v1`, `rbacAuthorization_v1`) and operation id part
/// (`CoreV1`, `RbacAuthorizationV1`) of a group-version.
fn names_of(group: &str, version: &str) -> (String, String) {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let parts: Vec<String> = group.split('.').map(capitalized).collect();
    let camel = parts.concat();
    let mut tag = camel.clone();
    if let Some(first) = tag.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    (
        format!("{tag}_{version}"),
        format!("{camel}{}", capitalized(version)),
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// A served JSON body and its content hash.
struct Served {
    body: Bytes,
    hash: String,
}

impl Served {
    fn new(value: &Value) -> Served {
        let body = serde_json::to_vec(value).expect("a JSON value serializes");
        Served {
            hash: format!("{:016X}", fnv1a(&body)),
            body: body.into(),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The index and every document, built on first use.
struct Documents {
    index: Served,
    by_path: BTreeMap<String, Served>,
}

fn documents() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| {
        let by_path: BTreeMap<String, Served> = resources::groups()
            .into_iter()
            .filter_map(|(g, v)| Some((gv_path(g, v), Served::new(&document(g, v)?))))
            .collect();
        let index: Map<String, Value> = by_path
            .iter()
            .map(|(path, doc)| {
                let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
                (path.clone(), json!({"serverRelativeURL": url}))
            })
            .collect();
        Documents {
            index: Served::new(&json!({"paths": index})),
            by_path,
        }
    })
}

/// `GET /openapi/v3`.
pub async fn index(headers: HeaderMap) -> Response {
    respond(&documents().index, &headers, false)
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/GROUP/VERSION`. With the
/// current `hash` the answer may be cached for good; with a stale one the
/// client is redirected to the current document.
pub async fn group_version(
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(doc) = documents().by_path.get(&path) else {
        return ApiError::no_route(&format!("/openapi/v3/{path}")).into_response();
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let hash = pairs.into_iter().find(|(k, _)| k == "hash").map(|(_, v)| v);
    match hash {
        Some(h) if h != doc.hash => {
            let location = format!("/openapi/v3/{path}?hash={}", doc.hash);
            let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Some(_) => respond(doc, &headers, true),
        None => respond(doc, &headers, false),
    }
}

fn respond(doc: &Served, request: &HeaderMap, immutable: bool) -> Response {
    let etag = format!("\"{}\"", doc.hash);
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        doc.body.clone().into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if immutable {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable, max-age=31536000"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_served_kind_has_a_type() {
        for r in RESOURCES {
            assert!(
                typed_kind(r.group, r.version, r.kind).is_some(),
                "{}",
                r.kind
            );
        }
    }

    #[test]
    fn the_index_lists_every_group_version() {
        let index: Value = serde_json::from_slice(&documents().index.body).unwrap();
        let paths = index["paths"].as_object().unwrap();
        assert_eq!(paths.len(), resources::groups().len());
        for (g, v) in resources::groups() {
            let path = gv_path(g, v);
            let url = paths[&path]["serverRelativeURL"].as_str().unwrap();
            let hash = &documents().by_path[&path].hash;
            assert_eq!(url, format!("/openapi/v3/{path}?hash={hash}"));
        }
        assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"));
    }

    #[test]
    fn the_core_document_describes_pods_with_resolvable_refs() {
        let doc = document("", "v1").unwrap();
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert!(pod["properties"]["spec"]["description"].is_string());
        assert!(pod.get("required").is_none(), "metadata is optional");
        assert_eq!(
            schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "PodList"
        );
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 100);
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
    }

    #[test]
    fn deployments_patch_takes_field_validation_without_strategic_merge() {
        let doc = document("apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        let content = patch["requestBody"]["content"].as_object().unwrap();
        assert!(content.contains_key("application/merge-patch+json"));
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
        // Every PATCH of a kind takes it: kubectl looks at the first it finds.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if let Some(p) = ops.get("patch") {
                assert!(
                    p["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == "fieldValidation"),
                    "{path}"
                );
            }
        }
        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"]["group"],
            "autoscaling"
        );
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        assert!(document("apps", "v2").is_none());
    }

    #[test]
    fn names_follow_kube_apiserver() {
        assert_eq!(names_of("", "v1"), ("core_v1".into(), "CoreV1".into()));
        assert_eq!(
            names_of("rbac.authorization.k8s.io", "v1"),
            ("rbacAuthorization_v1".into(), "RbacAuthorizationV1".into())
        );
    }

    #[tokio::test]
    async fn documents_are_cached_by_hash_and_unknown_ones_are_404() {
        let path = "apis/batch/v1".to_string();
        let hash = documents().by_path[&path].hash.clone();
        let get = |query: Option<String>, headers: HeaderMap| {
            group_version(Path(path.clone()), RawQuery(query), headers)
        };
        let fresh = get(Some(format!("hash={hash}")), HeaderMap::new()).await;
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(fresh.headers()[header::CONTENT_TYPE], "application/json");
        assert!(
            fresh.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let plain = get(None, HeaderMap::new()).await;
        assert!(plain.headers().get(header::CACHE_CONTROL).is_none());
        let stale = get(Some("hash=0".into()), HeaderMap::new()).await;
        assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, plain.headers()[header::ETAG].clone());
        assert_eq!(get(None, headers).await.status(), StatusCode::NOT_MODIFIED);
        let missing = group_version(
            Path("apis/nope/v1".into()),
            RawQuery(None),
            HeaderMap::new(),
        )
        .await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
