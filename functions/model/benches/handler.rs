//! The handler path (payload text -> decode -> align -> predict -> serialise, as the Lambda
//! runtime drives it) and the native evaluator on one and on every thread, against the raw
//! `lightgbm3` calls for the same rows, on a 3000-round booster with the original notebook's
//! parameters; and parsing the model text, natively and by LightGBM (the cold start's share).
//!
//! The `quantiles_*` groups measure the same handler path with P10/P50/P90 asked for.
//!
//! `cargo bench -p model` trains that booster once on synthetic store/item/date data and caches
//! it in the target directory; `MODEL_BENCH_MODEL_DIR=<dir with model.txt>` uses another
//! (with its own `manifest.json` when the directory has one, as `demand train` writes it).

// A failed setup step is a failed benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use forecast::wire::{ModelIdentity, PredictionsResponse};
use model::decode::{self, ModelInvocation};
use model::{LoadedModel, LocalFileStore, handle_json, load_model};
use serde_json::value::RawValue;
use test_support::manifest::{ManifestSpec, write_model_dir};
use test_support::{FEATURES, booster, payload, synthetic};

const ROUNDS: u32 = 3000;
const MAX_ROWS: usize = 50_000;

/// A directory holding `model.txt` and `manifest.json` of a 3000-round booster.
fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODEL_BENCH_MODEL_DIR") {
        let dir = PathBuf::from(dir);
        // A model `demand train` wrote is used as it is, with its own manifest.
        if dir.join("manifest.json").exists() {
            return dir;
        }
        let text = std::fs::read_to_string(dir.join("model.txt")).unwrap();
        let manifest = ManifestSpec::sales("bench", "external", ROUNDS).manifest_for(&text);
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-bench-external");
        write_model_dir(&work, &text, &manifest);
        return work;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("model-bench-{ROUNDS}"));
    if !dir.join("manifest.json").exists() {
        eprintln!("training a {ROUNDS}-round booster for the benchmark (once)...");
        // 10 stores x 50 items x 2 years, like the Kaggle data over a shorter span.
        let text = booster::sales(ROUNDS, 10, 50, 730);
        let manifest = ManifestSpec::sales("bench", "synthetic", ROUNDS).manifest_for(&text);
        write_model_dir(&dir, &text, &manifest);
    }
    dir
}

/// What the Lambda runtime does around the handler: deserialize the event body (kept as raw
/// text) and serialise the answer.
fn handler_path(model: &LoadedModel, body: &[u8]) -> Vec<u8> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let payload: Box<RawValue> = serde_path_to_error::deserialize(deserializer).unwrap();
    let answer = handle_json(model, payload.get(), MAX_ROWS).unwrap();
    serde_json::to_vec(&answer).unwrap()
}

/// The handler path without the booster call: runtime deserialisation, decoding, and
/// serialising an answer of `predictions`. Isolates what the host adds to LightGBM's cost.
fn overhead_path(body: &[u8], predictions: &[f64]) -> Vec<u8> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let payload: Box<RawValue> = serde_path_to_error::deserialize(deserializer).unwrap();
    let ModelInvocation::Predict(input) = decode::decode_str(payload.get(), MAX_ROWS).unwrap()
    else {
        panic!("expected rows");
    };
    assert_eq!(input.rows, predictions.len());
    let answer = PredictionsResponse {
        predictions: predictions.to_vec(),
        model: ModelIdentity {
            name: "bench".to_owned(),
            version: "synthetic".to_owned(),
        },
        quantiles: None,
    };
    serde_json::to_vec(&answer).unwrap()
}

fn benches(c: &mut Criterion) {
    let dir = model_dir();
    let uri = format!("file://{}/", dir.display());
    let (_, location) = model::config::parse_model_uri(&uri).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let model = runtime
        .block_on(load_model(&LocalFileStore, &location))
        .unwrap();
    assert_eq!(model.booster.num_trees(), model.manifest.num_trees as usize);

    let text = std::fs::read_to_string(dir.join("model.txt")).unwrap();
    let raw = lightgbm3::Booster::from_string(&text).unwrap();
    let mut raw_fast = lightgbm3::Booster::from_string(&text).unwrap();
    raw_fast.single_row_fast_init::<f64>(None).unwrap();
    let width = FEATURES.len() as i32;
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let all_threads = rayon::ThreadPoolBuilder::new().build().unwrap();

    let mut parse = c.benchmark_group("parse");
    parse.sample_size(10);
    parse.bench_function("native", |b| {
        b.iter(|| forecast::gbdt::Booster::from_model_text(black_box(&text)).unwrap());
    });
    parse.bench_function("lightgbm", |b| {
        b.iter(|| lightgbm3::Booster::from_string(black_box(&text)).unwrap());
    });
    parse.finish();

    // The quantile path: the same handler and rows with `params.quantiles` (P10/P50/P90),
    // against a manifest carrying a negative binomial distribution.
    let mut with_distribution = runtime
        .block_on(load_model(&LocalFileStore, &location))
        .unwrap();
    // A trained model's own distribution, else a negative binomial like the ones training fits.
    with_distribution.manifest.distribution = with_distribution.manifest.distribution.take().or(
        Some(forecast::distribution::DistributionInfo {
            predictive: forecast::distribution::Predictive::negative_binomial(0.02),
            estimated_on: "bench".to_owned(),
            rows: 0,
            ties: "half".to_owned(),
            calibration: Vec::new(),
            alternatives: Vec::new(),
        }),
    );
    for rows in [1usize, 100] {
        let values = synthetic::query_rows(rows);
        let plain = payload::dataframe_split(&values);
        let mut asked: serde_json::Value = serde_json::from_str(&plain).unwrap();
        asked["params"] = serde_json::json!({"quantiles": [0.1, 0.5, 0.9]});
        let asked = asked.to_string().into_bytes();
        let plain = plain.into_bytes();
        let answered: serde_json::Value =
            serde_json::from_slice(&handler_path(&with_distribution, &asked)).unwrap();
        assert_eq!(answered["quantiles"]["p90"].as_array().unwrap().len(), rows);
        let mut group = c.benchmark_group(format!("quantiles_{rows}"));
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(BenchmarkId::new("plain", rows), |b| {
            b.iter(|| handler_path(&with_distribution, black_box(&plain)));
        });
        group.bench_function(BenchmarkId::new("p10_p50_p90", rows), |b| {
            b.iter(|| handler_path(&with_distribution, black_box(&asked)));
        });
        // The distribution maths alone, on the booster's predictions for the same rows.
        let means = with_distribution.booster.predict(&values).unwrap();
        let predictive = with_distribution
            .manifest
            .distribution
            .as_ref()
            .map(|d| d.predictive)
            .unwrap();
        group.bench_function(BenchmarkId::new("quantiles_only", rows), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                for mean in black_box(&means) {
                    predictive
                        .at(*mean)
                        .quantiles_into(&[0.1, 0.5, 0.9], &mut out);
                }
            });
        });
        group.finish();
    }

    for rows in [1usize, 100, 10_000] {
        let values = synthetic::query_rows(rows);
        let body = payload::dataframe_split(&values).into_bytes();
        // The handler must answer exactly what the raw call answers.
        let served: serde_json::Value =
            serde_json::from_slice(&handler_path(&model, &body)).unwrap();
        let direct = raw.predict(&values, width, true).unwrap();
        let served: Vec<f64> = served["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(served, direct);
        let native = model.booster.predict(&values).unwrap();
        assert_eq!(
            native.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            direct.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );

        let mut group = c.benchmark_group(format!("rows_{rows}"));
        group.throughput(Throughput::Elements(rows as u64));
        if rows >= 10_000 {
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .measurement_time(Duration::from_secs(20));
        }
        group.bench_function(BenchmarkId::new("handler", rows), |b| {
            b.iter(|| handler_path(&model, black_box(&body)));
        });
        group.bench_function(BenchmarkId::new("handler_overhead", rows), |b| {
            b.iter(|| overhead_path(black_box(&body), &direct));
        });
        if rows == 1 {
            // A single row is evaluated on the calling thread; a pool would only add its hop.
            group.bench_function(BenchmarkId::new("native_1_thread", rows), |b| {
                b.iter(|| model.booster.predict(black_box(&values)).unwrap());
            });
        } else {
            group.bench_function(BenchmarkId::new("native_1_thread", rows), |b| {
                b.iter(|| {
                    one_thread.install(|| model.booster.predict(black_box(&values)).unwrap())
                });
            });
            group.bench_function(BenchmarkId::new("native_all_threads", rows), |b| {
                b.iter(|| {
                    all_threads.install(|| model.booster.predict(black_box(&values)).unwrap())
                });
            });
        }
        group.bench_function(BenchmarkId::new("raw_predict", rows), |b| {
            b.iter(|| raw.predict(black_box(&values), width, true).unwrap());
        });
        if rows == 1 {
            group.bench_function(BenchmarkId::new("raw_single_row_fast", rows), |b| {
                b.iter(|| {
                    raw_fast
                        .predict_single_row_fast(black_box(&values))
                        .unwrap()
                });
            });
        }
        group.finish();
    }
}

criterion_group!(handler, benches);
criterion_main!(handler);
