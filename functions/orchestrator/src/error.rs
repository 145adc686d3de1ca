//! The API's error type and its one mapping to HTTP statuses and `{"detail": ...}` bodies.
//!
//! Client mistakes get a precise message; failures on our side get a generic one, and
//! their cause is logged, never returned.

use forecast::FieldError;
use forecast::wire::ModelErrorType;
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::json;

use crate::model_client::ModelCallError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (or not the announced content type).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The body is JSON but its fields are invalid.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// No such route.
    #[error("not found")]
    NotFound,
    /// The route exists with other methods.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// The model call failed.
    #[error(transparent)]
    Model(#[from] ModelCallError),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Model(ModelCallError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            // The model host is up but has no model loaded yet (it retries by itself).
            Self::Model(ModelCallError::FunctionError { error_type, .. })
                if error_type == ModelErrorType::ModelUnavailable.as_str() =>
            {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Model(ModelCallError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Self::Model(ModelCallError::FunctionError { .. } | ModelCallError::BadResponse(_)) => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The JSON response for this error; internal causes are logged here, not returned.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let detail = match &self {
            Self::Malformed(message) => json!(message),
            Self::Validation(errors) => json!(errors),
            Self::NotFound => json!("Not Found"),
            Self::MethodNotAllowed(_) => json!("Method Not Allowed"),
            Self::Model(cause) => {
                tracing::error!(error = %cause, status = status.as_u16(), "model call failed");
                json!(match cause {
                    _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                        "the model is unavailable, retry later"
                    }
                    ModelCallError::Timeout => "the model did not answer in time",
                    _ => "the model failed to produce a prediction",
                })
            }
        };
        let mut builder = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json");
        if let Self::MethodNotAllowed(allow) = self {
            builder = builder.header(header::ALLOW, allow);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            builder = builder.header(header::RETRY_AFTER, "1");
        }
        json_response(builder, &json!({ "detail": detail }))
    }
}

/// Serialises `value` into a response started by `builder`.
pub(crate) fn json_response(
    builder: lambda_http::http::response::Builder,
    value: &serde_json::Value,
) -> Response<Body> {
    let body = Body::from(value.to_string());
    builder.body(body).unwrap_or_else(|_| {
        // Only reachable with an invalid header value, which the constants above are not.
        let mut fallback = Response::new(Body::from(r#"{"detail":"internal error"}"#));
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}
