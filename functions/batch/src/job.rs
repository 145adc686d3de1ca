//! What a batch job is, how it is cut into work items, and what each step reports.
//!
//! A job is the Step Functions execution input: where the results go and what to score,
//! either every CSV object under an input prefix or the whole catalogue (every store x item
//! of the model's training domain, or a subset) for `start` + `days`.

use chrono::NaiveDate;
use forecast::distribution::parse_levels;
use serde::{Deserialize, Serialize};

use crate::error::BatchError;

/// Rows a catalogue partition holds unless the job says otherwise.
pub const DEFAULT_ROWS_PER_PARTITION: u32 = 50_000;
/// Most days a catalogue job may forecast.
pub const MAX_DAYS: u32 = 3_660;

/// A location in S3: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct S3Prefix {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, empty or ending in `/`.
    pub prefix: String,
}

impl S3Prefix {
    /// Parses `s3://bucket/prefix`; a prefix without a trailing `/` gets one.
    pub fn parse(uri: &str) -> Result<Self, BatchError> {
        let bad = |reason: &str| BatchError::InvalidJob(format!("{uri:?}: {reason}"));
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://bucket/prefix/"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket is empty"));
        }
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// The key `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether `other` lies under this prefix (same bucket).
    pub fn contains(&self, other: &Self) -> bool {
        self.bucket == other.bucket && other.prefix.starts_with(&self.prefix)
    }
}

impl TryFrom<String> for S3Prefix {
    type Error = BatchError;
    fn try_from(uri: String) -> Result<Self, Self::Error> {
        Self::parse(&uri)
    }
}

impl From<S3Prefix> for String {
    fn from(p: S3Prefix) -> Self {
        format!("s3://{}/{}", p.bucket, p.prefix)
    }
}

/// The whole catalogue for a date range, optionally restricted to some stores or items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSpec {
    /// First day to forecast.
    pub start: NaiveDate,
    /// Number of days, from `start`.
    pub days: u32,
    /// Stores to forecast; all of the model's training domain when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<Vec<u32>>,
    /// Items to forecast; all of the model's training domain when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<u32>>,
    /// About how many rows one partition (one worker invocation) scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_partition: Option<u32>,
}

/// A batch job: the Step Functions execution input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Where results, error files, statuses and the summary go.
    pub output: S3Prefix,
    /// Score every `.csv` object under this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<S3Prefix>,
    /// Score the whole catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<CatalogueSpec>,
    /// Quantile levels in (0, 1) to answer beside each prediction, one column each (`p10`,
    /// ...); the model must have a predictive distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<f64>>,
}

/// The two shapes of a job, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobShape<'a> {
    /// Every object under a prefix.
    Objects(&'a S3Prefix),
    /// Every store x item for a date range.
    Catalogue(&'a CatalogueSpec),
}

impl Job {
    /// The job's shape, or why it has none or two.
    pub fn shape(&self) -> Result<JobShape<'_>, BatchError> {
        match (&self.input, &self.catalogue) {
            (Some(input), None) => {
                if input.contains(&self.output) || self.output.contains(input) {
                    return Err(BatchError::InvalidJob(
                        "input and output prefixes overlap; a re-run would score its own output"
                            .into(),
                    ));
                }
                Ok(JobShape::Objects(input))
            }
            (None, Some(catalogue)) => {
                if catalogue.days == 0 || catalogue.days > MAX_DAYS {
                    return Err(BatchError::InvalidJob(format!(
                        "days must be from 1 to {MAX_DAYS}, not {}",
                        catalogue.days
                    )));
                }
                if catalogue.rows_per_partition == Some(0) {
                    return Err(BatchError::InvalidJob(
                        "rows_per_partition must be positive".into(),
                    ));
                }
                Ok(JobShape::Catalogue(catalogue))
            }
            (Some(_), Some(_)) => Err(BatchError::InvalidJob(
                "give either input or catalogue, not both".into(),
            )),
            (None, None) => Err(BatchError::InvalidJob(
                "give input (s3://bucket/prefix/) or catalogue ({start, days})".into(),
            )),
        }
    }

    /// The quantile levels asked for, ascending and distinct, or why they cannot be answered.
    pub fn levels(&self) -> Result<Option<Vec<f64>>, BatchError> {
        self.quantiles
            .as_deref()
            .map(parse_levels)
            .transpose()
            .map_err(|e| BatchError::InvalidJob(format!("quantiles: {e}")))
    }

    /// Key of the plan (the Distributed Map's item list).
    pub fn plan_key(&self) -> String {
        self.output.key("_plan/items.json")
    }

    /// Prefix of the Map's `ResultWriter` output.
    pub fn results_prefix(&self) -> String {
        self.output.key("_map")
    }

    /// Key of the run summary.
    pub fn summary_key(&self) -> String {
        self.output.key("_summary.json")
    }
}

/// One partition: what one worker invocation scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkItem {
    /// One CSV object `date,store,item[,id]`.
    Object {
        /// Partition id: the key below the input prefix, without `.csv`.
        id: String,
        /// Bucket of the object.
        bucket: String,
        /// Key of the object.
        key: String,
    },
    /// Every `(store, item)` of `pairs` for `days` days from `start`.
    Catalogue {
        /// Partition id.
        id: String,
        /// First day.
        start: NaiveDate,
        /// Number of days.
        days: u32,
        /// `[store, item]` pairs.
        pairs: Vec<[u32; 2]>,
    },
}

impl WorkItem {
    /// The partition id, which names its output, error and status objects.
    pub fn id(&self) -> &str {
        match self {
            Self::Object { id, .. } | Self::Catalogue { id, .. } => id,
        }
    }
}

/// Where one partition's objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKeys {
    /// The scored rows.
    pub output: String,
    /// The rejected rows, with line numbers.
    pub errors: String,
    /// The partition's report.
    pub status: String,
}

impl PartitionKeys {
    /// The keys of partition `id` under `output`.
    pub fn new(output: &S3Prefix, id: &str) -> Self {
        Self {
            output: output.key(&format!("{id}.csv")),
            errors: output.key(&format!("_errors/{id}.csv")),
            status: output.key(&format!("_status/{id}.json")),
        }
    }
}

/// What the planning step answers: where the item list is, for the Map's `ItemReader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOutput {
    /// Bucket of the item list.
    pub bucket: String,
    /// Key of the item list (a JSON array of [`WorkItem`]).
    pub key: String,
    /// Number of partitions.
    pub partitions: usize,
    /// Where the Map's `ResultWriter` writes (AWS writes the child results there).
    pub results_prefix: String,
    /// This run's id; statuses of other runs under the same output prefix do not count.
    pub run_id: String,
}

/// What one scored partition reports (also written to its status object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Partition id.
    pub id: String,
    /// The run that wrote it.
    pub run_id: String,
    /// Data rows read (every line after the header, or every generated row).
    pub rows_read: u64,
    /// Rows scored and written.
    pub rows_scored: u64,
    /// Rows rejected into the error file.
    pub bad_rows: u64,
    /// Key of the output.
    pub output_key: String,
    /// Key of the error file, when there were bad rows.
    pub errors_key: Option<String>,
}

/// The run summary, written to `_summary.json` under the output prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Partitions planned.
    pub partitions: usize,
    /// Partitions that reported success.
    pub succeeded_partitions: usize,
    /// Partitions without a success report of this run.
    pub failed_partitions: usize,
    /// The first failed partitions, by id.
    pub failed_partition_ids: Vec<String>,
    /// Rows read over all succeeded partitions.
    pub rows_read: u64,
    /// Rows scored.
    pub rows_scored: u64,
    /// Rows rejected into error files.
    pub bad_rows: u64,
    /// Model that scored them.
    pub model: ModelIdentity,
    /// When the summary was written, RFC 3339 UTC.
    pub finished_at: String,
}

/// Name and version of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
}

/// One invocation of the worker, as the state machine sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BatchEvent {
    /// Cut the job into work items and write them for the Map's `ItemReader`.
    Plan {
        /// The job.
        job: Job,
    },
    /// Score one work item.
    Score {
        /// The job.
        job: Job,
        /// The run, from the plan.
        run_id: String,
        /// The partition.
        item: WorkItem,
    },
    /// Add up the partitions' reports into the run summary.
    Summarize {
        /// The job.
        job: Job,
        /// The plan the Map ran.
        plan: PlanOutput,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_nest() {
        let out = S3Prefix::parse("s3://b/jobs/1").unwrap();
        assert_eq!(out.prefix, "jobs/1/");
        assert_eq!(out.key("x.csv"), "jobs/1/x.csv");
        assert!(S3Prefix::parse("s3://b/jobs/").unwrap().contains(&out));
        assert!(!S3Prefix::parse("s3://c/jobs/").unwrap().contains(&out));
        assert_eq!(S3Prefix::parse("s3://b").unwrap().prefix, "");
        assert!(S3Prefix::parse("b/x").is_err());
        assert!(S3Prefix::parse("s3:///x").is_err());
    }

    #[test]
    fn a_job_has_exactly_one_shape() {
        let job = |text: &str| serde_json::from_str::<Job>(text).unwrap();
        let objects = job(r#"{"output": "s3://b/out/", "input": "s3://b/in/"}"#);
        assert!(matches!(objects.shape(), Ok(JobShape::Objects(_))));
        let catalogue =
            job(r#"{"output": "s3://b/out/", "catalogue": {"start": "2018-01-01", "days": 90}}"#);
        assert!(matches!(catalogue.shape(), Ok(JobShape::Catalogue(_))));
        for bad in [
            r#"{"output": "s3://b/out/"}"#,
            r#"{"output": "s3://b/out/", "input": "s3://b/in/", "catalogue": {"start": "2018-01-01", "days": 1}}"#,
            r#"{"output": "s3://b/in/out/", "input": "s3://b/in/"}"#,
            r#"{"output": "s3://b/out/", "catalogue": {"start": "2018-01-01", "days": 0}}"#,
        ] {
            assert!(job(bad).shape().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Job>(r#"{"output": "b/out"}"#).is_err());
    }

    #[test]
    fn events_round_trip_in_the_state_machine_shape() {
        let text = r#"{"action": "score", "job": {"output": "s3://b/o/", "input": "s3://b/i/"}, "run_id": "r1",
            "item": {"kind": "object", "id": "p1", "bucket": "b", "key": "i/p1.csv"}}"#;
        let event: BatchEvent = serde_json::from_str(text).unwrap();
        let BatchEvent::Score { item, .. } = &event else {
            panic!("expected a score event")
        };
        assert_eq!(item.id(), "p1");
        let keys = PartitionKeys::new(&S3Prefix::parse("s3://b/o").unwrap(), "p1");
        assert_eq!(keys.output, "o/p1.csv");
        assert_eq!(keys.errors, "o/_errors/p1.csv");
        assert_eq!(keys.status, "o/_status/p1.json");
    }
}
