//! `deep-recursion`: recurses until the stack overflows.
//!
//! Each frame keeps a 1 KiB buffer live on Rust's stack in linear memory (the
//! shadow stack, 1 MiB by default, placed below the data so an overflow runs
//! below address 0 and traps as an out-of-bounds access), and the calls
//! themselves use the engine's native Wasm stack (`max_wasm_stack`, a "call
//! stack exhausted" trap). Either way the guest must end with a trap, never
//! corrupt the host. Optional argument: print progress every N frames.

use std::hint::black_box;

#[expect(
    unconditional_recursion,
    reason = "the point: only a stack overflow ends it"
)]
fn recurse(depth: u64, every: u64) -> u64 {
    let mut buf = [0u8; 1024];
    buf[(depth % 1024) as usize] = depth as u8;
    if every != 0 && depth.is_multiple_of(every) {
        println!("deep-recursion: depth {depth}");
    }
    let below = recurse(black_box(depth + 1), every);
    // Work after the call, so it is not a tail call.
    black_box(&buf);
    below.wrapping_add(u64::from(buf[0]))
}

fn main() {
    let every = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    println!("deep-recursion: start");
    let r = recurse(0, every);
    // Unreachable in practice: recursion only ends by a trap.
    println!("deep-recursion: returned {r}");
}
