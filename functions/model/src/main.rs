//! Entry point of the `model` Lambda: load the booster once, then serve invocations.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use model::{ConfiguredStore, ModelConfig, ModelHost};
use serde_json::value::RawValue;

fn main() -> Result<(), Error> {
    // Before anything large is allocated (see `model::memory`).
    let fixed_threshold = model::memory::fix_mmap_threshold();
    ca_bundle::start_runtime(|ca_bundle| serve(fixed_threshold, ca_bundle))
}

async fn serve(fixed_threshold: bool, ca_bundle: Option<std::path::PathBuf>) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    tracing::debug!(
        fixed_threshold,
        ?ca_bundle,
        "malloc's mmap threshold, CA bundle named"
    );
    let config = match ModelConfig::from_env() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "model configuration is invalid");
            return Err(err.into());
        }
    };
    let store = ConfiguredStore::for_config(&config).await;
    let host = Arc::new(ModelHost::start(store, config.location, config.max_rows).await);
    // The payload stays JSON text until the host decodes it straight into one vector of
    // numbers; a generic JSON tree of a large batch would cost four times the memory.
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let host = Arc::clone(&host);
        async move { host.invoke(event.payload).await.map_err(model::diagnostic) }
    }))
    .await
}
