//! `path-escape`: tries to read files outside its sandbox and reports, for
//! each, `DENIED <path>: <error>` or `READ <path>: <n> bytes` (never the
//! content). Exits 0 if every attempt was denied, 1 if any file was read.
//!
//! Host setup expected by the runtime's test: a host directory preopened as
//! `/data`, a file `secret` next to that directory (so `/data/../secret`
//! exists on the host), and a symlink `/data/escape -> /etc`. The guest also
//! reads `/data/inside` if present (`INSIDE` line, not counted): a control
//! showing the preopen itself works.

use std::path::Path;
use std::process::ExitCode;

const ATTEMPTS: &[&str] = &[
    // Relative to the working directory, which is /data if chdir works.
    "../secret",
    // Through the preopen with `..`: reaches the host's path_open.
    "/data/../secret",
    "/data/../../../../etc/passwd",
    // Absolute path with no preopen covering it.
    "/etc/passwd",
    // A symlink inside the preopen pointing outside it.
    "/data/escape/passwd",
    "/data/escape/hostname",
];

fn main() -> ExitCode {
    if let Err(e) = std::env::set_current_dir("/data") {
        println!("NOTE chdir /data: {e}");
    }
    match std::fs::read(Path::new("/data/inside")) {
        Ok(b) => println!("INSIDE /data/inside: {} bytes", b.len()),
        Err(e) => println!("INSIDE /data/inside: {e}"),
    }
    let mut escaped = 0;
    for path in ATTEMPTS {
        match std::fs::read(path) {
            Ok(bytes) => {
                escaped += 1;
                println!("READ {path}: {} bytes", bytes.len());
            }
            Err(e) => println!("DENIED {path}: {e}"),
        }
    }
    // Listing the symlinked directory is an escape too.
    match std::fs::read_dir("/data/escape") {
        Ok(entries) => {
            escaped += 1;
            println!("READ /data/escape: listed {} entries", entries.count());
        }
        Err(e) => println!("DENIED /data/escape: {e}"),
    }
    if escaped == 0 {
        println!("path-escape: all denied");
        ExitCode::SUCCESS
    } else {
        println!("path-escape: {escaped} escaped");
        ExitCode::FAILURE
    }
}
