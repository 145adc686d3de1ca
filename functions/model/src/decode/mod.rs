//! Decoding of the model host's payloads (their types are in `forecast::wire`): exactly one of
//! MLflow's `dataframe_split` (`columns`, `data`, optional `index`; without `columns` the rows
//! are positional), `dataframe_records`, `instances` or `inputs` (rows, records, or an object
//! of columns), or `{"ping": {}}`, with optional `params`.
//!
//! [`ModelInvocation::decode_str`] decodes straight from the JSON text into one flat vector of
//! numbers (`rows`): a generic JSON tree costs about 32 bytes per cell, which a 6 MB payload
//! of small numbers would turn into a hundred megabytes on a 128 MB function. Every message is
//! the decoder's own and names the key, row or column at fault: each place in the payload says
//! which JSON kinds it takes (`Expect`) and one visitor (`Kind`) refuses the others, so
//! serde's text ("invalid type: ...") never reaches the caller. For the same reason nothing
//! here is derived: a derived envelope would answer unknown, repeated and missing keys in
//! serde's words, and `params` travels beside the input, not inside it.

mod rows;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use forecast::distribution::{PointKind, parse_levels};
use forecast::wire::{ModelError, ModelErrorType, PredictOptions};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use rows::{Accept, Rows};

/// The request keys the model host understands, for error messages.
const ACCEPTED_KEYS: [&str; 5] = [
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

/// A decoded invocation of the model Lambda.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInvocation {
    /// `{"ping": {}}`: readiness and metadata.
    Ping,
    /// One of the MLflow inputs: predict these rows.
    Predict(ScoringInput),
}

impl ModelInvocation {
    /// Decodes a payload already parsed into a JSON tree, refusing more than `max_rows` rows.
    pub fn decode_value(payload: &Value, max_rows: usize) -> Result<Self, ModelError> {
        let ctx = Ctx::new(max_rows);
        ctx.finish(Kind(&ctx, Payload).deserialize(payload))
    }

    /// Decodes a payload from its JSON text, refusing more than `max_rows` rows.
    pub fn decode_str(json: &str, max_rows: usize) -> Result<Self, ModelError> {
        let ctx = Ctx::new(max_rows);
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let result = Kind(&ctx, Payload).deserialize(&mut deserializer);
        ctx.finish(result.and_then(|invocation| deserializer.end().map(|()| invocation)))
    }
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

fn accepted_keys() -> String {
    ACCEPTED_KEYS.join(", ")
}

/// What one decode shares: the row limit and the first rejection. A rejection is stored here
/// and a placeholder serde error unwinds the parse, so the caller only sees our messages.
struct Ctx {
    max_rows: usize,
    error: RefCell<Option<ModelError>>,
}

impl Ctx {
    fn new(max_rows: usize) -> Self {
        let error = RefCell::new(None);
        Self { max_rows, error }
    }

    fn fail<E: de::Error>(&self, kind: ModelErrorType, message: String) -> E {
        self.error
            .borrow_mut()
            .get_or_insert(ModelError { kind, message });
        E::custom("payload rejected")
    }

    fn invalid<E: de::Error>(&self, message: String) -> E {
        self.fail(ModelErrorType::InvalidInput, message)
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
    fn finish<T>(&self, result: Result<T, serde_json::Error>) -> Result<T, ModelError> {
        result.map_err(|err| {
            let syntax = || format!("the payload is not valid JSON: {err}");
            let stored = self.error.borrow_mut().take();
            stored.unwrap_or_else(|| ModelError::new(ModelErrorType::InvalidInput, syntax()))
        })
    }
}

/// One place in the payload and the JSON kinds it takes; each kind it does not take is
/// refused with the message of [`Expect::refuse`].
trait Expect<'de>: Sized {
    type Value;

    /// The message for a value of the kind `found` ("a list", "null", ...).
    fn refuse(&self, found: &str) -> String;

    fn null<E: de::Error>(self, ctx: &Ctx) -> Result<Self::Value, E> {
        Err(ctx.invalid(self.refuse("null")))
    }

    fn number<E: de::Error>(self, ctx: &Ctx, _: f64) -> Result<Self::Value, E> {
        Err(ctx.invalid(self.refuse("a number")))
    }

    fn string<E: de::Error>(self, ctx: &Ctx, _: Cow<'de, str>) -> Result<Self::Value, E> {
        Err(ctx.invalid(self.refuse("a string")))
    }

    fn list<A: SeqAccess<'de>>(self, ctx: &Ctx, _: A) -> Result<Self::Value, A::Error> {
        Err(ctx.invalid(self.refuse("a list")))
    }

    fn object<A: MapAccess<'de>>(self, ctx: &Ctx, _: A) -> Result<Self::Value, A::Error> {
        Err(ctx.invalid(self.refuse("an object")))
    }
}

/// The serde seed and visitor of every place.
struct Kind<'c, T>(&'c Ctx, T);

impl<'de, T: Expect<'de>> DeserializeSeed<'de> for Kind<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Expect<'de>> Visitor<'de> for Kind<'_, T> {
    type Value = T::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T::Value, E> {
        Err(self.0.invalid(self.1.refuse("a boolean")))
    }

    // Feature values are small integers or measurements: the nearest f64 is what the model
    // would see from any client.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T::Value, E> {
        self.1.number(self.0, v as f64)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T::Value, E> {
        self.1.number(self.0, v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T::Value, E> {
        self.1.number(self.0, v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<T::Value, E> {
        self.1.string(self.0, Cow::Borrowed(v))
    }

    // A string with escapes, unescaped by the parser into its own buffer.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T::Value, E> {
        self.1.string(self.0, Cow::Owned(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T::Value, E> {
        self.1.null(self.0)
    }

    fn visit_none<E: de::Error>(self) -> Result<T::Value, E> {
        self.1.null(self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T::Value, A::Error> {
        self.1.list(self.0, seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T::Value, A::Error> {
        self.1.object(self.0, map)
    }
}

/// The whole payload: one object with exactly one input (or `ping`) and optional `params`.
struct Payload;

impl<'de> Expect<'de> for Payload {
    type Value = ModelInvocation;

    fn refuse(&self, found: &str) -> String {
        let keys = accepted_keys();
        format!("the payload must be a JSON object with exactly one of {keys}; found {found}")
    }

    fn object<A: MapAccess<'de>>(self, ctx: &Ctx, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Option<(&str, Option<ScoringInput>)> = None;
        let mut options = PredictOptions::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "params" {
                options = map.next_value_seed(Kind(ctx, Params))?;
                continue;
            }
            let Some(input) = ACCEPTED_KEYS.into_iter().find(|k| *k == key) else {
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
            let rows = match input {
                "ping" => map.next_value::<IgnoredAny>().map(|_| None)?,
                "dataframe_split" => Some(map.next_value_seed(Kind(ctx, Split))?),
                "dataframe_records" => {
                    let rows = Rows::new(input, Accept::Records);
                    Some(map.next_value_seed(Kind(ctx, rows))?)
                }
                _ => Some(map.next_value_seed(Kind(ctx, Rows::new(input, Accept::Either)))?),
            };
            found = Some((input, rows));
        }
        match found {
            Some((_, None)) => Ok(ModelInvocation::Ping),
            Some((_, Some(input))) => {
                Ok(ModelInvocation::Predict(ScoringInput { options, ..input }))
            }
            None => Err(ctx.invalid(format!(
                "the payload has none of {}; send exactly one",
                accepted_keys()
            ))),
        }
    }
}

/// `params`: an object (or null); `quantiles` and `point` are read, other keys ignored.
struct Params;

impl<'de> Expect<'de> for Params {
    type Value = PredictOptions;

    fn refuse(&self, found: &str) -> String {
        format!("params must be an object; found {found}")
    }

    fn null<E: de::Error>(self, _: &Ctx) -> Result<PredictOptions, E> {
        Ok(PredictOptions::default())
    }

    fn object<A: MapAccess<'de>>(self, ctx: &Ctx, mut map: A) -> Result<Self::Value, A::Error> {
        const QUANTILES: &str = "params.quantiles must be a list of numbers in (0, 1)";
        let mut options = PredictOptions::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "quantiles" => {
                    let levels = map
                        .next_value::<Vec<Value>>()
                        .map_err(|_| ctx.invalid::<A::Error>(QUANTILES.to_owned()))?;
                    let numbers: Option<Vec<f64>> = levels.iter().map(Value::as_f64).collect();
                    let numbers = numbers.ok_or_else(|| ctx.invalid(QUANTILES.to_owned()))?;
                    let levels = parse_levels(&numbers)
                        .map_err(|e| ctx.invalid::<A::Error>(format!("params.quantiles: {e}")))?;
                    options.quantiles = Some(levels);
                }
                "point" => {
                    let point: Value = map.next_value()?;
                    let point = point.as_str().and_then(PointKind::parse).ok_or_else(|| {
                        ctx.invalid("params.point must be \"mean\" or \"smape\"".to_owned())
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

/// `dataframe_split`: `columns`, `data` and an optional `index`, in any order.
struct Split;

impl<'de> Expect<'de> for Split {
    type Value = ScoringInput;

    fn refuse(&self, found: &str) -> String {
        format!("dataframe_split must be an object with columns and data; found {found}")
    }

    fn object<A: MapAccess<'de>>(self, ctx: &Ctx, mut map: A) -> Result<Self::Value, A::Error> {
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
                "columns" => columns = Some(map.next_value_seed(Kind(ctx, Names))?),
                "data" => {
                    let rows = Rows::new("dataframe_split.data", Accept::Lists);
                    let rows = rows.with_columns(columns.clone());
                    data = Some(map.next_value_seed(Kind(ctx, rows))?);
                }
                _ => index = Some(map.next_value_seed(Kind(ctx, Index))?),
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
struct Names;

impl<'de> Expect<'de> for Names {
    type Value = Vec<String>;

    fn refuse(&self, found: &str) -> String {
        format!("dataframe_split.columns must be a list of strings; found {found}")
    }

    fn list<A: SeqAccess<'de>>(self, ctx: &Ctx, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        for position in 0..MAX_COLUMNS {
            match seq.next_element_seed(Kind(ctx, Name(position)))? {
                Some(name) => names.push(name.into_owned()),
                None => return Ok(names),
            }
        }
        match seq.next_element::<IgnoredAny>()? {
            Some(_) => Err(ctx.too_many_columns("dataframe_split.columns")),
            None => Ok(names),
        }
    }
}

/// The entry of `dataframe_split.columns` at this position. Also reads the keys of records
/// (JSON keys are always strings), borrowed from the payload when they have no escapes.
struct Name(usize);

impl<'de> Expect<'de> for Name {
    type Value = Cow<'de, str>;

    fn refuse(&self, found: &str) -> String {
        let position = self.0;
        format!("dataframe_split.columns[{position}] must be a string; found {found}")
    }

    fn string<E: de::Error>(self, _: &Ctx, v: Cow<'de, str>) -> Result<Self::Value, E> {
        Ok(v)
    }
}

/// `dataframe_split.index`: a list of labels (or null); only its length matters.
struct Index;

impl<'de> Expect<'de> for Index {
    type Value = Option<usize>;

    fn refuse(&self, found: &str) -> String {
        format!("dataframe_split.index must be a list; found {found}")
    }

    fn null<E: de::Error>(self, _: &Ctx) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn list<A: SeqAccess<'de>>(self, _: &Ctx, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut labels = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            labels += 1;
        }
        Ok(Some(labels))
    }
}
