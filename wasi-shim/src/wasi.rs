//! Turns a [`Sandbox`] into a WASI context: arguments, environment, preopens
//! through cap-std, stdin, output sinks and the socket policy.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::ShimError;
use crate::sandbox::{Access, Input, MemoryOutput, NetGrant, Output, OutputSink, Sandbox};

/// A WASI context builder holding everything `sandbox` grants, and nothing else.
pub(crate) fn builder(sandbox: &Sandbox) -> Result<WasiCtxBuilder, ShimError> {
    let mut b = WasiCtxBuilder::new();
    b.args(&sandbox.args[..]);
    b.envs(&sandbox.env[..]);
    for p in &sandbox.preopens {
        let perms = match p.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        b.preopened_dir(&p.host, &p.guest, perms)
            .map_err(|e| ShimError::Preopen {
                host: p.host.clone(),
                guest: p.guest.clone(),
                source: e
                    .downcast::<io::Error>()
                    .unwrap_or_else(|e| io::Error::other(crate::error::chain(&e))),
            })?;
    }
    if let Input::Stream(input) = &sandbox.stdin {
        b.stdin(input.wasi());
    }
    set_output(&mut b, &sandbox.stdout, true);
    set_output(&mut b, &sandbox.stderr, false);

    let grants: Arc<[NetGrant]> = sandbox.network.clone().into();
    b.allow_tcp(!grants.is_empty());
    b.allow_udp(grants.iter().any(NetGrant::is_connect));
    b.allow_ip_name_lookup(sandbox.name_lookup);
    b.socket_addr_check(move |addr, usage| {
        let ok = allowed(&grants, addr, usage);
        Box::pin(async move { ok })
    });
    Ok(b)
}

/// The socket policy. Connect and send only to addresses a connect grant
/// allows, with the implicit wildcard bind (IP unspecified, port 0) that a
/// connect or send needs. Bind and listen only on an address a listen grant
/// allows (the IP exactly: a pod granted its own IP may not bind `0.0.0.0`),
/// and accept on such a listener from anyone.
fn allowed(grants: &[NetGrant], addr: SocketAddr, usage: SocketAddrUse) -> bool {
    let connects = grants.iter().any(NetGrant::is_connect);
    let implicit = addr.ip().is_unspecified() && addr.port() == 0;
    match usage {
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
            grants.iter().any(|g| g.allows_connect(addr))
        }
        SocketAddrUse::TcpBind => {
            (connects && implicit) || grants.iter().any(|g| g.allows_listen(addr))
        }
        SocketAddrUse::UdpBind => connects && implicit,
        SocketAddrUse::TcpListen => grants.iter().any(|g| g.allows_listen(addr)),
        SocketAddrUse::TcpAccept => grants.iter().any(|g| !g.is_connect()),
    }
}

fn set_output(b: &mut WasiCtxBuilder, out: &Output, stdout: bool) {
    let sink = match out {
        Output::Null => return,
        Output::File(f) => Sink::File(f.clone()),
        Output::Memory(m) => Sink::Memory(m.clone()),
        Output::Sink(s) => Sink::Custom(s.clone()),
    };
    if stdout {
        b.stdout(sink);
    } else {
        b.stderr(sink);
    }
}

/// An output sink: writes go straight to the file or buffer, on the guest's
/// thread, so nothing is left unflushed when the guest ends and no writer
/// task is woken per write (a guest that prints stays in one poll).
#[derive(Clone)]
enum Sink {
    File(Arc<std::fs::File>),
    Memory(MemoryOutput),
    Custom(Arc<dyn OutputSink>),
}

impl IsTerminal for Sink {
    fn is_terminal(&self) -> bool {
        false
    }
}

/// What a guest may write before it checks again: every write is made
/// whole at once, so this is only the most one write call hands over.
const WRITE_PERMIT: usize = 64 << 10;

impl StdoutStream for Sink {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    // Not wasmtime's default (an `AsyncWriteStream`, whose writer task the
    // guest waits on for every write): the sink itself.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for Sink {
    async fn ready(&mut self) {}
}

impl OutputStream for Sink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_out(&bytes)
            .map(drop)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl Sink {
    fn write_out(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => {
                (&**f).write_all(buf)?;
                Ok(buf.len())
            }
            Sink::Custom(s) => {
                s.write(buf)?;
                Ok(buf.len())
            }
            Sink::Memory(m) => {
                let mut v = m.inner.lock().unwrap_or_else(|e| e.into_inner());
                if v.len() + buf.len() > m.capacity {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "output buffer full",
                    ));
                }
                v.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.write_out(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listening_needs_a_listen_grant_for_that_ip() {
        let grants = [
            NetGrant::Listen(a("127.42.0.5:0")),
            NetGrant::Listen(a("127.42.0.6:7000")),
        ];
        assert!(allowed(
            &grants,
            a("127.42.0.5:7000"),
            SocketAddrUse::TcpBind
        ));
        assert!(allowed(
            &grants,
            a("127.42.0.5:7000"),
            SocketAddrUse::TcpListen
        ));
        assert!(allowed(
            &grants,
            a("127.42.0.6:7000"),
            SocketAddrUse::TcpListen
        ));
        assert!(!allowed(
            &grants,
            a("127.42.0.6:7001"),
            SocketAddrUse::TcpBind
        ));
        assert!(!allowed(&grants, a("0.0.0.0:7000"), SocketAddrUse::TcpBind));
        assert!(!allowed(&grants, a("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(!allowed(&grants, a("0.0.0.0:0"), SocketAddrUse::TcpListen));
        assert!(allowed(
            &grants,
            a("10.1.2.3:5555"),
            SocketAddrUse::TcpAccept
        ));
        assert!(!allowed(
            &grants,
            a("127.42.0.5:80"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!allowed(&grants, a("0.0.0.0:0"), SocketAddrUse::UdpBind));
    }

    #[test]
    fn connect_grants_do_not_allow_listening() {
        let grants = [NetGrant::Ip("127.0.0.1".parse().unwrap())];
        assert!(allowed(
            &grants,
            a("127.0.0.1:80"),
            SocketAddrUse::TcpConnect
        ));
        assert!(allowed(&grants, a("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(!allowed(&grants, a("0.0.0.0:0"), SocketAddrUse::TcpListen));
        assert!(!allowed(&grants, a("127.0.0.1:80"), SocketAddrUse::TcpBind));
        assert!(!allowed(
            &grants,
            a("127.0.0.1:80"),
            SocketAddrUse::TcpAccept
        ));
    }
}
