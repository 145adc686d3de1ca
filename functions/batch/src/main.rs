//! Entry point of the `batch` Lambda: build the clients once, load the model once, then
//! answer the state machine's plan / score / summarize invocations.

use batch::{BatchEvent, BatchWorker, S3BatchStore};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use model::{ConfiguredStore, ModelConfig};

fn main() -> Result<(), Error> {
    ca_bundle::start_runtime(serve)
}

async fn serve(ca_bundle: Option<std::path::PathBuf>) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    tracing::debug!(?ca_bundle, "CA bundle named");
    let config = ModelConfig::from_env().inspect_err(|err| {
        tracing::error!(error = %err, "batch configuration is invalid");
    })?;
    let data = S3BatchStore::new(model::loader::s3_client_from_env().await);
    let models = ConfiguredStore::for_config(&config).await;
    let worker = BatchWorker::new(data, models, config.location);
    // Load at cold start; a failure is retried by the first invocation that needs the model.
    if let Err(err) = worker.model().await {
        tracing::error!(error = %err, "model not loaded at cold start");
    }
    let worker = &worker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<BatchEvent>| async move { worker.handle(event.payload).await },
    ))
    .await
}
