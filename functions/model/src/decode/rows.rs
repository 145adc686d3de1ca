//! The one streaming row reader: rows (positional lists or records) and columns go straight
//! into one flat vector of numbers, and the row limit is checked before each row (and each
//! value of a column) is read, so a hostile body fails at its first row past the limit, never
//! after all of its rows are held.

use std::collections::HashMap;

use forecast::wire::{ModelErrorType, PredictOptions};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};

use super::{Ctx, Expect, Kind, MAX_COLUMNS, Name, ScoringInput, echo};

/// Record lookups of keys switch from a scan to a hash map above this width.
const LINEAR_LOOKUP_MAX: usize = 16;

/// Which kinds of rows a list may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Accept {
    /// Positional lists only (`dataframe_split.data`).
    Lists,
    /// Records only (`dataframe_records`).
    Records,
    /// Either, decided by the first row, or an object of columns (`instances`, `inputs`).
    Either,
}

/// Rows being decoded into one flat vector.
pub(super) struct Rows {
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
    /// (a JSON number is never NaN).
    scratch: Vec<f64>,
}

impl Rows {
    pub(super) fn new(what: &'static str, accept: Accept) -> Self {
        Self {
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

    /// The rows of `dataframe_split.data` when its `columns` came first.
    pub(super) fn with_columns(mut self, columns: Option<Vec<String>>) -> Self {
        self.width = columns.as_ref().map(Vec::len);
        self.columns_given = columns.is_some();
        self.columns = columns;
        self
    }

    /// Decodes one positional row.
    fn read_list<'de, A: SeqAccess<'de>>(&mut self, ctx: &Ctx, mut seq: A) -> Result<(), A::Error> {
        let row = self.rows;
        let cap = self.width.unwrap_or(MAX_COLUMNS);
        let names = self.columns.as_deref();
        let at = |col| (row, col, names.and_then(|n| n.get(col)).map(String::as_str));
        let got = match read_cells(ctx, &mut seq, cap, &mut self.values, at)? {
            Some(got) => got,
            None if self.width.is_none() => {
                return Err(ctx.too_many_columns(&format!("row {row}")));
            }
            None => {
                let mut extra = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    extra += 1;
                }
                cap + extra
            }
        };
        match self.width {
            Some(width) if got != width => {
                return Err(ctx.invalid(if self.columns_given {
                    format!("row {row} has {got} values but there are {width} columns")
                } else {
                    format!("row {row} has {got} values but row 0 has {width}; every row needs the same number")
                }));
            }
            Some(_) => {}
            None => self.width = Some(got),
        }
        self.rows += 1;
        Ok(())
    }

    /// Decodes one record. The first one fixes the columns; every other must have the same.
    fn read_record<'de, A: MapAccess<'de>>(
        &mut self,
        ctx: &Ctx,
        mut map: A,
    ) -> Result<(), A::Error> {
        let row = self.rows;
        let schema = |message| ctx.fail(ModelErrorType::SchemaMismatch, message);
        let mut columns = self.columns.take().unwrap_or_default();
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.resize(columns.len(), f64::NAN);
        while let Some(key) = map.next_key_seed(Kind(ctx, Name(0)))? {
            let found = match &self.lookup {
                Some(lookup) => lookup.get(key.as_ref()).copied(),
                None => columns.iter().position(|c| *c == key),
            };
            let col = match found {
                Some(col) if !scratch[col].is_nan() => {
                    let key = echo(&key);
                    return Err(ctx.invalid(format!("row {row} has column {key} twice")));
                }
                Some(col) => col,
                None if row > 0 => {
                    return Err(schema(format!(
                        "row {row} has column {}, which row 0 does not have; every record needs the same columns",
                        echo(&key)
                    )));
                }
                None if columns.len() == MAX_COLUMNS => {
                    return Err(ctx.too_many_columns("row 0"));
                }
                None => {
                    columns.push(key.to_string());
                    scratch.push(f64::NAN);
                    columns.len() - 1
                }
            };
            scratch[col] = map.next_value_seed(Kind(ctx, Cell(row, col, Some(key.as_ref()))))?;
        }
        if let Some(col) = scratch.iter().position(|v| v.is_nan()) {
            return Err(schema(format!(
                "row {row} lacks column {}, which row 0 has; every record needs the same columns",
                echo(&columns[col])
            )));
        }
        if row == 0 && columns.len() > LINEAR_LOOKUP_MAX {
            let lookup = columns.iter().enumerate().map(|(i, c)| (c.clone(), i));
            self.lookup = Some(lookup.collect());
        }
        self.values.extend_from_slice(&scratch);
        self.width = Some(columns.len());
        self.columns = Some(columns);
        self.scratch = scratch;
        self.rows += 1;
        Ok(())
    }
}

/// A list of rows, or (`instances`, `inputs`) an object of columns.
impl<'de> Expect<'de> for Rows {
    type Value = ScoringInput;

    fn refuse(&self, found: &str) -> String {
        let expected = match self.accept {
            Accept::Lists => "a list of rows (lists of numbers)",
            Accept::Records => "a list of records (objects)",
            Accept::Either => "a list of rows (lists or objects) or an object of columns",
        };
        format!("{} must be {expected}; found {found}", self.what)
    }

    fn list<A: SeqAccess<'de>>(mut self, ctx: &Ctx, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(NextRow(ctx, &mut self))?.is_some() {}
        let width = self.width.or_else(|| self.columns.as_ref().map(Vec::len));
        Ok(ScoringInput {
            columns: self.columns,
            width: width.unwrap_or(0),
            rows: self.rows,
            values: self.values,
            options: PredictOptions::default(),
        })
    }

    fn object<A: MapAccess<'de>>(self, ctx: &Ctx, mut map: A) -> Result<Self::Value, A::Error> {
        let key = self.what;
        if self.accept != Accept::Either {
            return Err(ctx.invalid(self.refuse("an object")));
        }
        let mut columns: Vec<String> = Vec::new();
        let mut cells: Vec<Vec<f64>> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if columns.contains(&name) {
                return Err(ctx.invalid(format!("{key} has column {} twice", echo(&name))));
            }
            if columns.len() == MAX_COLUMNS {
                return Err(ctx.too_many_columns(key));
            }
            let column = Column(key, columns.len(), &name);
            let column = map.next_value_seed(Kind(ctx, column))?;
            if let (Some(first), Some(first_name)) = (cells.first(), columns.first())
                && first.len() != column.len()
            {
                return Err(ctx.invalid(format!(
                    "{key}: column {} has {} values but column {} has {}",
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
        let width = columns.len();
        let columns = Some(columns);
        let options = PredictOptions::default();
        Ok(ScoringInput {
            columns,
            width,
            rows,
            values,
            options,
        })
    }
}

/// The next row of a list, refused before it is read once the list has `max_rows` rows.
struct NextRow<'c, 'r>(&'c Ctx, &'r mut Rows);

impl<'de> DeserializeSeed<'de> for NextRow<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.1.rows >= self.0.max_rows {
            return Err(self.0.too_many_rows());
        }
        Kind(self.0, Row(self.1)).deserialize(deserializer)
    }
}

/// One row: a positional list or a record, as `Rows::accept` allows.
struct Row<'r>(&'r mut Rows);

impl<'de> Expect<'de> for Row<'_> {
    type Value = ();

    fn refuse(&self, found: &str) -> String {
        let rows = &*self.0;
        let (expected, first) = match (rows.accept, rows.records) {
            (Accept::Lists, _) => ("a list of values", ""),
            (Accept::Records, _) => ("an object (a record)", ""),
            (Accept::Either, Some(false)) => ("a list of values", " like row 0"),
            (Accept::Either, Some(true)) => ("an object (a record)", " like row 0"),
            (Accept::Either, None) => ("a list of values or an object (a record)", ""),
        };
        let (what, row) = (rows.what, rows.rows);
        format!("{what} row {row} must be {expected}{first}; found {found}")
    }

    fn list<A: SeqAccess<'de>>(self, ctx: &Ctx, seq: A) -> Result<(), A::Error> {
        if matches!(self.0.accept, Accept::Records) || self.0.records == Some(true) {
            return Err(ctx.invalid(self.refuse("a list")));
        }
        self.0.records = Some(false);
        self.0.read_list(ctx, seq)
    }

    fn object<A: MapAccess<'de>>(self, ctx: &Ctx, map: A) -> Result<(), A::Error> {
        if matches!(self.0.accept, Accept::Lists) || self.0.records == Some(false) {
            return Err(ctx.invalid(self.refuse("an object")));
        }
        self.0.records = Some(true);
        self.0.read_record(ctx, map)
    }
}

/// One column of an object of columns (key, position, name): a list of numbers, one per row.
struct Column<'n>(&'static str, usize, &'n str);

impl<'de> Expect<'de> for Column<'_> {
    type Value = Vec<f64>;

    fn refuse(&self, found: &str) -> String {
        let Self(key, _, name) = self;
        format!(
            "{key}: column {} must be a list of numbers; found {found}",
            echo(name)
        )
    }

    fn list<A: SeqAccess<'de>>(self, ctx: &Ctx, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut column = Vec::new();
        let at = |row| (row, self.1, Some(self.2));
        if read_cells(ctx, &mut seq, ctx.max_rows, &mut column, at)?.is_none()
            && seq.next_element::<IgnoredAny>()?.is_some()
        {
            return Err(ctx.too_many_rows());
        }
        Ok(column)
    }
}

/// Reads the numbers of one list into `out`, at most `cap` of them, the `i`th at `at(i)`
/// (row, column index, column name). `Some(n)` when the list ended after `n`; `None` when
/// `cap` were read, leaving the rest of the list to the caller.
fn read_cells<'de, 'n, A: SeqAccess<'de>>(
    ctx: &Ctx,
    seq: &mut A,
    cap: usize,
    out: &mut Vec<f64>,
    at: impl Fn(usize) -> (usize, usize, Option<&'n str>),
) -> Result<Option<usize>, A::Error> {
    for i in 0..cap {
        let (row, col, name) = at(i);
        match seq.next_element_seed(Kind(ctx, Cell(row, col, name)))? {
            Some(value) => out.push(value),
            None => return Ok(Some(i)),
        }
    }
    Ok(None)
}

/// One value (row, column index, column name if known): a finite JSON number.
struct Cell<'n>(usize, usize, Option<&'n str>);

impl Cell<'_> {
    fn at(&self) -> String {
        match self.2 {
            Some(name) => format!("row {}, column {}", self.0, echo(name)),
            None => format!("row {}, column {}", self.0, self.1),
        }
    }
}

impl<'de> Expect<'de> for Cell<'_> {
    type Value = f64;

    fn refuse(&self, found: &str) -> String {
        format!("{}: expected a number, found {found}", self.at())
    }

    fn number<E: de::Error>(self, ctx: &Ctx, v: f64) -> Result<f64, E> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(ctx.invalid(format!("{}: value is not a finite number", self.at())))
        }
    }
}
