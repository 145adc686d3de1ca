//! A published model read the one way: `model.txt` checked against its `manifest.json`.
//!
//! The model function (streaming the booster from S3) and the trainer's `evaluate`,
//! `predict`, `backtest` and `publish` (from a directory) all read a model through this
//! module, so they accept and refuse exactly the same artifacts for the same reasons: the
//! sha256 first (whatever else is wrong with a text that is not the one the manifest names),
//! then the text itself, its features and the manifest's check rows, bit for bit.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::ModelManifest;
use crate::gbdt::{Booster, BoosterReader, ModelTextError};
use crate::manifest::MANIFEST_FORMAT_VERSION;

/// Why a model text is not the servable booster its manifest describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// The text is not the one the manifest names.
    #[error("sha256 {actual} does not match the manifest's {expected}")]
    ShaMismatch {
        /// sha256 recorded in the manifest.
        expected: String,
        /// sha256 of the text read.
        actual: String,
    },
    /// The text is not a valid LightGBM model.
    #[error("{0}")]
    Corrupt(String),
    /// A valid model the native evaluator cannot reproduce exactly.
    #[error("{0}")]
    Unsupported(String),
    /// The booster's features differ from the manifest's.
    #[error("the booster has features {booster:?}, the manifest lists {manifest:?}")]
    FeatureMismatch {
        /// Features in the manifest.
        manifest: Vec<String>,
        /// Features in the booster.
        booster: Vec<String>,
    },
    /// The evaluator does not reproduce LightGBM's predictions of the manifest's check rows.
    #[error("{0}")]
    CheckRows(String),
    /// The manifest is of a newer format or its baseline does not fit the booster.
    #[error("{0}")]
    Manifest(String),
}

impl From<ModelTextError> for ArtifactError {
    fn from(error: ModelTextError) -> Self {
        match error {
            ModelTextError::Corrupt(reason) => Self::Corrupt(reason),
            ModelTextError::Unsupported(reason) => Self::Unsupported(reason),
        }
    }
}

/// The hex sha256 of `bytes`, as manifests record it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `actual` (hex) is the sha256 the manifest records. Hex digits compare without
/// regard to case: a manifest written by another tool in upper case names the same text.
pub fn check_sha256(manifest: &ModelManifest, actual: &str) -> Result<(), ArtifactError> {
    if actual.eq_ignore_ascii_case(&manifest.model_sha256) {
        Ok(())
    } else {
        Err(ArtifactError::ShaMismatch {
            expected: manifest.model_sha256.clone(),
            actual: actual.to_owned(),
        })
    }
}

/// A booster proven against its manifest, and where reading it spent its time.
#[derive(Debug)]
pub struct VerifiedBooster {
    /// The compiled booster.
    pub booster: Booster,
    /// Where the time went.
    pub timings: ReadTimings,
}

/// Where reading a model spent its time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadTimings {
    /// Hashing the text.
    pub hashing: Duration,
    /// Reading the trees and compiling them, checking the features.
    pub reading: Duration,
    /// Reproducing the manifest's check rows.
    pub checking: Duration,
}

/// A model text read as it arrives, chunk by chunk, hashed and parsed at once (see
/// [`BoosterReader`]), then proven against its manifest by [`ArtifactReader::finish`].
#[derive(Debug, Default)]
pub struct ArtifactReader {
    hasher: Sha256,
    reader: BoosterReader,
    timings: ReadTimings,
}

impl ArtifactReader {
    /// Takes the next chunk of `model.txt`.
    pub fn push(&mut self, chunk: &[u8]) {
        let start = Instant::now();
        self.hasher.update(chunk);
        let hashed = Instant::now();
        self.reader.push(chunk);
        self.timings.hashing += hashed - start;
        self.timings.reading += hashed.elapsed();
    }

    /// The booster, once the whole text has been pushed: its sha256, then the text, its
    /// features and the manifest's check rows are checked, in that order.
    pub fn finish(self, manifest: &ModelManifest) -> Result<VerifiedBooster, ArtifactError> {
        let Self {
            hasher,
            reader,
            mut timings,
        } = self;
        let start = Instant::now();
        check_sha256(manifest, &hex::encode(hasher.finalize()))?;
        let hashed = Instant::now();
        let booster = reader.finish()?;
        if booster.feature_names() != manifest.features.as_slice() {
            return Err(ArtifactError::FeatureMismatch {
                manifest: manifest.features.clone(),
                booster: booster.feature_names().to_vec(),
            });
        }
        if manifest.format_version > MANIFEST_FORMAT_VERSION {
            return Err(ArtifactError::Manifest(format!(
                "manifest format {} is newer than this reader's {MANIFEST_FORMAT_VERSION}; \
                 update the function",
                manifest.format_version
            )));
        }
        let baseline = manifest.baseline.as_ref();
        if let Some(baseline) = baseline {
            baseline
                .check(manifest.features.len())
                .map_err(ArtifactError::Manifest)?;
        }
        let read = Instant::now();
        booster
            .verify(&manifest.check_rows, baseline)
            .map_err(ArtifactError::CheckRows)?;
        timings.hashing += hashed - start;
        timings.reading += read - hashed;
        timings.checking = read.elapsed();
        Ok(VerifiedBooster { booster, timings })
    }
}

/// [`ArtifactReader`] over a whole text at once.
pub fn read_artifact(
    model_text: &[u8],
    manifest: &ModelManifest,
) -> Result<VerifiedBooster, ArtifactError> {
    let mut reader = ArtifactReader::default();
    reader.push(model_text);
    reader.finish(manifest)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gbdt::tests::TWO_TREES;
    use crate::gbdt::{CheckRow, ExactF64};

    /// A manifest for `text` whose check rows are the evaluator's own answers on its probe
    /// rows (agreement with LightGBM itself is the trainer's `native_evaluator` suite's).
    fn manifest_for(text: &str) -> ModelManifest {
        let booster = Booster::from_model_text(text).unwrap();
        let check_rows = booster
            .probe_rows(&[1.0, 1.0])
            .into_iter()
            .map(|row| CheckRow {
                prediction: ExactF64(booster.predict_row(&row).unwrap()),
                features: row.into_iter().map(ExactF64).collect(),
            })
            .collect();
        let mut manifest: ModelManifest = serde_json::from_value(json!({
            "format_version": 2, "name": "tiny", "version": "t1",
            "features": ["a", "b"], "objective": "regression", "parameters": {},
            "split": "none", "metrics": {}, "trained_at": "2026-01-01T00:00:00Z",
            "training_data_sha256": "00", "model_sha256": sha256_hex(text.as_bytes()),
            "num_trees": 2,
            "domain": {"stores": [], "items": [], "date_min": "2013-01-01", "date_max": "2017-12-31"},
            "rows": {"total": 0, "fit": 0, "validation": 0}, "tool_versions": {}
        }))
        .unwrap();
        manifest.check_rows = check_rows;
        manifest
    }

    fn read_in_chunks(
        text: &str,
        manifest: &ModelManifest,
        size: usize,
    ) -> Result<VerifiedBooster, ArtifactError> {
        let mut reader = ArtifactReader::default();
        text.as_bytes().chunks(size).for_each(|c| reader.push(c));
        reader.finish(manifest)
    }

    #[test]
    fn a_model_and_its_manifest_read_the_same_in_any_chunks() {
        let manifest = manifest_for(TWO_TREES);
        assert!(manifest.check_rows.len() > 10);
        let whole = read_artifact(TWO_TREES.as_bytes(), &manifest).unwrap();
        for size in [1, 5, 64, 4096] {
            let chunked = read_in_chunks(TWO_TREES, &manifest, size).unwrap();
            for check in &manifest.check_rows {
                let row: Vec<f64> = check.features.iter().map(|v| v.0).collect();
                assert_eq!(
                    chunked.booster.predict_row(&row).unwrap().to_bits(),
                    whole.booster.predict_row(&row).unwrap().to_bits()
                );
            }
        }
        // The manifest's hex may be upper case: the same text.
        let mut upper = manifest.clone();
        upper.model_sha256 = upper.model_sha256.to_uppercase();
        assert!(read_artifact(TWO_TREES.as_bytes(), &upper).is_ok());
    }

    #[test]
    fn the_hash_is_judged_first_then_the_text_its_features_and_check_rows() {
        let manifest = manifest_for(TWO_TREES);
        let broken = TWO_TREES.replacen("leaf_value=1 2 3", "leaf_value=1 x 3", 1);
        // Not the manifest's text: a sha256 mismatch, whatever else is wrong with it.
        assert!(matches!(
            read_in_chunks(&broken, &manifest, 7),
            Err(ArtifactError::ShaMismatch { expected, .. }) if expected == manifest.model_sha256
        ));
        let mut named = manifest.clone();
        named.model_sha256 = sha256_hex(broken.as_bytes());
        assert!(matches!(
            read_in_chunks(&broken, &named, 7),
            Err(ArtifactError::Corrupt(m)) if m.contains("non-number")
        ));
        let mut features = manifest.clone();
        features.features = vec!["a".to_owned(), "c".to_owned()];
        assert!(matches!(
            read_artifact(TWO_TREES.as_bytes(), &features),
            Err(ArtifactError::FeatureMismatch { booster, .. }) if booster == ["a", "b"]
        ));
        let mut check = manifest.clone();
        check.check_rows[3].prediction = ExactF64(check.check_rows[3].prediction.0 + 1.0);
        assert!(matches!(
            read_artifact(TWO_TREES.as_bytes(), &check),
            Err(ArtifactError::CheckRows(m)) if m.contains("check row 3")
        ));
    }
}
