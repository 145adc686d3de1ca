//! Replays LightGBM's own answers, exported by the trainer's oracle suite
//! (`functions/trainer/tests/native_evaluator.rs` with `GBDT_ORACLE_EXPORT=<dir>`), through
//! the native evaluator, bit for bit, on one thread and on two, in chunks of 1, 7, 64 and
//! 1000 rows, and row by row.
//!
//! Its purpose is the other CPU: LightGBM is not built for aarch64 here, but this test is,
//! and `make test-aarch64` runs it under qemu-user against the cases exported on x86_64, so
//! the evaluator's arithmetic is proven identical on the architecture Lambda deploys (arm64).

// A failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use forecast::gbdt::Booster;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    model: String,
    rows: Vec<u64>,
    expected: Vec<u64>,
}

/// The first row whose answer differs from LightGBM's, if any.
fn first_difference(got: &[f64], expected: &[u64]) -> Option<String> {
    if got.len() != expected.len() {
        return Some(format!("{} answers for {} rows", got.len(), expected.len()));
    }
    got.iter()
        .zip(expected)
        .position(|(got, expected)| got.to_bits() != *expected)
        .map(|i| {
            format!(
                "row {i}: native {:?}, LightGBM {:?}",
                got[i],
                f64::from_bits(expected[i])
            )
        })
}

#[test]
#[ignore = "replays cases exported by the trainer's oracle suite: `make test-aarch64`"]
fn lightgbm_answers_replay_bit_for_bit() {
    let dir = std::env::var_os("GBDT_ORACLE_DIR").expect("GBDT_ORACLE_DIR names the cases");
    let mut cases = 0usize;
    let mut rows_checked = 0usize;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let case: Case = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let booster = Booster::from_model_text(&case.model).unwrap();
        let rows: Vec<f64> = case.rows.iter().map(|b| f64::from_bits(*b)).collect();
        let width = booster.num_features();
        assert_eq!(
            rows.len(),
            case.expected.len() * width,
            "{}",
            path.display()
        );
        let got = booster.predict(&rows).unwrap();
        assert_eq!(
            first_difference(&got, &case.expected),
            None,
            "{}",
            path.display()
        );
        for (threads, chunk) in [(1, usize::MAX), (2, 1), (2, 7), (2, 64), (2, 1000)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| booster.predict_chunked(&rows, chunk).unwrap());
            assert_eq!(
                first_difference(&got, &case.expected),
                None,
                "{}: {threads} threads, chunks of {chunk}",
                path.display()
            );
        }
        for (row, expected) in rows.chunks(width).zip(&case.expected).take(500) {
            let got = booster.predict_row(row).unwrap();
            assert_eq!(got.to_bits(), *expected, "{}: row {row:?}", path.display());
        }
        cases += 1;
        rows_checked += case.expected.len();
    }
    // The oracle suite exports over twenty cases; fewer means the export went wrong.
    assert!(
        cases >= 10,
        "only {cases} cases in {}",
        dir.to_string_lossy()
    );
    eprintln!(
        "{} ({}): {cases} cases, {rows_checked} rows bit-identical to LightGBM",
        std::env::consts::ARCH,
        dir.to_string_lossy()
    );
}
