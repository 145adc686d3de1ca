//! The API's error type and its one mapping to HTTP statuses and `{"detail": ...}` bodies.
//!
//! Client mistakes get a precise message; failures on our side get a generic one, and
//! their cause is logged, never returned.

use forecast::FieldError;
use forecast::wire::{FunctionErrorType, ModelErrorType};
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::model_client::ModelCallError;
use crate::schema::{ErrorResponse, ValidationError, ValidationErrorResponse};

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (or not the announced content type).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The body is larger than the configured limit.
    #[error("payload too large (limit {limit} bytes)")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
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
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Model(ModelCallError::Unavailable(_) | ModelCallError::Changing(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // The model host is up but has no model loaded yet (it retries by itself).
            Self::Model(ModelCallError::FunctionError {
                error_type: FunctionErrorType::Model(ModelErrorType::ModelUnavailable),
                ..
            }) => StatusCode::SERVICE_UNAVAILABLE,
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
            Self::Malformed(message) => message.clone(),
            Self::PayloadTooLarge { limit } => {
                format!("the request body is larger than the limit of {limit} bytes")
            }
            Self::Validation(errors) => {
                let body = ValidationErrorResponse {
                    detail: errors.iter().cloned().map(ValidationError::from).collect(),
                };
                return json_response(error_builder(status), &body);
            }
            Self::NotFound => "Not Found".to_owned(),
            Self::MethodNotAllowed(_) => "Method Not Allowed".to_owned(),
            Self::Model(cause) => {
                tracing::error!(error = %cause, status = status.as_u16(), "model call failed");
                match cause {
                    _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                        "the model is unavailable, retry later"
                    }
                    ModelCallError::Timeout => "the model did not answer in time",
                    _ => "the model failed to produce a prediction",
                }
                .to_owned()
            }
        };
        let mut builder = error_builder(status);
        if let Self::MethodNotAllowed(allow) = self {
            builder = builder.header(header::ALLOW, allow);
        }
        json_response(builder, &ErrorResponse { detail })
    }
}

/// A JSON response with `status`; 503s also say when to retry.
pub(crate) fn error_builder(status: StatusCode) -> lambda_http::http::response::Builder {
    let builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        builder.header(header::RETRY_AFTER, RETRY_AFTER_SECONDS)
    } else {
        builder
    }
}

/// Serialises `value` into a response started by `builder`.
pub(crate) fn json_response<T: Serialize>(
    builder: lambda_http::http::response::Builder,
    value: &T,
) -> Response<Body> {
    let body = serde_json::to_string(value).map(Body::from);
    match body.map(|body| builder.body(body)) {
        Ok(Ok(response)) => response,
        // Only reachable with a non-finite number or an invalid header value; the handlers
        // check predictions are finite and use constant headers.
        _ => {
            tracing::error!("a response could not be serialised");
            let mut fallback = Response::new(Body::from(r#"{"detail":"internal error"}"#));
            *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        }
    }
}
