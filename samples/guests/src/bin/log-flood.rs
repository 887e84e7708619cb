//! `log-flood [N]`: writes numbered lines to stdout, forever or N of them,
//! as fast as it can. For log rotation, back-pressure and `kubectl logs -f`.
//! Stops with exit 0 when stdout is closed or fails; a bad N exits 2.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let limit = match std::env::args().nth(1) {
        None => None,
        Some(a) => match a.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                eprintln!("log-flood: N must be a whole number, not {a:?}\nusage: log-flood [N]");
                return ExitCode::from(2);
            }
        },
    };
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut i = 0u64;
    while limit.is_none_or(|n| i < n) {
        if writeln!(
            out,
            "log-flood line {i} the quick brown fox jumps over the lazy dog"
        )
        .is_err()
        {
            return ExitCode::SUCCESS;
        }
        i += 1;
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}
