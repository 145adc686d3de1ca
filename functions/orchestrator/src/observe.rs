//! What each answered request leaves behind: one structured log line and one CloudWatch
//! embedded-metric-format (EMF) record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::{Value, json};

/// CloudWatch namespace of the API's metrics.
pub const METRICS_NAMESPACE: &str = "DemandForecast/Api";

/// The request id answered in `x-request-id`: API Gateway's own id when the request came
/// through it, else the Lambda invocation id, else a process-local one (tests, emulators).
pub fn request_id(request: &Request) -> String {
    static LOCAL: AtomicU64 = AtomicU64::new(0);
    let api_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    };
    api_gateway
        .filter(|id| !id.is_empty())
        .or_else(|| {
            request
                .lambda_context_ref()
                .map(|context| context.request_id.clone())
                .filter(|id| !id.is_empty())
        })
        .unwrap_or_else(|| format!("local-{}", LOCAL.fetch_add(1, Ordering::Relaxed)))
}

/// What the handler learnt while answering, for the log line and the metrics.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// Version of the model that answered, when one did.
    pub model_version: Option<String>,
    /// Wall time spent waiting for the model.
    pub model_invoke: Duration,
    /// Model invocations made.
    pub model_invokes: u32,
    /// Rows predicted.
    pub rows: usize,
    /// Times the model changed under the request (each re-read its manifest).
    pub model_changes: usize,
}

impl Trace {
    /// Records `calls` model invocations that started at `started` and are over now.
    pub fn invoked(&mut self, started: std::time::Instant, calls: usize) {
        self.model_invoke += started.elapsed();
        self.model_invokes = self
            .model_invokes
            .saturating_add(u32::try_from(calls).unwrap_or(u32::MAX));
    }
}

/// One request's figures, as they go to the log and to the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord<'a> {
    /// The matched route (`/v1/api/predict`), or `unmatched`.
    pub route: &'a str,
    /// HTTP status answered.
    pub status: u16,
    /// Time from request to response, in milliseconds.
    pub latency_ms: f64,
    /// Time spent waiting for the model, in milliseconds.
    pub model_invoke_ms: f64,
}

/// The EMF record of one request: `Requests`, `Latency`, `ModelInvokeLatency`, `Errors`
/// (5xx) and `ClientErrors` (4xx), dimensioned by `Route`.
pub fn emf_record(record: &RequestRecord<'_>, now: SystemTime) -> Value {
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let is = |lo: u16, hi: u16| u8::from((lo..=hi).contains(&record.status));
    json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["Route"]],
                "Metrics": [
                    {"Name": "Requests", "Unit": "Count"},
                    {"Name": "Latency", "Unit": "Milliseconds"},
                    {"Name": "ModelInvokeLatency", "Unit": "Milliseconds"},
                    {"Name": "Errors", "Unit": "Count"},
                    {"Name": "ClientErrors", "Unit": "Count"}
                ]
            }]
        },
        "Route": record.route,
        "Status": record.status,
        "Requests": 1,
        "Latency": record.latency_ms,
        "ModelInvokeLatency": record.model_invoke_ms,
        "Errors": is(500, 599),
        "ClientErrors": is(400, 499),
    })
}

/// Writes the EMF record to stdout, where the Lambda log agent picks it up.
pub fn emit_metrics(record: &RequestRecord<'_>) {
    let line = emf_record(record, SystemTime::now());
    #[allow(
        clippy::print_stdout,
        reason = "EMF records are read from the function's stdout by CloudWatch"
    )]
    {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emf_record_declares_every_metric_it_carries() {
        let record = RequestRecord {
            route: "/v1/api/predict",
            status: 503,
            latency_ms: 12.5,
            model_invoke_ms: 10.0,
        };
        let emf = emf_record(&record, UNIX_EPOCH + Duration::from_millis(1_700));
        assert_eq!(emf["_aws"]["Timestamp"], 1_700);
        let directive = &emf["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], METRICS_NAMESPACE);
        for dimension in directive["Dimensions"][0].as_array().unwrap() {
            assert!(emf[dimension.as_str().unwrap()].is_string());
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(emf[name].is_number(), "{name} is declared but not set");
        }
        assert_eq!(
            (&emf["Errors"], &emf["ClientErrors"], &emf["Latency"]),
            (&json!(1), &json!(0), &json!(12.5))
        );
        let client = emf_record(
            &RequestRecord {
                status: 422,
                ..record
            },
            UNIX_EPOCH,
        );
        assert_eq!(
            (&client["Errors"], &client["ClientErrors"]),
            (&json!(0), &json!(1))
        );
    }

    #[test]
    fn the_request_id_is_api_gateways() {
        let event = include_str!("../../../data/events/predict.json");
        let request = lambda_http::request::from_str(event).unwrap();
        let expected: Value = serde_json::from_str(event).unwrap();
        assert_eq!(
            request_id(&request),
            expected["requestContext"]["requestId"].as_str().unwrap()
        );
        let bare = lambda_http::http::Request::builder()
            .body(lambda_http::Body::Empty)
            .unwrap();
        let (first, second) = (request_id(&bare), request_id(&bare));
        assert!(first.starts_with("local-") && first != second);
    }
}
