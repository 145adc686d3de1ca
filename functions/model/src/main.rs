//! Entry point of the `model` Lambda: load the booster once, then serve invocations.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use model::{LoadedModel, ModelConfig, S3ObjectStore, handle_invocation, load_model};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = ModelConfig::from_env()?;
    let store = S3ObjectStore::from_env().await;
    let model: Arc<LoadedModel> = match load_model(&store, &config.location).await {
        Ok(model) => Arc::new(model),
        Err(err) => {
            tracing::error!(error = %err, "model initialisation failed");
            return Err(err.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let model = Arc::clone(&model);
        async move { handle_invocation(&model, event.payload) }
    }))
    .await
}
