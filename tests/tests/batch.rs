//! Batch forecasts end to end: a Step Functions Distributed Map executed by moto, its Lambda
//! tasks served by `cargo lambda watch` running the `batch` worker, S3 in the same moto
//! process, every output row checked against the HTTP API's prediction, bit for bit.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use batch::Job;
use e2e::{LambdaWatch, LocalS3, batch_definition, free_port, publish_model, stack_env};
use serde_json::{Value, json};
use trainer::batch::JobStatus;

const MODEL_BUCKET: &str = "demand-models-e2e";
const DATA_BUCKET: &str = "demand-batch-e2e";
/// The first invocation of each function may still compile it.
const FIRST_CALL_TIMEOUT: Duration = Duration::from_secs(600);
const JOB_TIMEOUT: Duration = Duration::from_secs(900);

/// A model over the Kaggle domain (10 stores x 50 items), trained on one generated year.
fn train_catalogue_model(dir: &Path, rounds: u32) -> trainer::train::TrainedModel {
    let data = trainer::generate::GenerateConfig {
        stores: 10,
        items: 50,
        train_start: chrono::NaiveDate::from_ymd_opt(2017, 1, 1).unwrap(),
        train_end: chrono::NaiveDate::from_ymd_opt(2017, 12, 31).unwrap(),
        test_days: 1,
        ..trainer::generate::GenerateConfig::default()
    };
    test_support::trained::train_generated(
        dir,
        "batch-e2e",
        &data,
        &forecast::features::ORIGINAL_FEATURES,
        rounds,
    )
    .unwrap()
}

/// The whole pipeline on 127.0.0.1: moto (S3 + Step Functions), the worker, the HTTP API.
struct Pipeline {
    // Dropped in this order: the functions first, then moto, then the logs.
    watch: LambdaWatch,
    _moto: LocalS3,
    work: tempfile::TempDir,
    s3: aws_sdk_s3::Client,
    sfn: aws_sdk_sfn::Client,
    http: reqwest::Client,
}

impl Pipeline {
    async fn start(rounds: u32, concurrency: usize) -> Self {
        let work = tempfile::tempdir().unwrap();
        train_catalogue_model(work.path(), rounds);
        // moto must know where the functions will listen before they can be started.
        let watch_port = free_port().unwrap();
        let moto = LocalS3::start_with_step_functions(
            work.path(),
            &format!("http://127.0.0.1:{watch_port}"),
        )
        .unwrap();
        let location = publish_model(&moto, &work.path().join("model"), MODEL_BUCKET)
            .await
            .unwrap();
        let s3 = moto.client().await;
        trainer::publish::ensure_bucket(&s3, DATA_BUCKET)
            .await
            .unwrap();
        let watch = LambdaWatch::start_on(
            watch_port,
            concurrency,
            &stack_env(&moto.endpoint, &location),
            work.path(),
        )
        .unwrap();
        let http = reqwest::Client::builder()
            .timeout(FIRST_CALL_TIMEOUT)
            .build()
            .unwrap();
        let pipeline = Self {
            sfn: moto.sfn_client(),
            watch,
            _moto: moto,
            work,
            s3,
            http,
        };
        pipeline.warm_up().await;
        pipeline
    }

    /// Starts the worker (planning a one-row job through the Invoke API) and the HTTP API,
    /// so no state machine task waits for a function to compile.
    async fn warm_up(&self) {
        let plan = json!({"action": "plan", "job": {
            "output": format!("s3://{DATA_BUCKET}/batch/warm-up/"),
            "catalogue": {"start": "2018-01-01", "days": 1, "stores": [1], "items": [1]}}});
        let answer = self
            .http
            .post(self.watch.invoke_url("batch"))
            .body(plan.to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success() && body["partitions"] == 1,
            "{status} {body}\n{}",
            self.watch.log_tail()
        );
        assert_eq!(
            self.api_predictions(&[("2018-01-01".into(), 1, 1)])
                .await
                .len(),
            1
        );
    }

    /// A new state machine with the batch definition and `max_concurrency`.
    async fn state_machine(&self, name: &str, max_concurrency: u32) -> String {
        self.sfn
            .create_state_machine()
            .name(name)
            .definition(batch_definition("batch", max_concurrency).unwrap())
            .role_arn("arn:aws:iam::123456789012:role/batch-e2e")
            .send()
            .await
            .unwrap()
            .state_machine_arn()
            .to_owned()
    }

    async fn run(&self, state_machine: &str, job: &Value) -> JobStatus {
        let job: Job = serde_json::from_value(job.clone()).unwrap();
        let arn = trainer::batch::submit(&self.sfn, state_machine, None, &job)
            .await
            .unwrap();
        trainer::batch::wait(&self.sfn, &arn, Duration::from_millis(250), JOB_TIMEOUT)
            .await
            .unwrap()
    }

    async fn put(&self, key: &str, body: &str) {
        self.s3
            .put_object()
            .bucket(DATA_BUCKET)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }

    async fn get(&self, key: &str) -> Option<String> {
        let object = self
            .s3
            .get_object()
            .bucket(DATA_BUCKET)
            .key(key)
            .send()
            .await
            .ok()?;
        let bytes = object.body.collect().await.unwrap().into_bytes();
        Some(String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// The HTTP API's predictions for `(date, store, item)` rows, 10,000 a request.
    async fn api_predictions(&self, rows: &[(String, u32, u32)]) -> Vec<f64> {
        let url = self
            .watch
            .function_url("orchestrator", "/v1/api/predict/batch");
        let mut sales = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(10_000) {
            let body = json!({"instances": chunk
                .iter()
                .map(|(date, store, item)| json!({"date": date, "store": store, "item": item}))
                .collect::<Vec<_>>()});
            let (status, text) = e2e::post_to_service(&self.http, &url, &body).await.unwrap();
            assert_eq!(status, 200, "{text}");
            let answer: Value = serde_json::from_str(&text).unwrap();
            let predictions = answer["predictions"]
                .as_array()
                .unwrap_or_else(|| panic!("{answer}"));
            sales.extend(predictions.iter().map(|p| p["sales"].as_f64().unwrap()));
        }
        sales
    }

    /// Checks that every row of the output CSV `text` carries the API's prediction, bit for
    /// bit; returns `(id or "", date, store, item)` of each row.
    async fn assert_api_equal(&self, text: &str) -> Vec<(String, String, u32, u32)> {
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let with_id = header == "id,date,store,item,sales";
        assert!(with_id || header == "date,store,item,sales", "{header}");
        let mut rows = Vec::new();
        let mut sales = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            let f = if with_id { &fields[1..] } else { &fields[..] };
            assert_eq!(f.len(), 4, "{line}");
            let id = if with_id {
                fields[0].to_owned()
            } else {
                String::new()
            };
            rows.push((
                id,
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            ));
            sales.push(f[3].parse::<f64>().unwrap());
        }
        let requests: Vec<(String, u32, u32)> = rows
            .iter()
            .map(|(_, d, s, i)| (d.clone(), *s, *i))
            .collect();
        let expected = self.api_predictions(&requests).await;
        assert_eq!(expected.len(), sales.len());
        for (n, (got, want)) in sales.iter().zip(&expected).enumerate() {
            assert_eq!(got.to_bits(), want.to_bits(), "row {n}: {:?}", rows[n]);
        }
        rows
    }
}

fn error_lines(text: &str) -> Vec<u64> {
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogue_and_prefix_jobs_run_on_a_distributed_map() {
    // GIVEN the pipeline with a model of 10 stores x 50 items and a state machine that runs
    // two partitions at a time
    let started = Instant::now();
    let pipeline = Pipeline::start(40, 2).await;
    let machine = pipeline.state_machine("batch-e2e-catalogue", 2).await;
    eprintln!("pipeline up in {:?}", started.elapsed());

    // WHEN the whole catalogue is forecast for 90 days in partitions of 4,500 rows
    let started = Instant::now();
    let status = pipeline
        .run(
            &machine,
            &json!({"output": format!("s3://{DATA_BUCKET}/batch/catalogue/"),
                    "catalogue": {"start": "2018-01-01", "days": 90, "rows_per_partition": 4500}}),
        )
        .await;
    eprintln!("catalogue job in {:?}", started.elapsed());

    // THEN it succeeds with 45,000 rows in 10 partitions, none failed
    assert_eq!(
        status.status,
        "SUCCEEDED",
        "{status:?}\n{}",
        pipeline.watch.log_tail()
    );
    let summary = status.summary.clone().unwrap();
    assert_eq!(summary["partitions"], 10, "{summary}");
    assert_eq!(summary["rows_scored"], 45_000, "{summary}");
    assert_eq!(summary["failed_partitions"], 0, "{summary}");
    let counts = status.partitions.unwrap();
    assert_eq!((counts.total, counts.succeeded, counts.failed), (10, 10, 0));
    let written: Value =
        serde_json::from_str(&pipeline.get("batch/catalogue/_summary.json").await.unwrap())
            .unwrap();
    assert_eq!(written, summary);
    // AND every store x item x day is there once, each the HTTP API's prediction bit for bit
    let mut all = Vec::new();
    for n in 0..10 {
        let key = format!("batch/catalogue/catalogue-{n:06}.csv");
        let text = pipeline.get(&key).await.unwrap();
        all.extend(pipeline.assert_api_equal(&text).await);
    }
    assert_eq!(all.len(), 45_000);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 45_000);
    assert_eq!(all[0], (String::new(), "2018-01-01".into(), 1, 1));
    assert!(
        all.iter()
            .all(|(_, d, _, _)| d.as_str() >= "2018-01-01" && d.as_str() <= "2018-03-31")
    );
    eprintln!("catalogue checked in {:?}", started.elapsed());

    // GIVEN a prefix of CSV partitions with bad rows, one object that is not the schema at
    // all, and one that is not a CSV
    let mut day1 = String::from("id,date,store,item\n");
    let mut bad_day1 = Vec::new();
    for n in 0..300u32 {
        let line = n + 2;
        match n {
            17 => day1.push_str(&format!("{n},2018-02-30,1,1\n")),
            99 => day1.push_str(&format!("{n},2018-01-05,1\n")),
            250 => day1.push_str(&format!("{n},2018-01-05,11,1\n")),
            _ => {
                day1.push_str(&format!(
                    "{n},2018-01-{:02},{},{}\n",
                    n % 28 + 1,
                    n % 10 + 1,
                    n % 50 + 1
                ));
                continue;
            }
        }
        bad_day1.push(u64::from(line));
    }
    pipeline.put("batch/in/day-1.csv", &day1).await;
    let day2 = "date,store,item\n2018-03-01,3,7\n2018-03-02,x,7\n\n2018-03-03T08:00:00,4,51\n2018-03-04,10,50\n";
    pipeline.put("batch/in/sub/day-2.csv", day2).await;
    pipeline
        .put("batch/in/broken.csv", "this is not a forecast file\n")
        .await;
    pipeline.put("batch/in/notes.txt", "ignored").await;

    // WHEN the prefix is scored
    let prefix_job = json!({"output": format!("s3://{DATA_BUCKET}/batch/out/"),
                            "input": format!("s3://{DATA_BUCKET}/batch/in/")});
    let machine = pipeline.state_machine("batch-e2e-prefix", 2).await;
    let status = pipeline.run(&machine, &prefix_job).await;

    // THEN the run fails, naming the one partition that could not be read, and only it
    assert_eq!(status.status, "FAILED", "{status:?}");
    assert_eq!(status.error.as_deref(), Some("PartitionsFailed"));
    let counts = status.partitions.unwrap();
    assert_eq!((counts.total, counts.succeeded, counts.failed), (3, 2, 1));
    let summary: Value =
        serde_json::from_str(&pipeline.get("batch/out/_summary.json").await.unwrap()).unwrap();
    assert_eq!(
        summary["failed_partition_ids"],
        json!(["broken"]),
        "{summary}"
    );
    assert_eq!(summary["rows_scored"], 297 + 2, "{summary}");
    assert_eq!(summary["bad_rows"], 3 + 2, "{summary}");
    // AND the good rows of the other partitions are scored, ids kept, equal to the API's
    let first_day1 = pipeline.get("batch/out/day-1.csv").await.unwrap();
    let rows = pipeline.assert_api_equal(&first_day1).await;
    assert_eq!(rows.len(), 297);
    assert_eq!(rows[0].0, "0");
    let first_day2 = pipeline.get("batch/out/sub/day-2.csv").await.unwrap();
    let rows = pipeline.assert_api_equal(&first_day2).await;
    let dates: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(dates, ["2018-03-01", "2018-03-04"]);
    // AND every bad row is in its partition's error file with its line number
    let errors = pipeline.get("batch/out/_errors/day-1.csv").await.unwrap();
    assert_eq!(error_lines(&errors), bad_day1, "{errors}");
    let errors = pipeline
        .get("batch/out/_errors/sub/day-2.csv")
        .await
        .unwrap();
    assert_eq!(error_lines(&errors), [3, 5], "{errors}");
    assert!(
        errors.contains("outside the model's training data"),
        "{errors}"
    );

    // WHEN the unreadable object is removed and the job run again
    pipeline
        .s3
        .delete_object()
        .bucket(DATA_BUCKET)
        .key("batch/in/broken.csv")
        .send()
        .await
        .unwrap();
    let machine = pipeline.state_machine("batch-e2e-rerun", 2).await;
    let status = pipeline.run(&machine, &prefix_job).await;
    // THEN it succeeds and the outputs are overwritten with the same content
    assert_eq!(status.status, "SUCCEEDED", "{status:?}");
    assert_eq!(status.summary.unwrap()["failed_partitions"], 0);
    assert_eq!(
        pipeline.get("batch/out/day-1.csv").await.unwrap(),
        first_day1
    );
    assert_eq!(
        pipeline.get("batch/out/sub/day-2.csv").await.unwrap(),
        first_day2
    );
}

/// Rows per second end to end (StartExecution to SUCCEEDED) at 1, 2 and 4 concurrent
/// workers, and the worker's own cost per row. A measurement, not an assertion:
/// `cargo test -p e2e --test batch -- --ignored --nocapture` (BATCH_BENCH_ROUNDS, default 500).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run it explicitly"]
async fn throughput_at_1_2_and_4_workers() {
    let rounds = e2e::env_number("BATCH_BENCH_ROUNDS", 500u32);
    let pipeline = Pipeline::start(rounds, 4).await;
    // 10 stores x 50 items x 365 days in 16 partitions (32 series each, the last 20).
    let job = |n: u32| {
        json!({"output": format!("s3://{DATA_BUCKET}/batch/bench-{n}/"),
               "catalogue": {"start": "2018-01-01", "days": 365, "rows_per_partition": 32 * 365}})
    };
    let mut figures = HashMap::new();
    for workers in [1u32, 2, 4] {
        let machine = pipeline
            .state_machine(&format!("batch-bench-{workers}"), workers)
            .await;
        let started = Instant::now();
        let status = pipeline.run(&machine, &job(workers)).await;
        let elapsed = started.elapsed();
        assert_eq!(status.status, "SUCCEEDED", "{status:?}");
        let rows = status.summary.unwrap()["rows_scored"].as_u64().unwrap();
        let rate = rows as f64 / elapsed.as_secs_f64();
        println!(
            "batch: {workers} worker(s): {rows} rows in {:.2} s = {rate:.0} rows/s end to end",
            elapsed.as_secs_f64()
        );
        figures.insert(workers, rate);
    }
    // The worker's in-process cost per row (features + evaluator + CSV), without S3 or
    // Step Functions: one 11,680-row partition scored 5 times.
    let model = model::load_model(
        &model::LocalFileStore,
        &forecast::ModelLocation {
            bucket: "/".into(),
            prefix: format!(
                "{}/",
                pipeline
                    .work
                    .path()
                    .join("model")
                    .to_string_lossy()
                    .trim_start_matches('/')
            ),
        },
    )
    .await
    .unwrap();
    let scorer = batch::score::Scorer::new(&model, None).unwrap();
    let pairs: Vec<[u32; 2]> = (1..=32).map(|i| [1, i]).collect();
    let start = chrono::NaiveDate::from_ymd_opt(2018, 1, 1).unwrap();
    let started = Instant::now();
    let mut rows = 0;
    for _ in 0..5 {
        rows += scorer
            .score_catalogue(start, 365, &pairs)
            .unwrap()
            .rows_scored;
    }
    let per_row = started.elapsed().as_secs_f64() / rows as f64;
    println!(
        "batch: worker in process: {:.2} us a row ({rounds} trees), {:.0} rows/s",
        per_row * 1e6,
        1.0 / per_row
    );
    assert_eq!(figures.len(), 3);
}
