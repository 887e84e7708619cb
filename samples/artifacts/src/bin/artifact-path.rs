//! `artifact-path NAME...`: prints the path of each named sample guest
//! (`hello-http`, `batch-pi`, ...), one a line, so that scripts find the
//! modules this crate's build script compiled (`tests/scripts/up.sh`:
//! `cargo run -p artifacts --bin artifact-path -- hello-http`). With no
//! name, every guest as `NAME PATH`.

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    let mut lines = Vec::new();
    if names.is_empty() {
        lines.extend(artifacts::ALL.iter().map(|(n, p)| format!("{n} {p}")));
    }
    for name in &names {
        match artifacts::ALL.iter().find(|(n, _)| n == name) {
            Some((_, path)) => lines.push((*path).to_owned()),
            None => {
                let known: Vec<&str> = artifacts::ALL.iter().map(|(n, _)| *n).collect();
                eprintln!(
                    "artifact-path: no sample guest named {name:?}; the guests are: {}",
                    known.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
