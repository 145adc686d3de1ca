//! The worker: one Lambda answering the state machine's three steps (plan, score, summarize)
//! with the model loaded once per cold start.

use std::sync::Arc;
use std::time::Instant;

use forecast::ModelLocation;
use futures_util::{StreamExt, stream};
use model::{LoadedModel, ObjectStore, load_model};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::error::BatchError;
use crate::job::{
    BatchEvent, Job, JobShape, ModelIdentity, PartitionKeys, PartitionReport, PlanOutput,
    RunSummary, WorkItem,
};
use crate::plan::{plan_catalogue, plan_objects};
use crate::score::{ScoredPartition, Scorer};
use crate::store::BatchStore;

/// Status objects read at once by the summary.
const SUMMARY_READS_IN_FLIGHT: usize = 32;
/// Failed partition ids the summary names (it always counts all of them).
const FAILED_IDS_SHOWN: usize = 100;

/// The batch worker: where data and model live, and the model once loaded.
#[derive(Debug)]
pub struct BatchWorker<S, M> {
    data: S,
    model_store: M,
    location: ModelLocation,
    model: OnceCell<Arc<LoadedModel>>,
}

impl<S: BatchStore, M: ObjectStore> BatchWorker<S, M> {
    /// A worker reading and writing data through `data` and loading its model from
    /// `model_store` at `location` on first use.
    pub fn new(data: S, model_store: M, location: ModelLocation) -> Self {
        Self {
            data,
            model_store,
            location,
            model: OnceCell::new(),
        }
    }

    /// The model, loaded and verified on first use and kept for the life of the process; a
    /// failed load is not kept, so the next invocation tries again.
    pub async fn model(&self) -> Result<Arc<LoadedModel>, BatchError> {
        self.model
            .get_or_try_init(|| async {
                load_model(&self.model_store, &self.location)
                    .await
                    .map(Arc::new)
                    .map_err(|e| BatchError::ModelUnavailable(format!("{e} ({})", e.code())))
            })
            .await
            .cloned()
    }

    /// Answers one invocation.
    pub async fn handle(&self, event: BatchEvent) -> Result<Value, BatchError> {
        let encode = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| BatchError::Prediction(format!("encoding the answer: {e}")))
        };
        match event {
            BatchEvent::Plan { job } => encode(serde_json::to_value(self.plan(&job).await?)),
            BatchEvent::Score { job, run_id, item } => encode(serde_json::to_value(
                self.score(&job, &run_id, &item).await?,
            )),
            BatchEvent::Summarize { job, plan } => {
                encode(serde_json::to_value(self.summarize(&job, &plan).await?))
            }
        }
    }

    /// Cuts the job into work items and writes them where the Map's `ItemReader` reads.
    pub async fn plan(&self, job: &Job) -> Result<PlanOutput, BatchError> {
        let shape = job.shape()?;
        // A job whose quantiles cannot be answered fails here, before any partition runs.
        if job.levels()?.is_some() {
            crate::score::distribution(&*self.model().await?)?;
        }
        let items = match shape {
            JobShape::Objects(input) => {
                let keys = self.data.list(&input.bucket, &input.prefix).await?;
                plan_objects(input, &keys)?
            }
            JobShape::Catalogue(spec) => {
                plan_catalogue(spec, &self.model().await?.manifest.domain)?
            }
        };
        let body = serde_json::to_vec(&items)
            .map_err(|e| BatchError::InvalidJob(format!("encoding the plan: {e}")))?;
        let key = job.plan_key();
        self.data
            .put(&job.output.bucket, &key, body, "application/json")
            .await?;
        Ok(PlanOutput {
            bucket: job.output.bucket.clone(),
            key,
            partitions: items.len(),
            results_prefix: job.results_prefix(),
            run_id: new_run_id(),
        })
    }

    /// Scores one partition and writes its output, error file and status, replacing what a
    /// previous run wrote for it.
    pub async fn score(
        &self,
        job: &Job,
        run_id: &str,
        item: &WorkItem,
    ) -> Result<PartitionReport, BatchError> {
        let started = Instant::now();
        let model = self.model().await?;
        let scorer = Scorer::new(&model, job.levels()?)?;
        let scored: ScoredPartition = match item {
            WorkItem::Object { bucket, key, .. } => {
                let reader = self.data.open(bucket, key).await?;
                scorer
                    .score_csv(reader, &format!("s3://{bucket}/{key}"))
                    .await?
            }
            WorkItem::Catalogue {
                start, days, pairs, ..
            } => scorer.score_catalogue(*start, *days, pairs)?,
        };
        let keys = PartitionKeys::new(&job.output, item.id());
        let bucket = &job.output.bucket;
        self.data
            .put(bucket, &keys.output, scored.csv, "text/csv")
            .await?;
        let errors_key = if scored.bad_rows > 0 {
            self.data
                .put(bucket, &keys.errors, scored.errors, "text/csv")
                .await?;
            Some(keys.errors)
        } else {
            // A clean re-run leaves no stale error file behind.
            self.data.delete(bucket, &keys.errors).await?;
            None
        };
        let report = PartitionReport {
            id: item.id().to_owned(),
            run_id: run_id.to_owned(),
            rows_read: scored.rows_read,
            rows_scored: scored.rows_scored,
            bad_rows: scored.bad_rows,
            output_key: keys.output,
            errors_key,
        };
        let status = serde_json::to_vec(&report)
            .map_err(|e| BatchError::Prediction(format!("encoding the status: {e}")))?;
        self.data
            .put(bucket, &keys.status, status, "application/json")
            .await?;
        model::host::emit(&json!({
            "level": "INFO",
            "message": "partition scored",
            "event": "partition_scored",
            "partition": report.id,
            "rows_read": report.rows_read,
            "rows_scored": report.rows_scored,
            "bad_rows": report.bad_rows,
            "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
        }));
        Ok(report)
    }

    /// Adds up the partitions' statuses of this run into `_summary.json`. A partition
    /// without a status of this run failed, whatever the Map reported.
    pub async fn summarize(&self, job: &Job, plan: &PlanOutput) -> Result<RunSummary, BatchError> {
        let items: Vec<WorkItem> = serde_json::from_slice(
            &self.data.get(&plan.bucket, &plan.key).await?,
        )
        .map_err(|e| BatchError::InvalidJob(format!("the plan {} is unreadable: {e}", plan.key)))?;
        let reports: Vec<Option<PartitionReport>> = stream::iter(items.iter().map(|item| {
            let key = PartitionKeys::new(&job.output, item.id()).status;
            async move {
                let bytes = self.data.get(&job.output.bucket, &key).await.ok()?;
                serde_json::from_slice::<PartitionReport>(&bytes)
                    .ok()
                    .filter(|r| r.run_id == plan.run_id && r.id == item.id())
            }
        }))
        .buffered(SUMMARY_READS_IN_FLIGHT)
        .collect()
        .await;
        let model = self.model().await?;
        let mut summary = RunSummary {
            run_id: plan.run_id.clone(),
            partitions: items.len(),
            succeeded_partitions: 0,
            failed_partitions: 0,
            failed_partition_ids: Vec::new(),
            rows_read: 0,
            rows_scored: 0,
            bad_rows: 0,
            model: ModelIdentity {
                name: model.manifest.name.clone(),
                version: model.manifest.version.clone(),
            },
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        for (item, report) in items.iter().zip(reports) {
            match report {
                Some(report) => {
                    summary.succeeded_partitions += 1;
                    summary.rows_read += report.rows_read;
                    summary.rows_scored += report.rows_scored;
                    summary.bad_rows += report.bad_rows;
                }
                None => {
                    summary.failed_partitions += 1;
                    if summary.failed_partition_ids.len() < FAILED_IDS_SHOWN {
                        summary.failed_partition_ids.push(item.id().to_owned());
                    }
                }
            }
        }
        let body = serde_json::to_vec_pretty(&summary)
            .map_err(|e| BatchError::Prediction(format!("encoding the summary: {e}")))?;
        self.data
            .put(
                &job.output.bucket,
                &job.summary_key(),
                body,
                "application/json",
            )
            .await?;
        Ok(summary)
    }
}

/// A run id unique enough to tell this run's statuses from an earlier run's.
fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%S%.9fZ"),
        std::process::id() & 0xffff
    )
}

#[cfg(test)]
mod tests {
    use model::LocalFileStore;

    use super::*;
    use crate::store::MemoryStore;
    use crate::testing::location;

    fn worker() -> BatchWorker<MemoryStore, LocalFileStore> {
        BatchWorker::new(MemoryStore::default(), LocalFileStore, location())
    }

    fn job(text: &str) -> Job {
        serde_json::from_str(text).unwrap()
    }

    fn text(worker: &BatchWorker<MemoryStore, LocalFileStore>, key: &str) -> Option<String> {
        worker
            .data
            .object("b", key)
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[tokio::test]
    async fn a_job_with_quantiles_writes_their_columns_and_bad_levels_fail_the_plan() {
        // GIVEN a catalogue job (one store-item, 4 days) asking P10 and P90, as the state
        // machine passes it (the job's JSON)
        let worker = worker();
        let job = job(
            r#"{"output": "s3://b/q/", "catalogue": {"start": "2018-01-01", "days": 4, "stores": [2], "items": [3]}, "quantiles": [0.9, 0.1]}"#,
        );
        // WHEN it is planned and its one partition scored
        let plan = worker.plan(&job).await.unwrap();
        let items: Vec<WorkItem> =
            serde_json::from_str(&text(&worker, &plan.key).unwrap()).unwrap();
        assert_eq!(items.len(), 1);
        worker.score(&job, &plan.run_id, &items[0]).await.unwrap();
        // THEN the output has the levels ascending as columns, a value each
        let out = text(&worker, &format!("q/{}.csv", items[0].id())).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "date,store,item,sales,p10,p90");
        assert_eq!(lines.len(), 5);
        assert!(
            lines[1..].iter().all(|l| l.split(',').count() == 6),
            "{out}"
        );
        // AND levels outside (0, 1) fail the plan, before any partition runs
        let bad = self::job(
            r#"{"output": "s3://b/r/", "catalogue": {"start": "2018-01-01", "days": 1}, "quantiles": [1.5]}"#,
        );
        let err = worker.plan(&bad).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidJob");
        assert!(err.to_string().contains("quantiles"), "{err}");
        assert!(text(&worker, "r/_plan/items.json").is_none());
    }

    #[tokio::test]
    async fn a_catalogue_job_runs_plan_score_summarize() {
        // GIVEN a catalogue job over the model's whole domain (3 stores x 4 items), 5 days
        let worker = worker();
        let job = job(
            r#"{"output": "s3://b/out/", "catalogue": {"start": "2018-01-01", "days": 5, "rows_per_partition": 20}}"#,
        );
        // WHEN it is planned, every item scored and the run summarized
        let plan = worker.plan(&job).await.unwrap();
        assert_eq!(plan.partitions, 3);
        let items: Vec<WorkItem> =
            serde_json::from_str(&text(&worker, &plan.key).unwrap()).unwrap();
        for item in &items {
            let answer = worker
                .handle(BatchEvent::Score {
                    job: job.clone(),
                    run_id: plan.run_id.clone(),
                    item: item.clone(),
                })
                .await
                .unwrap();
            assert_eq!(answer["rows_scored"], 20);
        }
        let summary = worker.summarize(&job, &plan).await.unwrap();
        // THEN every row was scored once and the summary says so
        assert_eq!(summary.partitions, 3);
        assert_eq!(summary.failed_partitions, 0);
        assert_eq!(summary.rows_scored, 60);
        let written: RunSummary =
            serde_json::from_str(&text(&worker, "out/_summary.json").unwrap()).unwrap();
        assert_eq!(written, summary);
        let rows: usize = items
            .iter()
            .map(|i| {
                text(&worker, &format!("out/{}.csv", i.id()))
                    .unwrap()
                    .lines()
                    .count()
                    - 1
            })
            .sum();
        assert_eq!(rows, 60);
    }

    #[tokio::test]
    async fn a_rerun_overwrites_and_only_this_runs_statuses_count() {
        // GIVEN an input prefix with one partition holding a bad row
        let worker = worker();
        worker.data.insert(
            "b",
            "in/p.csv",
            "date,store,item\n2018-01-01,1,1\nnot-a-date,1,1\n",
        );
        let job = job(r#"{"output": "s3://b/out/", "input": "s3://b/in/"}"#);
        let plan = worker.plan(&job).await.unwrap();
        let items: Vec<WorkItem> =
            serde_json::from_str(&text(&worker, &plan.key).unwrap()).unwrap();
        let report = worker.score(&job, &plan.run_id, &items[0]).await.unwrap();
        assert_eq!((report.rows_scored, report.bad_rows), (1, 1));
        let errors = text(&worker, "out/_errors/p.csv").unwrap();
        assert!(errors.contains("\n3,"), "{errors}");
        let first_output = text(&worker, "out/p.csv").unwrap();

        // WHEN the input is fixed and the job re-run
        worker
            .data
            .insert("b", "in/p.csv", "date,store,item\n2018-01-01,1,1\n");
        let rerun = worker.plan(&job).await.unwrap();
        assert_ne!(rerun.run_id, plan.run_id);
        // THEN before the partition is scored again, the old status does not count
        let summary = worker.summarize(&job, &rerun).await.unwrap();
        assert_eq!(summary.failed_partitions, 1);
        assert_eq!(summary.failed_partition_ids, ["p"]);
        // AND after, its output is replaced, the stale error file gone, the run clean
        worker.score(&job, &rerun.run_id, &items[0]).await.unwrap();
        assert_eq!(text(&worker, "out/p.csv").unwrap(), first_output);
        assert_eq!(text(&worker, "out/_errors/p.csv"), None);
        let summary = worker.summarize(&job, &rerun).await.unwrap();
        assert_eq!(
            (
                summary.failed_partitions,
                summary.rows_scored,
                summary.bad_rows
            ),
            (0, 1, 0)
        );
    }

    #[tokio::test]
    async fn the_model_is_loaded_once_and_a_missing_model_is_an_error() {
        let worker = worker();
        let first = worker.model().await.unwrap();
        let second = worker.model().await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));

        let missing = BatchWorker::new(
            MemoryStore::default(),
            LocalFileStore,
            ModelLocation::new("/nonexistent", "demand", "v0"),
        );
        let err = missing.model().await.unwrap_err();
        assert_eq!(err.error_type(), "ModelUnavailable");
    }
}
