//! The model side of a request: which model answers it, and how its rows reach it.
//!
//! [`Model`] holds the model client and the manifest of the model behind the alias
//! ([`info`]). It checks requests against the model's training domain, builds the feature
//! rows the manifest names, splits them into invocations of at most the model's row limit,
//! sends those concurrently and reassembles the answers in request order. When an answer
//! shows that the model behind the alias changed, it re-reads the manifest and predicts the
//! whole request again, so that every answer comes from one model. The HTTP side (`api`)
//! only hands it parsed requests and turns its results into responses.

pub mod info;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use forecast::ForecastRequest;
use forecast::distribution::LevelMap;
use forecast::features;
use forecast::wire::{
    DataframeSplit, FunctionErrorType, ModelErrorType, ModelIdentity, PingResponse, PredictOptions,
    PredictionsRequest,
};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::config::Limits;
use crate::decode;
use crate::error::ApiError;
use crate::model_client::{ModelCallError, ModelClient};
use crate::observe::Trace;
use info::{ModelCache, ModelInfo};

/// How many times one request may find the model changed under it (re-read the manifest,
/// predict again) before it answers 503. A swap needs one; more only happen while a gradual
/// rollout sends each invocation to either of two models.
pub const MAX_MODEL_CHANGES: usize = 3;

/// Invocations one chunk gets while the model answering it is not the one its rows were built
/// for. During a gradual rollout the alias sends each invocation to either of two models; with
/// 10% of them going to the new one, three tries leave one chunk in a thousand unanswered by
/// the model the request started with (and that request then re-reads the manifest).
pub const CHUNK_TRIES: usize = 3;

/// Age of the manifest after which a request outside its training domain re-reads it before
/// answering 422 (the default of [`Model::with_domain_recheck_after`]): a new model trained
/// on more stores is noticed by the first request for one, while a stream of out-of-domain
/// requests costs at most one ping per interval.
pub const DOMAIN_RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Locates request `index` in a 422 (`["body", "instances", "7"]`, `["query"]`, ...).
pub type Locate<'a> = &'a (dyn Fn(usize) -> Vec<String> + Sync);

/// A request's answers: one point per row and, when asked for, quantile columns by level.
#[derive(Debug, Default)]
pub struct Predicted {
    /// One point per row, in request order.
    pub sales: Vec<f64>,
    /// When asked for: per level, one quantile per row.
    pub quantiles: Option<LevelMap<Vec<f64>>>,
}

impl Predicted {
    /// Each row's point and, when asked for, its quantiles by level, in request order.
    pub fn rows(&self) -> impl Iterator<Item = (f64, Option<LevelMap<f64>>)> + '_ {
        self.sales.iter().enumerate().map(|(row, sales)| {
            let quantiles = self.quantiles.as_ref().map(|columns| {
                LevelMap(
                    columns
                        .0
                        .iter()
                        .map(|(key, column)| {
                            (key.clone(), column.get(row).copied().unwrap_or(f64::NAN))
                        })
                        .collect(),
                )
            });
            (*sales, quantiles)
        })
    }

    /// Appends the answers of the next chunk.
    fn extend(&mut self, chunk: Predicted) {
        self.sales.extend(chunk.sales);
        match (&mut self.quantiles, chunk.quantiles) {
            (Some(columns), Some(more)) => {
                for ((_, column), (_, extra)) in columns.0.iter_mut().zip(more.0) {
                    column.extend(extra);
                }
            }
            (slot @ None, more) => *slot = more,
            (Some(_), None) => {}
        }
    }
}

/// How one attempt at predicting a request's rows ended.
enum Prediction {
    /// Every row, in order, from the model the manifest describes.
    Done(Predicted),
    /// A model answer showed the manifest is stale (why, for the log).
    ModelChanged(String),
}

/// Why one chunk has no predictions.
enum ChunkFailure {
    /// The invocation failed.
    Call(ModelCallError),
    /// Another model answered, or refused the manifest's columns.
    ModelChanged(String),
}

/// The model behind the alias: its client, the manifest in use, and how rows are sent to it.
#[derive(Debug)]
pub struct Model<C> {
    /// The port to the model host.
    pub(crate) client: C,
    models: ModelCache,
    chunk_rows: usize,
    concurrency: usize,
    domain_recheck_after: Duration,
}

impl<C: ModelClient> Model<C> {
    /// Wraps `client`, invoking it with at most `limits.chunk_rows` rows per invocation and
    /// `limits.concurrency` invocations in flight per request.
    pub fn new(client: C, limits: &Limits) -> Self {
        Self {
            client,
            models: ModelCache::default(),
            chunk_rows: limits.chunk_rows,
            concurrency: limits.concurrency,
            domain_recheck_after: DOMAIN_RECHECK_AFTER,
        }
    }

    /// Re-reads a manifest older than `after` before answering a request outside its training
    /// domain with 422 (default [`DOMAIN_RECHECK_AFTER`]).
    #[must_use]
    pub fn with_domain_recheck_after(mut self, after: Duration) -> Self {
        self.domain_recheck_after = after;
        self
    }

    /// The version of the model in use, if the model was ever reached.
    pub fn current_version(&self) -> Option<String> {
        self.models.current().map(|m| m.identity.version.clone())
    }

    /// Pings the model for a health check. A ready model's manifest is as good as any other
    /// ping's: it is remembered when it names a new model.
    pub async fn health(&self, trace: &mut Trace) -> Result<PingResponse, ModelCallError> {
        let started = Instant::now();
        let ping = self.client.ping().await;
        trace.invoked(started, 1);
        if let Ok(ping) = &ping
            && ping.status == "ready"
        {
            trace.model_version = Some(ping.model.version.clone());
            if let Ok(info) = ModelInfo::from_ping(ping.clone()) {
                self.models.learn(info);
            }
        }
        ping
    }

    /// Predicts `requests` with one model, after checking the first `checked` of them against
    /// its training domain (`loc` locates request `index` in a 422). When a model answer shows
    /// the manifest is stale, the manifest is re-read and the whole request predicted again
    /// with the new model, at most [`MAX_MODEL_CHANGES`] times; every row of the answer comes
    /// from the one model it names.
    pub async fn predict(
        &self,
        requests: &[ForecastRequest],
        checked: usize,
        loc: Locate<'_>,
        options: &PredictOptions,
        trace: &mut Trace,
    ) -> Result<(Predicted, ModelIdentity), ApiError> {
        let checked = &requests[..checked.min(requests.len())];
        let mut model = self.model_info(trace).await?;
        let mut changes = 0;
        loop {
            if let Err(rejected) = check_domain(&model, checked, loc) {
                model = self
                    .recheck_domain(model, rejected, checked, loc, trace)
                    .await?;
            }
            match self.predict_rows(&model, requests, options, trace).await? {
                Prediction::Done(predicted) => return Ok((predicted, model.identity.clone())),
                Prediction::ModelChanged(reason) => {
                    changes += 1;
                    tracing::info!(
                        reason = %reason,
                        version = %model.identity.version,
                        attempt = changes,
                        "the model changed under the request; re-reading its manifest"
                    );
                    if changes > MAX_MODEL_CHANGES {
                        return Err(ModelCallError::Changing(reason).into());
                    }
                    trace.model_changes = changes;
                    model = self.refresh(Some(&model), trace).await?;
                }
            }
        }
    }

    /// The model's manifest: the one in use, or the first ping's.
    async fn model_info(&self, trace: &mut Trace) -> Result<Arc<ModelInfo>, ModelCallError> {
        match self.models.current() {
            Some(model) => Ok(model),
            None => self.refresh(None, trace).await,
        }
    }

    /// Re-reads the manifest that replaces `stale` (single-flight, see [`ModelCache`]). The
    /// wait counts as model invoke time, the ping as an invocation when this call sent it.
    async fn refresh(
        &self,
        stale: Option<&Arc<ModelInfo>>,
        trace: &mut Trace,
    ) -> Result<Arc<ModelInfo>, ModelCallError> {
        let started = Instant::now();
        let refreshed = self.models.refresh(stale, || self.client.ping()).await;
        // A failed refresh failed in (or after) its own ping.
        let pinged = match &refreshed {
            Ok(refreshed) => refreshed.pinged,
            Err(_) => true,
        };
        trace.invoked(started, usize::from(pinged));
        refreshed.map(|r| r.info)
    }

    /// `rejected` is the 422 for requests outside `model`'s training domain. Unless the
    /// manifest is younger than the recheck interval, it is re-read first: the model may
    /// have been replaced by one trained on these ids. Returns the manifest they fit, or the
    /// 422 (also when the re-read fails: the request's own fault is what is known).
    async fn recheck_domain(
        &self,
        model: Arc<ModelInfo>,
        rejected: ApiError,
        checked: &[ForecastRequest],
        loc: Locate<'_>,
        trace: &mut Trace,
    ) -> Result<Arc<ModelInfo>, ApiError> {
        if model.learnt_at.elapsed() < self.domain_recheck_after {
            return Err(rejected);
        }
        match self.refresh(Some(&model), trace).await {
            Ok(fresh) => {
                check_domain(&fresh, checked, loc)?;
                Ok(fresh)
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not re-read the manifest for a 422");
                Err(rejected)
            }
        }
    }

    /// Predicts `requests` in order with `model`: split into chunks of at most `chunk_rows`
    /// (and the model's `max_rows`), invoked with at most `concurrency` in flight, reassembled
    /// in request order. Every chunk must come back complete, finite and from `model`.
    async fn predict_rows(
        &self,
        model: &Arc<ModelInfo>,
        requests: &[ForecastRequest],
        options: &PredictOptions,
        trace: &mut Trace,
    ) -> Result<Prediction, ModelCallError> {
        let chunk_rows = self
            .chunk_rows
            .min(model.max_rows.unwrap_or(usize::MAX))
            .max(1);
        let started = Instant::now();
        let invokes = AtomicUsize::new(0);
        // The futures are built up front (they do nothing until polled); `buffered` polls at
        // most `concurrency` of them at once and yields their answers in chunk order. The
        // first failure drops the rest, cancelling their invocations.
        let calls: Vec<_> = requests
            .chunks(chunk_rows)
            .map(|chunk| self.predict_chunk(model, chunk, options, &invokes))
            .collect();
        let chunks: Result<Vec<Predicted>, ChunkFailure> = stream::iter(calls)
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await;
        trace.invoked(started, invokes.load(Ordering::Relaxed));
        let predictions = match chunks {
            Ok(chunks) => chunks
                .into_iter()
                .fold(Predicted::default(), |mut all, chunk| {
                    all.extend(chunk);
                    all
                }),
            Err(ChunkFailure::Call(err)) => return Err(err),
            Err(ChunkFailure::ModelChanged(reason)) => {
                return Ok(Prediction::ModelChanged(reason));
            }
        };
        if predictions.sales.is_empty() {
            return Err(ModelCallError::BadResponse(
                "no rows were sent to the model".to_owned(),
            ));
        }
        trace.model_version = Some(model.identity.version.clone());
        trace.rows = predictions.sales.len();
        Ok(Prediction::Done(predictions))
    }

    /// One chunk's predictions from `model`. An answer from another model, or a refusal of
    /// `model`'s columns, is tried again (up to [`CHUNK_TRIES`] invocations): while a gradual
    /// rollout shifts traffic, the alias sends each invocation to either version, and the
    /// next one often reaches the model the rows were built for. If none does, or another
    /// request has meanwhile learnt that the model changed, the manifest is stale.
    async fn predict_chunk(
        &self,
        model: &Arc<ModelInfo>,
        chunk: &[ForecastRequest],
        options: &PredictOptions,
        invokes: &AtomicUsize,
    ) -> Result<Predicted, ChunkFailure> {
        let request = PredictionsRequest {
            dataframe_split: DataframeSplit {
                columns: model.columns.clone(),
                data: chunk
                    .iter()
                    .map(|request| features::build_row(&model.features, request))
                    .collect(),
                index: None,
            },
            params: options.clone(),
        };
        let mut tries = 0;
        loop {
            tries += 1;
            invokes.fetch_add(1, Ordering::Relaxed);
            let stale = match self.invoke_chunk(&request, options).await {
                Ok((predictions, identity)) if identity == model.identity => {
                    return Ok(predictions);
                }
                Ok((_, identity)) => format!(
                    "answered by {}/{} instead of {}/{}",
                    identity.name, identity.version, model.identity.name, model.identity.version
                ),
                Err(ModelCallError::FunctionError {
                    error_type: FunctionErrorType::Model(ModelErrorType::SchemaMismatch),
                    message,
                }) => format!(
                    "the columns of {}/{} were refused: {message}",
                    model.identity.name, model.identity.version
                ),
                Err(err) => return Err(ChunkFailure::Call(err)),
            };
            let replaced = self
                .models
                .current()
                .is_some_and(|current| !Arc::ptr_eq(&current, model));
            if tries >= CHUNK_TRIES || replaced {
                return Err(ChunkFailure::ModelChanged(stale));
            }
        }
    }

    /// Invokes the model once with `request`; the answer must hold one finite prediction per
    /// row and, when `options` asks for them, one finite quantile per row and level.
    async fn invoke_chunk(
        &self,
        request: &PredictionsRequest,
        options: &PredictOptions,
    ) -> Result<(Predicted, ModelIdentity), ModelCallError> {
        let rows = request.dataframe_split.data.len();
        let answer = self.client.predict(request).await?;
        if answer.predictions.len() != rows {
            return Err(ModelCallError::BadResponse(format!(
                "expected {rows} predictions, got {}",
                answer.predictions.len()
            )));
        }
        if let Some(bad) = answer.predictions.iter().find(|p| !p.is_finite()) {
            return Err(ModelCallError::BadResponse(format!(
                "the model answered a non-finite prediction ({bad})"
            )));
        }
        let quantiles = match (&options.quantiles, answer.quantiles) {
            (None, _) => None,
            (Some(levels), Some(columns)) => {
                let complete = columns.0.len() == levels.len()
                    && columns.0.iter().all(|(_, column)| {
                        column.len() == rows && column.iter().all(|q| q.is_finite())
                    });
                if !complete {
                    return Err(ModelCallError::BadResponse(
                        "the model's quantiles do not match the levels and rows asked for"
                            .to_owned(),
                    ));
                }
                Some(columns)
            }
            (Some(_), None) => {
                return Err(ModelCallError::BadResponse(
                    "the model answered no quantiles".to_owned(),
                ));
            }
        };
        Ok((
            Predicted {
                sales: answer.predictions,
                quantiles,
            },
            answer.model,
        ))
    }
}

/// 422 for every request whose store or item the model was not trained on; `loc` gives the
/// location prefix of request `index`.
fn check_domain(
    model: &ModelInfo,
    requests: &[ForecastRequest],
    loc: Locate<'_>,
) -> Result<(), ApiError> {
    let Some(domain) = &model.domain else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let prefix = loc(index);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        errors.extend(domain.check(request, &prefix));
        if errors.len() >= decode::MAX_REPORTED_ERRORS {
            errors.truncate(decode::MAX_REPORTED_ERRORS);
            break;
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}
