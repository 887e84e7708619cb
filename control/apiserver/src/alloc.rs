//! Service cluster IPs and node ports, allocated atomically in the store: an
//! allocation is a key that only one `create` can win.

use crate::status::{ApiError, Cause};
use serde_json::Value;
use std::net::Ipv4Addr;
use store::{DynStore, StoreError};

/// The service network: 10.43.0.0/16, as k3s. .1 is the `kubernetes` Service.
pub const SERVICE_NET: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 0);
pub const KUBERNETES_SERVICE_IP: &str = "10.43.0.1";
const SERVICE_HOSTS: u32 = 1 << 16;
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn ip_key(ip: &str) -> String {
    format!("_allocations/serviceips/{ip}")
}

fn port_key(port: u16) -> String {
    format!("_allocations/nodeports/{port}")
}

/// Claims `key` for `owner`; false when someone holds it.
async fn claim(store: &DynStore, key: &str, owner: &str) -> Result<bool, ApiError> {
    match store.create(key.as_bytes(), owner.as_bytes(), None).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::from_store(e, "services", "", owner)),
    }
}

/// Releases an allocation; a missing one is fine.
async fn release(store: &DynStore, key: &str) {
    match store.delete(key.as_bytes(), None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => tracing::warn!(key, error = %e, "cannot release an allocation"),
    }
}

/// A pseudo-random start so allocations spread without a shared cursor.
fn random_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Fills in `spec.clusterIP(s)` and node ports of a new Service, claiming
/// each; on error, what was claimed is released.
pub async fn allocate(store: &DynStore, svc: &mut Value, owner: &str) -> Result<(), ApiError> {
    let mut claimed: Vec<String> = Vec::new();
    let result = allocate_inner(store, svc, owner, &mut claimed).await;
    if result.is_err() {
        for key in &claimed {
            release(store, key).await;
        }
    }
    result
}

async fn allocate_inner(
    store: &DynStore,
    svc: &mut Value,
    owner: &str,
    claimed: &mut Vec<String>,
) -> Result<(), ApiError> {
    let name = owner.rsplit('/').next().unwrap_or(owner).to_string();
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        let requested = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ip = if requested == "None" {
            None
        } else if requested.is_empty() {
            let start = random_u32();
            let mut found = None;
            for i in 0..SERVICE_HOSTS {
                let host = (start.wrapping_add(i)) % SERVICE_HOSTS;
                if host < 16 || host == SERVICE_HOSTS - 1 {
                    continue; // network, .1 (kubernetes), .10 (DNS) and a few more are reserved
                }
                let ip = Ipv4Addr::from(u32::from(SERVICE_NET) + host).to_string();
                if claim(store, &ip_key(&ip), owner).await? {
                    found = Some(ip);
                    break;
                }
            }
            Some(found.ok_or_else(|| ApiError::internal("the service IP range is full"))?)
        } else {
            let ok = requested
                .parse::<Ipv4Addr>()
                .is_ok_and(|ip| u32::from(ip) & 0xffff_0000 == u32::from(SERVICE_NET));
            if !ok {
                return Err(ApiError::invalid(
                    "Service",
                    "",
                    &name,
                    vec![Cause::invalid(
                        "spec.clusterIPs",
                        &Value::String(requested.clone()),
                        "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16",
                    )],
                ));
            }
            if !claim(store, &ip_key(&requested), owner).await? {
                return Err(ApiError::invalid(
                    "Service",
                    "",
                    &name,
                    vec![Cause::invalid(
                        "spec.clusterIPs",
                        &Value::String(requested.clone()),
                        "provided IP is already allocated",
                    )],
                ));
            }
            Some(requested)
        };
        if let Some(ip) = &ip {
            claimed.push(ip_key(ip));
        }
        let ip = ip.unwrap_or_else(|| "None".into());
        svc["spec"]["clusterIP"] = Value::String(ip.clone());
        svc["spec"]["clusterIPs"] = serde_json::json!([ip]);
        svc["spec"]["ipFamilies"] = serde_json::json!(["IPv4"]);
        svc["spec"]["ipFamilyPolicy"] = serde_json::json!("SingleStack");
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        let count = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..count {
            let requested = svc["spec"]["ports"][i]
                .get("nodePort")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u16;
            let port = if requested != 0 {
                if !claim(store, &port_key(requested), owner).await? {
                    return Err(ApiError::invalid(
                        "Service",
                        "",
                        &name,
                        vec![Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &Value::from(requested),
                            "provided port is already allocated",
                        )],
                    ));
                }
                requested
            } else {
                let span = (NODE_PORTS.end() - NODE_PORTS.start()) as u32 + 1;
                let start = random_u32();
                let mut found = None;
                for j in 0..span {
                    let port = NODE_PORTS.start() + ((start.wrapping_add(j)) % span) as u16;
                    if claim(store, &port_key(port), owner).await? {
                        found = Some(port);
                        break;
                    }
                }
                found.ok_or_else(|| ApiError::internal("the node port range is full"))?
            };
            claimed.push(port_key(port));
            svc["spec"]["ports"][i]["nodePort"] = Value::from(port);
        }
    }
    Ok(())
}

/// Releases everything a deleted Service held.
pub async fn release_service(store: &DynStore, svc: &Value) {
    if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str)
        && ip != "None"
        && !ip.is_empty()
    {
        release(store, &ip_key(ip)).await;
    }
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
            release(store, &port_key(np as u16)).await;
        }
    }
}
