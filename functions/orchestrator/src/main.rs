//! Entry point of the `orchestrator` Lambda.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use orchestrator::{LambdaModelClient, Orchestrator, OrchestratorConfig};

fn main() -> Result<(), Error> {
    // While the process has one thread: the runtime below starts the others.
    let ca_bundle = ca_bundle::name_ca_bundle();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(ca_bundle))
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
