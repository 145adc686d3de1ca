//! Decoding of what a client sends: the JSON body, a batch of instances, the forecast query.
//!
//! Everything here is pure and total: any input either decodes into a validated value or
//! comes back as an error for the client (400 for an unreadable body, field errors for 422).

use chrono::{Datelike, Days};
use forecast::distribution::{DEFAULT_LEVELS, MAX_LEVELS, PointKind, parse_levels};
use forecast::wire::PredictOptions;
use forecast::{FieldError, ForecastRequest};
use serde_json::{Map, Value};

/// Most instances one batch request may carry.
pub const MAX_BATCH_INSTANCES: usize = 10_000;
/// Most days one forecast series may span.
pub const MAX_FORECAST_DAYS: u32 = 366;
/// Most field errors returned for one request; the rest are dropped (the first ones are
/// enough to fix a client, and the answer stays small).
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Why a body cannot be read at all (400), or is too large (413).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body exceeds the configured limit.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is empty, not JSON, or announced as another content type.
    #[error("{0}")]
    Malformed(String),
}

/// Reads a request body as JSON. `content_type` is the request's header, if any: it must
/// be `application/json` (parameters such as `charset` allowed) when present.
pub fn json_body(
    content_type: Option<&[u8]>,
    bytes: &[u8],
    max_bytes: usize,
) -> Result<Value, BodyError> {
    if bytes.len() > max_bytes {
        return Err(BodyError::TooLarge { limit: max_bytes });
    }
    if let Some(content_type) = content_type {
        let media_type = std::str::from_utf8(content_type)
            .ok()
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|m| m.eq_ignore_ascii_case("application/json")) {
            return Err(BodyError::Malformed(
                "content type must be application/json".to_owned(),
            ));
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Malformed("the request body is empty".to_owned()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        BodyError::Malformed(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Validates `{"instances": [{date, store, item}, ...]}` (1..=[`MAX_BATCH_INSTANCES`]).
/// Instance errors are located at `["body", "instances", "<index>", field]`.
pub fn batch_instances(body: &Value) -> Result<Vec<ForecastRequest>, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new(
            &["body"],
            "expected an object with an instances list",
            "model_attributes_type",
        )]);
    };
    let loc = ["body", "instances"];
    let instances = match object.get("instances") {
        None | Some(Value::Null) => {
            return Err(vec![FieldError::new(&loc, "field required", "missing")]);
        }
        Some(Value::Array(instances)) => instances,
        Some(_) => {
            return Err(vec![FieldError::new(
                &loc,
                "expected a list of {date, store, item} objects",
                "list_type",
            )]);
        }
    };
    if instances.is_empty() {
        return Err(vec![FieldError::new(
            &loc,
            "the batch needs at least 1 instance",
            "too_short",
        )]);
    }
    if instances.len() > MAX_BATCH_INSTANCES {
        return Err(vec![FieldError::new(
            &loc,
            format!(
                "at most {MAX_BATCH_INSTANCES} instances per batch, got {}",
                instances.len()
            ),
            "too_long",
        )]);
    }
    let mut requests = Vec::with_capacity(instances.len());
    let mut errors = Vec::new();
    for (index, instance) in instances.iter().enumerate() {
        let index = index.to_string();
        match ForecastRequest::from_json(instance, &["body", "instances", &index]) {
            Ok(request) => requests.push(request),
            Err(mut found) => {
                errors.append(&mut found);
                if errors.len() >= MAX_REPORTED_ERRORS {
                    errors.truncate(MAX_REPORTED_ERRORS);
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(requests)
    } else {
        Err(errors)
    }
}

/// A validated `GET /v1/api/forecast` query: one store-item from `start` for `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForecastQuery {
    /// Store, item and the first day of the series.
    pub first: ForecastRequest,
    /// Length of the series, `1..=MAX_FORECAST_DAYS`.
    pub days: u32,
}

impl ForecastQuery {
    /// One request per day of the series, in date order.
    pub fn requests(&self) -> Vec<ForecastRequest> {
        (0..self.days)
            .filter_map(|offset| {
                let date = self.first.date.checked_add_days(Days::new(offset.into()))?;
                Some(ForecastRequest { date, ..self.first })
            })
            .collect()
    }
}

/// Validates the raw query string `store=&item=&start=&days=` (URL-encoded; unknown
/// parameters are ignored, a repeated one takes its first value). Errors are located at
/// `["query", name]`.
pub fn forecast_query(query: Option<&str>) -> Result<ForecastQuery, Vec<FieldError>> {
    let mut fields = Map::new();
    let mut days_raw: Option<String> = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let name = match key.as_ref() {
            "start" => "date",
            "store" => "store",
            "item" => "item",
            "days" => {
                days_raw.get_or_insert_with(|| value.into_owned());
                continue;
            }
            _ => continue,
        };
        fields
            .entry(name)
            .or_insert_with(|| Value::String(value.into_owned()));
    }
    // The query's `start` is the request's `date`: validate it as one, then rename.
    let first = ForecastRequest::from_json(&Value::Object(fields), &["query"]).map_err(|errors| {
        errors
            .into_iter()
            .map(|mut e| {
                for part in &mut e.loc {
                    if part == "date" {
                        "start".clone_into(part);
                    }
                }
                e
            })
            .collect::<Vec<_>>()
    });
    let days = parse_days(days_raw.as_deref());
    match (first, days) {
        (Ok(first), Ok(days)) => {
            let last = first
                .date
                .checked_add_days(Days::new(u64::from(days) - 1))
                .filter(|last| forecast::date::YEARS.contains(&last.year()));
            if last.is_none() {
                return Err(vec![FieldError::new(
                    &["query", "days"],
                    "the series would end after the last supported date, 9999-12-31",
                    "value_error",
                )]);
            }
            Ok(ForecastQuery { first, days })
        }
        (first, days) => Err(first
            .err()
            .into_iter()
            .flatten()
            .chain(days.err())
            .collect()),
    }
}

fn parse_days(raw: Option<&str>) -> Result<u32, FieldError> {
    let loc = ["query", "days"];
    let Some(raw) = raw else {
        return Err(FieldError::new(&loc, "field required", "missing"));
    };
    let Ok(days) = raw.trim().parse::<i64>() else {
        return Err(FieldError::new(
            &loc,
            "expected a whole number",
            "int_parsing",
        ));
    };
    if days < 1 {
        return Err(FieldError::new(
            &loc,
            "must be greater than or equal to 1",
            "greater_than_equal",
        ));
    }
    u32::try_from(days)
        .ok()
        .filter(|d| *d <= MAX_FORECAST_DAYS)
        .ok_or_else(|| {
            FieldError::new(
                &loc,
                format!("must be less than or equal to {MAX_FORECAST_DAYS}"),
                "less_than_equal",
            )
        })
}

/// Reads the optional answer fields of a JSON body: `quantiles` (a list of levels in (0, 1),
/// or `true` for P10/P50/P90) and `point` (`mean` or `smape`). Absent or null fields ask for
/// nothing, so bodies of existing clients decode to the plain answer.
pub fn body_options(body: &Value) -> Result<PredictOptions, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Ok(PredictOptions::default());
    };
    let mut errors = Vec::new();
    let quantiles = match object.get("quantiles") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(DEFAULT_LEVELS.to_vec()),
        Some(Value::Array(levels)) => {
            let numbers: Option<Vec<f64>> = levels.iter().map(Value::as_f64).collect();
            match numbers {
                Some(numbers) => levels_or_error(&numbers, &["body", "quantiles"], &mut errors),
                None => {
                    errors.push(quantiles_type_error(&["body", "quantiles"]));
                    None
                }
            }
        }
        Some(_) => {
            errors.push(quantiles_type_error(&["body", "quantiles"]));
            None
        }
    };
    let point = match object.get("point") {
        None | Some(Value::Null) => None,
        Some(value) => point_or_error(value.as_str(), &["body", "point"], &mut errors),
    };
    if errors.is_empty() {
        Ok(PredictOptions { quantiles, point })
    } else {
        Err(errors)
    }
}

/// Reads `quantiles=0.1,0.5,0.9` (or `quantiles=true` for P10/P50/P90) and `point=` from a
/// forecast query string; the first of a repeated parameter counts, as for the others.
pub fn query_options(query: Option<&str>) -> Result<PredictOptions, Vec<FieldError>> {
    let (mut quantiles_raw, mut point_raw) = (None, None);
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "quantiles" => {
                quantiles_raw.get_or_insert_with(|| value.into_owned());
            }
            "point" => {
                point_raw.get_or_insert_with(|| value.into_owned());
            }
            _ => {}
        }
    }
    let mut errors = Vec::new();
    let loc = ["query", "quantiles"];
    let quantiles = match quantiles_raw.as_deref().map(str::trim) {
        None | Some("false") => None,
        Some("true") => Some(DEFAULT_LEVELS.to_vec()),
        Some(raw) => {
            let numbers: Result<Vec<f64>, _> = raw
                .split(',')
                .map(|part| part.trim().parse::<f64>())
                .collect();
            match numbers {
                Ok(numbers) => levels_or_error(&numbers, &loc, &mut errors),
                Err(_) => {
                    errors.push(quantiles_type_error(&loc));
                    None
                }
            }
        }
    };
    let point =
        point_raw.and_then(|raw| point_or_error(Some(&raw), &["query", "point"], &mut errors));
    if errors.is_empty() {
        Ok(PredictOptions { quantiles, point })
    } else {
        Err(errors)
    }
}

fn levels_or_error(
    numbers: &[f64],
    loc: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<Vec<f64>> {
    match parse_levels(numbers) {
        Ok(levels) => Some(levels),
        Err(err) => {
            let kind = if numbers.len() > MAX_LEVELS {
                "too_long"
            } else if numbers.is_empty() {
                "too_short"
            } else {
                "quantile_level"
            };
            errors.push(FieldError::new(loc, err.to_string(), kind));
            None
        }
    }
}

fn quantiles_type_error(loc: &[&str]) -> FieldError {
    FieldError::new(
        loc,
        format!(
            "expected a list of 1 to {MAX_LEVELS} levels strictly between 0 and 1 (or true for 0.1, 0.5, 0.9)"
        ),
        "quantiles_type",
    )
}

fn point_or_error(
    raw: Option<&str>,
    loc: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<PointKind> {
    let point = raw.and_then(PointKind::parse);
    if point.is_none() {
        errors.push(FieldError::new(
            loc,
            "expected \"mean\" or \"smape\"",
            "enum",
        ));
    }
    point
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn locs(errors: &[FieldError]) -> Vec<String> {
        errors
            .iter()
            .map(|e| format!("{}:{}", e.loc.join("."), e.kind))
            .collect()
    }

    #[test]
    fn a_json_body_is_read_within_the_limit() {
        let body = br#"{"a": 1}"#;
        assert_eq!(
            json_body(Some(b"application/json; charset=utf-8"), body, 64),
            Ok(json!({"a": 1}))
        );
        assert_eq!(json_body(None, body, 64), Ok(json!({"a": 1})));
        assert_eq!(
            json_body(None, body, 7),
            Err(BodyError::TooLarge { limit: 7 })
        );
    }

    #[test]
    fn unreadable_bodies_say_why() {
        for (content_type, body, needle) in [
            (
                Some(&b"text/plain"[..]),
                &br#"{"a": 1}"#[..],
                "application/json",
            ),
            (Some(&b"\xff"[..]), &b"{}"[..], "application/json"),
            (None, &b"  \n"[..], "empty"),
            (None, &b"{\"a\": "[..], "line 1, column 6"),
            (None, &b"\xff\xfe"[..], "not valid JSON"),
        ] {
            match json_body(content_type, body, 1024) {
                Err(BodyError::Malformed(message)) => {
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("expected a malformed body, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_batch_keeps_request_order() {
        let body = json!({"instances": [
            {"date": "2018-01-02", "store": 2, "item": 9},
            {"date": "2018-01-01", "store": 1, "item": 3},
        ]});
        let requests = batch_instances(&body).unwrap();
        let summary: Vec<(String, u32, u32)> = requests
            .iter()
            .map(|r| (r.date.to_string(), r.store.get(), r.item.get()))
            .collect();
        assert_eq!(
            summary,
            [("2018-01-02".into(), 2, 9), ("2018-01-01".into(), 1, 3)]
        );
    }

    #[test]
    fn batch_errors_point_at_the_instance_and_field() {
        let body = json!({"instances": [
            {"date": "2018-01-01", "store": 1, "item": 1},
            {"date": "2018-13-01", "store": 1},
        ]});
        assert_eq!(
            locs(&batch_instances(&body).unwrap_err()),
            [
                "body.instances.1.date:date_parsing",
                "body.instances.1.item:missing"
            ]
        );
        for (body, expected) in [
            (json!([]), "body:model_attributes_type"),
            (json!({}), "body.instances:missing"),
            (json!({"instances": {}}), "body.instances:list_type"),
            (json!({"instances": []}), "body.instances:too_short"),
        ] {
            assert_eq!(locs(&batch_instances(&body).unwrap_err()), [expected]);
        }
    }

    #[test]
    fn a_batch_is_capped_in_size_and_in_reported_errors() {
        let one = json!({"date": "2018-01-01", "store": 1, "item": 1});
        let full = json!({"instances": vec![one.clone(); MAX_BATCH_INSTANCES]});
        assert_eq!(batch_instances(&full).map(|r| r.len()), Ok(10_000));
        let over = json!({"instances": vec![one; MAX_BATCH_INSTANCES + 1]});
        assert_eq!(
            locs(&batch_instances(&over).unwrap_err()),
            ["body.instances:too_long"]
        );
        let bad = json!({"instances": vec![json!({}); 500]});
        let errors = batch_instances(&bad).unwrap_err();
        assert_eq!(errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(errors[0].loc, ["body", "instances", "0", "date"]);
    }

    #[test]
    fn a_forecast_query_builds_one_request_per_day() {
        let query = forecast_query(Some("store=2&item=7&start=2017-12-30&days=3&x=1")).unwrap();
        let days: Vec<String> = query
            .requests()
            .iter()
            .map(|r| format!("{}/{}/{}", r.date, r.store.get(), r.item.get()))
            .collect();
        assert_eq!(days, ["2017-12-30/2/7", "2017-12-31/2/7", "2018-01-01/2/7"]);
        let encoded = forecast_query(Some(
            "store=%32&item=1&start=2018-01-01T00%3A00%3A00%2B02%3A00&days=366",
        ))
        .unwrap();
        assert_eq!((encoded.first.store.get(), encoded.days), (2, 366));
        assert_eq!(encoded.requests().len(), 366);
    }

    #[test]
    fn forecast_query_errors_name_the_query_parameter() {
        assert_eq!(
            locs(&forecast_query(None).unwrap_err()),
            [
                "query.start:missing",
                "query.store:missing",
                "query.item:missing",
                "query.days:missing"
            ]
        );
        for (query, expected) in [
            (
                "store=1&item=1&start=2018-02-30&days=1",
                "query.start:date_parsing",
            ),
            (
                "store=0&item=1&start=2018-01-01&days=1",
                "query.store:greater_than_equal",
            ),
            (
                "store=1&item=x&start=2018-01-01&days=1",
                "query.item:int_parsing",
            ),
            (
                "store=1&item=1&start=2018-01-01&days=0",
                "query.days:greater_than_equal",
            ),
            (
                "store=1&item=1&start=2018-01-01&days=367",
                "query.days:less_than_equal",
            ),
            (
                "store=1&item=1&start=2018-01-01&days=1e3",
                "query.days:int_parsing",
            ),
            (
                "store=1&item=1&start=0000-01-01&days=1",
                "query.start:date_parsing",
            ),
            (
                "store=1&item=1&start=9999-12-30&days=3",
                "query.days:value_error",
            ),
        ] {
            assert_eq!(locs(&forecast_query(Some(query)).unwrap_err()), [expected]);
        }
    }

    mod properties {
        use forecast::testing::any_json;
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn any_bytes_are_json_or_a_400_or_a_413(
                bytes in prop::collection::vec(any::<u8>(), 0..256),
                content_type in prop::option::of(prop::collection::vec(any::<u8>(), 0..24)),
                limit in 0usize..300,
            ) {
                match json_body(content_type.as_deref(), &bytes, limit) {
                    Ok(value) => prop_assert_eq!(serde_json::from_slice::<Value>(&bytes).ok(), Some(value)),
                    Err(BodyError::TooLarge { limit: l }) => prop_assert!(bytes.len() > l),
                    Err(BodyError::Malformed(message)) => prop_assert!(!message.is_empty()),
                }
            }

            #[test]
            fn any_json_is_a_batch_or_located_errors(value in any_json()) {
                match batch_instances(&value) {
                    Ok(requests) => {
                        let count = value["instances"].as_array().map(Vec::len);
                        prop_assert_eq!(Some(requests.len()), count);
                    }
                    Err(errors) => {
                        prop_assert!(!errors.is_empty() && errors.len() <= MAX_REPORTED_ERRORS);
                        prop_assert!(errors.iter().all(|e| e.loc[0] == "body"));
                    }
                }
            }

            #[test]
            fn batches_decode_in_order_or_name_each_bad_field(
                instances in prop_oneof![
                    prop::collection::vec(forecast::testing::valid_request_json(), 1..40),
                    prop::collection::vec(forecast::testing::request_json(), 1..40),
                ],
            ) {
                let body = serde_json::json!({
                    "instances": instances.iter().map(|(value, _)| value.clone()).collect::<Vec<_>>()
                });
                let mut expected_requests = Vec::new();
                let mut expected_errors = Vec::new();
                for (index, (_, expected)) in instances.iter().enumerate() {
                    match expected {
                        Ok(request) => expected_requests.push(*request),
                        Err(fields) => expected_errors.extend(fields.iter().map(|(field, kind)| {
                            (format!("body.instances.{index}.{field}"), (*kind).to_owned())
                        })),
                    }
                }
                expected_errors.truncate(MAX_REPORTED_ERRORS);
                match batch_instances(&body) {
                    Ok(requests) => {
                        prop_assert!(expected_errors.is_empty(), "accepted despite {:?}", expected_errors);
                        prop_assert_eq!(requests, expected_requests);
                    }
                    Err(errors) => {
                        let found: Vec<(String, String)> =
                            errors.into_iter().map(|e| (e.loc.join("."), e.kind)).collect();
                        prop_assert_eq!(found, expected_errors);
                    }
                }
            }

            #[test]
            fn any_query_is_a_series_or_query_errors(query in prop::option::of(any::<String>())) {
                match forecast_query(query.as_deref()) {
                    Ok(series) => prop_assert_eq!(series.requests().len(), series.days as usize),
                    Err(errors) => {
                        prop_assert!(!errors.is_empty());
                        prop_assert!(errors.iter().all(|e| e.loc[0] == "query"));
                    }
                }
            }

            #[test]
            fn near_queries_are_a_series_or_query_errors(
                store in "[0-9x-]{0,8}", item in "[0-9.]{0,8}",
                start in "[0-9-]{0,12}", days in "[0-9+-]{0,5}",
            ) {
                let query = format!("store={store}&item={item}&start={start}&days={days}");
                if let Ok(series) = forecast_query(Some(&query)) {
                    let requests = series.requests();
                    prop_assert_eq!(requests.len(), series.days as usize);
                    prop_assert!((1..=MAX_FORECAST_DAYS).contains(&series.days));
                    prop_assert!(requests.windows(2).all(|w| w[0].date.succ_opt() == Some(w[1].date)));
                    prop_assert!(requests.iter().all(|r| forecast::date::YEARS.contains(&r.date.year())));
                }
            }
        }
    }

    #[test]
    fn answer_options_default_to_the_plain_answer() {
        let plain = PredictOptions::default();
        assert_eq!(
            body_options(&json!({"date": "2018-01-01", "store": 1, "item": 1})),
            Ok(plain.clone())
        );
        assert_eq!(
            body_options(&json!({"quantiles": null, "point": null})),
            Ok(plain.clone())
        );
        assert_eq!(
            query_options(Some("store=1&item=1&start=2018-01-01&days=3")),
            Ok(plain)
        );
    }

    #[test]
    fn answer_options_read_levels_and_points() {
        let expected = PredictOptions {
            quantiles: Some(vec![0.1, 0.5, 0.9]),
            point: Some(PointKind::Smape),
        };
        assert_eq!(
            body_options(&json!({"quantiles": [0.9, 0.5, 0.1], "point": "smape"})),
            Ok(expected.clone())
        );
        assert_eq!(
            body_options(&json!({"quantiles": true, "point": "smape"})),
            Ok(expected.clone())
        );
        assert_eq!(
            query_options(Some("quantiles=0.9%2C0.5,0.1&point=smape")),
            Ok(expected.clone())
        );
        assert_eq!(
            query_options(Some("quantiles=true&point=smape")),
            Ok(expected)
        );
    }

    #[test]
    fn bad_answer_options_are_located_field_errors() {
        for (body, loc, kind) in [
            (
                json!({"quantiles": [0.0]}),
                "body.quantiles",
                "quantile_level",
            ),
            (
                json!({"quantiles": [1.0]}),
                "body.quantiles",
                "quantile_level",
            ),
            (
                json!({"quantiles": [0.5, 1.2]}),
                "body.quantiles",
                "quantile_level",
            ),
            (
                json!({"quantiles": vec![0.5; MAX_LEVELS + 1]}),
                "body.quantiles",
                "too_long",
            ),
            (json!({"quantiles": []}), "body.quantiles", "too_short"),
            (
                json!({"quantiles": ["0.5"]}),
                "body.quantiles",
                "quantiles_type",
            ),
            (
                json!({"quantiles": "0.5"}),
                "body.quantiles",
                "quantiles_type",
            ),
            (json!({"point": "median"}), "body.point", "enum"),
            (json!({"point": 1}), "body.point", "enum"),
        ] {
            let errors = body_options(&body).unwrap_err();
            assert_eq!(
                errors.iter().map(|e| e.loc.join(".")).collect::<Vec<_>>(),
                [loc],
                "{body}"
            );
            assert_eq!(errors[0].kind, kind, "{body}");
        }
        for (query, loc) in [
            ("quantiles=0", "query.quantiles"),
            ("quantiles=0.5,abc", "query.quantiles"),
            ("quantiles=", "query.quantiles"),
            ("point=max", "query.point"),
        ] {
            let errors = query_options(Some(query)).unwrap_err();
            assert_eq!(
                errors.iter().map(|e| e.loc.join(".")).collect::<Vec<_>>(),
                [loc],
                "{query}"
            );
        }
    }
}
