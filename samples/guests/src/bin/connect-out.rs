//! `connect-out [ADDR]`: tries a TCP connection to ADDR (an `IP:PORT`,
//! default `127.0.0.1:9`) and prints `CONNECTED ADDR` (exit 0) or
//! `DENIED ADDR: <error>` (exit 1); a bad ADDR exits 2.
//!
//! Built for wasm32-wasip2, where `std::net` goes through `wasi:sockets`, so
//! the host's socket policy decides. (On wasip1 std has no sockets: every
//! connect fails as unsupported, which would prove nothing.)

use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9".to_owned());
    let addr: SocketAddr = match arg.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "connect-out: {arg:?} is not an IP:PORT address: {e}\nusage: connect-out [IP:PORT]"
            );
            return ExitCode::from(2);
        }
    };
    match TcpStream::connect(addr) {
        Ok(stream) => {
            let local = stream
                .local_addr()
                .map_or_else(|e| e.to_string(), |a| a.to_string());
            println!("CONNECTED {addr} (local {local})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("DENIED {addr}: {e} ({:?})", e.kind());
            ExitCode::FAILURE
        }
    }
}
