//! One builder for the manifests of test boosters, with check rows LightGBM scored, computed
//! by the trainer's own `check_rows` (none when the text is not a model LightGBM loads, so a
//! test can describe a corrupt booster too).

use std::path::Path;

use forecast::ModelManifest;
use forecast::manifest::{MANIFEST_FORMAT_VERSION, RowCounts, TrainingDomain};
use serde_json::{Map, Value};

use crate::booster::{TINY_FEATURES, TINY_TREES, original_parameters};
use crate::synthetic::query_rows;

/// What a test manifest says about its booster besides what the model text gives it.
#[derive(Debug, Clone)]
pub struct ManifestSpec {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Feature names, in order.
    pub features: Vec<String>,
    /// LightGBM objective.
    pub objective: String,
    /// LightGBM parameters.
    pub parameters: Map<String, Value>,
    /// Number of trees.
    pub num_trees: u32,
    /// The row the check rows vary around.
    pub check_base: Vec<f64>,
}

impl ManifestSpec {
    /// The tiny booster's ([`crate::booster::tiny`]): `tiny`, version `t1`.
    pub fn tiny() -> Self {
        Self {
            name: "tiny".to_owned(),
            version: "t1".to_owned(),
            features: names(&TINY_FEATURES),
            objective: "regression".to_owned(),
            parameters: Map::new(),
            num_trees: TINY_TREES,
            check_base: vec![1.0, 1.0],
        }
    }

    /// A booster of [`crate::booster::sales`] with `rounds` rounds, named `name` at `version`.
    pub fn sales(name: &str, version: &str, rounds: u32) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            features: names(&crate::FEATURES),
            objective: "regression_l1".to_owned(),
            parameters: original_parameters(rounds),
            num_trees: rounds,
            check_base: query_rows(1),
        }
    }

    /// The manifest of `model_text` (its sha256 and check rows) as this spec describes it.
    pub fn manifest_for(&self, model_text: &str) -> ModelManifest {
        ModelManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            name: self.name.clone(),
            version: self.version.clone(),
            features: self.features.clone(),
            objective: self.objective.clone(),
            parameters: self.parameters.clone(),
            split: "none".into(),
            metrics: Default::default(),
            trained_at: "2026-01-01T00:00:00Z".into(),
            training_data_sha256: "synthetic".into(),
            model_sha256: forecast::artifact::sha256_hex(model_text.as_bytes()),
            num_trees: self.num_trees,
            domain: TrainingDomain {
                stores: vec![],
                items: vec![],
                date_min: String::new(),
                date_max: String::new(),
            },
            rows: RowCounts {
                total: 0,
                fit: 0,
                validation: 0,
            },
            tool_versions: Default::default(),
            check_rows: trainer::train::check_rows(model_text, &self.check_base, None)
                .unwrap_or_default(),
            distribution: None,
            point: Default::default(),
            backtest: None,
            baseline: None,
        }
    }
}

fn names(features: &[&str]) -> Vec<String> {
    features.iter().map(|s| (*s).to_owned()).collect()
}

/// Writes `model.txt` and `manifest.json` into `dir` (created if missing), as `demand train`
/// lays out a model directory.
pub fn write_model_dir(dir: &Path, model_text: &str, manifest: &ModelManifest) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.txt"), model_text).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(manifest).unwrap(),
    )
    .unwrap();
}
