//! The port to the model host, and its one real adapter: the Lambda Invoke API.

use std::future::Future;

use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use forecast::wire::{
    FunctionErrorBody, FunctionErrorType, PingRequest, PingResponse, PredictionsRequest,
    PredictionsResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::OrchestratorConfig;

/// Why a model invocation did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelCallError {
    /// The model function ran and reported an error (`errorType`, `errorMessage`).
    #[error("model function error {error_type}: {message}")]
    FunctionError {
        /// The reported `errorType`: one of the model host's kinds, or the runtime's own.
        error_type: FunctionErrorType,
        /// The reported `errorMessage`.
        message: String,
    },
    /// The model could not be reached, was throttled or does not exist.
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// The invocation did not finish in time.
    #[error("model invocation timed out")]
    Timeout,
    /// The model answered something that is not the documented payload.
    #[error("unexpected model response: {0}")]
    BadResponse(String),
    /// The model behind the alias kept changing while one request was answered (a rollout
    /// shifting traffic between two versions), so no single model's answer could be given.
    #[error("the model kept changing during the request: {0}")]
    Changing(String),
}

/// The model host, one synchronous invocation per call, in the wire layer's types: the
/// adapter owns the JSON, so callers (and the fakes in tests) never see it.
pub trait ModelClient: Send + Sync {
    /// Readiness and the model's manifest.
    fn ping(&self) -> impl Future<Output = Result<PingResponse, ModelCallError>> + Send;

    /// One prediction per row of `request`, from the model named in the answer.
    fn predict(
        &self,
        request: &PredictionsRequest,
    ) -> impl Future<Output = Result<PredictionsResponse, ModelCallError>> + Send;
}

/// [`ModelClient`] that calls the model function with `aws-sdk-lambda` (`RequestResponse`).
/// `AWS_ENDPOINT_URL_LAMBDA` points it at `cargo lambda watch` locally.
#[derive(Debug, Clone)]
pub struct LambdaModelClient {
    client: aws_sdk_lambda::Client,
    function_name: String,
}

impl LambdaModelClient {
    /// Builds the client from the standard AWS environment and `config`.
    pub async fn from_env(config: &OrchestratorConfig) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(config.model_timeout)
            .build();
        // A client waits on this call: one quick retry of a throttled or failed invoke, then
        // 503 with `Retry-After` rather than the SDK's default backoff eating the timeout.
        let retries = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(2)
            .with_initial_backoff(std::time::Duration::from_millis(50));
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .retry_config(retries)
            .load()
            .await;
        Self {
            client: aws_sdk_lambda::Client::new(&shared),
            function_name: config.model_function_name.clone(),
        }
    }
}

impl ModelClient for LambdaModelClient {
    async fn ping(&self) -> Result<PingResponse, ModelCallError> {
        self.invoke(&PingRequest::default()).await
    }

    async fn predict(
        &self,
        request: &PredictionsRequest,
    ) -> Result<PredictionsResponse, ModelCallError> {
        self.invoke(request).await
    }
}

impl LambdaModelClient {
    /// Sends `payload` as JSON and reads the answer as `T`.
    async fn invoke<T: DeserializeOwned>(
        &self,
        payload: &impl Serialize,
    ) -> Result<T, ModelCallError> {
        let body = serde_json::to_vec(payload)
            .map_err(|e| ModelCallError::BadResponse(format!("cannot encode payload: {e}")))?;
        let output = self
            .client
            .invoke()
            .function_name(&self.function_name)
            .payload(Blob::new(body))
            .send()
            .await
            .map_err(classify_sdk_error)?;
        let bytes = output.payload().map(Blob::as_ref).unwrap_or_default();
        read_answer(bytes, output.function_error().is_some())
    }
}

/// Reads the payload of an invocation: a function error's body when `failed`, else the
/// answer, which must be the documented `T` (anything else is the model's fault, a 502).
fn read_answer<T: DeserializeOwned>(bytes: &[u8], failed: bool) -> Result<T, ModelCallError> {
    if failed {
        let body: FunctionErrorBody = serde_json::from_slice(bytes).map_err(|_| {
            ModelCallError::BadResponse("function error without an error body".to_owned())
        })?;
        return Err(ModelCallError::FunctionError {
            error_type: body.error_type,
            message: body.error_message,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ModelCallError::BadResponse(e.to_string()))
}

fn classify_sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E>,
) -> ModelCallError {
    match &err {
        SdkError::TimeoutError(_) => ModelCallError::Timeout,
        SdkError::ServiceError(service) => {
            // Lambda reports a function error as HTTP 200 with `X-Amz-Function-Error`, but
            // `cargo lambda watch` answers it with HTTP 500 and the same body. Both are the
            // model's own error, not an unavailable model.
            let body = service.raw().body().bytes().unwrap_or_default();
            if let Ok(error) = serde_json::from_slice::<FunctionErrorBody>(body) {
                return ModelCallError::FunctionError {
                    error_type: error.error_type,
                    message: error.error_message,
                };
            }
            let code = service.err().code().unwrap_or("unknown");
            ModelCallError::Unavailable(format!(
                "Lambda Invoke API error {code} (HTTP {})",
                service.raw().status().as_u16()
            ))
        }
        _ => ModelCallError::Unavailable(DisplayErrorContext(&err).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_is_not_the_documented_payload_is_a_bad_response() {
        for bytes in [
            "",
            "not json",
            r#"{"predictions": [null], "model": {"name": "demand", "version": "v1"}}"#,
            r#"{"predictions": ["7"], "model": {"name": "demand", "version": "v1"}}"#,
            r#"{"predictions": [1.0]}"#,
        ] {
            let read = read_answer::<PredictionsResponse>(bytes.as_bytes(), false);
            assert!(
                matches!(read, Err(ModelCallError::BadResponse(_))),
                "{bytes}: {read:?}"
            );
        }
        let read: PredictionsResponse = read_answer(
            br#"{"predictions": [1.5], "model": {"name": "demand", "version": "v1"}}"#,
            false,
        )
        .unwrap();
        assert_eq!(read.predictions, [1.5]);
    }

    #[test]
    fn a_function_error_is_read_from_its_body() {
        let read = read_answer::<PingResponse>(
            br#"{"errorType": "SchemaMismatch", "errorMessage": "missing column year"}"#,
            true,
        );
        assert_eq!(
            read.unwrap_err(),
            ModelCallError::FunctionError {
                error_type: FunctionErrorType::Model(
                    forecast::wire::ModelErrorType::SchemaMismatch
                ),
                message: "missing column year".to_owned(),
            }
        );
        let read = read_answer::<PingResponse>(b"{}", true);
        assert!(
            matches!(read, Err(ModelCallError::BadResponse(_))),
            "{read:?}"
        );
    }
}
