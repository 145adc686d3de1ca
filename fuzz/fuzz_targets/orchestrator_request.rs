//! Everything the orchestrator decodes from a client: the body (any bytes, any content type),
//! a single request, a batch, and the forecast query string. Nothing may panic.
#![no_main]

use forecast::ForecastRequest;
use libfuzzer_sys::fuzz_target;
use orchestrator::decode::{batch_instances, forecast_query, json_body};

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(split) if split < 32 => (Some(&data[..split]), &data[split + 1..]),
        _ => (None, data),
    };
    if let Ok(value) = json_body(content_type, body, 1 << 20) {
        let _ = ForecastRequest::from_json(&value, &["body"]);
        if let Ok(requests) = batch_instances(&value) {
            assert!(!requests.is_empty());
        }
    }
    if let Ok(series) = forecast_query(Some(&String::from_utf8_lossy(data))) {
        assert_eq!(series.requests().len(), series.days as usize);
    }
});
