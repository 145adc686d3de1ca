//! `cargo lambda invoke`, the third way in, with every committed event under `data/events/`:
//! each API Gateway v2 event through the orchestrator and the ping through the model, against
//! `cargo lambda watch` on 127.0.0.1 and a model trained on the whole store x item domain the
//! events use (stores 1..=10, items 1..=50). Each answer is the one docs/api.md and
//! docs/model-payload.md document.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use e2e::{LambdaWatch, LocalS3, publish_model, stack_env, workspace_root};
use serde_json::{Value, json};

const BUCKET: &str = "demand-models-invoke";

/// Which function each committed event is for and the HTTP status it must answer (the model's
/// ping has no HTTP status: `None`). A new event must be added here, with its answer.
const EVENTS: [(&str, &str, Option<u16>); 15] = [
    ("batch.json", "orchestrator", Some(200)),
    ("forecast-invalid.json", "orchestrator", Some(422)),
    ("forecast.json", "orchestrator", Some(200)),
    ("health-named-stage.json", "orchestrator", Some(200)),
    ("health.json", "orchestrator", Some(200)),
    ("model-ping.json", "model", None),
    ("not-found.json", "orchestrator", Some(404)),
    ("openapi.json", "orchestrator", Some(200)),
    // The local stack runs with API_AUTH unset (NONE): every caller, or none, is served.
    ("predict-caller-iam.json", "orchestrator", Some(200)),
    ("predict-caller-jwt.json", "orchestrator", Some(200)),
    ("predict-caller-none.json", "orchestrator", Some(200)),
    ("predict-invalid.json", "orchestrator", Some(422)),
    ("predict-malformed.json", "orchestrator", Some(400)),
    ("predict-wrong-method.json", "orchestrator", Some(405)),
    ("predict.json", "orchestrator", Some(200)),
];

/// `cargo lambda invoke <function> --data-file <event>` against `watch`: the function's answer.
fn invoke(watch: &LambdaWatch, function: &str, event: &std::path::Path) -> Value {
    let port = watch.base_url.rsplit(':').next().unwrap();
    let output = Command::new("cargo")
        .current_dir(workspace_root())
        .args([
            "lambda",
            "invoke",
            function,
            "--invoke-address",
            "127.0.0.1",
        ])
        .args([
            "--invoke-port",
            port,
            "--output-format",
            "json",
            "--data-file",
        ])
        .arg(event)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo lambda invoke {function} {}: {stdout}\n{}\n{}",
        event.display(),
        String::from_utf8_lossy(&output.stderr),
        watch.log_tail()
    );
    serde_json::from_str(&stdout)
        .map_err(|err| format!("{err}: {stdout}"))
        .unwrap()
}

/// The JSON body of an API Gateway v2 response.
fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_committed_event_answers_as_documented_through_cargo_lambda_invoke() {
    // GIVEN a model trained on stores 1..=10 and items 1..=50 (half a year of generated sales)
    let work = tempfile::tempdir().unwrap();
    let data = trainer::generate::GenerateConfig {
        train_end: chrono::NaiveDate::from_ymd_opt(2013, 6, 30).unwrap(),
        test_days: 1,
        ..trainer::generate::GenerateConfig::default()
    };
    let model = e2e::train_model(
        work.path(),
        "fixtures",
        &data,
        &forecast::features::ORIGINAL_FEATURES,
    )
    .unwrap();
    let s3 = LocalS3::start(work.path()).unwrap();
    let location = publish_model(&s3, &work.path().join("model"), BUCKET)
        .await
        .unwrap();
    // AND both functions under cargo lambda watch
    let watch = LambdaWatch::start(&stack_env(&s3.endpoint, &location), work.path()).unwrap();

    // AND the events committed under data/events/, every one of them listed above
    let events_dir = workspace_root().join("data/events");
    let mut committed: Vec<String> = std::fs::read_dir(&events_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    committed.sort();
    let listed: Vec<&str> = EVENTS.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(committed, listed, "every committed event needs its answer");

    for (name, function, expected) in EVENTS {
        // WHEN it is sent with cargo lambda invoke
        let event = events_dir.join(name);
        let response = invoke(&watch, function, &event);

        // THEN the function answers as documented
        let Some(expected) = expected else {
            assert_eq!(response["status"], "ready", "{name}: {response}");
            assert_eq!(
                response["model"],
                json!({"name": "demand", "version": "fixtures"})
            );
            assert_eq!(response["num_trees"], json!(model.manifest.num_trees));
            assert_eq!(response["source_uri"], json!(location.uri()));
            continue;
        };
        assert_eq!(
            response["statusCode"],
            json!(expected),
            "{name}: {response}"
        );
        let request: Value =
            serde_json::from_str(&std::fs::read_to_string(&event).unwrap()).unwrap();
        assert_eq!(
            response["headers"]["x-request-id"], request["requestContext"]["requestId"],
            "{name}: API Gateway's request id comes back"
        );
        let body = body(&response);
        let text = body.to_string();
        match name {
            "predict.json" => assert!(body["sales"].as_f64().unwrap().is_finite(), "{text}"),
            // Served like predict.json (API_AUTH is unset here); the orchestrator's log line
            // names the caller the authorizer context carries, and never the bearer token.
            "predict-caller-iam.json" | "predict-caller-jwt.json" | "predict-caller-none.json" => {
                assert!(body["sales"].as_f64().unwrap().is_finite(), "{text}");
                let caller = match name {
                    "predict-caller-iam.json" => {
                        "iam:arn:aws:sts::123456789012:assumed-role/forecast-client/forecaster"
                    }
                    "predict-caller-jwt.json" => "jwt:5f1c2b9e-retailer-client",
                    _ => "anonymous",
                };
                // The emulator copies the function's output to its log as it comes: wait for it.
                let answered = |log: &str| {
                    log.lines()
                        .any(|line| line.contains("request answered") && line.contains(caller))
                };
                let mut log = watch.log_tail();
                for _ in 0..50 {
                    if answered(&log) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    log = watch.log_tail();
                }
                assert!(answered(&log), "{name}: no log line names {caller}\n{log}");
                for secret in ["eyJhbGciOiJSUzI1NiJ9", "5d672d79", "AKIAIOSFODNN7EXAMPLE"] {
                    assert!(!log.contains(secret), "{name}: {secret} was logged");
                }
            }
            "batch.json" => {
                let stores: Vec<&Value> = body["predictions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| &p["store"])
                    .collect();
                assert_eq!(stores, [&json!(1), &json!(2), &json!(10)], "{text}");
                assert_eq!(body["model"]["version"], "fixtures");
            }
            "forecast.json" => {
                let days = body["forecast"].as_array().unwrap();
                assert_eq!(days.len(), 7, "{text}");
                assert_eq!(days[6]["date"], "2018-01-07");
                assert!(days.iter().all(|d| d["sales"].as_f64().is_some()));
            }
            "health.json" | "health-named-stage.json" => {
                assert_eq!(body["status"], "healthy", "{text}");
                assert_eq!(body["model"]["version"], "fixtures");
            }
            "openapi.json" => assert!(body["paths"]["/v1/api/predict"].is_object(), "{text}"),
            "predict-invalid.json" => {
                let fields: Vec<&Value> = body["detail"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| &d["loc"][1])
                    .collect();
                assert_eq!(fields, [&json!("date"), &json!("store")], "{text}");
            }
            "forecast-invalid.json" => {
                let fields: Vec<&Value> = body["detail"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| &d["loc"][1])
                    .collect();
                assert!(fields.contains(&&json!("item")), "{text}");
                assert!(fields.contains(&&json!("days")), "{text}");
            }
            "predict-wrong-method.json" => {
                assert!(body["detail"].is_string(), "{text}");
                let allow = response["headers"]["allow"].as_str().unwrap_or_default();
                assert!(allow.contains("POST"), "{response}");
            }
            _ => assert!(body["detail"].is_string(), "{name}: {text}"),
        }
        if expected >= 400 {
            e2e::assert_no_leak(&text);
        }
    }
}
