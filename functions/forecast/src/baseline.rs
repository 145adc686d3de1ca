//! A multiplicative baseline under the booster: mean = level x one factor per feature value.
//!
//! Daily sales here are a product of main effects (store x item x weekday x month x year), and
//! trees cannot extrapolate a product: fitted before July, they have seen 2017 only in
//! January-June and send a July row of 2017 down the 2016 branches of splits on the later
//! months, so the mean runs low. A baseline fitted by iterative proportional fitting (the
//! Poisson maximum-likelihood main-effects model) carries every main effect, the year's
//! included, and `demand train` boosts the trees on top of it (LightGBM's `init_score`, the
//! log of the baseline), so they only model what the main effects leave.
//!
//! Serving multiplies the booster's prediction by the row's baseline. Factors are stored as
//! exact numbers and combined by multiplication only, in feature order, so the trainer, the
//! model function and the batch worker compute the same bits on any platform (no `exp`).

use serde::{Deserialize, Serialize};

use crate::gbdt::ExactF64;

/// Most distinct values a feature may have to get factors: far more than the calendar and
/// id features have, and it keeps a continuous feature out.
pub const MAX_LEVELS: usize = 4_096;

/// The baseline of a model: its level and one factor per value of each feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The mean of a row whose every factor is 1.
    pub level: ExactF64,
    /// One entry per feature, in the booster's column order.
    pub factors: Vec<Factors>,
}

/// The factors of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    /// The values seen in training, ascending.
    pub values: Vec<ExactF64>,
    /// The factor of each value.
    pub factors: Vec<ExactF64>,
}

impl Factors {
    /// The factor of `value`: that of the nearest value seen in training (the lower on a tie,
    /// the last beyond the range, so a later year keeps the last year's factor); 1 for NaN.
    fn of(&self, value: f64) -> f64 {
        if value.is_nan() {
            return 1.0;
        }
        let above = self.values.partition_point(|seen| seen.0 < value);
        let nearest = match (above.checked_sub(1), self.values.get(above)) {
            (None, _) => above,
            (Some(below), None) => below,
            (Some(below), Some(next)) => {
                if next.0 - value < value - self.values[below].0 {
                    above
                } else {
                    below
                }
            }
        };
        self.factors.get(nearest).map_or(1.0, |f| f.0)
    }
}

impl Baseline {
    /// Checks the baseline against the model's number of features: one entry each, values
    /// ascending and finite, factors finite and positive.
    pub fn check(&self, features: usize) -> Result<(), String> {
        if self.factors.len() != features {
            return Err(format!(
                "the baseline has factors for {} features, the model has {features}",
                self.factors.len()
            ));
        }
        let positive = |x: &ExactF64| x.0.is_finite() && x.0 > 0.0;
        if !positive(&self.level) {
            return Err(format!(
                "the baseline level {} is not positive",
                self.level.0
            ));
        }
        for (column, factors) in self.factors.iter().enumerate() {
            let ascending = factors.values.windows(2).all(|w| w[0].0 < w[1].0);
            if factors.values.len() != factors.factors.len()
                || factors.values.is_empty()
                || factors.values.len() > MAX_LEVELS
                || !ascending
                || !factors.values.iter().all(|v| v.0.is_finite())
                || !factors.factors.iter().all(positive)
            {
                return Err(format!(
                    "the baseline factors of feature {column} are not 1 to {MAX_LEVELS} \
                     ascending finite values, each with a positive factor"
                ));
            }
        }
        Ok(())
    }

    /// The baseline mean of one row (in the model's feature order).
    pub fn of(&self, row: &[f64]) -> f64 {
        let mut mean = self.level.0;
        for (factors, value) in self.factors.iter().zip(row) {
            mean *= factors.of(*value);
        }
        mean
    }

    /// Multiplies each row's prediction by its baseline; `values` holds the rows, row-major.
    pub fn apply(&self, values: &[f64], predictions: &mut [f64]) {
        let width = self.factors.len().max(1);
        for (prediction, row) in predictions.iter_mut().zip(values.chunks(width)) {
            *prediction *= self.of(row);
        }
    }

    /// Fits the baseline on `rows` (row-major, `width` values each) and their `labels` by
    /// iterative proportional fitting: each feature's factors in turn are scaled so that the
    /// baseline's total over the rows of each value equals the labels' total there (with half
    /// a unit added to both, so a value whose rows all sold nothing keeps a small positive
    /// factor), until no factor moves by more than 1e-9.
    pub fn fit(rows: &[f64], width: usize, labels: &[f32]) -> Result<Self, String> {
        if width == 0 || labels.is_empty() || rows.len() != labels.len() * width {
            return Err("the baseline needs at least one row of one feature".to_owned());
        }
        let total: f64 = labels.iter().map(|y| f64::from(*y)).sum();
        let level = (total + 0.5) / (labels.len() as f64 + 0.5);
        let mut columns = Vec::with_capacity(width);
        for column in 0..width {
            let mut values: Vec<f64> = rows.iter().skip(column).step_by(width).copied().collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!("feature {column} has a missing or infinite value"));
            }
            values.sort_by(f64::total_cmp);
            values.dedup();
            if values.len() > MAX_LEVELS {
                return Err(format!(
                    "feature {column} has {} distinct values; a baseline takes at most {MAX_LEVELS}",
                    values.len()
                ));
            }
            let index: Vec<usize> = rows
                .iter()
                .skip(column)
                .step_by(width)
                .map(|v| values.partition_point(|seen| seen < v))
                .collect();
            columns.push((values, index));
        }
        let mut factors: Vec<Vec<f64>> = columns.iter().map(|(v, _)| vec![1.0; v.len()]).collect();
        let mut mean = vec![level; labels.len()];
        for _ in 0..200 {
            let mut moved: f64 = 0.0;
            for ((values, index), factors) in columns.iter().zip(&mut factors) {
                let (mut sold, mut expected) = (vec![0.5; values.len()], vec![0.5; values.len()]);
                for ((at, y), m) in index.iter().zip(labels).zip(&mean) {
                    sold[*at] += f64::from(*y);
                    expected[*at] += m;
                }
                let scale: Vec<f64> = sold.iter().zip(&expected).map(|(s, e)| s / e).collect();
                for (m, at) in mean.iter_mut().zip(index) {
                    *m *= scale[*at];
                }
                for (factor, s) in factors.iter_mut().zip(&scale) {
                    *factor *= s;
                    moved = moved.max((s - 1.0).abs());
                }
            }
            if moved < 1e-9 {
                break;
            }
        }
        let exact = |xs: Vec<f64>| xs.into_iter().map(ExactF64).collect();
        let baseline = Self {
            level: ExactF64(level),
            factors: columns
                .into_iter()
                .zip(factors)
                .map(|((values, _), factors)| Factors {
                    values: exact(values),
                    factors: exact(factors),
                })
                .collect(),
        };
        baseline.check(width)?;
        Ok(baseline)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Rows of two features (3 stores x 4 weekdays) with labels exactly level x store x day.
    fn product_grid() -> (Vec<f64>, Vec<f32>) {
        let (store, day) = ([0.5, 1.0, 2.0], [1.0, 2.0, 4.0, 8.0]);
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for (s, fs) in store.iter().enumerate() {
            for (d, fd) in day.iter().enumerate() {
                rows.extend([s as f64 + 1.0, d as f64]);
                labels.push((10.0 * fs * fd) as f32);
            }
        }
        (rows, labels)
    }

    #[test]
    fn a_product_of_main_effects_is_fitted_back() {
        // GIVEN labels that are exactly a product of a store and a weekday factor
        let (rows, labels) = product_grid();
        // WHEN the baseline is fitted
        let baseline = Baseline::fit(&rows, 2, &labels).unwrap();
        // THEN it reproduces every label (the half-unit smoothing costs < 2%)
        for (row, label) in rows.chunks(2).zip(&labels) {
            let mean = baseline.of(row);
            let label = f64::from(*label);
            assert!(
                (mean / label - 1.0).abs() < 0.02,
                "{row:?}: {mean} vs {label}"
            );
        }
        // AND its totals per store match the labels' totals
        for store in 1..=3 {
            let (mut sold, mut fitted) = (0.0, 0.0);
            for (row, label) in rows.chunks(2).zip(&labels) {
                if row[0] == f64::from(store) {
                    sold += f64::from(*label);
                    fitted += baseline.of(row);
                }
            }
            assert!(
                (fitted / sold - 1.0).abs() < 0.01,
                "store {store}: {fitted} vs {sold}"
            );
        }
    }

    #[test]
    fn a_value_never_seen_takes_the_nearest_seen_one() {
        // GIVEN factors for years 2015, 2016, 2017
        let factors = Factors {
            values: [2015.0, 2016.0, 2017.0].map(ExactF64).to_vec(),
            factors: [1.0, 2.0, 3.0].map(ExactF64).to_vec(),
        };
        // THEN later years keep 2017's, earlier 2015's, a tie the lower, NaN none
        assert_eq!(factors.of(2018.0), 3.0);
        assert_eq!(factors.of(f64::INFINITY), 3.0);
        assert_eq!(factors.of(2000.0), 1.0);
        assert_eq!(factors.of(f64::NEG_INFINITY), 1.0);
        assert_eq!(factors.of(2015.5), 1.0);
        assert_eq!(factors.of(2015.6), 2.0);
        assert_eq!(factors.of(2016.0), 2.0);
        assert_eq!(factors.of(f64::NAN), 1.0);
    }

    #[test]
    fn the_baseline_survives_the_manifest_bit_for_bit() {
        let (rows, labels) = product_grid();
        let baseline = Baseline::fit(&rows, 2, &labels).unwrap();
        let text = serde_json::to_string(&baseline).unwrap();
        let back: Baseline = serde_json::from_str(&text).unwrap();
        assert_eq!(back, baseline);
    }

    #[test]
    fn a_baseline_that_does_not_fit_the_model_is_refused() {
        let (rows, labels) = product_grid();
        let baseline = Baseline::fit(&rows, 2, &labels).unwrap();
        assert!(baseline.check(2).is_ok());
        assert!(baseline.check(3).unwrap_err().contains("2 features"));
        let mut broken = baseline.clone();
        broken.factors[1].factors[0] = ExactF64(0.0);
        assert!(broken.check(2).unwrap_err().contains("feature 1"));
        let mut unsorted = baseline.clone();
        unsorted.factors[0].values.swap(0, 1);
        assert!(unsorted.check(2).unwrap_err().contains("feature 0"));
        let mut level = baseline;
        level.level = ExactF64(f64::NAN);
        assert!(level.check(2).unwrap_err().contains("level"));
    }

    #[test]
    fn fitting_refuses_what_it_cannot_fit() {
        assert!(Baseline::fit(&[], 1, &[]).is_err());
        assert!(Baseline::fit(&[1.0, f64::NAN], 1, &[1.0, 2.0]).is_err());
        let wide: Vec<f64> = (0..=MAX_LEVELS).map(|i| i as f64).collect();
        let labels = vec![1.0; wide.len()];
        let err = Baseline::fit(&wide, 1, &labels).unwrap_err();
        assert!(err.contains("distinct values"), "{err}");
    }

    proptest! {
        #[test]
        fn apply_multiplies_each_row_by_its_own_baseline(
            rows in prop::collection::vec((0u8..5, 0u8..3), 1..40),
            probe in prop::collection::vec((-2.0f64..8.0, -1.0f64..4.0), 1..20),
        ) {
            let flat: Vec<f64> = rows.iter().flat_map(|(a, b)| [f64::from(*a), f64::from(*b)]).collect();
            let labels: Vec<f32> = rows.iter().map(|(a, b)| f32::from(*a) + f32::from(*b) * 2.0).collect();
            let baseline = Baseline::fit(&flat, 2, &labels).unwrap();
            let values: Vec<f64> = probe.iter().flat_map(|(a, b)| [*a, *b]).collect();
            let mut predictions: Vec<f64> = (0..probe.len()).map(|i| 1.0 + i as f64).collect();
            baseline.apply(&values, &mut predictions);
            for (i, row) in values.chunks(2).enumerate() {
                let expected = (1.0 + i as f64) * baseline.of(row);
                prop_assert_eq!(predictions[i].to_bits(), expected.to_bits());
                prop_assert!(baseline.of(row) > 0.0);
            }
        }
    }
}
