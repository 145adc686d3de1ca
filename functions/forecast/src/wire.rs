//! Wire formats of the model Lambda, compatible with MLflow's scoring server: the types both
//! sides share. The model function decodes requests with its own streaming decoder
//! (`model::decode`); the orchestrator builds them from these types.
//!
//! Request: exactly one of MLflow's four inputs (`dataframe_split`, `dataframe_records`,
//! `instances`, `inputs`), or `{"ping": {}}`; an optional `params` object may ask for quantiles
//! (`"quantiles": [0.1, 0.5, 0.9]`) and for the point (`"point": "mean" | "smape"`); its other
//! keys are ignored, as MLflow's server does.
//!
//! Answer: `{"predictions": [...], "model": {...}}` or a [`PingResponse`]. Failures travel as
//! Lambda function errors whose body is a [`FunctionErrorBody`]; the model function reports
//! a [`ModelError`] and the orchestrator matches its [`ModelErrorType`], so a kind renamed on
//! one side is a compile error on the other.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::distribution::{LevelMap, PointKind};

/// MLflow's `dataframe_split` orientation: named columns and row-major data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataframeSplit {
    /// Column names; matched to the model's features by name.
    pub columns: Vec<String>,
    /// Rows, each with one number per column.
    pub data: Vec<Vec<f64>>,
    /// Optional row labels (pandas index); accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Vec<Value>>,
}

/// What a prediction request asks for beyond one number per row (from `params`).
// `point` before `quantiles`: the keys of `params` go out in the order callers always sent.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PredictOptions {
    /// The point to answer; the model's default when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<PointKind>,
    /// Quantile levels, ascending and distinct, each in (0, 1); `None` when not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<f64>>,
}

impl PredictOptions {
    /// Whether nothing beyond the model's default answer is asked for.
    pub fn is_plain(&self) -> bool {
        self.quantiles.is_none() && self.point.is_none()
    }
}

/// Default cap on rows per request to the model function. 50,000 rows of five features are
/// about 1.3 MB as `dataframe_split` (3 MB as records) and answer about 1 MB, far under the
/// 6 MB a synchronous Lambda invocation may carry each way.
pub const DEFAULT_MAX_ROWS: usize = 50_000;

/// Cap on columns per request: far more than any model here has, and it bounds the memory
/// a request of column names alone can take.
pub const MAX_COLUMNS: usize = 1_024;

/// A request to the model function as it decodes it (`model::decode`).
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInvocation {
    /// `{"ping": {}}`: readiness and metadata.
    Ping,
    /// One of the MLflow inputs: predict these rows.
    Predict(ScoringInput),
}

/// Rows decoded from any of the MLflow inputs: one flat, row-major vector of numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoringInput {
    /// Names of the columns, in the order of each row's values; `None` when the rows came as
    /// bare lists, to be matched to the model's features by position.
    pub columns: Option<Vec<String>>,
    /// Values per row.
    pub width: usize,
    /// Number of rows.
    pub rows: usize,
    /// `rows * width` finite numbers, row after row.
    pub values: Vec<f64>,
    /// What `params` asked for besides the plain predictions.
    pub options: PredictOptions,
}

/// A prediction request in MLflow's `dataframe_split` orientation, as a caller sends it:
/// `{"dataframe_split": {...}}`, with `"params"` only when something beyond the model's
/// default answer is asked for (a plain request is exactly MLflow's payload).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionsRequest {
    /// The rows, named by column.
    pub dataframe_split: DataframeSplit,
    /// Quantiles and point, when asked for.
    #[serde(skip_serializing_if = "PredictOptions::is_plain")]
    pub params: PredictOptions,
}

/// `{"ping": {}}`: asks the model host for readiness and its manifest ([`PingResponse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PingRequest {
    ping: Empty,
}

/// An object without members, `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
struct Empty {}

/// Name and version of the model that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
}

/// The answer to a prediction request, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionsResponse {
    /// One prediction per input row.
    pub predictions: Vec<f64>,
    /// Which model produced them.
    pub model: ModelIdentity,
    /// When asked for: per level (`p10`, ...), one quantile per input row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<LevelMap<Vec<f64>>>,
}

/// Where the cold start spent its time, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct InitTimings {
    /// Fetching manifest and booster (concurrently), less the hashing and reading of the
    /// booster's chunks done while it arrives (counted below).
    pub fetch_ms: f64,
    /// Parsing the manifest and hashing the booster (sha256, chunk by chunk as it arrives).
    pub verify_ms: f64,
    /// Reading the booster's trees (chunk by chunk as they arrive), compiling them and
    /// checking its features.
    pub parse_ms: f64,
    /// Reproducing the manifest's check rows (which runs every tree once before the first
    /// invocation).
    pub warmup_ms: f64,
    /// All of the above, end to end.
    pub total_ms: f64,
}

/// The answer to `{"ping": {}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingResponse {
    /// `ready` once the booster is loaded (the host never answers before that).
    pub status: String,
    /// Model name and version.
    pub model: ModelIdentity,
    /// Feature names in the booster's column order.
    pub features: Vec<String>,
    /// Number of trees in the booster.
    pub num_trees: u32,
    /// Where the model was loaded from.
    pub source_uri: String,
    /// sha256 of `model.txt`, verified at load.
    pub model_sha256: String,
    /// When the model was loaded, RFC 3339 UTC.
    pub loaded_at: String,
    /// ETag of `model.txt` as the object store reported it (none for local files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_etag: Option<String>,
    /// Timings of the cold start that loaded this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitTimings>,
    /// Most rows one request may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// The stores, items and dates the model was trained on (from its manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<crate::manifest::TrainingDomain>,
}

/// The `errorType` values the model host reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelErrorType {
    /// The caller sent a payload the host cannot decode.
    InvalidInput,
    /// The columns do not match the model's features.
    SchemaMismatch,
    /// The host has no usable model (its cold start failed); retrying later may help.
    ModelUnavailable,
    /// The booster failed; not the caller's fault.
    Internal,
    /// Quantiles or a SMAPE-optimal point were asked of a model whose manifest has no
    /// predictive distribution.
    NoDistribution,
}

impl ModelErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "InvalidInput",
            Self::SchemaMismatch => "SchemaMismatch",
            Self::ModelUnavailable => "ModelUnavailable",
            Self::Internal => "Internal",
            Self::NoDistribution => "NoDistribution",
        }
    }
}

/// A failed invocation of the model host: its `errorType` and a message fit for the caller,
/// naming the key, row or column at fault (its `errorMessage`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    /// How the error is reported.
    pub kind: ModelErrorType,
    /// What is wrong.
    pub message: String,
}

impl ModelError {
    /// An error of `kind`.
    pub fn new(kind: ModelErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The body the Invoke API carries for this error.
    pub fn body(&self) -> FunctionErrorBody {
        FunctionErrorBody {
            error_type: FunctionErrorType::Model(self.kind),
            error_message: self.message.clone(),
        }
    }
}

/// The `errorType` of a function error: one the model host reports, or any other (the Lambda
/// runtime's own, such as `Runtime.ExitError`, when the function itself failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FunctionErrorType {
    /// One of the model host's kinds.
    Model(ModelErrorType),
    /// Any other type, as reported.
    Other(String),
}

impl std::fmt::Display for FunctionErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Model(kind) => f.write_str(kind.as_str()),
            Self::Other(other) => f.write_str(other),
        }
    }
}

/// The body of a Lambda function error, as the Invoke API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionErrorBody {
    /// Error kind, e.g. `InvalidInput`.
    pub error_type: FunctionErrorType,
    /// Human-readable message.
    pub error_message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ping_response_without_the_optional_fields_still_decodes() {
        let ping: PingResponse = serde_json::from_value(json!({
            "status": "ready",
            "model": {"name": "demand", "version": "v1"},
            "features": ["store"],
            "num_trees": 3,
            "source_uri": "s3://b/models/demand/v1/",
            "model_sha256": "00",
            "loaded_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            (ping.model_etag, ping.init, ping.max_rows),
            (None, None, None)
        );
    }

    /// The payloads the orchestrator sent when it built them as JSON maps: byte for byte,
    /// `params` only when asked for, its keys in the map's (sorted) order.
    #[test]
    fn requests_serialise_to_the_payloads_callers_always_sent() {
        assert_eq!(
            serde_json::to_string(&PingRequest::default()).unwrap(),
            r#"{"ping":{}}"#
        );
        let split = DataframeSplit {
            columns: vec!["store".to_owned(), "year".to_owned()],
            data: vec![vec![1.0, 2018.0], vec![10.0, 2017.5]],
            index: None,
        };
        let plain = PredictionsRequest {
            dataframe_split: split.clone(),
            params: PredictOptions::default(),
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"dataframe_split":{"columns":["store","year"],"data":[[1.0,2018.0],[10.0,2017.5]]}}"#
        );
        for params in [
            PredictOptions {
                point: Some(PointKind::Smape),
                quantiles: Some(vec![0.1, 0.5, 0.9]),
            },
            PredictOptions {
                point: None,
                quantiles: Some(vec![0.025]),
            },
            PredictOptions {
                point: Some(PointKind::Mean),
                quantiles: None,
            },
        ] {
            let as_map = json!({ "dataframe_split": split, "params": params }).to_string();
            let typed = PredictionsRequest {
                dataframe_split: split.clone(),
                params,
            };
            assert_eq!(serde_json::to_string(&typed).unwrap(), as_map);
        }
    }

    const ALL: [ModelErrorType; 5] = [
        ModelErrorType::InvalidInput,
        ModelErrorType::SchemaMismatch,
        ModelErrorType::ModelUnavailable,
        ModelErrorType::Internal,
        ModelErrorType::NoDistribution,
    ];

    #[test]
    fn error_types_are_the_documented_strings() {
        let names: Vec<&str> = ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            names,
            [
                "InvalidInput",
                "SchemaMismatch",
                "ModelUnavailable",
                "Internal",
                "NoDistribution"
            ]
        );
        for kind in ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                Value::String(kind.as_str().to_owned())
            );
        }
    }

    #[test]
    fn function_error_body_uses_the_lambda_field_names() {
        let body = ModelError::new(ModelErrorType::SchemaMismatch, "missing column year").body();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"errorType": "SchemaMismatch", "errorMessage": "missing column year"})
        );
    }

    #[test]
    fn every_kind_reads_back_as_itself_and_other_types_as_reported() {
        for kind in ALL {
            let text = serde_json::to_string(&ModelError::new(kind, "m").body()).unwrap();
            let body: FunctionErrorBody = serde_json::from_str(&text).unwrap();
            assert_eq!(body.error_type, FunctionErrorType::Model(kind));
            assert_eq!(body.error_type.to_string(), kind.as_str());
        }
        let body: FunctionErrorBody =
            serde_json::from_str(r#"{"errorType": "Runtime.ExitError", "errorMessage": "exit"}"#)
                .unwrap();
        assert_eq!(
            body.error_type,
            FunctionErrorType::Other("Runtime.ExitError".to_owned())
        );
        assert_eq!(body.error_type.to_string(), "Runtime.ExitError");
    }
}
