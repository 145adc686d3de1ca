//! Handler tests: every route and status, in process, against a fake model; the same routes
//! replayed from real API Gateway v2 events; every answer checked against the OpenAPI
//! document.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use forecast::Feature;
use lambda_http::http::Request as HttpRequest;

use forecast::distribution::{LevelMap, PointKind};
use forecast::features;
use forecast::wire::{
    DataframeSplit, ModelIdentity, PingResponse, PredictionsRequest, PredictionsResponse,
};
use serde_json::json;

use super::*;
use crate::decode::MAX_BATCH_INSTANCES;
use crate::routes::ROUTES;

/// The original model's features.
const ORIGINAL: &[&str] = &["store", "item", "month", "day", "year"];
/// A model trained on calendar features the original did not have.
const CALENDAR: &[&str] = &[
    "store",
    "item",
    "dayofyear",
    "weekofyear",
    "dayofmonth",
    "quarter",
    "is_weekend",
];

/// What the fake model answers to a prediction.
#[derive(Clone)]
enum Predict {
    /// One prediction per row, a function of the row's values (so order is checkable).
    Score,
    /// These predictions, whatever the rows.
    Fixed(Vec<f64>),
    /// This error.
    Fail(ModelCallError),
}

/// One invocation the fake model received.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Ping,
    Predict(PredictionsRequest),
}

/// A model host answering pings with `features` (and a 10-store, 50-item training domain)
/// and predictions as `predict` says, recording every call and the peak concurrency.
struct FakeModel {
    ping: Result<Vec<&'static str>, ModelCallError>,
    predict: Predict,
    delay: Duration,
    seen: Mutex<Vec<Call>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

impl FakeModel {
    fn scoring() -> Self {
        Self {
            ping: Ok(ORIGINAL.to_vec()),
            predict: Predict::Score,
            delay: Duration::ZERO,
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        }
    }

    fn answering(predictions: &[f64]) -> Self {
        Self {
            predict: Predict::Fixed(predictions.to_vec()),
            ..Self::scoring()
        }
    }

    fn failing(error: ModelCallError) -> Self {
        Self {
            predict: Predict::Fail(error),
            ..Self::scoring()
        }
    }

    fn unreachable() -> Self {
        Self {
            ping: Err(ModelCallError::Unavailable("connection refused".into())),
            ..Self::scoring()
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.seen.lock().unwrap().clone()
    }

    fn pings(&self) -> usize {
        self.calls().iter().filter(|c| **c == Call::Ping).count()
    }

    fn predictions_sent(&self) -> Vec<PredictionsRequest> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Predict(request) => Some(request),
                Call::Ping => None,
            })
            .collect()
    }
}

/// A ready model `version` with `features`, trained on stores `1..=stores` and items 1..=50.
fn ping_answer(version: &str, features: &[&str], stores: u32) -> PingResponse {
    PingResponse {
        status: "ready".to_owned(),
        model: identity(version),
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        num_trees: 3000,
        source_uri: "s3://b/models/demand/v1/".to_owned(),
        model_sha256: "00".to_owned(),
        loaded_at: "2026-01-01T00:00:00Z".to_owned(),
        model_etag: None,
        init: None,
        max_rows: Some(5000),
        domain: Some(forecast::manifest::TrainingDomain {
            stores: (1..=stores).collect(),
            items: (1..=50).collect(),
            date_min: "2013-01-01".to_owned(),
            date_max: "2017-12-31".to_owned(),
        }),
    }
}

fn identity(version: &str) -> ModelIdentity {
    ModelIdentity {
        name: "demand".to_owned(),
        version: version.to_owned(),
    }
}

/// The fake model's prediction for one feature row: distinct for distinct rows.
fn score(row: &[f64]) -> f64 {
    row.iter().fold(0.0, |acc, v| acc * 31.0 + v) / 1e3
}

impl ModelClient for FakeModel {
    async fn ping(&self) -> Result<PingResponse, ModelCallError> {
        self.seen.lock().unwrap().push(Call::Ping);
        let features = self.ping.clone()?;
        Ok(ping_answer("v1", &features, 10))
    }

    async fn predict(
        &self,
        request: &PredictionsRequest,
    ) -> Result<PredictionsResponse, ModelCallError> {
        self.seen
            .lock()
            .unwrap()
            .push(Call::Predict(request.clone()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let predictions = match &self.predict {
            Predict::Score => request
                .dataframe_split
                .data
                .iter()
                .map(|row| score(row))
                .collect(),
            Predict::Fixed(predictions) => predictions.clone(),
            Predict::Fail(error) => return Err(error.clone()),
        };
        // Asked for quantiles, each level's column is a function of row and level; a fixed
        // answer has none.
        let quantiles = match (&self.predict, &request.params.quantiles) {
            (Predict::Score, Some(levels)) => Some(LevelMap(
                levels
                    .iter()
                    .map(|level| {
                        let column = predictions.iter().map(|p| quantile(*p, *level)).collect();
                        (forecast::distribution::level_key(*level), column)
                    })
                    .collect(),
            )),
            _ => None,
        };
        Ok(PredictionsResponse {
            predictions,
            model: identity("v1"),
            quantiles,
        })
    }
}

/// The fake model's quantile at `level` of a row predicted `prediction`.
fn quantile(prediction: f64, level: f64) -> f64 {
    (prediction + 100.0 * level).round()
}

fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request {
    let mut builder = HttpRequest::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

fn post(path: &str, body: &str) -> Request {
    request("POST", path, Some("application/json"), body)
}

fn post_predict(body: &str) -> Request {
    post("/v1/api/predict", body)
}

fn get(path: &str) -> Request {
    request("GET", path, None, "")
}

struct Answer {
    status: u16,
    body: Value,
    headers: lambda_http::http::HeaderMap,
}

async fn answer<C: ModelClient>(app: &Orchestrator<C>, request: Request) -> Answer {
    let response = app.handle(request).await;
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: serde_json::from_slice(response.body().as_ref()).unwrap(),
    }
}

async fn call(model: FakeModel, request: Request) -> (u16, Value, Orchestrator<FakeModel>) {
    let app = Orchestrator::new(model, Limits::default());
    let Answer { status, body, .. } = answer(&app, request).await;
    (status, body, app)
}

fn batch_body(instances: &[(&str, u32, u32)]) -> String {
    let instances: Vec<Value> = instances
        .iter()
        .map(|(date, store, item)| json!({"date": date, "store": store, "item": item}))
        .collect();
    json!({ "instances": instances }).to_string()
}

/// Each 422 entry as `loc.joined.by.dots:type`.
fn error_locs(body: &Value) -> Vec<String> {
    body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let loc: Vec<&str> = e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            format!("{}:{}", loc.join("."), e["type"].as_str().unwrap())
        })
        .collect()
}

// ---------------------------------------------------------------- predict

#[tokio::test]
async fn given_a_valid_request_when_predicting_then_the_model_gets_the_manifest_row() {
    let (status, body, app) = call(
        FakeModel::answering(&[12.5]),
        post_predict(r#"{"date":"2018-01-01","store":1,"item":7}"#),
    )
    .await;
    assert_eq!((status, body), (200, json!({"sales": 12.5})));
    let columns = ["store", "item", "month", "day", "year"].map(String::from);
    let row = PredictionsRequest {
        dataframe_split: DataframeSplit {
            columns: columns.to_vec(),
            data: vec![vec![1.0, 7.0, 1.0, 0.0, 2018.0]],
            index: None,
        },
        params: PredictOptions::default(),
    };
    assert_eq!(app.model.client.calls(), [Call::Ping, Call::Predict(row)]);
}

#[tokio::test]
async fn given_a_model_with_another_feature_order_then_the_row_follows_it() {
    let model = FakeModel {
        ping: Ok(vec!["year", "day", "store", "item", "month"]),
        ..FakeModel::answering(&[3.0])
    };
    let (status, _, app) = call(
        model,
        post_predict(r#"{"date":"2017-12-31","store":2,"item":3}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.model.client.predictions_sent()[0].dataframe_split.data,
        [[2017.0, 6.0, 2.0, 3.0, 12.0]]
    );
}

#[tokio::test]
async fn given_a_model_trained_on_calendar_features_then_they_are_built_without_code_change() {
    let model = FakeModel {
        ping: Ok(CALENDAR.to_vec()),
        ..FakeModel::answering(&[9.5])
    };
    let (status, body, app) = call(
        model,
        post_predict(r#"{"date":"2016-12-31","store":4,"item":9}"#),
    )
    .await;
    assert_eq!((status, body), (200, json!({"sales": 9.5})));
    assert_eq!(
        app.model.client.predictions_sent()[0].dataframe_split.data,
        [[4.0, 9.0, 366.0, 52.0, 31.0, 4.0, 1.0]]
    );
}

#[tokio::test]
async fn the_model_manifest_is_fetched_once_and_cached() {
    let app = Orchestrator::new(FakeModel::answering(&[1.0]), Limits::default());
    for _ in 0..3 {
        let response = app
            .handle(post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(app.model.client.pings(), 1);
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_detail() {
    for (content_type, body, needle) in [
        (Some("application/json"), "{\"date\": ", "not valid JSON"),
        (Some("application/json"), "", "empty"),
        (
            Some("text/plain"),
            r#"{"date":"2018-01-01","store":1,"item":1}"#,
            "application/json",
        ),
        (None, "[1,", "not valid JSON"),
    ] {
        for path in ["/v1/api/predict", "/v1/api/predict/batch"] {
            let (status, body, app) = call(
                FakeModel::answering(&[1.0]),
                request("POST", path, content_type, body),
            )
            .await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body["detail"].as_str().unwrap().contains(needle), "{body}");
            assert!(app.model.client.calls().is_empty());
        }
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_it_is_parsed() {
    let limits = Limits {
        max_body_bytes: 64,
        ..Limits::default()
    };
    let app = Orchestrator::new(FakeModel::scoring(), limits);
    let big = batch_body(&[("2018-01-01", 1, 1); 3]);
    for path in ["/v1/api/predict", "/v1/api/predict/batch"] {
        let reply = answer(&app, post(path, &big)).await;
        assert_eq!(reply.status, 413, "{path}");
        assert_eq!(
            reply.body["detail"],
            "the request body is larger than the limit of 64 bytes"
        );
    }
    assert!(app.model.client.calls().is_empty());
    // A body within the limit still goes through.
    let reply = answer(
        &app,
        post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#),
    )
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn invalid_fields_are_422_naming_each_field() {
    let (status, body, app) = call(
        FakeModel::answering(&[1.0]),
        post_predict(r#"{"date":"tomorrow","item":-1}"#),
    )
    .await;
    assert_eq!(status, 422);
    let locs = error_locs(&body);
    assert_eq!(
        locs,
        [
            "body.date:date_parsing",
            "body.store:missing",
            "body.item:greater_than_equal"
        ]
    );
    assert!(
        app.model.client.calls().is_empty(),
        "an invalid request must not reach the model"
    );
}

#[tokio::test]
async fn year_zero_and_negative_years_are_422_like_any_impossible_date() {
    for date in [
        "0000-01-01",
        "-0001-12-31",
        "0000-01-01T00:00:00Z",
        "+10000-01-01",
    ] {
        let (status, body, app) = call(
            FakeModel::answering(&[1.0]),
            post_predict(&json!({"date": date, "store": 1, "item": 1}).to_string()),
        )
        .await;
        assert_eq!(status, 422, "{date}: {body}");
        assert_eq!(error_locs(&body), ["body.date:date_parsing"], "{date}");
        assert!(
            app.model.client.calls().is_empty(),
            "{date} reached the model"
        );
    }
}

#[tokio::test]
async fn ids_outside_the_training_domain_are_422_naming_field_and_range() {
    let (status, body, app) = call(
        FakeModel::scoring(),
        post_predict(r#"{"date":"2018-01-01","store":11,"item":50}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["detail"],
        json!([{
            "loc": ["body", "store"],
            "msg": "store 11 is outside the model's training data; it knows 1..=10",
            "type": "out_of_training_domain"
        }])
    );
    assert!(app.model.client.predictions_sent().is_empty());
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let (status, body, _) = call(FakeModel::scoring(), get("/v1/api/nope")).await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    let app = Orchestrator::new(FakeModel::scoring(), Limits::default());
    for (method, path, allow) in [
        ("GET", "/v1/api/predict", "POST"),
        ("GET", "/v1/api/predict/batch", "POST"),
        ("POST", "/v1/api/forecast", "GET"),
        ("DELETE", "/v1/api/health", "GET"),
        ("PUT", "/v1/api/openapi.json", "GET"),
    ] {
        let reply = answer(&app, request(method, path, None, "")).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.headers[header::ALLOW], allow);
        assert_eq!(reply.body, json!({"detail": "Method Not Allowed"}));
    }
}

#[tokio::test]
async fn model_failures_map_to_502_503_504_without_leaking_the_cause() {
    let secret = "arn:aws:lambda:eu-west-1:123:function:model stack trace at src/x.rs:1";
    for (error, expected) in [
        (
            ModelCallError::FunctionError {
                error_type: FunctionErrorType::Model(ModelErrorType::Internal),
                message: secret.into(),
            },
            502,
        ),
        (ModelCallError::BadResponse(secret.into()), 502),
        (ModelCallError::Unavailable(secret.into()), 503),
        (
            ModelCallError::FunctionError {
                error_type: FunctionErrorType::Model(ModelErrorType::ModelUnavailable),
                message: secret.into(),
            },
            503,
        ),
        (ModelCallError::Timeout, 504),
    ] {
        for request in [
            post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#),
            post(
                "/v1/api/predict/batch",
                &batch_body(&[("2018-01-01", 1, 1)]),
            ),
            get("/v1/api/forecast?store=1&item=1&start=2018-01-01&days=2"),
        ] {
            let app = Orchestrator::new(FakeModel::failing(error.clone()), Limits::default());
            let response = app.handle(request).await;
            assert_eq!(response.status().as_u16(), expected);
            if expected == 503 {
                assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            }
            let text = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
            assert!(text.starts_with(r#"{"detail":"#), "{text}");
            assert!(
                !text.contains("arn:") && !text.contains("src/"),
                "leaked: {text}"
            );
        }
    }
}

#[tokio::test]
async fn predictions_that_do_not_match_the_rows_are_a_502() {
    // An answer that is not `{"predictions": [numbers], ...}` at all is the adapter's 502
    // (`model_client`'s tests); these are well-formed answers that still cannot be served.
    for predictions in [vec![], vec![1.0, 2.0], vec![f64::NAN], vec![f64::INFINITY]] {
        let (status, _, _) = call(
            FakeModel::answering(&predictions),
            post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#),
        )
        .await;
        assert_eq!(status, 502, "{predictions:?}");
    }
}

// ---------------------------------------------------------------- batch

#[tokio::test]
async fn a_batch_is_answered_in_request_order_with_the_model() {
    let instances = [
        ("2018-03-31", 10, 50),
        ("2018-01-01", 1, 1),
        ("2018-01-02T10:00:00Z", 2, 5),
    ];
    let (status, body, _) = call(
        FakeModel::scoring(),
        post("/v1/api/predict/batch", &batch_body(&instances)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], json!({"name": "demand", "version": "v1"}));
    let expected: Vec<Value> = [
        ("2018-03-31", 10, 50, [10.0, 50.0, 3.0, 5.0, 2018.0]),
        ("2018-01-01", 1, 1, [1.0, 1.0, 1.0, 0.0, 2018.0]),
        ("2018-01-02", 2, 5, [2.0, 5.0, 1.0, 1.0, 2018.0]),
    ]
    .iter()
    .map(|(date, store, item, row)| {
        json!({"date": date, "store": store, "item": item, "sales": score(row)})
    })
    .collect();
    assert_eq!(body["predictions"], json!(expected));
}

#[tokio::test]
async fn a_full_batch_is_split_into_chunks_invoked_concurrently_and_reassembled_in_order() {
    let limits = Limits {
        chunk_rows: 1_000,
        concurrency: 4,
        ..Limits::default()
    };
    let model = FakeModel {
        delay: Duration::from_millis(20),
        ..FakeModel::scoring()
    };
    let app = Orchestrator::new(model, limits);
    let instances: Vec<(String, u32, u32)> = (0..MAX_BATCH_INSTANCES)
        .map(|i| {
            let i = u32::try_from(i).unwrap();
            let date = chrono::NaiveDate::from_ymd_opt(2018, 1, 1).unwrap()
                + chrono::Days::new(u64::from(i % 365));
            (date.to_string(), i % 10 + 1, i % 50 + 1)
        })
        .collect();
    let borrowed: Vec<(&str, u32, u32)> = instances
        .iter()
        .map(|(d, s, i)| (d.as_str(), *s, *i))
        .collect();
    let reply = answer(&app, post("/v1/api/predict/batch", &batch_body(&borrowed))).await;
    assert_eq!(reply.status, 200);

    let predictions = reply.body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), MAX_BATCH_INSTANCES);
    for (prediction, (date, store, item)) in predictions.iter().zip(&instances) {
        let request = ForecastRequest::from_json(
            &json!({"date": date, "store": store, "item": item}),
            &["body"],
        )
        .unwrap();
        let features = Feature::resolve_all(&["store", "item", "month", "day", "year"]).unwrap();
        let row = features::build_row(&features, &request);
        assert_eq!(
            prediction,
            &json!({"date": date, "store": store, "item": item, "sales": score(&row)})
        );
    }
    let chunks = app.model.client.predictions_sent();
    assert_eq!(chunks.len(), 10);
    assert!(chunks.iter().all(|c| c.dataframe_split.data.len() == 1_000));
    assert_eq!(app.model.client.peak_in_flight.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn chunks_never_exceed_the_models_max_rows() {
    let limits = Limits {
        chunk_rows: 50_000,
        ..Limits::default()
    };
    let app = Orchestrator::new(FakeModel::scoring(), limits);
    let instances = vec![("2018-01-01", 1, 1); 7_000];
    let reply = answer(&app, post("/v1/api/predict/batch", &batch_body(&instances))).await;
    assert_eq!(reply.status, 200);
    let sizes: Vec<usize> = app
        .model
        .client
        .predictions_sent()
        .iter()
        .map(|c| c.dataframe_split.data.len())
        .collect();
    assert_eq!(
        sizes,
        [5_000, 2_000],
        "the fake model's ping says max_rows 5000"
    );
}

#[tokio::test]
async fn batch_validation_errors_locate_the_instance_and_nothing_reaches_the_model() {
    let body = batch_body(&[("2018-01-01", 1, 1), ("2018-01-01", 11, 51), ("x", 1, 1)]);
    let (status, body, app) =
        call(FakeModel::scoring(), post("/v1/api/predict/batch", &body)).await;
    assert_eq!(status, 422);
    let locs = error_locs(&body);
    // Format errors first (no model needed), then the domain once they are fixed.
    assert_eq!(locs, ["body.instances.2.date:date_parsing"]);
    assert!(app.model.client.calls().is_empty());

    let body = batch_body(&[("2018-01-01", 1, 1), ("2018-01-01", 11, 51)]);
    let (status, body, app) =
        call(FakeModel::scoring(), post("/v1/api/predict/batch", &body)).await;
    assert_eq!(status, 422);
    let locs: Vec<&Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["loc"])
        .collect();
    assert_eq!(
        locs,
        [
            &json!(["body", "instances", "1", "store"]),
            &json!(["body", "instances", "1", "item"])
        ]
    );
    assert!(app.model.client.predictions_sent().is_empty());

    let too_many = batch_body(&vec![("2018-01-01", 1, 1); MAX_BATCH_INSTANCES + 1]);
    let (status, body, _) = call(
        FakeModel::scoring(),
        post("/v1/api/predict/batch", &too_many),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "too_long");
}

// ---------------------------------------------------------------- forecast

#[tokio::test]
async fn a_forecast_is_a_daily_series_in_date_order() {
    let (status, body, app) = call(
        FakeModel::scoring(),
        get("/v1/api/forecast?store=3&item=7&start=2017-12-30&days=3"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "store": 3, "item": 7, "start": "2017-12-30", "days": 3,
            "forecast": [
                {"date": "2017-12-30", "sales": score(&[3.0, 7.0, 12.0, 5.0, 2017.0])},
                {"date": "2017-12-31", "sales": score(&[3.0, 7.0, 12.0, 6.0, 2017.0])},
                {"date": "2018-01-01", "sales": score(&[3.0, 7.0, 1.0, 0.0, 2018.0])},
            ],
            "model": {"name": "demand", "version": "v1"}
        })
    );
    assert_eq!(
        app.model.client.predictions_sent().len(),
        1,
        "366 days or fewer is one invoke"
    );
}

#[tokio::test]
async fn forecast_query_errors_are_422_at_the_query_parameter() {
    for (query, loc, kind) in [
        ("store=3&start=2018-01-01&days=7", "item", "missing"),
        (
            "store=3&item=7&start=2018-01-01&days=367",
            "days",
            "less_than_equal",
        ),
        ("store=3&item=7&start=soon&days=7", "start", "date_parsing"),
        (
            "store=30&item=7&start=2018-01-01&days=7",
            "store",
            "out_of_training_domain",
        ),
    ] {
        let (status, body, _) = call(
            FakeModel::scoring(),
            get(&format!("/v1/api/forecast?{query}")),
        )
        .await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(body["detail"][0]["loc"], json!(["query", loc]), "{query}");
        assert_eq!(body["detail"][0]["type"], kind, "{query}");
    }
}

// ---------------------------------------------------------------- health, openapi

#[tokio::test]
async fn health_is_200_with_the_model_or_503_when_it_cannot_be_reached() {
    let (status, body, _) = call(FakeModel::scoring(), get("/v1/api/health")).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "healthy", "model": {"name": "demand", "version": "v1"}, "num_trees": 3000})
        )
    );

    let app = Orchestrator::new(FakeModel::unreachable(), Limits::default());
    let reply = answer(&app, get("/v1/api/health")).await;
    assert_eq!(
        (reply.status, reply.body),
        (503, json!({"detail": "the model is not ready"}))
    );
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn every_response_carries_the_request_id_and_the_model_version() {
    let app = Orchestrator::new(FakeModel::scoring(), Limits::default());
    // Before the model was ever reached, its version is unknown.
    let reply = answer(&app, get("/v1/api/nope")).await;
    assert_eq!(reply.headers[MODEL_VERSION_HEADER], "unknown");
    assert!(reply.headers.contains_key(REQUEST_ID_HEADER));
    for request in [
        post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#),
        post_predict("{"),
        get("/v1/api/nope"),
        get("/v1/api/openapi.json"),
    ] {
        let reply = answer(&app, request).await;
        assert_eq!(
            reply.headers[MODEL_VERSION_HEADER], "v1",
            "{}",
            reply.status
        );
        assert!(
            reply.headers[REQUEST_ID_HEADER]
                .to_str()
                .unwrap()
                .starts_with("local-")
        );
    }
}

/// Every documented (route, method, status) is produced here, and every answer matches the
/// documented schema and headers; a status answered but not documented fails too.
#[tokio::test]
async fn every_documented_route_answers_as_documented() {
    let doc = openapi_document();
    let valid = r#"{"date":"2018-01-01","store":1,"item":1}"#;
    let batch = batch_body(&[("2018-01-01", 1, 1), ("2018-01-02", 2, 2)]);
    let series = "/v1/api/forecast?store=1&item=1&start=2018-01-01&days=3";
    let batch_with_quantiles = json!({
        "instances": [{"date": "2018-01-01", "store": 1, "item": 1}],
        "quantiles": true
    })
    .to_string();
    let small = Limits {
        max_body_bytes: 16,
        ..Limits::default()
    };
    fn timeout() -> FakeModel {
        FakeModel::failing(ModelCallError::Timeout)
    }
    fn erroring() -> FakeModel {
        FakeModel::failing(ModelCallError::FunctionError {
            error_type: FunctionErrorType::Model(ModelErrorType::Internal),
            message: "boom".into(),
        })
    }
    fn throttled() -> FakeModel {
        FakeModel::failing(ModelCallError::Unavailable(
            "TooManyRequestsException".into(),
        ))
    }
    type Case = (Request, fn() -> FakeModel, Limits, u16);
    let default = Limits::default();
    let cases: Vec<Case> = vec![
        (post_predict(valid), FakeModel::scoring, default, 200),
        (post_predict("{"), FakeModel::scoring, default, 400),
        (post_predict(valid), FakeModel::scoring, small, 413),
        (post_predict("{}"), FakeModel::scoring, default, 422),
        (post_predict(valid), erroring, default, 502),
        (post_predict(valid), throttled, default, 503),
        (post_predict(valid), timeout, default, 504),
        (
            post_predict(r#"{"date":"2018-01-01","store":1,"item":1,"quantiles":[0.1,0.5,0.9]}"#),
            FakeModel::scoring,
            default,
            200,
        ),
        (
            post("/v1/api/predict/batch", &batch_with_quantiles),
            FakeModel::scoring,
            default,
            200,
        ),
        (
            get(
                "/v1/api/forecast?store=1&item=1&start=2018-01-01&days=3&quantiles=0.05,0.95&point=smape",
            ),
            FakeModel::scoring,
            default,
            200,
        ),
        (
            post("/v1/api/predict/batch", &batch),
            FakeModel::scoring,
            default,
            200,
        ),
        (
            post("/v1/api/predict/batch", "{"),
            FakeModel::scoring,
            default,
            400,
        ),
        (
            post("/v1/api/predict/batch", &batch),
            FakeModel::scoring,
            small,
            413,
        ),
        (
            post("/v1/api/predict/batch", "{}"),
            FakeModel::scoring,
            default,
            422,
        ),
        (
            post("/v1/api/predict/batch", &batch),
            erroring,
            default,
            502,
        ),
        (
            post("/v1/api/predict/batch", &batch),
            throttled,
            default,
            503,
        ),
        (post("/v1/api/predict/batch", &batch), timeout, default, 504),
        (get(series), FakeModel::scoring, default, 200),
        (
            get("/v1/api/forecast?days=0"),
            FakeModel::scoring,
            default,
            422,
        ),
        (get(series), erroring, default, 502),
        (get(series), throttled, default, 503),
        (get(series), timeout, default, 504),
        (get("/v1/api/health"), FakeModel::scoring, default, 200),
        (get("/v1/api/health"), FakeModel::unreachable, default, 503),
        (
            get("/v1/api/openapi.json"),
            FakeModel::scoring,
            default,
            200,
        ),
    ];
    let mut covered = BTreeSet::new();
    for (request, model, limits, expected) in cases {
        let path = request.uri().path().to_owned();
        let method = request.method().as_str().to_ascii_lowercase();
        let app = Orchestrator::new(model(), limits);
        let reply = answer(&app, request).await;
        assert_eq!(reply.status, expected, "{method} {path}: {}", reply.body);
        let status = reply.status.to_string();
        let documented = &doc["paths"][&path][&method]["responses"][&status];
        assert!(
            documented.is_object(),
            "{method} {path} {status} is not documented"
        );
        for name in documented["headers"].as_object().unwrap().keys() {
            assert!(
                reply.headers.contains_key(name.as_str()),
                "{method} {path} {status} lacks {name}"
            );
        }
        assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
        let schema = &documented["content"]["application/json"]["schema"];
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": doc["components"],
        });
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&reply.body)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {errors:?}\n{}",
            reply.body
        );
        covered.insert((path, method, status));
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in op["responses"].as_object().unwrap().keys() {
                assert!(
                    covered.contains(&(path.clone(), method.clone(), status.clone())),
                    "{method} {path} {status} is documented but never exercised"
                );
            }
        }
    }
}

/// The router and the document read one table: the document's operations are exactly the
/// table's routes, and each is served (neither 404 nor 405) with its documented method.
#[tokio::test]
async fn the_documented_operations_are_exactly_the_routes_served() {
    let doc = openapi_document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((path.clone(), method.to_ascii_uppercase()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.path.to_owned(), route.method.to_string()))
        .collect();
    assert_eq!(documented, routed);
    let app = Orchestrator::new(FakeModel::scoring(), Limits::default());
    for (path, method) in &documented {
        let reply = answer(&app, request(method, path, Some("application/json"), "{}")).await;
        assert!(
            ![404, 405].contains(&reply.status),
            "{method} {path} is documented but answers {}",
            reply.status
        );
    }
}

#[tokio::test]
async fn the_served_openapi_document_is_the_generated_one() {
    let (status, body, app) = call(FakeModel::scoring(), get("/v1/api/openapi.json")).await;
    assert_eq!((status, &body), (200, &openapi_document()));
    assert!(
        app.model.client.calls().is_empty(),
        "serving the document needs no model"
    );
}

// ---------------------------------------------------------------- API Gateway events

#[tokio::test]
async fn real_api_gateway_v2_events_are_routed() {
    let events = [
        (include_str!("../../../../data/events/predict.json"), 200),
        (
            include_str!("../../../../data/events/predict-malformed.json"),
            400,
        ),
        (
            include_str!("../../../../data/events/predict-invalid.json"),
            422,
        ),
        (
            include_str!("../../../../data/events/predict-wrong-method.json"),
            405,
        ),
        (include_str!("../../../../data/events/batch.json"), 200),
        (include_str!("../../../../data/events/forecast.json"), 200),
        (
            include_str!("../../../../data/events/forecast-invalid.json"),
            422,
        ),
        (include_str!("../../../../data/events/health.json"), 200),
        (
            include_str!("../../../../data/events/health-named-stage.json"),
            200,
        ),
        (include_str!("../../../../data/events/openapi.json"), 200),
        (include_str!("../../../../data/events/not-found.json"), 404),
    ];
    for (event, expected) in events {
        let request = lambda_http::request::from_str(event).unwrap();
        let context: Value = serde_json::from_str(event).unwrap();
        let app = Orchestrator::new(FakeModel::scoring(), Limits::default());
        let reply = answer(&app, request).await;
        let path = context["rawPath"].as_str().unwrap();
        assert_eq!(reply.status, expected, "{path}: {}", reply.body);
        assert_eq!(
            reply.headers[REQUEST_ID_HEADER],
            context["requestContext"]["requestId"].as_str().unwrap()
        );
    }
    // The batch event's three instances come back in order; the forecast event's 7 days too.
    let request =
        lambda_http::request::from_str(include_str!("../../../../data/events/batch.json")).unwrap();
    let app = Orchestrator::new(FakeModel::scoring(), Limits::default());
    let reply = answer(&app, request).await;
    let stores: Vec<&Value> = reply.body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["store"])
        .collect();
    assert_eq!(stores, [&json!(1), &json!(2), &json!(10)]);
    let request =
        lambda_http::request::from_str(include_str!("../../../../data/events/forecast.json"))
            .unwrap();
    let reply = answer(&app, request).await;
    assert_eq!(reply.body["forecast"].as_array().unwrap().len(), 7);
    assert_eq!(reply.body["forecast"][6]["date"], "2018-01-07");
}

mod auth;
mod quantiles;
mod rollout;
