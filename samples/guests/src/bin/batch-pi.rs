//! `batch-pi DIGITS`: prints the first DIGITS digits of pi (counting the
//! leading 3, so `batch-pi 5` prints `3.1415`) and exits 0. A batch job: CPU
//! bound, quadratic in DIGITS, with a known answer.
//!
//! A missing, unparsable, zero or too large DIGITS prints an error on stderr
//! and exits 2.

use std::io::{self, Write};
use std::process::ExitCode;

/// Time is quadratic and memory linear in the digit count; this keeps one run
/// under a few seconds of native time.
const MAX_DIGITS: usize = 100_000;

/// Guard digits computed past the ones printed, so that a run of 9s held back
/// by the spigot at the end never changes a printed digit.
const GUARD: usize = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let digits = match args.as_slice() {
        [_, n] => match n.parse::<usize>() {
            Ok(d) if (1..=MAX_DIGITS).contains(&d) => d,
            _ => {
                return usage(&format!(
                    "DIGITS must be a whole number from 1 to {MAX_DIGITS}, not {n:?}"
                ));
            }
        },
        _ => return usage("expected exactly one argument, DIGITS"),
    };
    let pi = pi_digits(digits);
    let mut out = io::stdout().lock();
    let mut line = String::with_capacity(digits + 2);
    for (i, d) in pi.iter().enumerate() {
        line.push(char::from(b'0' + d));
        if i == 0 && digits > 1 {
            line.push('.');
        }
    }
    line.push('\n');
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("batch-pi: {msg}\nusage: batch-pi DIGITS");
    ExitCode::from(2)
}

/// The first `n` decimal digits of pi (3, 1, 4, 1, 5, ...), by the
/// Rabinowitz–Wagon spigot: pi in the mixed radix (1/3, 2/5, 3/7, ...),
/// multiplied by 10 and renormalised once per digit, with predigits held back
/// while they might still be raised by a carry.
fn pi_digits(n: usize) -> Vec<u8> {
    let want = n + GUARD;
    let len = want * 10 / 3 + 1;
    let mut a = vec![2u64; len];
    let mut out: Vec<u8> = Vec::with_capacity(want + 1);
    let mut nines = 0usize;
    let mut predigit: Option<u8> = None;
    for _ in 0..want {
        let mut carry = 0u64;
        for i in (1..len).rev() {
            let x = a[i] * 10 + carry * (i as u64 + 1);
            let den = 2 * i as u64 + 1;
            a[i] = x % den;
            carry = x / den;
        }
        let x = a[0] * 10 + carry;
        a[0] = x % 10;
        let q = (x / 10) as u8;
        match q {
            9 => nines += 1,
            10 => {
                out.push(predigit.map_or(1, |p| p + 1));
                out.extend(std::iter::repeat_n(0, nines));
                predigit = Some(0);
                nines = 0;
            }
            _ => {
                if let Some(p) = predigit {
                    out.push(p);
                }
                out.extend(std::iter::repeat_n(9, nines));
                predigit = Some(q);
                nines = 0;
            }
        }
    }
    if let Some(p) = predigit {
        out.push(p);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::pi_digits;

    const PI_101: &str = "31415926535897932384626433832795028841971693993751\
                          058209749445923078164062862089986280348253421170679";

    #[test]
    fn known_digits() {
        for n in [1, 2, 5, 50, 101] {
            let got: String = pi_digits(n).iter().map(|d| char::from(b'0' + d)).collect();
            assert_eq!(got, PI_101[..n], "{n} digits");
        }
    }

    #[test]
    fn a_run_of_nines() {
        // Digits 763..=768 after the point are the Feynman point, 999999.
        let d = pi_digits(770);
        assert_eq!(&d[762..768], &[9; 6]);
    }
}
