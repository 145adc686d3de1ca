//! Property-test strategies shared by the crates that decode client and model payloads.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Any JSON value: scalars (with extreme and fractional numbers), and arrays and objects
/// nested a few levels, with keys drawn mostly from the API's own field names so that
/// generated values reach past the first type check.
pub fn any_json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-3i64..12).prop_map(Value::from),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        any::<String>().prop_map(Value::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any_key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Object keys: the API's and MLflow's field names, or anything.
pub fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "date",
            "store",
            "item",
            "instances",
            "inputs",
            "dataframe_split",
            "dataframe_records",
            "columns",
            "data",
            "index",
            "params",
            "ping",
            "month",
            "day",
            "year",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// What validating a generated `{date, store, item}` must give: the request, or each failing
/// field with its error kind, in the order date, store, item.
pub type ExpectedRequest = Result<crate::ForecastRequest, Vec<(&'static str, &'static str)>>;

/// Every calendar day of years 1..=9999.
fn any_day() -> impl Strategy<Value = chrono::NaiveDate> {
    (0u64..3_652_059).prop_map(|offset| {
        chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default() + chrono::Days::new(offset)
    })
}

/// A `date` field as clients write it and what it must validate to.
fn date_field() -> impl Strategy<Value = Field<chrono::NaiveDate>> {
    prop_oneof![
        4 => any_day().prop_map(|d| (Some(Value::from(d.format("%Y-%m-%d").to_string())), Ok(d))),
        1 => any_day().prop_map(|d| {
            (Some(Value::from(d.format("%Y-%m-%dT00:00:00").to_string())), Ok(d))
        }),
        1 => prop::sample::select(vec!["2018-02-30", "2019-02-29", "soon", "", "2018-1-1x"])
            .prop_map(|s| (Some(Value::from(s)), Err("date_parsing"))),
        1 => prop_oneof![Just(Value::from(20_180_101)), Just(Value::Bool(true)), Just(Value::Array(Vec::new()))]
            .prop_map(|v| (Some(v), Err("date_type"))),
        1 => prop_oneof![Just(None), Just(Some(Value::Null))].prop_map(|v| (v, Err("missing"))),
    ]
}

/// A `store` or `item` field as clients write it and what it must validate to: integers,
/// digit strings (padded) and integral floats are ids, like the original pydantic model.
fn id_field() -> impl Strategy<Value = Field<u32>> {
    let max = crate::request::MAX_ID;
    // The bounds themselves come up often: an off-by-one is the likely mistake.
    let id = || prop_oneof![Just(1), Just(max), 1..=max];
    let too_small = prop_oneof![Just(0), -3i64..=0, i64::MIN..=0];
    let too_large = prop_oneof![Just(u64::from(max) + 1), u64::from(max) + 1..=u64::MAX];
    prop_oneof![
        4 => id().prop_map(|n| (Some(Value::from(n)), Ok(n))),
        1 => id().prop_map(|n| (Some(Value::from(format!(" {n}"))), Ok(n))),
        1 => id().prop_map(|n| (Some(Value::from(f64::from(n))), Ok(n))),
        1 => too_small.prop_map(|n| (Some(Value::from(n)), Err("greater_than_equal"))),
        1 => too_large.prop_map(|n| (Some(Value::from(n)), Err("less_than_equal"))),
        1 => prop_oneof![
            (1u32..1000).prop_map(|n| Value::from(f64::from(n) + 0.5)),
            Just(Value::from(1e30)),
            Just(Value::from("3.0")),
            Just(Value::from("three")),
            Just(Value::Bool(false)),
        ]
        .prop_map(|v| (Some(v), Err("int_parsing"))),
        1 => prop_oneof![Just(None), Just(Some(Value::Null))].prop_map(|v| (v, Err("missing"))),
    ]
}

/// A field as written (absent when `None`) and what it must validate to, or its error kind.
type Field<T> = (Option<Value>, Result<T, &'static str>);

fn request_from_fields(
    (date, store, item, extra): (
        Field<chrono::NaiveDate>,
        Field<u32>,
        Field<u32>,
        Option<Value>,
    ),
) -> (Value, ExpectedRequest) {
    let mut object = Map::new();
    let mut errors = Vec::new();
    for (name, value, error) in [
        ("date", date.0, date.1.err()),
        ("store", store.0, store.1.err()),
        ("item", item.0, item.1.err()),
        ("note", extra, None),
    ] {
        if let Some(value) = value {
            object.insert(name.to_owned(), value);
        }
        if let Some(kind) = error {
            errors.push((name, kind));
        }
    }
    let expected = match (date.1, store.1, item.1) {
        (Ok(date), Ok(store), Ok(item)) => crate::StoreId::new(store)
            .zip(crate::ItemId::new(item))
            .map(|(store, item)| crate::ForecastRequest { date, store, item })
            .ok_or(errors),
        _ => Err(errors),
    };
    (Value::Object(object), expected)
}

/// A `{date, store, item}` object, each field valid or broken in one of the ways clients
/// break it (plus, sometimes, a field the API ignores), with what validation must give.
pub fn request_json() -> impl Strategy<Value = (Value, ExpectedRequest)> {
    (
        date_field(),
        id_field(),
        id_field(),
        prop::option::of(any_json()),
    )
        .prop_map(request_from_fields)
}

/// A valid `{date, store, item}` object, in any of the accepted spellings, and its request.
pub fn valid_request_json() -> impl Strategy<Value = (Value, ExpectedRequest)> {
    let valid_date = date_field().prop_filter("a valid date", |(_, d)| d.is_ok());
    let valid_id = || id_field().prop_filter("a valid id", |(_, id)| id.is_ok());
    (
        valid_date,
        valid_id(),
        valid_id(),
        prop::option::of(any_json()),
    )
        .prop_map(request_from_fields)
}
