//! Routing and the route handlers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use forecast::distribution::LevelMap;
use forecast::features;
use forecast::wire::{
    DataframeSplit, FunctionErrorType, ModelErrorType, ModelIdentity, PingResponse, PredictOptions,
    PredictionsResponse,
};
use forecast::{FieldError, ForecastRequest};
use futures_util::{StreamExt, TryStreamExt, stream};
use lambda_http::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

use crate::auth::{self, ApiAuth};
use crate::config::Limits;
use crate::decode::{self, BodyError};
use crate::error::{ApiError, error_builder, json_response};
use crate::model_client::{ModelCallError, ModelClient};
use crate::model_info::{ModelCache, ModelInfo};
use crate::observe::{self, RequestRecord, Trace};
use crate::schema::{
    BatchPrediction, BatchResponse, ErrorResponse, ForecastPoint, ForecastResponse, HealthResponse,
    ModelRef, PredictResponse, openapi_document,
};

/// `x-request-id`: the id to quote when asking about a request.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// `x-model-version`: the version of the model behind the answer.
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");

/// The API's routes; each path answers one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/api/predict`
    Predict,
    /// `POST /v1/api/predict/batch`
    Batch,
    /// `GET /v1/api/forecast`
    Forecast,
    /// `GET /v1/api/health`
    Health,
    /// `GET /v1/api/openapi.json`
    OpenApi,
}

impl Route {
    /// Every route.
    pub const ALL: [Self; 5] = [
        Self::Predict,
        Self::Batch,
        Self::Forecast,
        Self::Health,
        Self::OpenApi,
    ];

    /// The path, as API Gateway and the OpenAPI document declare it.
    pub fn path(self) -> &'static str {
        match self {
            Self::Predict => "/v1/api/predict",
            Self::Batch => "/v1/api/predict/batch",
            Self::Forecast => "/v1/api/forecast",
            Self::Health => "/v1/api/health",
            Self::OpenApi => "/v1/api/openapi.json",
        }
    }

    /// The one method the route answers.
    pub fn method(self) -> Method {
        match self {
            Self::Predict | Self::Batch => Method::POST,
            Self::Forecast | Self::Health | Self::OpenApi => Method::GET,
        }
    }

    /// The `Allow` header value for the route.
    fn allow(self) -> &'static str {
        match self {
            Self::Predict | Self::Batch => "POST",
            Self::Forecast | Self::Health | Self::OpenApi => "GET",
        }
    }

    fn find(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|route| route.path() == path)
    }
}

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
/// answering 422 (the default of [`Orchestrator::with_domain_recheck_after`]): a new model
/// trained on more stores is noticed by the first request for one, while a stream of
/// out-of-domain requests costs at most one ping per interval.
pub const DOMAIN_RECHECK_AFTER: Duration = Duration::from_secs(1);

/// A request's answers: one point per row and, when asked for, quantile columns by level.
#[derive(Debug, Default)]
struct Predicted {
    sales: Vec<f64>,
    quantiles: Option<LevelMap<Vec<f64>>>,
}

impl Predicted {
    /// The quantiles of row `row`, by level.
    fn quantiles_of(&self, row: usize) -> Option<LevelMap<f64>> {
        self.quantiles.as_ref().map(|columns| {
            LevelMap(
                columns
                    .0
                    .iter()
                    .map(|(key, column)| {
                        (key.clone(), column.get(row).copied().unwrap_or(f64::NAN))
                    })
                    .collect(),
            )
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

/// The API: a model client, the request limits, and the manifest of the model being served.
#[derive(Debug)]
pub struct Orchestrator<C> {
    client: C,
    limits: Limits,
    models: ModelCache,
    domain_recheck_after: Duration,
    auth: ApiAuth,
}

impl<C: ModelClient> Orchestrator<C> {
    /// Builds the API around a model client.
    pub fn new(client: C, limits: Limits) -> Self {
        Self {
            client,
            limits,
            models: ModelCache::default(),
            domain_recheck_after: DOMAIN_RECHECK_AFTER,
            auth: ApiAuth::None,
        }
    }

    /// Requires the callers `auth` admits (default [`ApiAuth::None`]); see [`auth`].
    #[must_use]
    pub fn with_auth(mut self, auth: ApiAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Re-reads a manifest older than `after` before answering a request outside its training
    /// domain with 422 (default [`DOMAIN_RECHECK_AFTER`]).
    #[must_use]
    pub fn with_domain_recheck_after(mut self, after: Duration) -> Self {
        self.domain_recheck_after = after;
        self
    }

    /// Answers one HTTP request; never fails, every error becomes a JSON response. Logs one
    /// line and writes one metrics record per request.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let request_id = observe::request_id(&request);
        let method = request.method().clone();
        let path = route_path(&request);
        let route = Route::find(&path);
        let mut trace = Trace::default();
        // Before anything else: a refused request is not routed, parsed or sent to the model.
        let caller = auth::caller(&request);
        let result = match (route, auth::authorize(self.auth, &caller)) {
            (_, Err(refusal)) => Ok(refusal.into_response()),
            (None, _) => Err(ApiError::NotFound),
            (Some(route), _) if route.method() != method => {
                Err(ApiError::MethodNotAllowed(route.allow()))
            }
            (Some(route), _) => self.dispatch(route, &request, &mut trace).await,
        };
        let mut response = result.unwrap_or_else(ApiError::into_response);

        let model_version = trace
            .model_version
            .clone()
            .or_else(|| self.models.current().map(|m| m.identity.version.clone()))
            .unwrap_or_else(|| "unknown".to_owned());
        for (name, value) in [
            (REQUEST_ID_HEADER, &request_id),
            (MODEL_VERSION_HEADER, &model_version),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(name, value);
            }
        }

        let record = RequestRecord {
            route: route.map_or("unmatched", Route::path),
            status: response.status().as_u16(),
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            model_invoke_ms: trace.model_invoke.as_secs_f64() * 1e3,
        };
        tracing::info!(
            request_id = %request_id,
            caller = %caller,
            method = %method,
            route = record.route,
            path = %path,
            status = record.status,
            latency_ms = record.latency_ms,
            model_version = %model_version,
            model_invoke_ms = record.model_invoke_ms,
            model_invokes = trace.model_invokes,
            rows = trace.rows,
            model_changes = trace.model_changes,
            "request answered"
        );
        observe::emit_metrics(&record);
        response
    }

    async fn dispatch(
        &self,
        route: Route,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        match route {
            Route::Predict => self.predict(request, trace).await,
            Route::Batch => self.predict_batch(request, trace).await,
            Route::Forecast => self.forecast(request, trace).await,
            Route::Health => Ok(self.health(trace).await),
            Route::OpenApi => Ok(openapi(self.auth)),
        }
    }

    async fn predict(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        let body = self.json_body(request)?;
        let forecast = ForecastRequest::from_json(&body, &["body"]);
        let options = decode::body_options(&body);
        let (forecast, options) = both(forecast, options)?;
        let (predicted, _) = self
            .predict_with_one_model(
                &[forecast],
                1,
                &|_| vec!["body".to_owned()],
                &options,
                trace,
            )
            .await
            .map_err(|e| no_distribution(e, "body", &options))?;
        let sales = predicted.sales.first().copied().ok_or_else(|| {
            ModelCallError::BadResponse("no prediction for the request".to_owned())
        })?;
        let quantiles = predicted.quantiles_of(0);
        Ok(json_response(
            ok_builder(),
            &PredictResponse { sales, quantiles },
        ))
    }

    async fn predict_batch(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        let body = self.json_body(request)?;
        let requests = decode::batch_instances(&body);
        let options = decode::body_options(&body);
        let (requests, options) = both(requests, options)?;
        drop(body);
        let at_instance =
            |index: usize| vec!["body".to_owned(), "instances".to_owned(), index.to_string()];
        let (predicted, identity) = self
            .predict_with_one_model(&requests, requests.len(), &at_instance, &options, trace)
            .await
            .map_err(|e| no_distribution(e, "body", &options))?;
        let predictions = requests
            .iter()
            .zip(&predicted.sales)
            .enumerate()
            .map(|(row, (request, sales))| BatchPrediction {
                date: request.date.to_string(),
                store: request.store.get(),
                item: request.item.get(),
                sales: *sales,
                quantiles: predicted.quantiles_of(row),
            })
            .collect();
        let answer = BatchResponse {
            predictions,
            model: identity.into(),
        };
        Ok(json_response(ok_builder(), &answer))
    }

    async fn forecast(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        let query = decode::forecast_query(request.uri().query());
        let options = decode::query_options(request.uri().query());
        let (query, options) = both(query, options)?;
        let requests = query.requests();
        // Every day has the same store and item: the first stands for all.
        let (predicted, identity) = self
            .predict_with_one_model(&requests, 1, &|_| vec!["query".to_owned()], &options, trace)
            .await
            .map_err(|e| no_distribution(e, "query", &options))?;
        let forecast = requests
            .iter()
            .zip(&predicted.sales)
            .enumerate()
            .map(|(row, (request, sales))| ForecastPoint {
                date: request.date.to_string(),
                sales: *sales,
                quantiles: predicted.quantiles_of(row),
            })
            .collect();
        let answer = ForecastResponse {
            store: query.first.store.get(),
            item: query.first.item.get(),
            start: query.first.date.to_string(),
            days: query.days,
            forecast,
            model: identity.into(),
        };
        Ok(json_response(ok_builder(), &answer))
    }

    async fn health(&self, trace: &mut Trace) -> Response<Body> {
        let started = Instant::now();
        let ping = self.ping().await;
        trace.invoked(started, 1);
        match ping {
            Ok(ping) if ping.status == "ready" => {
                trace.model_version = Some(ping.model.version.clone());
                let answer = HealthResponse {
                    status: "healthy".to_owned(),
                    model: ModelRef::from(ping.model.clone()),
                    num_trees: ping.num_trees,
                };
                // A healthy ping is as good as any: remember the model if it is a new one.
                if let Ok(info) = ModelInfo::from_ping(ping) {
                    self.models.learn(info);
                }
                json_response(ok_builder(), &answer)
            }
            Ok(ping) => {
                tracing::warn!(status = %ping.status, "the model is not ready");
                not_ready()
            }
            Err(err) => {
                tracing::warn!(error = %err, "health check failed");
                not_ready()
            }
        }
    }

    fn json_body(&self, request: &Request) -> Result<Value, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes);
        decode::json_body(
            content_type,
            request.body().as_ref(),
            self.limits.max_body_bytes,
        )
        .map_err(|err| match err {
            BodyError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            BodyError::Malformed(message) => ApiError::Malformed(message),
        })
    }

    async fn ping(&self) -> Result<PingResponse, ModelCallError> {
        decode_answer(self.client.invoke(json!({ "ping": {} })).await?)
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
        let refreshed = self.models.refresh(stale, || self.ping()).await;
        // A failed refresh failed in (or after) its own ping.
        let pinged = match &refreshed {
            Ok(refreshed) => refreshed.pinged,
            Err(_) => true,
        };
        trace.invoked(started, usize::from(pinged));
        refreshed.map(|r| r.info)
    }

    /// Predicts `requests` with one model, after checking the first `checked` of them against
    /// its training domain (`loc` locates request `index` in a 422). When a model answer shows
    /// the manifest is stale, the manifest is re-read and the whole request predicted again
    /// with the new model, at most [`MAX_MODEL_CHANGES`] times; every row of the answer comes
    /// from the one model it names.
    async fn predict_with_one_model(
        &self,
        requests: &[ForecastRequest],
        checked: usize,
        loc: &(dyn Fn(usize) -> Vec<String> + Sync),
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

    /// `rejected` is the 422 for requests outside `model`'s training domain. Unless the
    /// manifest is younger than the recheck interval, it is re-read first: the model may
    /// have been replaced by one trained on these ids. Returns the manifest they fit, or the
    /// 422 (also when the re-read fails: the request's own fault is what is known).
    async fn recheck_domain(
        &self,
        model: Arc<ModelInfo>,
        rejected: ApiError,
        checked: &[ForecastRequest],
        loc: &(dyn Fn(usize) -> Vec<String> + Sync),
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
            .limits
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
            .buffered(self.limits.concurrency.max(1))
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
        let mut tries = 0;
        loop {
            tries += 1;
            invokes.fetch_add(1, Ordering::Relaxed);
            let stale = match self.invoke_chunk(model, chunk, options).await {
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

    /// Invokes the model once with `chunk`'s rows built for `model`; the answer must hold one
    /// finite prediction per row.
    async fn invoke_chunk(
        &self,
        model: &ModelInfo,
        chunk: &[ForecastRequest],
        options: &PredictOptions,
    ) -> Result<(Predicted, ModelIdentity), ModelCallError> {
        let split = DataframeSplit {
            columns: model.columns.clone(),
            data: chunk
                .iter()
                .map(|request| features::build_row(&model.features, request))
                .collect(),
            index: None,
        };
        // A plain request sends exactly the payload it always did.
        let payload = if options.is_plain() {
            json!({ "dataframe_split": split })
        } else {
            json!({ "dataframe_split": split, "params": options })
        };
        let answer: PredictionsResponse = decode_answer(self.client.invoke(payload).await?)?;
        if answer.predictions.len() != chunk.len() {
            return Err(ModelCallError::BadResponse(format!(
                "expected {} predictions, got {}",
                chunk.len(),
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
                        column.len() == chunk.len() && column.iter().all(|q| q.is_finite())
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

/// Both validations' field errors in one 422, or both values.
fn both<A, B>(
    a: Result<A, Vec<FieldError>>,
    b: Result<B, Vec<FieldError>>,
) -> Result<(A, B), ApiError> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => Err(ApiError::Validation(
            a.err().into_iter().chain(b.err()).flatten().collect(),
        )),
    }
}

/// A model without a predictive distribution refuses quantiles and SMAPE points: that is the
/// request asking for what this model cannot answer, a 422 at the field that asked.
fn no_distribution(err: ApiError, at: &str, options: &PredictOptions) -> ApiError {
    match err {
        ApiError::Model(ModelCallError::FunctionError {
            error_type: FunctionErrorType::Model(ModelErrorType::NoDistribution),
            ..
        }) => {
            let field = if options.quantiles.is_some() {
                "quantiles"
            } else {
                "point"
            };
            ApiError::Validation(vec![FieldError::new(
                &[at, field],
                "the model being served has no predictive distribution, so it answers no quantiles and no SMAPE-optimal point; ask without them",
                "no_distribution",
            )])
        }
        other => other,
    }
}

/// 422 for every request whose store or item the model was not trained on; `loc` gives the
/// location prefix of request `index`.
fn check_domain(
    model: &ModelInfo,
    requests: &[ForecastRequest],
    loc: &(dyn Fn(usize) -> Vec<String> + Sync),
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

/// The OpenAPI document with the security scheme of `mode`, serialised once per process.
fn openapi(mode: ApiAuth) -> Response<Body> {
    static DOCUMENTS: [OnceLock<String>; 3] = [const { OnceLock::new() }; 3];
    let text = DOCUMENTS[mode.index()]
        .get_or_init(|| auth::document(openapi_document(), mode).to_string());
    let mut response = Response::new(Body::from(text.as_str()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn not_ready() -> Response<Body> {
    json_response(
        error_builder(StatusCode::SERVICE_UNAVAILABLE),
        &ErrorResponse {
            detail: "the model is not ready".to_owned(),
        },
    )
}

/// The path the routes are matched on. Behind a named HTTP API stage, `lambda_http` prefixes
/// the path with `/<stage>`; routes are declared without it, so it is removed here.
fn route_path(request: &Request) -> String {
    let path = request.uri().path();
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
        _ => None,
    };
    let path = match stage.as_deref() {
        Some(stage) if stage != "$default" => {
            let prefix = format!("/{stage}");
            match path.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => path,
            }
        }
        _ => path,
    };
    path.trim_end_matches('/').to_owned()
}

fn ok_builder() -> lambda_http::http::response::Builder {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
}

fn decode_answer<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ModelCallError> {
    serde_json::from_value(value).map_err(|e| ModelCallError::BadResponse(e.to_string()))
}

#[cfg(test)]
mod tests;
