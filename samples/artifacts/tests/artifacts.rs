//! Every sample artifact exists and has the shape its users expect: the p1
//! guests are WASI preview 1 core modules with `_start`, `connect-out` is a
//! wasip2 component importing `wasi:sockets`, and the two broken samples are
//! really broken. Running the guests is the runtime's business (`wasi-shim`'s
//! tests); here a structural reader of the binary format is enough. If a
//! `wasmtime` CLI is on PATH, the last test runs a few guests with it too.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const MAGIC: &[u8] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

const P1_GUESTS: &[&str] = &[
    "hello",
    "batch-pi",
    "memory-bomb",
    "infinite-loop",
    "deep-recursion",
    "path-escape",
    "log-flood",
    "true",
];

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn path_of(name: &str) -> &'static str {
    artifacts::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("{name} is not in artifacts::ALL"))
}

// ---- a minimal reader of the Wasm binary format ----

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| format!("unexpected end at {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.byte()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("LEB128 longer than 5 bytes at {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes declared at offset {} but only {} remain",
                    self.pos,
                    self.bytes.len() - self.pos
                )
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn name(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|e| e.to_string())
    }

    fn limits(&mut self) -> Result<(u32, Option<u32>), String> {
        let flags = self.byte()?;
        let min = self.u32()?;
        let max = if flags & 1 != 0 {
            Some(self.u32()?)
        } else {
            None
        };
        Ok((min, max))
    }
}

/// A top-level section: its id and payload.
type Section<'a> = (u8, &'a [u8]);

#[derive(Debug, PartialEq)]
enum Kind {
    Core,
    Component,
}

/// Checks the header and walks the top-level sections: every section fits
/// in the file and has a known id, non-custom core sections come at most once
/// and in order. Returns the kind and the sections, as (id, payload).
fn sections(bytes: &[u8]) -> Result<(Kind, Vec<Section<'_>>), String> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("no \\0asm magic".into());
    }
    let kind = match <[u8; 4]>::try_from(&bytes[4..8]).unwrap() {
        CORE_VERSION => Kind::Core,
        COMPONENT_VERSION => Kind::Component,
        v => return Err(format!("unknown version/layer {v:02x?}")),
    };
    // Core section order, by id: type import func table mem tag global export
    // start elem datacount code data.
    const CORE_ORDER: [u8; 13] = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
    let mut r = Reader::new(bytes);
    r.pos = 8;
    let mut out = Vec::new();
    let mut last_rank = None;
    while !r.done() {
        let at = r.pos;
        let id = r.byte()?;
        match kind {
            Kind::Core if id != 0 => {
                let rank = CORE_ORDER
                    .iter()
                    .position(|&x| x == id)
                    .ok_or_else(|| format!("invalid core section id {id} at {at}"))?;
                if last_rank.is_some_and(|l| rank <= l) {
                    return Err(format!(
                        "core section {id} at {at} out of order or repeated"
                    ));
                }
                last_rank = Some(rank);
            }
            Kind::Component if id > 11 => {
                return Err(format!("invalid component section id {id} at {at}"));
            }
            _ => {}
        }
        let size = r.u32()? as usize;
        let payload = r
            .take(size)
            .map_err(|e| format!("section {id} at {at}: {e}"))?;
        out.push((id, payload));
    }
    Ok((kind, out))
}

#[derive(Debug, Default)]
struct CoreModule {
    /// (module, field) of every function import.
    func_imports: BTreeSet<(String, String)>,
    exports: BTreeSet<String>,
    /// The limits of the module's own memory, in 64 KiB pages.
    memory: Option<(u32, Option<u32>)>,
    has_code: bool,
}

fn core_module(bytes: &[u8]) -> Result<CoreModule, String> {
    let (kind, secs) = sections(bytes)?;
    if kind != Kind::Core {
        return Err("a component, not a core module".into());
    }
    let mut m = CoreModule::default();
    for (id, payload) in secs {
        let mut r = Reader::new(payload);
        match id {
            2 => {
                for _ in 0..r.u32()? {
                    let module = r.name()?;
                    let field = r.name()?;
                    match r.byte()? {
                        0 => {
                            r.u32()?;
                            m.func_imports.insert((module, field));
                        }
                        1 => {
                            r.byte()?;
                            r.limits()?;
                        }
                        2 => {
                            r.limits()?;
                        }
                        3 => {
                            r.byte()?;
                            r.byte()?;
                        }
                        k => return Err(format!("import kind {k} not expected from rustc")),
                    }
                }
            }
            5 => {
                if r.u32()? != 1 {
                    return Err("expected exactly one memory".into());
                }
                m.memory = Some(r.limits()?);
            }
            7 => {
                for _ in 0..r.u32()? {
                    m.exports.insert(r.name()?);
                    r.byte()?;
                    r.u32()?;
                }
            }
            10 => m.has_code = r.u32()? > 0,
            _ => {}
        }
    }
    Ok(m)
}

fn p1_module(name: &str) -> CoreModule {
    let path = path_of(name);
    let m = core_module(&read(path)).unwrap_or_else(|e| panic!("{name} ({path}): {e}"));
    assert!(
        m.exports.contains("_start"),
        "{name} exports no _start: {:?}",
        m.exports
    );
    assert!(m.exports.contains("memory"), "{name} exports no memory");
    assert!(m.has_code, "{name} has no code");
    for (module, field) in &m.func_imports {
        assert_eq!(
            module, "wasi_snapshot_preview1",
            "{name} imports {module}::{field}"
        );
    }
    m
}

fn imports(m: &CoreModule, name: &str, fields: &[&str]) {
    for f in fields {
        assert!(
            m.func_imports
                .contains(&("wasi_snapshot_preview1".to_owned(), (*f).to_owned())),
            "{name} does not import wasi_snapshot_preview1::{f}; it imports {:?}",
            m.func_imports
        );
    }
}

// ---- the set of artifacts ----

#[test]
fn all_lists_every_artifact_once() {
    let names: Vec<&str> = artifacts::ALL.iter().map(|(n, _)| *n).collect();
    let mut expected: Vec<&str> = P1_GUESTS.to_vec();
    expected.extend(artifacts::COMPONENTS);
    expected.extend(artifacts::INVALID);
    let (mut a, mut b) = (names.clone(), expected.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let constants = [
        ("hello", artifacts::HELLO),
        ("true", artifacts::TRUE),
        ("batch-pi", artifacts::BATCH_PI),
        ("memory-bomb", artifacts::MEMORY_BOMB),
        ("infinite-loop", artifacts::INFINITE_LOOP),
        ("deep-recursion", artifacts::DEEP_RECURSION),
        ("path-escape", artifacts::PATH_ESCAPE),
        ("log-flood", artifacts::LOG_FLOOD),
        ("connect-out", artifacts::CONNECT_OUT),
        ("echo-tcp", artifacts::ECHO_TCP),
        ("stdin-echo", artifacts::STDIN_ECHO),
        ("hello-http", artifacts::HELLO_HTTP),
        ("fanout-http", artifacts::FANOUT_HTTP),
        ("malformed", artifacts::MALFORMED),
        ("truncated", artifacts::TRUNCATED),
    ];
    for (name, path) in constants {
        assert_eq!(path_of(name), path);
    }
}

#[test]
fn every_artifact_exists_and_starts_with_the_magic() {
    for (name, path) in artifacts::ALL {
        assert!(
            Path::new(path).is_absolute(),
            "{name}: {path} is not absolute"
        );
        let bytes = read(path);
        assert!(
            bytes.starts_with(MAGIC),
            "{name}: {path} does not start with \\0asm"
        );
        // Release builds with opt-level "s": small, but not empty.
        if !artifacts::INVALID.contains(name) {
            assert!(
                (1_000..1_000_000).contains(&bytes.len()),
                "{name}: {} bytes",
                bytes.len()
            );
        }
    }
}

#[test]
fn p1_guests_are_core_modules_and_components_are_components() {
    for name in P1_GUESTS {
        let bytes = read(path_of(name));
        assert_eq!(bytes[4..8], CORE_VERSION, "{name}: version");
        let (kind, _) = sections(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(kind, Kind::Core, "{name}");
    }
    for name in artifacts::COMPONENTS {
        let bytes = read(path_of(name));
        assert_eq!(bytes[4..8], COMPONENT_VERSION, "{name}: version/layer");
        let (kind, _) = sections(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(kind, Kind::Component, "{name}");
    }
}

// ---- one test per guest ----

#[test]
fn hello_reads_args_and_environment() {
    let m = p1_module("hello");
    imports(
        &m,
        "hello",
        &[
            "args_get",
            "args_sizes_get",
            "environ_get",
            "environ_sizes_get",
            "fd_write",
        ],
    );
}

#[test]
fn batch_pi_reads_args_and_can_exit_2() {
    let m = p1_module("batch-pi");
    imports(&m, "batch-pi", &["args_get", "fd_write", "proc_exit"]);
}

#[test]
fn memory_bomb_memory_has_no_cap_of_its_own() {
    let m = p1_module("memory-bomb");
    // The module declares no maximum: only the host's limit stops it.
    let (_, max) = m.memory.expect("memory-bomb defines its memory");
    assert!(
        max.is_none_or(|p| p >= 65_536),
        "memory-bomb's memory is capped at {max:?} pages"
    );
    imports(&m, "memory-bomb", &["fd_write"]);
}

#[test]
fn infinite_loop_is_a_module() {
    p1_module("infinite-loop");
}

#[test]
fn deep_recursion_is_a_module() {
    p1_module("deep-recursion");
}

#[test]
fn path_escape_opens_paths() {
    let m = p1_module("path-escape");
    imports(
        &m,
        "path-escape",
        &["path_open", "fd_read", "fd_readdir", "fd_prestat_get"],
    );
}

#[test]
fn log_flood_writes() {
    let m = p1_module("log-flood");
    imports(&m, "log-flood", &["fd_write", "args_get"]);
}

#[test]
fn connect_out_is_a_command_component_using_wasi_sockets() {
    let bytes = read(artifacts::CONNECT_OUT);
    let (kind, secs) = sections(&bytes).unwrap();
    assert_eq!(kind, Kind::Component);
    assert!(secs.iter().any(|(id, _)| *id == 1), "no core module inside");
    // Interface names appear verbatim in the import and export sections.
    let text = String::from_utf8_lossy(&bytes);
    for interface in [
        "wasi:sockets/tcp@0.2",
        "wasi:sockets/tcp-create-socket@0.2",
        "wasi:cli/run@0.2",
    ] {
        assert!(
            text.contains(interface),
            "connect-out does not mention {interface}"
        );
    }
}

#[test]
fn echo_tcp_is_a_command_component_that_listens() {
    let bytes = read(artifacts::ECHO_TCP);
    let (kind, _) = sections(&bytes).unwrap();
    assert_eq!(kind, Kind::Component);
    let text = String::from_utf8_lossy(&bytes);
    for interface in ["wasi:sockets/tcp@0.2", "wasi:cli/run@0.2"] {
        assert!(
            text.contains(interface),
            "echo-tcp does not mention {interface}"
        );
    }
}

/// An HTTP function exports `wasi:http/incoming-handler` and not
/// `wasi:cli/run` (it is a cdylib: no `main`).
fn http_function(name: &str) -> String {
    let bytes = read(path_of(name));
    let (kind, secs) = sections(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(kind, Kind::Component, "{name}");
    assert!(
        secs.iter().any(|(id, _)| *id == 1),
        "{name}: no core module"
    );
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        text.contains("wasi:http/incoming-handler@0.2"),
        "{name} does not mention wasi:http/incoming-handler"
    );
    assert!(
        !text.contains("wasi:cli/run@0.2"),
        "{name} mentions wasi:cli/run: built as a binary, not a cdylib?"
    );
    text
}

#[test]
fn hello_http_is_an_http_function() {
    http_function("hello-http");
}

#[test]
fn fanout_http_is_an_http_function_that_calls_out() {
    let text = http_function("fanout-http");
    assert!(
        text.contains("wasi:http/outgoing-handler@0.2"),
        "fanout-http does not import wasi:http/outgoing-handler"
    );
}

#[test]
fn malformed_is_not_valid() {
    let bytes = read(artifacts::MALFORMED);
    assert_eq!(
        bytes[4..8],
        CORE_VERSION,
        "a valid header, so only the body is wrong"
    );
    let err = sections(&bytes).expect_err("malformed.wasm parsed");
    assert!(err.contains("invalid core section id"), "{err}");
}

#[test]
fn truncated_is_a_cut_hello() {
    let bytes = read(artifacts::TRUNCATED);
    let hello = read(artifacts::HELLO);
    assert!(
        bytes.len() < hello.len() && hello.starts_with(&bytes),
        "not a prefix of hello"
    );
    let err = sections(&bytes).expect_err("truncated.wasm parsed");
    assert!(err.contains("only") && err.contains("remain"), "{err}");
}

// ---- optional: run them, if a wasmtime CLI happens to be installed ----

#[test]
fn guests_run_under_wasmtime_cli_if_present() {
    let Ok(out) = Command::new("wasmtime").arg("--version").output() else {
        eprintln!("no wasmtime CLI on PATH: not running the guests (wasi-shim's tests do)");
        return;
    };
    assert!(out.status.success());
    let run = |args: &[&str]| {
        Command::new("wasmtime")
            .args(args)
            .output()
            .expect("running wasmtime")
    };

    let out = run(&[
        "run",
        "--env",
        "B=2",
        "--env",
        "A=1",
        artifacts::HELLO,
        "x",
        "y z",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("arg: x\narg: y z\n"), "{stdout}");
    assert!(stdout.contains("env: A=1\nenv: B=2\n"), "{stdout}");

    let out = run(&["run", artifacts::BATCH_PI, "10"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "3.141592653\n");
    let out = run(&["run", artifacts::BATCH_PI]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let out = run(&["run", artifacts::LOG_FLOOD, "3"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);

    for bad in [artifacts::MALFORMED, artifacts::TRUNCATED] {
        assert!(!run(&["run", bad]).status.success(), "{bad} ran");
    }
}
