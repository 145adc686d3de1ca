//! Scoring payloads for rows in [`FEATURES`] order, written directly (a JSON tree of a large
//! batch would dwarf what the host itself uses).

use crate::FEATURES;

/// `rows` (row-major, [`FEATURES`] order) as a `dataframe_split` payload.
pub fn dataframe_split(rows: &[f64]) -> String {
    let columns = serde_json::to_string(&FEATURES).unwrap_or_default();
    let data: Vec<String> = rows
        .chunks(FEATURES.len())
        .map(|row| {
            let cells: Vec<String> = row.iter().map(f64::to_string).collect();
            format!("[{}]", cells.join(","))
        })
        .collect();
    format!(
        r#"{{"dataframe_split": {{"columns": {columns}, "data": [{}]}}}}"#,
        data.join(",")
    )
}

/// `rows` as a `dataframe_records` payload.
pub fn dataframe_records(rows: &[f64]) -> String {
    let records: Vec<String> = rows
        .chunks(FEATURES.len())
        .map(|row| {
            let fields: Vec<String> = FEATURES
                .iter()
                .zip(row)
                .map(|(name, value)| format!("\"{name}\": {value}"))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!(r#"{{"dataframe_records": [{}]}}"#, records.join(","))
}
