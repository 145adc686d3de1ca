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
