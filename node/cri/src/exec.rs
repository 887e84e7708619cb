//! ExecSync: runs a Wasm command inside a running container's sandbox (its
//! mounts, environment, limits and grants), output captured up to
//! [`MAX_EXEC_OUTPUT`] per stream, the timeout enforced as a deadline.
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
use wasi_shim::{Access, ExitReason, ModuleSource, Output, OutputSink};

use crate::error::CriError;
use crate::records::{ContainerRecord, Phase};
use crate::runtime::{Runtime, Tables, find};

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

impl Runtime {
    pub async fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, CriError> {
        let Some(program) = req.cmd.first() else {
            return Err(CriError::InvalidArgument(
                "ExecSync needs a command (cmd is empty)".into(),
            ));
        };
        let applet = program.rsplit('/').next().unwrap_or(program).to_owned();
        let toolbox = TOOLBOX_COMMANDS.contains(&applet.as_str());
        let (rec, pod_ip, ps) = {
            let t = self.tables();
            let id = find(&t.containers, &req.container_id, "container")?
                .ok_or_else(|| CriError::not_found("container", &req.container_id))?;
            let c = &t.containers[&id];
            if c.rec.phase != Phase::Running {
                return Err(CriError::FailedPrecondition(format!(
                    "container {id} is not running ({:?}): exec needs a running container",
                    c.rec.phase
                )));
            }
            let ip = t.pods.get(&c.rec.pod_id).and_then(|p| p.ip);
            (c.rec.clone(), ip, ps_table(&t, &c.rec.pod_id))
        };

        // The container's sandbox, with the command as argv.
        let mut spec = rec.spec.clone();
        spec.argv = req.cmd.clone();
        let mut builder = spec.sandbox(pod_ip.map(std::net::IpAddr::V4));
        let stdout = Arc::new(Capture::default());
        let stderr = Arc::new(Capture::default());
        builder = builder
            .stdout(Output::Sink(stdout.clone()))
            .stderr(Output::Sink(stderr.clone()));
        let timeout = u64::try_from(req.timeout).unwrap_or(0);
        if timeout > 0 {
            builder = builder.deadline(Duration::from_secs(timeout));
        }
        let scratch = if toolbox {
            let s = Scratch::new(self, &rec, &ps)?;
            builder = builder.preopen(s.0.clone(), TOOLBOX_DIR, Access::ReadOnly);
            Some(s)
        } else {
            None
        };
        let source = if toolbox {
            ModuleSource::Bytes(TOOLBOX.clone())
        } else {
            ModuleSource::file(&rec.image.path)
        };
        let result = self.engine.run(source, &builder.build()).await;
        drop(scratch);
        if let Err(wasi_shim::ShimError::NoHttpListen) = &result {
            return Err(CriError::FailedPrecondition(format!(
                "the module of {} is an HTTP function, not a command, so it cannot be exec'd; \
                 the toolbox commands are {}",
                rec.image.name,
                TOOLBOX_COMMANDS.join(", ")
            )));
        }
        let exit = result.map_err(|source| CriError::Module {
            image: if toolbox {
                "toolbox".into()
            } else {
                rec.image.name.clone()
            },
            source,
        })?;
        let mut err = stderr.take();
        match &exit.reason {
            ExitReason::Deadline => {
                return Err(CriError::DeadlineExceeded(format!(
                    "command {:?} timed out after {timeout}s",
                    req.cmd
                )));
            }
            ExitReason::Trapped { message } | ExitReason::OutOfMemory { message } => {
                err.extend_from_slice(format!("\n{message}\n").as_bytes());
                if let Some(bt) = &exit.backtrace {
                    err.extend_from_slice(bt.as_bytes());
                }
            }
            _ => {}
        }
        tracing::debug!(container = %rec.id, cmd = ?req.cmd, code = exit.code, "exec ended");
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
    for c in t.containers.values().filter(|c| c.rec.pod_id == pod_id) {
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
