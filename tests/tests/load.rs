//! Load through the local stack: 10,000 predict requests from 16 concurrent clients, on
//! 127.0.0.1 only. Zero errors; latency percentiles reported; the resident memory of both
//! function processes flat (under 5% growth between the end of the first thousand requests
//! and the end of the last thousand). `LOAD_REQUESTS` / `LOAD_CLIENTS` change the size.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::{
    LambdaWatch, LocalS3, descendant_rss_kib, env_number, publish_model, stack_env,
    train_small_model,
};
use tokio::sync::Mutex;

/// RSS in KiB of each function process run by the emulator with pid `watch_pid`, by pid.
fn function_rss(watch_pid: u32) -> BTreeMap<(String, u32), u64> {
    ["model", "orchestrator"]
        .into_iter()
        .flat_map(|name| {
            descendant_rss_kib(watch_pid, name)
                .into_iter()
                .map(move |(pid, kib)| ((name.to_owned(), pid), kib))
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_requests_at_16_clients_without_errors_or_memory_growth() {
    let total: usize = env_number("LOAD_REQUESTS", 10_000);
    let clients: usize = env_number("LOAD_CLIENTS", 16);
    let window = (total / 10).max(1);

    // GIVEN the local stack, warm
    let work = tempfile::tempdir().unwrap();
    train_small_model(work.path(), "load").unwrap();
    let s3 = LocalS3::start(work.path()).unwrap();
    let location = publish_model(&s3, &work.path().join("model"), "load-models")
        .await
        .unwrap();
    let watch = LambdaWatch::start(&stack_env(&s3.endpoint, &location), work.path()).unwrap();
    let url = watch.function_url("orchestrator", "/v1/api/predict");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let body = |i: usize| {
        format!(
            r#"{{"date": "2018-{:02}-{:02}", "store": {}, "item": {}}}"#,
            i % 12 + 1,
            i % 28 + 1,
            i % 3 + 1,
            i % 4 + 1
        )
    };
    let warm = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body(0))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status().as_u16(), 200, "{}", watch.log_tail());

    // WHEN `clients` clients send `total` requests between them
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(Mutex::new(Vec::new()));
    // RSS of the function processes at the end of every tenth of the run.
    let rss_after_first = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, next, done) = (
            http.clone(),
            url.clone(),
            Arc::clone(&next),
            Arc::clone(&done),
        );
        let (latencies, errors, rss_after_first) = (
            Arc::clone(&latencies),
            Arc::clone(&errors),
            Arc::clone(&rss_after_first),
        );
        let watch_pid = watch.pid();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total {
                    return;
                }
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body(i))
                    .send()
                    .await;
                let elapsed = sent.elapsed();
                match answer {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                    }
                    Ok(response) => errors.lock().await.push(format!(
                        "{}: {:?}",
                        response.status(),
                        response.text().await
                    )),
                    Err(err) => errors.lock().await.push(err.to_string()),
                }
                latencies.lock().await.push(elapsed);
                let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                if finished % window == 0 {
                    let snapshot = function_rss(watch_pid);
                    rss_after_first.lock().await.push((finished, snapshot));
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let wall = started.elapsed();
    let rss_after_last = function_rss(watch.pid());

    // THEN no request failed
    let errors = errors.lock().await;
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    assert_eq!(latencies.len(), total);
    eprintln!(
        "load: {total} requests, {clients} clients, {wall:.2?}, {:.0} req/s; latency p50 {:.2?} p90 {:.2?} p99 {:.2?} max {:.2?}",
        total as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );

    // AND every function process that served from the first thousand to the last kept its
    // resident memory within 5%
    let mut series = rss_after_first.lock().await.clone();
    series.sort_by_key(|(finished, _)| *finished);
    for (finished, snapshot) in &series {
        eprintln!("rss after {finished} requests: {snapshot:?}");
    }
    let first = series.first().map(|(_, s)| s.clone()).unwrap_or_default();
    assert!(
        first.keys().any(|(name, _)| name == "model")
            && first.keys().any(|(name, _)| name == "orchestrator"),
        "function processes not found: {first:?}"
    );
    for ((name, pid), before) in &first {
        let Some(after) = rss_after_last.get(&(name.clone(), *pid)) else {
            panic!("{name} (pid {pid}) was gone by the end of the run");
        };
        let growth = (*after as f64 - *before as f64) / *before as f64;
        eprintln!(
            "rss {name} pid {pid}: {before} KiB after {window} requests, {after} KiB after {total} ({:+.2}%)",
            growth * 100.0
        );
        assert!(growth < 0.05, "{name} grew {:.1}%", growth * 100.0);
    }
}
