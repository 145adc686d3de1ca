//! Scoring a trained model directory: `demand evaluate` and `demand predict`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use forecast::artifact::{ArtifactError, check_sha256, read_artifact, sha256_hex};
use forecast::distribution::{DEFAULT_LEVELS, level_key, score_quantiles};
use forecast::features::{self, Feature};
use forecast::gbdt::Booster;
use forecast::manifest::{MANIFEST_FILE, MODEL_FILE};
use forecast::wire::{DataframeSplit, PredictOptions, PredictionsRequest};
use forecast::{ForecastRequest, ModelManifest};

use crate::data::{SalesHistory, TestRow};
use crate::metrics;
use crate::train::{matrix, write_atomically};

/// The two files of a model directory, read once, with `model.txt` checked against the
/// manifest's sha256. Both `evaluate`/`predict` and `publish` start from it.
#[derive(Debug)]
pub struct ModelFiles {
    /// The parsed manifest.
    pub manifest: ModelManifest,
    /// `manifest.json` as read, so it can be published byte for byte.
    pub manifest_bytes: Vec<u8>,
    /// `model.txt` as read.
    pub model_bytes: Vec<u8>,
}

impl ModelFiles {
    /// Reads `manifest.json` and `model.txt` from `dir` and verifies the sha256.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_bytes = std::fs::read(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let manifest: ModelManifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("parsing {}", manifest_path.display()))?;
        let model_path = dir.join(MODEL_FILE);
        let model_bytes = std::fs::read(&model_path)
            .with_context(|| format!("reading {}", model_path.display()))?;
        check_sha256(&manifest, &sha256_hex(&model_bytes))
            .map_err(|e| anyhow::anyhow!("{}: {e}", model_path.display()))?;
        Ok(Self {
            manifest,
            manifest_bytes,
            model_bytes,
        })
    }

    /// The booster compiled for the native evaluator (the one the model function serves
    /// with), after checking its features against the manifest and its predictions against
    /// the manifest's check rows, bit for bit.
    pub fn verified_booster(&self) -> anyhow::Result<Booster> {
        // The model function's own reader, so both accept and refuse the same artifacts.
        read_artifact(&self.model_bytes, &self.manifest)
            .map(|verified| verified.booster)
            .map_err(|e| match e {
                ArtifactError::CheckRows(reason) => {
                    anyhow::anyhow!("the native evaluator does not reproduce LightGBM: {reason}")
                }
                other => anyhow::anyhow!("the native evaluator cannot serve {MODEL_FILE}: {other}"),
            })
    }
}

/// A model directory, verified against its manifest.
pub struct ModelDir {
    /// The manifest.
    pub manifest: ModelManifest,
    /// The features, resolved from the manifest through the shared vocabulary.
    pub features: Vec<Feature>,
    booster: Booster,
}

impl std::fmt::Debug for ModelDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDir")
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

impl ModelDir {
    /// Loads `model.txt` and `manifest.json`, checking the sha256 and the features.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let files = ModelFiles::read(dir)?;
        let booster = files.verified_booster()?;
        let features = Feature::resolve_all(&files.manifest.features)?;
        Ok(Self {
            manifest: files.manifest,
            features,
            booster,
        })
    }

    /// Metrics of the model on a sales history, for its mean point. With a predictive
    /// distribution in the manifest, also the SMAPE-optimal point's metrics (`smape_point_*`)
    /// and each default quantile's coverage (ties half), wQL and WAPE (`p10_coverage`, ...).
    pub fn evaluate(&self, history: &SalesHistory) -> anyhow::Result<BTreeMap<String, f64>> {
        let (x, y) = matrix(&self.features, &history.records);
        let predicted = self.predict_matrix(&x)?;
        let actual: Vec<f64> = y.iter().map(|v| f64::from(*v)).collect();
        let mut report = metrics::all(&actual, &predicted);
        report.insert("wape".to_owned(), metrics::wape(&actual, &predicted));
        if let Some(distribution) = &self.manifest.distribution {
            let predictive = distribution.predictive;
            let points = crate::calibrate::smape_points(predictive, &predicted);
            for (name, value) in metrics::all(&actual, &points) {
                report.insert(format!("smape_point_{name}"), value);
            }
            report.insert(
                "smape_point_wape".to_owned(),
                metrics::wape(&actual, &points),
            );
            let quantiles = crate::calibrate::quantiles(predictive, &DEFAULT_LEVELS, &predicted);
            for score in score_quantiles(&DEFAULT_LEVELS, &actual, &quantiles) {
                let key = level_key(score.level);
                report.insert(format!("{key}_coverage"), score.coverage);
                report.insert(format!("{key}_wql"), score.wql);
                report.insert(format!("{key}_wape"), score.wape);
            }
        }
        Ok(report)
    }

    /// The booster's predictions (the mean point) for requests.
    pub fn predict_requests(&self, requests: &[ForecastRequest]) -> anyhow::Result<Vec<f64>> {
        let x: Vec<f64> = requests
            .iter()
            .flat_map(|r| features::build_row(&self.features, r))
            .collect();
        self.predict_matrix(&x)
    }

    /// The booster's predictions (the mean point) for sales records.
    pub fn predict_records(
        &self,
        records: &[crate::data::SalesRecord],
    ) -> anyhow::Result<Vec<f64>> {
        let (x, _) = matrix(&self.features, records);
        self.predict_matrix(&x)
    }

    /// Predictions for test rows, built with the same feature code the orchestrator uses.
    pub fn predict_rows(&self, rows: &[TestRow]) -> anyhow::Result<Vec<f64>> {
        self.predict_matrix(&test_matrix(&self.features, rows))
    }

    /// The model's predictions for a row-major matrix: the booster's, times each row's
    /// baseline when the model has one (what the model function answers).
    pub fn predict_matrix(&self, x: &[f64]) -> anyhow::Result<Vec<f64>> {
        let mut predicted = self.booster.predict(x)?;
        if let Some(baseline) = &self.manifest.baseline {
            baseline.apply(x, &mut predicted);
        }
        Ok(predicted)
    }

    /// The model function's payload for test rows: what the orchestrator sends for the same
    /// requests (`dataframe_split`, the manifest's features as columns, the rows in order).
    pub fn payload(&self, rows: &[TestRow]) -> PredictionsRequest {
        PredictionsRequest {
            dataframe_split: DataframeSplit {
                columns: self.manifest.features.clone(),
                data: rows
                    .iter()
                    .map(|r| feature_row(&self.features, r))
                    .collect(),
                index: None,
            },
            params: PredictOptions::default(),
        }
    }
}

/// The feature matrix (row-major) of test rows, built with the orchestrator's feature code.
pub fn test_matrix(features: &[Feature], rows: &[TestRow]) -> Vec<f64> {
    rows.iter().flat_map(|r| feature_row(features, r)).collect()
}

/// One test row's features, as the orchestrator builds them for the same request.
fn feature_row(features: &[Feature], row: &TestRow) -> Vec<f64> {
    let request = ForecastRequest {
        date: row.date,
        store: row.store,
        item: row.item,
    };
    features::build_row(features, &request)
}

/// Writes a Kaggle submission (`id,sales`) for `rows`.
pub fn write_submission(path: &Path, rows: &[TestRow], predictions: &[f64]) -> anyhow::Result<()> {
    anyhow::ensure!(
        rows.len() == predictions.len(),
        "one prediction per row expected"
    );
    let mut out = Vec::with_capacity(rows.len() * 16);
    writeln!(out, "id,sales")?;
    for (row, sales) in rows.iter().zip(predictions) {
        writeln!(out, "{},{sales}", row.id)?;
    }
    write_atomically(path, &out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::generate::generated_history;
    use crate::train::{TrainConfig, train};

    #[test]
    fn the_payload_names_the_manifests_features_and_carries_each_rows_features_in_order() {
        // GIVEN a model and a test.csv
        let end = chrono::NaiveDate::from_ymd_opt(2014, 12, 31).unwrap();
        let (dir, history) = generated_history(2, 3, end, 4);
        let config = TrainConfig::default().set("num_iterations", json!(5));
        train(&history, &config, &dir.path().join("m")).unwrap();
        let model = ModelDir::load(&dir.path().join("m")).unwrap();
        let rows = crate::data::read_test_csv(&dir.path().join("test.csv")).unwrap();

        // WHEN the model function's payload is written for its rows
        let text = serde_json::to_string(&model.payload(&rows)).unwrap();

        // THEN it is MLflow's dataframe_split and nothing else, the manifest's feature names as
        // columns, one row per test row in order, each that row's feature values
        let payload: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(payload.as_object().unwrap().len(), 1, "{text}");
        let split: DataframeSplit =
            serde_json::from_value(payload["dataframe_split"].clone()).unwrap();
        assert_eq!(split.columns, model.manifest.features);
        assert_eq!(split.data.len(), rows.len());
        let names: Vec<&str> = split.columns.iter().map(String::as_str).collect();
        for (row, values) in rows.iter().zip(&split.data) {
            let at = |name: &str| values[names.iter().position(|n| *n == name).unwrap()];
            assert_eq!(at("store"), f64::from(row.store.get()));
            assert_eq!(at("item"), f64::from(row.item.get()));
            assert_eq!(at("year"), f64::from(chrono::Datelike::year(&row.date)));
        }
        // AND scored, the rows give `demand predict`'s predictions
        let flat: Vec<f64> = split.data.concat();
        assert_eq!(
            model.predict_matrix(&flat).unwrap(),
            model.predict_rows(&rows).unwrap()
        );
    }

    #[test]
    fn evaluate_reproduces_the_validation_metrics_and_predict_writes_a_submission() {
        // GIVEN a model trained with a time split, so the manifest holds validation metrics
        let end = chrono::NaiveDate::from_ymd_opt(2014, 12, 31).unwrap();
        let (dir, history) = generated_history(2, 2, end, 3);
        let split: crate::split::Split = "time:2014-10-01".parse().unwrap();
        let config = TrainConfig {
            split,
            ..TrainConfig::default()
        }
        .set("num_iterations", json!(15));
        let trained = train(&history, &config, &dir.path().join("m")).unwrap();
        let model = ModelDir::load(&dir.path().join("m")).unwrap();
        assert_eq!(model.manifest, trained.manifest);
        assert_eq!(trained.manifest.rows.validation, 2 * 2 * 92);

        // WHEN `demand evaluate` scores exactly the validation rows, read back from a CSV
        let (_, validation) = split.apply(&history.records);
        let mut csv = String::from("date,store,item,sales\n");
        for r in &validation {
            csv.push_str(&format!(
                "{},{},{},{}\n",
                r.date,
                r.store.get(),
                r.item.get(),
                r.sales
            ));
        }
        std::fs::write(dir.path().join("validation.csv"), csv).unwrap();
        let rows = crate::data::read_sales_csv(&dir.path().join("validation.csv")).unwrap();
        assert_eq!(rows.records.len(), validation.len());
        let metrics = model.evaluate(&rows).unwrap();

        // THEN it reports the metrics training recorded, to the bit: the native evaluator
        // reproduces LightGBM's validation predictions row for row
        for name in ["mae", "mape", "rmse", "smape"] {
            assert!(metrics.contains_key(name), "{name} missing: {metrics:?}");
        }
        for (name, value) in &trained.manifest.metrics {
            assert_eq!(
                metrics.get(name).copied().unwrap_or(f64::NAN).to_bits(),
                value.to_bits(),
                "{name}: evaluate {metrics:?}, training {:?}",
                trained.manifest.metrics
            );
        }

        // AND `demand predict` writes one line per test row, in order, each value LightGBM's
        // own prediction for that row's features, written so it reads back to the same f64
        let rows = crate::data::read_test_csv(&dir.path().join("test.csv")).unwrap();
        assert_eq!(rows.len(), 2 * 2 * 3);
        let predictions = model.predict_rows(&rows).unwrap();
        let out = dir.path().join("submission.csv");
        write_submission(&out, &rows, &predictions).unwrap();
        let text = std::fs::read_to_string(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,sales"));
        let x = test_matrix(&model.features, &rows);
        let lightgbm =
            lightgbm3::Booster::from_file(dir.path().join("m").join(MODEL_FILE).to_str().unwrap())
                .unwrap();
        let expected = crate::train::predict(&lightgbm, model.features.len(), &x).unwrap();
        let written: Vec<(u64, f64)> = lines
            .map(|line| {
                let (id, sales) = line.split_once(',').unwrap();
                (id.parse().unwrap(), sales.parse().unwrap())
            })
            .collect();
        assert_eq!(written.len(), rows.len());
        for ((row, (id, sales)), expected) in rows.iter().zip(&written).zip(&expected) {
            assert_eq!(*id, row.id);
            assert_eq!(
                sales.to_bits(),
                expected.to_bits(),
                "id {id}: wrote {sales}, LightGBM predicts {expected}"
            );
        }
        // The rows differ (stores, items, days), and so do the predictions: a constant
        // column would pass the comparison above only if the booster itself were constant.
        assert!(written.iter().any(|(_, s)| *s != written[0].1));
    }

    #[test]
    fn a_tampered_model_is_refused() {
        let end = chrono::NaiveDate::from_ymd_opt(2013, 6, 30).unwrap();
        let (dir, history) = generated_history(1, 1, end, 1);
        let config = TrainConfig::default().set("num_iterations", json!(3));
        let trained = train(&history, &config, dir.path()).unwrap();
        std::fs::write(&trained.model_path, "tampered").unwrap();
        let err = ModelDir::load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("does not match the manifest's"),
            "{err}"
        );
    }
}
