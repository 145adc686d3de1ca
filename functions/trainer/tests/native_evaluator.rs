//! The native evaluator (`forecast::gbdt`) against LightGBM itself, bit for bit.
//!
//! LightGBM, through `lightgbm3`, is the oracle: every model here is trained by LightGBM in
//! the test (the trainer's own boosting loop, so dataset parameters such as
//! `categorical_feature` apply), then the same rows are predicted by LightGBM and by
//! `forecast::gbdt::Booster`, and the two answers must have the same bits.

// A failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use forecast::gbdt::{Booster, BoosterReader, without_training_statistics};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use trainer::boosting::{TrainingData, train_model_text};

/// A deterministic generator, so every run trains the same models.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
}

/// `store, item, month, day, year` like the service's original features.
fn names() -> Vec<String> {
    ["store", "item", "month", "day", "year"]
        .map(str::to_owned)
        .to_vec()
}

/// The full store x item x month x weekday x year grid of the service's domain.
fn grid() -> Vec<f64> {
    let mut rows = Vec::with_capacity(210_000 * 5);
    for store in 1..=10 {
        for item in 1..=50 {
            for month in 1..=12 {
                for day in 0..=6 {
                    for year in 2013..=2017 {
                        rows.extend([store, item, month, day, year].map(f64::from));
                    }
                }
            }
        }
    }
    rows
}

/// A multiplicative demand shape with Poisson-like noise, as in the generated history.
fn demand(row: &[f64], rng: &mut Lcg) -> f32 {
    let mean = (10.0 + row[0])
        * (1.0 + row[1] / 10.0)
        * (1.0 + (row[2] / 12.0 * std::f64::consts::TAU).sin() / 4.0)
        * (1.0 + row[3] / 10.0)
        * (1.0 + (row[4] - 2013.0) / 20.0);
    (mean + (rng.unit() - 0.5) * mean.sqrt() * 2.0)
        .round()
        .max(0.0) as f32
}

/// Rows of the grid picked at random, with their labels.
fn sample(rows: usize, seed: u64) -> (Vec<f64>, Vec<f32>) {
    let grid = grid();
    let mut rng = Lcg(seed);
    let mut x = Vec::with_capacity(rows * 5);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let at = rng.below(210_000) as usize * 5;
        let row = &grid[at..at + 5];
        x.extend_from_slice(row);
        y.push(demand(row, &mut rng));
    }
    (x, y)
}

fn params(extra: Value) -> Map<String, Value> {
    let mut params = json!({"verbosity": -1, "num_threads": 2, "seed": 7})
        .as_object()
        .cloned()
        .unwrap();
    params.extend(extra.as_object().cloned().unwrap());
    params
}

fn train(x: &[f64], y: &[f32], names: &[String], rounds: u32, extra: Value) -> String {
    train_model_text(
        TrainingData {
            features: x,
            labels: y,
            names,
            init_score: None,
        },
        &params(extra),
        rounds,
        |_| {},
    )
    .unwrap()
}

/// LightGBM's predictions for row-major `rows` (its batch path; a single row takes its
/// single-row path).
fn lightgbm(text: &str, rows: &[f64], width: usize) -> Vec<f64> {
    let booster = lightgbm3::Booster::from_string(text).unwrap();
    booster.predict(rows, width as i32, true).unwrap()
}

/// Asserts bit-identical predictions of both evaluators on `rows`; returns how many. The
/// text as published (without its training statistics) must give LightGBM's predictions of
/// the whole text too, through LightGBM and through the native evaluator.
fn assert_identical(text: &str, rows: &[f64]) -> usize {
    let native = Booster::from_model_text(text).unwrap();
    let width = native.num_features();
    let expected = lightgbm(text, rows, width);
    export_case(text, rows, &expected);
    let slim = without_training_statistics(text).unwrap();
    assert!(slim.len() < text.len());
    let answers = [
        ("native", native.predict(rows).unwrap()),
        ("LightGBM, published text", lightgbm(&slim, rows, width)),
        (
            "native, published text",
            Booster::from_model_text(&slim)
                .unwrap()
                .predict(rows)
                .unwrap(),
        ),
    ];
    for (which, got) in &answers {
        assert_eq!(got.len(), expected.len());
        for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                got.to_bits(),
                expected.to_bits(),
                "row {i} {:?}: LightGBM {expected:?}, {which} {got:?}",
                &rows[i * width..(i + 1) * width]
            );
        }
    }
    expected.len()
}

/// With `GBDT_ORACLE_EXPORT=<dir>`, writes the case (model text, rows and LightGBM's answers,
/// as bits) for `forecast`'s `oracle_cases` test, which replays them where LightGBM is not
/// built: on aarch64 under qemu (`make test-aarch64`).
fn export_case(text: &str, rows: &[f64], expected: &[f64]) {
    use std::hash::{Hash, Hasher};
    let Some(dir) = std::env::var_os("GBDT_ORACLE_EXPORT") else {
        return;
    };
    let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (text, bits(rows)).hash(&mut hasher);
    let case = json!({"model": text, "rows": bits(rows), "expected": bits(expected)});
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{:016x}.json", hasher.finish())),
        serde_json::to_vec(&case).unwrap(),
    )
    .unwrap();
}

/// The probe rows of a model (every threshold and its neighbours, specials), flattened.
fn probes(text: &str, base: &[f64]) -> Vec<f64> {
    Booster::from_model_text(text)
        .unwrap()
        .probe_rows(base)
        .concat()
}

/// A 300-tree Poisson model on the grid, depth 5 (the service's shape).
fn model_300() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let (x, y) = sample(30_000, 1);
        train(&x, &y, &names(), 300, json!({"objective": "poisson", "num_leaves": 31, "max_depth": 5, "learning_rate": 0.05}))
    })
}

/// A 3000-tree model of the same shape.
fn model_3000() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let (x, y) = sample(20_000, 2);
        train(&x, &y, &names(), 3000, json!({"objective": "poisson", "num_leaves": 31, "max_depth": 5, "learning_rate": 0.02, "min_data_in_leaf": 5}))
    })
}

#[test]
fn a_300_tree_model_on_the_whole_grid() {
    let text = model_300();
    let native = Booster::from_model_text(text).unwrap();
    assert_eq!(native.num_trees(), 300);
    assert!(
        native.is_compact(),
        "a depth-5 model of the service's shape compiles compact"
    );
    assert_eq!(assert_identical(text, &grid()), 210_000);
}

#[test]
fn a_3000_tree_model_on_10000_rows_and_every_threshold() {
    let text = model_3000();
    assert_eq!(Booster::from_model_text(text).unwrap().num_trees(), 3000);
    let (mut rows, _) = sample(10_000, 3);
    rows.extend(probes(text, &[5.0, 25.0, 6.0, 3.0, 2015.0]));
    assert!(assert_identical(text, &rows) > 10_000);
    // Read as the model function reads it, in the chunks a download brings: the same bits.
    let mut reader = BoosterReader::default();
    for chunk in text.as_bytes().chunks(16 << 10) {
        reader.push(chunk);
    }
    let streamed = reader.finish().unwrap();
    let whole = Booster::from_model_text(text).unwrap();
    let bits = |b: &Booster| -> Vec<u64> {
        b.predict(&rows)
            .unwrap()
            .iter()
            .map(|p| p.to_bits())
            .collect()
    };
    assert_eq!(bits(&streamed), bits(&whole));
}

#[test]
fn every_threshold_its_neighbours_and_special_values() {
    let text = model_300();
    let rows = probes(text, &[5.0, 25.0, 6.0, 3.0, 2015.0]);
    let mut specials = Vec::new();
    for value in [
        0.0,
        -0.0,
        1e-36,
        -1e-36,
        forecast::gbdt::ZERO_THRESHOLD,
        forecast::gbdt::ZERO_THRESHOLD.next_up(),
        f64::MIN_POSITIVE / 2.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -3.0,
        2.5,
        1e300,
    ] {
        for column in 0..5 {
            let mut row = vec![5.0, 25.0, 6.0, 3.0, 2015.0];
            row[column] = value;
            specials.extend(row);
        }
    }
    assert!(assert_identical(text, &rows) > 100);
    assert_eq!(assert_identical(text, &specials), 65);
}

/// Small models trained on `features` columns of mixed data, for the LightGBM options that
/// change how a tree decides.
fn mixed_data(rows: usize, seed: u64, nan_share: f64, zero_share: f64) -> (Vec<f64>, Vec<f32>) {
    let mut rng = Lcg(seed);
    let mut x = Vec::with_capacity(rows * 3);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut row = [
            rng.unit() * 10.0 - 3.0,
            rng.below(8) as f64,
            rng.unit() * 4.0,
        ];
        for value in &mut row {
            let draw = rng.unit();
            if draw < nan_share {
                *value = f64::NAN;
            } else if draw < nan_share + zero_share {
                *value = 0.0;
            }
        }
        x.extend(row);
        let a = if row[0].is_nan() { 2.0 } else { row[0] };
        let b = if row[1].is_nan() { 1.0 } else { row[1] };
        let c = if row[2].is_nan() { -1.0 } else { row[2] };
        y.push((a * 1.5 + (b * 2.0) % 5.0 + c * c + rng.unit()) as f32);
    }
    (x, y)
}

fn fixture_rows(text: &str) -> Vec<f64> {
    let (mut rows, _) = mixed_data(2_000, 99, 0.1, 0.1);
    rows.extend(probes(text, &[1.0, 3.0, 2.0]));
    rows
}

fn three_names() -> Vec<String> {
    ["a", "b", "c"].map(str::to_owned).to_vec()
}

fn check_fixture(extra: Value, nan_share: f64, zero_share: f64, labels: impl Fn(f32) -> f32) {
    let (x, y) = mixed_data(3_000, 5, nan_share, zero_share);
    let y: Vec<f32> = y.into_iter().map(labels).collect();
    let text = train(&x, &y, &three_names(), 40, extra.clone());
    let rows = fixture_rows(&text);
    assert!(assert_identical(&text, &rows) > 2_000, "{extra}");
}

#[test]
fn missing_values_as_nan_in_training_data() {
    check_fixture(json!({"objective": "regression"}), 0.2, 0.0, |y| y);
}

#[test]
fn zero_as_missing() {
    check_fixture(
        json!({"objective": "regression", "zero_as_missing": true}),
        0.1,
        0.2,
        |y| y,
    );
}

#[test]
fn missing_values_disabled() {
    check_fixture(
        json!({"objective": "regression", "use_missing": false}),
        0.1,
        0.1,
        |y| y,
    );
}

#[test]
fn categorical_splits() {
    let (x, y) = mixed_data(3_000, 5, 0.05, 0.05);
    let text = train(
        &x,
        &y,
        &three_names(),
        40,
        json!({"objective": "regression", "categorical_feature": "1", "min_data_per_group": 5, "cat_smooth": 1}),
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("num_cat=") && l != "num_cat=0"),
        "no categorical split was trained: {}",
        &text[..text.len().min(3000)]
    );
    assert!(assert_identical(&text, &fixture_rows(&text)) > 2_000);
}

#[test]
fn deep_trees_walked_node_by_node() {
    let (x, y) = mixed_data(6_000, 8, 0.05, 0.05);
    let text = train(
        &x,
        &y,
        &three_names(),
        20,
        json!({"num_leaves": 255, "min_data_in_leaf": 2, "max_depth": -1}),
    );
    assert!(assert_identical(&text, &fixture_rows(&text)) > 2_000);
}

#[test]
fn single_leaf_trees() {
    // A constant label leaves nothing to split: every tree is one leaf.
    let (x, _) = mixed_data(500, 9, 0.0, 0.0);
    let y = vec![3.0f32; 500];
    let text = train(
        &x,
        &y,
        &three_names(),
        5,
        json!({"objective": "regression"}),
    );
    assert!(text.contains("num_leaves=1"));
    assert!(assert_identical(&text, &fixture_rows(&text)) > 2_000);
}

#[test]
fn boost_from_average_on_and_off() {
    for on in [true, false] {
        check_fixture(
            json!({"objective": "regression", "boost_from_average": on}),
            0.0,
            0.0,
            |y| y,
        );
    }
}

#[test]
fn random_forest_averages_its_trees() {
    let extra = json!({"boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.7, "feature_fraction": 0.8});
    let (x, y) = mixed_data(3_000, 5, 0.05, 0.0);
    let text = train(&x, &y, &three_names(), 30, extra);
    assert!(text.contains("\naverage_output\n"));
    assert!(assert_identical(&text, &fixture_rows(&text)) > 2_000);
}

#[test]
fn every_objective_the_trainer_can_produce() {
    for extra in [
        json!({"objective": "regression"}),
        json!({"objective": "regression", "reg_sqrt": true}),
        json!({"objective": "regression_l1"}),
        json!({"objective": "huber"}),
        json!({"objective": "quantile", "alpha": 0.9}),
        json!({"objective": "poisson"}),
        json!({"objective": "gamma"}),
        json!({"objective": "tweedie", "tweedie_variance_power": 1.3}),
    ] {
        check_fixture(extra, 0.05, 0.05, |y| y.abs() + 0.5);
    }
    check_fixture(json!({"objective": "binary"}), 0.05, 0.05, |y| {
        if y > 6.0 { 1.0 } else { 0.0 }
    });
}

#[test]
fn linear_trees_and_multiclass_are_refused_naming_why() {
    let (x, y) = mixed_data(1_000, 5, 0.0, 0.0);
    let linear = train(&x, &y, &three_names(), 3, json!({"linear_tree": true}));
    let err = Booster::from_model_text(&linear).unwrap_err();
    assert!(err.to_string().contains("linear trees"), "{err}");
    let classes: Vec<f32> = y.iter().map(|v| (v.abs() as u32 % 3) as f32).collect();
    let multiclass = train(
        &x,
        &classes,
        &three_names(),
        3,
        json!({"objective": "multiclass", "num_class": 3}),
    );
    let err = Booster::from_model_text(&multiclass).unwrap_err();
    assert!(err.to_string().contains("3 classes"), "{err}");
}

#[test]
fn thread_counts_and_chunk_sizes_do_not_change_any_bit() {
    let text = model_300();
    let native = Booster::from_model_text(text).unwrap();
    let (rows, _) = sample(5_000, 4);
    let reference: Vec<u64> = native
        .predict_chunked(&rows, usize::MAX)
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for chunk in [1, 7, 64, 1000] {
            let got: Vec<u64> = pool
                .install(|| native.predict_chunked(&rows, chunk))
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got, reference, "{threads} threads, chunks of {chunk}");
        }
    }
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (0i32..60).prop_map(f64::from),
        2 => (2010i32..2020).prop_map(f64::from),
        1 => any::<f64>(),
        1 => (-100i32..100).prop_map(|v| f64::from(v) / 8.0),
        1 => prop_oneof![Just(0.0), Just(-0.0), Just(f64::NAN), Just(1e-36), Just(f64::INFINITY)],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_rows_agree_bit_for_bit(row in proptest::collection::vec(any_value(), 5)) {
        let text = model_300();
        let native = Booster::from_model_text(text).unwrap().predict_row(&row).unwrap();
        let expected = lightgbm(text, &row, 5)[0];
        prop_assert_eq!(native.to_bits(), expected.to_bits(), "{:?}", row);
    }
}
