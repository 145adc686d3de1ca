//! Routing and the route handlers.

use forecast::ForecastRequest;
use forecast::features::{self, Feature};
use forecast::wire::{DataframeSplit, PingResponse, PredictionsResponse};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::error::{ApiError, json_response};
use crate::model_client::{ModelCallError, ModelClient};

/// The API: a model client plus the model's feature list, learnt once from a ping.
#[derive(Debug)]
pub struct Orchestrator<C> {
    client: C,
    features: OnceCell<Vec<Feature>>,
}

impl<C: ModelClient> Orchestrator<C> {
    /// Builds the API around a model client.
    pub fn new(client: C) -> Self {
        Self {
            client,
            features: OnceCell::new(),
        }
    }

    /// Answers one HTTP request; never fails, every error becomes a JSON response.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let result = match (path.as_str(), method) {
            ("/v1/api/predict", Method::POST) => self.predict(&request).await,
            ("/v1/api/predict", _) => Err(ApiError::MethodNotAllowed("POST")),
            ("/v1/api/health", Method::GET) => Ok(self.health().await),
            ("/v1/api/health", _) => Err(ApiError::MethodNotAllowed("GET")),
            _ => Err(ApiError::NotFound),
        };
        let response = result.unwrap_or_else(ApiError::into_response);
        tracing::info!(route = %path, status = response.status().as_u16(), "request answered");
        response
    }

    async fn predict(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = json_body(request)?;
        let forecast =
            ForecastRequest::from_json(&body, &["body"]).map_err(ApiError::Validation)?;
        let features = self.features().await?;
        let split = DataframeSplit {
            columns: features::names(features),
            data: vec![features::build_row(features, &forecast)],
            index: None,
        };
        let payload = json!({ "dataframe_split": split });
        let answer: PredictionsResponse = decode(self.client.invoke(payload).await?)?;
        let sales = match answer.predictions.as_slice() {
            [sales] if sales.is_finite() => *sales,
            other => {
                return Err(ModelCallError::BadResponse(format!(
                    "expected one finite prediction, got {other:?}"
                ))
                .into());
            }
        };
        Ok(json_response(ok_builder(), &json!({ "sales": sales })))
    }

    async fn health(&self) -> Response<Body> {
        match self.ping().await {
            Ok(ping) => json_response(
                ok_builder(),
                &json!({ "status": "healthy", "model": ping.model, "num_trees": ping.num_trees }),
            ),
            Err(err) => {
                tracing::warn!(error = %err, "health check failed");
                let builder = Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::RETRY_AFTER, "1");
                json_response(builder, &json!({ "detail": "the model is not ready" }))
            }
        }
    }

    async fn ping(&self) -> Result<PingResponse, ModelCallError> {
        decode(self.client.invoke(json!({ "ping": {} })).await?)
    }

    /// The model's features, fetched with the first ping that succeeds and then cached.
    async fn features(&self) -> Result<&[Feature], ModelCallError> {
        let features = self
            .features
            .get_or_try_init(|| async {
                let ping = self.ping().await?;
                Feature::resolve_all(&ping.features).map_err(|e| {
                    ModelCallError::BadResponse(format!(
                        "the model needs a feature we cannot build: {e}"
                    ))
                })
            })
            .await?;
        Ok(features)
    }
}

fn ok_builder() -> lambda_http::http::response::Builder {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ModelCallError> {
    serde_json::from_value(value).map_err(|e| ModelCallError::BadResponse(e.to_string()))
}

/// The request body as JSON: 400 for a wrong content type, an empty body or bad JSON.
fn json_body(request: &Request) -> Result<Value, ApiError> {
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        let is_json = content_type
            .to_str()
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::Malformed(
                "content type must be application/json".to_owned(),
            ));
        }
    }
    let bytes: &[u8] = request.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Malformed("the request body is empty".to_owned()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Malformed(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}
