//! Entry point of the `orchestrator` Lambda.

use std::sync::Arc;

use lambda_http::{Error, Request, service_fn};
use orchestrator::{LambdaModelClient, Orchestrator, OrchestratorConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = OrchestratorConfig::from_env()?;
    let client = LambdaModelClient::from_env(&config).await;
    let app = Arc::new(Orchestrator::new(client, config.limits).with_auth(config.auth));
    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(app.handle(request).await) }
    }))
    .await
}
