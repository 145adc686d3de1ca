//! Wire formats of the model Lambda, compatible with MLflow's scoring server.
//!
//! Request: `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}` or
//! `{"ping": {}}`; an optional `params` object is accepted and ignored. Answer:
//! `{"predictions": [...], "model": {...}}` or a [`PingResponse`]. Failures travel as Lambda
//! function errors whose body is a [`FunctionErrorBody`] with a typed `errorType`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The request keys the model host understands, for error messages.
pub const ACCEPTED_KEYS: [&str; 2] = ["dataframe_split", "ping"];

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

/// A decoded invocation of the model Lambda.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInvocation {
    /// `{"ping": {}}`: readiness and metadata.
    Ping,
    /// `{"dataframe_split": ...}`: predict these rows.
    Predict(DataframeSplit),
}

/// A payload the model host cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPayload(pub String);

impl ModelInvocation {
    /// Decodes an invocation payload: exactly one of [`ACCEPTED_KEYS`], plus optional `params`.
    pub fn from_json(payload: Value) -> Result<Self, InvalidPayload> {
        let accepted = ACCEPTED_KEYS.join(", ");
        let Value::Object(mut object) = payload else {
            return Err(InvalidPayload(format!(
                "the payload must be a JSON object with exactly one of: {accepted}"
            )));
        };
        object.remove("params");
        if object.len() != 1 {
            let found: Vec<_> = object.keys().map(String::as_str).collect();
            return Err(InvalidPayload(format!(
                "the payload must have exactly one of: {accepted}; found [{}]",
                found.join(", ")
            )));
        }
        let mut entries = object.into_iter();
        let Some((key, value)) = entries.next() else {
            return Err(InvalidPayload(format!(
                "the payload must have one of: {accepted}"
            )));
        };
        match key.as_str() {
            "ping" => Ok(Self::Ping),
            "dataframe_split" => serde_json::from_value(value)
                .map(Self::Predict)
                .map_err(|e| InvalidPayload(format!("invalid dataframe_split: {e}"))),
            other => Err(InvalidPayload(format!(
                "unsupported input {:?}; accepted: {accepted}",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }
}

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
}

/// The `errorType` values the model host reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelErrorType {
    /// The caller sent a payload the host cannot decode.
    InvalidInput,
    /// The columns do not match the model's features.
    SchemaMismatch,
    /// The booster failed; not the caller's fault.
    Internal,
}

impl ModelErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "InvalidInput",
            Self::SchemaMismatch => "SchemaMismatch",
            Self::Internal => "Internal",
        }
    }
}

/// The body of a Lambda function error, as the Invoke API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionErrorBody {
    /// Error kind, e.g. `InvalidInput`.
    pub error_type: String,
    /// Human-readable message.
    pub error_message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_ping_and_dataframe_split() {
        assert_eq!(
            ModelInvocation::from_json(json!({"ping": {}})),
            Ok(ModelInvocation::Ping)
        );
        let payload = json!({
            "dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4]]},
            "params": {"anything": 1}
        });
        let ModelInvocation::Predict(split) = ModelInvocation::from_json(payload).unwrap() else {
            panic!("expected a prediction request");
        };
        assert_eq!(split.columns, ["a", "b"]);
        assert_eq!(split.data, [[1.0, 2.5], [3.0, 4.0]]);
    }

    #[test]
    fn rejects_none_several_or_unknown_inputs_naming_the_accepted_keys() {
        for payload in [
            json!({}),
            json!({"ping": {}, "dataframe_split": {}}),
            json!({"dataframe_records": []}),
            json!([1, 2]),
        ] {
            let err = ModelInvocation::from_json(payload.clone()).unwrap_err();
            assert!(err.0.contains("dataframe_split, ping"), "{payload}: {err}");
        }
    }

    #[test]
    fn rejects_non_numeric_cells() {
        let err = ModelInvocation::from_json(
            json!({"dataframe_split": {"columns": ["a"], "data": [["x"]]}}),
        )
        .unwrap_err();
        assert!(err.0.starts_with("invalid dataframe_split"), "{err}");
    }

    #[test]
    fn function_error_body_uses_the_lambda_field_names() {
        let body = FunctionErrorBody {
            error_type: ModelErrorType::SchemaMismatch.as_str().to_owned(),
            error_message: "missing column year".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"errorType": "SchemaMismatch", "errorMessage": "missing column year"})
        );
    }
}
