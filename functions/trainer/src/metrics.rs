//! Forecast accuracy metrics, with the definitions of the tools people compare against.

use std::collections::BTreeMap;

/// SMAPE as Kaggle scored the competition, in percent: the mean of
/// `200 |f - a| / (|a| + |f|)`, a term being 0 when actual and forecast are both 0.
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    mean(actual.iter().zip(forecast).map(|(a, f)| {
        let denominator = a.abs() + f.abs();
        if denominator == 0.0 {
            0.0
        } else {
            200.0 * (f - a).abs() / denominator
        }
    }))
}

/// MAPE as LightGBM defines it (a fraction): the mean of `|a - f| / max(1, |a|)`.
pub fn mape(actual: &[f64], forecast: &[f64]) -> f64 {
    mean(
        actual
            .iter()
            .zip(forecast)
            .map(|(a, f)| (a - f).abs() / a.abs().max(1.0)),
    )
}

/// Mean absolute error.
pub fn mae(actual: &[f64], forecast: &[f64]) -> f64 {
    mean(actual.iter().zip(forecast).map(|(a, f)| (a - f).abs()))
}

/// Root mean squared error.
pub fn rmse(actual: &[f64], forecast: &[f64]) -> f64 {
    mean(actual.iter().zip(forecast).map(|(a, f)| (a - f).powi(2))).sqrt()
}

/// Weighted absolute percentage error, a fraction: `sum |a - f| / sum |a|` (Amazon
/// Forecast's WAPE).
pub fn wape(actual: &[f64], forecast: &[f64]) -> f64 {
    let total: f64 = actual.iter().map(|a| a.abs()).sum();
    let error: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| (a - f).abs())
        .sum();
    if total > 0.0 { error / total } else { f64::NAN }
}

/// All four metrics by name, as recorded in the manifest.
pub fn all(actual: &[f64], forecast: &[f64]) -> BTreeMap<String, f64> {
    [
        ("smape", smape(actual, forecast)),
        ("mape", mape(actual, forecast)),
        ("mae", mae(actual, forecast)),
        ("rmse", rmse(actual, forecast)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0u64), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        let actual = [0.0, 10.0, 4.0];
        let forecast = [0.0, 8.0, 5.0];
        // SMAPE terms: 0 (both zero), 200*2/18, 200*1/9.
        assert!((smape(&actual, &forecast) - (400.0 / 18.0 + 200.0 / 9.0) / 3.0).abs() < 1e-12);
        // MAPE terms: 0/1, 2/10, 1/4.
        assert!((mape(&actual, &forecast) - (0.2 + 0.25) / 3.0).abs() < 1e-12);
        assert!((mae(&actual, &forecast) - 1.0).abs() < 1e-12);
        assert!((rmse(&actual, &forecast) - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((wape(&actual, &forecast) - 3.0 / 14.0).abs() < 1e-12);
    }

    #[test]
    fn mape_uses_one_as_the_floor_of_the_denominator() {
        assert!((mape(&[0.5], &[1.5]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn empty_input_gives_nan_not_a_panic() {
        assert!(smape(&[], &[]).is_nan());
    }
}
