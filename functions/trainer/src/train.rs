//! Training: sales history -> features -> LightGBM booster -> `model.txt` + `manifest.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use forecast::features::{self, Feature, ORIGINAL_FEATURES};
use forecast::manifest::{
    MANIFEST_FILE, MANIFEST_FORMAT_VERSION, MODEL_FILE, RowCounts, TrainingDomain,
};
use forecast::{ForecastRequest, ModelManifest};
use lightgbm3::{Booster, Dataset};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::data::{SalesHistory, SalesRecord};
use crate::metrics;

/// The parameters of the original notebook (3000 rounds of L1 regression).
pub fn original_parameters() -> Map<String, Value> {
    let params = json!({
        "objective": "regression_l1",
        "max_depth": 5,
        "num_leaves": 64,
        "learning_rate": 0.2,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 5,
        "lambda_l1": 3.097758978478437,
        "lambda_l2": 2.9482537987198496,
        "min_child_weight": 6.996211413900573,
        "min_split_gain": 0.037310344962162616,
        "num_iterations": 3000,
        "seed": 2018,
        "verbosity": -1,
    });
    match params {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// One training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Model name (first segment of the S3 prefix).
    pub name: String,
    /// Model version (second segment of the S3 prefix).
    pub version: String,
    /// Override of the number of boosting rounds.
    pub rounds: Option<u32>,
    /// Number of LightGBM threads (0 = LightGBM's default).
    pub threads: Option<u32>,
    /// Fraction of rows held out for validation.
    pub validation_fraction: f64,
    /// Seed of the random split.
    pub split_seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            name: "demand".to_owned(),
            version: chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
            rounds: None,
            threads: None,
            validation_fraction: 0.2,
            split_seed: 2018,
        }
    }
}

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// The manifest written beside the booster.
    pub manifest: ModelManifest,
    /// Path of `model.txt`.
    pub model_path: PathBuf,
    /// Path of `manifest.json`.
    pub manifest_path: PathBuf,
}

/// Trains on `history` and writes `model.txt` and `manifest.json` into `out_dir`.
/// Nothing is written unless training and validation succeed; the manifest is written last.
pub fn train(
    history: &SalesHistory,
    config: &TrainConfig,
    out_dir: &Path,
) -> anyhow::Result<TrainedModel> {
    anyhow::ensure!(
        (0.0..1.0).contains(&config.validation_fraction),
        "the validation fraction must be in [0, 1)"
    );
    let features = ORIGINAL_FEATURES;
    let n_features = features.len();
    let mut parameters = original_parameters();
    if let Some(rounds) = config.rounds {
        anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
        parameters.insert("num_iterations".to_owned(), json!(rounds));
    }
    if let Some(threads) = config.threads {
        parameters.insert("num_threads".to_owned(), json!(threads));
    }

    let (fit, validation) = random_split(
        &history.records,
        config.validation_fraction,
        config.split_seed,
    );
    anyhow::ensure!(!fit.is_empty(), "no rows left to fit on");
    let (fit_x, fit_y) = matrix(&features, &fit);
    let mut dataset = Dataset::from_slice(&fit_x, &fit_y, n_features as i32, true)
        .context("building the LightGBM dataset")?;
    dataset
        .set_feature_names(&features::names(&features))
        .context("naming the features")?;
    let booster = Booster::train(dataset, &Value::Object(parameters.clone()))
        .context("training the booster")?;

    let metrics = if validation.is_empty() {
        BTreeMap::new()
    } else {
        let (valid_x, valid_y) = matrix(&features, &validation);
        let predicted = booster
            .predict(&valid_x, n_features as i32, true)
            .context("scoring")?;
        let actual: Vec<f64> = valid_y.iter().map(|v| f64::from(*v)).collect();
        metrics::all(&actual, &predicted)
    };

    let model_text = booster.save_string().context("serialising the booster")?;
    let model_sha256 = hex::encode(Sha256::digest(model_text.as_bytes()));
    let manifest = ModelManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        name: config.name.clone(),
        version: config.version.clone(),
        features: features::names(&features),
        objective: parameters
            .get("objective")
            .and_then(Value::as_str)
            .unwrap_or("regression")
            .to_owned(),
        parameters,
        split: format!(
            "random:{}:{}",
            config.validation_fraction, config.split_seed
        ),
        metrics,
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        training_data_sha256: history.sha256.clone(),
        model_sha256,
        num_trees: u32::try_from(booster.num_iterations()).unwrap_or(0),
        domain: domain(&history.records),
        rows: RowCounts {
            total: history.records.len() as u64,
            fit: fit.len() as u64,
            validation: validation.len() as u64,
        },
        tool_versions: tool_versions(&model_text),
    };

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let model_path = out_dir.join(MODEL_FILE);
    let manifest_path = out_dir.join(MANIFEST_FILE);
    write_atomically(&model_path, model_text.as_bytes())?;
    write_atomically(&manifest_path, &serde_json::to_vec_pretty(&manifest)?)?;
    Ok(TrainedModel {
        manifest,
        model_path,
        manifest_path,
    })
}

/// The feature matrix (row-major) and labels of `records`.
fn matrix(features: &[Feature], records: &[SalesRecord]) -> (Vec<f64>, Vec<f32>) {
    let mut x = Vec::with_capacity(records.len() * features.len());
    let mut y = Vec::with_capacity(records.len());
    for record in records {
        let request = ForecastRequest {
            date: record.date,
            store: record.store,
            item: record.item,
        };
        x.extend(features::build_row(features, &request));
        y.push(record.sales as f32);
    }
    (x, y)
}

/// Shuffles with a seeded generator and holds out `fraction` of the rows.
fn random_split(
    records: &[SalesRecord],
    fraction: f64,
    seed: u64,
) -> (Vec<SalesRecord>, Vec<SalesRecord>) {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
    let n_validation = (records.len() as f64 * fraction).round() as usize;
    let (validation, fit) = order.split_at(n_validation.min(records.len()));
    let pick = |idx: &[usize]| idx.iter().map(|&i| records[i]).collect::<Vec<_>>();
    (pick(fit), pick(validation))
}

fn domain(records: &[SalesRecord]) -> TrainingDomain {
    let stores: BTreeSet<u32> = records.iter().map(|r| r.store.get()).collect();
    let items: BTreeSet<u32> = records.iter().map(|r| r.item.get()).collect();
    let date_min = records.iter().map(|r| r.date).min();
    let date_max = records.iter().map(|r| r.date).max();
    let fmt = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    TrainingDomain {
        stores: stores.into_iter().collect(),
        items: items.into_iter().collect(),
        date_min: fmt(date_min),
        date_max: fmt(date_max),
    }
}

fn tool_versions(model_text: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    versions.insert("demand".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
    if let Some(format) = model_text.lines().find_map(|l| l.strip_prefix("version=")) {
        versions.insert("lightgbm_model_format".to_owned(), format.to_owned());
    }
    versions
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so a reader never
/// sees a half-written file and a failed run leaves the old file in place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{GenerateConfig, generate};

    fn small_history() -> (tempfile::TempDir, SalesHistory) {
        let dir = tempfile::tempdir().unwrap();
        let config = GenerateConfig {
            stores: 2,
            items: 2,
            train_end: chrono::NaiveDate::from_ymd_opt(2014, 12, 31).unwrap(),
            test_days: 1,
            ..GenerateConfig::default()
        };
        generate(&config, dir.path()).unwrap();
        let history = crate::data::read_sales_csv(&dir.path().join("train.csv")).unwrap();
        (dir, history)
    }

    #[test]
    fn trains_and_writes_a_consistent_model_and_manifest() {
        let (dir, history) = small_history();
        let out = dir.path().join("model");
        let config = TrainConfig {
            version: "t1".into(),
            rounds: Some(20),
            ..TrainConfig::default()
        };
        let trained = train(&history, &config, &out).unwrap();
        let text = std::fs::read_to_string(&trained.model_path).unwrap();
        let manifest: ModelManifest =
            serde_json::from_slice(&std::fs::read(&trained.manifest_path).unwrap()).unwrap();
        assert_eq!(manifest, trained.manifest);
        assert_eq!(
            manifest.model_sha256,
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        assert_eq!(manifest.features, ["store", "item", "month", "day", "year"]);
        assert_eq!(manifest.num_trees, 20);
        assert_eq!(manifest.domain.stores, [1, 2]);
        assert_eq!(manifest.domain.date_max, "2014-12-31");
        assert_eq!(
            manifest.rows.fit + manifest.rows.validation,
            manifest.rows.total
        );
        assert!(text.contains("feature_names=store item month day year"));
        // The generated data has real structure: 20 rounds must beat a constant forecast.
        assert!(manifest.metrics["smape"] < 40.0, "{:?}", manifest.metrics);
    }

    #[test]
    fn the_split_is_deterministic_and_disjoint() {
        let (_dir, history) = small_history();
        let (fit_a, valid_a) = random_split(&history.records, 0.2, 2018);
        let (_, valid_b) = random_split(&history.records, 0.2, 2018);
        let (_, valid_c) = random_split(&history.records, 0.2, 1);
        assert_eq!(valid_a, valid_b);
        assert_ne!(valid_a, valid_c);
        assert_eq!(fit_a.len() + valid_a.len(), history.records.len());
        assert_eq!(
            valid_a.len(),
            (history.records.len() as f64 * 0.2).round() as usize
        );
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
