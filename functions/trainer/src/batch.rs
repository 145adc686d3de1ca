//! `demand batch submit | status`: start a batch job on the Step Functions state machine
//! (`BatchStateMachine` in `template.yaml`) and follow it.
//!
//! A job is checked here with the worker's own types before it is sent, so a malformed job
//! fails on the command line rather than in the state machine's planning step. A run's
//! status combines the execution, its Map Run's item counts (a failed partition does not
//! fail the Map, which tolerates failures so the summary can name them) and the summary.

use std::time::{Duration, Instant};

use ::batch::Job;
use anyhow::{Context, bail};
use aws_sdk_sfn::error::DisplayErrorContext;
use serde::Serialize;

/// A Step Functions client from the standard AWS environment (`AWS_ENDPOINT_URL_SFN` points
/// it at a local server).
pub async fn sfn_client_from_env() -> aws_sdk_sfn::Client {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_sfn::Client::new(&shared)
}

/// Starts `job` on the state machine; returns the execution ARN.
pub async fn submit(
    client: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: Option<&str>,
    job: &Job,
) -> anyhow::Result<String> {
    job.shape()?;
    let input = serde_json::to_string(job)?;
    // Named here rather than by the service, so the name says when the job was submitted
    // (and local servers that name unnamed executions alike can run more than one).
    let name = name.map_or_else(execution_name, str::to_owned);
    let started = client
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .context("starting the batch job")?;
    Ok(started.execution_arn().to_owned())
}

/// `batch-<UTC time to the nanosecond>`: unique per submission, in the characters and
/// length Step Functions allows.
pub fn execution_name() -> String {
    chrono::Utc::now()
        .format("batch-%Y%m%dT%H%M%S-%9fZ")
        .to_string()
}

/// Item counts of a run's Distributed Map: one item per partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MapRunCounts {
    /// Partitions in the Map.
    pub total: i64,
    /// Partitions scored.
    pub succeeded: i64,
    /// Partitions whose worker failed after its retries.
    pub failed: i64,
    /// Partitions being scored.
    pub running: i64,
    /// Partitions not started yet.
    pub pending: i64,
    /// Partitions that timed out.
    pub timed_out: i64,
    /// Partitions aborted.
    pub aborted: i64,
}

/// Where a batch job is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// The execution.
    pub execution_arn: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
    /// The Map Run's item counts, once the Map has started.
    pub partitions: Option<MapRunCounts>,
    /// The run summary (the execution output), once the run is over.
    pub summary: Option<serde_json::Value>,
    /// The error of a failed run.
    pub error: Option<String>,
    /// Its cause.
    pub cause: Option<String>,
}

impl JobStatus {
    /// Whether the run is over.
    pub fn is_finished(&self) -> bool {
        self.status != "RUNNING" && self.status != "PENDING_REDRIVE"
    }
}

/// The status of the execution `execution_arn`.
pub async fn status(
    client: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> anyhow::Result<JobStatus> {
    let sdk = |e: String| anyhow::anyhow!(e);
    let execution = client
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
        .map_err(|e| sdk(DisplayErrorContext(e).to_string()))
        .context("describing the batch job")?;
    let status = execution.status().as_str().to_owned();
    let partitions = match map_run_counts(client, execution_arn).await {
        Ok(counts) => counts,
        // While the job runs its Map Run may not be listable yet (moto answers 500 then); the
        // counts of a finished job are required.
        Err(_) if status == "RUNNING" => None,
        Err(err) => return Err(err),
    };
    Ok(JobStatus {
        execution_arn: execution_arn.to_owned(),
        status,
        partitions,
        summary: execution
            .output()
            .and_then(|o| serde_json::from_str(o).ok()),
        error: execution.error().map(str::to_owned),
        cause: execution.cause().map(str::to_owned),
    })
}

/// The item counts of the execution's (only) Map Run, if it has started.
async fn map_run_counts(
    client: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> anyhow::Result<Option<MapRunCounts>> {
    let runs = client
        .list_map_runs()
        .execution_arn(execution_arn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .context("listing the job's map runs")?;
    let Some(run) = runs.map_runs().first() else {
        return Ok(None);
    };
    let run = client
        .describe_map_run()
        .map_run_arn(run.map_run_arn())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .context("describing the job's map run")?;
    Ok(run.item_counts().map(|c| MapRunCounts {
        total: c.total(),
        succeeded: c.succeeded(),
        failed: c.failed(),
        running: c.running(),
        pending: c.pending(),
        timed_out: c.timed_out(),
        aborted: c.aborted(),
    }))
}

/// Polls [`status`] every `poll` until the run is over or `timeout` has passed.
pub async fn wait(
    client: &aws_sdk_sfn::Client,
    execution_arn: &str,
    poll: Duration,
    timeout: Duration,
) -> anyhow::Result<JobStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let current = status(client, execution_arn).await?;
        if current.is_finished() {
            return Ok(current);
        }
        if Instant::now() >= deadline {
            bail!(
                "the batch job is still {} after {timeout:?}: {execution_arn}",
                current.status
            );
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_execution_names() {
        let name = execution_name();
        assert!(name.len() <= 80, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}"
        );
    }

    #[test]
    fn a_run_is_finished_unless_running() {
        let mut s = JobStatus {
            execution_arn: "arn".into(),
            status: "RUNNING".into(),
            partitions: None,
            summary: None,
            error: None,
            cause: None,
        };
        assert!(!s.is_finished());
        for done in ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"] {
            done.clone_into(&mut s.status);
            assert!(s.is_finished(), "{done}");
        }
    }
}
