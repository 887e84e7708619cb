//! `hello`: prints its argv and its environment, then exits 0.
//!
//! Output, one item a line: every argument (including argv\[0\]) as `arg: A`,
//! then every environment variable, sorted by name, as `env: K=V`.

use std::io::{self, Write};

fn main() {
    let mut out = io::stdout().lock();
    for arg in std::env::args_os() {
        writeln!(out, "arg: {}", arg.to_string_lossy()).expect("write stdout");
    }
    let mut vars: Vec<_> = std::env::vars_os().collect();
    vars.sort();
    for (k, v) in vars {
        writeln!(out, "env: {}={}", k.to_string_lossy(), v.to_string_lossy())
            .expect("write stdout");
    }
    out.flush().expect("flush stdout");
}
