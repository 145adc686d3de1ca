//! One invocation: decode the MLflow payload, align columns to the model, predict, answer.

use forecast::distribution::{LevelMap, PointKind, level_key};
use forecast::wire::{ModelIdentity, PingResponse, PredictionsResponse};
use serde::Serialize;
use serde_json::Value;

use crate::decode::{self, DEFAULT_MAX_ROWS, ModelInvocation, ScoringInput};
use crate::error::{ModelError, ModelErrorType, echo};
use crate::loader::LoadedModel;

/// What the model host answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelResponse {
    /// Predictions, in request order.
    Predictions(PredictionsResponse),
    /// Readiness and metadata.
    Ping(Box<PingResponse>),
}

/// Handles one invocation payload, already parsed into a JSON tree, with the default row
/// limit.
pub fn handle_invocation(model: &LoadedModel, payload: Value) -> Result<ModelResponse, ModelError> {
    let invocation = decode::decode_value(&payload, DEFAULT_MAX_ROWS)?;
    respond(model, invocation, DEFAULT_MAX_ROWS)
}

/// Handles one invocation payload given as JSON text, refusing more than `max_rows` rows.
/// This is the path the Lambda takes: the text goes straight into one vector of numbers.
pub fn handle_json(
    model: &LoadedModel,
    payload: &str,
    max_rows: usize,
) -> Result<ModelResponse, ModelError> {
    let invocation = decode::decode_str(payload, max_rows)?;
    respond(model, invocation, max_rows)
}

/// Answers a decoded invocation.
pub fn respond(
    model: &LoadedModel,
    invocation: ModelInvocation,
    max_rows: usize,
) -> Result<ModelResponse, ModelError> {
    match invocation {
        ModelInvocation::Ping => Ok(ModelResponse::Ping(Box::new(ping(model, max_rows)))),
        ModelInvocation::Predict(input) => predict(model, input).map(ModelResponse::Predictions),
    }
}

fn identity(model: &LoadedModel) -> ModelIdentity {
    ModelIdentity {
        name: model.manifest.name.clone(),
        version: model.manifest.version.clone(),
    }
}

/// Readiness and metadata of the loaded model.
pub fn ping(model: &LoadedModel, max_rows: usize) -> PingResponse {
    PingResponse {
        status: "ready".to_owned(),
        model: identity(model),
        features: model.manifest.features.clone(),
        num_trees: u32::try_from(model.booster.num_trees()).unwrap_or(u32::MAX),
        source_uri: model.source_uri.clone(),
        model_sha256: model.manifest.model_sha256.clone(),
        loaded_at: model.loaded_at.clone(),
        model_etag: model.model_etag.clone(),
        init: Some(model.timings),
        max_rows: Some(max_rows),
        domain: Some(model.manifest.domain.clone()),
    }
}

fn predict(model: &LoadedModel, input: ScoringInput) -> Result<PredictionsResponse, ModelError> {
    let rows = input.rows;
    let options = input.options.clone();
    let values = align(&model.manifest.features, input)?;
    let means = model.predict(&values).map_err(|e| {
        tracing::error!(error = %e, "prediction failed");
        ModelError::new(
            ModelErrorType::Internal,
            "the booster failed to predict".to_owned(),
        )
    })?;
    if means.len() != rows {
        tracing::error!(
            rows,
            predictions = means.len(),
            "the booster answered the wrong number of predictions"
        );
        return Err(ModelError::new(
            ModelErrorType::Internal,
            "the booster answered the wrong number of predictions".to_owned(),
        ));
    }
    let point = options.point.unwrap_or(model.manifest.point);
    if options.quantiles.is_none() && point == PointKind::Mean {
        // The path every existing client takes: the booster's predictions, untouched.
        return Ok(PredictionsResponse {
            predictions: means,
            model: identity(model),
            quantiles: None,
        });
    }
    let Some(distribution) = &model.manifest.distribution else {
        return Err(ModelError::new(
            ModelErrorType::NoDistribution,
            format!(
                "model {}/{} has no predictive distribution in its manifest, so it answers no quantiles and no SMAPE-optimal point; ask without them or publish a model trained with distribution metadata (manifest format 3 or later)",
                model.manifest.name, model.manifest.version
            ),
        ));
    };
    let predictive = distribution.predictive;
    let quantiles = options.quantiles.map(|levels| {
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(rows); levels.len()];
        let mut row = Vec::with_capacity(levels.len());
        for mean in &means {
            predictive.at(*mean).quantiles_into(&levels, &mut row);
            for (column, value) in columns.iter_mut().zip(&row) {
                column.push(*value);
            }
        }
        LevelMap(levels.iter().map(|l| level_key(*l)).zip(columns).collect())
    });
    let predictions = match point {
        PointKind::Mean => means,
        PointKind::Smape => means
            .iter()
            .map(|mean| predictive.at(*mean).smape_point())
            .collect(),
    };
    Ok(PredictionsResponse {
        predictions,
        model: identity(model),
        quantiles,
    })
}

/// The request's values in the model's feature order, row-major.
fn align(features: &[String], input: ScoringInput) -> Result<Vec<f64>, ModelError> {
    let Some(columns) = &input.columns else {
        if input.rows > 0 && input.width != features.len() {
            return Err(ModelError::new(
                ModelErrorType::SchemaMismatch,
                format!(
                    "rows have {} values but the model expects {} features, in this order: {features:?}",
                    input.width,
                    features.len()
                ),
            ));
        }
        return Ok(input.values);
    };
    if input.rows == 0 && columns.is_empty() {
        return Ok(Vec::new());
    }
    let order = column_order(features, columns)?;
    if order.iter().enumerate().all(|(i, &column)| i == column) {
        return Ok(input.values);
    }
    // `column_order` succeeded, so the request has exactly the model's columns and every
    // index in `order` is below the row width.
    let mut aligned = Vec::with_capacity(input.values.len());
    for row in input.values.chunks_exact(input.width) {
        aligned.extend(order.iter().map(|&column| row[column]));
    }
    Ok(aligned)
}

/// For each model feature, the index of the request column carrying it.
fn column_order(features: &[String], columns: &[String]) -> Result<Vec<usize>, ModelError> {
    for (i, column) in columns.iter().enumerate() {
        if !features.contains(column) {
            return Err(ModelError::new(
                ModelErrorType::SchemaMismatch,
                format!(
                    "unknown column {}; the model expects {features:?}",
                    echo(column)
                ),
            ));
        }
        if columns[..i].contains(column) {
            return Err(ModelError::new(
                ModelErrorType::SchemaMismatch,
                format!("column {} appears twice", echo(column)),
            ));
        }
    }
    features
        .iter()
        .map(|feature| {
            columns.iter().position(|c| c == feature).ok_or_else(|| {
                ModelError::new(
                    ModelErrorType::SchemaMismatch,
                    format!("missing column {feature:?}; the model expects {features:?}"),
                )
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
                matches!(&err, ModelError { kind: ModelErrorType::SchemaMismatch, message: m } if m.contains(needle)),
                "{columns:?}: {err:?}"
            );
        }
    }
}

#[cfg(test)]
mod model_tests {
    use crate::decode::MAX_COLUMNS;
    use crate::error::diagnostic;
    use forecast::wire::InitTimings;
    use serde_json::json;

    use super::*;
    use crate::testing::{manifest_for, tiny_model_text};
    use forecast::gbdt::Booster;

    pub(crate) fn loaded() -> LoadedModel {
        let text = tiny_model_text();
        LoadedModel {
            manifest: manifest_for(&text),
            booster: Booster::from_model_text(&text).unwrap(),
            source_uri: "s3://bucket/models/tiny/t1/".into(),
            loaded_at: "2026-01-01T00:00:00.000Z".into(),
            model_etag: Some("\"abc\"".into()),
            timings: InitTimings {
                total_ms: 12.5,
                ..InitTimings::default()
            },
        }
    }

    fn predictions(model: &LoadedModel, payload: Value) -> Vec<f64> {
        let from_tree = handle_invocation(model, payload.clone());
        let from_text = handle_json(model, &payload.to_string(), DEFAULT_MAX_ROWS);
        assert_eq!(from_tree, from_text, "{payload}");
        match from_text.unwrap() {
            ModelResponse::Predictions(p) => {
                assert_eq!(
                    (p.model.name.as_str(), p.model.version.as_str()),
                    ("tiny", "t1")
                );
                p.predictions
            }
            other => panic!("expected predictions, got {other:?}"),
        }
    }

    /// The error of `payload` with a limit of 3 rows, the same from text and from a tree.
    fn failure(model: &LoadedModel, payload: Value) -> ModelError {
        let err = handle_json(model, &payload.to_string(), 3).unwrap_err();
        let from_tree =
            decode::decode_value(&payload, 3).and_then(|invocation| respond(model, invocation, 3));
        assert_eq!(from_tree.err(), Some(err.clone()), "{payload}");
        err
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
    fn a_model_with_a_baseline_answers_the_booster_times_each_rows_baseline() {
        // GIVEN the tiny model on a baseline with factors on `a` (2 at 0, 3 at 19)
        use forecast::baseline::{Baseline, Factors};
        use forecast::gbdt::ExactF64;
        let mut model = loaded();
        model.manifest.baseline = Some(Baseline {
            level: ExactF64(1.5),
            factors: vec![
                Factors {
                    values: vec![ExactF64(0.0), ExactF64(19.0)],
                    factors: vec![ExactF64(2.0), ExactF64(3.0)],
                },
                Factors {
                    values: vec![ExactF64(0.0)],
                    factors: vec![ExactF64(1.0)],
                },
            ],
        });
        let direct = model.booster.predict(&[19.0, 0.0, 0.0, 19.0]).unwrap();
        // WHEN rows are predicted, columns in another order
        let served = predictions(
            &model,
            json!({"dataframe_split": {"columns": ["b", "a"], "data": [[0, 19], [19, 0]]}}),
        );
        // THEN each is the booster's prediction times its own row's baseline
        assert_eq!(served, [direct[0] * (1.5 * 3.0), direct[1] * (1.5 * 2.0)]);
    }

    #[test]
    fn every_mlflow_input_gives_the_same_predictions() {
        let model = loaded();
        let direct: Vec<u64> = model
            .booster
            .predict(&[19.0, 0.0, 0.0, 19.0, 7.5, 3.0])
            .unwrap()
            .into_iter()
            .map(f64::to_bits)
            .collect();
        for payload in [
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[19, 0], [0, 19], [7.5, 3]]}}),
            json!({"dataframe_split": {"columns": ["b", "a"], "data": [[0, 19], [19, 0], [3, 7.5]], "index": [0, 1, 2]}}),
            json!({"dataframe_split": {"data": [[19, 0], [0, 19], [7.5, 3]]}}),
            json!({"dataframe_records": [{"a": 19, "b": 0}, {"b": 19, "a": 0}, {"a": 7.5, "b": 3}]}),
            json!({"instances": [[19, 0], [0, 19], [7.5, 3]]}),
            json!({"instances": [{"b": 0, "a": 19}, {"a": 0, "b": 19}, {"a": 7.5, "b": 3}]}),
            json!({"inputs": [[19, 0], [0, 19], [7.5, 3]]}),
            json!({"inputs": {"b": [0, 19, 3], "a": [19, 0, 7.5]}}),
            json!({"inputs": {"a": [19, 0, 7.5], "b": [0, 19, 3]}, "params": {"predict_disable_shape_check": true}}),
        ] {
            let served: Vec<u64> = predictions(&model, payload.clone())
                .into_iter()
                .map(f64::to_bits)
                .collect();
            assert_eq!(served, direct, "{payload}");
        }
    }

    #[test]
    fn a_single_row_equals_the_same_row_in_a_batch() {
        let model = loaded();
        let batch = predictions(&model, json!({"instances": [[4, 5], [6, 7]]}));
        let single = predictions(&model, json!({"instances": [[4, 5]]}));
        assert_eq!(single[0].to_bits(), batch[0].to_bits());
    }

    #[test]
    fn empty_batches_answer_an_empty_list() {
        let model = loaded();
        for payload in [
            json!({"dataframe_split": {"columns": ["a", "b"], "data": []}}),
            json!({"dataframe_records": []}),
            json!({"instances": []}),
            json!({"inputs": {}}),
        ] {
            assert!(predictions(&model, payload).is_empty());
        }
        let answer =
            serde_json::to_value(handle_json(&model, r#"{"instances": []}"#, 3).unwrap()).unwrap();
        assert_eq!(
            answer,
            json!({"predictions": [], "model": {"name": "tiny", "version": "t1"}})
        );
    }

    #[test]
    fn the_response_is_the_mlflow_shape_plus_the_model() {
        let model = loaded();
        let answer = handle_json(&model, r#"{"instances": [[1, 2]]}"#, 3).unwrap();
        let value = serde_json::to_value(&answer).unwrap();
        assert_eq!(value["model"], json!({"name": "tiny", "version": "t1"}));
        assert_eq!(value["predictions"].as_array().unwrap().len(), 1);
        let decoded: PredictionsResponse = serde_json::from_value(value).unwrap();
        assert!(decoded.predictions[0].is_finite());
    }

    fn with_distribution(dispersion: f64) -> LoadedModel {
        use forecast::distribution::{DistributionInfo, Predictive};
        let mut model = loaded();
        model.manifest.distribution = Some(DistributionInfo {
            predictive: Predictive::negative_binomial(dispersion),
            estimated_on: "time:2017-10-01".into(),
            rows: 100,
            ties: "half".into(),
            calibration: vec![],
            alternatives: vec![],
        });
        model
    }

    fn answer(model: &LoadedModel, payload: Value) -> PredictionsResponse {
        let from_tree = handle_invocation(model, payload.clone());
        let from_text = handle_json(model, &payload.to_string(), DEFAULT_MAX_ROWS);
        assert_eq!(from_tree, from_text, "{payload}");
        match from_text {
            Ok(ModelResponse::Predictions(p)) => p,
            other => panic!("expected predictions, got {other:?}"),
        }
    }

    #[test]
    fn quantiles_come_from_the_manifest_distribution_around_unchanged_predictions() {
        let model = with_distribution(0.05);
        let rows = json!([[19, 0], [0, 19], [7.5, 3]]);
        let plain = answer(&model, json!({ "instances": rows }));
        let asked = answer(
            &model,
            json!({"params": {"quantiles": [0.9, 0.1, 0.5]}, "instances": rows}),
        );
        assert_eq!(asked.predictions, plain.predictions);
        let quantiles = asked.quantiles.unwrap();
        let keys: Vec<&str> = quantiles.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["p10", "p50", "p90"]);
        let predictive = forecast::distribution::Predictive::negative_binomial(0.05);
        for (row, mean) in plain.predictions.iter().enumerate() {
            let expected = predictive.at(*mean).quantiles(&[0.1, 0.5, 0.9]);
            let served: Vec<f64> = quantiles.0.iter().map(|(_, column)| column[row]).collect();
            assert_eq!(served, expected, "row {row}");
            assert!(served[0] <= served[1] && served[1] <= served[2]);
        }
    }

    #[test]
    fn a_plain_request_answers_exactly_what_it_did_before() {
        // With or without a distribution in the manifest, no `params` means no new keys.
        for model in [loaded(), with_distribution(0.05)] {
            let text = serde_json::to_string(
                &handle_json(&model, r#"{"instances": [[1, 2]]}"#, 3).unwrap(),
            )
            .unwrap();
            let prediction = model.booster.predict(&[1.0, 2.0]).unwrap()[0];
            assert_eq!(
                text,
                format!(
                    r#"{{"predictions":[{}],"model":{{"name":"tiny","version":"t1"}}}}"#,
                    serde_json::to_string(&prediction).unwrap()
                )
            );
        }
    }

    #[test]
    fn the_smape_point_replaces_the_prediction_when_asked() {
        let model = with_distribution(0.05);
        let plain = answer(&model, json!({"instances": [[19, 0]]}));
        let smape = answer(
            &model,
            json!({"instances": [[19, 0]], "params": {"point": "smape"}}),
        );
        let expected = forecast::distribution::Predictive::negative_binomial(0.05)
            .at(plain.predictions[0])
            .smape_point();
        assert_eq!(smape.predictions, [expected]);
        assert!(smape.quantiles.is_none());
        let mean = answer(
            &model,
            json!({"instances": [[19, 0]], "params": {"point": "mean"}}),
        );
        assert_eq!(mean.predictions, plain.predictions);
    }

    #[test]
    fn a_model_without_a_distribution_refuses_quantiles_and_smape_points_clearly() {
        let model = loaded();
        for params in [json!({"quantiles": [0.5]}), json!({"point": "smape"})] {
            let err = failure(&model, json!({"instances": [[1, 2]], "params": params}));
            assert!(
                matches!(&err, ModelError { kind: ModelErrorType::NoDistribution, message: m } if m.contains("tiny/t1 has no predictive distribution")),
                "{err:?}"
            );
            assert_eq!(diagnostic(err).error_type, "NoDistribution");
        }
    }

    #[test]
    fn bad_quantile_params_are_invalid_input() {
        let model = with_distribution(0.0);
        for (params, needle) in [
            (
                json!({"quantiles": [0.0]}),
                "strictly between 0 and 1, got 0",
            ),
            (
                json!({"quantiles": [1.5]}),
                "strictly between 0 and 1, got 1.5",
            ),
            (json!({"quantiles": []}), "at least one quantile level"),
            (
                json!({"quantiles": vec![0.5; 20]}),
                "at most 19 quantile levels",
            ),
            (json!({"quantiles": ["0.5"]}), "must be a list of numbers"),
            (json!({"quantiles": 0.5}), "must be a list of numbers"),
            (json!({"point": "median"}), "params.point must be"),
        ] {
            let err = failure(&model, json!({"params": params, "instances": [[1, 2]]}));
            assert!(
                matches!(&err, ModelError { kind: ModelErrorType::InvalidInput, message: m } if m.contains(needle)),
                "{params}: {err:?}"
            );
        }
    }

    #[test]
    fn ping_reports_the_loaded_model() {
        let ModelResponse::Ping(ping) = handle_json(&loaded(), r#"{"ping": {}}"#, 77).unwrap()
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
        assert_eq!(ping.source_uri, "s3://bucket/models/tiny/t1/");
        assert_eq!(
            ping.model_sha256,
            manifest_for(&tiny_model_text()).model_sha256
        );
        assert_eq!(ping.model_etag.as_deref(), Some("\"abc\""));
        assert_eq!(ping.init.map(|t| t.total_ms), Some(12.5));
        assert_eq!(ping.max_rows, Some(77));
        assert_eq!(ping.loaded_at, "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn missing_and_unknown_columns_are_schema_mismatches_naming_them() {
        let model = loaded();
        for (payload, needle) in [
            (
                json!({"dataframe_split": {"columns": ["a"], "data": [[1]]}}),
                "missing column \"b\"",
            ),
            (
                json!({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3]]}}),
                "unknown column \"c\"",
            ),
            (
                json!({"dataframe_split": {"columns": ["a", "c"], "data": []}}),
                "unknown column \"c\"",
            ),
            (
                json!({"dataframe_records": [{"a": 1}]}),
                "missing column \"b\"",
            ),
            (
                json!({"instances": [{"a": 1, "b": 2, "z": 3}]}),
                "unknown column \"z\"",
            ),
            (
                json!({"inputs": {"a": [1], "B": [2]}}),
                "unknown column \"B\"",
            ),
            (
                json!({"dataframe_records": [{"a": 1, "b": 2}, {"a": 1}]}),
                "row 1 lacks column \"b\"",
            ),
            (
                json!({"instances": [[1, 2, 3]]}),
                "rows have 3 values but the model expects 2 features, in this order: [\"a\", \"b\"]",
            ),
            (
                json!({"dataframe_split": {"data": [[1]]}}),
                "rows have 1 values but the model expects 2 features",
            ),
        ] {
            let err = failure(&model, payload.clone());
            assert!(
                matches!(&err, ModelError { kind: ModelErrorType::SchemaMismatch, message: m } if m.contains(needle)),
                "{payload}: {err:?}"
            );
        }
    }

    #[test]
    fn bad_values_and_payloads_are_invalid_input() {
        let model = loaded();
        for (payload, expected) in [
            (
                json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}),
                "row 1 has 1 values but there are 2 columns",
            ),
            (
                json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "2"]]}}),
                "row 0, column \"b\": expected a number, found a string",
            ),
            (
                json!({"dataframe_records": [{"a": 1, "b": null}]}),
                "row 0, column \"b\": expected a number, found null",
            ),
            (
                json!({"instances": [[1, 2], [true, 2]]}),
                "row 1, column 0: expected a number, found a boolean",
            ),
            (
                json!({"instances": [[1, 2]], "inputs": [[1, 2]]}),
                "the payload has both \"inputs\" and \"instances\"; send exactly one of dataframe_split, dataframe_records, instances, inputs, ping",
            ),
            (
                json!({"params": {}}),
                "the payload has none of dataframe_split, dataframe_records, instances, inputs, ping; send exactly one",
            ),
            (
                json!({"instances": [[1, 2], [1, 2], [1, 2], [1, 2]]}),
                "the request has more than 3 rows; send at most 3 rows per request",
            ),
        ] {
            assert_eq!(
                failure(&model, payload),
                ModelError::new(ModelErrorType::InvalidInput, expected.to_owned())
            );
        }
        let wide: Vec<u8> = vec![1; MAX_COLUMNS + 1];
        assert!(matches!(
            failure(&model, json!({ "instances": [wide] })),
            ModelError {
                kind: ModelErrorType::InvalidInput,
                ..
            }
        ));
    }

    #[test]
    fn huge_column_names_are_shortened_in_messages() {
        let name = "x".repeat(100_000);
        let err = failure(&loaded(), json!({"inputs": { name: [1] }}));
        assert!(
            matches!(&err, ModelError { kind: ModelErrorType::SchemaMismatch, message: m } if m.len() < 200),
            "{err:?}"
        );
    }

    #[test]
    fn the_default_row_limit_applies_to_tree_payloads() {
        let model = loaded();
        let rows = vec![[1, 2]; DEFAULT_MAX_ROWS + 1];
        let err = handle_invocation(&model, json!({ "instances": rows })).unwrap_err();
        assert_eq!(
            err,
            ModelError::new(
                ModelErrorType::InvalidInput,
                format!(
                    "the request has more than {DEFAULT_MAX_ROWS} rows; send at most {DEFAULT_MAX_ROWS} rows per request"
                )
            )
        );
    }
}
