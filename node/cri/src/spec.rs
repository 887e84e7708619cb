//! [`Spec`]: what a container's guest gets, worked out once at
//! CreateContainer from the CRI configs and kept with the container: argv,
//! environment, preopened mounts, limits, network grants and the HTTP port.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig, Protocol};
use serde::{Deserialize, Serialize};
use wasi_shim::{Access, NetGrant, Sandbox, SandboxBuilder};

use crate::error::CriError;

/// Pod or container annotation granting outgoing connections until the
/// network issue brings pod networking: a comma-separated list of `IP:PORT`
/// (one address) and `IP` (every port of it) entries, for example
/// `"10.0.0.5:5432,192.168.1.1"`. Pod and container grants add up.
pub const EGRESS_ANNOTATION: &str = "network.shoal.dev/egress";

/// Container (or pod) annotation naming the port an HTTP function is served
/// on (on the pod IP). Without it: the first TCP port mapping of the pod
/// sandbox, else [`DEFAULT_HTTP_PORT`].
pub const HTTP_PORT_ANNOTATION: &str = "shoal.dev/http-port";

/// The port of an HTTP function when nothing names one.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// A directory the guest sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MountSpec {
    pub host: PathBuf,
    pub guest: String,
    pub readonly: bool,
}

/// A network grant, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Egress {
    Addr(SocketAddr),
    Ip(IpAddr),
}

/// Everything the guest is given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    pub memory_limit: Option<u64>,
    pub cpu_limit: Option<f64>,
    pub egress: Vec<Egress>,
    pub http_port: u16,
}

impl Spec {
    /// Works out the spec. `image_name` is argv\[0\] when the container has
    /// no command; `files_dir` is the container's own directory where
    /// single-file mounts are linked (WASI preopens directories only).
    pub fn new(
        cfg: &ContainerConfig,
        pod: &PodSandboxConfig,
        image_name: &str,
        files_dir: &Path,
    ) -> Result<Self, CriError> {
        let mut argv: Vec<String> = Vec::new();
        if cfg.command.is_empty() {
            argv.push(image_name.to_owned());
        } else {
            argv.extend(cfg.command.iter().cloned());
        }
        argv.extend(cfg.args.iter().cloned());

        let env = cfg
            .envs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();

        let (memory_limit, cpu_limit) = match cfg.linux.as_ref().and_then(|l| l.resources.as_ref())
        {
            Some(r) => (
                u64::try_from(r.memory_limit_in_bytes)
                    .ok()
                    .filter(|&m| m > 0),
                (r.cpu_quota > 0 && r.cpu_period > 0)
                    .then(|| r.cpu_quota as f64 / r.cpu_period as f64),
            ),
            None => (None, None),
        };

        let mut egress = parse_egress(&pod.annotations)?;
        egress.extend(parse_egress(&cfg.annotations)?);

        let http_port = match annotation(&cfg.annotations, &pod.annotations, HTTP_PORT_ANNOTATION) {
            Some(p) => p.trim().parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                CriError::InvalidArgument(format!(
                    "annotation {HTTP_PORT_ANNOTATION}={p:?} is not a port: give a number in 1..=65535"
                ))
            })?,
            None => pod
                .port_mappings
                .iter()
                .find(|m| m.protocol == Protocol::Tcp as i32 && m.container_port > 0)
                .and_then(|m| u16::try_from(m.container_port).ok())
                .unwrap_or(DEFAULT_HTTP_PORT),
        };

        Ok(Spec {
            argv,
            env,
            mounts: mounts(cfg, files_dir)?,
            memory_limit,
            cpu_limit,
            egress,
            http_port,
        })
    }

    /// A sandbox builder granting the spec: argv, environment, mounts,
    /// limits, egress grants, and listening on the pod IP (`None`: the host
    /// network, every address).
    pub fn sandbox(&self, pod_ip: Option<IpAddr>) -> SandboxBuilder {
        let mut b = Sandbox::builder().args(self.argv.iter().cloned());
        for (k, v) in &self.env {
            b = b.env(k.clone(), v.clone());
        }
        for m in &self.mounts {
            let access = if m.readonly {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            };
            b = b.preopen(m.host.clone(), m.guest.clone(), access);
        }
        if let Some(m) = self.memory_limit {
            b = b.memory_limit(m);
        }
        if let Some(c) = self.cpu_limit {
            b = b.cpu_limit(c);
        }
        for g in &self.egress {
            b = b.allow_network(match *g {
                Egress::Addr(a) => NetGrant::Addr(a),
                Egress::Ip(ip) => NetGrant::Ip(ip),
            });
        }
        let ip = pod_ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        b.allow_network(NetGrant::Listen(SocketAddr::new(ip, 0)))
    }
}

/// The container's annotation, else the pod's.
fn annotation<'a>(
    container: &'a std::collections::HashMap<String, String>,
    pod: &'a std::collections::HashMap<String, String>,
    key: &str,
) -> Option<&'a String> {
    container.get(key).or_else(|| pod.get(key))
}

/// Parses [`EGRESS_ANNOTATION`] if present.
pub(crate) fn parse_egress(
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Vec<Egress>, CriError> {
    let Some(value) = annotations.get(EGRESS_ANNOTATION) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            if let Ok(addr) = entry.parse::<SocketAddr>() {
                Ok(Egress::Addr(addr))
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                Ok(Egress::Ip(ip))
            } else {
                Err(CriError::InvalidArgument(format!(
                    "annotation {EGRESS_ANNOTATION}: {entry:?} is neither IP:PORT nor IP \
                     (for example \"10.0.0.5:5432,192.168.1.1\"; names are not accepted)"
                )))
            }
        })
        .collect()
}

/// The mounts as preopened directories. A directory is preopened as is; a
/// single file (`/etc/hosts`, `/dev/termination-log`) is hard-linked (or,
/// across file systems, copied) into a directory of the container's own
/// under `files_dir`, preopened at the file's parent path.
fn mounts(cfg: &ContainerConfig, files_dir: &Path) -> Result<Vec<MountSpec>, CriError> {
    let mut dirs = Vec::new();
    // Guest parent directory -> (host directory, all read-only so far).
    let mut file_parents: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    for m in &cfg.mounts {
        let guest = normalise_guest(&m.container_path)?;
        if m.host_path.is_empty() {
            return Err(CriError::InvalidArgument(format!(
                "mount at {guest} has no host_path"
            )));
        }
        let host = PathBuf::from(&m.host_path);
        let meta = fs::metadata(&host).map_err(|e| {
            CriError::InvalidArgument(format!(
                "mount {} -> {guest}: the host path cannot be used ({e}); create it before the container",
                host.display()
            ))
        })?;
        if meta.is_dir() {
            dirs.push(MountSpec {
                host,
                guest,
                readonly: m.readonly,
            });
            continue;
        }
        let (parent, name) = guest
            .rsplit_once('/')
            .map(|(p, n)| (if p.is_empty() { "/" } else { p }, n))
            .filter(|(_, n)| !n.is_empty())
            .ok_or_else(|| {
                CriError::InvalidArgument(format!("file mount at {guest} needs a file name"))
            })?;
        let n = file_parents.len();
        let entry = file_parents.entry(parent.to_owned()).or_insert_with(|| {
            (
                files_dir.join(format!("{n}-{}", dir_name_for(parent))),
                true,
            )
        });
        entry.1 &= m.readonly;
        fs::create_dir_all(&entry.0).map_err(CriError::io("create", &entry.0))?;
        let link = entry.0.join(name);
        let _ = fs::remove_file(&link);
        if fs::hard_link(&host, &link).is_err() {
            fs::copy(&host, &link).map_err(CriError::io("copy a file mount to", &link))?;
        }
    }
    dirs.extend(
        file_parents
            .into_iter()
            .map(|(guest, (host, readonly))| MountSpec {
                host,
                guest,
                readonly,
            }),
    );
    Ok(dirs)
}

/// A directory name for the files mounted under the guest directory `parent`.
fn dir_name_for(parent: &str) -> String {
    let safe: String = parent
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "root".into() } else { safe }
}

/// An absolute guest path without `.`/`..` or a trailing slash.
fn normalise_guest(path: &str) -> Result<String, CriError> {
    if !path.starts_with('/') {
        return Err(CriError::InvalidArgument(format!(
            "mount container_path {path:?} must be absolute"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                return Err(CriError::InvalidArgument(format!(
                    "mount container_path {path:?} must not contain '..'"
                )));
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The short name of an image: `localhost:5000/shoal/hello:v1` is `hello`.
pub(crate) fn short_name(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let name = last.split(':').next().unwrap_or(last);
    if name.is_empty() || image.starts_with("sha256:") {
        "main".into()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{
        KeyValue, LinuxContainerConfig, LinuxContainerResources, Mount, PortMapping,
    };

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            args: vec!["a".into()],
            envs: vec![KeyValue {
                key: "K".into(),
                value: "V".into(),
            }],
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn argv_env_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spec::new(&cfg(), &PodSandboxConfig::default(), "hello", dir.path()).unwrap();
        assert_eq!(s.argv, ["hello", "a"]);
        assert_eq!(s.env, [("K".to_owned(), "V".to_owned())]);
        assert_eq!(s.memory_limit, Some(64 << 20));
        assert_eq!(s.cpu_limit, Some(0.5));
        assert_eq!(s.http_port, DEFAULT_HTTP_PORT);

        let mut c = cfg();
        c.command = vec!["batch-pi".into()];
        c.linux = None;
        let s = Spec::new(&c, &PodSandboxConfig::default(), "hello", dir.path()).unwrap();
        assert_eq!(s.argv, ["batch-pi", "a"]);
        assert_eq!((s.memory_limit, s.cpu_limit), (None, None));
    }

    #[test]
    fn http_port_and_egress() {
        let dir = tempfile::tempdir().unwrap();
        let mut pod = PodSandboxConfig {
            port_mappings: vec![
                PortMapping {
                    protocol: Protocol::Udp as i32,
                    container_port: 53,
                    ..Default::default()
                },
                PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: 9000,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        pod.annotations.insert(
            EGRESS_ANNOTATION.into(),
            "10.0.0.5:5432, 192.168.1.1".into(),
        );
        let s = Spec::new(&cfg(), &pod, "x", dir.path()).unwrap();
        assert_eq!(s.http_port, 9000);
        assert_eq!(
            s.egress,
            [
                Egress::Addr("10.0.0.5:5432".parse().unwrap()),
                Egress::Ip("192.168.1.1".parse().unwrap())
            ]
        );
        let mut c = cfg();
        c.annotations
            .insert(HTTP_PORT_ANNOTATION.into(), "7000".into());
        assert_eq!(
            Spec::new(&c, &pod, "x", dir.path()).unwrap().http_port,
            7000
        );

        c.annotations
            .insert(HTTP_PORT_ANNOTATION.into(), "http".into());
        assert!(matches!(
            Spec::new(&c, &pod, "x", dir.path()),
            Err(CriError::InvalidArgument(_))
        ));
        pod.annotations
            .insert(EGRESS_ANNOTATION.into(), "db.local:5432".into());
        let e = Spec::new(&cfg(), &pod, "x", dir.path()).unwrap_err();
        assert!(e.to_string().contains("db.local"), "{e}");
    }

    #[test]
    fn mounts_dirs_files_and_missing() {
        let host = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        fs::create_dir(host.path().join("data")).unwrap();
        fs::write(host.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let mut c = cfg();
        c.mounts = vec![
            Mount {
                host_path: host.path().join("data").display().to_string(),
                container_path: "/data/".into(),
                readonly: true,
                ..Default::default()
            },
            Mount {
                host_path: host.path().join("hosts").display().to_string(),
                container_path: "/etc/hosts".into(),
                readonly: true,
                ..Default::default()
            },
        ];
        let s = Spec::new(&c, &PodSandboxConfig::default(), "x", files.path()).unwrap();
        assert_eq!(s.mounts.len(), 2);
        assert_eq!(s.mounts[0].guest, "/data");
        assert!(s.mounts[0].readonly);
        assert_eq!(s.mounts[1].guest, "/etc");
        assert_eq!(
            fs::read_to_string(s.mounts[1].host.join("hosts")).unwrap(),
            "127.0.0.1 localhost\n"
        );

        c.mounts[0].host_path = host.path().join("missing").display().to_string();
        let e = Spec::new(&c, &PodSandboxConfig::default(), "x", files.path()).unwrap_err();
        assert!(matches!(e, CriError::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("missing"), "{e}");

        c.mounts[0].container_path = "data".into();
        assert!(Spec::new(&c, &PodSandboxConfig::default(), "x", files.path()).is_err());
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("localhost:5000/shoal/hello:v1"), "hello");
        assert_eq!(short_name("ghcr.io/x/batch-pi@sha256:abc"), "batch-pi");
        assert_eq!(short_name("hello"), "hello");
        assert_eq!(short_name("sha256:0123"), "main");
    }
}
