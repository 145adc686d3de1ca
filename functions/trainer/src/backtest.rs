//! Rolling-origin backtests: `demand backtest --windows K --horizon H`.
//!
//! The last `K x H` days of the history are cut into `K` consecutive windows of `H` days.
//! For each window a booster is fitted on every row before the window's first day, with the
//! recipe (features, parameters) of a trained model, and scored on the window: the mean
//! point's SMAPE, MAPE, MAE, RMSE and WAPE, the SMAPE-optimal point's SMAPE, and each
//! default quantile's coverage (ties half) and wQL under the model's predictive
//! distribution as its manifest records it (so the quantiles are scored out of sample).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{Days, NaiveDate};
use forecast::distribution::{DEFAULT_LEVELS, Predictive, level_key, score_quantiles};
use forecast::features::Feature;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::SalesRecord;
use crate::train::{fit_booster, matrix};
use crate::{calibrate, metrics};

/// One scored window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestWindow {
    /// First day scored (the booster saw only earlier days).
    pub start: String,
    /// Last day scored.
    pub end: String,
    /// Rows fitted on.
    pub fit_rows: u64,
    /// Rows scored.
    pub rows: u64,
    /// Every metric, by name.
    pub metrics: BTreeMap<String, f64>,
}

/// A whole backtest: the windows and the mean of each metric over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backtest {
    /// Number of windows.
    pub windows: u32,
    /// Days per window.
    pub horizon: u32,
    /// The distribution the quantiles were scored with.
    pub distribution: Predictive,
    /// Each window, oldest first.
    pub results: Vec<BacktestWindow>,
    /// The mean of each metric over the windows.
    pub mean: BTreeMap<String, f64>,
}

/// The first day of each of `windows` windows of `horizon` days ending on `last`.
pub fn window_starts(
    last: NaiveDate,
    windows: u32,
    horizon: u32,
) -> anyhow::Result<Vec<NaiveDate>> {
    anyhow::ensure!(
        windows >= 1 && horizon >= 1,
        "--windows and --horizon must be at least 1"
    );
    (0..windows)
        .map(|i| {
            let back = u64::from(windows - i) * u64::from(horizon);
            last.checked_sub_days(Days::new(back - 1))
                .context("the windows reach before the first representable date")
        })
        .collect()
}

/// Runs the backtest of the recipe (`features`, `parameters`) on `records`.
pub fn backtest(
    records: &[SalesRecord],
    features: &[Feature],
    parameters: &Map<String, Value>,
    distribution: Predictive,
    windows: u32,
    horizon: u32,
    mut progress: impl FnMut(&BacktestWindow),
) -> anyhow::Result<Backtest> {
    let last = records
        .iter()
        .map(|r| r.date)
        .max()
        .context("the history is empty")?;
    let starts = window_starts(last, windows, horizon)?;
    let mut results = Vec::with_capacity(starts.len());
    for start in starts {
        let end = start
            .checked_add_days(Days::new(u64::from(horizon) - 1))
            .context("window end out of range")?;
        let fit: Vec<SalesRecord> = records.iter().filter(|r| r.date < start).copied().collect();
        let scored: Vec<SalesRecord> = records
            .iter()
            .filter(|r| r.date >= start && r.date <= end)
            .copied()
            .collect();
        anyhow::ensure!(
            !fit.is_empty(),
            "no rows before the window starting {start}"
        );
        anyhow::ensure!(!scored.is_empty(), "no rows in the window starting {start}");
        let fitted = fit_booster(features, &fit, parameters)?;
        let (x, y) = matrix(features, &scored);
        let predicted = fitted.predict(features.len(), &x)?;
        let actual: Vec<f64> = y.iter().map(|v| f64::from(*v)).collect();
        let window = BacktestWindow {
            start: start.to_string(),
            end: end.to_string(),
            fit_rows: fit.len() as u64,
            rows: scored.len() as u64,
            metrics: window_metrics(&actual, &predicted, distribution),
        };
        progress(&window);
        results.push(window);
    }
    let mut mean = BTreeMap::new();
    for window in &results {
        for (name, value) in &window.metrics {
            *mean.entry(name.clone()).or_insert(0.0) += value / results.len() as f64;
        }
    }
    Ok(Backtest {
        windows,
        horizon,
        distribution,
        results,
        mean,
    })
}

/// Every metric of one window.
pub fn window_metrics(
    actual: &[f64],
    predicted: &[f64],
    distribution: Predictive,
) -> BTreeMap<String, f64> {
    let mut report = metrics::all(actual, predicted);
    report.insert("wape".to_owned(), metrics::wape(actual, predicted));
    let points = calibrate::smape_points(distribution, predicted);
    report.insert(
        "smape_point_smape".to_owned(),
        metrics::smape(actual, &points),
    );
    let quantiles = calibrate::quantiles(distribution, &DEFAULT_LEVELS, predicted);
    for score in score_quantiles(&DEFAULT_LEVELS, actual, &quantiles) {
        let key = level_key(score.level);
        report.insert(format!("{key}_coverage"), score.coverage);
        report.insert(format!("{key}_wql"), score.wql);
    }
    report
}

/// The backtest as a text table: one row per window and the mean.
pub fn table(backtest: &Backtest) -> String {
    let columns = [
        "smape",
        "smape_point_smape",
        "wape",
        "mae",
        "rmse",
        "mape",
        "p10_coverage",
        "p50_coverage",
        "p90_coverage",
        "p10_wql",
        "p50_wql",
        "p90_wql",
    ];
    let mut out = format!("{:<23}", "window");
    for column in columns {
        out.push_str(&format!(" {column:>17}"));
    }
    out.push('\n');
    let row = |label: String, metrics: &BTreeMap<String, f64>| {
        let mut line = format!("{label:<23}");
        for column in columns {
            let value = metrics.get(column).copied().unwrap_or(f64::NAN);
            line.push_str(&format!(" {value:>17.4}"));
        }
        line.push('\n');
        line
    };
    for window in &backtest.results {
        out.push_str(&row(
            format!("{}..{}", window.start, window.end),
            &window.metrics,
        ));
    }
    out.push_str(&row("mean".to_owned(), &backtest.mean));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::generated_history;
    use serde_json::json;

    #[test]
    fn windows_tile_the_end_of_the_history() {
        let last = NaiveDate::from_ymd_opt(2017, 12, 31).unwrap();
        let starts = window_starts(last, 4, 90).unwrap();
        let days: Vec<String> = starts.iter().map(ToString::to_string).collect();
        assert_eq!(
            days,
            ["2017-01-06", "2017-04-06", "2017-07-05", "2017-10-03"]
        );
        // The last window ends on the last day.
        assert_eq!(starts[3].checked_add_days(Days::new(89)), Some(last));
        assert!(window_starts(last, 0, 90).is_err());
    }

    #[test]
    fn each_window_is_fitted_only_on_earlier_days_and_scored_on_its_own() {
        let end = NaiveDate::from_ymd_opt(2014, 12, 31).unwrap();
        let (_dir, history) = generated_history(2, 2, end, 1);
        let mut parameters = crate::train::original_parameters();
        parameters.insert("num_iterations".into(), json!(20));
        let features = forecast::features::ORIGINAL_FEATURES.to_vec();
        let mut seen = 0;
        let result = backtest(
            &history.records,
            &features,
            &parameters,
            Predictive::POISSON,
            3,
            30,
            |_| seen += 1,
        )
        .unwrap();
        assert_eq!(seen, 3);
        assert_eq!(result.results.len(), 3);
        for (i, window) in result.results.iter().enumerate() {
            // 2 stores x 2 items x 30 days each, and every earlier day to fit on.
            assert_eq!(window.rows, 120);
            let start = NaiveDate::parse_from_str(&window.start, "%Y-%m-%d").unwrap();
            let before = history.records.iter().filter(|r| r.date < start).count();
            assert_eq!(window.fit_rows, before as u64, "window {i}");
            assert!(window.metrics["smape"] < 40.0, "{window:?}");
        }
        let mean_smape: f64 = result
            .results
            .iter()
            .map(|w| w.metrics["smape"])
            .sum::<f64>()
            / 3.0;
        assert!((result.mean["smape"] - mean_smape).abs() < 1e-12);
        assert!(table(&result).lines().count() == 5);
    }
}
