//! The decoder's answers, message for message, and properties against a JSON tree.

use forecast::wire::DataframeSplit;
use serde_json::json;

use super::*;

fn decode(payload: &Value) -> Result<ModelInvocation, ModelError> {
    // Both entry points must agree on every payload.
    let from_text = decode_str(&payload.to_string(), 3);
    let from_tree = decode_value(payload, 3);
    assert_eq!(from_text, from_tree, "{payload}");
    from_text
}

fn rows(payload: Value) -> ScoringInput {
    match decode(&payload) {
        Ok(ModelInvocation::Predict(input)) => input,
        other => panic!("expected rows from {payload}, got {other:?}"),
    }
}

fn error(payload: Value) -> ModelError {
    match decode(&payload) {
        Err(err) => err,
        Ok(other) => panic!("expected an error from {payload}, got {other:?}"),
    }
}

fn invalid(payload: Value) -> String {
    let err = error(payload);
    assert_eq!(err.kind, ModelErrorType::InvalidInput, "{}", err.message);
    err.message
}

fn names(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn decodes_ping_with_or_without_params() {
    assert_eq!(decode(&json!({"ping": {}})), Ok(ModelInvocation::Ping));
    assert_eq!(
        decode(&json!({"params": {"x": 1}, "ping": {}})),
        Ok(ModelInvocation::Ping)
    );
}

#[test]
fn decodes_dataframe_split_with_optional_index_and_params() {
    let input = rows(json!({
        "dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, -4]], "index": [7, "x"]},
        "params": {"anything": 1}
    }));
    assert_eq!(input.columns, names(&["a", "b"]));
    assert_eq!((input.rows, input.width), (2, 2));
    assert_eq!(input.values, [1.0, 2.5, 3.0, -4.0]);
}

#[test]
fn dataframe_split_fields_may_come_in_any_order() {
    let input =
        rows(json!({"dataframe_split": {"data": [[1, 2]], "index": null, "columns": ["a", "b"]}}));
    assert_eq!(input.columns, names(&["a", "b"]));
    assert_eq!(input.values, [1.0, 2.0]);
}

#[test]
fn dataframe_split_without_columns_is_positional() {
    let input = rows(json!({"dataframe_split": {"data": [[1, 2, 3]]}}));
    assert_eq!((input.columns, input.width, input.rows), (None, 3, 1));
}

#[test]
fn the_orchestrators_dataframe_split_decodes() {
    let split = DataframeSplit {
        columns: vec!["store".into(), "item".into()],
        data: vec![vec![1.0, 2.0]],
        index: None,
    };
    let input = rows(json!({ "dataframe_split": split }));
    assert_eq!(input.columns, names(&["store", "item"]));
    assert_eq!(input.values, [1.0, 2.0]);
}

#[test]
fn decodes_dataframe_records_with_keys_in_any_order() {
    let input = rows(json!({"dataframe_records": [{"a": 1, "b": 2}, {"b": 4, "a": 3}]}));
    assert_eq!(input.columns, names(&["a", "b"]));
    assert_eq!(input.values, [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn wide_records_use_the_lookup() {
    let keys: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    let record = |offset: f64| {
        let mut object = serde_json::Map::new();
        for (i, key) in keys.iter().enumerate().rev() {
            object.insert(key.clone(), json!(i as f64 + offset));
        }
        Value::Object(object)
    };
    let input = rows(json!({"dataframe_records": [record(0.0), record(100.0)]}));
    assert_eq!(input.width, 40);
    let columns = input.columns.unwrap();
    for (i, column) in columns.iter().enumerate() {
        let n: f64 = column[1..].parse().unwrap();
        assert_eq!(input.values[i], n);
        assert_eq!(input.values[40 + i], n + 100.0);
    }
}

#[test]
fn decodes_instances_and_inputs_as_rows_records_or_columns() {
    for key in ["instances", "inputs"] {
        let input = rows(json!({ key: [[1, 2], [3, 4]] }));
        assert_eq!((input.columns, input.width, input.rows), (None, 2, 2));
        assert_eq!(input.values, [1.0, 2.0, 3.0, 4.0]);

        let input = rows(json!({ key: [{"a": 1, "b": 2}, {"b": 4, "a": 3}] }));
        assert_eq!(input.columns, names(&["a", "b"]));
        assert_eq!(input.values, [1.0, 2.0, 3.0, 4.0]);

        let input = rows(json!({ key: {"a": [1, 3], "b": [2, 4]} }));
        assert_eq!(input.columns, names(&["a", "b"]));
        assert_eq!((input.rows, input.width), (2, 2));
        assert_eq!(input.values, [1.0, 2.0, 3.0, 4.0]);
    }
}

#[test]
fn empty_batches_decode_to_no_rows() {
    for payload in [
        json!({"dataframe_split": {"columns": ["a"], "data": []}}),
        json!({"dataframe_records": []}),
        json!({"instances": []}),
        json!({"inputs": {}}),
        json!({"inputs": {"a": []}}),
    ] {
        let input = rows(payload);
        assert_eq!(input.rows, 0);
        assert!(input.values.is_empty());
    }
}

#[test]
fn rejects_none_several_or_unknown_inputs_naming_the_accepted_keys() {
    for payload in [
        json!({}),
        json!({"params": {}}),
        json!({"ping": {}, "dataframe_split": {"data": []}}),
        json!({"instances": [], "inputs": []}),
        json!({"dataframe_records": [], "instances": []}),
        json!({"tensor": []}),
        json!([1, 2]),
        json!("ping"),
        json!(null),
    ] {
        let message = invalid(payload.clone());
        assert!(
            message.contains("dataframe_split, dataframe_records, instances, inputs, ping"),
            "{payload}: {message}"
        );
    }
}

#[test]
fn several_inputs_are_named() {
    let err = decode_str(r#"{"instances": [], "inputs": [[1]]}"#, 3).unwrap_err();
    assert!(
        err.message
            .starts_with("the payload has both \"instances\" and \"inputs\""),
        "{err}"
    );
}

#[test]
fn params_must_be_an_object() {
    assert_eq!(
        invalid(json!({"params": [1], "ping": {}})),
        "params must be an object; found a list"
    );
    assert_eq!(
        decode(&json!({"params": null, "ping": {}})),
        Ok(ModelInvocation::Ping)
    );
}

#[test]
fn non_numeric_cells_name_row_and_column() {
    let cases = [
        (
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, "4"]]}}),
            "row 1, column \"b\": expected a number, found a string",
        ),
        (
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, true]]}}),
            "row 0, column \"b\": expected a number, found a boolean",
        ),
        (
            json!({"dataframe_records": [{"a": 1}, {"a": null}]}),
            "row 1, column \"a\": expected a number, found null",
        ),
        (
            json!({"instances": [[1, [2]]]}),
            "row 0, column 1: expected a number, found a list",
        ),
        (
            json!({"inputs": {"a": [1, 2], "b": [3, {"x": 1}]}}),
            "row 1, column \"b\": expected a number, found an object",
        ),
    ];
    for (payload, expected) in cases {
        assert_eq!(invalid(payload), expected);
    }
    // Before the columns arrive, the column is named by its position.
    let err = decode_str(
        r#"{"dataframe_split": {"data": [[1, true]], "columns": ["a", "b"]}}"#,
        3,
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "row 0, column 1: expected a number, found a boolean"
    );
}

#[test]
fn numbers_that_are_not_finite_never_reach_the_model() {
    // JSON has no NaN or infinity, and serde_json refuses numbers that overflow f64.
    let err = decode_str(r#"{"instances": [[1e400]]}"#, DEFAULT_MAX_ROWS).unwrap_err();
    assert_eq!(err.kind, ModelErrorType::InvalidInput);
    assert!(
        err.message.starts_with("the payload is not valid JSON"),
        "{err}"
    );
    let err = decode_str(r#"{"instances": [[NaN]]}"#, DEFAULT_MAX_ROWS).unwrap_err();
    assert!(
        err.message.starts_with("the payload is not valid JSON"),
        "{err}"
    );
}

#[test]
fn ragged_rows_are_invalid_input() {
    assert_eq!(
        invalid(json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}})),
        "row 1 has 1 values but there are 2 columns"
    );
    assert_eq!(
        invalid(json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}})),
        "row 0 has 3 values but there are 2 columns"
    );
    assert_eq!(
        invalid(json!({"dataframe_split": {"data": [[1, 2, 3]], "columns": ["a", "b"]}})),
        "row 0 has 3 values but there are 2 columns"
    );
    // Values past the width are counted, every one of them.
    assert_eq!(
        invalid(json!({"dataframe_split": {"columns": ["a"], "data": [[1, 2, 3, "x"]]}})),
        "row 0 has 4 values but there are 1 columns"
    );
    assert_eq!(
        invalid(json!({"instances": [[1, 2], [3, 4, 5]]})),
        "row 1 has 3 values but row 0 has 2; every row needs the same number"
    );
    assert_eq!(
        invalid(json!({"inputs": {"a": [1, 2], "b": [3]}})),
        "inputs: column \"b\" has 1 values but column \"a\" has 2"
    );
}

#[test]
fn records_that_disagree_about_columns_are_schema_mismatches() {
    let err = error(json!({"dataframe_records": [{"a": 1, "b": 2}, {"a": 3}]}));
    assert_eq!(err.kind, ModelErrorType::SchemaMismatch);
    assert!(err.message.starts_with("row 1 lacks column \"b\""), "{err}");
    let err = error(json!({"instances": [{"a": 1}, {"a": 3, "c": 4}]}));
    assert_eq!(err.kind, ModelErrorType::SchemaMismatch);
    assert!(err.message.starts_with("row 1 has column \"c\""), "{err}");
}

#[test]
fn mixed_or_scalar_rows_are_invalid_input() {
    assert_eq!(
        invalid(json!({"instances": [[1], {"a": 1}]})),
        "instances row 1 must be a list of values like row 0; found an object"
    );
    assert_eq!(
        invalid(json!({"dataframe_records": [[1, 2]]})),
        "dataframe_records row 0 must be an object (a record); found a list"
    );
    assert_eq!(
        invalid(json!({"dataframe_split": {"columns": ["a"], "data": [{"a": 1}]}})),
        "dataframe_split.data row 0 must be a list of values; found an object"
    );
    assert_eq!(
        invalid(json!({"inputs": [1, 2]})),
        "inputs row 0 must be a list of values or an object (a record); found a number"
    );
    assert_eq!(
        invalid(json!({"dataframe_records": {"a": 1}})),
        "dataframe_records must be a list of records (objects); found an object"
    );
    assert_eq!(
        invalid(json!({"instances": "rows"})),
        "instances must be a list of rows (lists or objects) or an object of columns; found a string"
    );
}

#[test]
fn malformed_dataframe_split_is_invalid_input() {
    let cases = [
        (
            json!({"dataframe_split": []}),
            "dataframe_split must be an object with columns and data; found a list",
        ),
        (
            json!({"dataframe_split": {"columns": ["a"]}}),
            "dataframe_split has no data",
        ),
        (
            json!({"dataframe_split": {"columns": ["a"], "data": [], "dtypes": {}}}),
            "dataframe_split has an unknown field \"dtypes\"; it takes columns, data and an optional index",
        ),
        (
            json!({"dataframe_split": {"columns": "a", "data": []}}),
            "dataframe_split.columns must be a list of strings; found a string",
        ),
        (
            json!({"dataframe_split": {"columns": ["a", 1], "data": []}}),
            "dataframe_split.columns[1] must be a string; found a number",
        ),
        (
            json!({"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [1, 2]}}),
            "dataframe_split.index has 2 labels but data has 1 rows",
        ),
        (
            json!({"dataframe_split": {"columns": ["a"], "data": [[1]], "index": 3}}),
            "dataframe_split.index must be a list; found a number",
        ),
        (
            json!({"dataframe_split": {"columns": ["a"], "data": 3}}),
            "dataframe_split.data must be a list of rows (lists of numbers); found a number",
        ),
        (
            json!({"dataframe_records": [{"a": 1}], "x": 1}),
            "unsupported key \"x\"; send exactly one of dataframe_split, dataframe_records, instances, inputs, ping (plus optional params)",
        ),
    ];
    for (payload, expected) in cases {
        assert_eq!(invalid(payload), expected);
    }
    let err = decode_str(
        r#"{"dataframe_split": {"columns": ["a"], "columns": ["b"], "data": []}}"#,
        3,
    )
    .unwrap_err();
    assert_eq!(err.message, "dataframe_split has columns twice");
    let err = decode_str(r#"{"dataframe_records": [{"a": 1, "a": 2}]}"#, 3).unwrap_err();
    assert_eq!(err.message, "row 0 has column \"a\" twice");
    let err = decode_str(r#"{"dataframe_records": [{"a": 1}, {"a": 1, "a": 2}]}"#, 3).unwrap_err();
    assert_eq!(err.message, "row 1 has column \"a\" twice");
}

#[test]
fn more_rows_than_the_limit_are_refused_in_every_form() {
    let expected = "the request has more than 3 rows; send at most 3 rows per request";
    for payload in [
        json!({"dataframe_split": {"columns": ["a"], "data": [[1], [2], [3], [4]]}}),
        json!({"dataframe_records": [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]}),
        json!({"instances": [[1], [2], [3], [4]]}),
        json!({"inputs": {"a": [1, 2, 3, 4]}}),
    ] {
        assert_eq!(invalid(payload), expected);
    }
    assert_eq!(rows(json!({"instances": [[1], [2], [3]]})).rows, 3);
}

/// The limit ends the parse at the first row past it: nothing after that row is read, not
/// even text that is not JSON, so a hostile body never has all of its rows held.
#[test]
fn the_row_limit_stops_the_parse_at_the_first_row_past_it() {
    let expected = "the request has more than 3 rows; send at most 3 rows per request";
    for text in [
        r#"{"dataframe_split": {"columns": ["a"], "data": [[1], [2], [3], [4], ["x"]"#,
        r#"{"dataframe_records": [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}, not JSON"#,
        r#"{"instances": [[1], [2], [3], ["x"], [5]"#,
        r#"{"inputs": {"a": [1, 2, 3, 4, "x"#,
        // The element past the cap is refused as it begins, before a single byte of it is read.
        r#"{"instances": [[1], [2], [3], 01"#,
        r#"{"inputs": {"a": [1, 2, 3, 01"#,
    ] {
        let err = decode_str(text, 3).unwrap_err();
        assert_eq!(err.message, expected, "{text}");
    }
}

#[test]
fn too_many_columns_are_refused() {
    let row: Vec<u32> = vec![1; MAX_COLUMNS + 1];
    assert_eq!(
        invalid(json!({ "instances": [row] })),
        format!("row 0 has more than {MAX_COLUMNS} columns")
    );
    let names: Vec<String> = (0..=MAX_COLUMNS).map(|i| format!("c{i}")).collect();
    assert_eq!(
        invalid(json!({"dataframe_split": {"columns": names, "data": []}})),
        format!("dataframe_split.columns has more than {MAX_COLUMNS} columns")
    );
    let record: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.clone(), json!(1))).collect();
    assert_eq!(
        invalid(json!({ "dataframe_records": [record] })),
        format!("row 0 has more than {MAX_COLUMNS} columns")
    );
}

#[test]
fn exactly_the_column_cap_is_accepted_in_every_form() {
    let names: Vec<String> = (0..MAX_COLUMNS).map(|i| format!("c{i}")).collect();
    let row: Vec<u32> = vec![1; MAX_COLUMNS];
    let record: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.clone(), json!(1))).collect();
    let columns: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.clone(), json!([1]))).collect();
    for payload in [
        json!({ "instances": [row] }),
        json!({"dataframe_split": {"columns": names, "data": [row]}}),
        json!({"dataframe_split": {"data": [row], "columns": names}}),
        json!({ "dataframe_records": [record] }),
        json!({ "inputs": columns }),
    ] {
        let input = rows(payload);
        assert_eq!((input.rows, input.width), (1, MAX_COLUMNS));
        assert!(input.values.iter().all(|v| *v == 1.0));
    }
}

#[test]
fn long_keys_are_shortened_in_messages() {
    let key = "k".repeat(500);
    let message = invalid(json!({ key: 1 }));
    assert!(message.len() < 200, "{message}");
}

#[test]
fn syntax_errors_are_invalid_input() {
    let err = decode_str(r#"{"ping": {}"#, 3).unwrap_err();
    assert_eq!(err.kind, ModelErrorType::InvalidInput);
    assert!(
        err.message.starts_with("the payload is not valid JSON"),
        "{err}"
    );
    let err = decode_str(r#"{"ping": {}} x"#, 3).unwrap_err();
    assert!(
        err.message.starts_with("the payload is not valid JSON"),
        "{err}"
    );
}

/// Found by `make fuzz` (fuzz/regressions/model_payload): the stream keeps the keys of an
/// object of columns as written, a JSON tree sorts them; both describe the same rows.
#[test]
fn an_object_of_columns_decodes_to_the_same_rows_from_text_and_tree() {
    let text = r#"{"instances": {"store": [1, 2], "item": [3, 4]}}"#;
    let value: Value = serde_json::from_str(text).unwrap();
    let by_name = |invocation: ModelInvocation| -> Vec<(String, Vec<f64>)> {
        let ModelInvocation::Predict(input) = invocation else {
            panic!("expected rows");
        };
        let names = input.columns.unwrap();
        let mut columns: Vec<(String, Vec<f64>)> = names
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let values = input.values.iter().skip(c).step_by(input.width).copied();
                (name.clone(), values.collect())
            })
            .collect();
        columns.sort_by(|a, b| a.0.cmp(&b.0));
        columns
    };
    let streamed = by_name(decode_str(text, 10).unwrap());
    assert_eq!(streamed, by_name(decode_value(&value, 10).unwrap()));
    assert_eq!(
        streamed,
        [
            ("item".to_owned(), vec![3.0, 4.0]),
            ("store".to_owned(), vec![1.0, 2.0])
        ]
    );
}

/// Found by `make fuzz`: a record naming a column twice is refused from text (what the
/// host decodes), where a JSON tree would silently keep the last value.
#[test]
fn a_record_with_a_repeated_key_is_refused_from_text() {
    let text = r#"{"dataframe_records": [{"store": 1, "item": 2, "store": 3}]}"#;
    let err = decode_str(text, 10).unwrap_err();
    assert!(err.message.contains("\"store\" twice"), "{}", err.message);
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use forecast::testing::{any_json, any_key};

    /// JSON as text is written, not as a serialiser writes it: keys in any order and
    /// sometimes repeated, whitespace anywhere, escaped characters in strings and keys,
    /// and each number in one of its spellings (some of them not JSON at all).
    #[derive(Debug, Clone)]
    enum Doc {
        /// A scalar exactly as written: a number's spelling, a literal, a quoted string.
        Raw(String),
        List(Vec<Doc>),
        /// (key as meant, key as written between the quotes, value).
        Object(Vec<(String, String, Doc)>),
    }

    impl Doc {
        fn render(&self, spaces: &[String]) -> String {
            let mut out = String::new();
            let mut next = 0usize;
            self.write(&mut out, spaces, &mut next);
            out
        }

        fn write(&self, out: &mut String, spaces: &[String], next: &mut usize) {
            let space = |out: &mut String, next: &mut usize| {
                if !spaces.is_empty() {
                    out.push_str(&spaces[*next % spaces.len()]);
                    *next += 1;
                }
            };
            space(out, next);
            match self {
                Self::Raw(text) => out.push_str(text),
                Self::List(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        item.write(out, spaces, next);
                    }
                    space(out, next);
                    out.push(']');
                }
                Self::Object(entries) => {
                    out.push('{');
                    for (i, (_, written, value)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        space(out, next);
                        out.push('"');
                        out.push_str(written);
                        out.push('"');
                        space(out, next);
                        out.push(':');
                        value.write(out, spaces, next);
                    }
                    space(out, next);
                    out.push('}');
                }
            }
            space(out, next);
        }

        fn objects(&self) -> Vec<&[(String, String, Doc)]> {
            match self {
                Self::Raw(_) => Vec::new(),
                Self::List(items) => items.iter().flat_map(Self::objects).collect(),
                Self::Object(entries) => std::iter::once(entries.as_slice())
                    .chain(entries.iter().flat_map(|(_, _, v)| v.objects()))
                    .collect(),
            }
        }

        fn has_repeated_keys(&self) -> bool {
            self.objects().iter().any(|entries| {
                entries
                    .iter()
                    .enumerate()
                    .any(|(i, (key, _, _))| entries[..i].iter().any(|(other, _, _)| other == key))
            })
        }

        fn has_top_level_key(&self, wanted: &str) -> bool {
            matches!(self, Self::Object(entries) if entries.iter().any(|(key, _, _)| key == wanted))
        }

        /// No token that JSON's grammar forbids.
        fn is_grammatical(&self) -> bool {
            match self {
                Self::Raw(text) => !NOT_JSON.contains(&text.as_str()),
                Self::List(items) => items.iter().all(Self::is_grammatical),
                Self::Object(entries) => entries.iter().all(|(_, _, v)| v.is_grammatical()),
            }
        }

        /// Every object's keys in the order a JSON tree keeps them (sorted).
        fn keys_in_tree_order(&self) -> bool {
            self.objects()
                .iter()
                .all(|entries| entries.windows(2).all(|w| w[0].0 <= w[1].0))
        }
    }

    /// `text` between quotes, each character written plainly or escaped (`\uXXXX`,
    /// surrogate pairs, the short escapes).
    fn spelled_string(text: String) -> impl Strategy<Value = String> {
        let n = text.chars().count();
        prop::collection::vec(0u8..4, n).prop_map(move |choices| {
            let mut out = String::new();
            for (c, choice) in text.chars().zip(choices) {
                let short = match c {
                    '"' => Some("\\\""),
                    '\\' => Some("\\\\"),
                    '/' => Some("\\/"),
                    '\n' => Some("\\n"),
                    '\t' => Some("\\t"),
                    '\r' => Some("\\r"),
                    '\u{8}' => Some("\\b"),
                    '\u{c}' => Some("\\f"),
                    _ => None,
                };
                let must_escape = c == '"' || c == '\\' || c < ' ';
                match (choice, short) {
                    (0, Some(short)) => out.push_str(short),
                    (0 | 1, _) if !must_escape => out.push(c),
                    _ => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                }
            }
            out
        })
    }

    /// A key (as meant, as written).
    fn key(names: &'static [&'static str]) -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            30 => prop::sample::select(names).prop_map(str::to_owned),
            1 => any::<String>(),
        ]
        .prop_flat_map(|key| (Just(key.clone()), spelled_string(key)))
    }

    fn string_doc() -> BoxedStrategy<Doc> {
        prop_oneof![
            prop::sample::select(&["store", "item", "2018-01-01"][..]).prop_map(str::to_owned),
            any::<String>(),
        ]
        .prop_flat_map(spelled_string)
        .prop_map(|s| Doc::Raw(format!("\"{s}\"")))
        .boxed()
    }

    /// A number in one of its spellings, or now and then something that looks like one.
    fn number_doc() -> BoxedStrategy<Doc> {
        let small = (-3i64..12, 0usize..6).prop_map(|(n, how)| match how {
            0 => n.to_string(),
            1 => format!("{n}.0"),
            2 => format!("{n}e0"),
            3 => format!("{n}0E-1"),
            4 => format!("{n}.000e+0"),
            _ => {
                if n == 0 {
                    "-0".to_owned()
                } else {
                    format!("{n}")
                }
            }
        });
        prop_oneof![
            16 => small,
            3 => any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(|v| format!("{v:?}")),
            2 => any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(|v| format!("{v:e}")),
            1 => prop::sample::select(&[
                "18446744073709551615", "18446744073709551616", "-9223372036854775808",
                "1e400", "-1e400", "4.9e-324", "1e-400", "\"\\uD800\"",
                "01", "+1", ".5", "1.", "NaN",
            ][..]).prop_map(str::to_owned),
        ]
        .prop_map(Doc::Raw)
        .boxed()
    }

    fn cell_doc() -> BoxedStrategy<Doc> {
        prop_oneof![
            40 => number_doc(),
            1 => string_doc(),
            1 => prop::sample::select(&["null", "true", "false", "[]", "{}"][..])
                .prop_map(|s| Doc::Raw(s.to_owned())),
        ]
        .boxed()
    }

    const COLUMNS: &[&str] = &["store", "item", "month", "day", "year"];
    /// Spellings of numbers that JSON's grammar does not allow.
    const NOT_JSON: &[&str] = &["01", "+1", ".5", "1.", "NaN"];

    /// An object whose entries come in any order (a third of the time sorted, as a tree
    /// keeps them), each key once, except now and then one written twice.
    fn object(
        entries: impl Strategy<Value = Vec<(String, String, Doc)>>,
    ) -> impl Strategy<Value = Doc> {
        let how = 0u8..6;
        (
            entries.prop_shuffle(),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            how,
        )
            .prop_map(|(mut entries, from, to, how)| {
                let mut seen = Vec::new();
                entries.retain(|(key, _, _)| {
                    let first = !seen.contains(key);
                    seen.push(key.clone());
                    first
                });
                match how {
                    0 if !entries.is_empty() => {
                        let copy = entries[from.index(entries.len())].clone();
                        entries.insert(to.index(entries.len() + 1), copy);
                    }
                    1 | 2 => entries.sort_by(|a, b| a.0.cmp(&b.0)),
                    _ => {}
                }
                Doc::Object(entries)
            })
    }

    fn entry(
        names: &'static [&'static str],
        value: impl Strategy<Value = Doc>,
    ) -> impl Strategy<Value = (String, String, Doc)> {
        (key(names), value).prop_map(|((key, written), value)| (key, written, value))
    }

    /// Some of the model's column names, in some order.
    fn column_names() -> impl Strategy<Value = Vec<&'static str>> {
        prop::sample::subsequence(COLUMNS, 1..=COLUMNS.len()).prop_shuffle()
    }

    /// A record with exactly `names` (each key spelled its own way), in any order.
    fn record_of(names: Vec<&'static str>) -> impl Strategy<Value = Doc> {
        let entries: Vec<_> = names
            .into_iter()
            .map(|name| {
                (spelled_string(name.to_owned()), cell_doc())
                    .prop_map(move |(written, value)| (name.to_owned(), written, value))
            })
            .collect();
        object(entries)
    }

    /// Records: mostly all with the same columns, sometimes each with its own.
    fn records_doc() -> BoxedStrategy<Doc> {
        prop_oneof![
            3 => (column_names(), 0usize..4).prop_flat_map(|(names, n)| {
                prop::collection::vec(record_of(names), n)
            }),
            1 => prop::collection::vec(column_names().prop_flat_map(record_of), 0..4),
        ]
        .prop_map(Doc::List)
        .boxed()
    }

    fn row_doc(width: usize) -> impl Strategy<Value = Doc> {
        prop::collection::vec(cell_doc(), width).prop_map(Doc::List)
    }

    /// Positional rows: mostly of one width, sometimes ragged.
    fn lists_doc() -> BoxedStrategy<Doc> {
        prop_oneof![
            3 => (1usize..6, 0usize..4).prop_flat_map(|(width, n)| {
                prop::collection::vec(row_doc(width), n)
            }),
            1 => prop::collection::vec((0usize..6).prop_flat_map(row_doc), 0..4),
        ]
        .prop_map(Doc::List)
        .boxed()
    }

    /// An object of columns: mostly of one length.
    fn columns_doc() -> BoxedStrategy<Doc> {
        (column_names(), 0usize..4)
            .prop_flat_map(|(names, n)| {
                let entries: Vec<_> = names
                    .into_iter()
                    .map(|name| {
                        let length = prop_oneof![6 => Just(n), 1 => 0usize..4];
                        let values =
                            length.prop_flat_map(|len| prop::collection::vec(cell_doc(), len));
                        (spelled_string(name.to_owned()), values).prop_map(
                            move |(written, values)| (name.to_owned(), written, Doc::List(values)),
                        )
                    })
                    .collect();
                object(entries)
            })
            .boxed()
    }

    /// The rows of an `instances` or `inputs` payload: records, lists, or columns.
    fn rows_doc() -> BoxedStrategy<Doc> {
        prop_oneof![records_doc(), lists_doc(), columns_doc()].boxed()
    }

    fn split_doc() -> BoxedStrategy<Doc> {
        let columns = column_names()
            .prop_flat_map(|names| {
                names
                    .into_iter()
                    .map(|n| spelled_string(n.to_owned()))
                    .collect::<Vec<_>>()
            })
            .prop_map(|names| {
                Doc::List(
                    names
                        .into_iter()
                        .map(|n| Doc::Raw(format!("\"{n}\"")))
                        .collect(),
                )
            });
        let data = lists_doc();
        let index = prop::collection::vec(number_doc(), 0..4).prop_map(Doc::List);
        let fields = (
            prop::option::weighted(0.7, entry(&["columns"], columns)),
            prop::option::weighted(0.95, entry(&["data"], data)),
            prop::option::weighted(0.15, entry(&["index"], index)),
        )
            .prop_map(|(c, d, i)| c.into_iter().chain(d).chain(i).collect::<Vec<_>>());
        object(fields).boxed()
    }

    /// A model payload: one MLflow input, sometimes with params, now and then with a
    /// second input or a key the host does not take; and the whitespace to write it with.
    fn payload_text() -> impl Strategy<Value = (Doc, Vec<String>)> {
        let input = || {
            prop_oneof![
                entry(&["dataframe_split"], split_doc()),
                entry(&["dataframe_records"], records_doc()),
                entry(&["instances", "inputs"], rows_doc()),
                entry(&["ping"], Just(Doc::Object(Vec::new()))),
            ]
        };
        let params = entry(
            &["params"],
            prop_oneof![6 => column_names().prop_flat_map(record_of), 1 => cell_doc()],
        );
        let extra = prop_oneof![input(), entry(&["index"], cell_doc())];
        let entries = (
            input(),
            prop::option::of(params),
            prop::option::weighted(0.1, extra),
        )
            .prop_map(|(input, params, extra)| {
                std::iter::once(input)
                    .chain(params)
                    .chain(extra)
                    .collect::<Vec<_>>()
            });
        let spaces = prop::collection::vec("[ \t\n\r]{0,2}", 0..8);
        (object(entries), spaces)
    }

    /// Rows by column name, so that column order (the stream keeps the written order, a
    /// tree sorts) does not count as a difference.
    /// Row count and (column name, values) pairs.
    type Columns = (usize, Vec<(Option<String>, Vec<f64>)>);

    fn by_name(invocation: &ModelInvocation) -> Columns {
        let ModelInvocation::Predict(input) = invocation else {
            return (usize::MAX, Vec::new());
        };
        let mut columns: Vec<(Option<String>, Vec<f64>)> = (0..input.width)
            .map(|c| {
                let name = input.columns.as_ref().and_then(|n| n.get(c)).cloned();
                let values = input
                    .values
                    .iter()
                    .skip(c)
                    .step_by(input.width.max(1))
                    .copied();
                (name, values.collect())
            })
            .collect();
        if input.columns.is_some() {
            columns.sort_by(|a, b| a.0.cmp(&b.0));
        }
        (input.rows, columns)
    }

    proptest! {
        #[test]
        fn any_text_decodes_or_is_a_typed_error(text in any::<String>()) {
            if let Err(err) = decode_str(&text, 100) {
                prop_assert!(matches!(err.kind, ModelErrorType::InvalidInput | ModelErrorType::SchemaMismatch));
                prop_assert!(!err.message.is_empty());
            }
        }

        #[test]
        fn any_json_decodes_the_same_from_text_and_tree(value in any_json()) {
            let from_text = decode_str(&value.to_string(), 100);
            let from_tree = decode_value(&value, 100);
            prop_assert_eq!(&from_text, &from_tree);
            if let Ok(ModelInvocation::Predict(input)) = from_text {
                prop_assert_eq!(input.values.len(), input.rows * input.width);
                prop_assert!(input.rows <= 100);
                prop_assert!(input.values.iter().all(|v| v.is_finite()));
            }
        }

        #[test]
        fn written_text_decodes_like_its_tree((doc, spaces) in payload_text()) {
            let text = doc.render(&spaces);
            let from_text = decode_str(&text, 100);
            let typed_refusal = |r: &Result<ModelInvocation, ModelError>| {
                matches!(r, Err(e) if matches!(e.kind, ModelErrorType::InvalidInput | ModelErrorType::SchemaMismatch))
            };
            if !doc.is_grammatical() {
                // Not JSON (`01`, `+1`, `.5`, `1.`, `NaN`) anywhere, even where the value is
                // ignored: refused, for that or for a fault the stream met before it.
                prop_assert!(typed_refusal(&from_text), "{} -> {:?}", text, from_text);
                return Ok(());
            }
            let Ok(tree) = serde_json::from_str::<Value>(&text) else {
                // JSON a tree cannot hold (a number beyond f64, a lone surrogate): refused,
                // unless it sits where the stream only skips (`params`).
                prop_assert!(
                    typed_refusal(&from_text) || doc.has_top_level_key("params"),
                    "{} -> {:?}", text, from_text
                );
                return Ok(());
            };
            let from_tree = decode_value(&tree, 100);
            if !doc.has_repeated_keys() && doc.keys_in_tree_order() {
                // The tree visits keys sorted; text written that way is read identically,
                // down to the words of an error.
                prop_assert_eq!(&from_text, &from_tree, "{}", text);
            } else if !doc.has_repeated_keys() {
                // Key order may change which fault is found first, never the rows.
                match (&from_text, &from_tree) {
                    (Ok(a), Ok(b)) => prop_assert_eq!(by_name(a), by_name(b), "{}", text),
                    (Err(_), Err(_)) => {}
                    _ => prop_assert!(false, "{} -> {:?} but the tree gives {:?}", text, from_text, from_tree),
                }
            } else {
                // A repeated key: the tree keeps the last value, the stream either refuses
                // the payload (for the repetition, or for a value the tree never sees) or
                // reads the same rows.
                match (&from_text, &from_tree) {
                    (Err(e), _) => prop_assert!(
                        matches!(e.kind, ModelErrorType::InvalidInput | ModelErrorType::SchemaMismatch),
                        "{} -> {:?}", text, e
                    ),
                    (Ok(a), Ok(b)) => prop_assert_eq!(by_name(a), by_name(b), "{}", text),
                    (Ok(_), Err(_)) => prop_assert!(false, "{} -> {:?} but the tree gives {:?}", text, from_text, from_tree),
                }
            }
            if let Ok(ModelInvocation::Predict(input)) = &from_text {
                prop_assert_eq!(input.values.len(), input.rows * input.width);
                prop_assert!(input.values.iter().all(|v| v.is_finite()));
            }
        }

        #[test]
        fn dataframe_split_round_trips_in_every_orientation(
            columns in prop::collection::btree_set(any_key(), 1..6),
            seed in prop::collection::vec(-1e12f64..1e12, 0..40),
        ) {
            let columns: Vec<String> = columns.into_iter().collect();
            let width = columns.len();
            let data: Vec<Vec<f64>> = seed.chunks_exact(width).map(<[f64]>::to_vec).collect();
            let expected = ScoringInput {
                columns: Some(columns.clone()),
                width,
                rows: data.len(),
                values: data.concat(),
                options: PredictOptions::default(),
            };
            let split = DataframeSplit { columns: columns.clone(), data: data.clone(), index: None };
            let records: Vec<Value> = data
                .iter()
                .map(|row| Value::Object(columns.iter().cloned().zip(row.iter().map(|v| Value::from(*v))).collect()))
                .collect();
            for payload in [
                serde_json::json!({ "dataframe_split": split }),
                serde_json::json!({ "dataframe_records": records }),
                serde_json::json!({ "instances": records }),
            ] {
                match decode_str(&payload.to_string(), 100) {
                    Ok(ModelInvocation::Predict(input)) if input.rows == 0 => {
                        prop_assert_eq!(input.values.len(), 0);
                    }
                    Ok(ModelInvocation::Predict(input)) => prop_assert_eq!(&input, &expected),
                    other => prop_assert!(false, "{} -> {:?}", payload, other),
                }
            }
        }
    }
}
