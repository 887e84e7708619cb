//! Reading a request: which resource the path names, the query parameters
//! Kubernetes defines, the body within its size limit, and what the client
//! accepts back.

use crate::resources::{self, Resource};
use crate::status::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use serde_json::Value;

/// Request bodies above this are refused with 413, as kube-apiserver does.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What a resource path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/GROUP/VERSION/...` resource paths.
/// `Ok(None)` is a path that is not a resource path (discovery and the like).
pub fn parse_target(path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Ok(None),
    };
    let not_found = || ApiError::no_route(path);
    let find = |plural: &str| resources::find(group, version, plural).ok_or_else(not_found);
    let target = |res: &'static Resource,
                  namespace: Option<&str>,
                  name: Option<&str>,
                  sub: Option<&str>| Target {
        res,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    };
    // /namespaces/NS/PLURAL... names a namespaced resource; /namespaces/NAME[/SUB] the namespace itself.
    let t = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let res = find(plural)?;
            match tail {
                [] => target(res, Some(ns), None, None),
                [name] => target(res, Some(ns), Some(name), None),
                [name, sub] => target(res, Some(ns), Some(name), Some(sub)),
                _ => return Err(not_found()),
            }
        }
        [plural] => target(find(plural)?, None, None, None),
        [plural, name] => target(find(plural)?, None, Some(name), None),
        [plural, name, sub] => target(find(plural)?, None, Some(name), Some(sub)),
        _ => return Err(not_found()),
    };
    if t.name.as_deref() == Some("") || t.namespace.as_deref() == Some("") {
        return Err(not_found());
    }
    if let Some(sub) = &t.sub
        && !t.res.subresources.iter().any(|s| s.name() == sub)
        && !crate::kubelet::is_connect(t.res, sub)
    {
        return Err(not_found());
    }
    Ok(Some(t))
}

/// The query parameters of the Kubernetes API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    /// Watch-list: the current state as ADDED events, then a bookmark
    /// marking their end (`sendInitialEvents`).
    pub send_initial_events: Option<bool>,
    pub timeout_seconds: Option<u64>,
    pub dry_run: bool,
    pub field_validation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        let mut p = Params::default();
        let int = |k: &str, v: &str| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: {v:?} is not an integer"))
            })
        };
        for (k, v) in pairs {
            match k.as_str() {
                "labelSelector" => p.label_selector = v,
                "fieldSelector" => p.field_selector = v,
                "limit" => p.limit = int(&k, &v)?.max(0) as usize,
                "continue" if !v.is_empty() => p.continue_token = Some(v),
                "resourceVersion" => p.resource_version = Some(v),
                "resourceVersionMatch" if !v.is_empty() => p.resource_version_match = Some(v),
                "watch" => p.watch = truthy(&v),
                "allowWatchBookmarks" => p.allow_watch_bookmarks = truthy(&v),
                "sendInitialEvents" => p.send_initial_events = Some(truthy(&v)),
                "timeoutSeconds" => p.timeout_seconds = Some(int(&k, &v)?.max(0) as u64),
                "dryRun" => {
                    if v != "All" && !v.is_empty() {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {v:?}; supported values: \"All\""
                        )));
                    }
                    p.dry_run = v == "All";
                }
                "fieldValidation" => p.field_validation = Some(v),
                "gracePeriodSeconds" => p.grace_period_seconds = Some(int(&k, &v)?),
                "propagationPolicy" => p.propagation_policy = Some(v),
                _ => {}
            }
        }
        if let Some(fv) = &p.field_validation
            && !["Strict", "Warn", "Ignore", ""].contains(&fv.as_str())
        {
            return Err(ApiError::bad_request(format!(
                "fieldValidation {fv:?} is invalid: it must be one of Strict, Warn or Ignore"
            )));
        }
        Ok(p)
    }
}

/// Whether the client asked for a `meta.k8s.io` Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
}

/// The body, refused above [`MAX_BODY_BYTES`], parsed as a JSON object
/// (YAML is accepted too, for `application/yaml`).
pub async fn read_body(body: Body) -> Result<Vec<u8>, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(format!(
            "Request entity too large: limit is {MAX_BODY_BYTES}"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

pub fn parse_object(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" => serde_norway::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))
        })?,
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(bytes).map_err(|e| match e {
            crate::protobuf::ProtobufError::UnsupportedKind { .. } => {
                let mut err = ApiError::unsupported_media_type(media);
                err.message = e.to_string();
                err
            }
            other => ApiError::bad_request(other.to_string()),
        })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources() {
        let t = parse_target("/api/v1/namespaces/default/pods/web/status")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                t.res.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let t = parse_target("/api/v1/namespaces/kube-system")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.res.plural, t.namespace, t.name.as_deref()),
            ("namespaces", None, Some("kube-system"))
        );
        let t = parse_target("/api/v1/namespaces/x/status")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.res.plural, t.name.as_deref(), t.sub.as_deref()),
            ("namespaces", Some("x"), Some("status"))
        );
        let t = parse_target("/apis/apps/v1/deployments").unwrap().unwrap();
        assert_eq!((t.res.kind, t.namespace), ("Deployment", None));
        let t = parse_target("/apis/apps/v1/namespaces/a/deployments/d/scale")
            .unwrap()
            .unwrap();
        assert_eq!(t.sub.as_deref(), Some("scale"));
        assert_eq!(parse_target("/api/v1").unwrap(), None);
        assert_eq!(parse_target("/apis/apps/v1").unwrap(), None);
        assert_eq!(parse_target("/api/v1/widgets").unwrap_err().code, 404);
        let t = parse_target("/api/v1/namespaces/a/pods/p/log")
            .unwrap()
            .unwrap();
        assert_eq!(t.sub.as_deref(), Some("log"));
        assert!(parse_target("/api/v1/namespaces/a/pods/p/exec").is_ok());
        assert_eq!(parse_target("/api/v1/nodes/n/log").unwrap_err().code, 404);
        assert_eq!(
            parse_target("/api/v1/namespaces/a/pods/p/nope")
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            parse_target("/apis/apps/v2/deployments").unwrap_err().code,
            404
        );
    }

    #[test]
    fn params_parse_and_refuse_nonsense() {
        let p = Params::parse(Some(
            "labelSelector=app%3Dweb&limit=10&watch=1&timeoutSeconds=5&dryRun=All",
        ))
        .unwrap();
        assert_eq!(
            (
                p.label_selector.as_str(),
                p.limit,
                p.watch,
                p.timeout_seconds,
                p.dry_run
            ),
            ("app=web", 10, true, Some(5), true)
        );
        assert_eq!(Params::parse(Some("limit=x")).unwrap_err().code, 400);
        assert_eq!(Params::parse(Some("dryRun=Some")).unwrap_err().code, 400);
        assert_eq!(
            Params::parse(Some("fieldValidation=Loose"))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn table_accept_is_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_table(&h));
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_table(&h));
    }
}
