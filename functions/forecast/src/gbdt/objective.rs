//! The output transforms of the objectives this evaluator reproduces: each objective's
//! `ConvertOutput` in LightGBM's `src/objective/regression_objective.hpp` and
//! `binary_objective.hpp`, applied after the trees are summed (`GBDT::Predict`,
//! `src/boosting/gbdt_prediction.cpp`).

use super::ModelTextError::{self, Unsupported};

/// How a raw score becomes a prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputTransform {
    /// The raw score itself: `regression`, `regression_l1`, `huber`, `fair`, `quantile`,
    /// `mape`, or a model saved without an objective.
    Identity,
    /// `regression` (and the others of its family that keep it) trained with `reg_sqrt`:
    /// `Sign(x) * x * x` (`RegressionL2loss::ConvertOutput`).
    SignedSquare,
    /// `exp(x)`: `poisson`, `gamma`, `tweedie` (`RegressionPoissonLoss::ConvertOutput`).
    Exp,
    /// `1 / (1 + exp(-sigmoid * x))`: `binary` (`BinaryLogloss::ConvertOutput`).
    Sigmoid(f64),
}

impl OutputTransform {
    /// Reads the model's `objective=` line (`None` when the file has none).
    pub(super) fn from_objective(objective: Option<&str>) -> Result<Self, ModelTextError> {
        let Some(objective) = objective else {
            return Ok(Self::Identity);
        };
        let mut tokens = objective.split(' ');
        let name = tokens.next().unwrap_or_default();
        let params: Vec<&str> = tokens.collect();
        // `RegressionL2loss(const std::vector<std::string>&)` sets sqrt from a `sqrt` token;
        // huber, fair and the Poisson family switch it off again in their constructors.
        let sqrt = params.contains(&"sqrt");
        match name {
            "regression" | "regression_l1" | "quantile" | "mape" => Ok(if sqrt {
                Self::SignedSquare
            } else {
                Self::Identity
            }),
            "huber" | "fair" => Ok(Self::Identity),
            "poisson" | "gamma" | "tweedie" => Ok(Self::Exp),
            "binary" => {
                let sigmoid = params
                    .iter()
                    .find_map(|p| p.strip_prefix("sigmoid:"))
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .ok_or_else(|| {
                        Unsupported(format!(
                            "objective {objective:?} has no positive `sigmoid:` parameter"
                        ))
                    })?;
                Ok(Self::Sigmoid(sigmoid))
            }
            other => Err(Unsupported(format!(
                "objective {other:?} is not evaluated exactly by this evaluator (it reproduces \
                 regression, regression_l1, huber, fair, quantile, mape, poisson, gamma, tweedie \
                 and binary)"
            ))),
        }
    }

    /// Applies the transform to a summed (and, for random forests, averaged) raw score.
    #[inline]
    pub fn apply(self, raw: f64) -> f64 {
        match self {
            Self::Identity => raw,
            Self::SignedSquare => {
                // `Common::Sign` returns an int: (x > 0) - (x < 0), 0 for zero and NaN.
                let sign = f64::from(i8::from(raw > 0.0) - i8::from(raw < 0.0));
                sign * raw * raw
            }
            Self::Exp => raw.exp(),
            // `1.0f / (1.0f + std::exp(-sigmoid_ * input[0]))`: the float literals are exact.
            Self::Sigmoid(sigmoid) => 1.0 / (1.0 + (-sigmoid * raw).exp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_map_to_their_transforms() {
        for (objective, expected) in [
            (None, OutputTransform::Identity),
            (Some("regression"), OutputTransform::Identity),
            (Some("regression sqrt"), OutputTransform::SignedSquare),
            (Some("regression_l1"), OutputTransform::Identity),
            (Some("huber sqrt"), OutputTransform::Identity),
            (Some("quantile"), OutputTransform::Identity),
            (Some("poisson"), OutputTransform::Exp),
            (Some("gamma"), OutputTransform::Exp),
            (
                Some("tweedie tweedie_variance_power:1.5"),
                OutputTransform::Exp,
            ),
            (Some("binary sigmoid:1"), OutputTransform::Sigmoid(1.0)),
        ] {
            assert_eq!(
                OutputTransform::from_objective(objective).unwrap(),
                expected,
                "{objective:?}"
            );
        }
    }

    #[test]
    fn objectives_it_cannot_reproduce_are_refused_by_name() {
        for objective in [
            "multiclass num_class:3",
            "lambdarank",
            "cross_entropy",
            "binary",
        ] {
            let err = OutputTransform::from_objective(Some(objective)).unwrap_err();
            assert!(matches!(err, Unsupported(_)), "{objective}: {err}");
        }
    }

    #[test]
    fn signed_square_keeps_the_sign_and_zero() {
        let t = OutputTransform::SignedSquare;
        assert_eq!(t.apply(3.0), 9.0);
        assert_eq!(t.apply(-3.0), -9.0);
        assert_eq!(t.apply(0.0).to_bits(), 0.0f64.to_bits());
        assert!(t.apply(f64::NAN).is_nan());
    }
}
