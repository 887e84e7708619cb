//! Measurements and the JSON lines that report them.

use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

/// Latency samples of one measurement.
#[derive(Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The mean in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / self.0.len() as f64
    }

    /// The `p`-th percentile (0..=100) in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let idx = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[idx].as_secs_f64() * 1000.0
    }
}

/// Which way a figure is better.
#[derive(Clone, Copy, Debug)]
pub enum Better {
    Higher,
    Lower,
}

/// Prints one result line, with the peer's figure and the ratio when given.
pub fn emit(suite: &str, name: &str, value: f64, unit: &str, peer: Option<(&str, f64, Better)>) {
    let mut line = json!({"suite": suite, "name": name, "value": round(value), "unit": unit});
    if let Some((peer, peer_value, better)) = peer {
        let ratio = match better {
            Better::Higher => value / peer_value,
            Better::Lower => peer_value / value,
        };
        let obj = line.as_object_mut().expect("an object");
        obj.insert("peer".into(), Value::from(peer));
        obj.insert("peer_value".into(), Value::from(round(peer_value)));
        obj.insert("ratio".into(), Value::from(round(ratio)));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
