//! Image pulls: the pull policy Kubernetes defaults, and registry
//! credentials from a pod's `imagePullSecrets` (`kubernetes.io/dockerconfigjson`
//! and `kubernetes.io/dockercfg` Secrets) matched to the image's registry.

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Secret};
use serde_json::Value;

/// The pull policy of a container: its own, else `Always` for `:latest` or
/// untagged images and `IfNotPresent` for the rest.
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_owned();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

/// The registry host of an image reference (`docker.io` when it names
/// none).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalise(first)
        }
        _ => "docker.io".into(),
    }
}

/// A registry key of a Docker config (`https://index.docker.io/v1/`,
/// `registry:5000`, `http://host/path`) as a host.
fn normalise(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// Credentials for `image` from a pull Secret, if it has some for the
/// image's registry.
pub fn auth_from_secret(secret: &Secret, image: &str) -> Option<cri::AuthConfig> {
    let data = secret.data.as_ref()?;
    let registry = registry_of(image);
    let auths = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<Value>(&json.0)
            .ok()?
            .get("auths")?
            .clone()
    } else if let Some(json) = data.get(".dockercfg") {
        serde_json::from_slice::<Value>(&json.0).ok()?
    } else {
        return None;
    };
    let (key, entry) = auths
        .as_object()?
        .iter()
        .find(|(k, _)| normalise(k) == registry)?;
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Some(cri::AuthConfig {
        username: field("username"),
        password: field("password"),
        auth: field("auth"),
        server_address: key.clone(),
        identity_token: field("identitytoken"),
        registry_token: field("registrytoken"),
    })
}

/// A stable hash of what, changed in a running pod, restarts a container
/// (its image), written on the container as an annotation.
pub fn container_hash(c: &Container) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in c.image.as_deref().unwrap_or_default().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn default_pull_policies() {
        assert_eq!(pull_policy(&container("hello", None)), "Always");
        assert_eq!(pull_policy(&container("hello:latest", None)), "Always");
        assert_eq!(pull_policy(&container("hello:v1", None)), "IfNotPresent");
        assert_eq!(
            pull_policy(&container("localhost:5000/hello", None)),
            "Always"
        );
        assert_eq!(
            pull_policy(&container("localhost:5000/hello:v2", None)),
            "IfNotPresent"
        );
        assert_eq!(
            pull_policy(&container("r/hello@sha256:abc", None)),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&container("hello:v1", Some("Never"))), "Never");
    }

    #[test]
    fn credentials_match_the_registry() {
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "localhost:5000": {"username": "alice", "password": "pw"},
        }});
        let secret = Secret {
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".into(),
                ByteString(serde_json::to_vec(&config).unwrap()),
            )])),
            ..Default::default()
        };
        let a = auth_from_secret(&secret, "localhost:5000/app:v1").unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("alice", "pw"));
        let d = auth_from_secret(&secret, "library/nginx:1").unwrap();
        assert_eq!(d.auth, "dTpw");
        assert!(auth_from_secret(&secret, "ghcr.io/x/y:1").is_none());
        let legacy = Secret {
            data: Some(BTreeMap::from([(
                ".dockercfg".into(),
                ByteString(br#"{"ghcr.io": {"username": "bob", "password": "x"}}"#.to_vec()),
            )])),
            ..Default::default()
        };
        assert_eq!(
            auth_from_secret(&legacy, "ghcr.io/x/y:1").unwrap().username,
            "bob"
        );
        assert_eq!(registry_of("ghcr.io/x/y"), "ghcr.io");
        assert_eq!(registry_of("nginx"), "docker.io");
        assert_ne!(
            container_hash(&container("a:1", None)),
            container_hash(&container("a:2", None))
        );
    }
}
