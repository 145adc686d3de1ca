//! The predictive distribution of a model, chosen and scored on its validation rows.
//!
//! Two candidates are measured: the Poisson around the booster's prediction, and a negative
//! binomial whose dispersion is the method-of-moments estimate on the same rows (the spread
//! of the sales around an *estimated* mean is the Poisson noise plus the estimate's error).
//! The one with the lower mean weighted quantile loss over P10/P50/P90 is recorded; the
//! other is kept in the manifest as the alternative, with its own figures.

use forecast::distribution::{
    AlternativeDistribution, DEFAULT_LEVELS, DistributionInfo, Predictive, mean_wql,
    moment_dispersion, score_quantiles,
};
use rayon::prelude::*;

/// The distribution chosen for `predicted` means against `actual` sales, rows of `split`.
pub fn fit_distribution(split: &str, actual: &[f64], predicted: &[f64]) -> DistributionInfo {
    let candidates = [
        Predictive::POISSON,
        Predictive::negative_binomial(moment_dispersion(actual, predicted)),
    ];
    let mut scored: Vec<AlternativeDistribution> = candidates
        .into_iter()
        .map(|predictive| AlternativeDistribution {
            predictive,
            calibration: score_quantiles(
                &DEFAULT_LEVELS,
                actual,
                &quantiles(predictive, &DEFAULT_LEVELS, predicted),
            ),
        })
        .collect();
    scored.sort_by(|a, b| mean_wql(&a.calibration).total_cmp(&mean_wql(&b.calibration)));
    let chosen = scored.remove(0);
    DistributionInfo {
        predictive: chosen.predictive,
        estimated_on: split.to_owned(),
        rows: actual.len() as u64,
        ties: "half".to_owned(),
        calibration: chosen.calibration,
        alternatives: scored,
    }
}

/// The quantiles at `levels` of every row's distribution.
pub fn quantiles(predictive: Predictive, levels: &[f64], means: &[f64]) -> Vec<Vec<f64>> {
    means
        .par_iter()
        .map(|mean| predictive.at(*mean).quantiles(levels))
        .collect()
}

/// The SMAPE-optimal point of every row's distribution.
pub fn smape_points(predictive: Predictive, means: &[f64]) -> Vec<f64> {
    means
        .par_iter()
        .map(|mean| predictive.at(*mean).smape_point())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand_distr::{Distribution, Gamma, Poisson};

    /// Sales drawn from Poisson(true mean), predicted with a multiplicative error: the
    /// Poisson around the prediction is too narrow, the negative binomial fits.
    fn noisy_rows(error_cv: f64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let shape = 1.0 / (error_cv * error_cv);
        let error = Gamma::new(shape, 1.0 / shape).unwrap();
        let (mut actual, mut predicted) = (Vec::new(), Vec::new());
        for i in 0..20_000 {
            let prediction = 10.0 + f64::from(i % 90);
            let truth = prediction * error.sample(&mut rng);
            actual.push(Poisson::new(truth).unwrap().sample(&mut rng));
            predicted.push(prediction);
        }
        (actual, predicted)
    }

    #[test]
    fn an_overdispersed_error_chooses_the_negative_binomial_and_is_calibrated() {
        let (actual, predicted) = noisy_rows(0.15);
        let info = fit_distribution("time:x", &actual, &predicted);
        assert_eq!(
            info.predictive.family,
            forecast::distribution::Family::NegativeBinomial
        );
        // The error's squared coefficient of variation is the dispersion.
        assert!(
            (info.predictive.dispersion - 0.0225).abs() < 0.004,
            "{info:?}"
        );
        for score in &info.calibration {
            assert!((score.coverage - score.level).abs() < 0.02, "{score:?}");
        }
        let poisson = &info.alternatives[0].calibration;
        assert!((poisson[2].coverage - 0.9).abs() > 0.05, "{poisson:?}");
    }

    #[test]
    fn exact_means_keep_the_poisson_calibrated() {
        let (actual, predicted) = noisy_rows(1e-4);
        let info = fit_distribution("time:x", &actual, &predicted);
        for score in &info.calibration {
            assert!((score.coverage - score.level).abs() < 0.02, "{score:?}");
        }
        assert!(info.predictive.dispersion < 0.001, "{info:?}");
    }
}
