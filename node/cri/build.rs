//! Builds the toolbox (`../toolbox`, a crate outside the workspace) for
//! wasm32-wasip1 with a nested `cargo build`, the way
//! `samples/artifacts/build.rs` builds the sample guests, and tells the crate
//! where the module is (`SHOAL_TOOLBOX_WASM`, embedded with `include_bytes!`).

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let toolbox = manifest_dir.join("../toolbox");
    let toolbox = toolbox
        .canonicalize()
        .unwrap_or_else(|e| panic!("the toolbox crate is missing at {}: {e}", toolbox.display()));
    for f in ["Cargo.toml", "Cargo.lock", "src"] {
        println!("cargo:rerun-if-changed={}", toolbox.join(f).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["CARGO", "RUSTC", "RUSTUP_TOOLCHAIN"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    check_target_installed();
    let target_dir = out_dir.join("toolbox");
    let mut cmd = nested_cargo();
    cmd.current_dir(&toolbox)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(toolbox.join("Cargo.toml"))
        .args(["--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "building the toolbox for {TARGET} failed: {cmd:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wasm = target_dir.join(TARGET).join("release/toolbox.wasm");
    let bytes = fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    assert!(
        bytes.starts_with(b"\0asm"),
        "{} is not a Wasm module",
        wasm.display()
    );
    println!("cargo:rustc-env=SHOAL_TOOLBOX_WASM={}", wasm.display());
}

/// A `cargo` with the outer build's cargo and rustc and none of its flags,
/// target dir or clippy wrapper (see `samples/artifacts/build.rs`).
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

/// Fails early, with the fix, when rustc has no standard library for Wasm.
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
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
    assert!(
        has_std,
        "\n\nthe Rust standard library for {TARGET} is not installed (looked in {}).\n\
         The toolbox is built for Wasm; run: rustup target add {TARGET}\n\n",
        libdir.display()
    );
}
