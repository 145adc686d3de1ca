//! The whole service end to end: generated data -> trained booster -> real S3 server ->
//! model Lambda -> orchestrator Lambda -> HTTP (predict, batch, forecast, health, OpenAPI),
//! all on 127.0.0.1.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use e2e::{LambdaWatch, LocalS3, publish_model, stack_env};
use forecast::ModelLocation;
use model::{InitError, S3ObjectStore, load_model};
use serde_json::{Value, json};
use trainer::train::TrainedModel;

const BUCKET: &str = "demand-models-e2e";
/// The first request compiles and cold-starts both functions.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

fn train_small_model(dir: &Path) -> TrainedModel {
    e2e::train_small_model(dir, "e2e").unwrap()
}

/// What the booster itself predicts for one feature row, read straight from `model.txt`.
fn booster_prediction(model: &TrainedModel, row: [f64; 5]) -> f64 {
    booster_predictions(model, &row)[0]
}

/// The original service's feature row for one request: store, item, month, weekday (Mon=0),
/// year, written out here independently of the `forecast` crate.
fn feature_row(date: chrono::NaiveDate, store: u32, item: u32) -> [f64; 5] {
    use chrono::Datelike;
    [
        f64::from(store),
        f64::from(item),
        f64::from(date.month()),
        f64::from(date.weekday().num_days_from_monday()),
        f64::from(date.year()),
    ]
}

/// What the booster itself predicts for flattened 5-column rows.
fn booster_predictions(model: &TrainedModel, rows: &[f64]) -> Vec<f64> {
    let booster = lightgbm3::Booster::from_file(model.model_path.to_str().unwrap()).unwrap();
    booster.predict(rows, 5, true).unwrap()
}

async fn post_json(client: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_and_health_over_http_through_the_local_stack() {
    // GIVEN a model trained on generated data and published to a real local S3 server
    let work = tempfile::tempdir().unwrap();
    let model = train_small_model(work.path());
    let s3 = LocalS3::start(work.path()).unwrap();
    let location = publish_model(&s3, &work.path().join("model"), BUCKET)
        .await
        .unwrap();
    assert_eq!(location.prefix, "models/demand/e2e/");

    // AND both functions served by cargo lambda watch
    let watch = LambdaWatch::start(&stack_env(&s3.endpoint, &location), work.path()).unwrap();
    let http = reqwest::Client::builder()
        .timeout(FIRST_REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let predict_url = watch.function_url("orchestrator", "/v1/api/predict");

    // WHEN a retailer asks for store 2, item 3 on Monday 2018-01-01
    let (status, body) = post_json(
        &http,
        &predict_url,
        r#"{"date": "2018-01-01", "store": 2, "item": 3}"#,
    )
    .await;

    // THEN the answer is the booster's own prediction for store 2, item 3, January, Monday, 2018
    assert_eq!(status, 200, "{body}\n{}", watch.log_tail());
    let sales = body["sales"].as_f64().unwrap();
    assert!(sales.is_finite());
    let expected = booster_prediction(&model, [2.0, 3.0, 1.0, 0.0, 2018.0]);
    assert_eq!(
        sales.to_bits(),
        expected.to_bits(),
        "served {sales}, booster says {expected}"
    );

    // AND a full ISO datetime with an offset means the same calendar day
    let (status, body) = post_json(
        &http,
        &predict_url,
        r#"{"date": "2018-01-01T23:30:00-05:00", "store": 2, "item": 3}"#,
    )
    .await;
    assert_eq!((status, body["sales"].as_f64()), (200, Some(sales)));

    // AND another day gets that day's prediction (Saturday in July 2017)
    let (status, body) = post_json(
        &http,
        &predict_url,
        r#"{"date": "2017-07-15", "store": 1, "item": 4}"#,
    )
    .await;
    assert_eq!(status, 200);
    let expected = booster_prediction(&model, [1.0, 4.0, 7.0, 5.0, 2017.0]);
    assert_eq!(
        body["sales"].as_f64().map(f64::to_bits),
        Some(expected.to_bits())
    );

    // AND health reports the model it reached
    let response = http
        .get(watch.function_url("orchestrator", "/v1/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["model"], json!({"name": "demand", "version": "e2e"}));

    // AND every answer carries API Gateway-style request ids and the model's version
    let response = http
        .post(&predict_url)
        .header("content-type", "application/json")
        .body(r#"{"date": "2018-01-01", "store": 2, "item": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-model-version"], "e2e");
    assert!(!response.headers()["x-request-id"].is_empty());

    // AND a 10,000-row batch comes back complete, in request order, each row the booster's own
    let instances: Vec<(chrono::NaiveDate, u32, u32)> = (0..10_000u32)
        .map(|i| {
            let date = chrono::NaiveDate::from_ymd_opt(2018, 1, 1).unwrap()
                + chrono::Days::new(u64::from(i * 7 % 365));
            (date, i % 3 + 1, (i / 3) % 4 + 1)
        })
        .collect();
    let body = json!({"instances": instances
        .iter()
        .map(|(date, store, item)| json!({"date": date.to_string(), "store": store, "item": item}))
        .collect::<Vec<_>>()});
    let started = std::time::Instant::now();
    let (status, answer) = post_json(
        &http,
        &watch.function_url("orchestrator", "/v1/api/predict/batch"),
        &body.to_string(),
    )
    .await;
    let batch_time = started.elapsed();
    assert_eq!(status, 200, "{answer}\n{}", watch.log_tail());
    assert_eq!(answer["model"], json!({"name": "demand", "version": "e2e"}));
    let rows: Vec<f64> = instances
        .iter()
        .flat_map(|(date, store, item)| feature_row(*date, *store, *item))
        .collect();
    let expected = booster_predictions(&model, &rows);
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 10_000);
    for (index, ((prediction, (date, store, item)), expected)) in predictions
        .iter()
        .zip(&instances)
        .zip(&expected)
        .enumerate()
    {
        assert_eq!(prediction["date"], date.to_string(), "row {index}");
        assert_eq!(
            (&prediction["store"], &prediction["item"]),
            (&json!(store), &json!(item))
        );
        assert_eq!(
            prediction["sales"].as_f64().map(f64::to_bits),
            Some(expected.to_bits()),
            "row {index}"
        );
    }
    eprintln!("10,000-row batch through the local stack: {batch_time:?}");

    // AND a 30-day forecast is the daily series of the same predictions
    let response = http
        .get(watch.function_url(
            "orchestrator",
            "/v1/api/forecast?store=2&item=3&start=2018-01-01&days=30",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let series: Value = response.json().await.unwrap();
    let days = series["forecast"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[0], json!({"date": "2018-01-01", "sales": sales}));
    let start = chrono::NaiveDate::from_ymd_opt(2018, 1, 1).unwrap();
    let rows: Vec<f64> = (0..30)
        .flat_map(|d| feature_row(start + chrono::Days::new(d), 2, 3))
        .collect();
    let served: Vec<u64> = days
        .iter()
        .map(|d| d["sales"].as_f64().unwrap().to_bits())
        .collect();
    let expected: Vec<u64> = booster_predictions(&model, &rows)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(served, expected);

    // AND a store the model never saw is a 422 naming the known stores
    let (status, body) = post_json(
        &http,
        &predict_url,
        r#"{"date": "2018-01-01", "store": 4, "item": 1}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "out_of_training_domain");
    assert!(
        body["detail"][0]["msg"].as_str().unwrap().contains("1..=3"),
        "{body}"
    );

    // AND the OpenAPI document is served
    let response = http
        .get(watch.function_url("orchestrator", "/v1/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/api/predict/batch"]["post"].is_object());

    // AND malformed JSON is a 400 with a detail
    let (status, body) =
        post_json(&http, &predict_url, r#"{"date": "2018-01-01", "store": "#).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    // AND invalid fields are a 422 naming each field and why
    let (status, body) = post_json(
        &http,
        &predict_url,
        r#"{"date": "2018-02-30", "store": 0, "item": 1}"#,
    )
    .await;
    assert_eq!(status, 422);
    let detail = body["detail"].as_array().unwrap();
    let fields: Vec<(&str, &str)> = detail
        .iter()
        .map(|e| (e["loc"][1].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [("date", "date_parsing"), ("store", "greater_than_equal")]
    );

    // AND the model function itself speaks the MLflow payload and types its errors
    let response = http
        .post(watch.invoke_url("model"))
        .body(r#"{"dataframe_split": {"columns": ["year", "day", "month", "item", "store"], "data": [[2018, 0, 1, 3, 2]]}}"#)
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["predictions"][0].as_f64(), Some(sales), "{answer}");
    let response = http
        .post(watch.invoke_url("model"))
        .body(r#"{"dataframe_split": {"columns": ["store"], "data": [[1]]}}"#)
        .send()
        .await
        .unwrap();
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["errorType"], "SchemaMismatch", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("missing column \"item\"")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_corrupt_model_fails_initialisation_naming_bucket_and_key() {
    // GIVEN a real local S3 server with one good model
    let work = tempfile::tempdir().unwrap();
    let model = train_small_model(work.path());
    let s3 = LocalS3::start(work.path()).unwrap();
    let client = s3.client().await;
    let good = publish_model(&s3, &work.path().join("model"), BUCKET)
        .await
        .unwrap();
    let store = S3ObjectStore::new(client.clone());

    // THEN the good model loads and reports its manifest
    let loaded = load_model(&store, &good).await.unwrap();
    assert_eq!(loaded.manifest, model.manifest);

    // WHEN the version does not exist THEN the error names bucket and key
    let missing = ModelLocation::new(BUCKET, "demand", "nope");
    let err = load_model(&store, &missing).await.unwrap_err();
    assert!(matches!(err, InitError::Fetch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("s3://demand-models-e2e/models/demand/nope/")
            && err.to_string().contains("NoSuchKey"),
        "{err}"
    );

    // WHEN the bucket does not exist THEN it says so
    let err = load_model(
        &store,
        &ModelLocation::new("no-such-bucket", "demand", "e2e"),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("s3://no-such-bucket/models/demand/e2e/"),
        "{err}"
    );
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");

    // WHEN model.txt is replaced by other bytes THEN the sha256 check names the key
    client
        .put_object()
        .bucket(BUCKET)
        .key(good.model_key())
        .body(b"tree\nversion=v4\n".to_vec().into())
        .send()
        .await
        .unwrap();
    let err = load_model(&store, &good).await.unwrap_err();
    assert!(matches!(err, InitError::ShaMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("s3://demand-models-e2e/models/demand/e2e/model.txt"),
        "{err}"
    );
}
