//! Resource quantities (`100m`, `1.5Gi`, `2e3`) as integers, rounded up as
//! apimachinery's `Quantity.Value()` and `MilliValue()` do.

/// A quantity's value in units (`scale` 0) or thousandths (`scale` 3),
/// rounded up; `None` when the text is not a quantity. Saturates at `i64`.
fn scaled(text: &str, scale: i32) -> Option<i64> {
    let s = text.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let (mut exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    // The digits as one integer, the fraction moved into the exponent;
    // digits beyond what an i128 holds only matter below the rounding.
    let mut mantissa: i128 = 0;
    let mut dropped = false;
    for (i, c) in whole.bytes().chain(fraction.bytes()).enumerate() {
        let in_fraction = i >= whole.len();
        match mantissa.checked_mul(10) {
            Some(m) if m < i128::MAX / 1024 => {
                mantissa = m + i128::from(c - b'0');
                if in_fraction {
                    exp10 -= 1;
                }
            }
            _ => {
                dropped |= c != b'0';
                if !in_fraction {
                    exp10 += 1;
                }
            }
        }
    }
    let mut value = mantissa.saturating_mul(1i128 << exp2);
    let exp = exp10 + scale;
    if exp >= 0 {
        for _ in 0..exp {
            value = value.saturating_mul(10);
        }
    } else {
        let mut remainder = dropped;
        for _ in 0..(-exp).min(40) {
            remainder |= value % 10 != 0;
            value /= 10;
        }
        if (-exp) > 40 {
            remainder |= value != 0;
            value = 0;
        }
        if remainder && !negative {
            value += 1;
        }
    }
    let value = if negative { -value } else { value };
    Some(value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The value in units, rounded up (`1.5` is 2, `1Ki` is 1024).
pub fn value(text: &str) -> Option<i64> {
    scaled(text, 0)
}

/// The value in thousandths, rounded up (`100m` is 100, `0.5` is 500).
pub fn milli_value(text: &str) -> Option<i64> {
    scaled(text, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let cases: &[(&str, Option<i64>, Option<i64>)] = &[
            // text, value, milli value
            ("0", Some(0), Some(0)),
            ("1", Some(1), Some(1000)),
            ("100m", Some(1), Some(100)),
            ("1500m", Some(2), Some(1500)),
            ("0.5", Some(1), Some(500)),
            ("2.25", Some(3), Some(2250)),
            ("0.0001", Some(1), Some(1)),
            ("1k", Some(1000), Some(1_000_000)),
            ("16Mi", Some(16 << 20), Some((16 << 20) * 1000)),
            ("1Gi", Some(1 << 30), Some((1i64 << 30) * 1000)),
            ("1.5Gi", Some(3 << 29), Some((3i64 << 29) * 1000)),
            ("128974848", Some(128_974_848), Some(128_974_848_000)),
            ("129e6", Some(129_000_000), Some(129_000_000_000)),
            ("123E-3", Some(1), Some(123)),
            ("12n", Some(1), Some(1)),
            ("5u", Some(1), Some(1)),
            ("1M", Some(1_000_000), Some(1_000_000_000)),
            ("110", Some(110), Some(110_000)),
            ("+3", Some(3), Some(3000)),
            ("-1", Some(-1), Some(-1000)),
            (".5", Some(1), Some(500)),
            ("8E", Some(8_000_000_000_000_000_000), Some(i64::MAX)),
            ("", None, None),
            ("abc", None, None),
            ("1.2.3", None, None),
            ("1Xi", None, None),
            ("m", None, None),
        ];
        for (text, v, mv) in cases {
            assert_eq!(value(text), *v, "value of {text:?}");
            assert_eq!(milli_value(text), *mv, "milli value of {text:?}");
        }
    }
}
