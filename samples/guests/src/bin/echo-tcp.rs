//! `echo-tcp`: a command that listens on `$LISTEN` (an `IP:PORT`, default
//! `0.0.0.0:7000`) and echoes every connection's bytes back, one connection
//! at a time, until it is killed. Prints `LISTENING addr` once bound, or
//! `DENIED addr: error` and exits 1 when the host refuses the address; a bad
//! `$LISTEN` exits 2.
//!
//! Built for wasm32-wasip2: `std::net` goes through `wasi:sockets`, so the
//! host's socket policy decides where it may listen.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::var("LISTEN").unwrap_or_else(|_| "0.0.0.0:7000".to_owned());
    let addr: SocketAddr = match arg.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-tcp: LISTEN={arg:?} is not an IP:PORT address: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            println!("DENIED {addr}: {e} ({:?})", e.kind());
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_string(), |a| a.to_string());
    println!("LISTENING {local}");
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                if let Err(e) = echo(s) {
                    eprintln!("echo-tcp: connection: {e}");
                }
            }
            Err(e) => eprintln!("echo-tcp: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
