//! The business request `{date, store, item}` and its validation.
//!
//! Validation is field by field and collects every problem at once, so a client fixing its
//! request sees all of them in one answer (FastAPI-style `{loc, msg, type}` entries).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::date::parse_date;

/// Largest store or item id accepted before the model's own domain is consulted.
pub const MAX_ID: u32 = 1_000_000;

/// A store identifier, `1..=MAX_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreId(u32);

/// An item identifier, `1..=MAX_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemId(u32);

macro_rules! id_newtype {
    ($name:ident) => {
        impl $name {
            /// Builds the id, or `None` when it is outside `1..=MAX_ID`.
            pub fn new(id: u32) -> Option<Self> {
                (1..=MAX_ID).contains(&id).then_some(Self(id))
            }

            /// The numeric id.
            pub fn get(self) -> u32 {
                self.0
            }
        }
    };
}
id_newtype!(StoreId);
id_newtype!(ItemId);

/// One validated forecast request: which store, which item, which day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ForecastRequest {
    /// The calendar day to forecast.
    pub date: NaiveDate,
    /// The store.
    pub store: StoreId,
    /// The item.
    pub item: ItemId,
}

/// One validation failure, in the shape FastAPI clients already parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Where the problem is, e.g. `["body", "store"]`.
    pub loc: Vec<String>,
    /// What is wrong, for a human.
    pub msg: String,
    /// A stable machine-readable kind, e.g. `missing`, `int_parsing`, `date_parsing`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    /// An error at `loc` of kind `kind`.
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

impl ForecastRequest {
    /// Validates a decoded JSON body. `loc` is the path of `value` inside the request
    /// (`["body"]` for a single request), used to point at the failing field.
    pub fn from_json(value: &Value, loc: &[&str]) -> Result<Self, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new(
                loc,
                "expected an object with fields date, store and item",
                "model_attributes_type",
            )]);
        };
        let at = |field: &'static str| -> Vec<&str> {
            let mut path = loc.to_vec();
            path.push(field);
            path
        };
        let mut errors = Vec::new();

        let date = match object.get("date") {
            None | Some(Value::Null) => {
                errors.push(FieldError::new(&at("date"), "field required", "missing"));
                None
            }
            Some(Value::String(s)) => match parse_date(s) {
                Ok(date) => Some(date),
                Err(err) => {
                    errors.push(FieldError::new(
                        &at("date"),
                        err.to_string(),
                        "date_parsing",
                    ));
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new(
                    &at("date"),
                    "expected a string such as \"2018-01-01\"",
                    "date_type",
                ));
                None
            }
        };
        let store = parse_id(object.get("store"), &at("store"), &mut errors).map(StoreId);
        let item = parse_id(object.get("item"), &at("item"), &mut errors).map(ItemId);

        match (date, store, item) {
            (Some(date), Some(store), Some(item)) if errors.is_empty() => {
                Ok(Self { date, store, item })
            }
            _ => Err(errors),
        }
    }
}

/// Reads a positive integer id. Like the original pydantic model it accepts JSON integers,
/// integral floats (`3.0`) and digit strings (`"3"`), and rejects anything else.
fn parse_id(value: Option<&Value>, loc: &[&str], errors: &mut Vec<FieldError>) -> Option<u32> {
    let raw: Option<i128> = match value {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(loc, "field required", "missing"));
            return None;
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                    .map(|f| f as i128)
            }),
        Some(Value::String(s)) => s.trim().parse::<i128>().ok(),
        Some(_) => None,
    };
    let Some(raw) = raw else {
        errors.push(FieldError::new(
            loc,
            "expected a whole number",
            "int_parsing",
        ));
        return None;
    };
    if raw < 1 {
        errors.push(FieldError::new(
            loc,
            "must be greater than or equal to 1",
            "greater_than_equal",
        ));
        return None;
    }
    if raw > i128::from(MAX_ID) {
        errors.push(FieldError::new(
            loc,
            format!("must be less than or equal to {MAX_ID}"),
            "less_than_equal",
        ));
        return None;
    }
    u32::try_from(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(value: Value) -> Vec<FieldError> {
        ForecastRequest::from_json(&value, &["body"]).unwrap_err()
    }

    #[test]
    fn given_a_valid_body_when_validated_then_all_fields_are_typed() {
        let req = ForecastRequest::from_json(
            &json!({"date": "2018-01-01", "store": 1, "item": 7}),
            &["body"],
        )
        .unwrap();
        assert_eq!(req.date, NaiveDate::from_ymd_opt(2018, 1, 1).unwrap());
        assert_eq!(req.store.get(), 1);
        assert_eq!(req.item.get(), 7);
    }

    #[test]
    fn given_lax_numbers_when_validated_then_they_are_accepted_like_pydantic() {
        let req = ForecastRequest::from_json(
            &json!({"date": "2018-01-01T00:00:00", "store": "3", "item": 4.0, "extra": true}),
            &["body"],
        )
        .unwrap();
        assert_eq!((req.store.get(), req.item.get()), (3, 4));
    }

    #[test]
    fn given_an_empty_object_when_validated_then_every_missing_field_is_named() {
        let errors = errors_of(json!({}));
        let locs: Vec<_> = errors.iter().map(|e| e.loc.join(".")).collect();
        assert_eq!(locs, ["body.date", "body.store", "body.item"]);
        assert!(errors.iter().all(|e| e.kind == "missing"));
    }

    #[test]
    fn given_bad_values_when_validated_then_each_error_says_why() {
        let errors = errors_of(json!({"date": "2018-02-30", "store": 0, "item": 2.5}));
        let kinds: Vec<_> = errors
            .iter()
            .map(|e| (e.loc[1].as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("date", "date_parsing"),
                ("store", "greater_than_equal"),
                ("item", "int_parsing")
            ]
        );
        let errors = errors_of(json!({"date": 20180101, "store": 1e30, "item": 2_000_000}));
        let kinds: Vec<_> = errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["date_type", "int_parsing", "less_than_equal"]);
    }

    #[test]
    fn given_a_non_object_when_validated_then_the_body_itself_is_blamed() {
        let errors = errors_of(json!([1, 2, 3]));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].loc, ["body"]);
    }

    #[test]
    fn id_newtypes_reject_zero_and_too_large() {
        assert!(StoreId::new(0).is_none());
        assert!(ItemId::new(MAX_ID + 1).is_none());
        assert_eq!(StoreId::new(10).map(StoreId::get), Some(10));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::testing::{any_json, request_json};

        proptest! {
            #[test]
            fn any_json_is_a_request_or_located_field_errors(value in any_json()) {
                match ForecastRequest::from_json(&value, &["body"]) {
                    // Random JSON rarely validates; what a valid request decodes to is the
                    // next property's concern.
                    Ok(_) => {}
                    Err(errors) => {
                        prop_assert!(!errors.is_empty() && errors.len() <= 3);
                        for error in errors {
                            prop_assert_eq!(&error.loc[0], "body");
                            prop_assert!(!error.msg.is_empty() && !error.kind.is_empty());
                        }
                    }
                }
            }

            #[test]
            fn requests_as_clients_write_them_validate_to_what_they_say(
                (value, expected) in request_json(),
            ) {
                let found = ForecastRequest::from_json(&value, &["body"]).map_err(|errors| {
                    errors
                        .into_iter()
                        .map(|e| (e.loc.join("."), e.kind))
                        .collect::<Vec<_>>()
                });
                let expected = expected.map_err(|fields| {
                    fields
                        .into_iter()
                        .map(|(field, kind)| (format!("body.{field}"), kind.to_owned()))
                        .collect::<Vec<_>>()
                });
                prop_assert_eq!(found, expected, "{}", value);
            }

            #[test]
            fn valid_requests_round_trip_through_json(
                offset in 0u64..3_652_059,
                store in 1..=MAX_ID,
                item in 1..=MAX_ID,
            ) {
                let request = ForecastRequest {
                    date: NaiveDate::from_ymd_opt(1, 1, 1).unwrap() + chrono::Days::new(offset),
                    store: StoreId::new(store).unwrap(),
                    item: ItemId::new(item).unwrap(),
                };
                let value = serde_json::to_value(request).unwrap();
                prop_assert_eq!(ForecastRequest::from_json(&value, &["body"]), Ok(request));
            }
        }
    }
}
