//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! decoded into the JSON the same object would have had on the JSON path.
//!
//! kubectl's typed clients (`create configmap|secret|deployment|…`, `expose`,
//! `auth can-i`) send protobuf and never fall back to JSON. A body is the
//! magic `k8s\0` and a `runtime.Unknown` envelope whose apiVersion and kind
//! pick a message; each message is a table of field number, JSON name and
//! type, written from Kubernetes' `generated.proto` and the Go `json` tags.
//!
//! Fields come out as Go's `encoding/json` writes the decoded Go struct: a
//! field on the wire appears even when zero (`replicas: 0`), except
//! non-pointer `omitempty` scalars, which Go writes on the wire but drops
//! from JSON when zero (marked `z` in the tables); nested structs always
//! appear (`resources: {}`). Unknown field numbers are skipped, as are
//! managed fields and most of a pod's status; fields this server cannot
//! decode (legacy volume plugins, ephemeral containers, pod failure
//! policies) refuse the body rather than vanish from it.

use Ty::{
    Bool, BytesMap, Int32, Int64, IntOrString, Msg, Quantity, QuantityMap, Str, StrMap, Time,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// The tables nest about a dozen deep; deeper input is hostile.
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the magic bytes k8s\\0")]
    Magic,
    #[error("the protobuf body is truncated")]
    Truncated,
    #[error("the protobuf body has a varint longer than 10 bytes")]
    Varint,
    #[error("the protobuf body has an invalid field tag")]
    Tag,
    #[error("the protobuf body has {field} with the wrong wire type {wire}")]
    WireType { field: &'static str, wire: u8 },
    #[error("the protobuf body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the protobuf body has content encoding {0:?}, which this server does not support")]
    ContentEncoding(String),
    #[error("the protobuf body has content type {0:?}, which this server does not support")]
    ContentType(String),
    #[error(
        "the protobuf body holds kind {kind:?} of {api_version:?}, which this server cannot decode"
    )]
    UnsupportedKind { api_version: String, kind: String },
    #[error("the protobuf body sets {0}, which this server cannot decode")]
    UnsupportedField(&'static str),
    #[error("the protobuf body has an invalid {0}")]
    Invalid(&'static str),
    #[error("the protobuf body has a {field} that is not JSON")]
    RawJson {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes a Kubernetes protobuf body (magic `k8s\0`, then a
/// `runtime.Unknown {1: typeMeta {1: apiVersion, 2: kind}, 2: raw,
/// 3: contentEncoding, 4: contentType}`) into the JSON object it stands for,
/// with apiVersion and kind set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_nested(body, 0)
}

fn decode_nested(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::Magic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let (mut encoding, mut content_type) = (String::new(), String::new());
    let mut fields = Fields::new(envelope, depth);
    while let Some((num, wire)) = fields.next()? {
        match num {
            1 => {
                let mut type_meta = Fields::new(wire.bytes("typeMeta")?, depth + 1);
                while let Some((num, wire)) = type_meta.next()? {
                    match num {
                        1 => api_version = lossy(wire.bytes("apiVersion")?),
                        2 => kind = lossy(wire.bytes("kind")?),
                        _ => {}
                    }
                }
            }
            2 => raw = wire.bytes("raw")?,
            3 => encoding = lossy(wire.bytes("contentEncoding")?),
            4 => content_type = lossy(wire.bytes("contentType")?),
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    if !content_type.is_empty() && content_type != MEDIA_TYPE {
        return Err(ProtobufError::ContentType(content_type));
    }
    let Some(schema) = schema_of(&api_version, &kind) else {
        return Err(ProtobufError::UnsupportedKind { api_version, kind });
    };
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), api_version.into());
    obj.insert("kind".into(), kind.into());
    message(raw, schema, &mut obj, depth + 1)?;
    Ok(Value::Object(obj))
}

fn schema_of(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    KINDS
        .iter()
        // DeleteOptions is registered in every group version.
        .find(|(v, k, _)| *k == kind && (*v == api_version || kind == "DeleteOptions"))
        .map(|(_, _, schema)| *schema)
}

// ---- The wire format ----

/// One field's value as it sits on the wire.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Group,
    EndGroup,
    Fixed32,
}

impl<'a> Wire<'a> {
    fn id(self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64 => 1,
            Wire::Bytes(_) => 2,
            Wire::Group => 3,
            Wire::EndGroup => 4,
            Wire::Fixed32 => 5,
        }
    }

    fn varint(self, field: &'static str) -> Result<u64, ProtobufError> {
        match self {
            Wire::Varint(v) => Ok(v),
            other => Err(ProtobufError::WireType {
                field,
                wire: other.id(),
            }),
        }
    }

    fn bytes(self, field: &'static str) -> Result<&'a [u8], ProtobufError> {
        match self {
            Wire::Bytes(b) => Ok(b),
            other => Err(ProtobufError::WireType {
                field,
                wire: other.id(),
            }),
        }
    }
}

/// The fields of one message, in wire order; groups are skipped whole.
#[derive(Debug)]
struct Fields<'a> {
    rest: &'a [u8],
    depth: usize,
}

impl<'a> Fields<'a> {
    fn new(rest: &'a [u8], depth: usize) -> Fields<'a> {
        Fields { rest, depth }
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtobufError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        match self.read(self.depth)? {
            (_, Wire::EndGroup) => Err(ProtobufError::Tag),
            field => Ok(Some(field)),
        }
    }

    fn read(&mut self, depth: usize) -> Result<(u32, Wire<'a>), ProtobufError> {
        let tag = varint(&mut self.rest)?;
        let num = u32::try_from(tag >> 3)
            .ok()
            .filter(|n| (1..1 << 29).contains(n))
            .ok_or(ProtobufError::Tag)?;
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(&mut self.rest)?),
            1 => take(&mut self.rest, 8).map(|_| Wire::Fixed64)?,
            2 => {
                let len = usize::try_from(varint(&mut self.rest)?)
                    .map_err(|_| ProtobufError::Truncated)?;
                Wire::Bytes(take(&mut self.rest, len)?)
            }
            3 => self.skip_group(num, depth + 1).map(|()| Wire::Group)?,
            4 => Wire::EndGroup,
            5 => take(&mut self.rest, 4).map(|_| Wire::Fixed32)?,
            _ => return Err(ProtobufError::Tag),
        };
        Ok((num, wire))
    }

    fn skip_group(&mut self, num: u32, depth: usize) -> Result<(), ProtobufError> {
        if depth > MAX_DEPTH {
            return Err(ProtobufError::TooDeep);
        }
        loop {
            if self.rest.is_empty() {
                return Err(ProtobufError::Truncated);
            }
            match self.read(depth)? {
                (end, Wire::EndGroup) if end == num => return Ok(()),
                (_, Wire::EndGroup) => return Err(ProtobufError::Tag),
                _ => {}
            }
        }
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, ProtobufError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or(ProtobufError::Truncated)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(ProtobufError::Varint)
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], ProtobufError> {
    if len > buf.len() {
        return Err(ProtobufError::Truncated);
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// Go keeps a string's bytes as they are and `encoding/json` replaces
/// invalid UTF-8, as this does.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- Messages to JSON ----

/// What a field holds and how it is written in JSON.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    /// `[]byte`: base64, as `encoding/json` writes it.
    Bytes,
    Bool,
    Int32,
    Int64,
    /// `metav1.Time {1: seconds, 2: nanos}`: RFC 3339 in whole seconds;
    /// an empty message is the zero time, `null`.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "no kind decoded here has one yet")
    )]
    MicroTime,
    /// `resource.Quantity {1: string}`: the string.
    Quantity,
    /// `intstr.IntOrString {1: type, 2: intVal, 3: strVal}`: a number or a string.
    IntOrString,
    /// `metav1.Duration {1: nanoseconds}`: Go's duration string.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "no kind decoded here has one yet")
    )]
    Duration,
    /// `runtime.RawExtension {1: raw}`: the embedded JSON (or protobuf) object.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "no kind decoded here has one yet")
    )]
    Raw,
    Msg(&'static [Field]),
    /// An embedded Go struct, whose fields JSON writes inline.
    Inline(&'static [Field]),
    StrMap,
    BytesMap,
    QuantityMap,
    /// Known, but not decoded here: the body is refused.
    Unsupported,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Written whenever it is on the wire.
    One,
    /// A non-pointer `omitempty` scalar: dropped when zero, as Go does.
    OmitEmpty,
    List,
}

#[derive(Debug)]
struct Field {
    num: u32,
    name: &'static str,
    ty: Ty,
    shape: Shape,
}

const fn f(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        shape: Shape::One,
    }
}

const fn z(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        shape: Shape::OmitEmpty,
    }
}

const fn list(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        shape: Shape::List,
    }
}

const fn inline(num: u32, schema: &'static [Field]) -> Field {
    Field {
        num,
        name: "",
        ty: Ty::Inline(schema),
        shape: Shape::One,
    }
}

const fn unsupported(num: u32, name: &'static str) -> Field {
    Field {
        num,
        name,
        ty: Ty::Unsupported,
        shape: Shape::One,
    }
}

/// Decodes the fields of `buf` into `out`, merging with what is there as
/// protobuf does when a message field repeats.
fn message(
    buf: &[u8],
    schema: &[Field],
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let mut fields = Fields::new(buf, depth);
    while let Some((num, wire)) = fields.next()? {
        let Some(field) = schema.iter().find(|f| f.num == num) else {
            continue;
        };
        let name = field.name;
        match (field.shape, field.ty) {
            (_, Ty::Unsupported) => return Err(ProtobufError::UnsupportedField(name)),
            (Shape::List, ty) => {
                let mut items = match out.remove(name) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                match (ty, wire) {
                    // Packed scalars, which proto2 readers accept too.
                    (Ty::Bool | Ty::Int32 | Ty::Int64, Wire::Bytes(mut packed)) => {
                        while !packed.is_empty() {
                            items.push(value(name, ty, Wire::Varint(varint(&mut packed)?), depth)?);
                        }
                    }
                    _ => items.push(value(name, ty, wire, depth)?),
                }
                out.insert(name.into(), Value::Array(items));
            }
            (_, Ty::Inline(schema)) => message(wire.bytes(name)?, schema, out, depth + 1)?,
            (_, Ty::Msg(schema)) => {
                let mut inner = match out.remove(name) {
                    Some(Value::Object(inner)) => inner,
                    _ => Map::new(),
                };
                message(wire.bytes(name)?, schema, &mut inner, depth + 1)?;
                out.insert(name.into(), Value::Object(inner));
            }
            (_, ty @ (Ty::StrMap | Ty::BytesMap | Ty::QuantityMap)) => {
                let mut map = match out.remove(name) {
                    Some(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                let (key, value) = map_entry(name, ty, wire.bytes(name)?, depth)?;
                map.insert(key, value);
                out.insert(name.into(), Value::Object(map));
            }
            (shape, ty) => {
                let value = value(name, ty, wire, depth)?;
                if shape == Shape::OmitEmpty && is_zero(&value) {
                    out.remove(name);
                } else {
                    out.insert(name.into(), value);
                }
            }
        }
    }
    Ok(())
}

/// One value: a scalar, a list item, or a map as a one-entry object.
fn value(name: &'static str, ty: Ty, wire: Wire<'_>, depth: usize) -> Result<Value, ProtobufError> {
    Ok(match ty {
        Ty::Str => lossy(wire.bytes(name)?).into(),
        Ty::Bytes => BASE64.encode(wire.bytes(name)?).into(),
        Ty::Bool => (wire.varint(name)? != 0).into(),
        // Go's int32(v) and int64(v): negative numbers are sign-extended.
        Ty::Int32 => (wire.varint(name)? as i32).into(),
        Ty::Int64 => (wire.varint(name)? as i64).into(),
        Ty::Time => time(name, wire.bytes(name)?, false, depth)?,
        Ty::MicroTime => time(name, wire.bytes(name)?, true, depth)?,
        Ty::Quantity => {
            let mut quantity = "0".to_string();
            let mut fields = Fields::new(wire.bytes(name)?, depth + 1);
            while let Some((num, wire)) = fields.next()? {
                if num == 1 {
                    quantity = lossy(wire.bytes(name)?);
                }
            }
            quantity.into()
        }
        Ty::IntOrString => {
            let (mut kind, mut int, mut string) = (0, 0, String::new());
            let mut fields = Fields::new(wire.bytes(name)?, depth + 1);
            while let Some((num, wire)) = fields.next()? {
                match num {
                    1 => kind = wire.varint(name)? as i64,
                    2 => int = wire.varint(name)? as i32,
                    3 => string = lossy(wire.bytes(name)?),
                    _ => {}
                }
            }
            match kind {
                0 => int.into(),
                1 => string.into(),
                _ => return Err(ProtobufError::Invalid(name)),
            }
        }
        Ty::Duration => {
            let mut nanos = 0;
            let mut fields = Fields::new(wire.bytes(name)?, depth + 1);
            while let Some((num, wire)) = fields.next()? {
                if num == 1 {
                    nanos = wire.varint(name)? as i64;
                }
            }
            go_duration(nanos).into()
        }
        Ty::Raw => raw(name, wire.bytes(name)?, depth)?,
        Ty::Msg(schema) | Ty::Inline(schema) => {
            let mut inner = Map::new();
            message(wire.bytes(name)?, schema, &mut inner, depth + 1)?;
            Value::Object(inner)
        }
        Ty::StrMap | Ty::BytesMap | Ty::QuantityMap => {
            let (key, value) = map_entry(name, ty, wire.bytes(name)?, depth)?;
            Value::Object(Map::from_iter([(key, value)]))
        }
        Ty::Unsupported => return Err(ProtobufError::UnsupportedField(name)),
    })
}

/// A map entry `{1: key, 2: value}`; a missing value is the zero value.
fn map_entry(
    name: &'static str,
    ty: Ty,
    buf: &[u8],
    depth: usize,
) -> Result<(String, Value), ProtobufError> {
    let value_ty = match ty {
        Ty::BytesMap => Ty::Bytes,
        Ty::QuantityMap => Ty::Quantity,
        _ => Ty::Str,
    };
    let (mut key, mut found) = (String::new(), None);
    let mut fields = Fields::new(buf, depth + 1);
    while let Some((num, wire)) = fields.next()? {
        match num {
            1 => key = lossy(wire.bytes(name)?),
            2 => found = Some(value(name, value_ty, wire, depth + 1)?),
            _ => {}
        }
    }
    let value = match found {
        Some(value) => value,
        None => value(name, value_ty, Wire::Bytes(&[]), depth + 1)?,
    };
    Ok((key, value))
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// `metav1.Time` keeps whole seconds (nanos are dropped on decode);
/// `MicroTime` keeps microseconds.
fn time(name: &'static str, buf: &[u8], micro: bool, depth: usize) -> Result<Value, ProtobufError> {
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut fields = Fields::new(buf, depth + 1);
    while let Some((num, wire)) = fields.next()? {
        match num {
            1 => seconds = wire.varint(name)? as i64,
            2 => nanos = wire.varint(name)? as i32,
            _ => {}
        }
    }
    let (nanos, format) = if micro {
        (nanos / 1000 * 1000, "%Y-%m-%dT%H:%M:%S%.6fZ")
    } else {
        (0, "%Y-%m-%dT%H:%M:%SZ")
    };
    let at =
        jiff::Timestamp::from_nanosecond(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
            .map_err(|_| ProtobufError::Invalid(name))?;
    jiff::fmt::strtime::format(format, at)
        .map(Value::String)
        .map_err(|_| ProtobufError::Invalid(name))
}

/// The embedded object: JSON, or a nested protobuf body.
fn raw(name: &'static str, buf: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let mut raw: &[u8] = &[];
    let mut fields = Fields::new(buf, depth + 1);
    while let Some((num, wire)) = fields.next()? {
        if num == 1 {
            raw = wire.bytes(name)?;
        }
    }
    if raw.is_empty() {
        Ok(Value::Null)
    } else if raw.starts_with(MAGIC) {
        decode_nested(raw, depth + 1)
    } else {
        serde_json::from_slice(raw).map_err(|source| ProtobufError::RawJson {
            field: name,
            source,
        })
    }
}

/// Go's `time.Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    // `v / 10^prec` and its fraction without trailing zeros.
    let split = |v: u64, prec: u32| {
        let unit = 10u64.pow(prec);
        let frac = format!("{:0width$}", v % unit, width = prec as usize);
        let frac = frac.trim_end_matches('0');
        (
            v / unit,
            if frac.is_empty() {
                String::new()
            } else {
                format!(".{frac}")
            },
        )
    };
    if n < 1_000_000_000 {
        let (prec, unit) = match n {
            ..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (whole, frac) = split(n, prec);
        return format!("{sign}{whole}{frac}{unit}");
    }
    let (secs, frac) = split(n, 9);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}{frac}s"),
        (0, _) => format!("{sign}{m}m{s}{frac}s"),
        _ => format!("{sign}{h}h{m}m{s}{frac}s"),
    }
}

// ---- The tables ----
//
// Per message: `f` writes a field whenever it is on the wire, `z` drops a
// zero non-pointer `omitempty` scalar as Go's JSON does, `list` is repeated,
// `inline` is an embedded struct; maps are `StrMap`, `BytesMap`,
// `QuantityMap`. From `k8s.io/api` and `k8s.io/apimachinery` `generated.proto`
// with the `json` tags of their `types.go`.

/// The kinds a body may hold, by apiVersion and kind.
const KINDS: &[(&str, &str, &[Field])] = &[
    ("v1", "ConfigMap", CONFIG_MAP),
    ("v1", "Namespace", NAMESPACE),
    ("v1", "Pod", POD),
    ("v1", "ResourceQuota", RESOURCE_QUOTA),
    ("v1", "Secret", SECRET),
    ("v1", "Service", SERVICE),
    ("v1", "ServiceAccount", SERVICE_ACCOUNT),
    ("apps/v1", "Deployment", DEPLOYMENT),
    ("apps/v1", "ReplicaSet", REPLICA_SET),
    ("batch/v1", "Job", JOB),
    ("rbac.authorization.k8s.io/v1", "Role", ROLE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", CLUSTER_ROLE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", ROLE_BINDING),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        CLUSTER_ROLE_BINDING,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        SELF_SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        SELF_SUBJECT_RULES_REVIEW,
    ),
    ("autoscaling/v1", "Scale", SCALE),
    ("meta.k8s.io/v1", "DeleteOptions", DELETE_OPTIONS),
];

// ---- meta.k8s.io/v1 (apimachinery) ----

const OBJECT_META: &[Field] = &[
    z(1, "name", Str),
    z(2, "generateName", Str),
    z(3, "namespace", Str),
    z(4, "selfLink", Str),
    z(5, "uid", Str),
    z(6, "resourceVersion", Str),
    z(7, "generation", Int64),
    z(8, "creationTimestamp", Time),
    f(9, "deletionTimestamp", Time),
    f(10, "deletionGracePeriodSeconds", Int64),
    f(11, "labels", StrMap),
    f(12, "annotations", StrMap),
    list(13, "ownerReferences", Msg(OWNER_REFERENCE)),
    list(14, "finalizers", Str),
    // 17 managedFields: ignored, the server keeps its own.
];

const OWNER_REFERENCE: &[Field] = &[
    f(1, "kind", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(5, "apiVersion", Str),
    f(6, "controller", Bool),
    f(7, "blockOwnerDeletion", Bool),
];

const CONDITION: &[Field] = &[
    f(1, "type", Str),
    f(2, "status", Str),
    z(3, "observedGeneration", Int64),
    f(4, "lastTransitionTime", Time),
    f(5, "reason", Str),
    f(6, "message", Str),
];

const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", StrMap),
    list(2, "matchExpressions", Msg(LABEL_SELECTOR_REQUIREMENT)),
];

const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Str),
    f(2, "operator", Str),
    list(3, "values", Str),
];

const FIELD_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Str),
    f(2, "operator", Str),
    list(3, "values", Str),
];

const DELETE_OPTIONS: &[Field] = &[
    f(1, "gracePeriodSeconds", Int64),
    f(2, "preconditions", Msg(PRECONDITIONS)),
    f(3, "orphanDependents", Bool),
    f(4, "propagationPolicy", Str),
    list(5, "dryRun", Str),
    f(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool),
];

const PRECONDITIONS: &[Field] = &[f(1, "uid", Str), f(2, "resourceVersion", Str)];

// ---- v1 (core) ----

const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", StrMap),
    f(3, "binaryData", BytesMap),
    f(4, "immutable", Bool),
];

const SECRET: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", BytesMap),
    z(3, "type", Str),
    f(4, "stringData", StrMap),
    f(5, "immutable", Bool),
];

const NAMESPACE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(NAMESPACE_SPEC)),
    f(3, "status", Msg(NAMESPACE_STATUS)),
];

const NAMESPACE_SPEC: &[Field] = &[list(1, "finalizers", Str)];

const NAMESPACE_STATUS: &[Field] = &[
    z(1, "phase", Str),
    list(2, "conditions", Msg(NAMESPACE_CONDITION)),
];

const NAMESPACE_CONDITION: &[Field] = &[
    f(1, "type", Str),
    f(2, "status", Str),
    f(4, "lastTransitionTime", Time),
    z(5, "reason", Str),
    z(6, "message", Str),
];

const SERVICE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SERVICE_SPEC)),
    f(3, "status", Msg(SERVICE_STATUS)),
];

const SERVICE_SPEC: &[Field] = &[
    list(1, "ports", Msg(SERVICE_PORT)),
    f(2, "selector", StrMap),
    z(3, "clusterIP", Str),
    z(4, "type", Str),
    list(5, "externalIPs", Str),
    z(7, "sessionAffinity", Str),
    z(8, "loadBalancerIP", Str),
    list(9, "loadBalancerSourceRanges", Str),
    z(10, "externalName", Str),
    z(11, "externalTrafficPolicy", Str),
    z(12, "healthCheckNodePort", Int32),
    z(13, "publishNotReadyAddresses", Bool),
    f(14, "sessionAffinityConfig", Msg(SESSION_AFFINITY_CONFIG)),
    f(17, "ipFamilyPolicy", Str),
    list(18, "clusterIPs", Str),
    list(19, "ipFamilies", Str),
    f(20, "allocateLoadBalancerNodePorts", Bool),
    f(21, "loadBalancerClass", Str),
    f(22, "internalTrafficPolicy", Str),
    f(23, "trafficDistribution", Str),
];

const SERVICE_PORT: &[Field] = &[
    z(1, "name", Str),
    z(2, "protocol", Str),
    f(3, "port", Int32),
    f(4, "targetPort", IntOrString),
    z(5, "nodePort", Int32),
    f(6, "appProtocol", Str),
];

const SESSION_AFFINITY_CONFIG: &[Field] = &[f(1, "clientIP", Msg(CLIENT_IP_CONFIG))];

const CLIENT_IP_CONFIG: &[Field] = &[f(1, "timeoutSeconds", Int32)];

const SERVICE_STATUS: &[Field] = &[
    f(1, "loadBalancer", Msg(LOAD_BALANCER_STATUS)),
    list(2, "conditions", Msg(CONDITION)),
];

const LOAD_BALANCER_STATUS: &[Field] = &[list(1, "ingress", Msg(LOAD_BALANCER_INGRESS))];

const LOAD_BALANCER_INGRESS: &[Field] = &[
    z(1, "ip", Str),
    z(2, "hostname", Str),
    f(3, "ipMode", Str),
    list(4, "ports", Msg(PORT_STATUS)),
];

const PORT_STATUS: &[Field] = &[
    f(1, "port", Int32),
    f(2, "protocol", Str),
    f(3, "error", Str),
];

const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    list(2, "secrets", Msg(OBJECT_REFERENCE)),
    list(3, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    f(4, "automountServiceAccountToken", Bool),
];

const OBJECT_REFERENCE: &[Field] = &[
    z(1, "kind", Str),
    z(2, "namespace", Str),
    z(3, "name", Str),
    z(4, "uid", Str),
    z(5, "apiVersion", Str),
    z(6, "resourceVersion", Str),
    z(7, "fieldPath", Str),
];

const LOCAL_OBJECT_REFERENCE: &[Field] = &[z(1, "name", Str)];

const RESOURCE_QUOTA: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(RESOURCE_QUOTA_SPEC)),
    f(3, "status", Msg(RESOURCE_QUOTA_STATUS)),
];

const RESOURCE_QUOTA_SPEC: &[Field] = &[
    f(1, "hard", QuantityMap),
    list(2, "scopes", Str),
    f(3, "scopeSelector", Msg(SCOPE_SELECTOR)),
];

const SCOPE_SELECTOR: &[Field] = &[list(
    1,
    "matchExpressions",
    Msg(SCOPED_RESOURCE_SELECTOR_REQUIREMENT),
)];

const SCOPED_RESOURCE_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "scopeName", Str),
    f(2, "operator", Str),
    list(3, "values", Str),
];

const RESOURCE_QUOTA_STATUS: &[Field] = &[f(1, "hard", QuantityMap), f(2, "used", QuantityMap)];

const POD: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
    f(3, "status", Msg(POD_STATUS)),
];

const POD_SPEC: &[Field] = &[
    list(1, "volumes", Msg(VOLUME)),
    list(2, "containers", Msg(CONTAINER)),
    z(3, "restartPolicy", Str),
    f(4, "terminationGracePeriodSeconds", Int64),
    f(5, "activeDeadlineSeconds", Int64),
    z(6, "dnsPolicy", Str),
    f(7, "nodeSelector", StrMap),
    z(8, "serviceAccountName", Str),
    z(9, "serviceAccount", Str),
    z(10, "nodeName", Str),
    z(11, "hostNetwork", Bool),
    z(12, "hostPID", Bool),
    z(13, "hostIPC", Bool),
    f(14, "securityContext", Msg(POD_SECURITY_CONTEXT)),
    list(15, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    z(16, "hostname", Str),
    z(17, "subdomain", Str),
    f(18, "affinity", Msg(AFFINITY)),
    z(19, "schedulerName", Str),
    list(20, "initContainers", Msg(CONTAINER)),
    f(21, "automountServiceAccountToken", Bool),
    list(22, "tolerations", Msg(TOLERATION)),
    list(23, "hostAliases", Msg(HOST_ALIAS)),
    z(24, "priorityClassName", Str),
    f(25, "priority", Int32),
    f(26, "dnsConfig", Msg(POD_DNS_CONFIG)),
    f(27, "shareProcessNamespace", Bool),
    list(28, "readinessGates", Msg(POD_READINESS_GATE)),
    f(29, "runtimeClassName", Str),
    f(30, "enableServiceLinks", Bool),
    f(31, "preemptionPolicy", Str),
    f(32, "overhead", QuantityMap),
    list(
        33,
        "topologySpreadConstraints",
        Msg(TOPOLOGY_SPREAD_CONSTRAINT),
    ),
    unsupported(34, "ephemeralContainers"),
    f(35, "setHostnameAsFQDN", Bool),
    f(36, "os", Msg(POD_OS)),
    f(37, "hostUsers", Bool),
    list(38, "schedulingGates", Msg(POD_SCHEDULING_GATE)),
    list(39, "resourceClaims", Msg(POD_RESOURCE_CLAIM)),
    f(40, "resources", Msg(RESOURCE_REQUIREMENTS)),
    f(41, "hostnameOverride", Str),
    f(43, "schedulingGroup", Msg(POD_SCHEDULING_GROUP)),
    list(44, "evictionResponders", Msg(EVICTION_RESPONDER)),
];

const VOLUME: &[Field] = &[f(1, "name", Str), inline(2, VOLUME_SOURCE)];

const VOLUME_SOURCE: &[Field] = &[
    f(1, "hostPath", Msg(HOST_PATH_VOLUME_SOURCE)),
    f(2, "emptyDir", Msg(EMPTY_DIR_VOLUME_SOURCE)),
    unsupported(3, "gcePersistentDisk"),
    unsupported(4, "awsElasticBlockStore"),
    unsupported(5, "gitRepo"),
    f(6, "secret", Msg(SECRET_VOLUME_SOURCE)),
    f(7, "nfs", Msg(NFS_VOLUME_SOURCE)),
    unsupported(8, "iscsi"),
    unsupported(9, "glusterfs"),
    f(
        10,
        "persistentVolumeClaim",
        Msg(PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE),
    ),
    unsupported(11, "rbd"),
    unsupported(12, "flexVolume"),
    unsupported(13, "cinder"),
    unsupported(14, "cephfs"),
    unsupported(15, "flocker"),
    f(16, "downwardAPI", Msg(DOWNWARD_API_VOLUME_SOURCE)),
    unsupported(17, "fc"),
    unsupported(18, "azureFile"),
    f(19, "configMap", Msg(CONFIG_MAP_VOLUME_SOURCE)),
    unsupported(20, "vsphereVolume"),
    unsupported(21, "quobyte"),
    unsupported(22, "azureDisk"),
    unsupported(23, "photonPersistentDisk"),
    unsupported(24, "portworxVolume"),
    unsupported(25, "scaleIO"),
    f(26, "projected", Msg(PROJECTED_VOLUME_SOURCE)),
    unsupported(27, "storageos"),
    f(28, "csi", Msg(CSI_VOLUME_SOURCE)),
    unsupported(29, "ephemeral"),
    f(30, "image", Msg(IMAGE_VOLUME_SOURCE)),
];

const HOST_PATH_VOLUME_SOURCE: &[Field] = &[f(1, "path", Str), f(2, "type", Str)];

const EMPTY_DIR_VOLUME_SOURCE: &[Field] = &[
    z(1, "medium", Str),
    f(2, "sizeLimit", Quantity),
    f(3, "mode", Int32),
];

const SECRET_VOLUME_SOURCE: &[Field] = &[
    z(1, "secretName", Str),
    list(2, "items", Msg(KEY_TO_PATH)),
    f(3, "defaultMode", Int32),
    f(4, "optional", Bool),
    f(5, "defaultUser", Int64),
];

const KEY_TO_PATH: &[Field] = &[
    f(1, "key", Str),
    f(2, "path", Str),
    f(3, "mode", Int32),
    f(4, "user", Int64),
];

const NFS_VOLUME_SOURCE: &[Field] = &[
    f(1, "server", Str),
    f(2, "path", Str),
    z(3, "readOnly", Bool),
];

const PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: &[Field] =
    &[f(1, "claimName", Str), z(2, "readOnly", Bool)];

const DOWNWARD_API_VOLUME_SOURCE: &[Field] = &[
    list(1, "items", Msg(DOWNWARD_API_VOLUME_FILE)),
    f(2, "defaultMode", Int32),
    f(3, "defaultUser", Int64),
];

const DOWNWARD_API_VOLUME_FILE: &[Field] = &[
    f(1, "path", Str),
    f(2, "fieldRef", Msg(OBJECT_FIELD_SELECTOR)),
    f(3, "resourceFieldRef", Msg(RESOURCE_FIELD_SELECTOR)),
    f(4, "mode", Int32),
    f(5, "user", Int64),
];

const OBJECT_FIELD_SELECTOR: &[Field] = &[z(1, "apiVersion", Str), f(2, "fieldPath", Str)];

const RESOURCE_FIELD_SELECTOR: &[Field] = &[
    z(1, "containerName", Str),
    f(2, "resource", Str),
    f(3, "divisor", Quantity),
];

const CONFIG_MAP_VOLUME_SOURCE: &[Field] = &[
    inline(1, LOCAL_OBJECT_REFERENCE),
    list(2, "items", Msg(KEY_TO_PATH)),
    f(3, "defaultMode", Int32),
    f(4, "optional", Bool),
    f(5, "defaultUser", Int64),
];

const PROJECTED_VOLUME_SOURCE: &[Field] = &[
    list(1, "sources", Msg(VOLUME_PROJECTION)),
    f(2, "defaultMode", Int32),
    f(3, "defaultUser", Int64),
];

const VOLUME_PROJECTION: &[Field] = &[
    f(1, "secret", Msg(SECRET_PROJECTION)),
    f(2, "downwardAPI", Msg(DOWNWARD_API_PROJECTION)),
    f(3, "configMap", Msg(CONFIG_MAP_PROJECTION)),
    f(
        4,
        "serviceAccountToken",
        Msg(SERVICE_ACCOUNT_TOKEN_PROJECTION),
    ),
    f(
        5,
        "clusterTrustBundle",
        Msg(CLUSTER_TRUST_BUNDLE_PROJECTION),
    ),
    f(6, "podCertificate", Msg(POD_CERTIFICATE_PROJECTION)),
];

const SECRET_PROJECTION: &[Field] = &[
    inline(1, LOCAL_OBJECT_REFERENCE),
    list(2, "items", Msg(KEY_TO_PATH)),
    f(4, "optional", Bool),
];

const DOWNWARD_API_PROJECTION: &[Field] = &[list(1, "items", Msg(DOWNWARD_API_VOLUME_FILE))];

const CONFIG_MAP_PROJECTION: &[Field] = &[
    inline(1, LOCAL_OBJECT_REFERENCE),
    list(2, "items", Msg(KEY_TO_PATH)),
    f(4, "optional", Bool),
];

const SERVICE_ACCOUNT_TOKEN_PROJECTION: &[Field] = &[
    z(1, "audience", Str),
    f(2, "expirationSeconds", Int64),
    f(3, "path", Str),
    f(4, "user", Int64),
];

const CLUSTER_TRUST_BUNDLE_PROJECTION: &[Field] = &[
    f(1, "name", Str),
    f(2, "signerName", Str),
    f(3, "labelSelector", Msg(LABEL_SELECTOR)),
    f(4, "path", Str),
    f(5, "optional", Bool),
    f(6, "user", Int64),
];

const POD_CERTIFICATE_PROJECTION: &[Field] = &[
    z(1, "signerName", Str),
    z(2, "keyType", Str),
    f(3, "maxExpirationSeconds", Int32),
    z(4, "credentialBundlePath", Str),
    z(5, "keyPath", Str),
    z(6, "certificateChainPath", Str),
    f(7, "userAnnotations", StrMap),
    f(8, "user", Int64),
];

const CSI_VOLUME_SOURCE: &[Field] = &[
    f(1, "driver", Str),
    f(2, "readOnly", Bool),
    f(3, "fsType", Str),
    f(4, "volumeAttributes", StrMap),
    f(5, "nodePublishSecretRef", Msg(LOCAL_OBJECT_REFERENCE)),
];

const IMAGE_VOLUME_SOURCE: &[Field] = &[z(1, "reference", Str), z(2, "pullPolicy", Str)];

const CONTAINER: &[Field] = &[
    f(1, "name", Str),
    z(2, "image", Str),
    list(3, "command", Str),
    list(4, "args", Str),
    z(5, "workingDir", Str),
    list(6, "ports", Msg(CONTAINER_PORT)),
    list(7, "env", Msg(ENV_VAR)),
    f(8, "resources", Msg(RESOURCE_REQUIREMENTS)),
    list(9, "volumeMounts", Msg(VOLUME_MOUNT)),
    f(10, "livenessProbe", Msg(PROBE)),
    f(11, "readinessProbe", Msg(PROBE)),
    f(12, "lifecycle", Msg(LIFECYCLE)),
    z(13, "terminationMessagePath", Str),
    z(14, "imagePullPolicy", Str),
    f(15, "securityContext", Msg(SECURITY_CONTEXT)),
    z(16, "stdin", Bool),
    z(17, "stdinOnce", Bool),
    z(18, "tty", Bool),
    list(19, "envFrom", Msg(ENV_FROM_SOURCE)),
    z(20, "terminationMessagePolicy", Str),
    list(21, "volumeDevices", Msg(VOLUME_DEVICE)),
    f(22, "startupProbe", Msg(PROBE)),
    list(23, "resizePolicy", Msg(CONTAINER_RESIZE_POLICY)),
    f(24, "restartPolicy", Str),
    list(25, "restartPolicyRules", Msg(CONTAINER_RESTART_RULE)),
];

const CONTAINER_PORT: &[Field] = &[
    z(1, "name", Str),
    z(2, "hostPort", Int32),
    f(3, "containerPort", Int32),
    z(4, "protocol", Str),
    z(5, "hostIP", Str),
];

const ENV_FROM_SOURCE: &[Field] = &[
    z(1, "prefix", Str),
    f(2, "configMapRef", Msg(CONFIG_MAP_ENV_SOURCE)),
    f(3, "secretRef", Msg(SECRET_ENV_SOURCE)),
];

const CONFIG_MAP_ENV_SOURCE: &[Field] =
    &[inline(1, LOCAL_OBJECT_REFERENCE), f(2, "optional", Bool)];

const SECRET_ENV_SOURCE: &[Field] = &[inline(1, LOCAL_OBJECT_REFERENCE), f(2, "optional", Bool)];

const ENV_VAR: &[Field] = &[
    f(1, "name", Str),
    z(2, "value", Str),
    f(3, "valueFrom", Msg(ENV_VAR_SOURCE)),
];

const ENV_VAR_SOURCE: &[Field] = &[
    f(1, "fieldRef", Msg(OBJECT_FIELD_SELECTOR)),
    f(2, "resourceFieldRef", Msg(RESOURCE_FIELD_SELECTOR)),
    f(3, "configMapKeyRef", Msg(CONFIG_MAP_KEY_SELECTOR)),
    f(4, "secretKeyRef", Msg(SECRET_KEY_SELECTOR)),
    f(5, "fileKeyRef", Msg(FILE_KEY_SELECTOR)),
];

const CONFIG_MAP_KEY_SELECTOR: &[Field] = &[
    inline(1, LOCAL_OBJECT_REFERENCE),
    f(2, "key", Str),
    f(3, "optional", Bool),
];

const SECRET_KEY_SELECTOR: &[Field] = &[
    inline(1, LOCAL_OBJECT_REFERENCE),
    f(2, "key", Str),
    f(3, "optional", Bool),
];

const FILE_KEY_SELECTOR: &[Field] = &[
    f(1, "volumeName", Str),
    f(2, "path", Str),
    f(3, "key", Str),
    f(4, "optional", Bool),
];

const RESOURCE_REQUIREMENTS: &[Field] = &[
    f(1, "limits", QuantityMap),
    f(2, "requests", QuantityMap),
    list(3, "claims", Msg(RESOURCE_CLAIM)),
];

const RESOURCE_CLAIM: &[Field] = &[f(1, "name", Str), z(2, "request", Str)];

const CONTAINER_RESIZE_POLICY: &[Field] = &[f(1, "resourceName", Str), f(2, "restartPolicy", Str)];

const CONTAINER_RESTART_RULE: &[Field] = &[
    z(1, "action", Str),
    f(2, "exitCodes", Msg(CONTAINER_RESTART_RULE_ON_EXIT_CODES)),
];

const CONTAINER_RESTART_RULE_ON_EXIT_CODES: &[Field] =
    &[z(1, "operator", Str), list(2, "values", Int32)];

const VOLUME_MOUNT: &[Field] = &[
    f(1, "name", Str),
    z(2, "readOnly", Bool),
    f(3, "mountPath", Str),
    z(4, "subPath", Str),
    f(5, "mountPropagation", Str),
    z(6, "subPathExpr", Str),
    f(7, "recursiveReadOnly", Str),
    list(8, "bindMountOptions", Str),
];

const VOLUME_DEVICE: &[Field] = &[f(1, "name", Str), f(2, "devicePath", Str)];

const PROBE: &[Field] = &[
    inline(1, PROBE_HANDLER),
    z(2, "initialDelaySeconds", Int32),
    z(3, "timeoutSeconds", Int32),
    z(4, "periodSeconds", Int32),
    z(5, "successThreshold", Int32),
    z(6, "failureThreshold", Int32),
    f(7, "terminationGracePeriodSeconds", Int64),
];

const PROBE_HANDLER: &[Field] = &[
    f(1, "exec", Msg(EXEC_ACTION)),
    f(2, "httpGet", Msg(HTTP_GET_ACTION)),
    f(3, "tcpSocket", Msg(TCP_SOCKET_ACTION)),
    f(4, "grpc", Msg(GRPC_ACTION)),
];

const EXEC_ACTION: &[Field] = &[list(1, "command", Str)];

const HTTP_GET_ACTION: &[Field] = &[
    z(1, "path", Str),
    f(2, "port", IntOrString),
    z(3, "host", Str),
    z(4, "scheme", Str),
    list(5, "httpHeaders", Msg(HTTP_HEADER)),
    f(6, "protocol", Str),
];

const HTTP_HEADER: &[Field] = &[f(1, "name", Str), f(2, "value", Str)];

const TCP_SOCKET_ACTION: &[Field] = &[f(1, "port", IntOrString), z(2, "host", Str)];

const GRPC_ACTION: &[Field] = &[f(1, "port", Int32), f(2, "service", Str), f(3, "mode", Str)];

const LIFECYCLE: &[Field] = &[
    f(1, "postStart", Msg(LIFECYCLE_HANDLER)),
    f(2, "preStop", Msg(LIFECYCLE_HANDLER)),
    f(3, "stopSignal", Str),
];

const LIFECYCLE_HANDLER: &[Field] = &[
    f(1, "exec", Msg(EXEC_ACTION)),
    f(2, "httpGet", Msg(HTTP_GET_ACTION)),
    f(3, "tcpSocket", Msg(TCP_SOCKET_ACTION)),
    f(4, "sleep", Msg(SLEEP_ACTION)),
];

const SLEEP_ACTION: &[Field] = &[f(1, "seconds", Int64)];

const SECURITY_CONTEXT: &[Field] = &[
    f(1, "capabilities", Msg(CAPABILITIES)),
    f(2, "privileged", Bool),
    f(3, "seLinuxOptions", Msg(SE_LINUX_OPTIONS)),
    f(4, "runAsUser", Int64),
    f(5, "runAsNonRoot", Bool),
    f(6, "readOnlyRootFilesystem", Bool),
    f(7, "allowPrivilegeEscalation", Bool),
    f(8, "runAsGroup", Int64),
    f(9, "procMount", Str),
    f(10, "windowsOptions", Msg(WINDOWS_SECURITY_CONTEXT_OPTIONS)),
    f(11, "seccompProfile", Msg(SECCOMP_PROFILE)),
    f(12, "appArmorProfile", Msg(APP_ARMOR_PROFILE)),
];

const CAPABILITIES: &[Field] = &[list(1, "add", Str), list(2, "drop", Str)];

const SE_LINUX_OPTIONS: &[Field] = &[
    z(1, "user", Str),
    z(2, "role", Str),
    z(3, "type", Str),
    z(4, "level", Str),
];

const WINDOWS_SECURITY_CONTEXT_OPTIONS: &[Field] = &[
    f(1, "gmsaCredentialSpecName", Str),
    f(2, "gmsaCredentialSpec", Str),
    f(3, "runAsUserName", Str),
    f(4, "hostProcess", Bool),
];

const SECCOMP_PROFILE: &[Field] = &[f(1, "type", Str), f(2, "localhostProfile", Str)];

const APP_ARMOR_PROFILE: &[Field] = &[f(1, "type", Str), f(2, "localhostProfile", Str)];

const POD_SECURITY_CONTEXT: &[Field] = &[
    f(1, "seLinuxOptions", Msg(SE_LINUX_OPTIONS)),
    f(2, "runAsUser", Int64),
    f(3, "runAsNonRoot", Bool),
    list(4, "supplementalGroups", Int64),
    f(5, "fsGroup", Int64),
    f(6, "runAsGroup", Int64),
    list(7, "sysctls", Msg(SYSCTL)),
    f(8, "windowsOptions", Msg(WINDOWS_SECURITY_CONTEXT_OPTIONS)),
    f(9, "fsGroupChangePolicy", Str),
    f(10, "seccompProfile", Msg(SECCOMP_PROFILE)),
    f(11, "appArmorProfile", Msg(APP_ARMOR_PROFILE)),
    f(12, "supplementalGroupsPolicy", Str),
    f(13, "seLinuxChangePolicy", Str),
];

const SYSCTL: &[Field] = &[f(1, "name", Str), f(2, "value", Str)];

const AFFINITY: &[Field] = &[
    f(1, "nodeAffinity", Msg(NODE_AFFINITY)),
    f(2, "podAffinity", Msg(POD_AFFINITY)),
    f(3, "podAntiAffinity", Msg(POD_ANTI_AFFINITY)),
];

const NODE_AFFINITY: &[Field] = &[
    f(
        1,
        "requiredDuringSchedulingIgnoredDuringExecution",
        Msg(NODE_SELECTOR),
    ),
    list(
        2,
        "preferredDuringSchedulingIgnoredDuringExecution",
        Msg(PREFERRED_SCHEDULING_TERM),
    ),
];

const NODE_SELECTOR: &[Field] = &[list(1, "nodeSelectorTerms", Msg(NODE_SELECTOR_TERM))];

const NODE_SELECTOR_TERM: &[Field] = &[
    list(1, "matchExpressions", Msg(NODE_SELECTOR_REQUIREMENT)),
    list(2, "matchFields", Msg(NODE_SELECTOR_REQUIREMENT)),
];

const NODE_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Str),
    f(2, "operator", Str),
    list(3, "values", Str),
];

const PREFERRED_SCHEDULING_TERM: &[Field] = &[
    f(1, "weight", Int32),
    f(2, "preference", Msg(NODE_SELECTOR_TERM)),
];

const POD_AFFINITY: &[Field] = &[
    list(
        1,
        "requiredDuringSchedulingIgnoredDuringExecution",
        Msg(POD_AFFINITY_TERM),
    ),
    list(
        2,
        "preferredDuringSchedulingIgnoredDuringExecution",
        Msg(WEIGHTED_POD_AFFINITY_TERM),
    ),
];

const POD_AFFINITY_TERM: &[Field] = &[
    f(1, "labelSelector", Msg(LABEL_SELECTOR)),
    list(2, "namespaces", Str),
    f(3, "topologyKey", Str),
    f(4, "namespaceSelector", Msg(LABEL_SELECTOR)),
    list(5, "matchLabelKeys", Str),
    list(6, "mismatchLabelKeys", Str),
];

const WEIGHTED_POD_AFFINITY_TERM: &[Field] = &[
    f(1, "weight", Int32),
    f(2, "podAffinityTerm", Msg(POD_AFFINITY_TERM)),
];

const POD_ANTI_AFFINITY: &[Field] = &[
    list(
        1,
        "requiredDuringSchedulingIgnoredDuringExecution",
        Msg(POD_AFFINITY_TERM),
    ),
    list(
        2,
        "preferredDuringSchedulingIgnoredDuringExecution",
        Msg(WEIGHTED_POD_AFFINITY_TERM),
    ),
];

const TOLERATION: &[Field] = &[
    z(1, "key", Str),
    z(2, "operator", Str),
    z(3, "value", Str),
    z(4, "effect", Str),
    f(5, "tolerationSeconds", Int64),
];

const HOST_ALIAS: &[Field] = &[f(1, "ip", Str), list(2, "hostnames", Str)];

const POD_DNS_CONFIG: &[Field] = &[
    list(1, "nameservers", Str),
    list(2, "searches", Str),
    list(3, "options", Msg(POD_DNS_CONFIG_OPTION)),
];

const POD_DNS_CONFIG_OPTION: &[Field] = &[z(1, "name", Str), f(2, "value", Str)];

const POD_READINESS_GATE: &[Field] = &[f(1, "conditionType", Str)];

const TOPOLOGY_SPREAD_CONSTRAINT: &[Field] = &[
    f(1, "maxSkew", Int32),
    f(2, "topologyKey", Str),
    f(3, "whenUnsatisfiable", Str),
    f(4, "labelSelector", Msg(LABEL_SELECTOR)),
    f(5, "minDomains", Int32),
    f(6, "nodeAffinityPolicy", Str),
    f(7, "nodeTaintsPolicy", Str),
    list(8, "matchLabelKeys", Str),
];

const POD_OS: &[Field] = &[f(1, "name", Str)];

const POD_SCHEDULING_GATE: &[Field] = &[f(1, "name", Str)];

const POD_RESOURCE_CLAIM: &[Field] = &[
    f(1, "name", Str),
    f(3, "resourceClaimName", Str),
    f(4, "resourceClaimTemplateName", Str),
];

const POD_SCHEDULING_GROUP: &[Field] = &[f(1, "podGroupName", Str)];

const EVICTION_RESPONDER: &[Field] = &[f(1, "name", Str), f(2, "priority", Int32)];

/// The scalar part; container, claim and resource statuses are the
/// kubelet's to write and are skipped.
const POD_STATUS: &[Field] = &[
    z(1, "phase", Str),
    list(2, "conditions", Msg(POD_CONDITION)),
    z(3, "message", Str),
    z(4, "reason", Str),
    z(5, "hostIP", Str),
    z(6, "podIP", Str),
    f(7, "startTime", Time),
    z(9, "qosClass", Str),
    z(11, "nominatedNodeName", Str),
    list(12, "podIPs", Msg(POD_IP)),
    list(16, "hostIPs", Msg(HOST_IP)),
    z(17, "observedGeneration", Int64),
];

const POD_CONDITION: &[Field] = &[
    f(1, "type", Str),
    f(2, "status", Str),
    f(3, "lastProbeTime", Time),
    f(4, "lastTransitionTime", Time),
    z(5, "reason", Str),
    z(6, "message", Str),
    z(7, "observedGeneration", Int64),
];

const HOST_IP: &[Field] = &[f(1, "ip", Str)];

const POD_IP: &[Field] = &[f(1, "ip", Str)];

const POD_TEMPLATE_SPEC: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
];

// ---- apps/v1 ----

const DEPLOYMENT: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(DEPLOYMENT_SPEC)),
    f(3, "status", Msg(DEPLOYMENT_STATUS)),
];

const DEPLOYMENT_SPEC: &[Field] = &[
    f(1, "replicas", Int32),
    f(2, "selector", Msg(LABEL_SELECTOR)),
    f(3, "template", Msg(POD_TEMPLATE_SPEC)),
    f(4, "strategy", Msg(DEPLOYMENT_STRATEGY)),
    z(5, "minReadySeconds", Int32),
    f(6, "revisionHistoryLimit", Int32),
    z(7, "paused", Bool),
    f(9, "progressDeadlineSeconds", Int32),
];

const DEPLOYMENT_STRATEGY: &[Field] = &[
    z(1, "type", Str),
    f(2, "rollingUpdate", Msg(ROLLING_UPDATE_DEPLOYMENT)),
];

const ROLLING_UPDATE_DEPLOYMENT: &[Field] = &[
    f(1, "maxUnavailable", IntOrString),
    f(2, "maxSurge", IntOrString),
];

const DEPLOYMENT_STATUS: &[Field] = &[
    z(1, "observedGeneration", Int64),
    z(2, "replicas", Int32),
    z(3, "updatedReplicas", Int32),
    z(4, "availableReplicas", Int32),
    z(5, "unavailableReplicas", Int32),
    list(6, "conditions", Msg(DEPLOYMENT_CONDITION)),
    z(7, "readyReplicas", Int32),
    f(8, "collisionCount", Int32),
    f(9, "terminatingReplicas", Int32),
];

const DEPLOYMENT_CONDITION: &[Field] = &[
    f(1, "type", Str),
    f(2, "status", Str),
    z(4, "reason", Str),
    z(5, "message", Str),
    f(6, "lastUpdateTime", Time),
    f(7, "lastTransitionTime", Time),
];

const REPLICA_SET: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(REPLICA_SET_SPEC)),
    f(3, "status", Msg(REPLICA_SET_STATUS)),
];

const REPLICA_SET_SPEC: &[Field] = &[
    f(1, "replicas", Int32),
    f(2, "selector", Msg(LABEL_SELECTOR)),
    f(3, "template", Msg(POD_TEMPLATE_SPEC)),
    z(4, "minReadySeconds", Int32),
];

const REPLICA_SET_STATUS: &[Field] = &[
    f(1, "replicas", Int32),
    z(2, "fullyLabeledReplicas", Int32),
    z(3, "observedGeneration", Int64),
    z(4, "readyReplicas", Int32),
    z(5, "availableReplicas", Int32),
    list(6, "conditions", Msg(REPLICA_SET_CONDITION)),
    f(7, "terminatingReplicas", Int32),
];

const REPLICA_SET_CONDITION: &[Field] = &[
    f(1, "type", Str),
    f(2, "status", Str),
    f(3, "lastTransitionTime", Time),
    z(4, "reason", Str),
    z(5, "message", Str),
];

// ---- batch/v1 ----

const JOB: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(JOB_SPEC)),
    f(3, "status", Msg(JOB_STATUS)),
];

const JOB_SPEC: &[Field] = &[
    f(1, "parallelism", Int32),
    f(2, "completions", Int32),
    f(3, "activeDeadlineSeconds", Int64),
    f(4, "selector", Msg(LABEL_SELECTOR)),
    f(5, "manualSelector", Bool),
    f(6, "template", Msg(POD_TEMPLATE_SPEC)),
    f(7, "backoffLimit", Int32),
    f(8, "ttlSecondsAfterFinished", Int32),
    f(9, "completionMode", Str),
    f(10, "suspend", Bool),
    unsupported(11, "podFailurePolicy"),
    f(12, "backoffLimitPerIndex", Int32),
    f(13, "maxFailedIndexes", Int32),
    f(14, "podReplacementPolicy", Str),
    f(15, "managedBy", Str),
    f(16, "successPolicy", Msg(SUCCESS_POLICY)),
    unsupported(17, "scheduling"),
];

const SUCCESS_POLICY: &[Field] = &[list(1, "rules", Msg(SUCCESS_POLICY_RULE))];

const SUCCESS_POLICY_RULE: &[Field] =
    &[f(1, "succeededIndexes", Str), f(2, "succeededCount", Int32)];

const JOB_STATUS: &[Field] = &[
    list(1, "conditions", Msg(JOB_CONDITION)),
    f(2, "startTime", Time),
    f(3, "completionTime", Time),
    z(4, "active", Int32),
    z(5, "succeeded", Int32),
    z(6, "failed", Int32),
    z(7, "completedIndexes", Str),
    f(8, "uncountedTerminatedPods", Msg(UNCOUNTED_TERMINATED_PODS)),
    f(9, "ready", Int32),
    f(10, "failedIndexes", Str),
    f(11, "terminating", Int32),
];

const JOB_CONDITION: &[Field] = &[
    f(1, "type", Str),
    f(2, "status", Str),
    f(3, "lastProbeTime", Time),
    f(4, "lastTransitionTime", Time),
    z(5, "reason", Str),
    z(6, "message", Str),
];

const UNCOUNTED_TERMINATED_PODS: &[Field] = &[list(1, "succeeded", Str), list(2, "failed", Str)];

// ---- rbac.authorization.k8s.io/v1 ----

const ROLE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    list(2, "rules", Msg(POLICY_RULE)),
];

const POLICY_RULE: &[Field] = &[
    list(1, "verbs", Str),
    list(2, "apiGroups", Str),
    list(3, "resources", Str),
    list(4, "resourceNames", Str),
    list(5, "nonResourceURLs", Str),
];

const CLUSTER_ROLE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    list(2, "rules", Msg(POLICY_RULE)),
    f(3, "aggregationRule", Msg(AGGREGATION_RULE)),
];

const AGGREGATION_RULE: &[Field] = &[list(1, "clusterRoleSelectors", Msg(LABEL_SELECTOR))];

const ROLE_BINDING: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    list(2, "subjects", Msg(SUBJECT)),
    f(3, "roleRef", Msg(ROLE_REF)),
];

const SUBJECT: &[Field] = &[
    f(1, "kind", Str),
    z(2, "apiGroup", Str),
    f(3, "name", Str),
    z(4, "namespace", Str),
];

const ROLE_REF: &[Field] = &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)];

const CLUSTER_ROLE_BINDING: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    list(2, "subjects", Msg(SUBJECT)),
    f(3, "roleRef", Msg(ROLE_REF)),
];

// ---- authorization.k8s.io/v1 ----

const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
    f(3, "status", Msg(SUBJECT_ACCESS_REVIEW_STATUS)),
];

const SELF_SUBJECT_ACCESS_REVIEW_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
    f(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
];

const RESOURCE_ATTRIBUTES: &[Field] = &[
    z(1, "namespace", Str),
    z(2, "verb", Str),
    z(3, "group", Str),
    z(4, "version", Str),
    z(5, "resource", Str),
    z(6, "subresource", Str),
    z(7, "name", Str),
    f(8, "fieldSelector", Msg(FIELD_SELECTOR_ATTRIBUTES)),
    f(9, "labelSelector", Msg(LABEL_SELECTOR_ATTRIBUTES)),
];

const FIELD_SELECTOR_ATTRIBUTES: &[Field] = &[
    z(1, "rawSelector", Str),
    list(2, "requirements", Msg(FIELD_SELECTOR_REQUIREMENT)),
];

const LABEL_SELECTOR_ATTRIBUTES: &[Field] = &[
    z(1, "rawSelector", Str),
    list(2, "requirements", Msg(LABEL_SELECTOR_REQUIREMENT)),
];

const NON_RESOURCE_ATTRIBUTES: &[Field] = &[z(1, "path", Str), z(2, "verb", Str)];

const SUBJECT_ACCESS_REVIEW_STATUS: &[Field] = &[
    f(1, "allowed", Bool),
    z(2, "reason", Str),
    z(3, "evaluationError", Str),
    z(4, "denied", Bool),
];

const SELF_SUBJECT_RULES_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SELF_SUBJECT_RULES_REVIEW_SPEC)),
    f(3, "status", Msg(SUBJECT_RULES_REVIEW_STATUS)),
];

const SELF_SUBJECT_RULES_REVIEW_SPEC: &[Field] = &[z(1, "namespace", Str)];

const SUBJECT_RULES_REVIEW_STATUS: &[Field] = &[
    list(1, "resourceRules", Msg(RESOURCE_RULE)),
    list(2, "nonResourceRules", Msg(NON_RESOURCE_RULE)),
    f(3, "incomplete", Bool),
    z(4, "evaluationError", Str),
];

const RESOURCE_RULE: &[Field] = &[
    list(1, "verbs", Str),
    list(2, "apiGroups", Str),
    list(3, "resources", Str),
    list(4, "resourceNames", Str),
];

const NON_RESOURCE_RULE: &[Field] = &[list(1, "verbs", Str), list(2, "nonResourceURLs", Str)];

// ---- autoscaling/v1 ----

const SCALE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SCALE_SPEC)),
    f(3, "status", Msg(SCALE_STATUS)),
];

const SCALE_SPEC: &[Field] = &[z(1, "replicas", Int32)];

const SCALE_STATUS: &[Field] = &[f(1, "replicas", Int32), z(2, "selector", Str)];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A protobuf writer, to build bodies as client-go writes them.
    #[derive(Clone, Debug, Default)]
    struct Enc(Vec<u8>);

    fn put(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    impl Enc {
        fn raw(mut self, bytes: &[u8]) -> Enc {
            self.0.extend_from_slice(bytes);
            self
        }
        fn tag(mut self, num: u32, wire: u64) -> Enc {
            put(&mut self.0, u64::from(num) << 3 | wire);
            self
        }
        fn varint(mut self, num: u32, v: u64) -> Enc {
            put(&mut self.0, u64::from(num) << 3);
            put(&mut self.0, v);
            self
        }
        fn int(self, num: u32, v: i64) -> Enc {
            self.varint(num, v as u64)
        }
        fn bytes(mut self, num: u32, b: &[u8]) -> Enc {
            put(&mut self.0, u64::from(num) << 3 | 2);
            put(&mut self.0, b.len() as u64);
            self.raw(b)
        }
        fn str(self, num: u32, s: &str) -> Enc {
            self.bytes(num, s.as_bytes())
        }
        fn msg(self, num: u32, m: Enc) -> Enc {
            self.bytes(num, &m.0)
        }
        /// A `map<string, string>` entry.
        fn entry(self, num: u32, key: &str, value: &str) -> Enc {
            self.msg(num, Enc::default().str(1, key).str(2, value))
        }
    }

    fn e() -> Enc {
        Enc::default()
    }

    /// The envelope client-go's protobuf serializer writes.
    fn body(api_version: &str, kind: &str, obj: Enc) -> Vec<u8> {
        let unknown = e()
            .msg(1, e().str(1, api_version).str(2, kind))
            .msg(2, obj)
            .str(3, "")
            .str(4, "");
        [MAGIC, &unknown.0].concat()
    }

    /// ObjectMeta as Go writes it: every non-pointer field, zero or not.
    fn meta(name: &str, namespace: &str) -> Enc {
        e().str(1, name)
            .str(2, "")
            .str(3, namespace)
            .str(4, "")
            .str(5, "")
            .str(6, "")
            .int(7, 0)
            .msg(8, e())
    }

    fn quantity(v: &str) -> Enc {
        e().str(1, v)
    }

    fn int_or_string(int: i64, string: &str) -> Enc {
        let kind = if string.is_empty() { 0 } else { 1 };
        e().int(1, kind).int(2, int).str(3, string)
    }

    /// A PodSpec with the zero scalars Go writes.
    fn pod_spec(containers: Vec<Enc>, restart_policy: &str) -> Enc {
        let mut spec = e();
        for c in containers {
            spec = spec.msg(2, c);
        }
        spec.str(3, restart_policy)
            .str(6, "")
            .str(8, "")
            .str(9, "")
            .str(10, "")
            .int(11, 0)
            .int(12, 0)
            .int(13, 0)
            .str(16, "")
            .str(17, "")
            .str(19, "")
            .str(24, "")
    }

    /// A Container with the zero scalars Go writes.
    fn container(name: &str, image: &str) -> Enc {
        e().str(1, name)
            .str(2, image)
            .str(5, "")
            .str(13, "")
            .str(14, "")
            .int(16, 0)
            .int(17, 0)
            .int(18, 0)
            .str(20, "")
    }

    fn deployment() -> Enc {
        let port = e()
            .str(1, "")
            .int(2, 0)
            .int(3, 8080)
            .str(4, "TCP")
            .str(5, "");
        let secret_ref = e().msg(1, e().str(1, "s")).str(2, "k");
        let http_get =
            |path: &str, port: Enc| e().str(1, path).msg(2, port).str(3, "").str(4, "HTTP");
        let probe = |get: Enc, timeout: i64, period: i64| {
            e().msg(1, e().msg(2, get))
                .int(2, 0)
                .int(3, timeout)
                .int(4, period)
                .int(5, 0)
                .int(6, 0)
        };
        let nginx = container("nginx", "nginx")
            .msg(6, port)
            .msg(7, e().str(1, "A").str(2, "1"))
            .msg(7, e().str(1, "B").str(2, "").msg(3, e().msg(4, secret_ref)))
            .msg(8, e().msg(1, e().str(1, "cpu").msg(2, quantity("500m"))))
            .msg(
                10,
                probe(http_get("/healthz", int_or_string(8080, "")), 1, 0),
            )
            .msg(11, probe(http_get("", int_or_string(0, "http")), 0, 10));
        let template = e()
            .msg(1, meta("", "").entry(11, "app", "web"))
            .msg(2, pod_spec(vec![nginx], "Always"));
        let spec = e()
            .int(1, 0)
            .msg(2, e().entry(1, "app", "web"))
            .msg(3, template)
            .msg(4, e().str(1, ""))
            .int(5, 0)
            .int(7, 0);
        let status = e()
            .int(1, 0)
            .int(2, 0)
            .int(3, 0)
            .int(4, 0)
            .int(5, 0)
            .int(7, 0);
        e().msg(1, meta("web", "default").entry(11, "app", "web"))
            .msg(2, spec)
            .msg(3, status)
    }

    /// Decodes `v` as the k8s-openapi type of its kind and encodes it back.
    fn round_trip(v: &Value) -> Value {
        use k8s_openapi::api::{apps, authorization, autoscaling, batch, core, rbac};
        use k8s_openapi::apimachinery::pkg::apis::meta;
        fn through<T: serde::de::DeserializeOwned + serde::Serialize>(
            v: &Value,
        ) -> Result<Value, serde_json::Error> {
            serde_json::to_value(serde_json::from_value::<T>(v.clone())?)
        }
        let through = match v["kind"].as_str().unwrap_or_default() {
            "ConfigMap" => through::<core::v1::ConfigMap>,
            "Namespace" => through::<core::v1::Namespace>,
            "Pod" => through::<core::v1::Pod>,
            "ResourceQuota" => through::<core::v1::ResourceQuota>,
            "Secret" => through::<core::v1::Secret>,
            "Service" => through::<core::v1::Service>,
            "ServiceAccount" => through::<core::v1::ServiceAccount>,
            "Deployment" => through::<apps::v1::Deployment>,
            "ReplicaSet" => through::<apps::v1::ReplicaSet>,
            "Job" => through::<batch::v1::Job>,
            "Role" => through::<rbac::v1::Role>,
            "ClusterRole" => through::<rbac::v1::ClusterRole>,
            "RoleBinding" => through::<rbac::v1::RoleBinding>,
            "ClusterRoleBinding" => through::<rbac::v1::ClusterRoleBinding>,
            "SelfSubjectAccessReview" => through::<authorization::v1::SelfSubjectAccessReview>,
            "SelfSubjectRulesReview" => through::<authorization::v1::SelfSubjectRulesReview>,
            "Scale" => through::<autoscaling::v1::Scale>,
            "DeleteOptions" => through::<meta::v1::DeleteOptions>,
            other => panic!("no k8s-openapi type for {other}"),
        };
        through(v).unwrap_or_else(|err| panic!("{}: {err}", v["kind"]))
    }

    #[test]
    fn decodes_what_client_go_sends() {
        let cases = [
            (
                body(
                    "v1",
                    "ConfigMap",
                    e().msg(1, meta("c", "default")).entry(2, "k", "v"),
                ),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}}),
            ),
            (
                body(
                    "v1",
                    "Secret",
                    e().msg(1, meta("s", "default"))
                        .msg(2, e().str(1, "bin").bytes(2, &[0, 255, b'h', b'i']))
                        .str(3, "Opaque"),
                ),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": {"bin": "AP9oaQ=="}, "type": "Opaque"}),
            ),
            (
                body(
                    "v1",
                    "Namespace",
                    e().msg(1, meta("team", ""))
                        .msg(2, e())
                        .msg(3, e().str(1, "")),
                ),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}, "spec": {}, "status": {}}),
            ),
            (
                body("apps/v1", "Deployment", deployment()),
                json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                    "spec": {
                        "replicas": 0,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {
                                "containers": [{
                                    "name": "nginx",
                                    "image": "nginx",
                                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                    "env": [
                                        {"name": "A", "value": "1"},
                                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                                    ],
                                    "resources": {"limits": {"cpu": "500m"}},
                                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "timeoutSeconds": 1},
                                    "readinessProbe": {"httpGet": {"port": "http", "scheme": "HTTP"}, "periodSeconds": 10},
                                }],
                                "restartPolicy": "Always",
                            },
                        },
                        "strategy": {},
                    },
                    "status": {},
                }),
            ),
            (
                body(
                    "batch/v1",
                    "Job",
                    e().msg(1, meta("pi", "default"))
                        .msg(
                            2,
                            e().msg(
                                6,
                                e().msg(1, meta("", "")).msg(
                                    2,
                                    pod_spec(
                                        vec![container("pi", "perl").str(3, "perl").str(3, "-e")],
                                        "Never",
                                    ),
                                ),
                            ),
                        )
                        .msg(
                            3,
                            e().msg(2, e().int(1, 1_767_323_045))
                                .msg(3, e().int(1, 1_767_323_046).int(2, 5))
                                .int(4, 0)
                                .int(5, 0)
                                .int(6, 0)
                                .str(7, ""),
                        ),
                ),
                json!({
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": "pi", "namespace": "default"},
                    "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "pi", "image": "perl", "command": ["perl", "-e"]}], "restartPolicy": "Never"}}},
                    "status": {"startTime": "2026-01-02T03:04:05Z", "completionTime": "2026-01-02T03:04:06Z"},
                }),
            ),
            (
                body(
                    "v1",
                    "Service",
                    e().msg(1, meta("web", "default").entry(11, "app", "web"))
                        .msg(
                            2,
                            e().msg(
                                1,
                                e().str(1, "")
                                    .str(2, "TCP")
                                    .int(3, 80)
                                    .msg(4, int_or_string(8080, ""))
                                    .int(5, 0),
                            )
                            .entry(2, "app", "web")
                            .str(3, "")
                            .str(4, "")
                            .str(7, "")
                            .int(12, 0)
                            .int(13, 0),
                        )
                        .msg(3, e().msg(1, e())),
                ),
                json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                    "spec": {"ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}], "selector": {"app": "web"}},
                    "status": {"loadBalancer": {}},
                }),
            ),
            (
                body("v1", "ServiceAccount", e().msg(1, meta("bot", "default"))),
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bot", "namespace": "default"}}),
            ),
            (
                body(
                    "v1",
                    "ResourceQuota",
                    e().msg(1, meta("q", "default"))
                        .msg(
                            2,
                            e().msg(1, e().str(1, "pods").msg(2, quantity("10")))
                                .msg(1, e().str(1, "cpu").msg(2, quantity("1"))),
                        )
                        .msg(3, e()),
                ),
                json!({
                    "apiVersion": "v1",
                    "kind": "ResourceQuota",
                    "metadata": {"name": "q", "namespace": "default"},
                    "spec": {"hard": {"pods": "10", "cpu": "1"}},
                    "status": {},
                }),
            ),
            (
                body(
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRole",
                    e().msg(1, meta("pod-reader", "")).msg(
                        2,
                        e().str(1, "get").str(1, "list").str(2, "").str(3, "pods"),
                    ),
                ),
                json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "pod-reader"},
                    "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}],
                }),
            ),
            (
                body(
                    "rbac.authorization.k8s.io/v1",
                    "RoleBinding",
                    e().msg(1, meta("rb", "default"))
                        .msg(
                            2,
                            e().str(1, "User")
                                .str(2, "rbac.authorization.k8s.io")
                                .str(3, "alice")
                                .str(4, ""),
                        )
                        .msg(
                            3,
                            e().str(1, "rbac.authorization.k8s.io")
                                .str(2, "Role")
                                .str(3, "r"),
                        ),
                ),
                json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "rb", "namespace": "default"},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}],
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                }),
            ),
            (
                body(
                    "authorization.k8s.io/v1",
                    "SelfSubjectAccessReview",
                    e().msg(1, meta("", ""))
                        .msg(
                            2,
                            e().msg(
                                1,
                                e().str(1, "default")
                                    .str(2, "create")
                                    .str(3, "apps")
                                    .str(4, "")
                                    .str(5, "deployments")
                                    .str(6, "")
                                    .str(7, ""),
                            ),
                        )
                        .msg(3, e().int(1, 0).str(2, "").str(3, "").int(4, 0)),
                ),
                json!({
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "metadata": {},
                    "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "group": "apps", "resource": "deployments"}},
                    "status": {"allowed": false},
                }),
            ),
            (
                body(
                    "authorization.k8s.io/v1",
                    "SelfSubjectRulesReview",
                    e().msg(1, meta("", ""))
                        .msg(2, e().str(1, "default"))
                        .msg(3, e().int(3, 0).str(4, "")),
                ),
                json!({
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectRulesReview",
                    "metadata": {},
                    "spec": {"namespace": "default"},
                    "status": {"incomplete": false},
                }),
            ),
            (
                body(
                    "autoscaling/v1",
                    "Scale",
                    e().msg(1, meta("web", "default"))
                        .msg(2, e().int(1, 3))
                        .msg(3, e().int(1, 0).str(2, "")),
                ),
                json!({
                    "apiVersion": "autoscaling/v1",
                    "kind": "Scale",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"replicas": 3},
                    "status": {"replicas": 0},
                }),
            ),
            (
                body(
                    "apps/v1",
                    "DeleteOptions",
                    e().int(1, 0).str(4, "Foreground"),
                ),
                json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}),
            ),
        ];
        for (body, want) in cases {
            let got = decode(&body).unwrap_or_else(|err| panic!("{}: {err}", want["kind"]));
            assert_eq!(got, want);
            let mut lost = Vec::new();
            differences(&got, &round_trip(&got), "", &mut lost);
            assert!(lost.is_empty(), "{}: {lost:?}", want["kind"]);
        }
    }

    /// Writes every decodable field of `schema` with a non-zero value.
    fn everything(schema: &[Field]) -> Enc {
        schema.iter().fold(e(), |enc, field| {
            let num = field.num;
            match field.ty {
                Ty::Str => enc.str(num, "x"),
                Ty::Bytes => enc.bytes(num, b"x"),
                Ty::Bool | Ty::Int32 | Ty::Int64 => enc.int(num, 1),
                Ty::Time | Ty::MicroTime => enc.msg(num, e().int(1, 1_767_323_045)),
                Ty::Quantity => enc.msg(num, quantity("1")),
                Ty::IntOrString => enc.msg(num, int_or_string(0, "x")),
                Ty::Duration => enc.msg(num, e().int(1, 1_000_000_000)),
                Ty::Raw => enc.msg(num, e().str(1, "{}")),
                Ty::Msg(schema) | Ty::Inline(schema) => enc.msg(num, everything(schema)),
                Ty::StrMap | Ty::BytesMap => enc.entry(num, "k", "x"),
                Ty::QuantityMap => enc.msg(num, e().str(1, "k").msg(2, quantity("1"))),
                Ty::Unsupported => enc,
            }
        })
    }

    /// Paths in `a` whose values `b` lacks or differs on.
    fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in a {
                    differences(
                        v,
                        b.get(k).unwrap_or(&Value::Null),
                        &format!("{path}.{k}"),
                        out,
                    );
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (v, w) in a.iter().zip(b) {
                    differences(v, w, &format!("{path}[]"), out);
                }
            }
            _ if a == b => {}
            _ => out.push(path.to_string()),
        }
    }

    /// Every field in the tables, set, survives the k8s-openapi type of its
    /// kind: the JSON names and types match Kubernetes'.
    #[test]
    fn every_field_reaches_k8s_openapi() {
        for (api_version, kind, schema) in KINDS {
            let got = decode(&body(api_version, kind, everything(schema)))
                .unwrap_or_else(|err| panic!("{kind}: {err}"));
            let mut missing = Vec::new();
            differences(&got, &round_trip(&got), kind, &mut missing);
            assert!(missing.is_empty(), "{missing:#?}");
        }
    }

    const SPECIAL: &[Field] = &[
        f(1, "time", Ty::Time),
        f(2, "micro", Ty::MicroTime),
        f(3, "duration", Ty::Duration),
        f(4, "raw", Ty::Raw),
        f(5, "port", Ty::IntOrString),
        f(6, "quantity", Ty::Quantity),
        z(7, "created", Ty::Time),
        f(8, "bytes", Ty::Bytes),
        f(9, "int32", Ty::Int32),
        f(10, "int64", Ty::Int64),
        list(11, "ints", Ty::Int64),
        f(12, "labels", Ty::StrMap),
        z(13, "name", Ty::Str),
    ];

    #[test]
    fn decodes_each_type() {
        let configmap = body("v1", "ConfigMap", e().msg(1, meta("c", "")));
        let cases = [
            // Time drops nanoseconds; MicroTime keeps microseconds.
            (
                e().msg(1, e().int(1, 1_767_323_045).int(2, 999)),
                json!({"time": "2026-01-02T03:04:05Z"}),
            ),
            (e().msg(1, e()), json!({"time": null})),
            (e().msg(7, e()), json!({})),
            (
                e().msg(2, e().int(1, 1_767_323_045).int(2, 123_456_789)),
                json!({"micro": "2026-01-02T03:04:05.123456Z"}),
            ),
            (
                e().msg(2, e().int(1, 1_767_323_045)),
                json!({"micro": "2026-01-02T03:04:05.000000Z"}),
            ),
            (
                e().msg(3, e().int(1, 90_000_000_000)),
                json!({"duration": "1m30s"}),
            ),
            (
                e().msg(4, e().str(1, r#"{"a":[1]}"#)),
                json!({"raw": {"a": [1]}}),
            ),
            (e().msg(4, e()), json!({"raw": null})),
            (
                e().msg(4, e().bytes(1, &configmap)),
                json!({"raw": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}}),
            ),
            (e().msg(5, int_or_string(8080, "")), json!({"port": 8080})),
            (
                e().msg(5, int_or_string(0, "http")),
                json!({"port": "http"}),
            ),
            (e().msg(5, e()), json!({"port": 0})),
            (e().msg(6, quantity("1Gi")), json!({"quantity": "1Gi"})),
            (e().msg(6, e()), json!({"quantity": "0"})),
            (e().bytes(8, b""), json!({"bytes": ""})),
            (e().int(9, -1), json!({"int32": -1})),
            (e().int(10, i64::MIN), json!({"int64": i64::MIN})),
            // Packed and unpacked items mix.
            (
                e().bytes(11, &[1, 2]).int(11, 3),
                json!({"ints": [1, 2, 3]}),
            ),
            // A missing key or value is the zero value; the last entry wins.
            (
                e().msg(12, e())
                    .entry(12, "a", "1")
                    .entry(12, "a", "2")
                    .msg(12, e().str(1, "b")),
                json!({"labels": {"": "", "a": "2", "b": ""}}),
            ),
            // The last scalar wins, and a zero omitempty one drops the field.
            (e().str(13, "a").str(13, "b"), json!({"name": "b"})),
            (e().str(13, "a").str(13, ""), json!({})),
            (e().bytes(13, &[b'a', 0xff]), json!({"name": "a\u{fffd}"})),
        ];
        for (enc, want) in cases {
            let mut got = Map::new();
            message(&enc.0, SPECIAL, &mut got, 0).unwrap_or_else(|err| panic!("{want}: {err}"));
            assert_eq!(Value::Object(got), want);
        }
    }

    #[test]
    fn formats_durations_as_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-2_000_000_000, "-2s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want);
        }
    }

    #[test]
    fn skips_unknown_fields_and_merges_repeats() {
        let unknown = e()
            .int(99, 1)
            .tag(98, 1)
            .raw(&[0; 8])
            .tag(97, 5)
            .raw(&[0; 4])
            .str(96, "junk")
            .tag(95, 3)
            .int(1, 7)
            .tag(94, 3)
            .tag(94, 4)
            .tag(95, 4);
        let obj = e()
            .msg(1, meta("c", "").raw(&unknown.0))
            .raw(&unknown.0)
            .msg(1, e().str(3, "default").entry(11, "a", "1"))
            .entry(2, "k", "v")
            .msg(1, e().entry(11, "b", "2"));
        let mut body = body("v1", "ConfigMap", obj);
        body.extend(e().int(9, 1).0);
        let want = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "labels": {"a": "1", "b": "2"}},
            "data": {"k": "v"},
        });
        assert_eq!(decode(&body).unwrap(), want);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let magic = |bytes: &[u8]| [MAGIC, bytes].concat();
        let deep = [[0x0b; 40], [0x0c; 40]].concat();
        let envelope = |field: u32, value: &str| {
            [
                MAGIC,
                &e().msg(1, e().str(1, "v1").str(2, "ConfigMap"))
                    .str(field, value)
                    .0,
            ]
            .concat()
        };
        let cases = [
            (vec![], "magic"),
            (br#"{"kind":"ConfigMap"}"#.to_vec(), "magic"),
            (magic(&[0x08, 0x80]), "truncated"),
            (
                magic(&[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ]),
                "longer than 10 bytes",
            ),
            (magic(&[0x12, 0x05, 1, 2]), "truncated"),
            (
                magic(&[
                    0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ]),
                "truncated",
            ),
            (magic(&[0x00, 0x00]), "invalid field tag"),
            (magic(&[0x0e]), "invalid field tag"),
            (magic(&[0x0c]), "invalid field tag"),
            (magic(&[0x0b]), "truncated"),
            (magic(&[0x0b, 0x14]), "invalid field tag"),
            (magic(&deep), "nests deeper than 32 levels"),
            (magic(&[0x08, 0x01]), "typeMeta with the wrong wire type 0"),
            (body("v1", "Pod2", e()), r#"kind "Pod2" of "v1""#),
            (body("apps/v1", "ConfigMap", e()), "cannot decode"),
            (
                body("v1", "ConfigMap", e().int(1, 5)),
                "metadata with the wrong wire type 0",
            ),
            (
                body("v1", "ConfigMap", e().msg(2, e().int(1, 5))),
                "data with the wrong wire type 0",
            ),
            (
                body(
                    "apps/v1",
                    "Deployment",
                    e().msg(2, e().msg(3, e().msg(2, e().msg(34, e())))),
                ),
                "sets ephemeralContainers",
            ),
            (
                body(
                    "v1",
                    "Service",
                    e().msg(2, e().msg(1, e().msg(4, e().int(1, 2)))),
                ),
                "invalid targetPort",
            ),
            (
                body(
                    "batch/v1",
                    "Job",
                    e().msg(3, e().msg(2, e().int(1, i64::MAX))),
                ),
                "invalid startTime",
            ),
            (envelope(3, "gzip"), r#"content encoding "gzip""#),
            (
                envelope(4, "application/json"),
                r#"content type "application/json""#,
            ),
        ];
        for (body, want) in cases {
            let err = decode(&body).expect_err(want).to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn survives_truncation_and_corruption() {
        let good = body("apps/v1", "Deployment", deployment());
        for len in 0..good.len() {
            let _ = decode(&good[..len]);
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..5000 {
            let mut bad = good.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % bad.len() as u64) as usize;
                bad[at] = (seed >> 32) as u8;
            }
            let _ = decode(&bad);
        }
    }
}
