//! `memory-bomb`: allocates (and touches) 1 MiB chunks until allocation
//! fails, then prints how much it got and exits 0.
//!
//! On Wasm, allocation fails when `memory.grow` is refused: by the host's
//! memory limit (a pod's `resources.limits.memory`) or at the 4 GiB ceiling of
//! wasm32. `try_reserve` turns that into an error instead of an abort, so the
//! guest can report it. A host that traps on a refused grow ends the guest
//! before the last line instead. Progress goes to stdout every 16 MiB.

use std::io::{self, Write};

const CHUNK: usize = 1 << 20;

fn main() {
    let mut out = io::stdout().lock();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    loop {
        if chunks.len() == chunks.capacity() && chunks.try_reserve(chunks.len().max(16)).is_err() {
            break;
        }
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(CHUNK).is_err() {
            break;
        }
        // Touch every page so the memory is really used, not just reserved.
        chunk.resize(CHUNK, 0xa5);
        chunks.push(std::hint::black_box(chunk));
        total += CHUNK;
        if total.is_multiple_of(16 * CHUNK) {
            let _ = writeln!(out, "memory-bomb: {} MiB", total / CHUNK);
        }
    }
    let _ = writeln!(
        out,
        "memory-bomb: allocation failed after {} MiB ({total} bytes)",
        total / CHUNK
    );
    let _ = out.flush();
}
