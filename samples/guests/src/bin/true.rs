//! `true`: does nothing and exits 0, as coreutils' and busybox's `true`: the
//! smallest command, the Wasm side of a container start against `runc run`
//! of busybox `true`.

fn main() {}
