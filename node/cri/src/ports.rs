//! hostPort: the port mappings of a pod sandbox that ask for a host port,
//! served on the node. RunPodSandbox binds every `host_ip:host_port` (an
//! empty host IP means every address, `0.0.0.0`, as in Kubernetes) before
//! the sandbox exists, all of them or none, and forwards each TCP connection
//! to `pod_ip:container_port`. StopPodSandbox, RemovePodSandbox and the
//! runtime's shutdown close the listeners. UDP and SCTP host ports are
//! refused; a host-network pod binds its ports itself, so nothing is
//! forwarded for it. A runtime restart leaves every old sandbox NOTREADY
//! (its guests are gone), so the kubelet makes new ones, which bind again.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use k8s_cri::v1::{PodSandboxConfig, Protocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::error::CriError;

/// One host port to serve: connections to `listen` go to `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Forward {
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

/// A forward whose listener is bound, not yet serving.
#[derive(Debug)]
pub(crate) struct Bound {
    forward: Forward,
    listener: std::net::TcpListener,
}

/// The listeners of every sandbox, by pod sandbox id.
#[derive(Debug, Default)]
pub(crate) struct HostPorts {
    pods: Mutex<HashMap<String, Vec<JoinHandle<()>>>>,
}

/// The forwards a sandbox needs: its TCP mappings with a host port. A
/// host-network pod (no `pod_ip`) needs none.
pub(crate) fn forwards(
    config: &PodSandboxConfig,
    pod_ip: Option<Ipv4Addr>,
) -> Result<Vec<Forward>, CriError> {
    let mut out = Vec::new();
    for m in config.port_mappings.iter().filter(|m| m.host_port != 0) {
        let port = |n: i32, what: &str| {
            u16::try_from(n).ok().filter(|&p| p > 0).ok_or_else(|| {
                CriError::InvalidArgument(format!(
                    "port mapping {what} {n} is not a port: give a number in 1..=65535"
                ))
            })
        };
        let host_port = port(m.host_port, "hostPort")?;
        let container_port = port(m.container_port, "containerPort")?;
        if m.protocol != Protocol::Tcp as i32 {
            let name = Protocol::try_from(m.protocol).map_or("unknown", |p| p.as_str_name());
            return Err(CriError::InvalidArgument(format!(
                "hostPort {host_port}/{name}: only TCP host ports are served; \
                 drop the hostPort, or reach the pod on its pod IP"
            )));
        }
        let host_ip = if m.host_ip.is_empty() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            m.host_ip.parse::<IpAddr>().map_err(|_| {
                CriError::InvalidArgument(format!(
                    "port mapping hostIP {:?} is not an IP address",
                    m.host_ip
                ))
            })?
        };
        let Some(ip) = pod_ip else { continue };
        out.push(Forward {
            listen: SocketAddr::new(host_ip, host_port),
            target: SocketAddr::new(IpAddr::V4(ip), container_port),
        });
    }
    Ok(out)
}

/// Binds every forward's listener, or none: on the first failure the ones
/// bound so far are closed (dropped) and the error names the address.
pub(crate) fn bind(forwards: &[Forward]) -> Result<Vec<Bound>, CriError> {
    forwards
        .iter()
        .map(|&forward| {
            let listener = std::net::TcpListener::bind(forward.listen)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| CriError::HostPort {
                    addr: forward.listen,
                    hint: hint(&source),
                    source,
                })?;
            Ok(Bound { forward, listener })
        })
        .collect()
}

/// What to do about a host port that cannot be bound.
fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "another pod or process holds it: free it, or pick another hostPort"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need CAP_NET_BIND_SERVICE: pick a higher hostPort"
        }
        io::ErrorKind::AddrNotAvailable => {
            "the hostIP is not an address of this node: give one of its addresses, or none"
        }
        _ => "check the hostIP and hostPort",
    }
}

impl HostPorts {
    /// Serves a sandbox's bound listeners, each in a task with its span.
    pub fn serve(&self, pod: &str, bound: Vec<Bound>) -> Result<(), CriError> {
        let listeners = bound
            .into_iter()
            .map(|Bound { forward, listener }| {
                TcpListener::from_std(listener)
                    .map(|l| (forward, l))
                    .map_err(|source| CriError::HostPort {
                        addr: forward.listen,
                        hint: "the runtime cannot watch the socket",
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if listeners.is_empty() {
            return Ok(());
        }
        let tasks = listeners.into_iter().map(|(forward, listener)| {
            let span = tracing::info_span!("host_port", pod = %pod, listen = %forward.listen, target = %forward.target);
            span.in_scope(|| tracing::info!("host port bound"));
            tokio::spawn(accept(listener, forward.target).instrument(span))
        });
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pod.to_owned())
            .or_default()
            .extend(tasks);
        Ok(())
    }

    /// Closes a sandbox's listeners (and the connections through them);
    /// returns once the ports are free. Idempotent.
    pub async fn close(&self, pod: &str) {
        let tasks = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pod)
            .unwrap_or_default();
        if !tasks.is_empty() {
            tracing::info!(pod = %pod, count = tasks.len(), "host ports closed");
        }
        stop(tasks).await;
    }

    /// Closes every listener (the runtime is shutting down).
    pub async fn close_all(&self) {
        let tasks: Vec<JoinHandle<()>> = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, t)| t)
            .collect();
        stop(tasks).await;
    }
}

/// Aborts the tasks and waits until they are gone, so their sockets are closed.
async fn stop(tasks: Vec<JoinHandle<()>>) {
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Accepts until aborted; each connection is forwarded in its own task,
/// aborted with the listener.
async fn accept(listener: TcpListener, target: SocketAddr) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    conns.spawn(forward(client, peer, target).in_current_span());
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::task::yield_now().await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Copies both ways between a client and the pod until either side closes.
async fn forward(mut client: TcpStream, peer: SocketAddr, target: SocketAddr) {
    let mut upstream = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "the pod does not answer: closing the connection");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(%peer, up, down, "connection closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::PortMapping;

    fn mapping(protocol: Protocol, container: i32, host: i32, ip: &str) -> PortMapping {
        PortMapping {
            protocol: protocol as i32,
            container_port: container,
            host_port: host,
            host_ip: ip.into(),
        }
    }

    #[test]
    fn which_mappings_are_forwarded() {
        let pod_ip = Ipv4Addr::new(127, 42, 0, 7);
        let config = PodSandboxConfig {
            port_mappings: vec![
                mapping(Protocol::Tcp, 8080, 0, ""),
                mapping(Protocol::Tcp, 8080, 9090, ""),
                mapping(Protocol::Tcp, 81, 9091, "127.0.0.1"),
            ],
            ..Default::default()
        };
        let f = forwards(&config, Some(pod_ip)).unwrap();
        assert_eq!(
            f,
            vec![
                Forward {
                    listen: "0.0.0.0:9090".parse().unwrap(),
                    target: "127.42.0.7:8080".parse().unwrap(),
                },
                Forward {
                    listen: "127.0.0.1:9091".parse().unwrap(),
                    target: "127.42.0.7:81".parse().unwrap(),
                },
            ]
        );
        assert!(forwards(&config, None).unwrap().is_empty(), "host network");

        for (bad, needle) in [
            (mapping(Protocol::Udp, 53, 5353, ""), "5353/UDP"),
            (mapping(Protocol::Sctp, 9, 9999, ""), "9999/SCTP"),
            (mapping(Protocol::Tcp, 80, 70000, ""), "hostPort 70000"),
            (mapping(Protocol::Tcp, 0, 8080, ""), "containerPort 0"),
            (
                mapping(Protocol::Tcp, 80, 8080, "localhost"),
                "\"localhost\"",
            ),
        ] {
            let config = PodSandboxConfig {
                port_mappings: vec![bad],
                ..Default::default()
            };
            match forwards(&config, Some(pod_ip)) {
                Err(CriError::InvalidArgument(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
    }
}
