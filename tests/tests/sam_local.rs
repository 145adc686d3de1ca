//! The stack under `sam local`, in Docker, end to end: the model published to a real S3 server
//! on the Docker bridge, `sam local start-lambda` serving the model function to the
//! orchestrator's container, `sam local start-api` in front of the orchestrator, and
//! `sam local invoke` of the model function with the committed ping event. Every answer is
//! compared with the `cargo lambda watch` stack's for the same model and request, bit for bit.
//!
//! Needs Docker (`make deps` installs docker.io, and qemu-user-static to run arm64 on another
//! CPU); starts dockerd when none answers and stops it afterwards. `SAM_LOCAL_ARCH` (arm64 by
//! default) picks the functions' architecture.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::sam::{self, DockerEngine, SamConfig, SamLocal};
use e2e::{LambdaWatch, LocalS3, free_port, free_port_on, publish_model, stack_env};
use serde_json::{Value, json};

const BUCKET: &str = "demand-models-sam";
/// The first request cold-starts both functions (under qemu on another CPU).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const WARM_REQUESTS: usize = 20;

async fn send(request: reqwest::RequestBuilder) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

fn post(http: &reqwest::Client, url: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
}

/// SAM says "all containers are ready" once Docker runs them, before the runtime interface
/// emulator inside listens (a moment longer under qemu); an invoke in between gets SAM's own
/// 502 without reaching the function. The first answer that is not that one, and its time.
async fn first_answer(http: &reqwest::Client, url: &str) -> (u16, Value, Duration) {
    let not_reached = json!({"message": "Internal server error"});
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body, time) = send(http.get(url)).await;
        if status != 502 || body != not_reached || Instant::now() > deadline {
            return (status, body, time);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn sam_local_start_api_answers_as_the_cargo_lambda_stack_does() {
    let suite_started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let logs = work.path();
    let arch = sam::architecture();

    // GIVEN a Docker engine (started here if none runs), the base image and `sam build`
    let engine = DockerEngine::ensure(logs).unwrap();
    let sam_containers_before = sam::lambda_containers().unwrap();
    let prepared = sam::prepare(&arch, logs).unwrap();

    // AND a small model published to a real S3 server on the Docker bridge, where both the
    // containers (as host.docker.internal) and this host reach it
    let model = e2e::train_small_model(work.path(), "e2e").unwrap();
    let s3 = LocalS3::start_at(engine.bridge, logs, &[]).unwrap();
    let location = publish_model(&s3, &work.path().join("model"), BUCKET)
        .await
        .unwrap();
    let s3_port: u16 = s3.endpoint.rsplit(':').next().unwrap().parse().unwrap();

    // AND the cargo lambda watch stack on the same model, for reference answers
    let watch = LambdaWatch::start(&stack_env(&s3.endpoint, &location), logs).unwrap();

    // AND sam local: start-lambda for the model on the bridge (the orchestrator's container
    // invokes it there), start-api for the orchestrator on loopback
    let lambda_addr = SocketAddr::from((engine.bridge, free_port_on(engine.bridge).unwrap()));
    let env_vars = work.path().join("sam-env.json");
    std::fs::write(
        &env_vars,
        sam::env_vars(s3_port, &location.uri(), lambda_addr.port()).to_string(),
    )
    .unwrap();
    let config = SamConfig {
        arch: arch.clone(),
        env_vars,
        sts_endpoint: s3.endpoint.clone(),
    };
    let started = Instant::now();
    let lambda = SamLocal::start_lambda(&config, lambda_addr, &["ModelFunction"], logs).unwrap();
    let api_addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let api = SamLocal::start_api(&config, api_addr, logs).unwrap();
    let sam_start = started.elapsed();
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let sam_url = |path: &str| format!("{}{path}", api.base_url);
    let watch_url = |path: &str| watch.function_url("orchestrator", path);
    let context = || format!("{}\n{}", api.log_tail(), lambda.log_tail());

    // WHEN the first request reaches the API (both functions cold)
    let (status, health, cold) = first_answer(&http, &sam_url("/v1/api/health")).await;

    // THEN health reports the published model
    assert_eq!(status, 200, "{health}\n{}", context());
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["model"], json!({"name": "demand", "version": "e2e"}));
    assert_eq!(health["num_trees"], json!(model.manifest.num_trees));

    // AND a prediction is bit for bit the cargo lambda watch stack's for the same row
    let request = json!({"date": "2018-01-01", "store": 2, "item": 3});
    let (status, body, first_predict) =
        send(post(&http, &sam_url("/v1/api/predict"), &request)).await;
    assert_eq!(status, 200, "{body}\n{}", context());
    let (watch_status, reference, _) =
        send(post(&http, &watch_url("/v1/api/predict"), &request)).await;
    assert_eq!(watch_status, 200, "{reference}\n{}", watch.log_tail());
    let sales = body["sales"].as_f64().unwrap();
    let expected = reference["sales"].as_f64().unwrap();
    assert_eq!(
        sales.to_bits(),
        expected.to_bits(),
        "sam local says {sales}, cargo lambda watch says {expected}"
    );

    // AND warm requests answer the same
    let mut warm = Vec::new();
    for _ in 0..WARM_REQUESTS {
        let (status, again, time) = send(post(&http, &sam_url("/v1/api/predict"), &request)).await;
        assert_eq!((status, &again), (200, &body));
        warm.push(time);
    }

    // AND a batch comes back in request order, each row as the other stack answers it
    let batch = json!({"instances": [
        {"date": "2018-01-01", "store": 1, "item": 1},
        {"date": "2018-06-15", "store": 3, "item": 4},
        {"date": "2017-12-31T23:00:00Z", "store": 2, "item": 2},
    ]});
    let (status, body, _) = send(post(&http, &sam_url("/v1/api/predict/batch"), &batch)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"].as_array().unwrap().len(), 3);
    let (_, reference, _) = send(post(&http, &watch_url("/v1/api/predict/batch"), &batch)).await;
    assert_eq!(body, reference);

    // AND a forecast is the same daily series
    let forecast = "/v1/api/forecast?store=3&item=2&start=2018-02-25&days=7";
    let (status, body, _) = send(http.get(sam_url(forecast))).await;
    assert_eq!(status, 200, "{body}");
    let days = body["forecast"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days[6]["date"], "2018-03-03");
    let (_, reference, _) = send(http.get(watch_url(forecast))).await;
    assert_eq!(body, reference);

    // AND invalid fields are a 422 naming each field
    let invalid = json!({"date": "2018-02-30", "store": 0, "item": 1});
    let (status, body, _) = send(post(&http, &sam_url("/v1/api/predict"), &invalid)).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["loc"][1])
        .collect();
    assert_eq!(fields, [&json!("date"), &json!("store")]);
    let (_, reference, _) = send(post(&http, &watch_url("/v1/api/predict"), &invalid)).await;
    assert_eq!(body, reference);

    // AND an unknown route is the API's own JSON 404, through the catch-all route
    let (status, body, _) = send(http.get(sam_url("/v1/api/nope"))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    e2e::assert_no_leak(&body.to_string());

    // AND `sam local invoke` of the model function with the committed ping event reports the
    // model it loaded from the local S3 server
    let started = Instant::now();
    eprintln!("sam local invoke at {:?}", std::time::SystemTime::now());
    let ping = e2e::workspace_root().join("data/events/model-ping.json");
    let output = config.invoke("ModelFunction", &ping).unwrap();
    let invoke_time = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| format!("no JSON answer in {stdout}"))
        .unwrap();
    assert_eq!(answer["status"], "ready", "{answer}");
    assert_eq!(answer["model"], json!({"name": "demand", "version": "e2e"}));
    assert_eq!(answer["source_uri"], json!(location.uri()));
    assert_eq!(answer["num_trees"], json!(model.manifest.num_trees));

    eprintln!(
        "sam local ({arch}): base image {:?}, sam build {:?}, start-lambda + start-api {sam_start:?}, \
         first request (cold) {cold:?}, first predict {first_predict:?}, warm predict median {:?} \
         (min {:?}, max {:?}, {WARM_REQUESTS} requests), sam local invoke {invoke_time:?}, \
         dockerd started here: {}, suite {:?}",
        prepared.base_image,
        prepared.sam_build,
        median(warm.clone()),
        warm.iter().min().unwrap(),
        warm.iter().max().unwrap(),
        engine.started_here(),
        suite_started.elapsed()
    );
    eprintln!(
        "start-lambda pid {}, start-api pid {}",
        lambda.pid(),
        api.pid()
    );
    // AND a stray container labelled as SAM's (what SAM once left behind after it exited)
    let stray = sam::create_stray_lambda_container(&arch).unwrap();
    let sam_logs = [api.log.clone(), lambda.log.clone()];
    eprintln!("stopping SAM at {:?}", std::time::SystemTime::now());
    drop(api);
    drop(lambda);

    // THEN SAM removes its warm containers when it stops (within 30 s of its exit); what it
    // leaves is reported, and the teardown removes it with the stray one, so nothing leaks
    let mut expected = sam_containers_before.clone();
    expected.push(stray.clone());
    expected.sort();
    let after_sam = sam::wait_for_lambda_containers(&expected, Duration::from_secs(30)).unwrap();
    if after_sam != expected {
        eprintln!(
            "SAM left Lambda containers: {after_sam:?} (expected {expected:?}); its logs:\n{}",
            sam_logs
                .iter()
                .map(|log| sam::tail_of(log))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let removed = sam::remove_lambda_containers_except(&sam_containers_before).unwrap();
    assert!(removed.contains(&stray), "{removed:?} misses {stray}");
    assert_eq!(sam::lambda_containers().unwrap(), sam_containers_before);
}
