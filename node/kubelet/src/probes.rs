//! Liveness, readiness and startup probes, run as Kubernetes runs them: one
//! task per probe of a running container, starting `initialDelaySeconds`
//! after the container started, every `periodSeconds`, each attempt bounded
//! by `timeoutSeconds`; the result flips after `successThreshold`
//! successes or `failureThreshold` failures in a row. Until a startup probe
//! succeeds the other two do not run. Each failed attempt is an
//! `Unhealthy` event; a flip wakes the pod worker, which kills a container
//! whose liveness or startup probe failed and reports readiness.
//!
//! Handlers: `exec` (CRI ExecSync), `tcpSocket` and `httpGet` (plain HTTP)
//! against the pod IP unless the probe names a host. `grpc` and HTTPS
//! probes are not run: the worker warns once and treats them as passing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::cri::Cri;
use crate::events::Recorder;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handler {
    Exec(Vec<String>),
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
}

/// A probe, parsed and defaulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    pub handler: Handler,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64, min: u64) -> Duration {
    Duration::from_secs(
        v.and_then(|v| u64::try_from(v).ok())
            .unwrap_or(default)
            .max(min),
    )
}

fn port_of(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("port {p} is out of range")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("container {} has no port named {name:?}", c.name))
        }
    }
}

/// Parses a probe of container `c`, with Kubernetes' defaults (period 10 s,
/// timeout 1 s, success 1, failure 3). `Err` says why it cannot be run.
pub fn parse(kind: Kind, probe: &Probe, c: &Container) -> Result<Spec, String> {
    let handler = if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        if cmd.is_empty() {
            return Err("exec probe has no command".into());
        }
        Handler::Exec(cmd)
    } else if let Some(tcp) = &probe.tcp_socket {
        Handler::Tcp {
            host: tcp.host.clone().filter(|h| !h.is_empty()),
            port: port_of(&tcp.port, c)?,
        }
    } else if let Some(get) = &probe.http_get {
        if get
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Err("HTTPS probes are not supported by shoal yet".into());
        }
        let mut path = get.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Handler::Http {
            host: get.host.clone().filter(|h| !h.is_empty()),
            port: port_of(&get.port, c)?,
            path,
            headers: get
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    } else if probe.grpc.is_some() {
        return Err("gRPC probes are not supported by shoal yet".into());
    } else {
        return Err("probe has no handler (exec, tcpSocket or httpGet)".into());
    };
    let success_threshold = match kind {
        // Liveness and startup probes must have a success threshold of 1.
        Kind::Liveness | Kind::Startup => 1,
        Kind::Readiness => probe
            .success_threshold
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1)
            .max(1),
    };
    Ok(Spec {
        kind,
        handler,
        initial_delay: secs(probe.initial_delay_seconds, 0, 0),
        period: secs(probe.period_seconds, 10, 1),
        timeout: secs(probe.timeout_seconds, 1, 1),
        success_threshold,
        failure_threshold: probe
            .failure_threshold
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(3)
            .max(1),
    })
}

/// The probes of a container that can be run, and why the others cannot.
pub fn container_probes(c: &Container) -> (Vec<Spec>, Vec<(Kind, String)>) {
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    for (kind, probe) in [
        (Kind::Startup, &c.startup_probe),
        (Kind::Liveness, &c.liveness_probe),
        (Kind::Readiness, &c.readiness_probe),
    ] {
        if let Some(p) = probe {
            match parse(kind, p, c) {
                Ok(s) => specs.push(s),
                Err(why) => skipped.push((kind, why)),
            }
        }
    }
    (specs, skipped)
}

/// One attempt's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Where a probe goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub cri: Cri,
    pub container_id: String,
    /// The pod IP (else the node IP, for host-network pods).
    pub ip: String,
}

/// Runs one attempt.
pub async fn run_once(spec: &Spec, target: &Target) -> Outcome {
    let attempt = async {
        match &spec.handler {
            Handler::Exec(cmd) => exec(target, cmd.clone(), spec.timeout).await,
            Handler::Tcp { host, port } => {
                let host = host.clone().unwrap_or_else(|| target.ip.clone());
                match TcpStream::connect((host.as_str(), *port)).await {
                    Ok(_) => Outcome::Success,
                    Err(e) => Outcome::Failure(format!(
                        "dial tcp {host}:{port}: connect: {}",
                        io_text(&e)
                    )),
                }
            }
            Handler::Http {
                host,
                port,
                path,
                headers,
            } => {
                let host = host.clone().unwrap_or_else(|| target.ip.clone());
                http_get(&host, *port, path, headers).await
            }
        }
    };
    match tokio::time::timeout(spec.timeout, attempt).await {
        Ok(o) => o,
        Err(_) => Outcome::Failure(match &spec.handler {
            Handler::Exec(cmd) => format!("command {cmd:?} timed out after {:?}", spec.timeout),
            _ => format!("timeout after {:?}", spec.timeout),
        }),
    }
}

async fn exec(target: &Target, cmd: Vec<String>, timeout: Duration) -> Outcome {
    match target
        .cri
        .exec_sync(&target.container_id, cmd.clone(), timeout)
        .await
    {
        Ok(r) if r.exit_code == 0 => Outcome::Success,
        Ok(r) => {
            let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&r.stderr));
            let out = out.trim();
            Outcome::Failure(if out.is_empty() {
                format!("command {cmd:?} exited with {}", r.exit_code)
            } else {
                out.chars().take(1024).collect()
            })
        }
        Err(e) => Outcome::Failure(crate::error::chain(&e)),
    }
}

/// An I/O error as Go prints it: `connection refused`, not
/// `Connection refused (os error 111)`.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Outcome {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let url = format!("http://{authority}{path}");
    let stream = match TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failure(format!(
                "Get \"{url}\": dial tcp {authority}: connect: {}",
                io_text(&e)
            ));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return Outcome::Failure(format!("Get \"{url}\": {e}")),
    };
    let conn = tokio::spawn(conn);
    let mut req = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "kube-probe/1.37")
        .header(http::header::ACCEPT, "*/*");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(Empty::<hyper::body::Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(format!("Get \"{url}\": {e}")),
    };
    let outcome = match sender.send_request(req).await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            if (200..400).contains(&code) {
                Outcome::Success
            } else {
                Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        Err(e) => Outcome::Failure(format!("Get \"{url}\": {e}")),
    };
    conn.abort();
    outcome
}

/// The probes of one pod: a task per probe of each running container, and
/// their results.
#[derive(Debug)]
pub struct Probes {
    tasks: HashMap<(String, Kind), tokio::task::AbortHandle>,
    results: Arc<Mutex<HashMap<(String, Kind), bool>>>,
    wake: Arc<Notify>,
}

/// What probe tasks need besides their spec.
#[derive(Clone, Debug)]
pub struct Context {
    pub cri: Cri,
    pub recorder: Recorder,
    pub wake: Arc<Notify>,
    /// When this kubelet started: a container started before it has passed
    /// its startup probe already.
    pub kubelet_started: SystemTime,
}

impl Probes {
    pub fn new(wake: Arc<Notify>) -> Self {
        Probes {
            tasks: HashMap::new(),
            results: Arc::default(),
            wake,
        }
    }

    /// Makes sure the probes of a running container run.
    pub fn ensure(
        &mut self,
        ctx: &Context,
        container_id: &str,
        specs: &[Spec],
        started_at: SystemTime,
        ip: &str,
        regarding: &ObjectReference,
    ) {
        let has_startup = specs.iter().any(|s| s.kind == Kind::Startup);
        for spec in specs {
            let key = (container_id.to_owned(), spec.kind);
            if self.tasks.contains_key(&key) {
                continue;
            }
            let initial = match spec.kind {
                Kind::Liveness => true,
                Kind::Readiness => false,
                Kind::Startup => started_at < ctx.kubelet_started,
            };
            self.results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), initial);
            let task = ProbeTask {
                spec: spec.clone(),
                target: Target {
                    cri: ctx.cri.clone(),
                    container_id: container_id.to_owned(),
                    ip: ip.to_owned(),
                },
                has_startup,
                started_at,
                results: self.results.clone(),
                wake: self.wake.clone(),
                recorder: ctx.recorder.clone(),
                regarding: regarding.clone(),
            };
            let span =
                tracing::info_span!("probe", kind = spec.kind.name(), container = %container_id);
            let handle = tokio::spawn(tracing::Instrument::instrument(task.run(), span));
            self.tasks.insert(key, handle.abort_handle());
        }
    }

    /// Stops the probes of containers not in `live`.
    pub fn retain(&mut self, live: &std::collections::HashSet<String>) {
        self.tasks.retain(|(id, _), h| {
            let keep = live.contains(id);
            if !keep {
                h.abort();
            }
            keep
        });
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| live.contains(id));
    }

    /// Stops every probe.
    pub fn stop_all(&mut self) {
        self.retain(&Default::default());
    }

    /// A probe's result: `None` if the container has no such probe.
    pub fn result(&self, container_id: &str, kind: Kind) -> Option<bool> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(container_id.to_owned(), kind))
            .copied()
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        for h in self.tasks.values() {
            h.abort();
        }
    }
}

struct ProbeTask {
    spec: Spec,
    target: Target,
    has_startup: bool,
    started_at: SystemTime,
    results: Arc<Mutex<HashMap<(String, Kind), bool>>>,
    wake: Arc<Notify>,
    recorder: Recorder,
    regarding: ObjectReference,
}

impl ProbeTask {
    fn get(&self, kind: Kind) -> Option<bool> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(self.target.container_id.clone(), kind))
            .copied()
    }

    fn set(&self, value: bool) {
        let key = (self.target.container_id.clone(), self.spec.kind);
        let old = self
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, value);
        if old != Some(value) {
            tracing::info!(passing = value, "probe result changed");
            self.wake.notify_one();
        }
    }

    async fn run(self) {
        let since_start = SystemTime::now()
            .duration_since(self.started_at)
            .unwrap_or_default();
        if let Some(wait) = self.spec.initial_delay.checked_sub(since_start) {
            tokio::time::sleep(wait).await;
        }
        let mut successes = 0u32;
        let mut failures = 0u32;
        let mut tick = tokio::time::interval(self.spec.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.spec.kind {
                Kind::Startup if self.get(Kind::Startup) == Some(true) => return,
                Kind::Liveness | Kind::Readiness
                    if self.has_startup && self.get(Kind::Startup) != Some(true) =>
                {
                    continue;
                }
                _ => {}
            }
            match run_once(&self.spec, &self.target).await {
                Outcome::Success => {
                    failures = 0;
                    successes = successes.saturating_add(1);
                    if successes >= self.spec.success_threshold {
                        self.set(true);
                    }
                }
                Outcome::Failure(message) => {
                    successes = 0;
                    failures = failures.saturating_add(1);
                    tracing::debug!(%message, failures, "probe failed");
                    self.recorder.warning(
                        &self.regarding,
                        "Unhealthy",
                        format!("{} probe failed: {message}", self.spec.kind.name()),
                    );
                    if failures >= self.spec.failure_threshold {
                        self.set(false);
                        if self.spec.kind != Kind::Readiness {
                            // The worker kills the container; a new one gets new probes.
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction, TCPSocketAction};

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_named_ports() {
        let p = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("healthz".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = parse(Kind::Readiness, &p, &container()).unwrap();
        assert_eq!(
            s,
            Spec {
                kind: Kind::Readiness,
                handler: Handler::Http {
                    host: None,
                    port: 8080,
                    path: "/healthz".into(),
                    headers: vec![]
                },
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let p = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(9),
                host: None,
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(2),
            timeout_seconds: Some(0),
            success_threshold: Some(4),
            failure_threshold: Some(1),
            ..Default::default()
        };
        let s = parse(Kind::Liveness, &p, &container()).unwrap();
        assert_eq!(
            s.handler,
            Handler::Tcp {
                host: None,
                port: 9
            }
        );
        assert_eq!(
            (s.initial_delay, s.period, s.timeout),
            (
                Duration::from_secs(5),
                Duration::from_secs(2),
                Duration::from_secs(1)
            )
        );
        assert_eq!(
            (s.success_threshold, s.failure_threshold),
            (1, 1),
            "liveness succeeds after one success"
        );
        assert_eq!(
            parse(Kind::Readiness, &p, &container())
                .unwrap()
                .success_threshold,
            4
        );
    }

    #[test]
    fn unusable_probes_say_why() {
        let named = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("grpc".into()),
                host: None,
            }),
            ..Default::default()
        };
        assert!(
            parse(Kind::Liveness, &named, &container())
                .unwrap_err()
                .contains("no port named \"grpc\"")
        );
        let empty_exec = Probe {
            exec: Some(ExecAction {
                command: Some(vec![]),
            }),
            ..Default::default()
        };
        assert!(parse(Kind::Liveness, &empty_exec, &container()).is_err());
        assert!(parse(Kind::Liveness, &Probe::default(), &container()).is_err());
        let https = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(443),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut c = container();
        c.liveness_probe = Some(https);
        c.readiness_probe = Some(empty_exec.clone());
        c.startup_probe = Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec!["cat".into(), "/ready".into()]),
            }),
            ..Default::default()
        });
        let (specs, skipped) = container_probes(&c);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].kind, Kind::Startup);
        assert_eq!(
            skipped.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [Kind::Liveness, Kind::Readiness]
        );
    }

    #[tokio::test]
    async fn tcp_and_http_handlers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let status = if req.starts_with("GET /ok ") {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let target = Target {
            cri: Cri::connect_lazy(std::path::Path::new("/nonexistent/cri.sock")),
            container_id: "c".into(),
            ip: "127.0.0.1".into(),
        };
        let spec = |handler| Spec {
            kind: Kind::Liveness,
            handler,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            success_threshold: 1,
            failure_threshold: 1,
        };
        let http = |path: &str| {
            spec(Handler::Http {
                host: None,
                port,
                path: path.into(),
                headers: vec![("X-Probe".into(), "1".into())],
            })
        };
        assert_eq!(
            run_once(&spec(Handler::Tcp { host: None, port }), &target).await,
            Outcome::Success
        );
        assert_eq!(run_once(&http("/ok"), &target).await, Outcome::Success);
        assert_eq!(
            run_once(&http("/bad"), &target).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        match run_once(
            &spec(Handler::Tcp {
                host: None,
                port: closed,
            }),
            &target,
        )
        .await
        {
            Outcome::Failure(m) => assert!(
                m == format!("dial tcp 127.0.0.1:{closed}: connect: connection refused"),
                "{m}"
            ),
            o => panic!("{o:?}"),
        }
        match run_once(&spec(Handler::Exec(vec!["true".into()])), &target).await {
            Outcome::Failure(m) => assert!(m.contains("ExecSync"), "{m}"),
            o => panic!("{o:?}"),
        }
    }
}
