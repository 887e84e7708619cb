//! Paths to the sample guests, compiled to Wasm by this crate's build script
//! from `samples/guests` (see `samples/README.md`).
//!
//! Each constant is the absolute path of one `.wasm` file in this crate's
//! `OUT_DIR`: core modules for wasm32-wasip1 (`HELLO`, `BATCH_PI`,
//! `MEMORY_BOMB`, `INFINITE_LOOP`, `DEEP_RECURSION`, `PATH_ESCAPE`,
//! `LOG_FLOOD`), wasm32-wasip2 command components (`CONNECT_OUT`,
//! `ECHO_TCP`, `STDIN_ECHO`), wasm32-wasip2 HTTP functions (`HELLO_HTTP`, `FANOUT_HTTP`:
//! they export `wasi:http/incoming-handler` and no `wasi:cli/run`), and two files that
//! are not valid Wasm (`MALFORMED`: the magic and version then garbage;
//! `TRUNCATED`: `hello` cut in the middle of its code section). [`ALL`] lists
//! every one with its guest name (`"batch-pi"`, ...).
//!
//! Use it from tests as a dev-dependency:
//! `wasmtime::Module::from_file(&engine, artifacts::HELLO)`.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The guests built as wasm32-wasip2 components; every other program is a
/// wasm32-wasip1 core module.
pub const COMPONENTS: &[&str] = &[
    "connect-out",
    "echo-tcp",
    "stdin-echo",
    "hello-http",
    "fanout-http",
];

/// The components that are HTTP functions (the rest are commands).
pub const HTTP_FUNCTIONS: &[&str] = &["hello-http", "fanout-http"];

/// The samples that must be rejected by any Wasm loader.
pub const INVALID: &[&str] = &["malformed", "truncated"];
