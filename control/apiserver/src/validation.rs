//! Validation: names, metadata and the fields each kind requires, answered
//! as 422 Invalid with one cause per field; and the typed decode through
//! `k8s-openapi` that catches wrong types (400) and unknown fields.

use crate::resources::Resource;
use crate::status::Cause;
use serde_json::{Map, Value};

/// ConfigMaps and Secrets are refused above this, as Kubernetes refuses them.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Total size of all annotations.
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: at most 63 lowercase alphanumerics or '-', alphanumeric at both ends.
pub fn dns_label_problem(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower);
    (!ok).then(|| "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns_subdomain_problem(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    let ok = s.chars().all(|c| is_alnum_lower(c) || c == '-' || c == '.')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower);
    (!ok).then(|| "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
}

/// A qualified name (label key): optional DNS-subdomain prefix and '/', then
/// a name of at most 63 alphanumerics, '-', '_' or '.'.
pub fn qualified_name_problem(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && let Some(problem) = dns_subdomain_problem(p)
    {
        return Some(format!("prefix part {problem}"));
    }
    label_value_problem(name).or_else(|| {
        name.is_empty()
            .then(|| "name part must be non-empty".into())
    })
}

/// A label value: empty, or at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends.
pub fn label_value_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = s.chars().all(|c| alnum(c) || "-_.".contains(c))
        && s.starts_with(alnum)
        && s.ends_with(alnum);
    (!ok).then(|| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
}

/// Name and metadata checks every object gets.
pub fn metadata(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = obj.get("metadata").and_then(Value::as_object);
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else {
        let problem = if res.dns_label_names {
            dns_label_problem(name)
        } else {
            dns_subdomain_problem(name)
        };
        if let Some(p) = problem {
            causes.push(Cause::invalid(
                "metadata.name",
                &Value::String(name.into()),
                p,
            ));
        }
    }
    if let Some(labels) = meta.and_then(|m| m.get("labels")) {
        match labels.as_object() {
            Some(labels) => {
                for (k, v) in labels {
                    if let Some(p) = qualified_name_problem(k) {
                        causes.push(Cause::invalid(
                            "metadata.labels",
                            &Value::String(k.clone()),
                            p,
                        ));
                    }
                    match v.as_str() {
                        Some(s) => {
                            if let Some(p) = label_value_problem(s) {
                                causes.push(Cause::invalid(format!("metadata.labels.{k}"), v, p));
                            }
                        }
                        None => causes.push(Cause::invalid(
                            format!("metadata.labels.{k}"),
                            v,
                            "must be a string",
                        )),
                    }
                }
            }
            None if !labels.is_null() => causes.push(Cause::invalid(
                "metadata.labels",
                labels,
                "must be a map of strings",
            )),
            None => {}
        }
    }
    if let Some(annotations) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in annotations {
            total += k.len() + v.as_str().map_or(0, str::len);
            if let Some(p) = qualified_name_problem(&k.to_lowercase()) {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    &Value::String(k.clone()),
                    p,
                ));
            }
        }
        if total > MAX_ANNOTATION_BYTES {
            causes.push(Cause::too_long(
                "metadata.annotations",
                MAX_ANNOTATION_BYTES,
            ));
        }
    }
    causes
}

/// The kind's own required fields and rules.
pub fn kind(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match res.kind {
        "Pod" => pod_spec(obj.get("spec"), "spec", &mut causes),
        "Deployment" | "ReplicaSet" => workload(obj, &mut causes, true),
        "Job" => workload(obj, &mut causes, false),
        "Service" => service(obj, &mut causes),
        "ConfigMap" => config_data(obj, &["data", "binaryData"], &mut causes),
        "Secret" => config_data(obj, &["data", "stringData"], &mut causes),
        _ => {}
    }
    causes
}

fn container_list(
    list: Option<&Value>,
    path: &str,
    required: bool,
    causes: &mut Vec<Cause>,
    names: &mut Vec<String>,
) {
    let items = list.and_then(Value::as_array);
    if required && items.is_none_or(|a| a.is_empty()) {
        causes.push(Cause::required(path));
        return;
    }
    for (i, c) in items.into_iter().flatten().enumerate() {
        let at = format!("{path}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{at}.name"))),
            Some(n) => {
                if let Some(p) = dns_label_problem(n) {
                    causes.push(Cause::invalid(
                        format!("{at}.name"),
                        &Value::String(n.into()),
                        p,
                    ));
                }
                if names.iter().any(|x| x == n) {
                    causes.push(Cause::duplicate(format!("{at}.name"), n));
                }
                names.push(n.to_string());
            }
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{at}.image")));
        }
        for (j, p) in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                causes.push(Cause::invalid(
                    format!("{at}.ports[{j}].containerPort"),
                    p.get("containerPort").unwrap_or(&Value::Null),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
}

fn pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(Cause::required(format!("{path}.containers")));
        return;
    };
    let mut names = Vec::new();
    container_list(
        spec.get("containers"),
        &format!("{path}.containers"),
        true,
        causes,
        &mut names,
    );
    container_list(
        spec.get("initContainers"),
        &format!("{path}.initContainers"),
        false,
        causes,
        &mut names,
    );
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        causes.push(Cause::unsupported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    let mut volumes = Vec::new();
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match v.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{path}.volumes[{i}].name"))),
            Some(n) if volumes.contains(&n) => {
                causes.push(Cause::duplicate(format!("{path}.volumes[{i}].name"), n))
            }
            Some(n) => volumes.push(n),
        }
    }
}

fn workload(obj: &Value, causes: &mut Vec<Cause>, needs_selector: bool) {
    let spec = obj.get("spec");
    if let Some(r) = spec.and_then(|s| s.get("replicas"))
        && r.as_i64().is_some_and(|n| n < 0)
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    let template = spec.and_then(|s| s.get("template"));
    pod_spec(
        template.and_then(|t| t.get("spec")),
        "spec.template.spec",
        causes,
    );
    let labels = template
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object);
    match spec.and_then(|s| s.get("selector")) {
        None | Some(Value::Null) if needs_selector => causes.push(Cause::required("spec.selector")),
        Some(selector) => {
            let match_labels = selector.get("matchLabels").and_then(Value::as_object);
            let exprs = selector.get("matchExpressions").and_then(Value::as_array);
            if needs_selector
                && match_labels.is_none_or(Map::is_empty)
                && exprs.is_none_or(|e| e.is_empty())
            {
                causes.push(Cause::invalid(
                    "spec.selector",
                    selector,
                    "empty selector is invalid for deployment",
                ));
            }
            if let Some(ml) = match_labels {
                let matches = ml
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if !matches {
                    let shown = labels
                        .map(|l| Value::Object(l.clone()))
                        .unwrap_or(Value::Null);
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &shown,
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        None => {}
    }
    if !needs_selector
        && let Some(policy) = template
            .and_then(|t| t.get("spec"))
            .and_then(|s| s.get("restartPolicy"))
            .and_then(Value::as_str)
        && policy == "Always"
    {
        causes.push(Cause::unsupported(
            "spec.template.spec.restartPolicy",
            policy,
            &["OnFailure", "Never"],
        ));
    }
}

fn service(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let ty = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !TYPES.contains(&ty) {
        causes.push(Cause::unsupported("spec.type", ty, TYPES));
    }
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    let headless = spec
        .and_then(|s| s.get("clusterIP"))
        .and_then(Value::as_str)
        == Some("None");
    if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
        causes.push(Cause::required("spec.ports"));
    }
    let mut names = Vec::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                p.get("port").unwrap_or(&Value::Null),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64)
            && np != 0
            && !(30000..=32767).contains(&np)
        {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].nodePort"),
                &Value::from(np),
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            ));
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.is_some_and(|all| all.len() > 1) && name.is_empty() {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        }
        if !name.is_empty() && names.contains(&name) {
            causes.push(Cause::duplicate(format!("spec.ports[{i}].name"), name));
        }
        names.push(name);
    }
}

fn config_data(obj: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    let mut total = 0;
    for field in fields {
        for (k, v) in obj
            .get(*field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            total += k.len() + v.as_str().map_or(0, str::len);
            let ok = !k.is_empty()
                && k.len() <= 253
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                causes.push(Cause::invalid(field.to_string(), &Value::String(k.clone()), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
        }
    }
    if total > MAX_CONFIG_BYTES {
        causes.push(Cause::too_long("", MAX_CONFIG_BYTES));
    }
}

/// Quantities may be written as JSON numbers (`cpu: 1`); the typed decode
/// wants strings, as Kubernetes' serializer accepts both.
pub fn normalize_quantities(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let quantity_map = matches!(
                    k.as_str(),
                    "limits"
                        | "requests"
                        | "capacity"
                        | "allocatable"
                        | "hard"
                        | "used"
                        | "max"
                        | "min"
                        | "default"
                        | "defaultRequest"
                        | "maxLimitRequestRatio"
                );
                if quantity_map && let Some(q) = child.as_object_mut() {
                    for qv in q.values_mut() {
                        if let Value::Number(n) = qv {
                            *qv = Value::String(n.to_string());
                        }
                    }
                } else {
                    normalize_quantities(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_quantities),
        _ => {}
    }
}

/// Field paths present in `input` that the typed round trip dropped: fields
/// the kind does not have.
pub fn unknown_fields(input: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(input, typed, String::new(), &mut out);
    out
}

fn walk_unknown(input: &Value, typed: &Value, path: String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(tv) => walk_unknown(v, tv, p, out),
                    // A null is "unset", which the round trip drops; anything else dropped is unknown.
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk_unknown(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    fn fields(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.reason))
            .collect()
    }

    #[test]
    fn names_follow_rfc_1123() {
        let pods = find("", "v1", "pods").unwrap();
        let ns = find("", "v1", "namespaces").unwrap();
        for (res, name, ok) in [
            (pods, "web-1", true),
            (pods, "web.example", true),
            (pods, "Web", false),
            (pods, "-web", false),
            (pods, "", false),
            (ns, "a.b", false),
            (ns, "team-a", true),
        ] {
            let causes = metadata(res, &json!({"metadata": {"name": name}}));
            assert_eq!(causes.is_empty(), ok, "{name}: {causes:?}");
        }
    }

    #[test]
    fn kinds_report_each_bad_field() {
        let cases = [
            (
                "pods",
                "",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                vec!["spec.containers[0].image: FieldValueRequired"],
            ),
            (
                "pods",
                "",
                json!({"spec": {}}),
                vec!["spec.containers: FieldValueRequired"],
            ),
            (
                "pods",
                "",
                json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}}),
                vec!["spec.containers[1].name: FieldValueDuplicate"],
            ),
            (
                "pods",
                "",
                json!({"spec": {"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "x"}]}}),
                vec!["spec.restartPolicy: FieldValueNotSupported"],
            ),
            (
                "deployments",
                "apps",
                json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
                vec!["spec.template.metadata.labels: FieldValueInvalid"],
            ),
            (
                "deployments",
                "apps",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
                vec!["spec.selector: FieldValueRequired"],
            ),
            (
                "services",
                "",
                json!({"spec": {"ports": [{"port": 70000}]}}),
                vec!["spec.ports[0].port: FieldValueInvalid"],
            ),
            (
                "services",
                "",
                json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}),
                vec!["spec.ports[0].nodePort: FieldValueInvalid"],
            ),
            (
                "configmaps",
                "",
                json!({"data": {"bad key": "v"}}),
                vec!["data: FieldValueInvalid"],
            ),
        ];
        for (plural, group, obj, want) in cases {
            let res = crate::resources::RESOURCES
                .iter()
                .find(|r| r.plural == plural && r.group == group)
                .unwrap();
            assert_eq!(fields(&kind(res, &obj)), want, "{obj}");
        }
    }

    #[test]
    fn config_over_one_mebibyte_is_refused() {
        let res = find("", "v1", "configmaps").unwrap();
        let big = "x".repeat(MAX_CONFIG_BYTES);
        let causes = kind(res, &json!({"data": {"k": big}}));
        assert_eq!(causes[0].reason, "FieldValueTooLong");
    }

    #[test]
    fn labels_are_checked() {
        let res = find("", "v1", "pods").unwrap();
        let causes = metadata(
            res,
            &json!({"metadata": {"name": "a", "labels": {"app": "x y", "example.com/ok": "v", "bad//key": "v"}}}),
        );
        assert_eq!(causes.len(), 2, "{causes:?}");
    }

    #[test]
    fn unknown_fields_are_found_by_the_round_trip() {
        let input = json!({"spec": {"containers": [{"name": "a", "imagee": "x"}], "nodeName": ""}, "extra": 1});
        let typed = json!({"spec": {"containers": [{"name": "a"}], "nodeName": ""}});
        assert_eq!(
            unknown_fields(&input, &typed),
            vec!["extra", "spec.containers[0].imagee"]
        );
    }

    #[test]
    fn numeric_quantities_become_strings() {
        let mut v = json!({"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}});
        normalize_quantities(&mut v);
        assert_eq!(v["resources"]["limits"]["cpu"], "1");
    }
}
