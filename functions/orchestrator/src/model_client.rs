//! The port to the model host, and its one real adapter: the Lambda Invoke API.

use std::future::Future;

use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use forecast::wire::{FunctionErrorBody, FunctionErrorType};
use serde_json::Value;

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

/// Synchronous invocation of the model host with a JSON payload.
pub trait ModelClient: Send + Sync {
    /// Sends `payload` and returns the model's JSON answer.
    fn invoke(&self, payload: Value) -> impl Future<Output = Result<Value, ModelCallError>> + Send;
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
    async fn invoke(&self, payload: Value) -> Result<Value, ModelCallError> {
        let body = serde_json::to_vec(&payload)
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
        if output.function_error().is_some() {
            let body: FunctionErrorBody = serde_json::from_slice(bytes).map_err(|_| {
                ModelCallError::BadResponse("function error without an error body".to_owned())
            })?;
            return Err(ModelCallError::FunctionError {
                error_type: body.error_type,
                message: body.error_message,
            });
        }
        serde_json::from_slice(bytes)
            .map_err(|e| ModelCallError::BadResponse(format!("response is not JSON: {e}")))
    }
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
