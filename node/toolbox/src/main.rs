//! `toolbox`: the commands the CRI runtime's `ExecSync` runs inside a
//! container's sandbox, one multi-call program dispatching on argv\[0\]
//! (`ls`, `cat`, `env`, `ps`, `help`), as busybox does. It sees only what the
//! container sees (its mounts and environment) plus the read-only `/.shoal`
//! directory the runtime writes at exec time: `ps` (the pod's containers, one
//! tab-separated line each) and `mounts` (the guest paths of the mounts).
//!
//! Exit codes follow busybox: 0 on success, 1 when an operand fails (a
//! missing file) with the error on stderr, 127 for an unknown command.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// The runtime's files for the toolbox.
const SHOAL_DIR: &str = "/.shoal";

const COMMANDS: &[(&str, &str)] = &[
    (
        "ls",
        "ls [-l] [-a] [PATH...]   list directories (the mounts at /)",
    ),
    (
        "cat",
        "cat [FILE|-]...         print files (stdin with none or -)",
    ),
    ("env", "env                      print the environment"),
    ("ps", "ps                       the pod's containers"),
    ("help", "help                     this list"),
];

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    if args.is_empty() {
        args.push("help".into());
    }
    // `toolbox ls /data` works as well as `ls /data`.
    if applet(&args[0]) == "toolbox" && args.len() > 1 {
        args.remove(0);
    }
    let name = applet(&args[0]).to_owned();
    let rest = &args[1..];
    let code = match name.as_str() {
        "ls" => ls(rest),
        "cat" => cat(rest),
        "env" => env(rest),
        "ps" => ps(),
        "help" | "toolbox" | "--help" => help(),
        other => {
            eprintln!("toolbox: {other}: applet not found (try: help)");
            127
        }
    };
    ExitCode::from(code)
}

/// The command name in argv\[0\]: `/bin/ls` is `ls`.
fn applet(arg0: &str) -> &str {
    arg0.rsplit('/').next().unwrap_or(arg0)
}

fn help() -> u8 {
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "Shoal toolbox: commands that run inside a container's sandbox.\n"
    );
    for (_, usage) in COMMANDS {
        let _ = writeln!(out, "  {usage}");
    }
    let _ = writeln!(
        out,
        "\nAny other command runs the container's own module with the command as argv."
    );
    0
}

fn env(args: &[String]) -> u8 {
    if let Some(a) = args.first() {
        eprintln!("env: {a}: running commands is not supported, env only prints the environment");
        return 1;
    }
    let mut out = io::stdout().lock();
    for (k, v) in std::env::vars_os() {
        let _ = writeln!(out, "{}={}", k.to_string_lossy(), v.to_string_lossy());
    }
    0
}

fn cat(args: &[String]) -> u8 {
    let mut status = 0;
    let mut out = io::stdout().lock();
    let stdin = ["-".to_owned()];
    let args = if args.is_empty() { &stdin[..] } else { args };
    for path in args {
        if path == "-" {
            if copy_stdin(&mut out).is_err() {
                return 1;
            }
            continue;
        }
        let mut file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("cat: can't open '{path}': {}", describe(&e));
                status = 1;
                continue;
            }
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).is_err() {
                        return 1;
                    }
                }
                Err(e) => {
                    eprintln!("cat: read error: {}", describe(&e));
                    status = 1;
                    break;
                }
            }
        }
    }
    let _ = out.flush();
    status
}

/// Copies stdin to `out` as it arrives, each read flushed at once (an
/// exec's stdin is interactive).
fn copy_stdin(out: &mut impl Write) -> io::Result<()> {
    let mut input = io::stdin().lock();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("cat: read error: {}", describe(&e));
                return Err(e);
            }
        }
    }
}

#[derive(Default)]
struct LsFlags {
    long: bool,
    all: bool,
}

fn ls(args: &[String]) -> u8 {
    let mut flags = LsFlags::default();
    let mut paths = Vec::new();
    for a in args {
        if let Some(opts) = a.strip_prefix('-').filter(|o| !o.is_empty()) {
            for c in opts.chars() {
                match c {
                    'l' => flags.long = true,
                    'a' => flags.all = true,
                    '1' => {}
                    _ => {
                        eprintln!("ls: invalid option -- '{c}'\nusage: ls [-l] [-a] [PATH...]");
                        return 1;
                    }
                }
            }
        } else {
            paths.push(a.clone());
        }
    }
    if paths.is_empty() {
        paths.push(".".into());
    }
    let mut status = 0;
    let mut out = io::stdout().lock();
    let headers = paths.len() > 1;
    for (i, path) in paths.iter().enumerate() {
        let abs = absolute(path);
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.is_dir() => {
                let _ = writeln!(out, "{}", entry_line(&flags, path, Some(&meta)));
            }
            Ok(_) => {
                if headers {
                    let _ = writeln!(out, "{}{path}:", if i > 0 { "\n" } else { "" });
                }
                match list_dir(path) {
                    Ok(names) => print_entries(&mut out, &flags, Path::new(path), names),
                    Err(e) => {
                        eprintln!("ls: can't open '{path}': {}", describe(&e));
                        status = 1;
                    }
                }
            }
            Err(e) => match virtual_dir(&abs) {
                // A directory above the mounts (`/`, or `/var` for a mount at
                // `/var/run`): not a directory the guest can open, but its
                // entries are the mounts under it.
                Some(names) => {
                    if headers {
                        let _ = writeln!(out, "{}{path}:", if i > 0 { "\n" } else { "" });
                    }
                    print_entries(&mut out, &flags, Path::new(path), names);
                }
                None => {
                    eprintln!("ls: {path}: {}", describe(&e));
                    status = 1;
                }
            },
        }
    }
    status
}

fn list_dir(path: &str) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

fn print_entries(out: &mut impl Write, flags: &LsFlags, dir: &Path, mut names: Vec<String>) {
    names.sort();
    names.dedup();
    for name in names {
        if name.starts_with('.') && !flags.all {
            continue;
        }
        let meta = if flags.long {
            fs::symlink_metadata(dir.join(&name)).ok()
        } else {
            None
        };
        let _ = writeln!(out, "{}", entry_line(flags, &name, meta.as_ref()));
    }
}

/// One `ls` line. WASI shows no owners or permission bits, so `-l` gives
/// the type, the size and the modification time.
fn entry_line(flags: &LsFlags, name: &str, meta: Option<&fs::Metadata>) -> String {
    if !flags.long {
        return name.to_owned();
    }
    let Some(meta) = meta else {
        return format!("d {:>10} {:16} {name}", "-", "-");
    };
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    let mtime = meta.modified().map_or_else(|_| "-".to_owned(), civil);
    format!("{kind} {:>10} {mtime:16} {name}", meta.len())
}

/// The entries of a directory that exists only as the parent of mounts.
fn virtual_dir(abs: &Path) -> Option<Vec<String>> {
    let mounts = fs::read_to_string(Path::new(SHOAL_DIR).join("mounts")).ok()?;
    let mut names = Vec::new();
    for m in mounts.lines().map(Path::new) {
        if let Ok(rest) = m.strip_prefix(abs)
            && let Some(Component::Normal(first)) = rest.components().next()
        {
            names.push(first.to_string_lossy().into_owned());
        }
    }
    (!names.is_empty()).then_some(names)
}

/// `path` as an absolute, normalised path (the working directory is `/`).
fn absolute(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn ps() -> u8 {
    let path = Path::new(SHOAL_DIR).join("ps");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "ps: cannot read the container list {}: {}",
                path.display(),
                describe(&e)
            );
            return 1;
        }
    };
    let mut rows: Vec<Vec<String>> = vec![
        ["CONTAINER", "NAME", "STATE", "STARTED", "EXIT", "IMAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut row: Vec<String> = line.split('\t').map(String::from).collect();
        if let Some(id) = row.first_mut() {
            id.truncate(13);
        }
        rows.push(row);
    }
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = io::stdout().lock();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    0
}

/// An I/O error as busybox words it.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "No such file or directory".into(),
        io::ErrorKind::PermissionDenied => "Permission denied".into(),
        io::ErrorKind::IsADirectory => "Is a directory".into(),
        io::ErrorKind::NotADirectory => "Not a directory".into(),
        _ => e.to_string(),
    }
}

/// `YYYY-MM-DD hh:mm` in UTC.
fn civil(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(UNIX_EPOCH), "1970-01-01 00:00");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_260);
        assert_eq!(civil(t), "2024-03-01 00:01");
    }

    #[test]
    fn applet_names() {
        assert_eq!(applet("/bin/ls"), "ls");
        assert_eq!(applet("cat"), "cat");
        assert_eq!(absolute("../a/./b"), PathBuf::from("/a/b"));
    }
}
