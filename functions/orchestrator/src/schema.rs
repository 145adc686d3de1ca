//! The API's bodies as Rust types, and the OpenAPI 3.1 document generated from them.
//!
//! Responses are serialised from exactly these types, so the served document
//! (`GET /v1/api/openapi.json`) cannot drift from what the handlers answer; the request
//! types describe what `forecast::ForecastRequest::from_json` accepts. The document has one
//! operation per row of the route table the router reads ([`crate::routes::ROUTES`]), and
//! the tests in `api` drive every documented route and status and validate each answer
//! against this document.

use forecast::FieldError;
use forecast::distribution::{LevelMap, MAX_LEVELS};
use forecast::wire::ModelIdentity;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::decode::{MAX_BATCH_INSTANCES, MAX_FORECAST_DAYS};
use crate::routes::{Handler, ROUTES};

/// A request body with the fields that choose what a prediction answers (`quantiles`, `point`)
/// after its own: `PredictRequest` and `BatchRequest` take the same two, written once here so
/// that their documentation cannot drift apart.
macro_rules! with_answer_options {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($fields)*
            /// Quantile levels to answer beside `sales` (`true` for 0.1, 0.5, 0.9).
            #[serde(skip_serializing_if = "Option::is_none")]
            #[schema(schema_with = quantile_levels_ref)]
            pub quantiles: Option<Vec<f64>>,
            /// Which point `sales` is: `mean` (default) or `smape`.
            #[serde(skip_serializing_if = "Option::is_none")]
            #[schema(schema_with = point_ref)]
            pub point: Option<String>,
        }
    };
}

with_answer_options! {
/// `POST /v1/api/predict`: one store, one item, one day.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"date": "2018-01-01", "store": 1, "item": 1}))]
pub struct PredictRequest {
    /// The day to forecast: `YYYY-MM-DD`, or an ISO 8601 datetime whose calendar day is used.
    #[schema(example = "2018-01-01")]
    pub date: String,
    /// Store id; must be one the model was trained on (422 names the known range).
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub store: u32,
    /// Item id; must be one the model was trained on (422 names the known range).
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub item: u32,
}
}

/// The expected unit sales for one request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictResponse {
    /// Expected unit sales (or the SMAPE-optimal point when `point` was `smape`).
    pub sales: f64,
    /// When asked for: the sales quantiles by level (`p10`, `p50`, ...), whole units.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = quantile_values_ref)]
    pub quantiles: Option<LevelMap<f64>>,
}

fn quantile_levels_ref() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::Ref::from_schema_name("QuantileLevels").into()
}

fn quantile_values_ref() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::Ref::from_schema_name("QuantileValues").into()
}

fn point_ref() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::Ref::from_schema_name("Point").into()
}

with_answer_options! {
/// `POST /v1/api/predict/batch`: up to 10,000 instances, answered in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchRequest {
    /// The requests, each `{date, store, item}`.
    #[schema(min_items = 1, max_items = 10_000)]
    pub instances: Vec<PredictRequest>,
}
}

/// One answered instance of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchPrediction {
    /// The day forecast, `YYYY-MM-DD`.
    #[schema(example = "2018-01-01")]
    pub date: String,
    /// Store id.
    pub store: u32,
    /// Item id.
    pub item: u32,
    /// Expected unit sales.
    pub sales: f64,
    /// When asked for: the sales quantiles by level.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = quantile_values_ref)]
    pub quantiles: Option<LevelMap<f64>>,
}

/// The model that produced an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
}

impl From<ModelIdentity> for ModelRef {
    fn from(model: ModelIdentity) -> Self {
        Self {
            name: model.name,
            version: model.version,
        }
    }
}

/// The batch's predictions, one per instance, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One entry per instance, in request order.
    pub predictions: Vec<BatchPrediction>,
    /// The model that produced them.
    pub model: ModelRef,
}

/// `GET /v1/api/forecast` query parameters.
#[derive(Debug, Clone, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastParams {
    /// Store id.
    #[param(minimum = 1, maximum = 1_000_000)]
    pub store: u32,
    /// Item id.
    #[param(minimum = 1, maximum = 1_000_000)]
    pub item: u32,
    /// First day of the series, `YYYY-MM-DD`.
    #[param(example = "2018-01-01")]
    pub start: String,
    /// Number of days, 1..=366.
    #[param(minimum = 1, maximum = 366)]
    pub days: u32,
    /// Quantile levels to answer beside each day's `sales`, comma-separated, each strictly
    /// between 0 and 1 (at most 19), or `true` for 0.1,0.5,0.9.
    #[param(
        example = "0.1,0.5,0.9",
        pattern = r"^(true|false|[0-9.eE+-]+(,[0-9.eE+-]+)*)$"
    )]
    pub quantiles: Option<String>,
    /// Which point each day's `sales` is: `mean` (default) or `smape`.
    #[param(pattern = "^(mean|smape)$")]
    pub point: Option<String>,
}

/// One day of a forecast series.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForecastPoint {
    /// The day, `YYYY-MM-DD`.
    #[schema(example = "2018-01-01")]
    pub date: String,
    /// Expected unit sales.
    pub sales: f64,
    /// When asked for: the sales quantiles by level.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = quantile_values_ref)]
    pub quantiles: Option<LevelMap<f64>>,
}

/// A daily series for one store-item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForecastResponse {
    /// Store id.
    pub store: u32,
    /// Item id.
    pub item: u32,
    /// First day, `YYYY-MM-DD`.
    pub start: String,
    /// Number of days.
    pub days: u32,
    /// One entry per day, in date order.
    pub forecast: Vec<ForecastPoint>,
    /// The model that produced it.
    pub model: ModelRef,
}

/// The model answered a ping.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `healthy`.
    #[schema(example = "healthy")]
    pub status: String,
    /// The model serving predictions.
    pub model: ModelRef,
    /// Trees in its booster.
    pub num_trees: u32,
}

/// Any error but a validation error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong. Failures on the service's side say so without internal detail.
    pub detail: String,
}

/// One invalid field.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationError {
    /// Where: `["body", "store"]`, `["body", "instances", "7", "date"]`, `["query", "days"]`.
    pub loc: Vec<String>,
    /// What is wrong, for a human.
    pub msg: String,
    /// A stable kind: `missing`, `int_parsing`, `date_parsing`, `greater_than_equal`,
    /// `less_than_equal`, `out_of_training_domain`, `too_long`, ...
    #[serde(rename = "type")]
    pub kind: String,
}

impl From<FieldError> for ValidationError {
    fn from(error: FieldError) -> Self {
        Self {
            loc: error.loc,
            msg: error.msg,
            kind: error.kind,
        }
    }
}

/// 422: every invalid field (at most 100), FastAPI style.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationErrorResponse {
    /// The invalid fields.
    pub detail: Vec<ValidationError>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Demand forecasting API",
        description = "Expected unit sales per store, item and day, from a LightGBM model \
                       served on AWS Lambda. Every error body is JSON `{\"detail\": ...}`; \
                       unknown routes answer 404 and known routes called with another method \
                       answer 405 with `Allow`."
    ),
    // The bodies the operations name; the types they contain come with them.
    components(schemas(
        PredictRequest, PredictResponse, BatchRequest, BatchResponse, ForecastResponse,
        HealthResponse, ErrorResponse, ValidationErrorResponse, ValidationError
    ))
)]
struct ApiDoc;

/// Headers every response carries.
const COMMON_HEADERS: [(&str, &str); 2] = [
    (
        "x-request-id",
        "The API Gateway request id, for support and log search",
    ),
    (
        "x-model-version",
        "Version of the model that served (or would serve) the request; `unknown` before the model was first reached",
    ),
];

/// A documented answer: status, what it means, and the component schema of its body (`None`:
/// any JSON object).
type Answer = (u16, &'static str, Option<&'static str>);

const ERROR: Option<&str> = Some("ErrorResponse");
const INVALID: Option<&str> = Some("ValidationErrorResponse");

/// What a route reading a JSON body answers before it can validate the body.
const UNREADABLE_BODY: [Answer; 2] = [
    (
        400,
        "Malformed JSON, empty body or a content type other than application/json",
        ERROR,
    ),
    (413, "Body over the configured limit", ERROR),
];

/// What a route predicting with the model answers when the model fails.
const MODEL_FAILED: [Answer; 3] = [
    (502, "The model returned an error", ERROR),
    (
        503,
        "The model is throttled or unavailable; retry after `Retry-After` seconds",
        ERROR,
    ),
    (504, "The model did not answer in time", ERROR),
];

/// The document's operation for `handler`; a new handler does not compile until it is
/// described here.
fn operation(handler: Handler) -> Value {
    // Tag, operation id, the schema of the JSON body it reads, and its own answers.
    let (tag, id, body, own): (&str, &str, Option<&str>, &[Answer]) = match handler {
        Handler::Predict => (
            "forecast",
            "predict",
            Some("PredictRequest"),
            &[
                (200, "Expected unit sales", Some("PredictResponse")),
                (
                    422,
                    "Invalid fields, a store/item outside the model's training data, a quantile level outside (0, 1) or more than 19 levels, or quantiles / the smape point asked of a model without a predictive distribution",
                    INVALID,
                ),
            ],
        ),
        Handler::Batch => (
            "forecast",
            "predict_batch",
            Some("BatchRequest"),
            &[
                (
                    200,
                    "One prediction per instance, in request order",
                    Some("BatchResponse"),
                ),
                (
                    422,
                    "Invalid instances (each located by index), none, or more than 10,000; invalid quantile levels or point, or quantiles asked of a model without a predictive distribution",
                    INVALID,
                ),
            ],
        ),
        Handler::Forecast => (
            "forecast",
            "forecast",
            None,
            &[
                (
                    200,
                    "A daily series, in date order",
                    Some("ForecastResponse"),
                ),
                (
                    422,
                    "Invalid or missing query parameters (quantile levels outside (0, 1) or more than 19 included), a store/item outside the model's training data, or quantiles asked of a model without a predictive distribution",
                    INVALID,
                ),
            ],
        ),
        Handler::Health => (
            "operations",
            "health",
            None,
            &[
                (200, "The model answered a ping", Some("HealthResponse")),
                (503, "The model cannot be reached or is not ready", ERROR),
            ],
        ),
        Handler::OpenApi => (
            "operations",
            "openapi",
            None,
            &[(200, "This document", None)],
        ),
    };
    let unreadable = if body.is_some() {
        &UNREADABLE_BODY[..]
    } else {
        &[]
    };
    let predicts = matches!(
        handler,
        Handler::Predict | Handler::Batch | Handler::Forecast
    );
    let model_failed = if predicts { &MODEL_FAILED[..] } else { &[] };
    let responses: serde_json::Map<String, Value> = own
        .iter()
        .chain(unreadable)
        .chain(model_failed)
        .map(|answer| (answer.0.to_string(), response(answer)))
        .collect();
    let mut operation = json!({"tags": [tag], "operationId": id, "responses": responses});
    if let Some(schema) = body {
        operation["requestBody"] = json!({
            "content": {"application/json": {"schema": schema_ref(schema)}},
            "required": true
        });
    }
    if handler == Handler::Forecast {
        let parameters = ForecastParams::into_params(|| Some(ParameterIn::Query));
        operation["parameters"] = serde_json::to_value(parameters).unwrap_or_default();
    }
    operation
}

/// A documented answer with its body's schema and its headers: the common ones, and
/// `retry-after` on a 503.
fn response(&(status, description, body): &Answer) -> Value {
    let header = |text: &str| json!({"description": text, "schema": {"type": "string"}});
    let mut headers: serde_json::Map<String, Value> = COMMON_HEADERS
        .iter()
        .map(|(name, text)| ((*name).to_owned(), header(text)))
        .collect();
    if status == 503 {
        headers.insert(
            "retry-after".to_owned(),
            header("Seconds to wait before retrying"),
        );
    }
    let schema = body.map_or_else(|| json!({"type": "object"}), schema_ref);
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema}},
        "headers": headers
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The OpenAPI 3.1 document of the API, as JSON: one operation per row of [`ROUTES`].
pub fn openapi_document() -> Value {
    let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
        Ok(doc) => doc,
        // The document is built from constants; serialising it cannot fail.
        Err(_) => return json!({"openapi": "3.1.0"}),
    };
    let mut paths = serde_json::Map::new();
    for route in &ROUTES {
        let item = paths.entry(route.path).or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation(route.handler);
    }
    doc["paths"] = Value::Object(paths);
    // Schemas utoipa cannot derive: a level list or `true`, an object keyed by level, the
    // point's two names.
    doc["components"]["schemas"]["QuantileLevels"] = json!({
        "description": "Quantile levels, each strictly between 0 and 1, or true for [0.1, 0.5, 0.9]. A level outside (0, 1) or more than the maximum answers 422; a model without a predictive distribution answers 422 too.",
        "oneOf": [
            {"type": "array", "minItems": 1, "maxItems": MAX_LEVELS,
             "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}},
            {"type": "boolean"}
        ]
    });
    doc["components"]["schemas"]["QuantileValues"] = json!({
        "description": "Sales quantiles keyed by level: 0.1 -> p10, 0.025 -> p2.5; in ascending level order.",
        "type": "object",
        "additionalProperties": {"type": "number"},
        "example": {"p10": 41.0, "p50": 50.0, "p90": 59.0}
    });
    doc["components"]["schemas"]["Point"] = json!({
        "description": "mean: the model's expected sales (the default); smape: the point that minimises the expected SMAPE under the model's predictive distribution.",
        "type": "string",
        "enum": ["mean", "smape"]
    });
    // The limits are constants of the code; say them in the document too.
    doc["info"]["x-limits"] = json!({
        "max_batch_instances": MAX_BATCH_INSTANCES,
        "max_forecast_days": MAX_FORECAST_DAYS,
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc = openapi_document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/v1/api/forecast",
                "/v1/api/health",
                "/v1/api/openapi.json",
                "/v1/api/predict",
                "/v1/api/predict/batch",
            ]
        );
        let batch = &doc["components"]["schemas"]["BatchRequest"]["properties"]["instances"];
        assert_eq!(batch["maxItems"], MAX_BATCH_INSTANCES);
        let days = doc["paths"]["/v1/api/forecast"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "days")
            .unwrap();
        assert_eq!(days["schema"]["maximum"], MAX_FORECAST_DAYS);
        assert_eq!(days["required"], true);
    }

    #[test]
    fn every_response_documents_the_common_headers() {
        let doc = openapi_document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    for (name, _) in COMMON_HEADERS {
                        assert!(
                            response["headers"].get(name).is_some(),
                            "{method} {path} {status} lacks {name}"
                        );
                    }
                }
            }
        }
    }
}
