//! The `model` Lambda: a generic LightGBM booster host.
//!
//! On cold start it reads `MODEL_URI` (`s3://<bucket>/models/<name>/<version>/`, or
//! `file:///dir/` for offline experiments), fetches `manifest.json` and `model.txt`
//! concurrently, checks the booster's sha256 and feature names against the manifest, compiles
//! it once for the native evaluator (`forecast::gbdt`; LightGBM itself is not linked), proves
//! the evaluator reproduces LightGBM on the manifest's check rows and warms it up. It then answers MLflow scoring payloads (`dataframe_split`,
//! `dataframe_records`, `instances`, `inputs`) and `{"ping": {}}`; it knows nothing about
//! stores or dates, so any single-output LightGBM model with a manifest can be dropped in.
//! Invocations may run concurrently (`AWS_LAMBDA_MAX_CONCURRENCY`): the compiled booster is
//! immutable, so every invocation reads it through a shared `Arc` without a lock, and large
//! batches are spread over all the cores the function has.
//!
//! Run it locally with `make dev` (it is served by `cargo lambda watch`), test it with
//! `cargo test -p model`, benchmark it with `cargo bench -p model`.

pub mod config;
pub mod decode;
pub mod error;
pub mod handler;
pub mod host;
pub mod loader;
pub mod memory;
#[cfg(test)]
mod testing;

pub use config::{ModelConfig, ModelSource};
pub use error::{FetchErrorKind, InitError, ModelError, ModelErrorType, diagnostic};
pub use handler::{ModelResponse, handle_invocation, handle_json};
pub use host::{ModelHost, Payload};
pub use loader::{
    ConfiguredStore, LoadedModel, LocalFileStore, ObjectStore, S3ObjectStore, load_model,
};
