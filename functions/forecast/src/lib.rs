//! Shared domain of the demand forecasting service.
//!
//! This crate is pure (no AWS, no async): the `demand` trainer, the `model` Lambda and the
//! `orchestrator` Lambda all depend on it, so a feature is defined exactly once and can never
//! drift between training and serving. It holds:
//!
//! - [`date`]: parsing of request dates (`2018-01-01`, ISO datetimes with or without offset);
//! - [`request`]: the business request `{date, store, item}` and its field-level validation;
//! - [`features`]: the named feature vocabulary and the row builder;
//! - [`baseline`]: the multiplicative main-effects baseline a booster may be trained on top of;
//! - [`distribution`]: predictive count distributions: quantiles, SMAPE-optimal points, calibration;
//! - [`gbdt`]: the native LightGBM evaluator, bit-identical to LightGBM's predictor;
//! - [`manifest`]: the model manifest stored beside every booster, and its S3 layout;
//! - [`artifact`]: `model.txt` read and proven against its manifest, the one way;
//! - [`wire`]: the MLflow-compatible payloads spoken by the model Lambda.
//!
//! Run its tests with `cargo test -p forecast`.

pub mod artifact;
pub mod baseline;
pub mod date;
pub mod distribution;
pub mod features;
pub mod gbdt;
pub mod manifest;
pub mod request;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wire;

pub use date::{DateError, parse_date};
pub use features::{Feature, FeatureError, FeatureRow};
pub use manifest::{ModelLocation, ModelManifest};
pub use request::{FieldError, ForecastRequest, ItemId, StoreId};
