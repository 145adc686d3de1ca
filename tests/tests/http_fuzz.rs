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

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::{
    LambdaWatch, LocalS3, env_number, leaks, publish_model, stack_env, to_service,
    train_small_model, workspace_root,
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

/// The values of header `name` (any case) in a recorded request or response.
fn header<'a>(message: &'a Value, name: &str) -> Vec<&'a str> {
    message["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .flat_map(|(_, values)| match values {
            Value::Array(values) => values.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
            other => other.as_str().into_iter().collect(),
        })
        .collect()
}

/// Every response of the service carries `x-request-id`; the emulator's own answers do not.
fn answered_by_the_service(interaction: &Value) -> bool {
    !header(&interaction["response"], "x-request-id").is_empty()
}

/// A 500 the emulator answered itself: none of the service's headers, the emulator's body.
fn is_emulator_500(interaction: &Value) -> bool {
    let response = &interaction["response"];
    response["status_code"] == 500
        && !answered_by_the_service(interaction)
        && String::from_utf8_lossy(&decode(&response["content"])).contains("httpstatuses.com/500")
}

/// A failed check is accepted without more only when the emulator, not the service, answered,
/// in the one documented case: `cargo lambda watch` rejects a body announced as JSON that is
/// not UTF-8 with its own 500 before the function runs (API Gateway would base64-encode it; the
/// handler answers 400 to any bytes, see the orchestrator's decode properties). So: the
/// emulator's 500 to a request whose content type is JSON and whose body is not UTF-8.
fn is_emulator_rejection(interaction: &Value) -> bool {
    let request = &interaction["request"];
    let json_typed = header(request, "content-type").iter().any(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    });
    let body = decode(&request["body"]);
    is_emulator_500(interaction)
        && json_typed
        && !body.is_empty()
        && std::str::from_utf8(&body).is_err()
}

/// Every operation of the OpenAPI document, as schemathesis labels them (`POST /v1/api/predict`).
fn documented_operations(document: &str) -> BTreeSet<String> {
    let document: Value = serde_json::from_str(document).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                operations.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(!operations.is_empty(), "the document has no operations");
    operations
}

/// The failed checks a 500 from the emulator, without any of the service's headers or its
/// body, can cause; a failure of any other check is the service's.
const CHECKS_AN_EMULATOR_500_FAILS: [&str; 5] = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
];

/// Events a clean run consists of; any other kind (`NonFatalError` for a timeout, a refused
/// connection or an operation schemathesis could not generate for, `FatalError`,
/// `Interrupted`, ...) fails the test by name.
const EXPECTED_EVENTS: [&str; 12] = [
    "Initialize",
    "LoadingStarted",
    "LoadingFinished",
    "EngineStarted",
    "PhaseStarted",
    "PhaseFinished",
    "SuiteStarted",
    "SuiteFinished",
    "ScenarioStarted",
    "ScenarioFinished",
    "SchemaAnalysisWarnings",
    "EngineFinished",
];

/// What the ndjson report holds, counted by kind.
#[derive(Debug, Default)]
struct Tally {
    /// Events by kind.
    events: BTreeMap<String, usize>,
    /// Finished scenarios by (phase, status).
    scenarios: BTreeMap<(String, String), usize>,
    /// Operations with at least one generated request (coverage or fuzzing phase) that the
    /// service answered.
    answered_operations: BTreeSet<String>,
    /// (selected, total) operations, as schemathesis loaded the document.
    loaded_operations: Option<(u64, u64)>,
    checks: usize,
    emulator_rejections: usize,
    /// Requests the emulator answered with its own 500 for no reason of the request's (it
    /// does so now and then, see `served_document`), by operation; each is sent again below.
    emulator_errors: Vec<(String, Value)>,
    error_bodies: usize,
    /// Everything that fails the test, said plainly.
    failures: Vec<String>,
}

impl Tally {
    fn count(&mut self, event: &Value) {
        let Some((kind, body)) = event.as_object().and_then(|o| o.iter().next()) else {
            self.failures.push(format!("unreadable event: {event}"));
            return;
        };
        *self.events.entry(kind.clone()).or_default() += 1;
        if !EXPECTED_EVENTS.contains(&kind.as_str()) {
            self.failures.push(format!("{kind}: {body}"));
            return;
        }
        match kind.as_str() {
            "ScenarioFinished" => self.scenario(body),
            "LoadingFinished" => {
                let operations = &body["statistic"]["operations"];
                self.loaded_operations = operations["selected"]
                    .as_u64()
                    .zip(operations["total"].as_u64());
            }
            // A phase that is on ends in success or failure (failures are counted by check);
            // only a phase that is off (stateful: the document has no links) is skipped.
            "PhaseFinished" | "SuiteFinished" => {
                let status = body["status"].as_str().unwrap_or_default();
                let enabled = body["phase"]["is_enabled"].as_bool().unwrap_or(true);
                let fine =
                    matches!(status, "success" | "failure") || (status == "skip" && !enabled);
                if !fine {
                    self.failures.push(format!("{kind} {status}: {body}"));
                }
            }
            "EngineFinished" if body["stop_reason"] != "completed" => {
                self.failures.push(format!("the run stopped early: {body}"));
            }
            _ => {}
        }
    }

    fn scenario(&mut self, scenario: &Value) {
        let phase = scenario["phase"].as_str().unwrap_or_default().to_owned();
        let status = scenario["status"].as_str().unwrap_or_default().to_owned();
        let recorder = &scenario["recorder"];
        let label = recorder["label"].as_str().unwrap_or_default().to_owned();
        *self
            .scenarios
            .entry((phase.clone(), status.clone()))
            .or_default() += 1;
        // The examples phase skips an operation the document gives no example for; a skip
        // anywhere else is an operation schemathesis did not test.
        let fine = matches!(status.as_str(), "success" | "failure")
            || (status == "skip"
                && phase == "examples"
                && scenario["skip_reason"] == "No examples in schema");
        if !fine {
            self.failures.push(format!(
                "{label}: a scenario of the {phase} phase ended {status}: {scenario}"
            ));
        }
        // No error body shows internals the request did not itself contain.
        for (_, interaction) in recorder["interactions"].as_object().into_iter().flatten() {
            let Some(status) = interaction["response"]["status_code"].as_u64() else {
                continue;
            };
            if matches!(phase.as_str(), "coverage" | "fuzzing")
                && answered_by_the_service(interaction)
            {
                self.answered_operations.insert(label.clone());
            }
            if status < 400 || is_emulator_500(interaction) {
                continue;
            }
            self.error_bodies += 1;
            let body =
                String::from_utf8_lossy(&decode(&interaction["response"]["content"])).into_owned();
            let request = format!(
                "{} {}",
                interaction["request"]["uri"],
                String::from_utf8_lossy(&decode(&interaction["request"]["body"]))
            );
            let found = leaks(&body, &request);
            if !found.is_empty() {
                self.failures.push(format!("leaked {found:?}: {body}"));
            }
        }
        for (case, results) in recorder["checks"].as_object().into_iter().flatten() {
            for result in results.as_array().into_iter().flatten() {
                self.checks += 1;
                if result["status"] != "failure" {
                    continue;
                }
                let interaction = &recorder["interactions"][case];
                let name = result["name"].as_str().unwrap_or_default();
                if !CHECKS_AN_EMULATOR_500_FAILS.contains(&name) || !is_emulator_500(interaction) {
                    self.failures.push(format!("{name}: {interaction}"));
                } else if is_emulator_rejection(interaction) {
                    self.emulator_rejections += 1;
                } else if !self
                    .emulator_errors
                    .iter()
                    .any(|(_, seen)| seen == interaction)
                {
                    self.emulator_errors
                        .push((label.clone(), interaction.clone()));
                }
            }
        }
    }
}

/// The OpenAPI document as the service serves it. Schemathesis reads it from a file, not from
/// the emulator: one 500 of the emulator's own to the schema download would fail the run
/// before a single check ([`to_service`] retries only that); any other answer than 200 fails
/// the test.
async fn served_document(http: &reqwest::Client, base: &str) -> String {
    let url = format!("{base}/v1/api/openapi.json");
    let answer = to_service(|| http.get(&url)).await.unwrap();
    assert!(answer.ours && answer.status == 200, "{url}: {answer:?}");
    answer.text
}

/// The statuses the document gives operation `label` (`GET /v1/api/forecast`).
fn documented_statuses(document: &Value, label: &str) -> Vec<u16> {
    let (method, path) = label.split_once(' ').unwrap();
    let responses = &document["paths"][path][method.to_lowercase()]["responses"];
    let statuses: Vec<u16> = responses
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(status, _)| status.parse().ok())
        .collect();
    assert!(!statuses.is_empty(), "{label} documents no status");
    statuses
}

/// A recorded request, to send again.
fn recorded(http: &reqwest::Client, interaction: &Value) -> reqwest::RequestBuilder {
    let request = &interaction["request"];
    let method = request["method"].as_str().unwrap();
    let uri = request["uri"].as_str().unwrap();
    let mut again = http
        .request(method.parse().unwrap(), uri)
        .body(decode(&request["body"]));
    for (name, values) in request["headers"].as_object().into_iter().flatten() {
        for value in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            again = again.header(name, value);
        }
    }
    again
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

    // THEN the run reported nothing but checks: every event is of a kind counted below, no
    // scenario errored, was interrupted or skipped in the fuzzing phases, every documented
    // operation was generated and answered, and every failed check is the emulator's own 500:
    // its rejection of a non-UTF-8 JSON body, or one sent again below
    let document = std::fs::read_to_string(&document).unwrap();
    let documented = documented_operations(&document);
    let mut tally = Tally::default();
    for report in std::fs::read_dir(&reports).unwrap().flatten() {
        for line in std::fs::read_to_string(report.path()).unwrap().lines() {
            tally.count(&serde_json::from_str(line).unwrap());
        }
    }
    eprintln!("schemathesis events: {:?}", tally.events);
    eprintln!(
        "schemathesis scenarios by phase and status: {:?}",
        tally.scenarios
    );
    assert!(tally.checks > 0, "schemathesis ran no checks:\n{stdout}");
    assert!(
        tally.error_bodies > 0,
        "no error body was checked for leaks"
    );
    assert!(tally.failures.is_empty(), "{:#?}\n{stdout}", tally.failures);
    assert_eq!(
        tally.loaded_operations,
        Some((documented.len() as u64, documented.len() as u64)),
        "schemathesis did not select every operation of the document"
    );
    let untested: Vec<&String> = documented
        .iter()
        .filter(|op| !tally.answered_operations.contains(*op))
        .collect();
    assert!(
        untested.is_empty(),
        "operations never generated and answered: {untested:?} (documented: {documented:?})\n{stdout}"
    );
    // AND a request the emulator answered with its own 500 (now and then, for no reason of the
    // request's) is sent again: the service answers it with a documented status below 500 and
    // shows no internals; such answers stay rare (at most one request in fifty)
    let document: Value = serde_json::from_str(&document).unwrap();
    for (label, interaction) in &tally.emulator_errors {
        let answer = to_service(|| recorded(&http, interaction)).await.unwrap();
        let (status, body) = (answer.status, answer.text);
        assert!(
            answer.ours,
            "{label}: the emulator answered {status}: {body}"
        );
        let documented = documented_statuses(&document, label);
        let uri = &interaction["request"]["uri"];
        assert!(
            status < 500 && documented.contains(&status),
            "{label} {uri}: {status} (documented {documented:?}): {body}"
        );
        let request = format!(
            "{uri} {}",
            String::from_utf8_lossy(&decode(&interaction["request"]["body"]))
        );
        let found = leaks(&body, &request);
        assert!(found.is_empty(), "{label} {uri}: leaked {found:?}: {body}");
    }
    // A non-zero exit status is accepted only when the failed checks explain it, and they
    // are all the emulator's (any other failure is asserted above).
    if !output.status.success() {
        assert!(
            tally.emulator_rejections + tally.emulator_errors.len() > 0,
            "schemathesis exited with {} without a recorded failure:\n{stdout}",
            output.status
        );
    }
    let (checks, error_bodies, emulator_rejections) =
        (tally.checks, tally.error_bodies, tally.emulator_rejections);

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
         of non-UTF-8 bodies, {} other emulator 500s sent again\n{summary}",
        answered.len(),
        tally.emulator_errors.len()
    );
    assert_eq!(server_errors, 0, "the handler answered a 5xx");
    assert!(
        answered.len() as u64 >= min_requests,
        "only {} requests reached the handler (want >= {min_requests})",
        answered.len()
    );
    assert!(
        tally.emulator_errors.len() * 50 <= answered.len(),
        "the emulator answered {} of {} requests with its own 500",
        tally.emulator_errors.len(),
        answered.len()
    );
}
