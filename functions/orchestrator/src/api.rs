//! Routing and the route handlers.

use std::sync::OnceLock;
use std::time::Instant;

use forecast::ForecastRequest;
use forecast::features::{self, Feature};
use forecast::manifest::TrainingDomain;
use forecast::wire::{DataframeSplit, ModelIdentity, PingResponse, PredictionsResponse};
use futures_util::{StreamExt, TryStreamExt, stream};
use lambda_http::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::config::Limits;
use crate::decode::{self, BodyError};
use crate::error::{ApiError, error_builder, json_response};
use crate::model_client::{ModelCallError, ModelClient};
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

/// What the orchestrator knows about the deployed model, learnt from its first ping.
#[derive(Debug, Clone)]
struct ModelInfo {
    features: Vec<Feature>,
    columns: Vec<String>,
    identity: ModelIdentity,
    domain: Option<TrainingDomain>,
    max_rows: Option<usize>,
}

impl ModelInfo {
    fn from_ping(ping: PingResponse) -> Result<Self, ModelCallError> {
        let features = Feature::resolve_all(&ping.features).map_err(|e| {
            ModelCallError::BadResponse(format!("the model needs a feature we cannot build: {e}"))
        })?;
        Ok(Self {
            columns: features::names(&features),
            features,
            identity: ping.model,
            domain: ping.domain,
            max_rows: ping.max_rows,
        })
    }
}

/// The API: a model client, the request limits, and the model's manifest, learnt once.
#[derive(Debug)]
pub struct Orchestrator<C> {
    client: C,
    limits: Limits,
    model: OnceCell<ModelInfo>,
}

impl<C: ModelClient> Orchestrator<C> {
    /// Builds the API around a model client.
    pub fn new(client: C, limits: Limits) -> Self {
        Self {
            client,
            limits,
            model: OnceCell::new(),
        }
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
        let result = match route {
            None => Err(ApiError::NotFound),
            Some(route) if route.method() != method => {
                Err(ApiError::MethodNotAllowed(route.allow()))
            }
            Some(route) => self.dispatch(route, &request, &mut trace).await,
        };
        let mut response = result.unwrap_or_else(ApiError::into_response);

        let model_version = trace
            .model_version
            .clone()
            .or_else(|| self.model.get().map(|m| m.identity.version.clone()))
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
            method = %method,
            route = record.route,
            path = %path,
            status = record.status,
            latency_ms = record.latency_ms,
            model_version = %model_version,
            model_invoke_ms = record.model_invoke_ms,
            model_invokes = trace.model_invokes,
            rows = trace.rows,
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
            Route::OpenApi => Ok(openapi()),
        }
    }

    async fn predict(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        let body = self.json_body(request)?;
        let forecast =
            ForecastRequest::from_json(&body, &["body"]).map_err(ApiError::Validation)?;
        let model = self.model_info(trace).await?;
        check_domain(model, &[forecast], |_| vec!["body".to_owned()])?;
        let (sales, _) = self.predict_rows(model, &[forecast], trace).await?;
        let sales = sales.first().copied().ok_or_else(|| {
            ModelCallError::BadResponse("no prediction for the request".to_owned())
        })?;
        Ok(json_response(ok_builder(), &PredictResponse { sales }))
    }

    async fn predict_batch(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        let body = self.json_body(request)?;
        let requests = decode::batch_instances(&body).map_err(ApiError::Validation)?;
        drop(body);
        let model = self.model_info(trace).await?;
        check_domain(model, &requests, |index| {
            vec!["body".to_owned(), "instances".to_owned(), index.to_string()]
        })?;
        let (sales, identity) = self.predict_rows(model, &requests, trace).await?;
        let predictions = requests
            .iter()
            .zip(sales)
            .map(|(request, sales)| BatchPrediction {
                date: request.date.to_string(),
                store: request.store.get(),
                item: request.item.get(),
                sales,
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
        let query = decode::forecast_query(request.uri().query()).map_err(ApiError::Validation)?;
        let requests = query.requests();
        let model = self.model_info(trace).await?;
        check_domain(model, &requests[..1], |_| vec!["query".to_owned()])?;
        let (sales, identity) = self.predict_rows(model, &requests, trace).await?;
        let forecast = requests
            .iter()
            .zip(sales)
            .map(|(request, sales)| ForecastPoint {
                date: request.date.to_string(),
                sales,
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
                // A healthy ping is as good as the first one: remember the model.
                if self.model.get().is_none()
                    && let Ok(info) = ModelInfo::from_ping(ping)
                {
                    let _already_set = self.model.set(info);
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

    /// The model's manifest, fetched with the first ping that succeeds and then cached.
    /// The first call pings the model; its time counts as model invoke time.
    async fn model_info(&self, trace: &mut Trace) -> Result<&ModelInfo, ModelCallError> {
        if let Some(model) = self.model.get() {
            return Ok(model);
        }
        let started = Instant::now();
        let model = self
            .model
            .get_or_try_init(|| async { ModelInfo::from_ping(self.ping().await?) })
            .await;
        trace.invoked(started, 1);
        model
    }

    /// Predicts `requests` in order: split into chunks of at most `chunk_rows` (and the
    /// model's `max_rows`), invoked with at most `concurrency` in flight, reassembled in
    /// request order. Every chunk must come back complete, finite and from one model.
    async fn predict_rows(
        &self,
        model: &ModelInfo,
        requests: &[ForecastRequest],
        trace: &mut Trace,
    ) -> Result<(Vec<f64>, ModelIdentity), ModelCallError> {
        let chunk_rows = self
            .limits
            .chunk_rows
            .min(model.max_rows.unwrap_or(usize::MAX))
            .max(1);
        let started = Instant::now();
        // The futures are built up front (they do nothing until polled); `buffered` polls at
        // most `concurrency` of them at once and yields their answers in chunk order.
        let calls: Vec<_> = requests
            .chunks(chunk_rows)
            .map(|chunk| self.predict_chunk(model, chunk))
            .collect();
        let invokes = calls.len();
        let chunks: Result<Vec<(Vec<f64>, ModelIdentity)>, ModelCallError> = stream::iter(calls)
            .buffered(self.limits.concurrency.max(1))
            .try_collect()
            .await;
        trace.invoked(started, invokes);
        let chunks = chunks?;
        let mut predictions = Vec::with_capacity(requests.len());
        let mut identity: Option<ModelIdentity> = None;
        for (values, model) in chunks {
            match &identity {
                Some(first) if *first != model => {
                    return Err(ModelCallError::BadResponse(format!(
                        "chunks answered by two models ({} and {})",
                        first.version, model.version
                    )));
                }
                Some(_) => {}
                None => identity = Some(model),
            }
            predictions.extend(values);
        }
        let identity = identity.ok_or_else(|| {
            ModelCallError::BadResponse("no rows were sent to the model".to_owned())
        })?;
        trace.model_version = Some(identity.version.clone());
        trace.rows = predictions.len();
        Ok((predictions, identity))
    }

    async fn predict_chunk(
        &self,
        model: &ModelInfo,
        chunk: &[ForecastRequest],
    ) -> Result<(Vec<f64>, ModelIdentity), ModelCallError> {
        let split = DataframeSplit {
            columns: model.columns.clone(),
            data: chunk
                .iter()
                .map(|request| features::build_row(&model.features, request))
                .collect(),
            index: None,
        };
        let answer: PredictionsResponse = decode_answer(
            self.client
                .invoke(json!({ "dataframe_split": split }))
                .await?,
        )?;
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
        Ok((answer.predictions, answer.model))
    }
}

/// 422 for every request whose store or item the model was not trained on; `loc` gives the
/// location prefix of request `index`.
fn check_domain(
    model: &ModelInfo,
    requests: &[ForecastRequest],
    loc: impl Fn(usize) -> Vec<String>,
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

/// The OpenAPI document, serialised once per process.
fn openapi() -> Response<Body> {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| openapi_document().to_string());
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
