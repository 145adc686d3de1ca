//! One invocation: decode the MLflow payload, align columns to the model, predict, answer.

use forecast::wire::{
    DataframeSplit, ModelIdentity, ModelInvocation, PingResponse, PredictionsResponse,
};
use serde::Serialize;
use serde_json::Value;

use crate::error::ModelError;
use crate::loader::LoadedModel;

/// What the model host answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelResponse {
    /// Predictions, in request order.
    Predictions(PredictionsResponse),
    /// Readiness and metadata.
    Ping(PingResponse),
}

/// Handles one invocation payload against the loaded model.
pub fn handle_invocation(model: &LoadedModel, payload: Value) -> Result<ModelResponse, ModelError> {
    match ModelInvocation::from_json(payload).map_err(|e| ModelError::InvalidInput(e.0))? {
        ModelInvocation::Ping => Ok(ModelResponse::Ping(ping(model))),
        ModelInvocation::Predict(split) => predict(model, &split).map(ModelResponse::Predictions),
    }
}

fn identity(model: &LoadedModel) -> ModelIdentity {
    ModelIdentity {
        name: model.manifest.name.clone(),
        version: model.manifest.version.clone(),
    }
}

fn ping(model: &LoadedModel) -> PingResponse {
    PingResponse {
        status: "ready".to_owned(),
        model: identity(model),
        features: model.manifest.features.clone(),
        num_trees: model.booster.num_trees(),
        source_uri: model.source_uri.clone(),
        model_sha256: model.manifest.model_sha256.clone(),
        loaded_at: model.loaded_at.clone(),
    }
}

fn predict(model: &LoadedModel, split: &DataframeSplit) -> Result<PredictionsResponse, ModelError> {
    let order = column_order(&model.manifest.features, &split.columns)?;
    let width = split.columns.len();
    let mut rows = Vec::with_capacity(split.data.len() * order.len());
    for (i, row) in split.data.iter().enumerate() {
        if row.len() != width {
            return Err(ModelError::InvalidInput(format!(
                "row {i} has {} values but there are {width} columns",
                row.len()
            )));
        }
        for &column in &order {
            let value = row[column];
            if !value.is_finite() {
                return Err(ModelError::InvalidInput(format!(
                    "row {i}, column {:?}: value is not a finite number",
                    split.columns[column]
                )));
            }
            rows.push(value);
        }
    }
    let predictions = model.booster.predict(&rows).map_err(|e| {
        tracing::error!(error = %e, "prediction failed");
        ModelError::Internal("the booster failed to predict".to_owned())
    })?;
    Ok(PredictionsResponse {
        predictions,
        model: identity(model),
    })
}

/// For each model feature, the index of the request column carrying it.
fn column_order(features: &[String], columns: &[String]) -> Result<Vec<usize>, ModelError> {
    for (i, column) in columns.iter().enumerate() {
        if !features.contains(column) {
            return Err(ModelError::SchemaMismatch(format!(
                "unknown column {column:?}; the model expects {features:?}"
            )));
        }
        if columns[..i].contains(column) {
            return Err(ModelError::SchemaMismatch(format!(
                "column {column:?} appears twice"
            )));
        }
    }
    features
        .iter()
        .map(|feature| {
            columns.iter().position(|c| c == feature).ok_or_else(|| {
                ModelError::SchemaMismatch(format!(
                    "missing column {feature:?}; the model expects {features:?}"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn columns_are_matched_by_name_in_any_order() {
        let features = names(&["store", "item", "year"]);
        assert_eq!(
            column_order(&features, &names(&["year", "store", "item"])).unwrap(),
            [1, 2, 0]
        );
    }

    #[test]
    fn missing_unknown_and_duplicate_columns_are_schema_mismatches() {
        let features = names(&["store", "item"]);
        for (columns, needle) in [
            (names(&["store"]), "missing column \"item\""),
            (
                names(&["store", "item", "colour"]),
                "unknown column \"colour\"",
            ),
            (names(&["store", "store", "item"]), "appears twice"),
        ] {
            let err = column_order(&features, &columns).unwrap_err();
            assert!(
                matches!(&err, ModelError::SchemaMismatch(m) if m.contains(needle)),
                "{err:?}"
            );
        }
    }
}

#[cfg(test)]
mod model_tests {
    use serde_json::json;

    use super::*;
    use crate::booster::SharedBooster;
    use crate::testing::{manifest_for, tiny_model_text};

    fn loaded() -> LoadedModel {
        let text = tiny_model_text();
        LoadedModel {
            manifest: manifest_for(&text),
            booster: SharedBooster::from_model_text(&text).unwrap(),
            source_uri: "s3://bucket/models/tiny/t1/".into(),
            loaded_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn predictions(model: &LoadedModel, payload: Value) -> Vec<f64> {
        match handle_invocation(model, payload).unwrap() {
            ModelResponse::Predictions(p) => p.predictions,
            other => panic!("expected predictions, got {other:?}"),
        }
    }

    #[test]
    fn predictions_equal_the_booster_and_ignore_column_order() {
        let model = loaded();
        let direct = model.booster.predict(&[19.0, 0.0, 0.0, 19.0]).unwrap();
        let served = predictions(
            &model,
            json!({"dataframe_split": {"columns": ["b", "a"], "data": [[0, 19], [19, 0]]}}),
        );
        assert_eq!(served, direct);
        assert!(served[0] > served[1], "a weighs three times b: {served:?}");
    }

    #[test]
    fn an_empty_batch_answers_an_empty_list() {
        let model = loaded();
        assert!(
            predictions(
                &model,
                json!({"dataframe_split": {"columns": ["a", "b"], "data": []}})
            )
            .is_empty()
        );
    }

    #[test]
    fn ping_reports_the_loaded_model() {
        let ModelResponse::Ping(ping) = handle_invocation(&loaded(), json!({"ping": {}})).unwrap()
        else {
            panic!("expected a ping answer");
        };
        assert_eq!(ping.status, "ready");
        assert_eq!(
            (ping.model.name.as_str(), ping.model.version.as_str()),
            ("tiny", "t1")
        );
        assert_eq!(ping.features, ["a", "b"]);
        assert_eq!(ping.num_trees, 10);
    }

    #[test]
    fn ragged_rows_and_bad_payloads_are_invalid_input() {
        let model = loaded();
        let err = handle_invocation(
            &model,
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ModelError::InvalidInput("row 1 has 1 values but there are 2 columns".into())
        );
        let err = handle_invocation(&model, json!({"instances": [[1, 2]]})).unwrap_err();
        assert!(matches!(err, ModelError::InvalidInput(_)));
    }
}
