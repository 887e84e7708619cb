//! Resource quantities as Kubernetes writes them (`500m`, `1.5`, `128Mi`,
//! `1e3`, `2G`) turned into numbers: CPU in millicores, everything else in
//! base units.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in base units (`500m` is 0.5, `1Ki` is 1024).
pub fn value(q: &str) -> Option<f64> {
    let q = q.trim();
    let end = q
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '+' || c == '-') && i == 0)))
        .map_or(q.len(), |(i, _)| i);
    let (number, suffix) = q.split_at(end);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let v = number * factor;
    v.is_finite().then_some(v)
}

/// A CPU quantity in millicores, rounded up (`0.1` and `100m` are 100).
pub fn millicores(q: &Quantity) -> Option<i64> {
    value(&q.0).map(|v| (v * 1000.0 - 1e-9).ceil() as i64)
}

/// A quantity in base units, rounded up (bytes for memory).
pub fn units(q: &Quantity) -> Option<i64> {
    value(&q.0).map(|v| (v - 1e-9).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn parses_kubernetes_quantities() {
        for (text, want) in [
            ("1", 1.0),
            ("0.5", 0.5),
            ("500m", 0.5),
            ("1Ki", 1024.0),
            ("128Mi", 128.0 * 1024.0 * 1024.0),
            ("1Gi", 1024f64.powi(3)),
            ("2G", 2e9),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("12E", 12e18),
            ("+3", 3.0),
        ] {
            assert_eq!(value(text), Some(want), "{text}");
        }
        for bad in ["", "Mi", "1Q", "1.2.3", "e3", "1e"] {
            assert_eq!(value(bad), None, "{bad}");
        }
    }

    #[test]
    fn cpu_and_memory_round_up() {
        assert_eq!(millicores(&q("100m")), Some(100));
        assert_eq!(millicores(&q("0.1")), Some(100));
        assert_eq!(millicores(&q("2")), Some(2000));
        assert_eq!(millicores(&q("1.0001")), Some(1001));
        assert_eq!(units(&q("64Mi")), Some(64 << 20));
        assert_eq!(units(&q("1.5Ki")), Some(1536));
    }
}
