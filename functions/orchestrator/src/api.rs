//! Routing and the route handlers.

use forecast::ForecastRequest;
use forecast::features::{self, Feature};
use forecast::wire::{DataframeSplit, PingResponse, PredictionsResponse};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
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
        let path = route_path(&request);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lambda_http::http::Request as HttpRequest;

    use super::*;

    /// A model host that answers pings with `features` and predictions with `predict`,
    /// recording every payload it receives.
    struct FakeModel {
        ping: Result<Vec<&'static str>, ModelCallError>,
        predict: Result<Value, ModelCallError>,
        seen: Mutex<Vec<Value>>,
    }

    impl FakeModel {
        fn answering(predictions: Value) -> Self {
            Self {
                ping: Ok(vec!["store", "item", "month", "day", "year"]),
                predict: Ok(
                    json!({"predictions": predictions, "model": {"name": "demand", "version": "v1"}}),
                ),
                seen: Mutex::new(Vec::new()),
            }
        }

        fn failing(error: ModelCallError) -> Self {
            Self {
                predict: Err(error),
                ..Self::answering(json!([]))
            }
        }
    }

    impl ModelClient for FakeModel {
        async fn invoke(&self, payload: Value) -> Result<Value, ModelCallError> {
            self.seen.lock().unwrap().push(payload.clone());
            if payload.get("ping").is_some() {
                return self.ping.clone().map(|features| {
                    json!({
                        "status": "ready",
                        "model": {"name": "demand", "version": "v1"},
                        "features": features,
                        "num_trees": 3000,
                        "source_uri": "s3://b/models/demand/v1/",
                        "model_sha256": "00",
                        "loaded_at": "2026-01-01T00:00:00Z"
                    })
                });
            }
            self.predict.clone()
        }
    }

    fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request {
        let mut builder = HttpRequest::builder().method(method).uri(path);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(Body::from(body.to_owned())).unwrap()
    }

    fn post_predict(body: &str) -> Request {
        request("POST", "/v1/api/predict", Some("application/json"), body)
    }

    async fn call(model: FakeModel, request: Request) -> (u16, Value, Orchestrator<FakeModel>) {
        let app = Orchestrator::new(model);
        let response = app.handle(request).await;
        let status = response.status().as_u16();
        let body = serde_json::from_slice(response.body().as_ref()).unwrap();
        (status, body, app)
    }

    #[tokio::test]
    async fn given_a_valid_request_when_predicting_then_the_model_gets_the_manifest_row() {
        let (status, body, app) = call(
            FakeModel::answering(json!([12.5])),
            post_predict(r#"{"date":"2018-01-01","store":1,"item":7}"#),
        )
        .await;
        assert_eq!((status, body), (200, json!({"sales": 12.5})));
        let seen = app.client.seen.lock().unwrap();
        assert_eq!(seen[0], json!({"ping": {}}));
        assert_eq!(
            seen[1],
            json!({"dataframe_split": {
                "columns": ["store", "item", "month", "day", "year"],
                "data": [[1.0, 7.0, 1.0, 0.0, 2018.0]]
            }})
        );
    }

    #[tokio::test]
    async fn given_a_model_with_another_feature_order_then_the_row_follows_it() {
        let model = FakeModel {
            ping: Ok(vec!["year", "day", "store", "item", "month"]),
            ..FakeModel::answering(json!([3.0]))
        };
        let (status, _, app) = call(
            model,
            post_predict(r#"{"date":"2017-12-31","store":2,"item":3}"#),
        )
        .await;
        assert_eq!(status, 200);
        let seen = app.client.seen.lock().unwrap();
        assert_eq!(
            seen[1]["dataframe_split"]["data"],
            json!([[2017.0, 6.0, 2.0, 3.0, 12.0]])
        );
    }

    #[tokio::test]
    async fn given_a_model_trained_on_calendar_features_then_they_are_built_without_code_change() {
        let model = FakeModel {
            ping: Ok(vec![
                "store",
                "item",
                "dayofyear",
                "weekofyear",
                "dayofmonth",
                "quarter",
                "is_weekend",
            ]),
            ..FakeModel::answering(json!([9.5]))
        };
        let (status, body, app) = call(
            model,
            post_predict(r#"{"date":"2016-12-31","store":4,"item":9}"#),
        )
        .await;
        assert_eq!((status, body), (200, json!({"sales": 9.5})));
        let seen = app.client.seen.lock().unwrap();
        assert_eq!(
            seen[1]["dataframe_split"]["data"],
            json!([[4.0, 9.0, 366.0, 52.0, 31.0, 4.0, 1.0]])
        );
    }

    #[tokio::test]
    async fn the_feature_list_is_fetched_once_and_cached() {
        let app = Orchestrator::new(FakeModel::answering(json!([1.0])));
        for _ in 0..3 {
            let response = app
                .handle(post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        let pings = app
            .client
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.get("ping").is_some())
            .count();
        assert_eq!(pings, 1);
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_with_a_detail() {
        for (content_type, body, needle) in [
            (Some("application/json"), "{\"date\": ", "not valid JSON"),
            (Some("application/json"), "", "empty"),
            (
                Some("text/plain"),
                r#"{"date":"2018-01-01","store":1,"item":1}"#,
                "application/json",
            ),
            (None, "[1,", "not valid JSON"),
        ] {
            let (status, body, _) = call(
                FakeModel::answering(json!([1.0])),
                request("POST", "/v1/api/predict", content_type, body),
            )
            .await;
            assert_eq!(status, 400, "{body}");
            assert!(body["detail"].as_str().unwrap().contains(needle), "{body}");
        }
    }

    #[tokio::test]
    async fn invalid_fields_are_422_naming_each_field() {
        let (status, body, app) = call(
            FakeModel::answering(json!([1.0])),
            post_predict(r#"{"date":"tomorrow","item":-1}"#),
        )
        .await;
        assert_eq!(status, 422);
        let locs: Vec<String> = body["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["loc"][1].as_str().unwrap(),
                    e["type"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            locs,
            [
                "date:date_parsing",
                "store:missing",
                "item:greater_than_equal"
            ]
        );
        assert!(
            app.client.seen.lock().unwrap().is_empty(),
            "an invalid request must not reach the model"
        );
    }

    #[tokio::test]
    async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
        let (status, body, _) = call(
            FakeModel::answering(json!([])),
            request("GET", "/v1/api/nope", None, ""),
        )
        .await;
        assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
        let app = Orchestrator::new(FakeModel::answering(json!([])));
        let response = app
            .handle(request("GET", "/v1/api/predict", None, ""))
            .await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }

    #[tokio::test]
    async fn model_failures_map_to_502_503_504_without_leaking_the_cause() {
        let secret = "arn:aws:lambda:eu-west-1:123:function:model stack trace at src/x.rs:1";
        for (error, expected) in [
            (
                ModelCallError::FunctionError {
                    error_type: "Internal".into(),
                    message: secret.into(),
                },
                502,
            ),
            (ModelCallError::BadResponse(secret.into()), 502),
            (ModelCallError::Unavailable(secret.into()), 503),
            (
                ModelCallError::FunctionError {
                    error_type: "ModelUnavailable".into(),
                    message: secret.into(),
                },
                503,
            ),
            (ModelCallError::Timeout, 504),
        ] {
            let app = Orchestrator::new(FakeModel::failing(error));
            let response = app
                .handle(post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#))
                .await;
            assert_eq!(response.status().as_u16(), expected);
            if expected == 503 {
                assert!(response.headers().contains_key(header::RETRY_AFTER));
            }
            let text = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
            assert!(text.starts_with(r#"{"detail":"#), "{text}");
            assert!(
                !text.contains("arn:") && !text.contains("src/"),
                "leaked: {text}"
            );
        }
    }

    #[tokio::test]
    async fn a_prediction_that_is_not_one_finite_number_is_a_502() {
        for predictions in [json!([]), json!([1.0, 2.0])] {
            let (status, _, _) = call(
                FakeModel::answering(predictions),
                post_predict(r#"{"date":"2018-01-01","store":1,"item":1}"#),
            )
            .await;
            assert_eq!(status, 502);
        }
    }

    #[tokio::test]
    async fn health_is_200_with_the_model_or_503_when_it_cannot_be_reached() {
        let (status, body, _) = call(
            FakeModel::answering(json!([])),
            request("GET", "/v1/api/health", None, ""),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["model"], json!({"name": "demand", "version": "v1"}));

        let down = FakeModel {
            ping: Err(ModelCallError::Unavailable("connection refused".into())),
            ..FakeModel::answering(json!([]))
        };
        let (status, body, _) = call(down, request("GET", "/v1/api/health", None, "")).await;
        assert_eq!(
            (status, body),
            (503, json!({"detail": "the model is not ready"}))
        );
    }

    #[tokio::test]
    async fn real_api_gateway_v2_events_are_routed() {
        let events = [
            (include_str!("../../../data/events/predict.json"), 200),
            (include_str!("../../../data/events/health.json"), 200),
            (
                include_str!("../../../data/events/predict-malformed.json"),
                400,
            ),
        ];
        for (event, expected) in events {
            let request = lambda_http::request::from_str(event).unwrap();
            let app = Orchestrator::new(FakeModel::answering(json!([4.25])));
            let response = app.handle(request).await;
            assert_eq!(response.status().as_u16(), expected, "{event}");
        }
    }
}
