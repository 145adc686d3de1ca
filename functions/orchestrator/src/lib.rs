//! The `orchestrator` Lambda: the forecasting HTTP API behind API Gateway (HTTP API,
//! payload format 2.0).
//!
//! It validates `{date, store, item}`, builds exactly the feature row the deployed model was
//! trained on (the feature names come from the model's manifest, fetched with a ping and
//! fetched again, single-flight, when a model answer shows the model behind the alias has
//! changed: see [`model`]), invokes the `model` Lambda through the Lambda Invoke API and
//! answers `{"sales": f64}`; every answer comes from one model. All business rules live here;
//! the model host stays generic.
//!
//! Routes: `POST /v1/api/predict`, `POST /v1/api/predict/batch` (chunked, concurrent model
//! invocations), `GET /v1/api/forecast`, `GET /v1/api/health`, `GET /v1/api/openapi.json`
//! (generated from the types in [`schema`]). Errors are JSON `{"detail": ...}`: 400 malformed
//! body, 413 body too large, 422 invalid fields (FastAPI-style list), 404/405 unknown route or
//! method, 502 model error, 503 model unavailable (with `Retry-After`), 504 model timeout.
//! Every response carries `x-request-id` and `x-model-version`; every request logs one
//! structured line and one CloudWatch EMF record ([`observe`]). Callers are admitted as the
//! API's authorization mode (`API_AUTH`: IAM, JWT or NONE) says, checked again here before any
//! work ([`auth`]).
//!
//! Run it locally with `make dev`; test it with `cargo test -p orchestrator`.

pub mod api;
pub mod auth;
pub mod config;
pub mod decode;
pub mod error;
pub mod model;
pub mod model_client;
pub mod observe;
pub mod routes;
pub mod schema;

pub use api::Orchestrator;
pub use config::{Limits, OrchestratorConfig};
pub use error::ApiError;
pub use model_client::{LambdaModelClient, ModelCallError, ModelClient};
