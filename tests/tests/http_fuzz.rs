//! Schema-driven HTTP fuzzing of the running local stack: schemathesis reads the served
//! OpenAPI document and sends valid and invalid requests to every operation; every answer
//! must be a documented status with a body matching its schema and the documented headers,
//! no request may get a 5xx from the service, and no error body may show internals.
//!
//! `FUZZ_HTTP_EXAMPLES` (default 25) sets schemathesis' examples per operation and phase;
//! `FUZZ_HTTP_MIN_REQUESTS` (default 100) the fewest requests the handler must have answered.
//! `make test-fuzz-http` runs the long version (>= 2,000 requests); `make test` this short one.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::{
    LambdaWatch, LocalS3, env_number, leaks, publish_model, stack_env, train_small_model,
    workspace_root,
};
use serde_json::Value;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      unsupported_method,allow_header_conformance";

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS").map_or_else(
        || workspace_root().join(".local/fuzz-venv/bin/schemathesis"),
        PathBuf::from,
    )
}

fn decode(content: &Value) -> Vec<u8> {
    match content.get("$base64").and_then(Value::as_str) {
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default(),
        None => content.as_str().unwrap_or_default().as_bytes().to_vec(),
    }
}

/// A failed check is accepted only when the emulator, not the service, answered: `cargo lambda
/// watch` rejects a JSON-typed body that is not UTF-8 with its own 500 before the function
/// runs (API Gateway would base64-encode it; the handler answers 400 to any bytes, see the
/// orchestrator's decode properties). Such answers lack the headers every response of ours has.
fn is_emulator_rejection(interaction: &Value) -> bool {
    let response = &interaction["response"];
    let ours = response["headers"].get("x-request-id").is_some();
    let body = decode(&interaction["request"]["body"]);
    response["status_code"] == 500 && !ours && std::str::from_utf8(&body).is_err()
}

/// The OpenAPI document as the service serves it. Schemathesis reads it from a file, not from
/// the emulator: `cargo lambda watch` now and then answers a request with its own 500 before the
/// function sees it (no `x-request-id`, nothing in the handler's log), and one such answer to
/// the schema download would fail the run before a single check. Only that rejection is
/// retried; any answer of the service's own that is not 200 fails the test.
async fn served_document(http: &reqwest::Client, base: &str) -> String {
    let url = format!("{base}/v1/api/openapi.json");
    for _ in 0..5 {
        let response = http.get(&url).send().await.unwrap();
        let status = response.status().as_u16();
        let ours = response.headers().get("x-request-id").is_some();
        let body = response.text().await.unwrap();
        if status == 200 && ours {
            return body;
        }
        assert!(!ours, "the service answered {status} to {url}: {body}");
        eprintln!("emulator rejected {url} with {status}; retrying: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the emulator rejected {url} five times");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_openapi_document_holds_under_schema_driven_fuzzing() {
    let tool = schemathesis();
    assert!(
        tool.exists(),
        "{} is missing: run `make deps`",
        tool.display()
    );
    let examples: u64 = env_number("FUZZ_HTTP_EXAMPLES", 25);
    let min_requests: u64 = env_number("FUZZ_HTTP_MIN_REQUESTS", 100);

    // GIVEN the local stack serving a small model
    let work = tempfile::tempdir().unwrap();
    train_small_model(work.path(), "fuzz").unwrap();
    let s3 = LocalS3::start(work.path()).unwrap();
    let location = publish_model(&s3, &work.path().join("model"), "fuzz-models")
        .await
        .unwrap();
    let watch = LambdaWatch::start(&stack_env(&s3.endpoint, &location), work.path()).unwrap();
    let base = watch.function_url("orchestrator", "");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let warm = http
        .get(format!("{base}/v1/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status().as_u16(), 200, "{}", watch.log_tail());
    let document = work.path().join("openapi.json");
    std::fs::write(&document, served_document(&http, &base).await).unwrap();

    // WHEN schemathesis fuzzes every documented operation
    let reports = work.path().join("schemathesis");
    let started = Instant::now();
    let output = Command::new(&tool)
        .args(["run", document.to_str().unwrap(), "--url", &base])
        // One worker: `cargo lambda watch` drops ~1% of large responses under concurrent
        // requests (its own 500, after the handler answered 200); load is tested in load.rs.
        .args(["--checks", CHECKS, "--mode", "all", "--workers", "1"])
        .args([
            "--max-examples",
            &examples.to_string(),
            "--seed",
            "20261126",
        ])
        .args([
            "--continue-on-failure",
            "--request-timeout",
            "60",
            "--report",
            "ndjson",
            "--report-dir",
        ])
        .arg(&reports)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Its cache of found failures stays with this run, not in the source tree.
        .current_dir(work.path())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);

    // THEN every failed check is the emulator's own rejection of a non-UTF-8 body
    let mut checks = 0usize;
    let mut emulator_rejections = 0usize;
    let mut error_bodies = 0usize;
    let mut failures = Vec::new();
    for report in std::fs::read_dir(&reports).unwrap().flatten() {
        for line in std::fs::read_to_string(report.path()).unwrap().lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            let Some(recorder) = event["ScenarioFinished"].get("recorder") else {
                continue;
            };
            // No error body shows internals the request did not itself contain.
            for interaction in recorder["interactions"].as_object().into_iter().flatten() {
                let interaction = interaction.1;
                if interaction["response"]["status_code"].as_u64().unwrap_or(0) < 400
                    || is_emulator_rejection(interaction)
                {
                    continue;
                }
                error_bodies += 1;
                let body = String::from_utf8_lossy(&decode(&interaction["response"]["content"]))
                    .into_owned();
                let request = format!(
                    "{} {}",
                    interaction["request"]["uri"],
                    String::from_utf8_lossy(&decode(&interaction["request"]["body"]))
                );
                let found = leaks(&body, &request);
                if !found.is_empty() {
                    failures.push(format!("leaked {found:?}: {body}"));
                }
            }
            let Some(cases) = recorder["checks"].as_object() else {
                continue;
            };
            for (case, results) in cases {
                for result in results.as_array().into_iter().flatten() {
                    checks += 1;
                    if result["status"] != "failure" {
                        continue;
                    }
                    let interaction = &recorder["interactions"][case];
                    if is_emulator_rejection(interaction) {
                        emulator_rejections += 1;
                    } else {
                        failures.push(format!("{}: {interaction}", result["name"]));
                    }
                }
            }
        }
    }
    assert!(checks > 0, "schemathesis ran no checks:\n{stdout}");
    assert!(error_bodies > 0, "no error body was checked for leaks");
    assert!(failures.is_empty(), "{failures:#?}\n{stdout}");
    if !output.status.success() {
        assert!(
            emulator_rejections > 0,
            "schemathesis failed without a recorded failure:\n{stdout}"
        );
    }

    // AND the handler answered at least the expected number of requests, none with a 5xx
    let log = std::fs::read_to_string(&watch.log).unwrap();
    let answered: Vec<u64> = log
        .lines()
        .filter(|line| line.starts_with('{') && line.contains("\"CloudWatchMetrics\""))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|emf| emf["Status"].as_u64())
        .collect();
    let server_errors = answered.iter().filter(|s| **s >= 500).count();
    let summary = stdout
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failed"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "schemathesis: {} requests answered by the handler in {elapsed:?}, {checks} checks, \
         {error_bodies} error bodies free of internals, {emulator_rejections} emulator rejections \
         of non-UTF-8 bodies\n{summary}",
        answered.len()
    );
    assert_eq!(server_errors, 0, "the handler answered a 5xx");
    assert!(
        answered.len() as u64 >= min_requests,
        "only {} requests reached the handler (want >= {min_requests})",
        answered.len()
    );
}
