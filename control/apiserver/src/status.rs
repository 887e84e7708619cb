//! API errors as Kubernetes `Status` objects, with the codes, reasons and
//! messages kubectl and client libraries match on. Store errors map here, in
//! one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use store::StoreError;

/// One field-level problem in a 422 Invalid answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// e.g. `FieldValueRequired`, `FieldValueInvalid`.
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Cause {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {}", detail.as_ref()),
        }
    }

    pub fn unsupported(field: impl Into<String>, value: &str, allowed: &[&str]) -> Cause {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {value:?}: supported values: {}",
                allowed.join(", ")
            ),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Cause {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value:?}"),
        }
    }

    pub fn too_long(field: impl Into<String>, limit: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {limit} bytes"),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {}", detail.into()),
        }
    }
}

/// What a failed request answers.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u32>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `pods`, or `deployments.apps`: how Kubernetes names a resource in messages.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> ApiError {
        self.details = Some(json!({"name": name, "group": group, "kind": kind}));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// `pods "x" not found`.
    pub fn not_found(plural: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", qualified(plural, group)),
        )
        .with_details(name, group, plural)
    }

    /// A path that names no resource.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn already_exists(plural: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified(plural, group)),
        )
        .with_details(name, group, plural)
    }

    /// The optimistic-concurrency failure, worded as Kubernetes words it.
    pub fn conflict(plural: &str, group: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                qualified(plural, group)
            ),
        )
        .with_details(name, group, plural)
    }

    pub fn modified(plural: &str, group: &str, name: &str) -> ApiError {
        ApiError::conflict(
            plural,
            group,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 422 with one cause per field: `The Pod "x" is invalid: spec.containers[0].image: Required value`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let summary = if summary.len() == 1 {
            summary[0].clone()
        } else {
            format!("[{}]", summary.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} {name:?} is invalid: {summary}"),
            details: Some(json!({"name": name, "group": group, "kind": kind, "causes": causes})),
            retry_after: None,
        }
    }

    /// 422 without field causes: a request that is well-formed but cannot apply.
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message)
    }

    pub fn too_many_requests() -> ApiError {
        let mut e = ApiError::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    /// The Status object itself.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        if let Some(secs) = self.retry_after {
            let d = status
                .as_object_mut()
                .expect("object")
                .entry("details")
                .or_insert_with(|| json!({}));
            d["retryAfterSeconds"] = json!(secs);
        }
        status
    }

    /// Maps a store failure for an object of `plural`.`group` named `name`.
    pub fn from_store(err: StoreError, plural: &str, group: &str, name: &str) -> ApiError {
        match err {
            StoreError::AlreadyExists { .. } => ApiError::already_exists(plural, group, name),
            StoreError::NotFound { .. } => ApiError::not_found(plural, group, name),
            StoreError::Conflict { .. } => ApiError::modified(plural, group, name),
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::FutureRevision { .. } => ApiError::timeout("Too large resource version"),
            StoreError::ValueTooLarge { size, limit } | StoreError::KeyTooLarge { size, limit } => {
                ApiError::too_large(format!(
                    "Request entity too large: the object is {size} bytes, the limit is {limit}"
                ))
            }
            StoreError::Indeterminate { .. } => ApiError::timeout(
                "The server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            StoreError::Unavailable { .. } | StoreError::Closed => {
                ApiError::unavailable(format!("the cluster store is unavailable: {err}"))
            }
            other => ApiError::internal(format!("the cluster store failed: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The Status a successful delete of a plain object answers with.
pub fn success(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_kubernetes_writes_them() {
        let cases = [
            (
                ApiError::not_found("pods", "", "x"),
                404,
                "NotFound",
                "pods \"x\" not found",
            ),
            (
                ApiError::not_found("deployments", "apps", "web"),
                404,
                "NotFound",
                "deployments.apps \"web\" not found",
            ),
            (
                ApiError::already_exists("configmaps", "", "c"),
                409,
                "AlreadyExists",
                "configmaps \"c\" already exists",
            ),
            (
                ApiError::modified("deployments", "apps", "x"),
                409,
                "Conflict",
                "Operation cannot be fulfilled on deployments.apps \"x\": the object has been modified; please apply your changes to the latest version and try again",
            ),
            (
                ApiError::invalid(
                    "Pod",
                    "",
                    "p",
                    vec![Cause::required("spec.containers[0].image")],
                ),
                422,
                "Invalid",
                "Pod \"p\" is invalid: spec.containers[0].image: Required value",
            ),
        ];
        for (err, code, reason, message) in cases {
            let s = err.to_status();
            assert_eq!(s["code"], code);
            assert_eq!(s["reason"], reason);
            assert_eq!(s["message"], message);
            assert_eq!(s["kind"], "Status");
        }
    }

    #[test]
    fn store_errors_map_to_protocol_codes() {
        let cases: Vec<(StoreError, u16, &str)> = vec![
            (
                StoreError::AlreadyExists { key: "k".into() },
                409,
                "AlreadyExists",
            ),
            (StoreError::NotFound { key: "k".into() }, 404, "NotFound"),
            (
                StoreError::Compacted {
                    requested: 3,
                    compacted: 9,
                },
                410,
                "Expired",
            ),
            (
                StoreError::FutureRevision {
                    requested: 9,
                    current: 3,
                },
                504,
                "Timeout",
            ),
            (
                StoreError::ValueTooLarge { size: 9, limit: 3 },
                413,
                "RequestEntityTooLarge",
            ),
            (StoreError::Closed, 503, "ServiceUnavailable"),
            (
                StoreError::Corrupt { detail: "x".into() },
                500,
                "InternalError",
            ),
        ];
        for (err, code, reason) in cases {
            let api = ApiError::from_store(err, "pods", "", "p");
            assert_eq!((api.code, api.reason), (code, reason));
        }
        let gone = ApiError::from_store(
            StoreError::Compacted {
                requested: 3,
                compacted: 9,
            },
            "pods",
            "",
            "",
        );
        assert_eq!(gone.message, "too old resource version: 3 (9)");
    }
}
