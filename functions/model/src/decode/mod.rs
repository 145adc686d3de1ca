//! Decoding of the model host's payloads, whose inputs and types `forecast::wire` describes.
//!
//! Every number goes straight from the JSON text onto one flat vector: a generic JSON tree
//! costs about 32 bytes a cell, which a 6 MB payload of small numbers would turn into a
//! hundred megabytes on a 128 MB function. So nothing is derived: a derived envelope would
//! buffer the input beside `params` in such a tree (serde's `flatten`) and answer in serde's
//! words. Instead one visitor ([`Visit`]) reads every place ([`At`]) of the payload: it takes
//! the JSON kinds the place accepts, refuses the others with the place's message (naming the
//! key, row or column at fault), and refuses an element past a cap before reading it, so a
//! hostile body fails at its first row past the limit, never after all of its rows are held.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use forecast::distribution::{PointKind, parse_levels};
pub use forecast::wire::{DEFAULT_MAX_ROWS, MAX_COLUMNS, ModelInvocation, ScoringInput};
use forecast::wire::{ModelError, ModelErrorType, PredictOptions};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::echo;

/// The inputs the model host understands, as messages list them.
const INPUTS: &str = "dataframe_split, dataframe_records, instances, inputs, ping";

/// Decodes a payload already parsed into a JSON tree, refusing more than `max_rows` rows.
pub fn decode_value(payload: &Value, max_rows: usize) -> Result<ModelInvocation, ModelError> {
    Decoder::run(max_rows, |visit| visit.deserialize(payload))
}

/// Decodes a payload from its JSON text, refusing more than `max_rows` rows.
pub fn decode_str(json: &str, max_rows: usize) -> Result<ModelInvocation, ModelError> {
    let mut parser = serde_json::Deserializer::from_str(json);
    Decoder::run(max_rows, |visit| {
        visit.deserialize(&mut parser).and_then(|()| parser.end())
    })
}

/// A place in the payload.
#[derive(Debug, Clone, Copy)]
enum At {
    Payload,
    Params,
    Split,
    /// `dataframe_split.columns`, and its entry at this position.
    Names,
    Name(usize),
    Index,
    /// The list of rows (or object of columns) of the input, and its row at this position.
    Rows,
    Row(usize),
    /// A key of a record: row, and how many keys came before it in that record.
    Key(usize, usize),
    /// A column of an object of columns, by position.
    Column(usize),
    /// One value: row, column position.
    Cell(usize, usize),
}

/// What one decode builds, and its first rejection. A rejection is stored here and a
/// placeholder serde error unwinds the parse, so the caller only ever sees our messages
/// (serde_json would append a position to them, and only when parsing text).
#[derive(Default)]
struct Decoder {
    max_rows: usize,
    error: Option<ModelError>,
    /// The input key, and the name of its rows for messages (`dataframe_split.data`).
    input: Option<&'static str>,
    what: &'static str,
    /// Whether the rows must be records (`Some(true)`), lists, or either until row 0.
    records: Option<bool>,
    /// Column position by name, for records whose keys come in another order than row 0's;
    /// the position the last record key named.
    lookup: HashMap<String, usize>,
    col: usize,
    /// Values per positional row, once known (with column names, the row is as wide).
    width: Option<usize>,
    /// Labels in `dataframe_split.index`, when it is a list.
    labels: Option<usize>,
    /// The rows so far. Column names come from `dataframe_split.columns` (then the rows are
    /// lists), else from the keys of the records or of the object of columns.
    out: ScoringInput,
}

impl Decoder {
    fn fail<E: de::Error>(&mut self, kind: ModelErrorType, message: String) -> E {
        self.error.get_or_insert(ModelError { kind, message });
        E::custom("payload rejected")
    }

    fn invalid<E: de::Error>(&mut self, message: String) -> E {
        self.fail(ModelErrorType::InvalidInput, message)
    }

    /// Runs `parse` on a new decoder: the invocation, or the first rejection, or else the
    /// parser's own (syntax) error.
    fn run<P>(max_rows: usize, parse: P) -> Result<ModelInvocation, ModelError>
    where
        P: FnOnce(Visit<'_>) -> Result<(), serde_json::Error>,
    {
        let mut decoder = Self {
            max_rows,
            ..Self::default()
        };
        if let Err(err) = parse(Visit(&mut decoder, At::Payload)) {
            let syntax = format!("the payload is not valid JSON: {err}");
            let syntax = ModelError::new(ModelErrorType::InvalidInput, syntax);
            return Err(decoder.error.unwrap_or(syntax));
        }
        if decoder.input == Some("ping") {
            return Ok(ModelInvocation::Ping);
        }
        let names = decoder.out.columns.as_ref().map(Vec::len);
        decoder.out.width = names.or(decoder.width).unwrap_or(0);
        Ok(ModelInvocation::Predict(decoder.out))
    }

    /// Refuses a value of the kind `found` ("a list", "null", ...) at `at`.
    fn refuse<E: de::Error>(&mut self, at: At, found: &str) -> E {
        let what = self.what;
        let (rows, row_is) = match self.records {
            Some(false) => ("rows (lists of numbers)", "a list of values"),
            Some(true) => ("records (objects)", "an object (a record)"),
            None => (
                "rows (lists or objects) or an object of columns",
                "a list of values or an object (a record)",
            ),
        };
        let must_be = match at {
            At::Payload => {
                format!("the payload must be a JSON object with exactly one of {INPUTS}")
            }
            At::Params => "params must be an object".to_owned(),
            At::Split => "dataframe_split must be an object with columns and data".to_owned(),
            At::Names => "dataframe_split.columns must be a list of strings".to_owned(),
            At::Name(i) => format!("dataframe_split.columns[{i}] must be a string"),
            At::Index => "dataframe_split.index must be a list".to_owned(),
            At::Rows => format!("{what} must be a list of {rows}"),
            At::Row(row) => {
                // Past row 0 of `instances` or `inputs`, row 0 decided what a row must be.
                let like = row > 0 && matches!(what, "instances" | "inputs");
                let like = if like { " like row 0" } else { "" };
                format!("{what} row {row} must be {row_is}{like}")
            }
            At::Column(col) => format!(
                "{what}: column {} must be a list of numbers",
                self.column_name(col)
            ),
            At::Cell(row, col) => {
                let at = format!("row {row}, column {}", self.column_name(col));
                return self.invalid(format!("{at}: expected a number, found {found}"));
            }
            // A JSON key is always a string.
            At::Key(..) => "a key must be a string".to_owned(),
        };
        self.invalid(format!("{must_be}; found {found}"))
    }

    /// The message for the element at `at` when it is past a cap, checked before it is read.
    fn past_cap(&self, at: At) -> Option<String> {
        let max = self.max_rows;
        let columns = |what: &str| format!("{what} has more than {MAX_COLUMNS} columns");
        match at {
            At::Row(row) | At::Cell(row, _) if row >= max => Some(format!(
                "the request has more than {max} rows; send at most {max} rows per request"
            )),
            At::Cell(row, col) if col >= MAX_COLUMNS => Some(columns(&format!("row {row}"))),
            At::Name(i) if i >= MAX_COLUMNS => Some(columns("dataframe_split.columns")),
            At::Column(col) if col >= MAX_COLUMNS => Some(columns(self.what)),
            _ => None,
        }
    }

    /// A column as messages name it: by name when the names are known, else by position.
    fn column_name(&self, col: usize) -> String {
        match self.out.columns.as_ref().and_then(|names| names.get(col)) {
            Some(name) => echo(name),
            None => col.to_string(),
        }
    }

    /// `{...}`: exactly one input (or `ping`) and optional `params`.
    fn payload<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "params" {
                map.next_value_seed(Visit(self, At::Params))?;
                continue;
            }
            let Some(input) = INPUTS.split(", ").find(|k| *k == key) else {
                let key = echo(&key);
                let message = format!("unsupported key {key}; send exactly one of {INPUTS}");
                return Err(self.invalid(format!("{message} (plus optional params)")));
            };
            if let Some(first) = self.input {
                let message = format!("the payload has both {first:?} and {input:?}");
                return Err(self.invalid(format!("{message}; send exactly one of {INPUTS}")));
            }
            (self.input, self.what) = (Some(input), input);
            self.records = (input == "dataframe_records").then_some(true);
            match input {
                "ping" => map.next_value::<IgnoredAny>().map(drop)?,
                "dataframe_split" => map.next_value_seed(Visit(self, At::Split))?,
                _ => map.next_value_seed(Visit(self, At::Rows))?,
            }
        }
        if self.input.is_none() {
            let message = format!("the payload has none of {INPUTS}; send exactly one");
            return Err(self.invalid(message));
        }
        Ok(())
    }

    /// `params`: `quantiles` and `point` are read, other keys ignored, as MLflow's server
    /// does. Neither holds rows, so serde reads them and only the message is ours.
    fn params<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        const QUANTILES: &str = "params.quantiles must be a list of numbers in (0, 1)";
        const POINT: &str = "params.point must be \"mean\" or \"smape\"";
        self.out.options = PredictOptions::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "quantiles" {
                let Ok(levels) = map.next_value::<Vec<f64>>() else {
                    return Err(self.invalid(QUANTILES.to_owned()));
                };
                match parse_levels(&levels) {
                    Ok(levels) => self.out.options.quantiles = Some(levels),
                    Err(e) => return Err(self.invalid(format!("params.quantiles: {e}"))),
                }
            } else if key == "point" {
                let point = map.next_value::<String>().ok();
                match point.as_deref().and_then(PointKind::parse) {
                    Some(point) => self.out.options.point = Some(point),
                    None => return Err(self.invalid(POINT.to_owned())),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    /// `dataframe_split`: `columns`, `data` and an optional `index`, in any order, each once.
    fn split<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        (self.what, self.records) = ("dataframe_split.data", Some(false));
        let (mut columns, mut data, mut index) = (false, false, false);
        while let Some(key) = map.next_key::<String>()? {
            let (seen, at) = match key.as_str() {
                "columns" => (&mut columns, At::Names),
                "data" => (&mut data, At::Rows),
                "index" => (&mut index, At::Index),
                other => {
                    let (field, takes) = (echo(other), "columns, data and an optional index");
                    let message = format!("dataframe_split has an unknown field {field}");
                    return Err(self.invalid(format!("{message}; it takes {takes}")));
                }
            };
            if std::mem::replace(seen, true) {
                return Err(self.invalid(format!("dataframe_split has {key} twice")));
            }
            map.next_value_seed(Visit(self, at))?;
        }
        if !data {
            return Err(self.invalid("dataframe_split has no data".to_owned()));
        }
        let (rows, names) = (self.out.rows, self.out.columns.as_ref().map(Vec::len));
        // When `data` came first, its rows were only checked against each other.
        if let (Some(width), Some(names)) = (self.width, names)
            && width != names
        {
            let message = format!("row 0 has {width} values but there are {names} columns");
            return Err(self.invalid(message));
        }
        match self.labels {
            Some(labels) if labels != rows => Err(self.invalid(format!(
                "dataframe_split.index has {labels} labels but data has {rows} rows"
            ))),
            _ => Ok(()),
        }
    }

    /// One positional row. Only `dataframe_split.columns` gives lists column names.
    fn row<'de, A: SeqAccess<'de>>(&mut self, mut seq: A) -> Result<(), A::Error> {
        let (row, width) = (self.out.rows, self.width);
        let got = self.list(&mut seq, width, |col| At::Cell(row, col))?;
        if let Some(width) = width.filter(|&width| width != got) {
            let but = match self.out.columns {
                Some(_) => format!("there are {width} columns"),
                None => format!("row 0 has {width}; every row needs the same number"),
            };
            return Err(self.invalid(format!("row {row} has {got} values but {but}")));
        }
        (self.records, self.width, self.out.rows) = (Some(false), Some(got), row + 1);
        Ok(())
    }

    /// Reads the elements of a list, the `i`th at `at(i)`, and says how many there were; past
    /// `width` they are only counted, for a message.
    fn list<'de, A: SeqAccess<'de>>(
        &mut self,
        seq: &mut A,
        width: Option<usize>,
        at: impl Fn(usize) -> At,
    ) -> Result<usize, A::Error> {
        let mut got = 0;
        while Some(got) != width && seq.next_element_seed(Visit(self, at(got)))?.is_some() {
            got += 1;
        }
        // At `width` the end of the list has not been seen yet.
        if Some(got) == width {
            while seq.next_element::<IgnoredAny>()?.is_some() {
                got += 1;
            }
        }
        Ok(got)
    }

    /// One record: row 0 fixes the columns, every other must have the same. Each column
    /// holds a NaN until its value arrives (a JSON number is never NaN), so a missing or
    /// repeated key is seen.
    fn record<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let (row, start, mut seen) = (self.out.rows, self.out.values.len(), 0);
        let width = self.out.columns.get_or_insert_default().len();
        self.out.values.resize(start + width, f64::NAN);
        while let Some(()) = map.next_key_seed(Visit(self, At::Key(row, seen)))? {
            let col = self.col;
            map.next_value_seed(Visit(self, At::Cell(row, col)))?;
            // The visitor pushed the value last: it takes its column's place.
            self.out.values.swap_remove(start + col);
            seen += 1;
        }
        if let Some(col) = self.out.values[start..].iter().position(|v| v.is_nan()) {
            let column = self.column_name(col);
            let message = format!("row {row} lacks column {column}, which row 0 has");
            let message = format!("{message}; every record needs the same columns");
            return Err(self.fail(ModelErrorType::SchemaMismatch, message));
        }
        (self.records, self.out.rows) = (Some(true), row + 1);
        Ok(())
    }

    /// Finds the column a record's key names (`self.col`), a new one in row 0.
    fn key<E: de::Error>(&mut self, row: usize, seen: usize, key: &str) -> Result<(), E> {
        let columns = self.out.columns.get_or_insert_default();
        // Records mostly repeat row 0's order of keys; the map answers the others.
        let col = match columns.get(seen) {
            Some(name) if name == key => Some(seen),
            _ => self.lookup.get(key).copied(),
        };
        let start = self.out.values.len() - columns.len();
        self.col = match col {
            Some(col) if !self.out.values[start + col].is_nan() => {
                return Err(self.invalid(format!("row {row} has column {} twice", echo(key))));
            }
            Some(col) => col,
            None if row > 0 => {
                let key = echo(key);
                let message = format!("row {row} has column {key}, which row 0 does not have");
                let message = format!("{message}; every record needs the same columns");
                return Err(self.fail(ModelErrorType::SchemaMismatch, message));
            }
            None => {
                self.lookup.insert(key.to_owned(), columns.len());
                columns.push(key.to_owned());
                self.out.values.push(f64::NAN);
                columns.len() - 1
            }
        };
        Ok(())
    }

    /// An object of columns (`instances`, `inputs`): read column by column, then transposed.
    fn columns<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let (what, mut rows) = (self.what, None);
        while let Some(name) = map.next_key::<String>()? {
            let columns = self.out.columns.get_or_insert_default();
            if columns.contains(&name) {
                return Err(self.invalid(format!("{what} has column {} twice", echo(&name))));
            }
            let (col, start) = (columns.len(), self.out.values.len());
            columns.push(name);
            map.next_value_seed(Visit(self, At::Column(col)))?;
            let count = self.out.values.len() - start;
            let first = *rows.get_or_insert(count);
            if count != first {
                let (name, first_name) = (self.column_name(col), self.column_name(0));
                let message = format!("{what}: column {name} has {count} values");
                return Err(self.invalid(format!("{message} but column {first_name} has {first}")));
            }
        }
        let width = self.out.columns.get_or_insert_default().len();
        let (by_column, rows) = (std::mem::take(&mut self.out.values), rows.unwrap_or(0));
        let value = |i: usize| by_column[(i % width) * rows + i / width];
        self.out.values = (0..rows * width).map(value).collect();
        self.out.rows = rows;
        Ok(())
    }
}

/// The seed and visitor of every place: a decoder, and where it is.
struct Visit<'d>(&'d mut Decoder, At);

impl<'de> DeserializeSeed<'de> for Visit<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.0.past_cap(self.1) {
            Some(message) => Err(self.0.invalid(message)),
            None => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Visit<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.0.refuse(self.1, "a boolean"))
    }

    // Feature values are small integers or measurements: the nearest f64 of an integer is
    // what the model would see from any client.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }

    // JSON has no NaN or infinity, and serde_json refuses a number beyond f64 (`1e400`) as a
    // syntax error: every number that arrives here is finite.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.1 {
            At::Cell(..) => {
                self.0.out.values.push(v);
                Ok(())
            }
            at => Err(self.0.refuse(at, "a number")),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.1 {
            At::Name(_) => {
                let names = self.0.out.columns.get_or_insert_default();
                names.push(v.to_owned());
                Ok(())
            }
            At::Key(row, seen) => self.0.key(row, seen, v),
            at => Err(self.0.refuse(at, "a string")),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        match self.1 {
            At::Params | At::Index => Ok(()),
            at => Err(self.0.refuse(at, "null")),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let decoder = self.0;
        match self.1 {
            At::Names => {
                decoder.out.columns = Some(Vec::new());
                decoder.list(&mut seq, None, At::Name)?;
            }
            // Only the length of the index matters: its labels are only counted.
            At::Index => decoder.labels = Some(decoder.list(&mut seq, Some(0), |_| At::Index)?),
            // With `dataframe_split.columns` first, each row is as wide as the columns.
            At::Rows => {
                decoder.width = decoder.out.columns.as_ref().map(Vec::len);
                decoder.list(&mut seq, None, At::Row)?;
            }
            At::Row(_) if decoder.records != Some(true) => return decoder.row(seq),
            At::Column(col) => _ = decoder.list(&mut seq, None, |row| At::Cell(row, col))?,
            at => return Err(decoder.refuse(at, "a list")),
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let decoder = self.0;
        match self.1 {
            At::Payload => decoder.payload(map),
            At::Params => decoder.params(map),
            At::Split => decoder.split(map),
            At::Rows if decoder.records.is_none() => decoder.columns(map),
            At::Row(_) if decoder.records != Some(false) => decoder.record(map),
            at => Err(decoder.refuse(at, "an object")),
        }
    }
}
