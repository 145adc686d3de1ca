//! A Kaggle-shaped synthetic sales history and a LightGBM booster trained on it with the
//! original notebook's parameters, so tests, benchmarks and the memory probe can have a
//! realistic booster without files on disk.

// Each user of this file takes what it needs.
#![allow(dead_code)]

use chrono::{Datelike, Days, NaiveDate};
use forecast::ModelManifest;
use forecast::manifest::{RowCounts, TrainingDomain};
use lightgbm3::{Booster, Dataset};
use serde_json::{Value, json};

/// The original model's features, in order.
pub(crate) const FEATURES: [&str; 5] = ["store", "item", "month", "day", "year"];

/// The original notebook's LightGBM parameters (the trainer's own) with `rounds` rounds.
pub(crate) fn original_parameters(rounds: u32) -> serde_json::Map<String, Value> {
    let mut parameters = trainer::train::original_parameters();
    parameters.insert("num_iterations".to_owned(), json!(rounds));
    parameters
}

/// splitmix64: deterministic noise without a dependency.
fn noise(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Feature rows `store, item, month, day, year` (day of week, Monday = 0) and daily sales for
/// `stores` x `items` over `days` days from 2013-01-01.
pub(crate) fn sales_history(stores: u32, items: u32, days: u32) -> (Vec<f64>, Vec<f32>) {
    let start = NaiveDate::from_ymd_opt(2013, 1, 1).unwrap_or_default();
    let mut state = 2018;
    let mut x = Vec::with_capacity((stores * items * days) as usize * FEATURES.len());
    let mut y = Vec::with_capacity((stores * items * days) as usize);
    for offset in 0..days {
        let date = start + Days::new(u64::from(offset));
        let month = f64::from(date.month());
        let weekday = f64::from(date.weekday().num_days_from_monday());
        let year = f64::from(date.year());
        let season = 1.0 + 0.3 * ((month - 1.0) / 12.0 * std::f64::consts::TAU).sin();
        let week = 1.0 + 0.08 * weekday;
        let trend = 1.0 + 0.07 * (year - 2013.0);
        for store in 1..=stores {
            for item in 1..=items {
                let level =
                    (10.0 + 3.0 * f64::from(store % 7)) * (0.5 + f64::from(item % 11) / 5.0);
                let sales =
                    (level * season * week * trend * (0.8 + 0.4 * noise(&mut state))).round();
                x.extend([f64::from(store), f64::from(item), month, weekday, year]);
                y.push(sales as f32);
            }
        }
    }
    (x, y)
}

/// Trains a booster with the original parameters and returns its text.
pub(crate) fn train(rounds: u32, stores: u32, items: u32, days: u32) -> String {
    let (x, y) = sales_history(stores, items, days);
    let mut dataset = Dataset::from_slice(&x, &y, FEATURES.len() as i32, true).unwrap();
    let names: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    dataset.set_feature_names(&names).unwrap();
    Booster::train(dataset, &Value::Object(original_parameters(rounds)))
        .unwrap()
        .save_string()
        .unwrap()
}

/// A manifest for `model_text` named `name` at `version`.
pub(crate) fn manifest_for(
    model_text: &str,
    name: &str,
    version: &str,
    rounds: u32,
) -> ModelManifest {
    let parameters = original_parameters(rounds);
    ModelManifest {
        format_version: forecast::manifest::MANIFEST_FORMAT_VERSION,
        name: name.to_owned(),
        version: version.to_owned(),
        features: FEATURES.iter().map(|s| (*s).to_owned()).collect(),
        objective: "regression_l1".into(),
        parameters,
        split: "none".into(),
        metrics: Default::default(),
        trained_at: "2026-01-01T00:00:00Z".into(),
        training_data_sha256: "synthetic".into(),
        model_sha256: forecast::artifact::sha256_hex(model_text.as_bytes()),
        num_trees: rounds,
        domain: TrainingDomain {
            stores: vec![],
            items: vec![],
            date_min: "2013-01-01".into(),
            date_max: String::new(),
        },
        rows: RowCounts {
            total: 0,
            fit: 0,
            validation: 0,
        },
        tool_versions: Default::default(),
        check_rows: trainer::train::check_rows(model_text, &query_rows(1)).unwrap_or_default(),
        distribution: None,
        point: Default::default(),
        backtest: None,
    }
}

/// `n` query rows spread over 10 stores, 50 items and every month and weekday of 2018.
pub(crate) fn query_rows(n: usize) -> Vec<f64> {
    (0..n)
        .flat_map(|i| {
            let i = i as u32;
            [
                f64::from(i % 10 + 1),
                f64::from(i / 10 % 50 + 1),
                f64::from(i % 12 + 1),
                f64::from(i % 7),
                2018.0,
            ]
        })
        .collect()
}

/// `rows` (row-major, [`FEATURES`] order) as a `dataframe_split` payload, written directly
/// (a JSON tree of a large batch would dwarf what the host itself uses).
pub(crate) fn dataframe_split(rows: &[f64]) -> String {
    let columns = serde_json::to_string(&FEATURES).unwrap_or_default();
    let data: Vec<String> = rows
        .chunks(FEATURES.len())
        .map(|row| {
            let cells: Vec<String> = row.iter().map(f64::to_string).collect();
            format!("[{}]", cells.join(","))
        })
        .collect();
    format!(
        r#"{{"dataframe_split": {{"columns": {columns}, "data": [{}]}}}}"#,
        data.join(",")
    )
}

/// `rows` as a `dataframe_records` payload, written directly.
pub(crate) fn dataframe_records(rows: &[f64]) -> String {
    let records: Vec<String> = rows
        .chunks(FEATURES.len())
        .map(|row| {
            let fields: Vec<String> = FEATURES
                .iter()
                .zip(row)
                .map(|(name, value)| format!("\"{name}\": {value}"))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!(r#"{{"dataframe_records": [{}]}}"#, records.join(","))
}
