//! The model host (in process) against a real S3 server (moto on 127.0.0.1): publish a booster,
//! cold-start from it, serve the booster's own predictions bit for bit, concurrently, and fail
//! each way a cold start can fail with its own error. Needs `moto_server` (`make deps`).

// A failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};

use e2e::LocalS3;
use forecast::{ModelLocation, ModelManifest};
use model::{
    FetchErrorKind, InitError, ModelError, ModelErrorType, ModelHost, ModelResponse, S3ObjectStore,
};
use model::{LoadedModel, load_model};
use serde_json::json;
use test_support::manifest::ManifestSpec;
use test_support::{FEATURES, booster, payload, synthetic};

const BUCKET: &str = "model-host-tests";
const ROUNDS: u32 = 40;

/// One booster for every test of this binary: 40 rounds on 4 stores x 5 items x 2 years.
fn model_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| booster::sales(ROUNDS, 4, 5, 730))
}

fn manifest(text: &str) -> ModelManifest {
    ManifestSpec::sales("demand", "it", ROUNDS).manifest_for(text)
}

/// A real S3 server (moto, with `env`) holding the test bucket, and a client of it; the
/// temporary directory holds the server's log and must outlive it.
async fn s3_with_bucket(env: &[(&str, &str)]) -> (tempfile::TempDir, LocalS3, aws_sdk_s3::Client) {
    let logs = tempfile::tempdir().unwrap();
    let s3 = LocalS3::start_with_env(logs.path(), env).unwrap();
    let client = s3.client().await;
    client.create_bucket().bucket(BUCKET).send().await.unwrap();
    (logs, s3, client)
}

/// Publishes `manifest.json` and `model.txt` under `models/demand/<version>/`.
async fn publish(
    client: &aws_sdk_s3::Client,
    version: &str,
    manifest: &ModelManifest,
    model_text: &[u8],
) -> ModelLocation {
    let location = ModelLocation::new(BUCKET, "demand", version);
    client
        .put_object()
        .bucket(BUCKET)
        .key(location.manifest_key())
        .body(serde_json::to_vec(manifest).unwrap().into())
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket(BUCKET)
        .key(location.model_key())
        .body(model_text.to_vec().into())
        .send()
        .await
        .unwrap();
    location
}

/// The booster's own predictions for `rows`, one call per row (LightGBM's single-row call)
/// or one call for all of them.
fn booster_predictions(rows: &[f64], one_by_one: bool) -> Vec<u64> {
    let booster = lightgbm3::Booster::from_string(model_text()).unwrap();
    let width = FEATURES.len();
    let predictions = if one_by_one {
        rows.chunks(width)
            .flat_map(|row| booster.predict(row, width as i32, true).unwrap())
            .collect()
    } else {
        booster.predict(rows, width as i32, true).unwrap()
    };
    predictions.into_iter().map(f64::to_bits).collect()
}

fn served(answer: Result<ModelResponse, ModelError>) -> Vec<u64> {
    match answer {
        Ok(ModelResponse::Predictions(p)) => p.predictions.into_iter().map(f64::to_bits).collect(),
        other => panic!("expected predictions, got {other:?}"),
    }
}

fn records(rows: &[f64]) -> String {
    let records: Vec<_> = rows
        .chunks(FEATURES.len())
        .map(|row| {
            // Reversed key order: the host matches columns by name.
            let mut record = serde_json::Map::new();
            for (name, value) in FEATURES.iter().zip(row).rev() {
                record.insert((*name).to_owned(), json!(value));
            }
            record
        })
        .collect();
    json!({ "dataframe_records": records }).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_booster_is_served_with_its_own_predictions_bit_for_bit() {
    // GIVEN a booster and its manifest published to a real local S3 server
    let (_logs, _s3, client) = s3_with_bucket(&[]).await;
    let text = model_text();
    let location = publish(&client, "it", &manifest(text), text.as_bytes()).await;

    // WHEN the host cold-starts from it
    let host = ModelHost::start(S3ObjectStore::new(client.clone()), location.clone(), 10_000).await;
    let model = host.model().expect("the model loads");

    // THEN a batch is predicted exactly as the booster predicts it
    let rows = synthetic::query_rows(500);
    let batch = booster_predictions(&rows, false);
    assert_eq!(
        served(host.invoke(&payload::dataframe_split(&rows)).await),
        batch
    );
    assert_eq!(served(host.invoke(&records(&rows)).await), batch);

    // AND single rows exactly as the booster's single-row call predicts them
    let singles = booster_predictions(&rows[..50 * FEATURES.len()], true);
    for (row, expected) in rows.chunks(FEATURES.len()).zip(&singles) {
        let payload = json!({"instances": [row]}).to_string();
        assert_eq!(served(host.invoke(&payload).await), [*expected]);
    }

    // AND ping reports where the model came from, its S3 ETag and the cold start's timings
    let head = client
        .head_object()
        .bucket(BUCKET)
        .key(location.model_key())
        .send()
        .await
        .unwrap();
    let Ok(ModelResponse::Ping(ping)) = host.invoke(r#"{"ping": {}}"#).await else {
        panic!("expected a ping answer");
    };
    assert_eq!(ping.source_uri, "s3://model-host-tests/models/demand/it/");
    assert_eq!(ping.model_etag.as_deref(), head.e_tag());
    assert!(ping.model_etag.is_some());
    assert_eq!(ping.num_trees, ROUNDS);
    assert_eq!(ping.features, FEATURES);
    assert_eq!(ping.model_sha256, model.manifest.model_sha256);
    let init = ping.init.unwrap();
    assert!(
        init.total_ms >= init.fetch_ms && init.fetch_ms > 0.0,
        "{init:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_answer_what_sequential_ones_do() {
    let (_logs, _s3, client) = s3_with_bucket(&[]).await;
    let text = model_text();
    let location = publish(&client, "it", &manifest(text), text.as_bytes()).await;
    let host = Arc::new(ModelHost::start(S3ObjectStore::new(client), location, 10_000).await);

    let rows = synthetic::query_rows(64);
    let payloads: Vec<String> = (0..16)
        .map(|i| {
            if i % 2 == 0 {
                payload::dataframe_split(&rows[i * 5..(i + 1) * 5])
            } else {
                payload::dataframe_split(&rows[..(i * 4) * 5])
            }
        })
        .collect();
    let mut sequential = Vec::new();
    for payload in &payloads {
        sequential.push(served(host.invoke(payload).await));
    }
    let sequential = Arc::new(sequential);
    let payloads = Arc::new(payloads);

    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let host = Arc::clone(&host);
            let payloads = Arc::clone(&payloads);
            let sequential = Arc::clone(&sequential);
            tokio::spawn(async move {
                for round in 0..20 {
                    let i = (task + round) % payloads.len();
                    assert_eq!(served(host.invoke(&payloads[i]).await), sequential[i]);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn assert_fetch_error(err: &InitError, kind: FetchErrorKind, uri: &str) {
    assert!(
        matches!(err, InitError::Fetch { kind: k, .. } if *k == kind),
        "expected {kind:?}: {err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("cannot fetch {uri}: ")),
        "{err}"
    );
}

async fn load(client: &aws_sdk_s3::Client, location: &ModelLocation) -> InitError {
    match load_model(&S3ObjectStore::new(client.clone()), location).await {
        Ok(LoadedModel { .. }) => panic!("{location:?} should not load"),
        Err(err) => err,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_cold_start_failure_is_distinct_and_names_the_object() {
    let (_logs, _s3, client) = s3_with_bucket(&[]).await;
    let text = model_text();

    // No such bucket
    let err = load(
        &client,
        &ModelLocation::new("no-such-bucket", "demand", "it"),
    )
    .await;
    assert_fetch_error(
        &err,
        FetchErrorKind::NoSuchBucket,
        "s3://no-such-bucket/models/demand/it/manifest.json",
    );
    assert_eq!(err.code(), "NoSuchBucket");
    assert!(
        err.to_string()
            .contains("check the bucket name in MODEL_URI"),
        "{err}"
    );

    // No such key (a version never published)
    let err = load(&client, &ModelLocation::new(BUCKET, "demand", "nope")).await;
    assert_fetch_error(
        &err,
        FetchErrorKind::NoSuchKey,
        "s3://model-host-tests/models/demand/nope/manifest.json",
    );
    assert_eq!(err.code(), "NoSuchKey");

    // Only the manifest published: the booster's key is named
    let location = ModelLocation::new(BUCKET, "demand", "half");
    client
        .put_object()
        .bucket(BUCKET)
        .key(location.manifest_key())
        .body(serde_json::to_vec(&manifest(text)).unwrap().into())
        .send()
        .await
        .unwrap();
    let err = load(&client, &location).await;
    assert_fetch_error(
        &err,
        FetchErrorKind::NoSuchKey,
        "s3://model-host-tests/models/demand/half/model.txt",
    );

    // sha256 mismatch: model.txt replaced after the manifest was written
    let tampered = text.replacen("Tree=0", "Tree=0 ", 1);
    let location = publish(&client, "sha", &manifest(text), tampered.as_bytes()).await;
    let err = load(&client, &location).await;
    assert!(matches!(err, InitError::ShaMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("sha256 mismatch for s3://model-host-tests/models/demand/sha/model.txt"),
        "{err}"
    );

    // Corrupt booster whose manifest matches it
    let garbage = "tree\nversion=v4\nthis is not a booster\n";
    let location = publish(&client, "corrupt", &manifest(garbage), garbage.as_bytes()).await;
    let err = load(&client, &location).await;
    assert!(matches!(err, InitError::CorruptBooster { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("corrupt booster s3://model-host-tests/models/demand/corrupt/model.txt"),
        "{err}"
    );

    // Manifest and booster disagree about the features
    let mut reordered = manifest(text);
    reordered.features.swap(0, 1);
    let location = publish(&client, "features", &reordered, text.as_bytes()).await;
    let err = load(&client, &location).await;
    assert!(matches!(err, InitError::FeatureMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("manifest lists [\"item\", \"store\""),
        "{err}"
    );

    // A host whose cold start failed answers ModelUnavailable with the reason
    let host = ModelHost::start(S3ObjectStore::new(client.clone()), location, 100).await;
    let err = host.invoke(r#"{"ping": {}}"#).await.unwrap_err();
    assert!(
        matches!(&err, ModelError { kind: ModelErrorType::ModelUnavailable, message: m } if m.contains("FeatureMismatch")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_denied_and_rejected_credentials_are_told_apart() {
    // moto checks IAM once its first 5 requests (bucket, two objects, user, key) are spent.
    let (_logs, s3, admin) = s3_with_bucket(&[("INITIAL_NO_AUTH_ACTION_COUNT", "5")]).await;
    let text = model_text();
    let location = publish(&admin, "it", &manifest(text), text.as_bytes()).await;
    let (key_id, secret) = s3
        .create_user_without_permissions("model-function")
        .unwrap();

    // A principal without s3:GetObject
    let err = load(&s3.client_as(&key_id, &secret), &location).await;
    assert_fetch_error(
        &err,
        FetchErrorKind::AccessDenied,
        "s3://model-host-tests/models/demand/it/manifest.json",
    );
    assert_eq!(err.code(), "AccessDenied");
    assert!(err.to_string().contains("allow s3:GetObject"), "{err}");

    // Credentials S3 does not know at all
    let err = load(&s3.client_as("AKIANOTAREALKEY00000", "nope"), &location).await;
    assert_fetch_error(
        &err,
        FetchErrorKind::Credentials,
        "s3://model-host-tests/models/demand/it/manifest.json",
    );
    assert!(err.to_string().contains("InvalidAccessKeyId"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_its_own_failure() {
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let credentials = aws_sdk_s3::config::Credentials::new("local", "local", None, None, "test");
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let err = load(&client, &ModelLocation::new(BUCKET, "demand", "it")).await;
    assert!(
        matches!(
            err,
            InitError::Fetch {
                kind: FetchErrorKind::Unreachable,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), "StoreUnreachable");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_on_a_baseline_is_published_loaded_and_served_as_the_trainer_predicts_it() {
    // GIVEN a Poisson booster trained on top of a baseline (as data/params/poisson.toml asks)
    let work = tempfile::tempdir().unwrap();
    let data = test_support::trained::small_history();
    trainer::generate::generate(&data, &work.path().join("data")).unwrap();
    let history = trainer::data::read_sales_csv(&work.path().join("data/train.csv")).unwrap();
    let config = trainer::train::TrainConfig {
        version: "baseline".to_owned(),
        ..trainer::train::TrainConfig::default()
    }
    .set("objective", json!("poisson"))
    .set(trainer::train::BASELINE_PARAM, json!(true))
    .set("num_iterations", json!(ROUNDS));
    let model_dir = work.path().join("model");
    let trained = trainer::train::train(&history, &config, &model_dir).unwrap();
    assert!(trained.manifest.baseline.is_some());

    // WHEN `demand publish` puts it on a real local S3 server and the host cold-starts from it
    let (_logs, _s3, client) = s3_with_bucket(&[]).await;
    let location = trainer::publish::publish(&client, &model_dir, BUCKET)
        .await
        .unwrap();
    let host = ModelHost::start(S3ObjectStore::new(client.clone()), location.clone(), 10_000).await;
    assert!(host.model().is_some(), "the model loads");

    // THEN rows are served exactly as the trainer predicts them: the booster times the baseline
    let rows: Vec<f64> = synthetic::query_rows(300)
        .chunks(FEATURES.len())
        .flat_map(|row| {
            [
                row[0] % 3.0 + 1.0,
                row[1] % 4.0 + 1.0,
                row[2],
                row[3],
                row[4],
            ]
        })
        .collect();
    let expected = trainer::evaluate::ModelDir::load(&model_dir)
        .unwrap()
        .predict_matrix(&rows)
        .unwrap();
    let expected: Vec<u64> = expected.into_iter().map(f64::to_bits).collect();
    assert_eq!(
        served(host.invoke(&payload::dataframe_split(&rows)).await),
        expected
    );
    let trees_only: Vec<u64> = lightgbm3::Booster::from_string(
        &std::fs::read_to_string(model_dir.join("model.txt")).unwrap(),
    )
    .unwrap()
    .predict(&rows, FEATURES.len() as i32, true)
    .unwrap()
    .into_iter()
    .map(f64::to_bits)
    .collect();
    assert_ne!(expected, trees_only, "the baseline moves the predictions");

    // AND the same model published without its baseline is refused at cold start
    let mut stripped = trained.manifest.clone();
    stripped.baseline = None;
    let text = std::fs::read(model_dir.join("model.txt")).unwrap();
    let location = publish(&client, "stripped", &stripped, &text).await;
    let err = load(&client, &location).await;
    assert!(
        matches!(err, InitError::CheckRowsMismatch { .. }),
        "{err:?}"
    );
}
