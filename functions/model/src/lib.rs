//! The `model` Lambda: a generic LightGBM booster host.
//!
//! On cold start it reads `MODEL_URI` (`s3://<bucket>/models/<name>/<version>/`), fetches
//! `manifest.json` and `model.txt` from S3, checks the booster's sha256 and feature names
//! against the manifest and loads it once. It then answers MLflow-style invocations
//! (`{"dataframe_split": ...}`, `{"ping": {}}`); it knows nothing about stores or dates, so
//! any LightGBM model with a manifest can be dropped in.
//!
//! Run it locally with `make dev` (it is served by `cargo lambda watch`), test it with
//! `cargo test -p model`.

pub mod booster;
pub mod config;
pub mod error;
pub mod handler;
pub mod loader;
#[cfg(test)]
mod testing;

pub use config::ModelConfig;
pub use error::{InitError, ModelError};
pub use handler::handle_invocation;
pub use loader::{LoadedModel, ObjectStore, S3ObjectStore, load_model};
