//! The Wilson score interval of a proportion.

/// The 95 % Wilson score interval of `successes` out of `trials`, as proportions (0 to 1);
/// (0, 0) when there are no trials.
pub fn wilson_95(successes: u64, trials: u64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 0.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At the edges the formula gives 0 and 1 up to rounding; say them exactly.
    let low = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if successes >= trials {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_interval_worked_by_hand() {
        // 81 of 263 and 0 of 100, worked by hand from the Wilson formula.
        let (low, high) = wilson_95(81, 263);
        assert!((low - 0.2553).abs() < 5e-4, "{low}");
        assert!((high - 0.3662).abs() < 5e-4, "{high}");
        let (low, high) = wilson_95(0, 100);
        assert_eq!(low, 0.0);
        assert!((high - 0.0370).abs() < 5e-4, "{high}");
        assert_eq!(wilson_95(0, 0), (0.0, 0.0));
    }
}
