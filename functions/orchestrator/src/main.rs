//! Entry point of the `orchestrator` Lambda.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use orchestrator::{LambdaModelClient, Orchestrator, OrchestratorConfig};

fn main() -> Result<(), Error> {
    ca_bundle::start_runtime(serve)
}

async fn serve(ca_bundle: Option<std::path::PathBuf>) -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    tracing::debug!(?ca_bundle, "CA bundle named");
    let config = OrchestratorConfig::from_env()?;
    let client = LambdaModelClient::from_env(&config).await;
    let app = Arc::new(Orchestrator::new(client, config.limits).with_auth(config.auth));
    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(app.handle(request).await) }
    }))
    .await
}
