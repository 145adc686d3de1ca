//! The `demand` trainer: the offline half of the forecasting service.
//!
//! - [`generate`] writes a Kaggle-shaped `train.csv` / `test.csv`, deterministic from a seed;
//! - [`data`] reads a sales history (`date,store,item,sales`) with line-numbered errors;
//! - [`train`] fits a LightGBM booster on the features of `forecast` and writes `model.txt`
//!   plus `manifest.json`, with the predictive distribution [`calibrate`] fits;
//! - [`backtest`] scores a training recipe on rolling-origin windows;
//! - [`plot`] draws a store-item's history, forecast and P10-P90 band as SVG;
//! - [`publish`] uploads both to `s3://<bucket>/models/<name>/<version>/`;
//! - [`batch`] starts a batch job on the Step Functions state machine and follows it.
//!
//! Run `cargo run --release -p trainer -- --help`.

pub mod backtest;
pub mod batch;
pub mod boosting;
pub mod calibrate;
pub mod data;
pub mod evaluate;
pub mod generate;
pub mod metrics;
pub mod params;
pub mod plot;
pub mod publish;
pub mod split;
pub mod train;
