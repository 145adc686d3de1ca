//! The HTTP side: routing (by [`crate::routes::ROUTES`]), decoding, the route handlers and
//! their responses; what the model answers comes from [`crate::model`].

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use forecast::distribution::LevelMap;
use forecast::wire::{FunctionErrorType, ModelErrorType, ModelIdentity, PredictOptions};
use forecast::{FieldError, ForecastRequest};
use lambda_http::http::{HeaderName, HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

use crate::auth::{self, ApiAuth};
use crate::config::Limits;
use crate::decode::{self, BodyError};
use crate::error::{ApiError, error_builder, json_response};
use crate::model::{Locate, Model};
use crate::model_client::{ModelCallError, ModelClient};
use crate::observe::{self, RequestRecord, Trace};
use crate::routes::{Handler, Route};
use crate::schema::{
    BatchPrediction, BatchResponse, ErrorResponse, ForecastPoint, ForecastResponse, HealthResponse,
    ModelRef, PredictResponse, openapi_document,
};

/// `x-request-id`: the id to quote when asking about a request.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// `x-model-version`: the version of the model behind the answer.
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");

/// The API: the model behind the alias, the request limits, and who may call.
#[derive(Debug)]
pub struct Orchestrator<C> {
    pub(crate) model: Model<C>,
    limits: Limits,
    auth: ApiAuth,
}

impl<C: ModelClient> Orchestrator<C> {
    /// Builds the API around a model client.
    pub fn new(client: C, limits: Limits) -> Self {
        Self {
            model: Model::new(client, &limits),
            limits,
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
    /// domain with 422 (default [`crate::model::DOMAIN_RECHECK_AFTER`]).
    #[must_use]
    pub fn with_domain_recheck_after(mut self, after: Duration) -> Self {
        self.model = self.model.with_domain_recheck_after(after);
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
            (Some(route), _) if route.method != method => {
                Err(ApiError::MethodNotAllowed(route.method.as_str()))
            }
            (Some(route), _) => self.dispatch(route.handler, &request, &mut trace).await,
        };
        let mut response = result.unwrap_or_else(ApiError::into_response);

        let model_version = trace
            .model_version
            .clone()
            .or_else(|| self.model.current_version())
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
            route: route.map_or("unmatched", |route| route.path),
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
        handler: Handler,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        match handler {
            Handler::Predict => self.predict(request, trace).await,
            Handler::Batch => self.predict_batch(request, trace).await,
            Handler::Forecast => self.forecast(request, trace).await,
            Handler::Health => Ok(self.health(trace).await),
            Handler::OpenApi => Ok(openapi(self.auth)),
        }
    }

    async fn predict(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ApiError> {
        let read = |body: &Value| ForecastRequest::from_json(body, &["body"]);
        let (forecast, options) = self.body_with_options(request, read)?;
        let requests = [forecast];
        let at = |_| vec!["body".to_owned()];
        let (answers, _) = self
            .predict_each(&requests, 1, &at, ("body", &options), trace)
            .await?;
        let (_, sales, quantiles) = answers.into_iter().next().ok_or_else(|| {
            ModelCallError::BadResponse("no prediction for the request".to_owned())
        })?;
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
        let (requests, options) = self.body_with_options(request, decode::batch_instances)?;
        let at_instance =
            |index: usize| vec!["body".to_owned(), "instances".to_owned(), index.to_string()];
        let (answers, identity) = self
            .predict_each(
                &requests,
                requests.len(),
                &at_instance,
                ("body", &options),
                trace,
            )
            .await?;
        let predictions = answers
            .into_iter()
            .map(|(request, sales, quantiles)| BatchPrediction {
                date: request.date.to_string(),
                store: request.store.get(),
                item: request.item.get(),
                sales,
                quantiles,
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
        let at = |_| vec!["query".to_owned()];
        let (answers, identity) = self
            .predict_each(&requests, 1, &at, ("query", &options), trace)
            .await?;
        let forecast = answers
            .into_iter()
            .map(|(request, sales, quantiles)| ForecastPoint {
                date: request.date.to_string(),
                sales,
                quantiles,
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

    /// Predicts `requests` (the first `checked` checked against the model's domain) and pairs
    /// each with its point and quantiles. A model without distribution metadata is a 422 on
    /// the option asked for in `part` ("body" or "query").
    async fn predict_each<'r>(
        &self,
        requests: &'r [ForecastRequest],
        checked: usize,
        loc: Locate<'_>,
        (part, options): (&str, &PredictOptions),
        trace: &mut Trace,
    ) -> Result<(Vec<Answer<'r>>, ModelIdentity), ApiError> {
        let (predicted, identity) = self
            .model
            .predict(requests, checked, loc, options, trace)
            .await
            .map_err(|e| no_distribution(e, part, options))?;
        let rows = requests.iter().zip(predicted.rows());
        let answers = rows.map(|(request, (sales, quantiles))| (request, sales, quantiles));
        Ok((answers.collect(), identity))
    }

    async fn health(&self, trace: &mut Trace) -> Response<Body> {
        match self.model.health(trace).await {
            Ok(ping) if ping.status == "ready" => {
                let answer = HealthResponse {
                    status: "healthy".to_owned(),
                    model: ModelRef::from(ping.model),
                    num_trees: ping.num_trees,
                };
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

    /// What `read` takes from the JSON body, and the options (`quantiles`, `point`) it asks
    /// for, each validated; the body itself is dropped before the model is asked.
    fn body_with_options<T>(
        &self,
        request: &Request,
        read: impl FnOnce(&Value) -> Result<T, Vec<FieldError>>,
    ) -> Result<(T, PredictOptions), ApiError> {
        let body = self.json_body(request)?;
        both(read(&body), decode::body_options(&body))
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

/// A request, its predicted point and, when asked for, its quantiles by level.
type Answer<'r> = (&'r ForecastRequest, f64, Option<LevelMap<f64>>);

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

#[cfg(test)]
mod tests;
