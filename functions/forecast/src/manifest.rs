//! The model manifest and where a model lives in S3.
//!
//! A model is two objects under one versioned prefix:
//! `s3://<bucket>/models/<name>/<version>/model.txt` (LightGBM text format) and
//! `.../manifest.json` ([`ModelManifest`]). The manifest is the contract between trainer,
//! model host and orchestrator: it names the features in order and pins the booster's sha256.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::distribution::{DistributionInfo, PointKind};
use crate::gbdt::CheckRow;
use crate::request::{FieldError, ForecastRequest};

/// Version of the manifest schema written by this code (2: check rows; 3: predictive
/// distribution, point choice and backtest; 4: baseline). Every field added since 1 has a
/// default, so manifests of older formats still load (without quantiles). A host older than
/// format 4 cannot serve a model with a baseline, and refuses it: its check rows carry the
/// baseline, which such a host does not apply.
pub const MANIFEST_FORMAT_VERSION: u32 = 4;
/// File name of the booster inside a model prefix.
pub const MODEL_FILE: &str = "model.txt";
/// File name of the manifest inside a model prefix.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Everything known about one trained booster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// Manifest schema version ([`MANIFEST_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Model name, e.g. `demand`.
    pub name: String,
    /// Model version, the last segment of its S3 prefix.
    pub version: String,
    /// Feature names in the booster's column order.
    pub features: Vec<String>,
    /// LightGBM objective, e.g. `regression_l1`.
    pub objective: String,
    /// Every LightGBM parameter used for training.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// How the validation rows were chosen, e.g. `random:0.2:2018`.
    pub split: String,
    /// Metrics on the validation rows, by name (`smape`, `mape`, `mae`, `rmse`).
    pub metrics: BTreeMap<String, f64>,
    /// Training time, RFC 3339 UTC.
    pub trained_at: String,
    /// sha256 (hex) of the training CSV as read.
    pub training_data_sha256: String,
    /// sha256 (hex) of `model.txt`.
    pub model_sha256: String,
    /// Number of trees (boosting rounds) in the booster.
    pub num_trees: u32,
    /// What the training data covered.
    pub domain: TrainingDomain,
    /// Rows used for fitting and for validation.
    pub rows: RowCounts,
    /// Versions of the tools that produced the model.
    pub tool_versions: BTreeMap<String, String>,
    /// Feature rows with LightGBM's own predictions, exact: an evaluator serving the model
    /// must reproduce every one bit for bit ([`crate::gbdt::Booster::verify`]). Absent in
    /// manifests of format 1, whose models are then refused by the model host.
    #[serde(default)]
    pub check_rows: Vec<CheckRow>,
    /// The predictive distribution around the booster's predictions, with its calibration
    /// (format 3). Without it the model answers no quantiles and no SMAPE-optimal points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<DistributionInfo>,
    /// The point a prediction answers when the request does not say (format 3; `mean`, the
    /// booster's own prediction, when absent).
    #[serde(default, skip_serializing_if = "PointKind::is_mean")]
    pub point: PointKind,
    /// The rolling-origin backtest of the training recipe (format 3), when one was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest: Option<serde_json::Value>,
    /// The baseline the booster was trained on top of (format 4): every prediction is the
    /// booster's times the row's baseline, check rows included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// The input domain seen in training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingDomain {
    /// Distinct store ids, ascending.
    pub stores: Vec<u32>,
    /// Distinct item ids, ascending.
    pub items: Vec<u32>,
    /// First date in the data, `YYYY-MM-DD`.
    pub date_min: String,
    /// Last date in the data, `YYYY-MM-DD`.
    pub date_max: String,
}

impl TrainingDomain {
    /// Checks a valid request against the ids the model was trained on: one error per field
    /// (`loc` + `store` / `item`) whose id the model never saw, naming what it knows.
    /// An empty id list means the manifest does not say, and accepts every id.
    pub fn check(&self, request: &ForecastRequest, loc: &[&str]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (field, id, known) in [
            ("store", request.store.get(), &self.stores),
            ("item", request.item.get(), &self.items),
        ] {
            if known.is_empty() || known.binary_search(&id).is_ok() {
                continue;
            }
            let mut at = loc.to_vec();
            at.push(field);
            errors.push(FieldError::new(
                &at,
                format!(
                    "{field} {id} is outside the model's training data; it knows {}",
                    describe_ids(known)
                ),
                "out_of_training_domain",
            ));
        }
        errors
    }
}

/// `1..=10` for a contiguous ascending list, otherwise the ids themselves (the first few).
fn describe_ids(ids: &[u32]) -> String {
    const SHOWN: usize = 20;
    match (ids.first(), ids.last()) {
        (Some(first), Some(last))
            if u64::from(*last) - u64::from(*first) + 1 == ids.len() as u64 =>
        {
            format!("{first}..={last}")
        }
        _ => {
            let shown: Vec<String> = ids.iter().take(SHOWN).map(u32::to_string).collect();
            let more = if ids.len() > SHOWN { ", ..." } else { "" };
            format!("{{{}{more}}}", shown.join(", "))
        }
    }
}

/// How many rows went where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Rows read from the CSV.
    pub total: u64,
    /// Rows the booster was fitted on.
    pub fit: u64,
    /// Rows held out for the metrics.
    pub validation: u64,
}

/// Where a model lives: a bucket and a `models/<name>/<version>/` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLocation {
    /// The S3 bucket.
    pub bucket: String,
    /// The key prefix, always ending in `/`.
    pub prefix: String,
}

/// A model URI that is not `s3://bucket/prefix/`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model URI {uri:?}: {reason} (expected s3://<bucket>/models/<name>/<version>/)")]
pub struct ModelUriError {
    /// The rejected URI.
    pub uri: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ModelLocation {
    /// The canonical location of model `name` at `version` in `bucket`.
    pub fn new(bucket: &str, name: &str, version: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            prefix: format!("models/{name}/{version}/"),
        }
    }

    /// Parses `s3://bucket/some/prefix/` (a missing trailing slash is added).
    pub fn parse_s3_uri(uri: &str) -> Result<Self, ModelUriError> {
        let err = |reason| ModelUriError {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| err("it does not start with s3://"))?;
        let (bucket, prefix) = rest
            .split_once('/')
            .ok_or_else(|| err("it has no key prefix"))?;
        if bucket.is_empty() {
            return Err(err("the bucket name is empty"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Err(err("the key prefix is empty"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: format!("{prefix}/"),
        })
    }

    /// Key of `model.txt`.
    pub fn model_key(&self) -> String {
        format!("{}{MODEL_FILE}", self.prefix)
    }

    /// Key of `manifest.json`.
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_FILE}", self.prefix)
    }

    /// `s3://bucket/prefix/`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn domain(stores: Vec<u32>, items: Vec<u32>) -> TrainingDomain {
        TrainingDomain {
            stores,
            items,
            date_min: "2013-01-01".into(),
            date_max: "2017-12-31".into(),
        }
    }

    fn request(store: u32, item: u32) -> ForecastRequest {
        ForecastRequest::from_json(
            &json!({"date": "2018-01-01", "store": store, "item": item}),
            &["body"],
        )
        .unwrap()
    }

    #[test]
    fn ids_inside_the_training_domain_pass() {
        let known = domain((1..=10).collect(), (1..=50).collect());
        assert_eq!(known.check(&request(1, 50), &["body"]), []);
        assert_eq!(known.check(&request(10, 1), &["body"]), []);
    }

    #[test]
    fn ids_outside_the_training_domain_name_the_field_and_the_known_range() {
        let known = domain((1..=10).collect(), vec![2, 4, 8]);
        let errors = known.check(&request(11, 3), &["body", "instances", "7"]);
        let summary: Vec<(String, &str, &str)> = errors
            .iter()
            .map(|e| (e.loc.join("."), e.kind.as_str(), e.msg.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "body.instances.7.store".to_owned(),
                    "out_of_training_domain",
                    "store 11 is outside the model's training data; it knows 1..=10"
                ),
                (
                    "body.instances.7.item".to_owned(),
                    "out_of_training_domain",
                    "item 3 is outside the model's training data; it knows {2, 4, 8}"
                ),
            ]
        );
    }

    #[test]
    fn an_empty_domain_accepts_every_id() {
        assert_eq!(
            domain(vec![], vec![]).check(&request(999, 999), &["body"]),
            []
        );
    }

    #[test]
    fn a_format_2_manifest_still_loads_without_a_distribution() {
        let format_2 = json!({
            "format_version": 2, "name": "demand", "version": "v1",
            "features": ["store", "item"], "objective": "regression_l1", "parameters": {},
            "split": "time:2017-10-01", "metrics": {"smape": 12.5}, "trained_at": "2026-01-01T00:00:00Z",
            "training_data_sha256": "00", "model_sha256": "11", "num_trees": 3,
            "domain": {"stores": [1], "items": [1], "date_min": "2013-01-01", "date_max": "2017-12-31"},
            "rows": {"total": 10, "fit": 8, "validation": 2}, "tool_versions": {},
            "check_rows": []
        });
        let manifest: ModelManifest = serde_json::from_value(format_2.clone()).unwrap();
        assert_eq!(manifest.distribution, None);
        assert_eq!(manifest.point, crate::distribution::PointKind::Mean);
        assert_eq!(manifest.backtest, None);
        // Written again, it has no new keys: a format-2 reader reads it as before.
        assert_eq!(serde_json::to_value(&manifest).unwrap(), format_2);
    }

    #[test]
    fn canonical_layout_is_models_name_version() {
        let loc = ModelLocation::new("bucket", "demand", "v3");
        assert_eq!(loc.model_key(), "models/demand/v3/model.txt");
        assert_eq!(loc.manifest_key(), "models/demand/v3/manifest.json");
        assert_eq!(loc.uri(), "s3://bucket/models/demand/v3/");
        assert_eq!(ModelLocation::parse_s3_uri(&loc.uri()), Ok(loc));
    }

    #[test]
    fn uri_without_trailing_slash_is_accepted() {
        let loc = ModelLocation::parse_s3_uri("s3://b/models/demand/1").unwrap();
        assert_eq!(loc.prefix, "models/demand/1/");
    }

    #[test]
    fn malformed_uris_are_rejected_with_a_reason() {
        for (uri, reason) in [
            ("https://b/models/x/1/", "s3://"),
            ("s3://bucket", "no key prefix"),
            ("s3:///models/x/1/", "bucket name is empty"),
            ("s3://bucket///", "key prefix is empty"),
        ] {
            let err = ModelLocation::parse_s3_uri(uri).unwrap_err();
            assert!(err.to_string().contains(reason), "{uri}: {err}");
        }
    }
}
