//! `infinite-loop`: prints one line, then spins forever in a tight loop that
//! makes no system calls, so only the host's CPU limit (epoch interruption or
//! fuel) or a kill can stop it.

use std::hint::black_box;

fn main() {
    println!("infinite-loop: spinning");
    let mut n = 0u64;
    loop {
        // black_box keeps the loop (and its side effect on `n`) from being
        // optimised into nothing or into a single `loop {}`.
        n = black_box(n.wrapping_add(1));
    }
}
