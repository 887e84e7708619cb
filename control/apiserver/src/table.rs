//! `kubectl get` Tables (`meta.k8s.io/v1` `Table`): the columns and cells of the
//! Kubernetes printers (kubernetes `pkg/printers/internalversion/printers.go`).
//!
//! Rows always carry the wide (`priority: 1`) cells too, as the apiserver generates them;
//! kubectl hides those columns unless `-o wide`. Kinds without a printer get the
//! apiserver's default columns (`Name`, `Created At`) or, for other kinds, `Name`, `Age`.
//! Fields the real apiserver always defaults (a Service's type, a port's protocol, a
//! Secret's type, replicas) read as their defaults when missing.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::selector::LabelSelector;

/// The `columnDefinitions` of `kind`'s Table.
pub fn column_definitions(kind: &str) -> Vec<Value> {
    columns(kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// One row: `cells` in column order and `object`, the object's `PartialObjectMetadata`.
pub fn row(kind: &str, obj: &Value, now: Timestamp) -> Value {
    let mut row = json!({
        "cells": cells(kind, obj, now),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        },
    });
    if kind == "Pod" {
        let (reason, message) = match str_at(obj, "status.phase") {
            "Succeeded" => ("Succeeded", "The pod has completed successfully."),
            "Failed" => ("Failed", "The pod failed."),
            _ => return row,
        };
        row["conditions"] =
            json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]);
    }
    row
}

/// A whole Table of `objects` (all of `kind`), for a list or a single object.
pub fn table(
    kind: &str,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    remaining: Option<i64>,
    now: Timestamp,
) -> Value {
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), resource_version.into());
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        metadata.insert("continue".into(), token.into());
    }
    if let Some(n) = remaining {
        metadata.insert("remainingItemCount".into(), n.into());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(kind),
        "rows": objects.iter().map(|o| row(kind, o, now)).collect::<Vec<_>>(),
    })
}

/// The age of an RFC 3339 timestamp at `now` as kubectl prints it; `<unknown>` if unset.
pub fn human_age(created: &str, now: Timestamp) -> String {
    match created.parse::<Timestamp>() {
        Ok(t) => human_duration(now.duration_since(t)),
        Err(_) => "<unknown>".to_string(),
    }
}

/// apimachinery's `duration.HumanDuration`: two or three significant figures.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", secs % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_rest(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_rest(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

fn with_rest(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

// ---------------------------------------------------------------------------
// Columns

#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: i32,
    description: &'static str,
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        priority: 0,
        description,
    }
}

const fn s(name: &'static str, description: &'static str) -> Column {
    col(name, "string", description)
}

const fn int(name: &'static str, description: &'static str) -> Column {
    col(name, "integer", description)
}

/// A column kubectl shows only with `-o wide`.
const fn wide(name: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..s(name, description)
    }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

const NAME: Column = Column {
    format: "name",
    ..s("Name", NAME_DOC)
};
const AGE: Column = s("Age", CREATED_DOC);
const CONTAINERS: Column = wide("Containers", "Names of each container in the template.");
const IMAGES: Column = wide(
    "Images",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide(
    "Selector",
    "The label selector of the pods this object manages.",
);

fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => POD,
        "PodTemplate" => POD_TEMPLATE,
        "ReplicaSet" | "ReplicationController" => REPLICA_SET,
        "Deployment" => DEPLOYMENT,
        "StatefulSet" => STATEFUL_SET,
        "DaemonSet" => DAEMON_SET,
        "Job" => JOB,
        "CronJob" => CRON_JOB,
        "Service" => SERVICE,
        "Endpoints" => ENDPOINTS,
        "EndpointSlice" => ENDPOINT_SLICE,
        "Node" => NODE,
        "Event" => EVENT,
        "Namespace" => NAMESPACE,
        "Secret" => SECRET,
        "ConfigMap" => CONFIG_MAP,
        "HorizontalPodAutoscaler" => HPA,
        "NetworkPolicy" => NETWORK_POLICY,
        "RoleBinding" | "ClusterRoleBinding" => ROLE_BINDING,
        "Lease" => LEASE,
        "ResourceQuota" => RESOURCE_QUOTA,
        "PodDisruptionBudget" => PDB,
        "PriorityClass" => PRIORITY_CLASS,
        "RuntimeClass" => RUNTIME_CLASS,
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => WEBHOOKS,
        "ControllerRevision" => CONTROLLER_REVISION,
        "LimitRange" | "Role" | "ClusterRole" | "CustomResourceDefinition" => DEFAULT,
        _ => &[NAME, AGE],
    }
}

const POD: &[Column] = &[
    NAME,
    s(
        "Ready",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    s(
        "Status",
        "The aggregate status of the containers in this pod.",
    ),
    s(
        "Restarts",
        "How often the pod's containers restarted, and when last.",
    ),
    AGE,
    wide("IP", "The pod's first IP address."),
    wide("Node", "The node the pod is scheduled onto."),
    wide(
        "Nominated Node",
        "The node nominated for the pod while it preempts others.",
    ),
    wide(
        "Readiness Gates",
        "How many of the pod's readiness gates are true.",
    ),
];
const POD_TEMPLATE: &[Column] = &[
    NAME,
    s("Containers", "Names of each container in the template."),
    s(
        "Images",
        "Images referenced by each container in the template.",
    ),
    s("Pod Labels", "The labels for the pod template."),
];
const REPLICA_SET: &[Column] = &[
    NAME,
    int("Desired", "The number of desired replicas."),
    int("Current", "The number of replicas most recently observed."),
    int("Ready", "The number of ready replicas."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const DEPLOYMENT: &[Column] = &[
    NAME,
    s("Ready", "Number of the pod with ready state"),
    s("Up-to-date", "Pods that have the desired template."),
    s("Available", "Pods ready for at least minReadySeconds."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const STATEFUL_SET: &[Column] = &[
    NAME,
    s("Ready", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];
const DAEMON_SET: &[Column] = &[
    NAME,
    int(
        "Desired",
        "The number of nodes that should run the daemon pod.",
    ),
    int("Current", "The number of nodes running the daemon pod."),
    int("Ready", "The number of nodes with the daemon pod ready."),
    int(
        "Up-to-date",
        "The number of nodes running the updated daemon pod.",
    ),
    int(
        "Available",
        "The number of nodes with the daemon pod available.",
    ),
    s("Node Selector", "The node selector of the daemon pods."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const JOB: &[Column] = &[
    NAME,
    s("Status", "Status of the job."),
    s(
        "Completions",
        "The number of pods which reached phase Succeeded.",
    ),
    s("Duration", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const CRON_JOB: &[Column] = &[
    NAME,
    s("Schedule", "The schedule in Cron format."),
    s("Timezone", "The time zone name for the given schedule."),
    col(
        "Suspend",
        "boolean",
        "Whether subsequent executions are suspended.",
    ),
    int("Active", "The number of currently running jobs."),
    s(
        "Last Schedule",
        "When the job was last successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const SERVICE: &[Column] = &[
    NAME,
    s("Type", "How the Service is exposed."),
    s("Cluster-IP", "The IP address of the service."),
    s(
        "External-IP",
        "Addresses outside the cluster that reach the service.",
    ),
    s("Port(s)", "The ports exposed by this service."),
    AGE,
    wide(
        "Selector",
        "The labels of the pods that receive the service's traffic.",
    ),
];
const ENDPOINTS: &[Column] = &[
    NAME,
    s(
        "Endpoints",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];
const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    s(
        "AddressType",
        "The type of address carried by this EndpointSlice.",
    ),
    s(
        "Ports",
        "The network ports exposed by each endpoint in this slice.",
    ),
    s("Endpoints", "A list of unique endpoints in this slice."),
    AGE,
];
const NODE: &[Column] = &[
    NAME,
    s("Status", "The status of the node"),
    s("Roles", "The roles of the node"),
    AGE,
    s("Version", "Kubelet Version reported by the node."),
    wide("Internal-IP", "List of addresses reachable to the node."),
    wide("External-IP", "List of addresses reachable to the node."),
    wide(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release.",
    ),
    wide(
        "Kernel-Version",
        "Kernel Version reported by the node from 'uname -r'.",
    ),
    wide(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node.",
    ),
];
/// `kubectl get events`: the name comes last and only with `-o wide`.
const EVENT: &[Column] = &[
    s("Last Seen", "When this event was most recently seen."),
    s("Type", "Type of this event (Normal, Warning)."),
    s(
        "Reason",
        "Why the object is in its current state, machine readable.",
    ),
    s("Object", "The object that this event is about."),
    wide("Subobject", "The field of the object this event is about."),
    wide("Source", "The component reporting this event."),
    s(
        "Message",
        "A human-readable description of the status of this operation.",
    ),
    wide("First Seen", "When this event was first seen."),
    wide("Count", "The number of times this event has occurred."),
    Column {
        format: "name",
        ..wide("Name", NAME_DOC)
    },
];
const NAMESPACE: &[Column] = &[NAME, s("Status", "The status of the namespace"), AGE];
const SECRET: &[Column] = &[
    NAME,
    s(
        "Type",
        "Used to facilitate programmatic handling of secret data.",
    ),
    s("Data", "The number of data entries."),
    AGE,
];
const CONFIG_MAP: &[Column] = &[NAME, s("Data", "The number of data entries."), AGE];
const HPA: &[Column] = &[
    NAME,
    s("Reference", "The target resource to scale."),
    s(
        "Targets",
        "The metrics used to calculate the desired replica count.",
    ),
    s("MinPods", "The lower limit for the number of replicas."),
    s("MaxPods", "The upper limit for the number of replicas."),
    s("Replicas", "The current number of replicas."),
    AGE,
];
const NETWORK_POLICY: &[Column] = &[
    NAME,
    s(
        "Pod-Selector",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];
const ROLE_BINDING: &[Column] = &[
    NAME,
    s("Role", "The role bound."),
    AGE,
    wide("Users", "Users in the binding"),
    wide("Groups", "Groups in the binding"),
    wide("ServiceAccounts", "ServiceAccounts in the binding"),
];
const LEASE: &[Column] = &[
    NAME,
    s("Holder", "The identity of the lease's holder."),
    AGE,
];
const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    s("Request", "Used and hard request quotas."),
    s("Limit", "Used and hard limit quotas."),
    AGE,
];
const PDB: &[Column] = &[
    NAME,
    s(
        "Min Available",
        "The minimum number of pods that must be available.",
    ),
    s(
        "Max Unavailable",
        "The maximum number of pods that may be unavailable.",
    ),
    int("Allowed Disruptions", "How many pods may be disrupted now."),
    AGE,
];
const PRIORITY_CLASS: &[Column] = &[
    NAME,
    int("Value", "The priority of pods with this class."),
    col(
        "Global-Default",
        "boolean",
        "Whether this is the default priority class.",
    ),
    AGE,
    s(
        "PreemptionPolicy",
        "The policy for preempting pods with lower priority.",
    ),
];
const RUNTIME_CLASS: &[Column] = &[NAME, s("Handler", "The runtime and configuration."), AGE];
const WEBHOOKS: &[Column] = &[
    NAME,
    int(
        "Webhooks",
        "The number of webhooks registered in this configuration",
    ),
    AGE,
];
const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    s("Controller", "Controller of the object"),
    s("Revision", "The revision of the state represented by Data."),
    AGE,
];
/// The apiserver's default table convertor, for kinds without a printer.
const DEFAULT: &[Column] = &[NAME, col("Created At", "date", CREATED_DOC)];

// ---------------------------------------------------------------------------
// Cells

fn cells(kind: &str, o: &Value, now: Timestamp) -> Vec<Value> {
    let name = Value::from(str_at(o, "metadata.name"));
    let age = Value::from(age(o, now));
    match kind {
        "Pod" => pod(o, now),
        "PodTemplate" => {
            let (names, images) = containers(o, "template.spec.containers");
            vec![
                name,
                names,
                images,
                format_labels(get(o, "template.metadata.labels")).into(),
            ]
        }
        "ReplicaSet" | "ReplicationController" => {
            let (names, images) = containers(o, "spec.template.spec.containers");
            let selector = if kind == "ReplicaSet" {
                format_label_selector(get(o, "spec.selector"))
            } else {
                format_labels(get(o, "spec.selector"))
            };
            vec![
                name,
                replicas(o).into(),
                int_at(o, "status.replicas").into(),
                int_at(o, "status.readyReplicas").into(),
                age,
                names,
                images,
                selector.into(),
            ]
        }
        "Deployment" => {
            let (names, images) = containers(o, "spec.template.spec.containers");
            let selector = match get(o, "spec.selector") {
                None | Some(Value::Null) => String::new(),
                Some(sel) => structured_selector(sel).unwrap_or_else(|| "<invalid>".into()),
            };
            vec![
                name,
                format!("{}/{}", int_at(o, "status.readyReplicas"), replicas(o)).into(),
                int_at(o, "status.updatedReplicas").into(),
                int_at(o, "status.availableReplicas").into(),
                age,
                names,
                images,
                selector.into(),
            ]
        }
        "StatefulSet" => {
            let (names, images) = containers(o, "spec.template.spec.containers");
            let ready = format!("{}/{}", int_at(o, "status.readyReplicas"), replicas(o));
            vec![name, ready.into(), age, names, images]
        }
        "DaemonSet" => {
            let (names, images) = containers(o, "spec.template.spec.containers");
            let mut row = vec![name];
            for field in [
                "desiredNumberScheduled",
                "currentNumberScheduled",
                "numberReady",
                "updatedNumberScheduled",
                "numberAvailable",
            ] {
                row.push(int_at(o, &format!("status.{field}")).into());
            }
            let node_selector = format_labels(get(o, "spec.template.spec.nodeSelector"));
            let selector = format_label_selector(get(o, "spec.selector"));
            row.extend([node_selector.into(), age, names, images, selector.into()]);
            row
        }
        "Job" => job(o, now),
        "CronJob" => {
            let (names, images) = containers(o, "spec.jobTemplate.spec.template.spec.containers");
            let last = match str_at(o, "status.lastScheduleTime") {
                "" => "<none>".to_string(),
                t => human_age(t, now),
            };
            let suspend = match get(o, "spec.suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            vec![
                name,
                str_at(o, "spec.schedule").into(),
                or(str_at(o, "spec.timeZone"), "<none>").into(),
                suspend.into(),
                arr_at(o, "status.active").len().into(),
                last.into(),
                age,
                names,
                images,
                format_label_selector(get(o, "spec.jobTemplate.spec.selector")).into(),
            ]
        }
        "Service" => service(o, now),
        "Endpoints" => vec![name, endpoints(o).into(), age],
        "EndpointSlice" => {
            let ports = arr_at(o, "ports").iter().map(|p| match get(p, "port") {
                Some(n @ Value::Number(_)) => n.to_string(),
                _ => or(str_at(p, "name"), "*").to_string(),
            });
            let addresses = arr_at(o, "endpoints")
                .iter()
                .flat_map(|e| arr_at(e, "addresses"))
                .map(|a| a.as_str().unwrap_or_default().to_string());
            vec![
                name,
                str_at(o, "addressType").into(),
                list_with_more(ports).into(),
                list_with_more(addresses).into(),
                age,
            ]
        }
        "Node" => node(o, now),
        "Event" => event(o, now),
        "Namespace" => vec![name, or(str_at(o, "status.phase"), "Active").into(), age],
        "Secret" => vec![
            name,
            or(str_at(o, "type"), "Opaque").into(),
            map_len(o, "data").into(),
            age,
        ],
        "ConfigMap" => vec![
            name,
            (map_len(o, "data") + map_len(o, "binaryData")).into(),
            age,
        ],
        "ServiceAccount" => vec![name, age],
        "HorizontalPodAutoscaler" => {
            let reference = format!(
                "{}/{}",
                str_at(o, "spec.scaleTargetRef.kind"),
                str_at(o, "spec.scaleTargetRef.name")
            );
            let min = match get(o, "spec.minReplicas") {
                Some(n @ Value::Number(_)) => n.to_string(),
                _ => "<unset>".to_string(),
            };
            vec![
                name,
                reference.into(),
                hpa_metrics(o).into(),
                min.into(),
                int_at(o, "spec.maxReplicas").into(),
                int_at(o, "status.currentReplicas").into(),
                age,
            ]
        }
        "NetworkPolicy" => vec![
            name,
            format_label_selector(Some(get(o, "spec.podSelector").unwrap_or(&json!({})))).into(),
            age,
        ],
        "RoleBinding" | "ClusterRoleBinding" => {
            let role = format!(
                "{}/{}",
                str_at(o, "roleRef.kind"),
                str_at(o, "roleRef.name")
            );
            let (mut users, mut groups, mut sas) = (vec![], vec![], vec![]);
            for subject in arr_at(o, "subjects") {
                let n = str_at(subject, "name").to_string();
                match str_at(subject, "kind") {
                    "User" => users.push(n),
                    "Group" => groups.push(n),
                    "ServiceAccount" => sas.push(format!("{}:{n}", str_at(subject, "namespace"))),
                    _ => {}
                }
            }
            vec![
                name,
                role.into(),
                age,
                users.join(", ").into(),
                groups.join(", ").into(),
                sas.join(", ").into(),
            ]
        }
        "Lease" => vec![name, str_at(o, "spec.holderIdentity").into(), age],
        "ResourceQuota" => {
            let hard = get(o, "status.hard").and_then(Value::as_object);
            let mut resources: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
            resources.sort();
            let (mut requests, mut limits) = (vec![], vec![]);
            for r in resources {
                let used = get(o, "status.used")
                    .and_then(|u| u.get(r))
                    .map_or("0".into(), quantity);
                let hard = hard.and_then(|h| h.get(r)).map_or("0".into(), quantity);
                let entry = format!("{r}: {used}/{hard}");
                let mut pieces = r.split('.');
                if pieces.next() == Some("limits") && pieces.next().is_some() {
                    limits.push(entry);
                } else {
                    requests.push(entry);
                }
            }
            vec![
                name,
                requests.join(", ").into(),
                limits.join(", ").into(),
                age,
            ]
        }
        "PodDisruptionBudget" => {
            let int_or_string = |path| match get(o, path) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".to_string(),
            };
            vec![
                name,
                int_or_string("spec.minAvailable").into(),
                int_or_string("spec.maxUnavailable").into(),
                int_at(o, "status.disruptionsAllowed").into(),
                age,
            ]
        }
        "PriorityClass" => vec![
            name,
            int_at(o, "value").into(),
            get(o, "globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            age,
            str_at(o, "preemptionPolicy").into(),
        ],
        "RuntimeClass" => vec![name, str_at(o, "handler").into(), age],
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            vec![name, arr_at(o, "webhooks").len().into(), age]
        }
        "ControllerRevision" => {
            let controller = arr_at(o, "metadata.ownerReferences")
                .iter()
                .find(|r| get(r, "controller").and_then(Value::as_bool) == Some(true))
                .map_or("<none>".to_string(), |r| {
                    let group = str_at(r, "apiVersion")
                        .rsplit_once('/')
                        .map_or("", |(g, _)| g);
                    let kind = str_at(r, "kind");
                    let group_kind = if group.is_empty() {
                        kind.to_string()
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{}/{}", group_kind.to_lowercase(), str_at(r, "name"))
                });
            vec![name, controller.into(), int_at(o, "revision").into(), age]
        }
        "LimitRange" | "Role" | "ClusterRole" | "CustomResourceDefinition" => {
            let created = match timestamp(o, "metadata.creationTimestamp") {
                Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                None => "0001-01-01T00:00:00Z".to_string(),
            };
            vec![name, created.into()]
        }
        _ => vec![name, age],
    }
}

/// `printPod`: the Status column follows the printer's precedence of pod reason, init
/// containers, container states, and deletion.
fn pod(o: &Value, now: Timestamp) -> Vec<Value> {
    let init_specs = arr_at(o, "spec.initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| str_at(c, "name") == name && str_at(c, "restartPolicy") == "Always")
    };
    let total = arr_at(o, "spec.containers").len()
        + init_specs
            .iter()
            .filter(|c| str_at(c, "restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = or(str_at(o, "status.phase"), "Pending");
    let mut reason = or(str_at(o, "status.reason"), phase).to_string();
    let conditions = arr_at(o, "status.conditions");
    if conditions
        .iter()
        .any(|c| str_at(c, "type") == "PodScheduled" && str_at(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, cs) in arr_at(o, "status.initContainerStatuses").iter().enumerate() {
        let count = int_at(cs, "restartCount");
        let finished = timestamp(cs, "lastState.terminated.finishedAt");
        restarts += count;
        latest(&mut last_restart, finished);
        let is_sidecar = restartable(str_at(cs, "name"));
        if is_sidecar {
            sidecar_restarts += count;
            latest(&mut last_sidecar_restart, finished);
        }
        let terminated = get(cs, "state.terminated").filter(|t| t.is_object());
        let waiting_reason = str_at(cs, "state.waiting.reason");
        if terminated.is_some_and(|t| int_at(t, "exitCode") == 0) {
            continue;
        }
        if is_sidecar && get(cs, "started").and_then(Value::as_bool) == Some(true) {
            if is_true(cs, "ready") {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match str_at(t, "reason") {
                "" if int_at(t, "signal") != 0 => format!("Init:Signal:{}", int_at(t, "signal")),
                "" => format!("Init:ExitCode:{}", int_at(t, "exitCode")),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| str_at(c, "type") == "Initialized")
        .is_some_and(|c| str_at(c, "status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr_at(o, "status.containerStatuses").iter().rev() {
            restarts += int_at(cs, "restartCount");
            latest(
                &mut last_restart,
                timestamp(cs, "lastState.terminated.finishedAt"),
            );
            let terminated = get(cs, "state.terminated").filter(|t| t.is_object());
            let waiting_reason = str_at(cs, "state.waiting.reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, "reason") {
                    "" if int_at(t, "signal") != 0 => format!("Signal:{}", int_at(t, "signal")),
                    "" => format!("ExitCode:{}", int_at(t, "exitCode")),
                    r => r.to_string(),
                };
            } else if is_true(cs, "ready") && get(cs, "state.running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| str_at(c, "type") == "Ready" && str_at(c, "status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    let deleting = !str_at(o, "metadata.deletionTimestamp").is_empty();
    if deleting && str_at(o, "status.reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration(now.duration_since(t)))
        }
        _ => restarts.to_string(),
    };

    let pod_ip = arr_at(o, "status.podIPs")
        .first()
        .map(|ip| str_at(ip, "ip"))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| str_at(o, "status.podIP"));
    let gates = arr_at(o, "spec.readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| str_at(c, "type") == str_at(g, "conditionType"))
                    .is_some_and(|c| str_at(c, "status") == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        str_at(o, "metadata.name").into(),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts.into(),
        age(o, now).into(),
        or(pod_ip, "<none>").into(),
        or(str_at(o, "spec.nodeName"), "<none>").into(),
        or(str_at(o, "status.nominatedNodeName"), "<none>").into(),
        readiness_gates.into(),
    ]
}

fn job(o: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(o, "status.succeeded");
    let completions = match get(o, "spec.completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(o, "spec.parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(o, "status.startTime"),
        timestamp(o, "status.completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = arr_at(o, "status.conditions");
    let has = |ty: &str| {
        conditions
            .iter()
            .find(|c| str_at(c, "type") == ty)
            .is_some_and(|c| str_at(c, "status") == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if !str_at(o, "metadata.deletionTimestamp").is_empty() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers(o, "spec.template.spec.containers");
    vec![
        str_at(o, "metadata.name").into(),
        status.into(),
        completions.into(),
        duration.into(),
        age(o, now).into(),
        names,
        images,
        format_label_selector(get(o, "spec.selector")).into(),
    ]
}

fn service(o: &Value, now: Timestamp) -> Vec<Value> {
    let ty = or(str_at(o, "spec.type"), "ClusterIP");
    let cluster_ip = arr_at(o, "spec.clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or(Some(str_at(o, "spec.clusterIP")))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let external_ips: Vec<&str> = arr_at(o, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let lb: BTreeSet<&str> = arr_at(o, "status.loadBalancer.ingress")
                .iter()
                .map(|i| or(str_at(i, "ip"), str_at(i, "hostname")))
                .filter(|a| !a.is_empty())
                .collect();
            let all: Vec<&str> = lb.into_iter().chain(external_ips).collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(o, "spec.externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr_at(o, "spec.ports")
        .iter()
        .map(|p| {
            let protocol = or(str_at(p, "protocol"), "TCP");
            match int_at(p, "nodePort") {
                n if n > 0 => format!("{}:{n}/{protocol}", int_at(p, "port")),
                _ => format!("{}/{protocol}", int_at(p, "port")),
            }
        })
        .collect();
    vec![
        str_at(o, "metadata.name").into(),
        ty.into(),
        cluster_ip.into(),
        external.into(),
        or(&ports.join(","), "<none>").into(),
        age(o, now).into(),
        format_labels(get(o, "spec.selector")).into(),
    ]
}

fn node(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut status = match arr_at(o, "status.conditions")
        .iter()
        .find(|c| str_at(c, "type") == "Ready")
    {
        Some(c) if str_at(c, "status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if is_true(o, "spec.unschedulable") {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (k, v) in get(o, "metadata.labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k
            .strip_prefix("node-role.kubernetes.io/")
            .filter(|r| !r.is_empty())
        {
            roles.insert(role.to_string());
        } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
            roles.insert(v.as_str().unwrap_or_default().to_string());
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");
    let address = |ty: &str| {
        arr_at(o, "status.addresses")
            .iter()
            .find(|a| str_at(a, "type") == ty)
            .map_or("<none>", |a| str_at(a, "address"))
    };
    let info =
        |field: &str| or(str_at(o, &format!("status.nodeInfo.{field}")), "<unknown>").to_string();
    vec![
        str_at(o, "metadata.name").into(),
        status.into(),
        or(&roles, "<none>").into(),
        age(o, now).into(),
        str_at(o, "status.nodeInfo.kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// `printEvent` for core/v1 Events, reading events.k8s.io/v1 field names as fallbacks.
fn event(o: &Value, now: Timestamp) -> Vec<Value> {
    let pick = |paths: &[&str]| {
        paths
            .iter()
            .map(|p| str_at(o, p))
            .find(|v| !v.is_empty())
            .unwrap_or("")
    };
    let first = match pick(&["firstTimestamp", "deprecatedFirstTimestamp"]) {
        "" => human_age(str_at(o, "eventTime"), now),
        t => human_age(t, now),
    };
    let mut last = match pick(&["lastTimestamp", "deprecatedLastTimestamp"]) {
        "" => first.clone(),
        t => human_age(t, now),
    };
    let mut count = ["count", "deprecatedCount"]
        .iter()
        .map(|p| int_at(o, p))
        .find(|c| *c != 0)
        .unwrap_or(0);
    if get(o, "series").is_some_and(Value::is_object) {
        last = human_age(str_at(o, "series.lastObservedTime"), now);
        count = int_at(o, "series.count");
    } else if count == 0 {
        count = 1;
    }
    let involved = get(o, "involvedObject")
        .or_else(|| get(o, "regarding"))
        .unwrap_or(&Value::Null);
    let kind = str_at(involved, "kind").to_lowercase();
    let target = match str_at(involved, "name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = pick(&[
        "source.component",
        "deprecatedSource.component",
        "reportingComponent",
        "reportingController",
    ]);
    let host = pick(&["source.host", "deprecatedSource.host", "reportingInstance"]);
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        last.into(),
        str_at(o, "type").into(),
        str_at(o, "reason").into(),
        target.into(),
        str_at(involved, "fieldPath").into(),
        source.into(),
        pick(&["message", "note"]).trim().into(),
        first.into(),
        count.into(),
        str_at(o, "metadata.name").into(),
    ]
}

/// `formatEndpoints`: up to three `ip:port`, then `+ N more...`.
fn endpoints(o: &Value) -> String {
    let subsets = arr_at(o, "subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let (mut list, mut more, mut count) = (Vec::new(), false, 0);
    for ss in subsets {
        let addresses = arr_at(ss, "addresses");
        let ports = arr_at(ss, "ports");
        let hosts: Vec<String> = if ports.is_empty() {
            addresses
                .iter()
                .map(|a| str_at(a, "ip").to_string())
                .collect()
        } else {
            ports
                .iter()
                .flat_map(|p| {
                    addresses.iter().map(move |a| {
                        let ip = str_at(a, "ip");
                        let port = int_at(p, "port");
                        if ip.contains(':') {
                            format!("[{ip}]:{port}")
                        } else {
                            format!("{ip}:{port}")
                        }
                    })
                })
                .collect()
        };
        count += hosts.len();
        for h in hosts {
            if list.len() == MAX {
                more = true;
                break;
            }
            list.push(h);
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// `listWithMoreString`: up to three, then `+ N more...`; `<unset>` when empty.
fn list_with_more(items: impl Iterator<Item = String>) -> String {
    const MAX: usize = 3;
    let items: Vec<String> = items.collect();
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else if shown.is_empty() {
        "<unset>".to_string()
    } else {
        shown
    }
}

/// `formatHPAMetrics` for autoscaling/v2 metrics, or v1's CPU utilization target.
fn hpa_metrics(o: &Value) -> String {
    let specs = arr_at(o, "spec.metrics");
    if specs.is_empty() {
        return match get(o, "spec.targetCPUUtilizationPercentage").and_then(Value::as_i64) {
            Some(target) => {
                let current = get(o, "status.currentCPUUtilizationPercentage")
                    .and_then(Value::as_i64)
                    .map_or("<unknown>".to_string(), |c| format!("{c}%"));
                format!("cpu: {current}/{target}%")
            }
            None => "<none>".to_string(),
        };
    }
    let statuses = arr_at(o, "status.currentMetrics");
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i);
            let current = |source: &str, field: &str| {
                status
                    .and_then(|s| get(s, &format!("{source}.current.{field}")))
                    .map_or("<unknown>".to_string(), quantity)
            };
            let target = |source: &str, field: &str| {
                get(spec, &format!("{source}.target.{field}")).map(quantity)
            };
            match str_at(spec, "type") {
                ty @ ("External" | "Object") => {
                    let source = if ty == "External" {
                        "external"
                    } else {
                        "object"
                    };
                    match target(source, "averageValue") {
                        Some(t) => format!("{}/{t} (avg)", current(source, "averageValue")),
                        None => format!(
                            "{}/{}",
                            current(source, "value"),
                            target(source, "value").unwrap_or_default()
                        ),
                    }
                }
                "Pods" => format!(
                    "{}/{}",
                    current("pods", "averageValue"),
                    target("pods", "averageValue").unwrap_or_default()
                ),
                ty @ ("Resource" | "ContainerResource") => {
                    let source = if ty == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let name = str_at(spec, &format!("{source}.name"));
                    match target(source, "averageValue") {
                        Some(t) => format!("{name}: {}/{t}", current(source, "averageValue")),
                        None => {
                            let percent =
                                |v: String| if v == "<unknown>" { v } else { format!("{v}%") };
                            let target = target(source, "averageUtilization")
                                .map_or("<auto>".to_string(), |t| format!("{t}%"));
                            format!(
                                "{name}: {}/{target}",
                                percent(current(source, "averageUtilization"))
                            )
                        }
                    }
                }
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    const MAX: usize = 2;
    let shown = list[..list.len().min(MAX)].join(", ");
    if list.len() > MAX {
        format!("{shown} + {} more...", list.len() - MAX)
    } else {
        shown
    }
}

// ---------------------------------------------------------------------------
// Helpers over JSON objects

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or_default()
}

fn int_at(v: &Value, path: &str) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn arr_at<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn map_len(v: &Value, path: &str) -> usize {
    get(v, path).and_then(Value::as_object).map_or(0, Map::len)
}

fn is_true(v: &Value, path: &str) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn timestamp(v: &Value, path: &str) -> Option<Timestamp> {
    str_at(v, path).parse().ok()
}

fn latest(slot: &mut Option<Timestamp>, t: Option<Timestamp>) {
    if let Some(t) = t
        && slot.is_none_or(|s| s < t)
    {
        *slot = Some(t);
    }
}

/// `value` unless it is empty.
fn or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

/// A quantity or number as its text.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `.spec.replicas`, which the apiserver defaults to 1.
fn replicas(o: &Value) -> i64 {
    get(o, "spec.replicas").and_then(Value::as_i64).unwrap_or(1)
}

fn age(o: &Value, now: Timestamp) -> String {
    human_age(str_at(o, "metadata.creationTimestamp"), now)
}

/// `layoutContainerCells`: names and images, comma-joined.
fn containers(o: &Value, path: &str) -> (Value, Value) {
    let list = arr_at(o, path);
    let join = |field| {
        list.iter()
            .map(|c| str_at(c, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    (join("name").into(), join("image").into())
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// `metav1.FormatLabelSelector`: the selector's text, `<none>` if empty or missing,
/// `<error>` if invalid.
fn format_label_selector(sel: Option<&Value>) -> String {
    let text = match sel {
        None | Some(Value::Null) => Some(String::new()),
        Some(sel) => structured_selector(sel),
    };
    match text {
        None => "<error>".to_string(),
        Some(t) if t.is_empty() => "<none>".to_string(),
        Some(t) => t,
    }
}

fn structured_selector(sel: &Value) -> Option<String> {
    let sel = serde_json::from_value(sel.clone()).ok()?;
    LabelSelector::from_label_selector(&sel)
        .ok()
        .map(|s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2024-05-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// `secs` seconds before [`NOW`], as RFC 3339.
    fn ago(secs: i64) -> String {
        (now() - SignedDuration::from_secs(secs)).to_string()
    }

    #[test]
    fn human_age_follows_human_duration() {
        const M: i64 = 60;
        const H: i64 = 3600;
        const D: i64 = 24 * H;
        const Y: i64 = 365 * D;
        let cases = [
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (2 * M, "2m"),
            (2 * M + 5, "2m5s"),
            (9 * M + 59, "9m59s"),
            (10 * M, "10m"),
            (10 * M + 30, "10m"),
            (3 * H - 1, "179m"),
            (3 * H, "3h"),
            (3 * H + 20 * M, "3h20m"),
            (8 * H - 1, "7h59m"),
            (8 * H, "8h"),
            (48 * H - 1, "47h"),
            (2 * D, "2d"),
            (3 * D + 4 * H, "3d4h"),
            (8 * D - 1, "7d23h"),
            (8 * D, "8d"),
            (45 * D, "45d"),
            (2 * Y - 1, "729d"),
            (2 * Y, "2y"),
            (2 * Y + 30 * D, "2y30d"),
            (8 * Y - 1, "7y364d"),
            (8 * Y, "8y"),
            (20 * Y + 100 * D, "20y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_age(&ago(secs), now()), want, "{secs}s");
        }
        assert_eq!(human_age("", now()), "<unknown>");
        assert_eq!(human_age("yesterday", now()), "<unknown>");
        assert_eq!(human_age("2024-05-01T11:59:30.123456Z", now()), "29s");
    }

    fn cells_of(kind: &str, obj: Value) -> Vec<Value> {
        let r = row(kind, &obj, now());
        assert_eq!(r["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(r["object"]["metadata"], obj["metadata"]);
        let cells = r["cells"].as_array().unwrap().clone();
        assert_eq!(
            cells.len(),
            columns(kind).len(),
            "{kind}: one cell per column"
        );
        cells
    }

    /// Cells as kubectl would print them, `|`-separated.
    fn render(cells: &[Value]) -> String {
        let text = |c: &Value| c.as_str().map_or_else(|| c.to_string(), str::to_string);
        cells.iter().map(text).collect::<Vec<_>>().join(" | ")
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": ago(300)})
    }

    fn running(restarts: i64) -> Value {
        json!({"name": "app", "ready": true, "restartCount": restarts, "state": {"running": {}}})
    }

    #[test]
    fn pod_rows_follow_print_pod() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "pending, unscheduled",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}]},
                       "status": {"phase": "Pending"}}),
                "p | 0/1 | Pending | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "creating",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}], "nodeName": "n1"},
                       "status": {"phase": "Pending", "containerStatuses": [
                           {"name": "app", "ready": false, "restartCount": 0,
                            "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
                "p | 0/1 | ContainerCreating | 0 | 5m | <none> | n1 | <none> | <none>",
            ),
            (
                "running, restarted",
                json!({"metadata": meta("p"),
                       "spec": {"containers": [{"name": "app"}, {"name": "side"}], "nodeName": "n1",
                                "readinessGates": [{"conditionType": "x/ready"}]},
                       "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                                  "conditions": [{"type": "Ready", "status": "True"},
                                                 {"type": "x/ready", "status": "True"}],
                                  "containerStatuses": [
                           running(0),
                           {"name": "side", "ready": true, "restartCount": 3, "state": {"running": {}},
                            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                         "finishedAt": ago(125)}}}]}}),
                "p | 2/2 | Running | 3 (2m5s ago) | 5m | 10.0.0.5 | n1 | <none> | 1/1",
            ),
            (
                "crash looping",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}]},
                       "status": {"phase": "Running", "containerStatuses": [
                           {"name": "app", "ready": false, "restartCount": 4,
                            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}]}}),
                "p | 0/1 | CrashLoopBackOff | 4 (30s ago) | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "terminating",
                json!({"metadata": {"name": "p", "creationTimestamp": ago(300), "deletionTimestamp": ago(-30)},
                       "spec": {"containers": [{"name": "app"}]},
                       "status": {"phase": "Running", "containerStatuses": [running(0)]}}),
                "p | 1/1 | Terminating | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "node lost while deleting",
                json!({"metadata": {"name": "p", "creationTimestamp": ago(300), "deletionTimestamp": ago(0)},
                       "spec": {"containers": [{"name": "app"}]},
                       "status": {"phase": "Running", "reason": "NodeLost"}}),
                "p | 0/1 | Unknown | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "second init container running",
                json!({"metadata": meta("p"),
                       "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "app"}]},
                       "status": {"phase": "Pending", "initContainerStatuses": [
                           {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                           {"name": "i2", "restartCount": 0, "state": {"running": {}}}],
                                  "containerStatuses": [{"name": "app", "restartCount": 0,
                                                         "state": {"waiting": {"reason": "PodInitializing"}}}]}}),
                "p | 0/1 | Init:1/2 | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "init container crash looping",
                json!({"metadata": meta("p"),
                       "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]},
                       "status": {"phase": "Pending", "initContainerStatuses": [
                           {"name": "i1", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}}]}}),
                "p | 0/1 | Init:CrashLoopBackOff | 2 (10s ago) | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "init container failed",
                json!({"metadata": meta("p"),
                       "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]},
                       "status": {"phase": "Pending", "initContainerStatuses": [
                           {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}}),
                "p | 0/1 | Init:ExitCode:3 | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "sidecar started",
                json!({"metadata": meta("p"),
                       "spec": {"initContainers": [{"name": "log", "restartPolicy": "Always"}],
                                "containers": [{"name": "app"}]},
                       "status": {"phase": "Running",
                                  "conditions": [{"type": "Initialized", "status": "True"}],
                                  "initContainerStatuses": [{"name": "log", "restartCount": 1, "started": true,
                                                             "ready": true, "state": {"running": {}}}],
                                  "containerStatuses": [running(0)]}}),
                "p | 2/2 | Running | 1 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "completed",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}]},
                       "status": {"phase": "Succeeded", "containerStatuses": [
                           {"name": "app", "ready": false, "restartCount": 0,
                            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "p | 0/1 | Completed | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "killed by a signal",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}]},
                       "status": {"phase": "Failed", "containerStatuses": [
                           {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}}),
                "p | 0/1 | Signal:9 | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "one of two completed, other running, not ready",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                       "status": {"phase": "Running", "containerStatuses": [
                           {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                           {"name": "b", "ready": false, "restartCount": 0,
                            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "p | 1/2 | NotReady | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
            (
                "scheduling gated",
                json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}]},
                       "status": {"phase": "Pending",
                                  "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
                "p | 0/1 | SchedulingGated | 0 | 5m | <none> | <none> | <none> | <none>",
            ),
        ];
        for (case, pod, want) in cases {
            assert_eq!(render(&cells_of("Pod", pod)), want, "{case}");
        }
    }

    #[test]
    fn finished_pods_carry_completed_conditions() {
        let pod = json!({"metadata": meta("p"), "status": {"phase": "Succeeded"}});
        assert_eq!(
            row("Pod", &pod, now())["conditions"][0]["reason"],
            "Succeeded"
        );
        let pod = json!({"metadata": meta("p"), "status": {"phase": "Running"}});
        assert!(row("Pod", &pod, now()).get("conditions").is_none());
    }

    #[test]
    fn workload_and_cluster_rows() {
        let selector = json!({"matchLabels": {"app": "web"}});
        let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"},
                                                      {"name": "log", "image": "busybox"}]}});
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "Deployment",
                json!({"metadata": meta("web"),
                       "spec": {"replicas": 3, "selector": selector, "template": template},
                       "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
                "web | 2/3 | 3 | 2 | 5m | web,log | nginx:1,busybox | app=web",
            ),
            (
                "ReplicaSet",
                json!({"metadata": meta("web-1"), "spec": {"replicas": 2, "selector": selector, "template": template},
                       "status": {"replicas": 2, "readyReplicas": 1}}),
                "web-1 | 2 | 2 | 1 | 5m | web,log | nginx:1,busybox | app=web",
            ),
            (
                "Job",
                json!({"metadata": meta("j"), "spec": {"completions": 1, "template": template},
                       "status": {"succeeded": 1, "startTime": ago(290), "completionTime": ago(250),
                                  "conditions": [{"type": "Complete", "status": "True"}]}}),
                "j | Complete | 1/1 | 40s | 5m | web,log | nginx:1,busybox | <none>",
            ),
            (
                "Job",
                json!({"metadata": meta("j"), "spec": {"parallelism": 2, "template": template},
                       "status": {"startTime": ago(200)}}),
                "j | Running | 0/1 of 2 | 3m20s | 5m | web,log | nginx:1,busybox | <none>",
            ),
            (
                "Service",
                json!({"metadata": meta("svc"),
                       "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                                          {"port": 53, "protocol": "UDP"}],
                                "selector": {"tier": "web", "app": "x"}}}),
                "svc | NodePort | 10.96.0.10 | <none> | 80:30080/TCP,53/UDP | 5m | app=x,tier=web",
            ),
            (
                "Service",
                json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"],
                                                        "ports": [{"port": 443}]}}),
                "lb | LoadBalancer | 10.96.0.11 | <pending> | 443/TCP | 5m | <none>",
            ),
            (
                "Service",
                json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "example.com"}}),
                "ext | ExternalName | <none> | example.com | <none> | 5m | <none>",
            ),
            (
                "Node",
                json!({"metadata": {"name": "n1", "creationTimestamp": ago(3 * 86400),
                                    "labels": {"node-role.kubernetes.io/control-plane": "",
                                               "node-role.kubernetes.io/worker": ""}},
                       "spec": {"unschedulable": true},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                  "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                                  "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Linux",
                                               "kernelVersion": "6.1", "containerRuntimeVersion": "shoal://0.1"}}}),
                "n1 | Ready,SchedulingDisabled | control-plane,worker | 3d | v1.33.0 | 192.168.1.2 | <none> | Linux | 6.1 | shoal://0.1",
            ),
            (
                "Node",
                json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                "n2 | NotReady | <none> | <unknown> |  | <none> | <none> | <unknown> | <unknown> | <unknown>",
            ),
            (
                "Namespace",
                json!({"metadata": {"name": "ns", "creationTimestamp": ago(60)}, "status": {"phase": "Terminating"}}),
                "ns | Terminating | 60s",
            ),
            (
                "Secret",
                json!({"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
                "s | kubernetes.io/tls | 2 | 5m",
            ),
            (
                "ConfigMap",
                json!({"metadata": meta("c"), "data": {"a": "1"}, "binaryData": {"b": ""}}),
                "c | 2 | 5m",
            ),
            (
                "ServiceAccount",
                json!({"metadata": meta("default")}),
                "default | 5m",
            ),
            (
                "Endpoints",
                json!({"metadata": meta("svc"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"},
                                                                            {"ip": "10.0.0.3"}, {"ip": "fd00::4"}],
                                                             "ports": [{"port": 80}]}]}),
                "svc | 10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more... | 5m",
            ),
            (
                "Endpoints",
                json!({"metadata": meta("svc")}),
                "svc | <none> | 5m",
            ),
            (
                "EndpointSlice",
                json!({"metadata": meta("svc-abc"), "addressType": "IPv4",
                       "ports": [{"port": 80}, {"name": "dns"}, {}],
                       "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}),
                "svc-abc | IPv4 | 80,dns,* | 10.0.0.1,10.0.0.2 | 5m",
            ),
            (
                "Event",
                json!({"metadata": meta("p.1"), "type": "Warning", "reason": "BackOff",
                       "message": " Back-off restarting \n", "count": 5,
                       "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{app}"},
                       "source": {"component": "kubelet", "host": "n1"},
                       "firstTimestamp": ago(600), "lastTimestamp": ago(30)}),
                "30s | Warning | BackOff | pod/p | spec.containers{app} | kubelet, n1 | Back-off restarting | 10m | 5 | p.1",
            ),
            (
                "Event",
                json!({"metadata": meta("n.1"), "type": "Normal", "reason": "Starting",
                       "involvedObject": {"kind": "Node"}, "reportingComponent": "shoal",
                       "eventTime": "2024-05-01T11:58:00.000000Z"}),
                "2m | Normal | Starting | node |  | shoal |  | 2m | 1 | n.1",
            ),
            (
                "HorizontalPodAutoscaler",
                json!({"metadata": meta("h"),
                       "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                              "target": {"type": "Utilization", "averageUtilization": 80}}}]},
                       "status": {"currentReplicas": 2, "currentMetrics": [
                           {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35}}}]}}),
                "h | Deployment/web | cpu: 35%/80% | 1 | 5 | 2 | 5m",
            ),
            (
                "RoleBinding",
                json!({"metadata": meta("rb"), "roleRef": {"kind": "ClusterRole", "name": "view"},
                       "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                                    {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
                                    {"kind": "User", "name": "bob"}]}),
                "rb | ClusterRole/view | 5m | alice, bob | devs | build:ci",
            ),
            (
                "ResourceQuota",
                json!({"metadata": meta("q"), "status": {
                    "hard": {"requests.cpu": "2", "limits.memory": "4Gi", "pods": "10"},
                    "used": {"requests.cpu": "500m", "pods": "3"}}}),
                "q | pods: 3/10, requests.cpu: 500m/2 | limits.memory: 0/4Gi | 5m",
            ),
            (
                "NetworkPolicy",
                json!({"metadata": meta("np"), "spec": {"podSelector": {}}}),
                "np | <none> | 5m",
            ),
            (
                "Lease",
                json!({"metadata": meta("l"), "spec": {"holderIdentity": "n1"}}),
                "l | n1 | 5m",
            ),
            (
                "RuntimeClass",
                json!({"metadata": meta("wasm"), "handler": "shoal"}),
                "wasm | shoal | 5m",
            ),
            (
                "Role",
                json!({"metadata": {"name": "r", "creationTimestamp": "2024-04-30T10:00:00Z"}}),
                "r | 2024-04-30T10:00:00Z",
            ),
            ("Widget", json!({"metadata": meta("w")}), "w | 5m"),
        ];
        for (kind, obj, want) in cases {
            assert_eq!(render(&cells_of(kind, obj)), want, "{kind}");
        }
    }

    #[test]
    fn counts_are_integer_cells() {
        let cases = [
            (
                "Deployment",
                json!({"status": {"updatedReplicas": 3}}),
                2,
                3,
            ),
            ("ReplicaSet", json!({"spec": {"replicas": 2}}), 1, 2),
            ("Secret", json!({"data": {"a": ""}}), 2, 1),
            ("ConfigMap", json!({"data": {"a": ""}}), 1, 1),
        ];
        for (kind, obj, index, want) in cases {
            assert_eq!(cells(kind, &obj, now())[index], json!(want), "{kind}");
        }
    }

    #[test]
    fn column_layouts() {
        let names = |kind| -> Vec<String> {
            column_definitions(kind)
                .iter()
                .filter(|c| c["priority"] == 0)
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        let cases: &[(&str, &[&str])] = &[
            ("Pod", &["Name", "Ready", "Status", "Restarts", "Age"]),
            (
                "Deployment",
                &["Name", "Ready", "Up-to-date", "Available", "Age"],
            ),
            ("Node", &["Name", "Status", "Roles", "Age", "Version"]),
            (
                "Service",
                &[
                    "Name",
                    "Type",
                    "Cluster-IP",
                    "External-IP",
                    "Port(s)",
                    "Age",
                ],
            ),
            (
                "Event",
                &["Last Seen", "Type", "Reason", "Object", "Message"],
            ),
            ("Job", &["Name", "Status", "Completions", "Duration", "Age"]),
            ("ResourceQuota", &["Name", "Request", "Limit", "Age"]),
            ("LimitRange", &["Name", "Created At"]),
            ("ServiceAccount", &["Name", "Age"]),
            ("Widget", &["Name", "Age"]),
        ];
        for (kind, want) in cases {
            assert_eq!(names(*kind), *want, "{kind}");
        }
        for kind in ["Pod", "Node", "Deployment", "ConfigMap", "Widget", "Role"] {
            let first = &column_definitions(kind)[0];
            assert_eq!(
                (first["name"].as_str(), first["format"].as_str()),
                (Some("Name"), Some("name"))
            );
        }
        let event = column_definitions("Event");
        let named: Vec<_> = event.iter().filter(|c| c["format"] == "name").collect();
        assert_eq!(named.len(), 1);
        assert_eq!(
            (named[0]["name"].as_str(), named[0]["priority"].as_i64()),
            (Some("Name"), Some(1))
        );
        for c in column_definitions("Pod") {
            for key in ["name", "type", "format", "description", "priority"] {
                assert!(c.get(key).is_some(), "{key} in {c}");
            }
        }
    }

    #[test]
    fn tables_carry_list_metadata() {
        let pods = [
            json!({"metadata": meta("a")}),
            json!({"metadata": meta("b")}),
        ];
        let t = table("Pod", &pods, "42", Some("next"), Some(7), now());
        assert_eq!(
            (t["kind"].as_str(), t["apiVersion"].as_str()),
            (Some("Table"), Some("meta.k8s.io/v1"))
        );
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "42", "continue": "next", "remainingItemCount": 7})
        );
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
        assert_eq!(t["rows"][1]["cells"][0], "b");
        assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1");
        let t = table("Pod", &[], "42", Some(""), None, now());
        assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(t["rows"], json!([]));
    }
}
