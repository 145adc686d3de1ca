//! Parity of `demand train` with the Python LightGBM package (4.7.0, the LightGBM that
//! lightgbm3-sys vendors), as a gate: on a slice of the generated data, with the parameters
//! and fit rows `demand train` recorded and one thread, 300 rounds give the same trees,
//! predictions on the validation rows identical bit for bit, and so the same metrics.
//! `make parity` runs the full-size comparison and times it; this test only checks.
//!
//! The Python side is `tests/parity/check.py` in `.local/parity-venv` (`make deps` installs
//! it; `PARITY_PYTHON` names another interpreter).

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use e2e::workspace_root;
use serde_json::{Value, json};
use trainer::generate::{GenerateConfig, generate};
use trainer::train::{TrainConfig, matrix, train};

const ROUNDS: u64 = 300;

fn python() -> PathBuf {
    std::env::var_os("PARITY_PYTHON").map_or_else(
        || workspace_root().join(".local/parity-venv/bin/python"),
        PathBuf::from,
    )
}

/// A CSV of feature rows, with the labels as a last column when given.
fn csv(names: &[String], x: &[f64], labels: Option<&[f32]>) -> String {
    let width = names.len();
    let mut out = names.join(",");
    if labels.is_some() {
        out.push_str(",sales");
    }
    out.push('\n');
    for (i, row) in x.chunks_exact(width).enumerate() {
        // `{}` writes the shortest text that reads back to the same number, in Rust as in numpy.
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        out.push_str(&cells.join(","));
        if let Some(labels) = labels {
            write!(out, ",{}", labels[i]).unwrap();
        }
        out.push('\n');
    }
    out
}

/// The trees of a LightGBM model text: from the first tree to `end of trees`, which holds
/// every split, threshold and leaf value (the parameters section after it lists how each side
/// was called, and differs).
fn trees(model_text: &str) -> &str {
    let start = model_text.find("Tree=0").expect("a model with trees");
    let end = model_text
        .find("end of trees")
        .expect("the end of the trees");
    &model_text[start..end]
}

#[test]
fn demand_train_matches_the_python_package_bit_for_bit() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run `make deps`",
        python.display()
    );

    // GIVEN a slice of the generated data (2 stores x 3 items, 2013-2014) trained by
    // `demand train`'s code on a time split, 300 rounds, one thread
    let work = tempfile::tempdir().unwrap();
    let data = GenerateConfig {
        stores: 2,
        items: 3,
        train_end: chrono::NaiveDate::from_ymd_opt(2014, 12, 31).unwrap(),
        test_days: 1,
        ..GenerateConfig::default()
    };
    generate(&data, &work.path().join("data")).unwrap();
    let history = trainer::data::read_sales_csv(&work.path().join("data/train.csv")).unwrap();
    let config = TrainConfig {
        version: "parity".to_owned(),
        split: "time:2014-10-01".parse().unwrap(),
        ..TrainConfig::default()
    }
    .set("num_iterations", json!(ROUNDS))
    .set("num_threads", json!(1));
    let trained = train(&history, &config, &work.path().join("rust")).unwrap();
    let manifest = &trained.manifest;
    assert_eq!(manifest.num_trees as u64, ROUNDS);

    // WHEN the Python package trains on the same fit rows with the manifest's parameters
    let (fit, validation) = config.split.apply(&history.records);
    assert!(!validation.is_empty());
    let (fit_x, fit_y) = matrix(&config.features, &fit);
    let (valid_x, valid_y) = matrix(&config.features, &validation);
    let names = &manifest.features;
    let fit_csv = work.path().join("fit.csv");
    let valid_csv = work.path().join("valid.csv");
    let params = work.path().join("params.json");
    let out = work.path().join("python.json");
    std::fs::write(&fit_csv, csv(names, &fit_x, Some(&fit_y))).unwrap();
    std::fs::write(&valid_csv, csv(names, &valid_x, None)).unwrap();
    std::fs::write(&params, serde_json::to_vec(&manifest.parameters).unwrap()).unwrap();
    let run = Command::new(&python)
        .arg(workspace_root().join("tests/parity/check.py"))
        .args(["--fit", fit_csv.to_str().unwrap()])
        .args(["--valid", valid_csv.to_str().unwrap()])
        .args(["--params", params.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let answer: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    // THEN it is the same LightGBM, and it grew the same trees: the published text is
    // LightGBM's without the trees' training statistics, so Python's text is compared the same
    // way (every split, threshold, decision type, child and leaf value, line for line)
    assert_eq!(answer["lightgbm"], "4.7.0");
    let rust_model = std::fs::read_to_string(&trained.model_path).unwrap();
    let python_model =
        forecast::gbdt::without_training_statistics(answer["model"].as_str().unwrap()).unwrap();
    let python_model = python_model.as_str();
    assert!(
        trees(&rust_model) == trees(python_model),
        "the trees differ; first differing line: {:?}",
        trees(&rust_model)
            .lines()
            .zip(trees(python_model).lines())
            .find(|(a, b)| a != b)
    );

    // AND its predictions on the validation rows are the Rust booster's, bit for bit
    let booster = lightgbm3::Booster::from_file(trained.model_path.to_str().unwrap()).unwrap();
    let rust_predictions = booster.predict(&valid_x, names.len() as i32, true).unwrap();
    let python_predictions: Vec<f64> = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(python_predictions.len(), validation.len());
    let differing = rust_predictions
        .iter()
        .zip(&python_predictions)
        .filter(|(r, p)| r.to_bits() != p.to_bits())
        .count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} predictions differ; first: {:?}",
        validation.len(),
        rust_predictions
            .iter()
            .zip(&python_predictions)
            .find(|(r, p)| r.to_bits() != p.to_bits())
    );

    // AND the metrics of the Python predictions are the ones the manifest recorded
    let actual: Vec<f64> = valid_y.iter().map(|v| f64::from(*v)).collect();
    let python_metrics = trainer::metrics::all(&actual, &python_predictions);
    // (The manifest also records the SMAPE-optimal point's metrics; these four are the mean's.)
    assert_eq!(python_metrics.len(), 4);
    for (name, python) in &python_metrics {
        let recorded = manifest.metrics.get(name).copied().unwrap_or(f64::NAN);
        assert_eq!(
            python.to_bits(),
            recorded.to_bits(),
            "{name}: Python {python}, Rust {recorded}"
        );
    }
    eprintln!(
        "parity: {ROUNDS} rounds, {} fit rows, {} validation rows, identical trees and predictions, smape {:.4}",
        fit.len(),
        validation.len(),
        manifest.metrics["smape"]
    );
}
