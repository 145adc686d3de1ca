//! The boosters tests serve, trained by LightGBM in process: a tiny one on `y = 3a + b` for
//! unit tests, and one with the original notebook's parameters on the synthetic sales history
//! for integration tests, benchmarks and the memory probe.

use lightgbm3::{Booster, Dataset};
use serde_json::{Map, Value, json};

use crate::FEATURES;
use crate::synthetic::sales_history;

/// The tiny booster's features, in order.
pub const TINY_FEATURES: [&str; 2] = ["a", "b"];

/// The tiny booster's number of trees.
pub const TINY_TREES: u32 = 10;

/// Trains a booster on row-major `x` (columns named `names`) and labels `y` with `parameters`
/// and returns its text.
///
/// # Panics
/// When LightGBM refuses the data or the parameters: a failed set-up is a failed test.
pub fn train(x: &[f64], y: &[f32], names: &[&str], parameters: &Value) -> String {
    let width = i32::try_from(names.len()).unwrap_or(i32::MAX);
    let mut dataset = Dataset::from_slice(x, y, width, true).unwrap();
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    dataset.set_feature_names(&names).unwrap();
    Booster::train(dataset, parameters)
        .unwrap()
        .save_string()
        .unwrap()
}

/// A 10-tree booster on `y = 3a + b` over a 20 x 20 grid, with features [`TINY_FEATURES`].
pub fn tiny() -> String {
    let grid: Vec<(u8, u8)> = (0..20).flat_map(|a| (0..20).map(move |b| (a, b))).collect();
    let x: Vec<f64> = grid
        .iter()
        .flat_map(|&(a, b)| [f64::from(a), f64::from(b)])
        .collect();
    let y: Vec<f32> = grid.iter().map(|&(a, b)| f32::from(3 * a + b)).collect();
    let parameters = json!({"num_iterations": TINY_TREES, "objective": "regression", "verbosity": -1, "min_data_in_leaf": 5});
    train(&x, &y, &TINY_FEATURES, &parameters)
}

/// The original notebook's LightGBM parameters (the trainer's own) with `rounds` rounds.
pub fn original_parameters(rounds: u32) -> Map<String, Value> {
    let mut parameters = trainer::train::original_parameters();
    parameters.insert("num_iterations".to_owned(), json!(rounds));
    parameters
}

/// A booster with the original parameters and `rounds` rounds on the synthetic history of
/// `stores` x `items` over `days` days ([`sales_history`]), with features [`FEATURES`].
pub fn sales(rounds: u32, stores: u32, items: u32, days: u32) -> String {
    let (x, y) = sales_history(stores, items, days);
    train(
        &x,
        &y,
        &FEATURES,
        &Value::Object(original_parameters(rounds)),
    )
}
