//! What the runtime knows about its pod sandboxes and containers, as records
//! kept in memory and mirrored on disk, so that after a restart of `shoal
//! cri` the old pods are listed as NOTREADY and the containers that were
//! running as EXITED with reason [`RUNTIME_RESTARTED`], instead of vanishing.
//!
//! The mirror is one append-only journal, `DATA_DIR/cri/records.jsonl`: a
//! JSON line per change (a whole pod or container record, or a removal),
//! the last line for an id winning. An append to an open file creates no
//! inode and renames nothing, which is what made a container start slow
//! when every state change was a new file renamed into place.
//!
//! Durability: a change is written before the call that made it returns, so
//! it survives a crash of the process (a restart of the runtime) at once. A
//! background thread fdatasyncs the journal after every burst of changes,
//! so it survives a power loss within `SYNC_LINGER` (5 ms) and one sync (a few
//! milliseconds), without an fsync on the path of any CRI call; after a
//! sync it looks for new changes by itself for `SYNC_LINGER`, so a run of
//! calls does not wake it once per call. A line torn by a crash is cut off
//! when the journal is opened. The journal is compacted (the live records
//! written to a new file, synced, renamed into place) when it is opened and
//! when it has grown to several times its live records.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::CriError;
use crate::spec::Spec;

/// The reason of a container that was running when `shoal cri` stopped
/// without stopping it (a crash, `kill -9`).
pub const RUNTIME_RESTARTED: &str = "RuntimeRestarted";

/// The exit code of a container whose end was not seen (containerd's
/// "unknown exit code").
pub const UNKNOWN_EXIT_CODE: i32 = 255;

/// A pod sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PodRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub runtime_handler: String,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub ready: bool,
    /// The pod IP; `None` for a host-network pod.
    pub ip: Option<Ipv4Addr>,
}

impl PodRecord {
    /// The identity RunPodSandbox is idempotent on:
    /// `name_namespace_uid_attempt`, as containerd names sandboxes.
    pub fn name_key(config: &PodSandboxConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
    }

    /// Whether the pod asked for the host's network.
    pub fn host_network(config: &PodSandboxConfig) -> bool {
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == k8s_cri::v1::NamespaceMode::Node as i32)
    }
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    Created,
    Running,
    Exited,
}

/// The image a container was created from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ImageInfo {
    /// `sha256:` id of the module.
    pub id: String,
    /// What status shows as the image: its first tag, else what was asked.
    pub name: String,
    /// A repo digest if there is one, else the id.
    pub image_ref: String,
    /// The module file.
    pub path: PathBuf,
}

/// A container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: ContainerConfig,
    pub image: ImageInfo,
    pub spec: Spec,
    /// `log_directory/log_path`, if both were given.
    pub log_path: Option<PathBuf>,
    pub phase: Phase,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// CPU time and memory at the end of the run.
    pub cpu_nanos: u64,
    pub memory_bytes: u64,
}

impl ContainerRecord {
    /// A container just created: phase Created, not yet run.
    pub fn created(
        id: String,
        pod_id: String,
        config: ContainerConfig,
        image: ImageInfo,
        spec: Spec,
        log_path: Option<PathBuf>,
        created_at: i64,
    ) -> Self {
        Self {
            id,
            pod_id,
            config,
            image,
            spec,
            log_path,
            phase: Phase::Created,
            created_at,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            cpu_nanos: 0,
            memory_bytes: 0,
        }
    }

    /// The identity CreateContainer is idempotent on: pod, name, attempt.
    pub fn name_key(pod_id: &str, config: &ContainerConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{pod_id}/{}/{}", m.name, m.attempt)
    }
}

/// The journal's file name under the state directory.
pub(crate) const JOURNAL: &str = "records.jsonl";

/// A journal with fewer lines than this is never compacted while it runs.
const COMPACT_MIN_LINES: usize = 4096;
/// ... nor one with fewer than this many lines per live record.
const COMPACT_RATIO: usize = 4;
/// How long the syncer looks for more changes after a sync before it waits
/// to be signalled: changes in a run of calls are synced together, and
/// their calls do not each wake the syncer's thread (a futex wake and, on
/// an idle CPU, an interrupt: tens of microseconds on a virtual machine).
const SYNC_LINGER: Duration = Duration::from_millis(5);

/// One journal line, as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum LineRef<'a> {
    Pod(&'a PodRecord),
    Container(&'a ContainerRecord),
    RemovePod(&'a str),
    RemoveContainer(&'a str),
}

/// One journal line, as read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum Line {
    Pod(Box<PodRecord>),
    Container(Box<ContainerRecord>),
    RemovePod(String),
    RemoveContainer(String),
}

/// What a live record is keyed by in the journal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Pod(String),
    Container(String),
}

/// The on-disk mirror.
#[derive(Debug)]
pub(crate) struct Records {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    journal: Mutex<Journal>,
    /// Signalled when the journal has unsynced lines, or on shutdown.
    wake: Condvar,
}

#[derive(Debug)]
struct Journal {
    file: Arc<File>,
    /// The bytes written so far (a failed append is cut back to this).
    len: u64,
    /// Lines in the file.
    lines: usize,
    /// The last line of every live record, in id order.
    live: BTreeMap<Key, Vec<u8>>,
    /// Lines written since the last sync.
    dirty: bool,
    /// The syncer waits for a change to be signalled (it lingers, without
    /// being signalled, for `SYNC_LINGER` after each sync).
    syncer_idle: bool,
    stop: bool,
}

impl Records {
    /// Opens (creating) the journal under `dir`, cuts off a torn last line,
    /// folds in the per-record files of earlier versions (`pods/ID.json`,
    /// `containers/ID.json`), compacts, and starts the syncing thread.
    pub fn open(dir: &Path) -> Result<Self, CriError> {
        fs::create_dir_all(dir).map_err(CriError::io("create", dir))?;
        let path = dir.join(JOURNAL);
        let mut live = BTreeMap::new();
        match fs::read(&path) {
            Ok(bytes) => replay(&bytes, &path, &mut live),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CriError::io("read", &path)(e)),
        }
        let old_dirs = [dir.join("pods"), dir.join("containers")];
        for (i, old) in old_dirs.iter().enumerate() {
            for (id, bytes) in read_old(old) {
                let key = if i == 0 {
                    Key::Pod(id)
                } else {
                    Key::Container(id)
                };
                live.entry(key).or_insert(bytes);
            }
        }
        let (file, len, lines) = compact(dir, &live)?;
        for old in &old_dirs {
            if old.is_dir() {
                let _ = fs::remove_dir_all(old);
            }
        }
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            journal: Mutex::new(Journal {
                file,
                len,
                lines,
                live,
                dirty: false,
                syncer_idle: true,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let syncer = shared.clone();
        std::thread::Builder::new()
            .name("cri-records-sync".into())
            .spawn(move || syncer.sync_loop())
            .map_err(CriError::io("start the syncing thread for", path))?;
        Ok(Self { shared })
    }

    pub fn save_pod(&self, pod: &PodRecord) -> Result<(), CriError> {
        self.append(Key::Pod(pod.id.clone()), &LineRef::Pod(pod))
    }

    pub fn save_container(&self, c: &ContainerRecord) -> Result<(), CriError> {
        self.append(Key::Container(c.id.clone()), &LineRef::Container(c))
    }

    pub fn remove_pod(&self, id: &str) {
        self.remove(Key::Pod(id.to_owned()), &LineRef::RemovePod(id));
    }

    pub fn remove_container(&self, id: &str) {
        self.remove(Key::Container(id.to_owned()), &LineRef::RemoveContainer(id));
    }

    /// Every live record. A record that does not parse is skipped with a
    /// warning.
    pub fn load(&self) -> (Vec<PodRecord>, Vec<ContainerRecord>) {
        let j = self.shared.lock();
        let (mut pods, mut containers) = (Vec::new(), Vec::new());
        for (key, line) in &j.live {
            match serde_json::from_slice::<Line>(line) {
                Ok(Line::Pod(p)) => pods.push(*p),
                Ok(Line::Container(c)) => containers.push(*c),
                Ok(_) => {}
                Err(e) => tracing::warn!(?key, error = %e, "skipping an unreadable record"),
            }
        }
        (pods, containers)
    }

    /// Waits until every change so far is on stable storage.
    pub fn sync(&self) -> Result<(), CriError> {
        let file = {
            let mut j = self.shared.lock();
            j.dirty = false;
            j.file.clone()
        };
        file.sync_data()
            .map_err(CriError::io("sync", self.shared.dir.join(JOURNAL)))
    }

    fn append(&self, key: Key, line: &LineRef<'_>) -> Result<(), CriError> {
        let path = || self.shared.dir.join(JOURNAL);
        let bytes = line.encode().map_err(|e| CriError::Io {
            action: "encode",
            path: path(),
            source: io::Error::other(e),
        })?;
        let mut j = self.shared.lock();
        j.write(&bytes).map_err(CriError::io("append to", path()))?;
        j.live.insert(key, bytes);
        self.shared.written(j);
        Ok(())
    }

    fn remove(&self, key: Key, line: &LineRef<'_>) {
        let mut j = self.shared.lock();
        if j.live.remove(&key).is_none() {
            return;
        }
        let written = line
            .encode()
            .map_err(io::Error::other)
            .and_then(|bytes| j.write(&bytes));
        if let Err(e) = written {
            tracing::warn!(?key, error = %e, "cannot record a removal; it is kept in memory");
            return;
        }
        self.shared.written(j);
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        let file = {
            let mut j = self.shared.lock();
            j.stop = true;
            j.file.clone()
        };
        self.shared.wake.notify_all();
        let _ = file.sync_data();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a line was written: wake the syncer if it is idle (it finds
    /// the change by itself while it lingers).
    fn written(&self, mut j: MutexGuard<'_, Journal>) {
        j.dirty = true;
        let idle = std::mem::replace(&mut j.syncer_idle, false);
        drop(j);
        if idle {
            self.wake.notify_one();
        }
    }

    /// The syncing thread: fdatasync whenever there are unsynced lines, and
    /// compact a journal that has grown to several times its live records.
    fn sync_loop(&self) {
        let mut j = self.lock();
        loop {
            if !j.dirty && !j.stop {
                // Linger after a sync, then wait to be signalled.
                j = self
                    .wake
                    .wait_timeout(j, SYNC_LINGER)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                while !j.dirty && !j.stop {
                    j.syncer_idle = true;
                    j = self.wake.wait(j).unwrap_or_else(|e| e.into_inner());
                }
            }
            if j.stop {
                return;
            }
            j.dirty = false;
            if j.lines >= COMPACT_MIN_LINES && j.lines >= COMPACT_RATIO * j.live.len() {
                // The new journal is synced as it is written.
                match compact(&self.dir, &j.live) {
                    Ok((file, len, lines)) => {
                        (j.file, j.len, j.lines) = (file, len, lines);
                        continue;
                    }
                    Err(e) => tracing::warn!(
                        error = %crate::error::chain(&e),
                        "cannot compact the records journal"
                    ),
                }
            }
            let file = j.file.clone();
            drop(j);
            if let Err(e) = file.sync_data() {
                tracing::warn!(error = %e, "cannot sync the records journal");
            }
            j = self.lock();
        }
    }
}

impl Journal {
    /// Appends whole lines; on a failure the file is cut back, so that no
    /// torn line is left in the middle of the journal.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match (&*self.file).write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.lines += 1;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }
}

/// Applies the journal's lines in order to `live`. A last line without its
/// newline was torn by a crash and is dropped; a line that does not parse
/// is skipped with a warning.
fn replay(bytes: &[u8], path: &Path, live: &mut BTreeMap<Key, Vec<u8>>) {
    let whole = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    if whole < bytes.len() {
        tracing::warn!(path = %path.display(), bytes = bytes.len() - whole, "dropping a torn last record");
    }
    for (n, line) in bytes[..whole].split_inclusive(|&b| b == b'\n').enumerate() {
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Pod(p)) => {
                live.insert(Key::Pod(p.id), line.to_vec());
            }
            Ok(Line::Container(c)) => {
                live.insert(Key::Container(c.id), line.to_vec());
            }
            Ok(Line::RemovePod(id)) => {
                live.remove(&Key::Pod(id));
            }
            Ok(Line::RemoveContainer(id)) => {
                live.remove(&Key::Container(id));
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), line = n + 1, error = %e, "skipping an unreadable record")
            }
        }
    }
}

/// Writes the live records to a new journal, syncs it, renames it into
/// place and syncs the directory; returns it open for appending.
fn compact(dir: &Path, live: &BTreeMap<Key, Vec<u8>>) -> Result<(Arc<File>, u64, usize), CriError> {
    let path = dir.join(JOURNAL);
    let tmp = dir.join(format!(".{JOURNAL}.tmp"));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(CriError::io("create", &tmp))?;
    let mut len = 0;
    for line in live.values() {
        file.write_all(line).map_err(CriError::io("write", &tmp))?;
        len += line.len() as u64;
    }
    file.sync_all().map_err(CriError::io("sync", &tmp))?;
    fs::rename(&tmp, &path).map_err(CriError::io("rename into place", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CriError::io("sync", dir))?;
    // Appending through the renamed file: same inode.
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(CriError::io("open", &path))?;
    Ok((Arc::new(file), len, live.len()))
}

/// The records of an earlier version, one `ID.json` file each, as journal
/// lines.
fn read_old(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let pods = dir.file_name().is_some_and(|n| n == "pods");
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json")
            || path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let line = fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
            let (id, line) = if pods {
                let p: PodRecord = parse_old(&b)?;
                (p.id.clone(), LineRef::Pod(&p).encode())
            } else {
                let c: ContainerRecord = parse_old(&b)?;
                (c.id.clone(), LineRef::Container(&c).encode())
            };
            Ok((id, line.map_err(|e| e.to_string())?))
        });
        match line {
            Ok(l) => out.push(l),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable record")
            }
        }
    }
    out
}

fn parse_old<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

impl LineRef<'_> {
    /// The line, with its newline.
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn pod(id: &str) -> PodRecord {
        PodRecord {
            id: id.into(),
            config: PodSandboxConfig::default(),
            runtime_handler: String::new(),
            created_at: 1,
            ready: true,
            ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
        }
    }

    fn container(id: &str, pod_id: &str, phase: Phase) -> ContainerRecord {
        let image = ImageInfo {
            id: "sha256:00".into(),
            name: "hello".into(),
            image_ref: "sha256:00".into(),
            path: "/images/00".into(),
        };
        let config = ContainerConfig::default();
        let spec = Spec::default();
        let rec = ContainerRecord::created(id.into(), pod_id.into(), config, image, spec, None, 1);
        ContainerRecord { phase, ..rec }
    }

    fn ids(records: &Records) -> (Vec<String>, Vec<(String, Phase)>) {
        let (pods, containers) = records.load();
        (
            pods.into_iter().map(|p| p.id).collect(),
            containers.into_iter().map(|c| (c.id, c.phase)).collect(),
        )
    }

    /// Waits until the syncer has synced every change (and, with `idle`,
    /// until it has gone back to waiting to be signalled).
    fn synced(r: &Records, idle: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let j = r.shared.lock();
                if !j.dirty && (!idle || j.syncer_idle) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the journal was not synced");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The lost-wakeup state: an unsynced change while the syncer waits to
    /// be signalled (whether or not it has synced since, which it may do
    /// at any moment).
    fn no_change_waits_on_an_idle_syncer(r: &Records) {
        let j = r.shared.lock();
        assert!(
            !(j.dirty && j.syncer_idle),
            "a change waits on an idle syncer"
        );
    }

    #[test]
    fn changes_are_synced_whether_the_syncer_lingers_or_waits() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        // A change while the syncer waits: it is signalled.
        synced(&r, true);
        r.save_pod(&pod("p1")).unwrap();
        synced(&r, false);
        // Changes while it lingers after that sync: it finds them itself
        // (no call signals it), and none is left waiting.
        for i in 0..10 {
            r.save_container(&container(&format!("c{i}"), "p1", Phase::Created))
                .unwrap();
            no_change_waits_on_an_idle_syncer(&r);
        }
        synced(&r, false);
        // Then it goes back to waiting, and the next change signals it.
        synced(&r, true);
        r.remove_container("c0");
        no_change_waits_on_an_idle_syncer(&r);
        synced(&r, false);
        drop(r);
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(r.load().1.len(), 9);
    }

    #[test]
    fn changes_survive_a_reopen_and_the_last_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Records::open(dir.path()).unwrap();
            r.save_pod(&pod("p1")).unwrap();
            r.save_pod(&pod("p2")).unwrap();
            r.save_container(&container("c1", "p1", Phase::Created))
                .unwrap();
            r.save_container(&container("c1", "p1", Phase::Running))
                .unwrap();
            r.save_container(&container("c2", "p1", Phase::Created))
                .unwrap();
            r.remove_container("c2");
            r.remove_pod("p2");
            r.remove_pod("never-there");
            // No process exit here: what a crash leaves (no final sync).
            std::mem::forget(r);
        }
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(
            ids(&r),
            (vec!["p1".into()], vec![("c1".into(), Phase::Running)])
        );
        // Opening compacts: one line per live record.
        let text = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_appends_go_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        r.save_pod(&pod("p1")).unwrap();
        drop(r);
        let path = dir.path().join(JOURNAL);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"pod":{"id":"p2","con"#).unwrap();
        drop(f);

        let r = Records::open(dir.path()).unwrap();
        assert_eq!(ids(&r).0, vec!["p1".to_owned()]);
        r.save_pod(&pod("p3")).unwrap();
        drop(r);
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(ids(&r).0, vec!["p1".to_owned(), "p3".to_owned()]);
    }

    #[test]
    fn records_of_the_one_file_per_record_layout_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, id, json) in [
            ("pods", "p1", serde_json::to_vec(&pod("p1")).unwrap()),
            (
                "containers",
                "c1",
                serde_json::to_vec(&container("c1", "p1", Phase::Exited)).unwrap(),
            ),
        ] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
            fs::write(dir.path().join(sub).join(format!("{id}.json")), json).unwrap();
        }
        fs::write(dir.path().join("pods/broken.json"), b"{").unwrap();

        let r = Records::open(dir.path()).unwrap();
        assert_eq!(
            ids(&r),
            (vec!["p1".into()], vec![("c1".into(), Phase::Exited)])
        );
        assert!(!dir.path().join("pods").exists());
        assert!(!dir.path().join("containers").exists());
        drop(r);
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(ids(&r).1, vec![("c1".into(), Phase::Exited)]);
    }

    #[test]
    fn a_grown_journal_is_compacted_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        r.save_pod(&pod("keep")).unwrap();
        let mut p = pod("churn");
        for i in 0..COMPACT_MIN_LINES {
            p.created_at = i as i64;
            r.save_pod(&p).unwrap();
        }
        r.remove_pod("churn");
        let path = dir.path().join(JOURNAL);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = fs::read_to_string(&path).unwrap().lines().count();
            // A compaction may have run before the removal too, as soon as
            // the journal reached COMPACT_MIN_LINES lines (the last churn
            // save still to come): then the journal is `keep`, `churn`, the
            // last save and the removal.
            if lines <= 4 {
                break;
            }
            assert!(Instant::now() < deadline, "still {lines} lines after 30 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        r.save_pod(&pod("after")).unwrap();
        drop(r);
        let r = Records::open(dir.path()).unwrap();
        assert_eq!(ids(&r).0, vec!["after".to_owned(), "keep".to_owned()]);
    }
}
