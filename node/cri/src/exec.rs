//! Exec's shared part and ExecSync: a Wasm command inside a running
//! container's sandbox (its mounts, environment, limits and grants), built
//! by `prepare_exec` for ExecSync (here: output captured up to
//! [`MAX_EXEC_OUTPUT`] per stream, the timeout enforced as a deadline) and
//! for the streaming Exec (`streaming`).
//!
//! When `cmd[0]` names a toolbox command ([`TOOLBOX_COMMANDS`]: `ls`, `cat`,
//! `env`, `ps`, `help`), the command is the toolbox (`node/toolbox`, built
//! by `build.rs` and embedded), which also sees a read-only `/.shoal`
//! directory written for this exec: `ps` (the pod's containers) and `mounts`.
//! Any other command runs the container's own module with `cmd` as argv.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;
use wasi_shim::{
    Access, Exit, ExitReason, ModuleSource, Output, OutputSink, Sandbox, SandboxBuilder, ShimError,
};

use crate::error::CriError;
use crate::records::{ContainerRecord, Phase};
use crate::runtime::{Runtime, find};
use crate::tables::Tables;

/// The commands the toolbox answers (by argv\[0\], or its base name).
pub const TOOLBOX_COMMANDS: &[&str] = &["ls", "cat", "env", "ps", "help"];

/// The most output kept per stream of an exec; the rest is dropped.
pub const MAX_EXEC_OUTPUT: usize = 4 << 20;

/// Where the toolbox finds the runtime's files.
pub const TOOLBOX_DIR: &str = "/.shoal";

/// The toolbox module.
static TOOLBOX: LazyLock<Arc<[u8]>> =
    LazyLock::new(|| Arc::from(&include_bytes!(env!("SHOAL_TOOLBOX_WASM"))[..]));

/// The toolbox module's bytes (for tests and tools).
pub fn toolbox_module() -> &'static [u8] {
    &TOOLBOX
}

/// A command ready to run in a container's sandbox: the sandbox so far
/// (argv, environment, mounts, limits, grants; outputs and stdin are the
/// caller's), the module, and the toolbox's `/.shoal` directory, which lives
/// as long as this value.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub builder: SandboxBuilder,
    pub source: ModuleSource,
    /// The image's name, or `toolbox`.
    image: String,
    _scratch: Option<Scratch>,
}

impl Prepared {
    /// The sandbox builder, to add outputs and stdin to.
    pub fn take_builder(&mut self) -> SandboxBuilder {
        std::mem::replace(&mut self.builder, Sandbox::builder())
    }

    /// The error of a run that did not start.
    pub fn error(&self, e: ShimError) -> CriError {
        if let ShimError::NoHttpListen = e {
            return CriError::FailedPrecondition(format!(
                "the module of {} is an HTTP function, not a command, so it cannot be exec'd; \
                 the toolbox commands are {}",
                self.image,
                TOOLBOX_COMMANDS.join(", ")
            ));
        }
        CriError::Module {
            image: self.image.clone(),
            source: e,
        }
    }
}

/// What an exec shows on stderr after its output when the command trapped
/// or ran out of memory: the message and the Wasm backtrace.
pub(crate) fn trap_note(exit: &Exit) -> Option<Vec<u8>> {
    match &exit.reason {
        ExitReason::Trapped { message } | ExitReason::OutOfMemory { message } => {
            let mut note = format!("\n{message}\n").into_bytes();
            if let Some(bt) = &exit.backtrace {
                note.extend_from_slice(bt.as_bytes());
            }
            Some(note)
        }
        _ => None,
    }
}

impl Runtime {
    /// The full id of a running container, or why an exec cannot go into it.
    pub(crate) fn exec_target(&self, container_id: &str) -> Result<String, CriError> {
        let t = self.tables();
        let id = find(t.containers(), container_id, "container")?
            .ok_or_else(|| CriError::not_found("container", container_id))?;
        let c = &t.containers()[&id];
        if c.rec.phase != Phase::Running {
            return Err(CriError::FailedPrecondition(format!(
                "container {id} is not running ({:?}): exec needs a running container",
                c.rec.phase
            )));
        }
        Ok(id)
    }

    /// The sandbox and module of `cmd` in a running container (shared by
    /// ExecSync and the streaming Exec).
    pub(crate) fn prepare_exec(
        &self,
        container_id: &str,
        cmd: &[String],
    ) -> Result<Prepared, CriError> {
        let Some(program) = cmd.first() else {
            return Err(CriError::InvalidArgument(
                "exec needs a command (cmd is empty)".into(),
            ));
        };
        let applet = program.rsplit('/').next().unwrap_or(program);
        let toolbox = TOOLBOX_COMMANDS.contains(&applet);
        let id = self.exec_target(container_id)?;
        let (rec, pod_ip, ps) = {
            let t = self.tables();
            let c = t
                .containers()
                .get(&id)
                .ok_or_else(|| CriError::not_found("container", &id))?;
            let ip = t.pods().get(&c.rec.pod_id).and_then(|p| p.ip);
            (c.rec.clone(), ip, ps_table(&t, &c.rec.pod_id))
        };

        // The container's sandbox, with the command as argv.
        let mut spec = rec.spec.clone();
        spec.argv = cmd.to_vec();
        let mut builder = spec.sandbox(pod_ip.map(std::net::IpAddr::V4));
        let scratch = if toolbox {
            let s = Scratch::new(self, &rec, &ps)?;
            builder = builder.preopen(s.0.clone(), TOOLBOX_DIR, Access::ReadOnly);
            Some(s)
        } else {
            None
        };
        let (source, image) = if toolbox {
            (ModuleSource::Bytes(TOOLBOX.clone()), "toolbox".to_owned())
        } else {
            (ModuleSource::file(&rec.image.path), rec.image.name.clone())
        };
        Ok(Prepared {
            builder,
            source,
            image,
            _scratch: scratch,
        })
    }

    pub async fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, CriError> {
        let mut prepared = self.prepare_exec(&req.container_id, &req.cmd)?;
        let stdout = Arc::new(Capture::default());
        let stderr = Arc::new(Capture::default());
        let mut builder = prepared
            .take_builder()
            .stdout(Output::Sink(stdout.clone()))
            .stderr(Output::Sink(stderr.clone()));
        let timeout = u64::try_from(req.timeout).unwrap_or(0);
        if timeout > 0 {
            builder = builder.deadline(Duration::from_secs(timeout));
        }
        let exit = self
            .engine
            .run(prepared.source.clone(), &builder.build())
            .await
            .map_err(|e| prepared.error(e))?;
        drop(prepared);
        if exit.reason == ExitReason::Deadline {
            return Err(CriError::DeadlineExceeded(format!(
                "command {:?} timed out after {timeout}s",
                req.cmd
            )));
        }
        let mut err = stderr.take();
        if let Some(note) = trap_note(&exit) {
            err.extend_from_slice(&note);
        }
        tracing::debug!(cmd = ?req.cmd, code = exit.code, "exec ended");
        Ok(cri::ExecSyncResponse {
            stdout: stdout.take(),
            stderr: err,
            exit_code: exit.code,
        })
    }
}

/// The pod's containers for `ps`, one tab-separated line each: id, name,
/// state, started (RFC 3339 or `-`), exit code (or `-`), image.
fn ps_table(t: &Tables, pod_id: &str) -> String {
    let mut out = String::new();
    for c in t.pod_containers(pod_id) {
        let r = &c.rec;
        let name = r.config.metadata.as_ref().map_or("", |m| m.name.as_str());
        let state = match r.phase {
            Phase::Created => "CREATED",
            Phase::Running => "RUNNING",
            Phase::Exited => "EXITED",
        };
        let started = if r.started_at > 0 {
            jiff::Timestamp::from_nanosecond(i128::from(r.started_at))
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|_| "-".into())
        } else {
            "-".into()
        };
        let exit = if r.phase == Phase::Exited {
            r.exit_code.to_string()
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{}\t{name}\t{state}\t{started}\t{exit}\t{}\n",
            r.id, r.image.name
        ));
    }
    out
}

/// The `/.shoal` directory of one exec, removed when dropped.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Scratch {
    fn new(rt: &Runtime, rec: &ContainerRecord, ps: &str) -> Result<Self, CriError> {
        let dir = rt
            .state_dir
            .join("exec")
            .join(uuid::Uuid::new_v4().simple().to_string());
        fs::create_dir_all(&dir).map_err(CriError::io("create", &dir))?;
        let scratch = Scratch(dir);
        let mut mounts: Vec<&str> = rec.spec.mounts.iter().map(|m| m.guest.as_str()).collect();
        mounts.push(TOOLBOX_DIR);
        let mounts = mounts.join("\n") + "\n";
        for (name, text) in [("ps", ps), ("mounts", mounts.as_str())] {
            let path = scratch.0.join(name);
            fs::write(&path, text).map_err(CriError::io("write", &path))?;
        }
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Captured output, keeping the first [`MAX_EXEC_OUTPUT`] bytes.
#[derive(Debug, Default)]
struct Capture {
    buf: Mutex<Vec<u8>>,
    truncated: AtomicBool,
}

impl Capture {
    fn take(&self) -> Vec<u8> {
        let mut out = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner()));
        if self.truncated.load(Ordering::Relaxed) {
            out.extend_from_slice(
                format!("\n[output truncated at {MAX_EXEC_OUTPUT} bytes]\n").as_bytes(),
            );
        }
        out
    }
}

impl OutputSink for Capture {
    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_EXEC_OUTPUT.saturating_sub(buf.len());
        if bytes.len() > room {
            self.truncated.store(true, Ordering::Relaxed);
        }
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }
}
