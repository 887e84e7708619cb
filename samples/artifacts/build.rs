//! Builds the sample guests (`../guests`, a crate outside the workspace) for
//! Wasm with a nested `cargo build`, and writes `$OUT_DIR/artifacts.rs`: one
//! `pub const NAME: &str` per guest holding the absolute path of its `.wasm`,
//! plus `ALL`. The pattern is wasmtime's `test-programs-artifacts`.
//!
//! Every binary in `../guests/src/bin/` is built for wasm32-wasip1, except
//! those in [`P2_GUESTS`], built for wasm32-wasip2 (command components). The
//! member crates in [`HTTP_GUESTS`] (`../guests/NAME/`, cdylibs) are built for
//! wasm32-wasip2 as HTTP functions. Two broken samples join them:
//! `malformed.wasm` (committed beside this file) and `truncated.wasm` (the
//! `hello` module cut in the middle of its code section).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const P1: &str = "wasm32-wasip1";
const P2: &str = "wasm32-wasip2";

/// Guests that need wasip2 (std::net works there, over wasi:sockets).
const P2_GUESTS: &[&str] = &["connect-out", "echo-tcp", "stdin-echo"];

/// HTTP functions: member crates of the guests workspace, each a cdylib
/// exporting `wasi:http/incoming-handler` (and no `wasi:cli/run`).
const HTTP_GUESTS: &[&str] = &["hello-http", "fanout-http"];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let guests = manifest_dir.join("../guests");
    let guests = guests
        .canonicalize()
        .unwrap_or_else(|e| panic!("the guests crate is missing at {}: {e}", guests.display()));

    for f in ["Cargo.toml", "Cargo.lock", "src"] {
        println!("cargo:rerun-if-changed={}", guests.join(f).display());
    }
    for g in HTTP_GUESTS {
        for f in ["Cargo.toml", "src"] {
            println!(
                "cargo:rerun-if-changed={}",
                guests.join(g).join(f).display()
            );
        }
    }
    println!("cargo:rerun-if-changed=malformed.wasm");
    println!("cargo:rerun-if-changed=build.rs");
    // Only these change what the nested build does; the rest of the outer
    // environment is ignored (see `nested_cargo`).
    for var in ["CARGO", "RUSTC", "RUSTUP_TOOLCHAIN"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let bins = guest_bins(&guests.join("src/bin"));
    let (p2, p1): (Vec<&str>, Vec<&str>) = bins
        .iter()
        .map(String::as_str)
        .partition(|b| P2_GUESTS.contains(b));
    for b in P2_GUESTS {
        assert!(
            p2.contains(b),
            "P2_GUESTS names {b}, which is not in {}/src/bin",
            guests.display()
        );
    }

    let target_dir = out_dir.join("guests");
    let mut consts: Vec<(String, PathBuf)> = Vec::new();
    for (target, names) in [(P1, &p1), (P2, &p2)] {
        check_target_installed(target);
        build(&guests, &target_dir, target, names);
        for name in names.iter() {
            let wasm = target_dir
                .join(target)
                .join("release")
                .join(format!("{name}.wasm"));
            assert!(
                wasm.is_file(),
                "cargo built {name} for {target} but {} is missing",
                wasm.display()
            );
            consts.push((name.to_string(), wasm));
        }
    }

    build_libs(&guests, &target_dir, P2, HTTP_GUESTS);
    for name in HTTP_GUESTS {
        let wasm = target_dir
            .join(P2)
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(
            wasm.is_file(),
            "cargo built {name} for {P2} but {} is missing",
            wasm.display()
        );
        consts.push((name.to_string(), wasm));
    }

    let malformed = manifest_dir.join("malformed.wasm");
    assert!(malformed.is_file(), "{} is missing", malformed.display());
    consts.push(("malformed".into(), malformed));

    let hello = consts
        .iter()
        .find(|(n, _)| n == "hello")
        .map(|(_, p)| p.clone())
        .expect("the guests crate has a hello binary");
    let truncated = out_dir.join("truncated.wasm");
    write_truncated(&hello, &truncated);
    consts.push(("truncated".into(), truncated));

    write_consts(&out_dir.join("artifacts.rs"), &consts);
}

/// The names of the binaries in `src/bin`: `NAME.rs` files and `NAME/main.rs`
/// directories, sorted.
fn guest_bins(dir: &Path) -> Vec<String> {
    let mut bins = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("reading src/bin").path();
        let name = if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else if path.join("main.rs").is_file() {
            path.file_name()
        } else {
            None
        };
        if let Some(name) = name {
            bins.push(name.to_str().expect("guest names are UTF-8").to_owned());
        }
    }
    bins.sort();
    bins
}

/// A `cargo` for the nested build: the same cargo and rustc as the outer
/// build, none of the outer build's flags. `RUSTFLAGS` meant for the host
/// (coverage, `-C target-cpu=native`, sanitizers) break or bloat Wasm, an
/// inherited target dir would share (and lock) the outer one, and clippy's
/// wrapper would lint the guests on every workspace clippy run.
fn nested_cargo() -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_BUILD_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_OPT_LEVEL",
        "CARGO_PROFILE_RELEASE_LTO",
        "CARGO_PROFILE_RELEASE_PANIC",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Fails early, with the fix, when rustc has no standard library for `target`.
fn check_target_installed(target: &str) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} --print target-libdir: {e}",
                rustc.to_string_lossy()
            )
        });
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let has_std = out.status.success()
        && fs::read_dir(&libdir).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
        });
    if !has_std {
        panic!(
            "\n\nthe Rust standard library for {target} is not installed (looked in {}).\n\
             The sample guests are built for Wasm; run: rustup target add wasm32-wasip1 wasm32-wasip2\n\n",
            libdir.display()
        );
    }
}

/// Builds binaries of the root package `guests`.
fn build(guests: &Path, target_dir: &Path, target: &str, names: &[&str]) {
    if names.is_empty() {
        return;
    }
    let mut cmd = cargo_build(guests, target_dir, target);
    cmd.args(["-p", "guests"]);
    for name in names {
        cmd.args(["--bin", name]);
    }
    run(cmd, target);
}

/// Builds the libraries (cdylibs) of member packages.
fn build_libs(guests: &Path, target_dir: &Path, target: &str, packages: &[&str]) {
    let mut cmd = cargo_build(guests, target_dir, target);
    for p in packages {
        cmd.args(["-p", p]);
    }
    cmd.arg("--lib");
    run(cmd, target);
}

fn cargo_build(guests: &Path, target_dir: &Path, target: &str) -> Command {
    let mut cmd = nested_cargo();
    cmd.current_dir(guests)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(guests.join("Cargo.toml"))
        .args(["--target", target, "--target-dir"])
        .arg(target_dir);
    cmd
}

fn run(mut cmd: Command, target: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `std`")
        {
            "\nrun: rustup target add wasm32-wasip1 wasm32-wasip2\n"
        } else {
            ""
        };
        panic!("building the sample guests for {target} failed: {cmd:?}\n{stderr}{hint}");
    }
}

/// Writes `hello` cut in the middle of its largest section (the code), so
/// that the last section header declares more bytes than the file holds.
fn write_truncated(module: &Path, dest: &Path) {
    let bytes = fs::read(module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()));
    let mut pos = 8;
    let mut largest = (0, 0);
    while pos < bytes.len() {
        let _id = bytes[pos];
        let (size, n) = leb128_u32(&bytes[pos + 1..]);
        let start = pos + 1 + n;
        if size as usize > largest.1 {
            largest = (start, size as usize);
        }
        pos = start + size as usize;
    }
    assert!(
        largest.1 > 2,
        "{} has no section worth cutting",
        module.display()
    );
    let cut = largest.0 + largest.1 / 2;
    fs::write(dest, &bytes[..cut]).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

fn leb128_u32(bytes: &[u8]) -> (u32, usize) {
    let mut value = 0u32;
    for (i, b) in bytes.iter().take(5).enumerate() {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("bad LEB128 in a module cargo just built");
}

fn write_consts(dest: &Path, consts: &[(String, PathBuf)]) {
    let mut src = String::from("// @generated by samples/artifacts/build.rs\n");
    for (name, path) in consts {
        let path = path.to_str().expect("artifact paths are UTF-8");
        writeln!(src, "/// `{name}`: `{path}`").unwrap();
        writeln!(src, "pub const {}: &str = {path:?};", const_name(name)).unwrap();
    }
    src.push_str(
        "/// Every artifact, as (guest name, path).\npub const ALL: &[(&str, &str)] = &[\n",
    );
    for (name, _) in consts {
        writeln!(src, "    ({name:?}, {}),", const_name(name)).unwrap();
    }
    src.push_str("];\n");
    fs::write(dest, src).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

fn const_name(guest: &str) -> String {
    guest.replace('-', "_").to_uppercase()
}
