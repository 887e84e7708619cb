//! Pod volumes, on the host under `DATA_DIR/pods/UID/volumes/`
//! (`kubernetes.io~empty-dir/NAME`, `kubernetes.io~configmap/NAME`, ...),
//! and the container mounts over them.
//!
//! ConfigMap, Secret, downward API and projected volumes are written as
//! Kubernetes' atomic writer does ([`write_atomic`]): the files live in a
//! timestamped directory that the `..data` symlink points at, each visible
//! name is a symlink through `..data`, and an update writes a new directory
//! and swaps `..data` with one rename, so a reader sees the old set or the
//! new one, never a mix. They are rewritten whenever their source changes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};

use crate::env::{self, EnvError, Facts, Sources};

/// The mode of a projected file when none is given (0644).
pub const DEFAULT_MODE: u32 = 0o644;

/// Why a pod's volumes cannot be set up (the pod waits in
/// ContainerCreating, with a FailedMount event).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {kind} \"{name}\" not found")]
    NotFound {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : {kind} {name} references non-existent key {key}"
    )]
    MissingKey {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : invalid path {path:?}: {why}")]
    BadPath {
        volume: String,
        path: String,
        why: &'static str,
    },
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : hostPath type check failed: {path} {why}"
    )]
    HostPath {
        volume: String,
        path: String,
        why: String,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\"")]
    Downward {
        volume: String,
        #[source]
        source: EnvError,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : cannot {action} {path}")]
    Io {
        volume: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("volume \"{volume}\": {what} volumes are not supported by shoal")]
    Unsupported { volume: String, what: &'static str },
    #[error("container {container}: volumeMount {mount:?} names no volume of the pod")]
    NoVolume { container: String, mount: String },
    #[error("container {container}: subPath {path:?} {why}")]
    SubPath {
        container: String,
        path: String,
        why: String,
    },
}

/// One projected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of an atomically written volume, by relative path.
pub type Payload = BTreeMap<String, File>;

/// A volume set up on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub path: PathBuf,
    /// Mounted read-only whatever the mount says (ConfigMap, Secret,
    /// downward API and projected volumes).
    pub read_only: bool,
    /// Written by [`write_atomic`] (a subPath resolves through `..data`).
    pub atomic: bool,
    /// A subPath that is missing is created (emptyDir, hostPath).
    pub create_sub_paths: bool,
}

/// The pod's own directory.
pub fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid)
}

/// The ConfigMaps and Secrets the pod's volumes read.
pub fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut configmaps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            configmaps.insert(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.insert(s.secret_name.clone().unwrap_or_default());
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                configmaps.insert(c.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (configmaps, secrets)
}

/// Sets up (or brings up to date) every volume of the pod under
/// `pod_dir/volumes`.
pub fn setup(
    pod_dir: &Path,
    facts: Facts<'_>,
    sources: &Sources,
) -> Result<BTreeMap<String, Mounted>, VolumeError> {
    let mut out = BTreeMap::new();
    for v in facts
        .pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
    {
        let mounted = setup_one(pod_dir, v, facts, sources)?;
        out.insert(v.name.clone(), mounted);
    }
    Ok(out)
}

fn plugin_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

fn io_err(
    volume: &str,
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> VolumeError {
    let volume = volume.to_owned();
    let path = path.to_owned();
    move |source| VolumeError::Io {
        volume,
        action,
        path,
        source,
    }
}

fn setup_one(
    pod_dir: &Path,
    v: &Volume,
    facts: Facts<'_>,
    sources: &Sources,
) -> Result<Mounted, VolumeError> {
    let name = v.name.as_str();
    let atomic = |plugin: &str, payload: Payload| -> Result<Mounted, VolumeError> {
        let dir = plugin_dir(pod_dir, plugin, name);
        write_atomic(&dir, &payload).map_err(io_err(name, "write", &dir))?;
        Ok(Mounted {
            path: dir,
            read_only: true,
            atomic: true,
            create_sub_paths: false,
        })
    };
    if v.empty_dir.is_some() {
        let dir = plugin_dir(pod_dir, "empty-dir", name);
        fs::create_dir_all(&dir).map_err(io_err(name, "create", &dir))?;
        return Ok(Mounted {
            path: dir,
            read_only: false,
            atomic: false,
            create_sub_paths: true,
        });
    }
    if let Some(src) = &v.config_map {
        let cm = sources.configmaps.get(&src.name).cloned().flatten();
        let payload = match cm {
            Some(cm) => configmap_files(
                name,
                &src.name,
                &cm,
                src.items.as_deref(),
                mode_of(src.default_mode),
            )?,
            None if src.optional == Some(true) => Payload::new(),
            None => {
                return Err(VolumeError::NotFound {
                    volume: name.into(),
                    kind: "configmap",
                    name: src.name.clone(),
                });
            }
        };
        return atomic("configmap", payload);
    }
    if let Some(src) = &v.secret {
        let secret_name = src.secret_name.clone().unwrap_or_default();
        let secret = sources.secrets.get(&secret_name).cloned().flatten();
        let payload = match secret {
            Some(s) => secret_files(
                name,
                &secret_name,
                &s,
                src.items.as_deref(),
                mode_of(src.default_mode),
            )?,
            None if src.optional == Some(true) => Payload::new(),
            None => {
                return Err(VolumeError::NotFound {
                    volume: name.into(),
                    kind: "secret",
                    name: secret_name,
                });
            }
        };
        return atomic("secret", payload);
    }
    if let Some(src) = &v.downward_api {
        let payload = downward_files(
            name,
            facts,
            src.items.as_deref().unwrap_or_default(),
            mode_of(src.default_mode),
        )?;
        return atomic("downward-api", payload);
    }
    if let Some(src) = &v.projected {
        let default = mode_of(src.default_mode);
        let mut payload = Payload::new();
        for p in src.sources.iter().flatten() {
            if let Some(c) = &p.config_map {
                match sources.configmaps.get(&c.name).cloned().flatten() {
                    Some(cm) => payload.extend(configmap_files(
                        name,
                        &c.name,
                        &cm,
                        c.items.as_deref(),
                        default,
                    )?),
                    None if c.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::NotFound {
                            volume: name.into(),
                            kind: "configmap",
                            name: c.name.clone(),
                        });
                    }
                }
            }
            if let Some(s) = &p.secret {
                match sources.secrets.get(&s.name).cloned().flatten() {
                    Some(secret) => payload.extend(secret_files(
                        name,
                        &s.name,
                        &secret,
                        s.items.as_deref(),
                        default,
                    )?),
                    None if s.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::NotFound {
                            volume: name.into(),
                            kind: "secret",
                            name: s.name.clone(),
                        });
                    }
                }
            }
            if let Some(d) = &p.downward_api {
                payload.extend(downward_files(
                    name,
                    facts,
                    d.items.as_deref().unwrap_or_default(),
                    default,
                )?);
            }
            if p.service_account_token.is_some()
                || p.cluster_trust_bundle.is_some()
                || p.pod_certificate.is_some()
            {
                tracing::warn!(
                    volume = name,
                    "projected token, trust bundle and certificate sources are not written yet"
                );
            }
        }
        return atomic("projected", payload);
    }
    if let Some(src) = &v.host_path {
        host_path(name, &src.path, src.type_.as_deref().unwrap_or(""))?;
        return Ok(Mounted {
            path: PathBuf::from(&src.path),
            read_only: false,
            atomic: false,
            create_sub_paths: true,
        });
    }
    let what = if v.persistent_volume_claim.is_some() {
        "persistentVolumeClaim"
    } else if v.nfs.is_some() {
        "nfs"
    } else if v.csi.is_some() || v.ephemeral.is_some() {
        "CSI"
    } else if v.image.is_some() {
        "image"
    } else {
        "this kind of"
    };
    Err(VolumeError::Unsupported {
        volume: name.into(),
        what,
    })
}

fn mode_of(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .unwrap_or(DEFAULT_MODE)
        & 0o7777
}

/// A relative path with no `..` element, as Kubernetes validates `path`.
fn check_path(volume: &str, path: &str) -> Result<(), VolumeError> {
    let bad = |why| VolumeError::BadPath {
        volume: volume.into(),
        path: path.into(),
        why,
    };
    if path.is_empty() {
        return Err(bad("must not be empty"));
    }
    if path.starts_with('/') {
        return Err(bad("must be relative"));
    }
    if path.starts_with("..") {
        return Err(bad("must not start with '..'"));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(bad("must not contain '..'"));
    }
    Ok(())
}

/// Files from key/value data: every key as a file, or the `items` asked
/// for (each at its path, with its mode).
fn key_files(
    volume: &str,
    kind: &'static str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                check_path(volume, k)?;
                out.insert(
                    k.clone(),
                    File {
                        data: v.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    return Err(VolumeError::MissingKey {
                        volume: volume.into(),
                        kind,
                        name: name.into(),
                        key: item.key.clone(),
                    });
                };
                check_path(volume, &item.path)?;
                out.insert(
                    item.path.clone(),
                    File {
                        data: v.clone(),
                        mode: item.mode.map_or(default_mode, |m| mode_of(Some(m))),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The files of a ConfigMap (`data` and `binaryData`).
pub fn configmap_files(
    volume: &str,
    name: &str,
    cm: &ConfigMap,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
) -> Result<Payload, VolumeError> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    key_files(volume, "configmap", name, &data, items, default_mode)
}

/// The files of a Secret.
pub fn secret_files(
    volume: &str,
    name: &str,
    secret: &Secret,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
) -> Result<Payload, VolumeError> {
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    key_files(volume, "secret", name, &data, items, default_mode)
}

/// The files of a downward API volume.
pub fn downward_files(
    volume: &str,
    facts: Facts<'_>,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    for item in items {
        check_path(volume, &item.path)?;
        let wrap = |source| VolumeError::Downward {
            volume: volume.into(),
            source,
        };
        let value = if let Some(f) = &item.field_ref {
            env::field_value(facts, &f.field_path).map_err(wrap)?
        } else if let Some(r) = &item.resource_field_ref {
            env::resource_value(facts, r.container_name.as_deref().unwrap_or_default(), r)
                .map_err(wrap)?
        } else {
            String::new()
        };
        out.insert(
            item.path.clone(),
            File {
                data: value.into_bytes(),
                mode: item.mode.map_or(default_mode, |m| mode_of(Some(m))),
            },
        );
    }
    Ok(out)
}

/// Checks (or creates) a hostPath per its type.
fn host_path(volume: &str, path: &str, kind: &str) -> Result<(), VolumeError> {
    let p = Path::new(path);
    let fail = |why: &str| VolumeError::HostPath {
        volume: volume.into(),
        path: path.into(),
        why: why.into(),
    };
    let meta = fs::metadata(p);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                fs::create_dir_all(p).map_err(io_err(volume, "create", p))?;
                fs::set_permissions(p, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(volume, "chmod", p))?;
            } else if !p.is_dir() {
                return Err(fail("is not a directory"));
            }
            Ok(())
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(fail("is not a directory")),
            Err(_) => Err(fail("does not exist")),
        },
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).map_err(io_err(volume, "create", parent))?;
                }
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(io_err(volume, "create", p))?;
            } else if !p.is_file() {
                return Err(fail("is not a file"));
            }
            Ok(())
        }
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(fail("is not a file")),
            Err(_) => Err(fail("does not exist")),
        },
        "Socket" | "CharDevice" | "BlockDevice" => match meta {
            Ok(_) => Ok(()),
            Err(_) => Err(fail("does not exist")),
        },
        other => Err(fail(&format!("has an unknown hostPath type {other:?}"))),
    }
}

/// The CRI mounts of a container over the pod's volumes. `env` expands
/// `subPathExpr`.
pub fn mounts(
    c: &Container,
    volumes: &BTreeMap<String, Mounted>,
    env: &[(String, String)],
) -> Result<Vec<cri::Mount>, VolumeError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(vol) = volumes.get(&m.name) else {
            return Err(VolumeError::NoVolume {
                container: c.name.clone(),
                mount: m.name.clone(),
            });
        };
        let sub = match (&m.sub_path_expr, &m.sub_path) {
            (Some(expr), _) if !expr.is_empty() => {
                env::expand_all(std::slice::from_ref(expr), env).remove(0)
            }
            (_, Some(s)) => s.clone(),
            _ => String::new(),
        };
        let host = if sub.is_empty() {
            vol.path.clone()
        } else {
            sub_path(c, vol, &sub)?
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: vol.read_only || m.read_only == Some(true),
            ..Default::default()
        });
    }
    Ok(out)
}

/// A subPath inside a volume: relative, no `..`, resolved (through the
/// atomic writer's symlinks) to a real path that stays inside the volume.
fn sub_path(c: &Container, vol: &Mounted, sub: &str) -> Result<PathBuf, VolumeError> {
    let fail = |why: &str| VolumeError::SubPath {
        container: c.name.clone(),
        path: sub.into(),
        why: why.into(),
    };
    if sub.starts_with('/')
        || Path::new(sub)
            .components()
            .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(fail("must be a relative path without '..'"));
    }
    let joined = vol.path.join(sub);
    if !joined.exists() {
        if !vol.create_sub_paths {
            return Err(fail("does not exist in the volume"));
        }
        fs::create_dir_all(&joined).map_err(|e| fail(&format!("cannot be created: {e}")))?;
    }
    let real = joined
        .canonicalize()
        .map_err(|e| fail(&format!("cannot be resolved: {e}")))?;
    let root = vol
        .path
        .canonicalize()
        .map_err(|e| fail(&format!("cannot be resolved: {e}")))?;
    if !real.starts_with(&root) {
        return Err(fail("resolves outside its volume"));
    }
    Ok(real)
}

/// Writes `payload` into `dir` the way Kubernetes' atomic writer does;
/// returns whether anything changed. See the module docs.
pub fn write_atomic(dir: &Path, payload: &Payload) -> io::Result<bool> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    let current = fs::read_link(&data_link).ok();
    let wanted_tops: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_owned))
        .collect();
    if let Some(cur) = &current
        && same_files(&dir.join(cur), payload)?
    {
        link_tops(dir, &wanted_tops)?;
        return Ok(false);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let ts = format!("..{nanos}.{}", SEQ.fetch_add(1, Ordering::Relaxed));
    let ts_dir = dir.join(&ts);
    fs::create_dir(&ts_dir)?;
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let target = ts_dir.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, &file.data)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(&ts, &tmp)?;
    fs::rename(&tmp, &data_link)?;
    link_tops(dir, &wanted_tops)?;
    if let Some(old) = current
        && old != Path::new(&ts)
    {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// Makes each top-level name a symlink through `..data`, and removes the
/// names no longer in the payload.
fn link_tops(dir: &Path, tops: &BTreeSet<String>) -> io::Result<()> {
    for top in tops {
        let link = dir.join(top);
        let target = PathBuf::from("..data").join(top);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        let tmp = dir.join(format!("..{top}.tmp"));
        let _ = fs::remove_file(&tmp);
        symlink(&target, &tmp)?;
        fs::rename(&tmp, &link)?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || tops.contains(&name) {
            continue;
        }
        if entry.file_type()?.is_symlink() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Whether `dir` holds exactly the payload's files, contents and modes.
fn same_files(dir: &Path, payload: &Payload) -> io::Result<bool> {
    let mut found = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(false);
    }
    walk(dir, dir, &mut found)?;
    if found.len() != payload.len() {
        return Ok(false);
    }
    for (path, file) in payload {
        let Some((mode, full)) = found.get(path) else {
            return Ok(false);
        };
        if *mode != file.mode || fs::read(full)? != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, PathBuf)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.insert(rel, (meta.permissions().mode() & 0o7777, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Allocatable;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, DownwardAPIVolumeFile, EmptyDirVolumeSource, ObjectFieldSelector,
        PodSpec, SecretVolumeSource, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn cm(pairs: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
            user: None,
        }
    }

    #[test]
    fn projection_with_items_and_modes() {
        let c = cm(&[("a", "1"), ("b", "2")]);
        let all = configmap_files("v", "cfg", &c, None, 0o600).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(all.values().all(|f| f.mode == 0o600));

        let items = [item("b", "dir/bee", Some(0o400)), item("a", "a.txt", None)];
        let some = configmap_files("v", "cfg", &c, Some(&items), DEFAULT_MODE).unwrap();
        assert_eq!(
            some["dir/bee"],
            File {
                data: b"2".to_vec(),
                mode: 0o400
            }
        );
        assert_eq!(some["a.txt"].mode, DEFAULT_MODE);
        assert_eq!(some.len(), 2);

        let e = configmap_files(
            "v",
            "cfg",
            &c,
            Some(&[item("zzz", "z", None)]),
            DEFAULT_MODE,
        )
        .unwrap_err();
        assert!(e.to_string().contains("non-existent key zzz"), "{e}");
        for bad in ["../x", "/abs", "a/../../b", "..hidden"] {
            assert!(
                configmap_files("v", "cfg", &c, Some(&[item("a", bad, None)]), DEFAULT_MODE)
                    .is_err(),
                "{bad}"
            );
        }

        let s = Secret {
            data: Some(BTreeMap::from([(
                "tls.key".into(),
                ByteString(vec![0, 159, 146, 150]),
            )])),
            ..Default::default()
        };
        let files = secret_files("v", "s", &s, None, 0o440).unwrap();
        assert_eq!(files["tls.key"].data, vec![0, 159, 146, 150]);
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn atomic_writes_swap_the_whole_set() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let p1 = configmap_files("v", "c", &cm(&[("a", "1"), ("b", "2")]), None, 0o644).unwrap();
        assert!(write_atomic(&dir, &p1).unwrap());
        assert_eq!(read(&dir, "a"), "1");
        assert!(
            fs::symlink_metadata(dir.join("a"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let first = fs::read_link(dir.join("..data")).unwrap();
        assert!(
            !write_atomic(&dir, &p1).unwrap(),
            "same content: nothing to do"
        );
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), first);

        let p2 = configmap_files("v", "c", &cm(&[("a", "one"), ("c", "3")]), None, 0o644).unwrap();
        assert!(write_atomic(&dir, &p2).unwrap());
        assert_eq!(read(&dir, "a"), "one");
        assert_eq!(read(&dir, "c"), "3");
        assert!(!dir.join("b").exists() && fs::symlink_metadata(dir.join("b")).is_err());
        assert!(!dir.join(&first).exists(), "the old set is removed");

        // A mode change alone is a change.
        let p3: Payload = p2
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    File {
                        mode: 0o600,
                        ..f.clone()
                    },
                )
            })
            .collect();
        assert!(write_atomic(&dir, &p3).unwrap());
        let mode = fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Nested paths appear through their top-level directory.
        let nested = configmap_files(
            "v",
            "c",
            &cm(&[("k", "v")]),
            Some(&[item("k", "d/e/f", None)]),
            0o644,
        )
        .unwrap();
        write_atomic(&dir, &nested).unwrap();
        assert_eq!(read(&dir, "d/e/f"), "v");
        let visible: BTreeSet<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        assert_eq!(visible, BTreeSet::from(["d".to_string()]));
    }

    fn pod_with(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("app".into(), "x".into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn facts(pod: &Pod) -> Facts<'_> {
        Facts {
            pod,
            pod_ip: "",
            host_ip: "",
            allocatable: Allocatable {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
                pods: 10,
            },
        }
    }

    #[test]
    fn setup_and_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = pod_with(vec![
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "maybe".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("absent".into()),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "info".into(),
                downward_api: Some(k8s_openapi::api::core::v1::DownwardAPIVolumeSource {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "labels".into(),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        let sources = Sources {
            configmaps: HashMap::from([("cfg".into(), Some(Arc::new(cm(&[("greeting", "hi")]))))]),
            secrets: HashMap::from([("absent".into(), None)]),
            ..Default::default()
        };
        let vols = setup(tmp.path(), facts(&pod), &sources).unwrap();
        assert!(
            vols["scratch"]
                .path
                .ends_with("volumes/kubernetes.io~empty-dir/scratch")
        );
        assert_eq!(read(&vols["config"].path, "greeting"), "hi");
        assert_eq!(read(&vols["info"].path, "labels"), "app=\"x\"");
        assert!(vols["maybe"].path.is_dir());

        let c = Container {
            name: "c".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "scratch".into(),
                    mount_path: "/data".into(),
                    sub_path_expr: Some("$(WHO)/cache".into()),
                    ..Default::default()
                },
                VolumeMount {
                    name: "config".into(),
                    mount_path: "/etc/greeting".into(),
                    sub_path: Some("greeting".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let env = vec![("WHO".to_owned(), "me".to_owned())];
        let m = mounts(&c, &vols, &env).unwrap();
        assert!(
            m[0].host_path.ends_with("scratch/me/cache"),
            "{}",
            m[0].host_path
        );
        assert!(Path::new(&m[0].host_path).is_dir());
        assert!(!m[0].readonly);
        assert!(m[1].readonly, "configMap volumes are read-only");
        assert_eq!(fs::read_to_string(&m[1].host_path).unwrap(), "hi");
        assert!(
            !fs::symlink_metadata(&m[1].host_path)
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let mut bad = c.clone();
        bad.volume_mounts.as_mut().unwrap()[1].sub_path = Some("../../etc".into());
        assert!(matches!(
            mounts(&bad, &vols, &env),
            Err(VolumeError::SubPath { .. })
        ));
        bad.volume_mounts.as_mut().unwrap()[1].name = "nope".into();
        assert!(matches!(
            mounts(&bad, &vols, &env),
            Err(VolumeError::NoVolume { .. })
        ));

        let missing = pod_with(vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "gone".into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let e = setup(tmp.path(), facts(&missing), &Sources::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MountVolume.SetUp failed for volume \"config\" : configmap \"gone\" not found"
        );
    }
}
