//! Wire formats of the model Lambda, compatible with MLflow's scoring server.
//!
//! Request: exactly one of MLflow's four inputs, or `{"ping": {}}`; an optional `params`
//! object may ask for quantiles (`"quantiles": [0.1, 0.5, 0.9]`) and for the point
//! (`"point": "mean" | "smape"`); its other keys are ignored, as MLflow's server does.
//!
//! - `{"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}`
//!   (`index` optional and ignored; without `columns` the rows are positional);
//! - `{"dataframe_records": [{"column": value, ...}, ...]}`;
//! - `{"instances": ...}` and `{"inputs": ...}` (the same thing to MLflow): a list of rows
//!   (positional lists or records), or an object of columns `{"column": [values], ...}`.
//!
//! Answer: `{"predictions": [...], "model": {...}}` or a [`PingResponse`]. Failures travel as
//! Lambda function errors whose body is a [`FunctionErrorBody`] with a typed `errorType`.
//!
//! [`ModelInvocation::decode_str`] decodes straight from the JSON text into one flat vector of
//! numbers. A generic JSON tree costs about 32 bytes per cell, which a 6 MB payload of small
//! numbers would turn into a hundred megabytes on a 128 MB function; this decoder stores
//! 8 bytes per cell and stops at the first bad value or at the row limit. Every message it
//! produces is its own and names the row and column at fault, never serde's generic text.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::distribution::{LevelMap, PointKind, parse_levels};

/// The request keys the model host understands, for error messages.
pub const ACCEPTED_KEYS: [&str; 5] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
    "ping",
];

/// Default cap on rows per request. 50,000 rows of five features are about 1.3 MB as
/// `dataframe_split` (3 MB as records) and answer about 1 MB, far under the 6 MB a
/// synchronous Lambda invocation may carry each way.
pub const DEFAULT_MAX_ROWS: usize = 50_000;

/// Cap on columns per request: far more than any model here has, and it bounds the memory
/// a request of column names alone can take.
pub const MAX_COLUMNS: usize = 1_024;

/// Request lookups of record keys switch from a scan to a hash map above this width.
const LINEAR_LOOKUP_MAX: usize = 16;

/// MLflow's `dataframe_split` orientation: named columns and row-major data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataframeSplit {
    /// Column names; matched to the model's features by name.
    pub columns: Vec<String>,
    /// Rows, each with one number per column.
    pub data: Vec<Vec<f64>>,
    /// Optional row labels (pandas index); accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Vec<Value>>,
}

/// Rows decoded from any of the MLflow inputs: one flat, row-major vector of numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringInput {
    /// Names of the columns, in the order of each row's values; `None` when the rows came as
    /// bare lists, to be matched to the model's features by position.
    pub columns: Option<Vec<String>>,
    /// Values per row.
    pub width: usize,
    /// Number of rows.
    pub rows: usize,
    /// `rows * width` finite numbers, row after row.
    pub values: Vec<f64>,
    /// What `params` asked for besides the plain predictions.
    pub options: PredictOptions,
}

/// What a prediction request asks for beyond one number per row (from `params`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PredictOptions {
    /// Quantile levels, ascending and distinct, each in (0, 1); `None` when not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<f64>>,
    /// The point to answer; the model's default when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<PointKind>,
}

impl PredictOptions {
    /// Whether nothing beyond the model's default answer is asked for.
    pub fn is_plain(&self) -> bool {
        self.quantiles.is_none() && self.point.is_none()
    }
}

/// A decoded invocation of the model Lambda.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInvocation {
    /// `{"ping": {}}`: readiness and metadata.
    Ping,
    /// One of the MLflow inputs: predict these rows.
    Predict(ScoringInput),
}

/// A payload the model host cannot decode, with the `errorType` it is reported under
/// (`InvalidInput`, or `SchemaMismatch` when records disagree about their columns).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidPayload {
    /// How the error is reported.
    pub kind: ModelErrorType,
    /// What is wrong, naming the key, row or column at fault.
    pub message: String,
}

impl ModelInvocation {
    /// Decodes a payload already parsed into a JSON tree, with [`DEFAULT_MAX_ROWS`].
    pub fn from_json(payload: Value) -> Result<Self, InvalidPayload> {
        Self::decode_value(&payload, DEFAULT_MAX_ROWS)
    }

    /// Decodes a payload already parsed into a JSON tree, refusing more than `max_rows` rows.
    pub fn decode_value(payload: &Value, max_rows: usize) -> Result<Self, InvalidPayload> {
        let ctx = Ctx::new(max_rows);
        let result = PayloadSeed { ctx: &ctx }.deserialize(payload);
        ctx.finish(result)
    }

    /// Decodes a payload from its JSON text, refusing more than `max_rows` rows.
    pub fn decode_str(json: &str, max_rows: usize) -> Result<Self, InvalidPayload> {
        let ctx = Ctx::new(max_rows);
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let result = PayloadSeed { ctx: &ctx }
            .deserialize(&mut deserializer)
            .and_then(|invocation| deserializer.end().map(|()| invocation));
        ctx.finish(result)
    }
}

/// Name and version of the model that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
}

/// The answer to a prediction request, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionsResponse {
    /// One prediction per input row.
    pub predictions: Vec<f64>,
    /// Which model produced them.
    pub model: ModelIdentity,
    /// When asked for: per level (`p10`, ...), one quantile per input row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<LevelMap<Vec<f64>>>,
}

/// Where the cold start spent its time, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct InitTimings {
    /// Fetching manifest and booster (concurrently), less the hashing and reading of the
    /// booster's chunks done while it arrives (counted below).
    pub fetch_ms: f64,
    /// Parsing the manifest and hashing the booster (sha256, chunk by chunk as it arrives).
    pub verify_ms: f64,
    /// Reading the booster's trees (chunk by chunk as they arrive), compiling them and
    /// checking its features.
    pub parse_ms: f64,
    /// Verifying the manifest's check rows and the warm-up predictions.
    pub warmup_ms: f64,
    /// All of the above, end to end.
    pub total_ms: f64,
}

/// The answer to `{"ping": {}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingResponse {
    /// `ready` once the booster is loaded (the host never answers before that).
    pub status: String,
    /// Model name and version.
    pub model: ModelIdentity,
    /// Feature names in the booster's column order.
    pub features: Vec<String>,
    /// Number of trees in the booster.
    pub num_trees: u32,
    /// Where the model was loaded from.
    pub source_uri: String,
    /// sha256 of `model.txt`, verified at load.
    pub model_sha256: String,
    /// When the model was loaded, RFC 3339 UTC.
    pub loaded_at: String,
    /// ETag of `model.txt` as the object store reported it (none for local files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_etag: Option<String>,
    /// Timings of the cold start that loaded this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitTimings>,
    /// Most rows one request may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// The stores, items and dates the model was trained on (from its manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<crate::manifest::TrainingDomain>,
}

/// The `errorType` values the model host reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelErrorType {
    /// The caller sent a payload the host cannot decode.
    InvalidInput,
    /// The columns do not match the model's features.
    SchemaMismatch,
    /// The host has no usable model (its cold start failed); retrying later may help.
    ModelUnavailable,
    /// The booster failed; not the caller's fault.
    Internal,
    /// Quantiles or a SMAPE-optimal point were asked of a model whose manifest has no
    /// predictive distribution.
    NoDistribution,
}

impl ModelErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "InvalidInput",
            Self::SchemaMismatch => "SchemaMismatch",
            Self::ModelUnavailable => "ModelUnavailable",
            Self::Internal => "Internal",
            Self::NoDistribution => "NoDistribution",
        }
    }
}

/// The body of a Lambda function error, as the Invoke API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionErrorBody {
    /// Error kind, e.g. `InvalidInput`.
    pub error_type: String,
    /// Human-readable message.
    pub error_message: String,
}

// ---------------------------------------------------------------------------------------------
// The decoder. Every visitor handles every JSON kind itself, so that no serde default message
// ("invalid type: ...") can reach the caller: a rejection is stored in `Ctx` and a placeholder
// serde error unwinds the parse.

const BOOLEAN: &str = "a boolean";
const NUMBER: &str = "a number";
const STRING: &str = "a string";
const NULL: &str = "null";
const LIST: &str = "a list";
const OBJECT: &str = "an object";

fn accepted_keys() -> String {
    ACCEPTED_KEYS.join(", ")
}

/// Quotes a caller-controlled string for an error message, shortened so that a huge name
/// cannot blow up the answer.
pub fn echo(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    if text.chars().count() <= MAX_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head:?}...")
    }
}

/// State shared by every visitor of one decode: the row limit and the first rejection.
struct Ctx {
    max_rows: usize,
    error: RefCell<Option<InvalidPayload>>,
}

impl Ctx {
    fn new(max_rows: usize) -> Self {
        Self {
            max_rows,
            error: RefCell::new(None),
        }
    }

    fn fail<E: de::Error>(&self, kind: ModelErrorType, message: String) -> E {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(InvalidPayload { kind, message });
        }
        E::custom("payload rejected")
    }

    fn invalid<E: de::Error>(&self, message: String) -> E {
        self.fail(ModelErrorType::InvalidInput, message)
    }

    fn schema<E: de::Error>(&self, message: String) -> E {
        self.fail(ModelErrorType::SchemaMismatch, message)
    }

    fn too_many_rows<E: de::Error>(&self) -> E {
        let max = self.max_rows;
        self.invalid(format!(
            "the request has more than {max} rows; send at most {max} rows per request"
        ))
    }

    fn too_many_columns<E: de::Error>(&self, what: &str) -> E {
        self.invalid(format!("{what} has more than {MAX_COLUMNS} columns"))
    }

    /// The stored rejection if there is one, else the parser's own (syntax) error.
    fn finish<T>(&self, result: Result<T, serde_json::Error>) -> Result<T, InvalidPayload> {
        result.map_err(|err| {
            self.error
                .borrow_mut()
                .take()
                .unwrap_or_else(|| InvalidPayload {
                    kind: ModelErrorType::InvalidInput,
                    message: format!("the payload is not valid JSON: {err}"),
                })
        })
    }
}

/// Implements the visit methods of the scalar JSON kinds as rejections through `self.reject`.
macro_rules! reject_scalars {
    () => {
        reject_scalars!(but_null);
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.reject(NULL))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.reject(NULL))
        }
    };
    (but_null) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.reject(BOOLEAN))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.reject(NUMBER))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.reject(NUMBER))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.reject(NUMBER))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.reject(STRING))
        }
    };
}

/// Implements `visit_seq` as a rejection.
macro_rules! reject_list {
    ($de:lifetime) => {
        fn visit_seq<A: SeqAccess<$de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.reject(LIST))
        }
    };
}

/// Implements `visit_map` as a rejection.
macro_rules! reject_object {
    ($de:lifetime) => {
        fn visit_map<A: MapAccess<$de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.reject(OBJECT))
        }
    };
}

/// The whole payload: one object with exactly one input (or `ping`) and optional `params`.
struct PayloadSeed<'c> {
    ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = ModelInvocation;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl PayloadSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "the payload must be a JSON object with exactly one of {}; found {found}",
            accepted_keys()
        ))
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_> {
    type Value = ModelInvocation;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    reject_scalars!();
    reject_list!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let mut found: Option<(String, ModelInvocation)> = None;
        let mut options = PredictOptions::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "params" {
                options = map.next_value_seed(ParamsSeed { ctx })?;
                continue;
            }
            let Some(input) = ACCEPTED_KEYS.iter().copied().find(|k| *k == key) else {
                return Err(ctx.invalid(format!(
                    "unsupported key {}; send exactly one of {} (plus optional params)",
                    echo(&key),
                    accepted_keys()
                )));
            };
            if let Some((first, _)) = &found {
                return Err(ctx.invalid(format!(
                    "the payload has both {first:?} and {input:?}; send exactly one of {}",
                    accepted_keys()
                )));
            }
            let invocation = match input {
                "ping" => {
                    map.next_value::<IgnoredAny>()?;
                    ModelInvocation::Ping
                }
                "dataframe_split" => {
                    ModelInvocation::Predict(map.next_value_seed(SplitSeed { ctx })?)
                }
                "dataframe_records" => ModelInvocation::Predict(map.next_value_seed(ListSeed {
                    rows: Rows::new(ctx, "dataframe_records", Accept::Records),
                })?),
                _ => ModelInvocation::Predict(
                    map.next_value_seed(InstancesSeed { ctx, key: input })?,
                ),
            };
            found = Some((input.to_owned(), invocation));
        }
        found
            .map(|(_, invocation)| match invocation {
                ModelInvocation::Predict(mut input) => {
                    input.options = options;
                    ModelInvocation::Predict(input)
                }
                ModelInvocation::Ping => ModelInvocation::Ping,
            })
            .ok_or_else(|| {
                ctx.invalid(format!(
                    "the payload has none of {}; send exactly one",
                    accepted_keys()
                ))
            })
    }
}

/// `params`: an object (or null); `quantiles` and `point` are read, other keys ignored.
struct ParamsSeed<'c> {
    ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_> {
    type Value = PredictOptions;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<PredictOptions, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ParamsSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx
            .invalid(format!("params must be an object; found {found}"))
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_> {
    type Value = PredictOptions;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    reject_scalars!(but_null);
    reject_list!('de);

    fn visit_unit<E: de::Error>(self) -> Result<PredictOptions, E> {
        Ok(PredictOptions::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<PredictOptions, E> {
        Ok(PredictOptions::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PredictOptions, A::Error> {
        let mut options = PredictOptions::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "quantiles" => {
                    let levels: Vec<Value> = map.next_value().map_err(|_: A::Error| {
                        self.ctx.invalid::<A::Error>(
                            "params.quantiles must be a list of numbers in (0, 1)".to_owned(),
                        )
                    })?;
                    let numbers: Option<Vec<f64>> = levels.iter().map(Value::as_f64).collect();
                    let numbers = numbers.ok_or_else(|| {
                        self.ctx.invalid::<A::Error>(
                            "params.quantiles must be a list of numbers in (0, 1)".to_owned(),
                        )
                    })?;
                    let levels = parse_levels(&numbers).map_err(|e| {
                        self.ctx
                            .invalid::<A::Error>(format!("params.quantiles: {e}"))
                    })?;
                    options.quantiles = Some(levels);
                }
                "point" => {
                    let point: Value = map.next_value()?;
                    let point = point.as_str().and_then(PointKind::parse).ok_or_else(|| {
                        self.ctx.invalid::<A::Error>(
                            "params.point must be \"mean\" or \"smape\"".to_owned(),
                        )
                    })?;
                    options.point = Some(point);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(options)
    }
}

/// Which kinds of rows a list may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Positional lists only (`dataframe_split.data`).
    Lists,
    /// Records only (`dataframe_records`).
    Records,
    /// Either, decided by the first row (`instances`, `inputs`).
    Either,
}

/// Rows being decoded into one flat vector.
struct Rows<'c> {
    ctx: &'c Ctx,
    /// The key being decoded, for messages.
    what: &'static str,
    accept: Accept,
    /// Whether the rows seen so far are records (`Some(true)`) or lists (`Some(false)`).
    records: Option<bool>,
    /// Column names: given by `dataframe_split.columns`, or the keys of the first record.
    columns: Option<Vec<String>>,
    /// Whether `columns` came from `dataframe_split.columns` (for the ragged-row message).
    columns_given: bool,
    /// Values per row, once known.
    width: Option<usize>,
    rows: usize,
    values: Vec<f64>,
    /// Column index by name, for wide records.
    lookup: Option<HashMap<String, usize>>,
    /// One record's values while its keys arrive in any order; NaN marks an absent column
    /// (a JSON number can never be NaN).
    scratch: Vec<f64>,
}

impl<'c> Rows<'c> {
    fn new(ctx: &'c Ctx, what: &'static str, accept: Accept) -> Self {
        Self {
            ctx,
            what,
            accept,
            records: None,
            columns: None,
            columns_given: false,
            width: None,
            rows: 0,
            values: Vec::new(),
            lookup: None,
            scratch: Vec::new(),
        }
    }

    fn with_columns(mut self, columns: Vec<String>) -> Self {
        self.width = Some(columns.len());
        self.columns = Some(columns);
        self.columns_given = true;
        self
    }

    fn into_input(self) -> ScoringInput {
        let width = self
            .width
            .or_else(|| self.columns.as_ref().map(Vec::len))
            .unwrap_or(0);
        ScoringInput {
            columns: self.columns,
            width,
            rows: self.rows,
            values: self.values,
            options: PredictOptions::default(),
        }
    }

    fn ragged<E: de::Error>(&self, row: usize, got: usize, width: usize) -> E {
        if self.columns_given {
            self.ctx.invalid(format!(
                "row {row} has {got} values but there are {width} columns"
            ))
        } else {
            self.ctx.invalid(format!(
                "row {row} has {got} values but row 0 has {width}; every row needs the same number"
            ))
        }
    }

    fn column_index(&self, key: &str) -> Option<usize> {
        match (&self.lookup, &self.columns) {
            (Some(lookup), _) => lookup.get(key).copied(),
            (None, Some(columns)) => columns.iter().position(|c| c == key),
            (None, None) => None,
        }
    }

    /// Decodes every element of a list of rows.
    fn read<'de, A: SeqAccess<'de>>(&mut self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(RowSeed { rows: self })?.is_some() {}
        Ok(())
    }

    /// Decodes one positional row.
    fn read_list<'de, A: SeqAccess<'de>>(&mut self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let row = self.rows;
        let mut col = 0;
        loop {
            if let Some(width) = self.width {
                if col == width {
                    let mut extra = 0;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        extra += 1;
                    }
                    if extra > 0 {
                        return Err(self.ragged(row, width + extra, width));
                    }
                    break;
                }
            } else if col == MAX_COLUMNS {
                return Err(ctx.too_many_columns(&format!("row {row}")));
            }
            let name = self
                .columns
                .as_ref()
                .and_then(|c| c.get(col))
                .map(String::as_str);
            match seq.next_element_seed(CellSeed {
                ctx,
                row,
                col,
                name,
            })? {
                Some(value) => self.values.push(value),
                None => break,
            }
            col += 1;
        }
        match self.width {
            Some(width) if col != width => return Err(self.ragged(row, col, width)),
            Some(_) => {}
            None => self.width = Some(col),
        }
        self.rows += 1;
        Ok(())
    }

    /// Decodes one record; the first one fixes the columns.
    fn read_record<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let row = self.rows;
        if row == 0 {
            let mut columns: Vec<String> = Vec::new();
            while let Some(key) = map.next_key_seed(KeySeed)? {
                if columns.iter().any(|c| *c == key) {
                    return Err(ctx.invalid(format!("row 0 has column {} twice", echo(&key))));
                }
                if columns.len() == MAX_COLUMNS {
                    return Err(ctx.too_many_columns("row 0"));
                }
                let value = map.next_value_seed(CellSeed {
                    ctx,
                    row,
                    col: columns.len(),
                    name: Some(key.as_ref()),
                })?;
                self.values.push(value);
                columns.push(key.into_owned());
            }
            if columns.len() > LINEAR_LOOKUP_MAX {
                self.lookup = Some(
                    columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.clone(), i))
                        .collect(),
                );
            }
            self.width = Some(columns.len());
            self.columns = Some(columns);
        } else {
            let width = self.width.unwrap_or(0);
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.resize(width, f64::NAN);
            while let Some(key) = map.next_key_seed(KeySeed)? {
                let Some(col) = self.column_index(&key) else {
                    return Err(ctx.schema(format!(
                        "row {row} has column {}, which row 0 does not have; every record needs the same columns",
                        echo(&key)
                    )));
                };
                if !scratch[col].is_nan() {
                    return Err(ctx.invalid(format!("row {row} has column {} twice", echo(&key))));
                }
                scratch[col] = map.next_value_seed(CellSeed {
                    ctx,
                    row,
                    col,
                    name: Some(key.as_ref()),
                })?;
            }
            if let Some(col) = scratch.iter().position(|v| v.is_nan()) {
                let name = self
                    .columns
                    .as_ref()
                    .and_then(|c| c.get(col))
                    .map(String::as_str)
                    .unwrap_or_default();
                return Err(ctx.schema(format!(
                    "row {row} lacks column {}, which row 0 has; every record needs the same columns",
                    echo(name)
                )));
            }
            self.values.extend_from_slice(&scratch);
            self.scratch = scratch;
        }
        self.rows += 1;
        Ok(())
    }
}

/// A list of rows.
struct ListSeed<'c> {
    rows: Rows<'c>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ScoringInput;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ListSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        let expected = match self.rows.accept {
            Accept::Lists => "a list of rows (lists of numbers)",
            Accept::Records => "a list of records (objects)",
            Accept::Either => "a list of rows or records",
        };
        self.rows.ctx.invalid(format!(
            "{} must be {expected}; found {found}",
            self.rows.what
        ))
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ScoringInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rows")
    }

    reject_scalars!();
    reject_object!('de);

    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<Self::Value, A::Error> {
        self.rows.read(seq)?;
        Ok(self.rows.into_input())
    }
}

/// One row of a list: a positional list or a record, as `Rows::accept` allows.
struct RowSeed<'r, 'c> {
    rows: &'r mut Rows<'c>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.rows.rows >= self.rows.ctx.max_rows {
            return Err(self.rows.ctx.too_many_rows());
        }
        deserializer.deserialize_any(self)
    }
}

impl RowSeed<'_, '_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        let rows = &*self.rows;
        let expected = match (rows.accept, rows.records) {
            (Accept::Lists, _) | (Accept::Either, Some(false)) => "a list of values",
            (Accept::Records, _) | (Accept::Either, Some(true)) => "an object (a record)",
            (Accept::Either, None) => "a list of values or an object (a record)",
        };
        let first = match (rows.accept, rows.records) {
            (Accept::Either, Some(_)) => " like row 0",
            _ => "",
        };
        rows.ctx.invalid(format!(
            "{} row {} must be {expected}{first}; found {found}",
            rows.what, rows.rows
        ))
    }

    fn allows(&self, record: bool) -> bool {
        match (self.rows.accept, self.rows.records) {
            (Accept::Lists, _) => !record,
            (Accept::Records, _) => record,
            (Accept::Either, None) => true,
            (Accept::Either, Some(first)) => first == record,
        }
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row")
    }

    reject_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        if !self.allows(false) {
            return Err(self.reject(LIST));
        }
        self.rows.records = Some(false);
        self.rows.read_list(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if !self.allows(true) {
            return Err(self.reject(OBJECT));
        }
        self.rows.records = Some(true);
        self.rows.read_record(map)
    }
}

/// A record key, borrowed from the payload when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// One value: a JSON number, finite.
struct CellSeed<'c, 'n> {
    ctx: &'c Ctx,
    row: usize,
    col: usize,
    name: Option<&'n str>,
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_, '_> {
    type Value = f64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl CellSeed<'_, '_> {
    fn column(&self) -> String {
        match self.name {
            Some(name) => format!("column {}", echo(name)),
            None => format!("column {}", self.col),
        }
    }

    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "row {}, {}: expected a number, found {found}",
            self.row,
            self.column()
        ))
    }
}

impl<'de> Visitor<'de> for CellSeed<'_, '_> {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<f64, E> {
        Err(self.reject(BOOLEAN))
    }

    // Feature values are small integers or measurements: the nearest f64 is what LightGBM
    // would see from any client.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.ctx.invalid(format!(
                "row {}, {}: value is not a finite number",
                self.row,
                self.column()
            )))
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<f64, E> {
        Err(self.reject(STRING))
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Err(self.reject(NULL))
    }

    fn visit_none<E: de::Error>(self) -> Result<f64, E> {
        Err(self.reject(NULL))
    }

    reject_list!('de);
    reject_object!('de);
}

/// `dataframe_split`: `columns`, `data` and an optional `index`, in any order.
struct SplitSeed<'c> {
    ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for SplitSeed<'_> {
    type Value = ScoringInput;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl SplitSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "dataframe_split must be an object with columns and data; found {found}"
        ))
    }
}

impl<'de> Visitor<'de> for SplitSeed<'_> {
    type Value = ScoringInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with columns and data")
    }

    reject_scalars!();
    reject_list!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let mut columns: Option<Vec<String>> = None;
        let mut data: Option<ScoringInput> = None;
        let mut index: Option<Option<usize>> = None;
        while let Some(key) = map.next_key::<String>()? {
            let repeated = match key.as_str() {
                "columns" => columns.is_some(),
                "data" => data.is_some(),
                "index" => index.is_some(),
                other => {
                    return Err(ctx.invalid(format!(
                        "dataframe_split has an unknown field {}; it takes columns, data and an optional index",
                        echo(other)
                    )));
                }
            };
            if repeated {
                return Err(ctx.invalid(format!("dataframe_split has {key} twice")));
            }
            match key.as_str() {
                "columns" => columns = Some(map.next_value_seed(NamesSeed { ctx })?),
                "data" => {
                    let rows = Rows::new(ctx, "dataframe_split.data", Accept::Lists);
                    let rows = match &columns {
                        Some(names) => rows.with_columns(names.clone()),
                        None => rows,
                    };
                    data = Some(map.next_value_seed(ListSeed { rows })?);
                }
                _ => index = Some(map.next_value_seed(IndexSeed { ctx })?),
            }
        }
        let Some(mut input) = data else {
            return Err(ctx.invalid("dataframe_split has no data".to_owned()));
        };
        if let Some(names) = columns {
            if input.rows > 0 && input.width != names.len() {
                return Err(ctx.invalid(format!(
                    "row 0 has {} values but there are {} columns",
                    input.width,
                    names.len()
                )));
            }
            input.width = names.len();
            input.columns = Some(names);
        }
        if let Some(Some(labels)) = index
            && labels != input.rows
        {
            return Err(ctx.invalid(format!(
                "dataframe_split.index has {labels} labels but data has {} rows",
                input.rows
            )));
        }
        Ok(input)
    }
}

/// `dataframe_split.columns`: a list of strings.
struct NamesSeed<'c> {
    ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for NamesSeed<'_> {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl NamesSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "dataframe_split.columns must be a list of strings; found {found}"
        ))
    }
}

impl<'de> Visitor<'de> for NamesSeed<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of column names")
    }

    reject_scalars!();
    reject_object!('de);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        loop {
            if names.len() == MAX_COLUMNS {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(self.ctx.too_many_columns("dataframe_split.columns"));
                }
                break;
            }
            match seq.next_element_seed(NameSeed {
                ctx: self.ctx,
                position: names.len(),
            })? {
                Some(name) => names.push(name),
                None => break,
            }
        }
        Ok(names)
    }
}

/// One entry of `dataframe_split.columns`.
struct NameSeed<'c> {
    ctx: &'c Ctx,
    position: usize,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl NameSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "dataframe_split.columns[{}] must be a string; found {found}",
            self.position
        ))
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(self.reject(BOOLEAN))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(self.reject(NUMBER))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(self.reject(NUMBER))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(self.reject(NUMBER))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(self.reject(NULL))
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Err(self.reject(NULL))
    }

    reject_list!('de);
    reject_object!('de);
}

/// `dataframe_split.index`: a list of labels (or null); only its length matters.
struct IndexSeed<'c> {
    ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for IndexSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl IndexSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "dataframe_split.index must be a list; found {found}"
        ))
    }
}

impl<'de> Visitor<'de> for IndexSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of row labels")
    }

    reject_scalars!(but_null);
    reject_object!('de);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut labels = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            labels += 1;
        }
        Ok(Some(labels))
    }
}

/// `instances` / `inputs`: a list of rows or records, or an object of columns.
struct InstancesSeed<'c> {
    ctx: &'c Ctx,
    key: &'static str,
}

impl<'de> DeserializeSeed<'de> for InstancesSeed<'_> {
    type Value = ScoringInput;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl InstancesSeed<'_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "{} must be a list of rows (lists or objects) or an object of columns; found {found}",
            self.key
        ))
    }
}

impl<'de> Visitor<'de> for InstancesSeed<'_> {
    type Value = ScoringInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rows or an object of columns")
    }

    reject_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Rows::new(self.ctx, self.key, Accept::Either);
        rows.read(seq)?;
        Ok(rows.into_input())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let mut columns: Vec<String> = Vec::new();
        let mut cells: Vec<Vec<f64>> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if columns.contains(&name) {
                return Err(ctx.invalid(format!("{} has column {} twice", self.key, echo(&name))));
            }
            if columns.len() == MAX_COLUMNS {
                return Err(ctx.too_many_columns(self.key));
            }
            let column = map.next_value_seed(ColumnSeed {
                ctx,
                key: self.key,
                col: columns.len(),
                name: &name,
            })?;
            if let (Some(first), Some(first_name)) = (cells.first(), columns.first())
                && first.len() != column.len()
            {
                return Err(ctx.invalid(format!(
                    "{}: column {} has {} values but column {} has {}",
                    self.key,
                    echo(&name),
                    column.len(),
                    echo(first_name),
                    first.len()
                )));
            }
            columns.push(name);
            cells.push(column);
        }
        let rows = cells.first().map_or(0, Vec::len);
        let mut values = Vec::with_capacity(rows * columns.len());
        for row in 0..rows {
            values.extend(cells.iter().map(|column| column[row]));
        }
        Ok(ScoringInput {
            width: columns.len(),
            columns: Some(columns),
            rows,
            values,
            options: PredictOptions::default(),
        })
    }
}

/// One column of the columnar form: a list of numbers.
struct ColumnSeed<'c, 'n> {
    ctx: &'c Ctx,
    key: &'static str,
    col: usize,
    name: &'n str,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_, '_> {
    type Value = Vec<f64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ColumnSeed<'_, '_> {
    fn reject<E: de::Error>(&self, found: &str) -> E {
        self.ctx.invalid(format!(
            "{}: column {} must be a list of numbers; found {found}",
            self.key,
            echo(self.name)
        ))
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_, '_> {
    type Value = Vec<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of numbers")
    }

    reject_scalars!();
    reject_object!('de);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut column = Vec::new();
        loop {
            if column.len() == self.ctx.max_rows {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(self.ctx.too_many_rows());
                }
                break;
            }
            match seq.next_element_seed(CellSeed {
                ctx: self.ctx,
                row: column.len(),
                col: self.col,
                name: Some(self.name),
            })? {
                Some(value) => column.push(value),
                None => break,
            }
        }
        Ok(column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(payload: &Value) -> Result<ModelInvocation, InvalidPayload> {
        // Both entry points must agree on every payload.
        let from_text = ModelInvocation::decode_str(&payload.to_string(), 3);
        let from_tree = ModelInvocation::decode_value(payload, 3);
        assert_eq!(from_text, from_tree, "{payload}");
        from_text
    }

    fn rows(payload: Value) -> ScoringInput {
        match decode(&payload) {
            Ok(ModelInvocation::Predict(input)) => input,
            other => panic!("expected rows from {payload}, got {other:?}"),
        }
    }

    fn error(payload: Value) -> InvalidPayload {
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
        assert_eq!(
            ModelInvocation::from_json(json!({"ping": {}})),
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
        let input = rows(
            json!({"dataframe_split": {"data": [[1, 2]], "index": null, "columns": ["a", "b"]}}),
        );
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
        let err =
            ModelInvocation::decode_str(r#"{"instances": [], "inputs": [[1]]}"#, 3).unwrap_err();
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
        let err = ModelInvocation::decode_str(
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
        let err = ModelInvocation::decode_str(r#"{"instances": [[1e400]]}"#, DEFAULT_MAX_ROWS)
            .unwrap_err();
        assert_eq!(err.kind, ModelErrorType::InvalidInput);
        assert!(
            err.message.starts_with("the payload is not valid JSON"),
            "{err}"
        );
        let err =
            ModelInvocation::decode_str(r#"{"instances": [[NaN]]}"#, DEFAULT_MAX_ROWS).unwrap_err();
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
        let err = ModelInvocation::decode_str(
            r#"{"dataframe_split": {"columns": ["a"], "columns": ["b"], "data": []}}"#,
            3,
        )
        .unwrap_err();
        assert_eq!(err.message, "dataframe_split has columns twice");
        let err = ModelInvocation::decode_str(r#"{"dataframe_records": [{"a": 1, "a": 2}]}"#, 3)
            .unwrap_err();
        assert_eq!(err.message, "row 0 has column \"a\" twice");
        let err = ModelInvocation::decode_str(
            r#"{"dataframe_records": [{"a": 1}, {"a": 1, "a": 2}]}"#,
            3,
        )
        .unwrap_err();
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

    #[test]
    fn too_many_columns_are_refused() {
        let row: Vec<u32> = vec![1; MAX_COLUMNS + 1];
        assert_eq!(
            invalid(json!({ "instances": [row] })),
            format!("row 0 has more than {MAX_COLUMNS} columns")
        );
    }

    #[test]
    fn long_keys_are_shortened_in_messages() {
        let key = "k".repeat(500);
        let message = invalid(json!({ key: 1 }));
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn syntax_errors_are_invalid_input() {
        let err = ModelInvocation::decode_str(r#"{"ping": {}"#, 3).unwrap_err();
        assert_eq!(err.kind, ModelErrorType::InvalidInput);
        assert!(
            err.message.starts_with("the payload is not valid JSON"),
            "{err}"
        );
        let err = ModelInvocation::decode_str(r#"{"ping": {}} x"#, 3).unwrap_err();
        assert!(
            err.message.starts_with("the payload is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn ping_response_without_the_optional_fields_still_decodes() {
        let ping: PingResponse = serde_json::from_value(json!({
            "status": "ready",
            "model": {"name": "demand", "version": "v1"},
            "features": ["store"],
            "num_trees": 3,
            "source_uri": "s3://b/models/demand/v1/",
            "model_sha256": "00",
            "loaded_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            (ping.model_etag, ping.init, ping.max_rows),
            (None, None, None)
        );
    }

    #[test]
    fn error_types_are_the_documented_strings() {
        let all = [
            ModelErrorType::InvalidInput,
            ModelErrorType::SchemaMismatch,
            ModelErrorType::ModelUnavailable,
            ModelErrorType::Internal,
        ];
        for kind in all {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                Value::String(kind.as_str().to_owned())
            );
        }
    }

    #[test]
    fn function_error_body_uses_the_lambda_field_names() {
        let body = FunctionErrorBody {
            error_type: ModelErrorType::SchemaMismatch.as_str().to_owned(),
            error_message: "missing column year".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"errorType": "SchemaMismatch", "errorMessage": "missing column year"})
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
        let streamed = by_name(ModelInvocation::decode_str(text, 10).unwrap());
        assert_eq!(
            streamed,
            by_name(ModelInvocation::decode_value(&value, 10).unwrap())
        );
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
        let err = ModelInvocation::decode_str(text, 10).unwrap_err();
        assert!(err.message.contains("\"store\" twice"), "{}", err.message);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::testing::{any_json, any_key};

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
                    entries.iter().enumerate().any(|(i, (key, _, _))| {
                        entries[..i].iter().any(|(other, _, _)| other == key)
                    })
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
                                move |(written, values)| {
                                    (name.to_owned(), written, Doc::List(values))
                                },
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
                if let Err(err) = ModelInvocation::decode_str(&text, 100) {
                    prop_assert!(matches!(err.kind, ModelErrorType::InvalidInput | ModelErrorType::SchemaMismatch));
                    prop_assert!(!err.message.is_empty());
                }
            }

            #[test]
            fn any_json_decodes_the_same_from_text_and_tree(value in any_json()) {
                let from_text = ModelInvocation::decode_str(&value.to_string(), 100);
                let from_tree = ModelInvocation::decode_value(&value, 100);
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
                let from_text = ModelInvocation::decode_str(&text, 100);
                let typed_refusal = |r: &Result<ModelInvocation, InvalidPayload>| {
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
                let from_tree = ModelInvocation::decode_value(&tree, 100);
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
                    match ModelInvocation::decode_str(&payload.to_string(), 100) {
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
}
