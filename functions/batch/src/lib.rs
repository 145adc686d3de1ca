//! The `batch` Lambda: catalogue-scale forecasts, one partition per invocation.
//!
//! A Step Functions Distributed Map (`statemachine/batch.asl.json`) fans a job out over this
//! function. The same function answers the job's three steps: `plan` cuts a job (every CSV
//! object under an input prefix, or every store x item of the model's training domain for
//! `start` + `days`) into work items and writes them for the Map's S3 `ItemReader`; `score`
//! streams one partition from S3, builds the model's features with `forecast::features`,
//! predicts in process with `forecast::gbdt` (the model loaded and verified by
//! `model::load_model` once per cold start) and writes `[id,]date,store,item,sales`, the
//! partition's bad rows with their line numbers and a status; `summarize` adds the statuses
//! up into `_summary.json`. Re-running a job or a partition overwrites its output.
//!
//! Test it with `cargo test -p batch`; the whole pipeline on moto and `cargo lambda watch`
//! runs in `cargo test -p e2e --test batch`.

pub mod error;
pub mod job;
pub mod plan;
pub mod score;
pub mod store;
#[cfg(test)]
mod testing;
pub mod worker;

pub use error::BatchError;
pub use job::{BatchEvent, Job, PlanOutput, RunSummary, WorkItem};
pub use store::{BatchStore, MemoryStore, S3BatchStore};
pub use worker::BatchWorker;
