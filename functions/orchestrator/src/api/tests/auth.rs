//! Authorization in the handler, with API Gateway v2 events: `sam local generate-event`'s own
//! (whose JWT context names no subject), and the committed fixtures edited to carry an IAM
//! caller, a JWT subject, or no authorizer at all (`data/events/generate.sh`). In `IAM` and
//! `JWT` mode an event without the mode's identity is refused before any work; the caller is
//! named in the log line, the token never.

use std::io::Write;
use std::sync::Arc;

use lambda_http::tracing::subscriber;

use super::*;
use crate::auth::{self, ApiAuth};

const CALLER_IAM: &str = include_str!("../../../../../data/events/predict-caller-iam.json");
const CALLER_JWT: &str = include_str!("../../../../../data/events/predict-caller-jwt.json");
const CALLER_NONE: &str = include_str!("../../../../../data/events/predict-caller-none.json");

/// Every committed orchestrator event: what API Gateway sends for each route, as generated.
const GENERATED: [&str; 11] = [
    include_str!("../../../../../data/events/predict.json"),
    include_str!("../../../../../data/events/predict-malformed.json"),
    include_str!("../../../../../data/events/predict-invalid.json"),
    include_str!("../../../../../data/events/predict-wrong-method.json"),
    include_str!("../../../../../data/events/batch.json"),
    include_str!("../../../../../data/events/forecast.json"),
    include_str!("../../../../../data/events/forecast-invalid.json"),
    include_str!("../../../../../data/events/health.json"),
    include_str!("../../../../../data/events/health-named-stage.json"),
    include_str!("../../../../../data/events/openapi.json"),
    include_str!("../../../../../data/events/not-found.json"),
];

/// The event without `requestContext.authorizer`: no authorizer ran.
fn without_authorizer(event: &str) -> String {
    let mut event: Value = serde_json::from_str(event).unwrap();
    event["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    event.to_string()
}

fn app(mode: ApiAuth) -> Orchestrator<FakeModel> {
    Orchestrator::new(FakeModel::scoring(), Limits::default()).with_auth(mode)
}

/// Log lines written while `run` is polled on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Answers `event` with `app`, returning the answer and the request's log line.
async fn answer_logged(app: &Orchestrator<FakeModel>, event: &str) -> (Answer, String) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Tests run on a current-thread runtime: the default applies to everything polled here.
    let _guard = tracing::subscriber::set_default(subscriber);
    let reply = answer(app, lambda_http::request::from_str(event).unwrap()).await;
    let line = logs
        .text()
        .lines()
        .find(|line| line.contains("request answered"))
        .map(str::to_owned)
        .unwrap_or_default();
    (reply, line)
}

#[tokio::test]
async fn given_iam_or_jwt_when_an_event_has_no_caller_then_every_route_is_401_before_any_work() {
    for mode in [ApiAuth::Iam, ApiAuth::Jwt] {
        // The generated events carry JWT claims without a subject; edited, no authorizer at all.
        let events = GENERATED
            .iter()
            .map(|event| (*event).to_owned())
            .chain(GENERATED.iter().map(|event| without_authorizer(event)))
            .chain([CALLER_NONE.to_owned()]);
        for event in events {
            let app = app(mode);
            let (reply, line) = answer_logged(&app, &event).await;
            let context: Value = serde_json::from_str(&event).unwrap();
            let path = context["rawPath"].as_str().unwrap();
            assert_eq!(reply.status, 401, "{mode:?} {path}: {}", reply.body);
            assert!(
                reply.body["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("authentication required"),
                "{}",
                reply.body
            );
            let scheme = if mode == ApiAuth::Iam {
                "AWS4-HMAC-SHA256"
            } else {
                "Bearer"
            };
            assert_eq!(reply.headers[header::WWW_AUTHENTICATE], scheme);
            assert_eq!(
                reply.headers[REQUEST_ID_HEADER],
                context["requestContext"]["requestId"].as_str().unwrap()
            );
            // Not even the manifest ping: the model never hears of it.
            assert!(app.model.client.calls().is_empty(), "{mode:?} {path}");
            assert!(line.contains("status=401"), "{line}");
            assert!(line.contains("caller=anonymous"), "{line}");
        }
    }
}

#[tokio::test]
async fn given_iam_when_a_signed_event_arrives_then_it_is_served_and_the_arn_logged() {
    let app = app(ApiAuth::Iam);
    let (reply, line) = answer_logged(&app, CALLER_IAM).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body["sales"].is_f64());
    assert_eq!(app.model.client.predictions_sent().len(), 1);
    assert!(
        line.contains(
            "caller=iam:arn:aws:sts::123456789012:assumed-role/forecast-client/forecaster"
        ),
        "{line}"
    );
    // Neither the access key nor the signature API Gateway passes on in the headers.
    assert!(
        !line.contains("AKIAIOSFODNN7EXAMPLE") && !line.contains("5d672d79"),
        "{line}"
    );

    // A token's subject is not an IAM caller: 403, and nothing reaches the model.
    let app = app_with_nothing_sent(ApiAuth::Iam, CALLER_JWT, 403).await;
    assert!(app.model.client.calls().is_empty());
}

#[tokio::test]
async fn given_jwt_when_a_token_was_validated_then_it_is_served_and_the_subject_logged_never_the_token()
 {
    let app = app(ApiAuth::Jwt);
    let (reply, line) = answer_logged(&app, CALLER_JWT).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(app.model.client.predictions_sent().len(), 1);
    assert!(
        line.contains("caller=jwt:5f1c2b9e-retailer-client"),
        "{line}"
    );
    let event: Value = serde_json::from_str(CALLER_JWT).unwrap();
    let token = event["headers"]["authorization"].as_str().unwrap();
    let token = token.trim_start_matches("Bearer ");
    assert!(!line.contains(token) && !line.contains("Bearer"), "{line}");

    // An IAM principal is not a token's subject: 403.
    app_with_nothing_sent(ApiAuth::Jwt, CALLER_IAM, 403).await;
}

/// Answers `event` in `mode`, expecting `status` and no model call.
async fn app_with_nothing_sent(mode: ApiAuth, event: &str, status: u16) -> Orchestrator<FakeModel> {
    let app = app(mode);
    let (reply, line) = answer_logged(&app, event).await;
    assert_eq!(reply.status, status, "{mode:?}: {}", reply.body);
    assert!(app.model.client.calls().is_empty(), "{mode:?}");
    assert!(line.contains(&format!("status={status}")), "{line}");
    app
}

#[tokio::test]
async fn given_none_then_every_event_is_served_and_a_known_caller_still_logged() {
    for (event, caller) in [
        (CALLER_IAM, "caller=iam:arn:aws:sts::123456789012:"),
        (CALLER_JWT, "caller=jwt:5f1c2b9e-retailer-client"),
        (CALLER_NONE, "caller=anonymous"),
    ] {
        let app = app(ApiAuth::None);
        let (reply, line) = answer_logged(&app, event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(line.contains(caller), "{line}");
    }
}

/// In IAM and JWT mode the served document names the mode's scheme, and a refusal's body and
/// status are the ones it documents.
#[tokio::test]
async fn the_refusals_and_the_served_document_follow_the_mode() {
    for (mode, event) in [(ApiAuth::Iam, CALLER_IAM), (ApiAuth::Jwt, CALLER_JWT)] {
        let mut openapi: Value = serde_json::from_str(event).unwrap();
        openapi["rawPath"] = json!("/v1/api/openapi.json");
        openapi["requestContext"]["http"]["method"] = json!("GET");
        openapi["requestContext"]["http"]["path"] = json!("/v1/api/openapi.json");
        openapi["isBase64Encoded"] = json!(false);
        openapi["body"] = Value::Null;
        let (reply, _) = answer_logged(&app(mode), &openapi.to_string()).await;
        assert_eq!(reply.status, 200, "{mode:?}");
        let doc = auth::document(openapi_document(), mode);
        assert_eq!(reply.body, doc, "{mode:?}");
        assert!(!doc["components"]["securitySchemes"].is_null());

        let (refused, _) = answer_logged(&app(mode), &without_authorizer(event)).await;
        let documented = &doc["paths"]["/v1/api/predict"]["post"]["responses"]["401"];
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [documented["content"]["application/json"]["schema"]],
            "components": doc["components"],
        });
        let validator = jsonschema::validator_for(&root).unwrap();
        assert!(validator.is_valid(&refused.body), "{}", refused.body);
        // API Gateway's own refusal fits the same documented answer.
        assert!(validator.is_valid(&json!({"message": "Unauthorized"})));
    }
}
