//! Predictive distributions around a point forecast: quantiles, the SMAPE-optimal point and
//! the calibration figures of both.
//!
//! Daily sales are counts. A booster predicts one number per row, its estimate of the mean;
//! the distribution of the sales around it is modelled as Poisson (variance = mean) or as
//! negative binomial (variance = mean + `dispersion` x mean², the extra spread coming from
//! the error of the mean itself). The trainer estimates the dispersion on the validation
//! rows and records the family and dispersion in the manifest ([`DistributionInfo`]), so a
//! server computes quantiles from the booster's prediction and the manifest alone.
//!
//! A quantile at level `p` is the smallest count `k` with `P(Y <= k) >= p` (a whole number:
//! a store cannot sell 12.4 units). Coverage counts a row whose actual equals its quantile as
//! half covered (see [`coverage_credit`]), because with integer sales the plain `actual <= q`
//! count reads systematically high.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// Quantile levels a prediction carries by default: P10, P50, P90.
pub const DEFAULT_LEVELS: [f64; 3] = [0.1, 0.5, 0.9];

/// Most quantile levels one request may ask for.
pub const MAX_LEVELS: usize = 19;

/// Above this many standard deviations below the mean the walk over the counts starts: the
/// mass below is far under `1e-30` for a Poisson or a negative binomial whose lower end
/// is that far from zero, and the first probability stays a normal `f64`.
const START_SDS: f64 = 12.0;

/// The walk stops this many standard deviations above the mean even if rounding kept the
/// cumulative sum under a level very close to 1.
const STOP_SDS: f64 = 40.0;

/// The family of a predictive distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Variance equals the mean.
    Poisson,
    /// Variance = mean + dispersion x mean².
    NegativeBinomial,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Poisson => "poisson",
            Self::NegativeBinomial => "negative_binomial",
        })
    }
}

/// Which number a prediction answers as its point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// The booster's prediction (an estimate of the mean): what clients always got.
    #[default]
    Mean,
    /// The point that minimises the expected SMAPE under the predictive distribution.
    Smape,
}

impl PointKind {
    /// Whether this is the default, [`PointKind::Mean`].
    pub fn is_mean(&self) -> bool {
        *self == Self::Mean
    }

    /// Parses `mean` or `smape`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "mean" => Some(Self::Mean),
            "smape" => Some(Self::Smape),
            _ => None,
        }
    }
}

impl fmt::Display for PointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mean => "mean",
            Self::Smape => "smape",
        })
    }
}

/// A count distribution with a given mean: its family and dispersion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Predictive {
    /// Poisson or negative binomial.
    pub family: Family,
    /// `alpha` in variance = mean + alpha x mean²; 0 for Poisson. A negative binomial with
    /// dispersion 0 is the Poisson.
    pub dispersion: f64,
}

impl Predictive {
    /// The Poisson.
    pub const POISSON: Self = Self {
        family: Family::Poisson,
        dispersion: 0.0,
    };

    /// A negative binomial with `dispersion` (negative or non-finite values give the Poisson).
    pub fn negative_binomial(dispersion: f64) -> Self {
        if dispersion.is_finite() && dispersion > 0.0 {
            Self {
                family: Family::NegativeBinomial,
                dispersion,
            }
        } else {
            Self {
                family: Family::NegativeBinomial,
                dispersion: 0.0,
            }
        }
    }

    /// The effective `alpha`: 0 for the Poisson and for unusable dispersions.
    fn alpha(self) -> f64 {
        match self.family {
            Family::Poisson => 0.0,
            Family::NegativeBinomial if self.dispersion.is_finite() && self.dispersion > 0.0 => {
                self.dispersion
            }
            Family::NegativeBinomial => 0.0,
        }
    }

    /// The distribution of the sales of a row whose predicted mean is `mean` (negative or
    /// non-finite means are treated as 0: no sales).
    pub fn at(self, mean: f64) -> Counts {
        let mean = if mean.is_finite() && mean > 0.0 {
            mean
        } else {
            0.0
        };
        Counts {
            mean,
            alpha: self.alpha(),
        }
    }
}

/// The distribution of one row's sales: a Poisson (`alpha` = 0) or negative binomial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    mean: f64,
    alpha: f64,
}

impl Counts {
    /// The mean.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The variance.
    pub fn variance(&self) -> f64 {
        self.mean + self.alpha * self.mean * self.mean
    }

    /// `ln P(Y = k)`.
    pub fn ln_pmf(&self, k: u64) -> f64 {
        let k_f = k as f64;
        if self.mean == 0.0 {
            return if k == 0 { 0.0 } else { f64::NEG_INFINITY };
        }
        if self.alpha == 0.0 {
            return k_f * self.mean.ln() - self.mean - ln_factorial(k);
        }
        let r = 1.0 / self.alpha;
        ln_gamma(k_f + r) - ln_gamma(r) - ln_factorial(k) - r * (self.alpha * self.mean).ln_1p()
            + k_f * (self.mean / (r + self.mean)).ln()
    }

    /// `P(Y = k) / P(Y = k - 1)` for `k >= 1`.
    fn ratio(&self, k: u64) -> f64 {
        let k_f = k as f64;
        if self.alpha == 0.0 {
            self.mean / k_f
        } else {
            let r = 1.0 / self.alpha;
            (k_f - 1.0 + r) / k_f * (self.mean / (r + self.mean))
        }
    }

    /// `P(Y <= k)`.
    pub fn cdf(&self, k: u64) -> f64 {
        let mut total = 0.0;
        for (count, p) in self.walk() {
            if count > k {
                break;
            }
            total += p;
        }
        total.min(1.0)
    }

    /// The probabilities of the counts from where the mass starts, in order.
    fn walk(&self) -> Walk {
        let sd = self.variance().sqrt();
        let start = (self.mean - START_SDS * sd).floor().max(0.0) as u64;
        let stop = (self.mean + STOP_SDS * sd + 64.0).ceil() as u64;
        Walk {
            counts: *self,
            next: start,
            stop,
            p: self.ln_pmf(start).exp(),
        }
    }

    /// The quantiles at `levels` (each in (0, 1), ascending), one walk over the counts.
    /// Writes `levels.len()` values into `out` (cleared first).
    pub fn quantiles_into(&self, levels: &[f64], out: &mut Vec<f64>) {
        out.clear();
        let mut cumulative = 0.0;
        let mut last = 0;
        for (count, p) in self.walk() {
            if out.len() == levels.len() {
                break;
            }
            cumulative += p;
            last = count;
            while levels
                .get(out.len())
                .is_some_and(|level| cumulative >= *level)
            {
                out.push(count as f64);
            }
        }
        // Levels so close to 1 that the rounded sum never reached them get the last count.
        out.resize(levels.len(), last as f64);
    }

    /// The quantiles at `levels` (each in (0, 1), ascending).
    pub fn quantiles(&self, levels: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(levels.len());
        self.quantiles_into(levels, &mut out);
        out
    }

    /// The expected SMAPE (in percent, Kaggle's definition) of forecasting `f`.
    pub fn expected_smape(&self, f: f64) -> f64 {
        let mut total = 0.0;
        for (count, p) in self.walk() {
            total += p * smape_term(count as f64, f);
        }
        total
    }

    /// The point that minimises the expected SMAPE. Each SMAPE term is convex in the
    /// forecast below its actual and concave above it, so the expected SMAPE can have several
    /// local minima, mostly at whole numbers: every count between the 1% and 99% quantiles
    /// (and 0) is tried, then a golden-section search refines between the best count's
    /// neighbours. The tests check the result against a fine grid.
    pub fn smape_point(&self) -> f64 {
        if self.mean == 0.0 {
            return 0.0;
        }
        let support: Vec<(f64, f64)> = self
            .walk()
            .filter(|(_, p)| *p > 1e-15)
            .map(|(k, p)| (k as f64, p))
            .collect();
        let expected = |f: f64| -> f64 {
            support
                .iter()
                .map(|(count, p)| p * smape_term(*count, f))
                .sum()
        };
        let bounds = self.quantiles(&[0.01, 0.99]);
        let first = bounds.first().copied().unwrap_or(0.0) as u64;
        let last = bounds.last().copied().unwrap_or(0.0) as u64;
        let (mut best, mut best_value) = (0.0, expected(0.0));
        for count in first.max(1)..=last.max(1) {
            let value = expected(count as f64);
            if value < best_value {
                (best, best_value) = (count as f64, value);
            }
        }
        const GOLDEN: f64 = 0.618_033_988_749_894_9;
        let (mut lo, mut hi) = ((best - 1.0).max(0.0), best + 1.0);
        let mut a = hi - GOLDEN * (hi - lo);
        let mut b = lo + GOLDEN * (hi - lo);
        let (mut fa, mut fb) = (expected(a), expected(b));
        while hi - lo > 1e-6 * best.max(1.0) {
            if fa <= fb {
                (hi, b, fb) = (b, a, fa);
                a = hi - GOLDEN * (hi - lo);
                fa = expected(a);
            } else {
                (lo, a, fa) = (a, b, fb);
                b = lo + GOLDEN * (hi - lo);
                fb = expected(b);
            }
        }
        let refined = 0.5 * (lo + hi);
        if expected(refined) < best_value {
            refined
        } else {
            best
        }
    }
}

/// The probabilities of successive counts, each from the previous by the pmf's ratio.
struct Walk {
    counts: Counts,
    next: u64,
    stop: u64,
    p: f64,
}

impl Iterator for Walk {
    type Item = (u64, f64);

    fn next(&mut self) -> Option<(u64, f64)> {
        if self.next > self.stop {
            return None;
        }
        let item = (self.next, self.p);
        self.next += 1;
        self.p *= self.counts.ratio(self.next);
        Some(item)
    }
}

/// One SMAPE term, in percent: `200 |f - a| / (|a| + |f|)`, 0 when both are 0.
pub fn smape_term(actual: f64, forecast: f64) -> f64 {
    let denominator = actual.abs() + forecast.abs();
    if denominator == 0.0 {
        0.0
    } else {
        200.0 * (forecast - actual).abs() / denominator
    }
}

/// How much a row counts as covered by a quantile `q`: 1 when the actual is below it, 0 when
/// above, and one half when they are equal. Sales and quantiles are whole numbers, so ties
/// are frequent; counting them fully would read a Poisson P50 as about 54% covered.
pub fn coverage_credit(actual: f64, q: f64) -> f64 {
    if actual < q {
        1.0
    } else if actual == q {
        0.5
    } else {
        0.0
    }
}

/// `ln Γ(x)` for `x > 0`: the recurrence up to 10, then Stirling's series (error below
/// 1e-13 there).
pub fn ln_gamma(x: f64) -> f64 {
    // NaN fails the comparison too.
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    let mut shift = 0.0;
    let mut x = x;
    while x < 10.0 {
        shift += x.ln();
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series =
        inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0))));
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + series - shift
}

/// `ln k!`.
pub fn ln_factorial(k: u64) -> f64 {
    // Exact sums for small k keep the common case free of series error.
    if k < 20 {
        (2..=k).map(|i| (i as f64).ln()).sum()
    } else {
        ln_gamma(k as f64 + 1.0)
    }
}

/// The dispersion of a negative binomial fitted to `(actual, mean)` pairs by the method of
/// moments: `sum((y - mu)² - mu) / sum(mu²)`, at least 0 (0 = no spread beyond Poisson).
pub fn moment_dispersion(actual: &[f64], mean: &[f64]) -> f64 {
    let (excess, scale) = actual
        .iter()
        .zip(mean)
        .filter(|(_, mu)| mu.is_finite() && **mu > 0.0)
        .fold((0.0, 0.0), |(excess, scale), (y, mu)| {
            (excess + (y - mu).powi(2) - mu, scale + mu * mu)
        });
    if scale > 0.0 {
        (excess / scale).max(0.0)
    } else {
        0.0
    }
}

/// How well one quantile level did on a set of rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileScore {
    /// The level, in (0, 1).
    pub level: f64,
    /// Share of rows whose actual fell below the quantile, ties counting one half.
    pub coverage: f64,
    /// Weighted quantile loss (Amazon Forecast's wQL):
    /// `2 sum(level (y - q)+ + (1 - level) (q - y)+) / sum |y|`.
    pub wql: f64,
    /// Weighted absolute percentage error of the quantile as a point: `sum |y - q| / sum |y|`.
    pub wape: f64,
}

/// Scores the quantiles `quantiles[row][i]` at `levels[i]` against `actual[row]`.
pub fn score_quantiles(
    levels: &[f64],
    actual: &[f64],
    quantiles: &[Vec<f64>],
) -> Vec<QuantileScore> {
    let total: f64 = actual.iter().map(|y| y.abs()).sum();
    let rows = actual.len().max(1) as f64;
    levels
        .iter()
        .enumerate()
        .map(|(i, &level)| {
            let (mut covered, mut loss, mut absolute) = (0.0, 0.0, 0.0);
            for (y, q) in actual.iter().zip(quantiles) {
                let q = q.get(i).copied().unwrap_or(f64::NAN);
                covered += coverage_credit(*y, q);
                loss += level * (y - q).max(0.0) + (1.0 - level) * (q - y).max(0.0);
                absolute += (y - q).abs();
            }
            QuantileScore {
                level,
                coverage: covered / rows,
                wql: if total > 0.0 {
                    2.0 * loss / total
                } else {
                    f64::NAN
                },
                wape: if total > 0.0 {
                    absolute / total
                } else {
                    f64::NAN
                },
            }
        })
        .collect()
}

/// A predictive distribution as the manifest records it: the family and dispersion, where
/// they were estimated, and how the quantiles did there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionInfo {
    /// Poisson or negative binomial, and its dispersion.
    #[serde(flatten)]
    pub predictive: Predictive,
    /// The split whose validation rows estimated the dispersion and scored the quantiles.
    pub estimated_on: String,
    /// Number of those rows.
    pub rows: u64,
    /// How coverage treats an actual equal to its quantile (`half`: one half covered).
    pub ties: String,
    /// Per default level: coverage, wQL, WAPE on those rows.
    pub calibration: Vec<QuantileScore>,
    /// The candidates that were not chosen, scored on the same rows.
    #[serde(default)]
    pub alternatives: Vec<AlternativeDistribution>,
}

/// A candidate distribution that was measured but not chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlternativeDistribution {
    /// Poisson or negative binomial, and its dispersion.
    #[serde(flatten)]
    pub predictive: Predictive,
    /// Per default level: coverage, wQL, WAPE.
    pub calibration: Vec<QuantileScore>,
}

/// The mean wQL over the levels of a calibration, the figure the family is chosen by.
pub fn mean_wql(calibration: &[QuantileScore]) -> f64 {
    calibration.iter().map(|s| s.wql).sum::<f64>() / calibration.len().max(1) as f64
}

/// `0.1` -> `p10`, `0.025` -> `p2.5`, `0.999` -> `p99.9`: the key of a quantile level in
/// answers. Built from the shortest decimal form of the level, so it never shows binary
/// noise like `p10.000000000000002`.
pub fn level_key(level: f64) -> String {
    // Clients nearly always ask for whole percents; their keys are formatted once. (On the
    // one-row path formatting three levels was a third of what quantiles cost.)
    static PERCENT_KEYS: LazyLock<Vec<String>> = LazyLock::new(|| {
        (1..=99u8)
            .map(|percent| decimal_level_key(f64::from(percent) / 100.0))
            .collect()
    });
    let percent = (level * 100.0).round();
    if (1.0..=99.0).contains(&percent) && percent / 100.0 == level {
        // `percent` is a whole number from 1 to 99, so the index is in the table.
        if let Some(key) = PERCENT_KEYS.get(percent as usize - 1) {
            return key.clone();
        }
    }
    decimal_level_key(level)
}

/// [`level_key`] from the shortest decimal form of `level`.
fn decimal_level_key(level: f64) -> String {
    let text = format!("{level}");
    let Some(fraction) = text.strip_prefix("0.") else {
        return format!("p{}", level * 100.0);
    };
    let padded = format!("{fraction:0<2}");
    let (whole, rest) = padded.split_at(2);
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    if rest.is_empty() {
        format!("p{whole}")
    } else {
        format!("p{whole}.{rest}")
    }
}

/// Values keyed by quantile level (`p10`, `p50`, ...), in ascending level order: a JSON
/// object whose keys keep that order (a sorted map would put `p5` after `p10`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LevelMap<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for LevelMap<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LevelMap<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelMapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for LevelMapVisitor<T> {
            type Value = LevelMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by quantile level")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(LevelMap(entries))
            }
        }
        deserializer.deserialize_map(LevelMapVisitor(std::marker::PhantomData))
    }
}

/// A list of quantile levels that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LevelsError(pub String);

/// Validates requested levels: 1..=[`MAX_LEVELS`] of them, each strictly between 0 and 1.
/// Returns them ascending without duplicates (answers are keyed by level).
pub fn parse_levels(levels: &[f64]) -> Result<Vec<f64>, LevelsError> {
    if levels.is_empty() {
        return Err(LevelsError(
            "ask for at least one quantile level".to_owned(),
        ));
    }
    if levels.len() > MAX_LEVELS {
        return Err(LevelsError(format!(
            "at most {MAX_LEVELS} quantile levels per request, got {}",
            levels.len()
        )));
    }
    if let Some(bad) = levels
        .iter()
        .find(|l| l.is_nan() || **l <= 0.0 || **l >= 1.0)
    {
        return Err(LevelsError(format!(
            "quantile levels must be strictly between 0 and 1, got {bad}"
        )));
    }
    let mut sorted = levels.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1.0)
    }

    #[test]
    fn ln_gamma_matches_known_values() {
        // Γ(1/2) = √π, Γ(1) = Γ(2) = 1, Γ(5) = 24, Γ(10.5) from tables, 170! from its log.
        let pi_sqrt_ln = 0.5 * std::f64::consts::PI.ln();
        for (x, expected) in [
            (0.5, pi_sqrt_ln),
            (1.0, 0.0),
            (2.0, 0.0),
            (5.0, 24f64.ln()),
            (10.5, 1_133_278.388_948_786_3f64.ln()),
            (171.0, 706.573_062_245_787_4),
        ] {
            assert!(close(ln_gamma(x), expected, 1e-12), "{x}: {}", ln_gamma(x));
        }
        assert!(ln_gamma(0.0).is_nan() && ln_gamma(-1.0).is_nan());
    }

    #[test]
    fn poisson_pmf_and_cdf_match_known_values() {
        let p = Predictive::POISSON.at(3.0);
        // P(Y = 2) = e^-3 3² / 2!, P(Y <= 2) = e^-3 (1 + 3 + 4.5).
        assert!(close(p.ln_pmf(2).exp(), (-3f64).exp() * 4.5, 1e-13));
        assert!(close(p.cdf(2), (-3f64).exp() * 8.5, 1e-13));
        // Poisson(10): P(Y <= 10) = 0.583039750192 (tables).
        assert!(close(
            Predictive::POISSON.at(10.0).cdf(10),
            0.583_039_750_192,
            1e-10
        ));
    }

    #[test]
    fn negative_binomial_pmf_matches_known_values() {
        // mean 4, alpha 0.5: size r = 2, success probability r / (r + mean) = 1/3;
        // P(Y = k) = C(k + 1, k) (1/3)² (2/3)^k.
        let nb = Predictive::negative_binomial(0.5).at(4.0);
        for k in 0..6u64 {
            let expected = (k + 1) as f64 / 9.0 * (2.0f64 / 3.0).powi(k as i32);
            assert!(close(nb.ln_pmf(k).exp(), expected, 1e-12), "{k}");
        }
        assert!(close(nb.variance(), 4.0 + 0.5 * 16.0, 1e-15));
        // The pmf sums to 1 over the walk.
        let total: f64 = nb.walk().map(|(_, p)| p).sum();
        assert!(close(total, 1.0, 1e-12), "{total}");
    }

    #[test]
    fn quantiles_are_the_smallest_count_reaching_the_level() {
        // Poisson(3): F(0)=0.0498, F(1)=0.1991, F(2)=0.4232, F(3)=0.6472, F(4)=0.8153,
        // F(5)=0.9161.
        let p = Predictive::POISSON.at(3.0);
        assert_eq!(
            p.quantiles(&[0.04, 0.1, 0.5, 0.9, 0.95]),
            [0.0, 1.0, 3.0, 5.0, 6.0]
        );
        // Poisson(50): P10 = 41, P50 = 50, P90 = 59 (R: qpois(c(.1,.5,.9), 50)).
        assert_eq!(
            Predictive::POISSON.at(50.0).quantiles(&DEFAULT_LEVELS),
            [41.0, 50.0, 59.0]
        );
        // NB size 2, mean 4 (R: qnbinom(c(.1,.5,.9), size = 2, mu = 4)) = 0, 3, 9.
        assert_eq!(
            Predictive::negative_binomial(0.5)
                .at(4.0)
                .quantiles(&DEFAULT_LEVELS),
            [0.0, 3.0, 9.0]
        );
    }

    #[test]
    fn quantiles_agree_with_the_cdf_everywhere() {
        for dist in [Predictive::POISSON, Predictive::negative_binomial(0.02)] {
            for mean in [0.3, 7.0, 55.5, 240.0, 5_000.0] {
                let counts = dist.at(mean);
                let levels = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99];
                for (level, q) in levels.iter().zip(counts.quantiles(&levels)) {
                    let k = q as u64;
                    assert!(counts.cdf(k) >= *level, "{dist:?} {mean} {level}");
                    if k > 0 {
                        assert!(counts.cdf(k - 1) < *level, "{dist:?} {mean} {level}");
                    }
                }
            }
        }
    }

    #[test]
    fn large_means_do_not_underflow() {
        // e^-1e6 is 0 in f64; the walk starts near the mass instead of at 0.
        let counts = Predictive::POISSON.at(1e6);
        let q = counts.quantiles(&[0.5]);
        assert!((q[0] - 1e6).abs() <= 1.0, "{q:?}");
    }

    #[test]
    fn a_zero_or_invalid_mean_is_no_sales() {
        for mean in [0.0, -3.0, f64::NAN] {
            let counts = Predictive::POISSON.at(mean);
            assert_eq!(counts.quantiles(&DEFAULT_LEVELS), [0.0, 0.0, 0.0]);
            assert_eq!(counts.smape_point(), 0.0);
        }
    }

    #[test]
    fn the_smape_point_minimises_expected_smape_on_a_fine_grid() {
        for dist in [Predictive::POISSON, Predictive::negative_binomial(0.05)] {
            for mean in [0.4, 2.0, 15.0, 60.0] {
                let counts = dist.at(mean);
                let point = counts.smape_point();
                let at_point = counts.expected_smape(point);
                let grid_best = (0..=4000)
                    .map(|i| f64::from(i) * mean * 3.0 / 4000.0)
                    .map(|f| counts.expected_smape(f))
                    .fold(f64::INFINITY, f64::min);
                assert!(at_point <= grid_best + 1e-6, "{dist:?} {mean}: {point}");
                assert!(at_point <= counts.expected_smape(mean), "{dist:?} {mean}");
            }
        }
    }

    #[test]
    fn a_tie_counts_half() {
        let scores = score_quantiles(&[0.5], &[3.0, 4.0, 5.0, 4.0], &vec![vec![4.0]; 4]);
        // below: 1, ties: 2 x 0.5, above: 0.
        assert!(close(scores[0].coverage, 0.5, 1e-15));
        // loss: 0.5 x (1 + 1) = 1, wQL = 2 x 1 / 16; WAPE = 2 / 16.
        assert!(close(scores[0].wql, 0.125, 1e-15));
        assert!(close(scores[0].wape, 0.125, 1e-15));
    }

    #[test]
    fn poisson_quantiles_of_poisson_draws_are_calibrated() {
        // Draw from Poisson(mean) by inversion on a fixed grid of uniforms: the share below
        // each quantile (ties half) must be within a point of its level.
        let counts = Predictive::POISSON.at(20.0);
        let n = 20_000;
        let mut actual = Vec::with_capacity(n);
        let mut cdf = Vec::new();
        let mut total = 0.0;
        for (_, p) in counts.walk() {
            total += p;
            cdf.push(total);
        }
        for i in 0..n {
            let u = (i as f64 + 0.5) / n as f64;
            // The walk of Poisson(20) starts at 0, so a position is a count.
            actual.push(cdf.iter().position(|c| *c >= u).unwrap_or(0) as f64);
        }
        let q = counts.quantiles(&DEFAULT_LEVELS);
        let scores = score_quantiles(&DEFAULT_LEVELS, &actual, &vec![q; n]);
        for score in scores {
            assert!((score.coverage - score.level).abs() < 0.02, "{score:?}");
        }
    }

    #[test]
    fn moment_dispersion_recovers_the_excess_variance() {
        // Mean 10 each, squared deviations averaging 10 + 0.1 x 100 = 20: alpha = 0.1.
        let mean = vec![10.0; 4];
        let actual = [
            10.0 + 20f64.sqrt(),
            10.0 - 20f64.sqrt(),
            10.0 + 20f64.sqrt(),
            10.0 - 20f64.sqrt(),
        ];
        assert!(close(moment_dispersion(&actual, &mean), 0.1, 1e-12));
        // Under-dispersed rows give the Poisson, not a negative dispersion.
        assert_eq!(moment_dispersion(&[10.0, 10.0], &[10.0, 10.0]), 0.0);
    }

    #[test]
    fn level_keys_have_no_binary_noise() {
        for (level, key) in [
            (0.1, "p10"),
            (0.5, "p50"),
            (0.9, "p90"),
            (0.05, "p5"),
            (0.025, "p2.5"),
            (0.999, "p99.9"),
            (0.01, "p1"),
            (0.123_456, "p12.3456"),
        ] {
            assert_eq!(level_key(level), key);
        }
    }

    proptest! {
        #[test]
        fn whole_percent_keys_from_the_table_are_the_formatted_ones(
            percent in 1u8..=99,
            ulps in -2i64..=2,
            any in 1e-9f64..1.0,
        ) {
            let exact = f64::from(percent) / 100.0;
            let near = f64::from_bits(exact.to_bits().wrapping_add_signed(ulps));
            for level in [exact, near, any] {
                prop_assert_eq!(level_key(level), decimal_level_key(level));
            }
        }
    }

    #[test]
    fn levels_are_validated_sorted_and_deduplicated() {
        assert_eq!(parse_levels(&[0.9, 0.1, 0.5, 0.1]), Ok(vec![0.1, 0.5, 0.9]));
        for bad in [
            vec![],
            vec![0.0],
            vec![1.0],
            vec![-0.5],
            vec![f64::NAN],
            vec![0.5; MAX_LEVELS + 1],
        ] {
            assert!(parse_levels(&bad).is_err(), "{bad:?}");
        }
    }
}
