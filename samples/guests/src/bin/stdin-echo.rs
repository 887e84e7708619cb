//! `stdin-echo`: copies stdin to stdout as it arrives, then prints
//! `EOF after N bytes` on stderr and exits 0 (3 if reading or writing fails).

use std::io::{self, Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut input = io::stdin().lock();
    let mut out = io::stdout().lock();
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    return ExitCode::from(3);
                }
            }
            Err(e) => {
                eprintln!("read error: {e}");
                return ExitCode::from(3);
            }
        }
    }
    eprintln!("EOF after {total} bytes");
    ExitCode::SUCCESS
}
