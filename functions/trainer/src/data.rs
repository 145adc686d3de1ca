//! Reading a sales history in the Kaggle schema `date,store,item,sales`.

use std::path::Path;

use chrono::NaiveDate;
use forecast::{ItemId, StoreId};

/// One day of sales of one item in one store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SalesRecord {
    /// The day.
    pub date: NaiveDate,
    /// The store.
    pub store: StoreId,
    /// The item.
    pub item: ItemId,
    /// Units sold.
    pub sales: f64,
}

/// A sales history as read from disk.
#[derive(Debug, Clone)]
pub struct SalesHistory {
    /// The rows, in file order.
    pub records: Vec<SalesRecord>,
    /// sha256 (hex) of the file's bytes.
    pub sha256: String,
}

/// Why a sales file could not be read. Row errors carry the 1-based line number.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The header is not `date,store,item,sales`.
    #[error("line 1: expected the header {expected}, found {found:?}")]
    Header {
        /// The header the file must have.
        expected: String,
        /// The header found.
        found: String,
    },
    /// A row is malformed.
    #[error("line {line}: {reason}")]
    Row {
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file has a header but no rows.
    #[error("the file has no data rows")]
    Empty,
}

const HEADER: [&str; 4] = ["date", "store", "item", "sales"];

/// Reads and validates a sales CSV.
pub fn read_sales_csv(path: &Path) -> Result<SalesHistory, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_sales_csv(&bytes)
}

/// Parses sales CSV bytes (see [`read_sales_csv`]).
pub fn parse_sales_csv(bytes: &[u8]) -> Result<SalesHistory, DataError> {
    let sha256 = forecast::artifact::sha256_hex(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    check_header(&mut reader, &HEADER)?;
    let mut records = Vec::with_capacity(bytes.len() / 20);
    let mut row = csv::StringRecord::new();
    // Shown only on a terminal (indicatif hides itself otherwise).
    let bar = indicatif::ProgressBar::new(bytes.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        if records.len() % 65_536 == 0 {
            bar.set_position(reader.position().byte());
            bar.set_message(format!("{} rows", records.len()));
        }
        let line = reader.position().line();
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, csv::Position::line);
                return Err(DataError::Row {
                    line,
                    reason: e.to_string(),
                });
            }
        }
        let line = row.position().map_or(line, csv::Position::line);
        records.push(parse_row(&row).map_err(|reason| DataError::Row { line, reason })?);
    }
    bar.finish_and_clear();
    if records.is_empty() {
        return Err(DataError::Empty);
    }
    Ok(SalesHistory { records, sha256 })
}

fn parse_row(row: &csv::StringRecord) -> Result<SalesRecord, String> {
    let [date, store, item, sales] = [0, 1, 2, 3].map(|i| row.get(i).map(str::trim));
    let (Some(date), Some(store), Some(item), Some(sales)) = (date, store, item, sales) else {
        return Err(format!("expected 4 fields, found {}", row.len()));
    };
    let date = parse_day(date)?;
    let store = parse_store(store)?;
    let item = parse_item(item)?;
    let sales: f64 = sales
        .parse()
        .map_err(|_| format!("sales {sales:?} is not a number"))?;
    if !sales.is_finite() || sales < 0.0 {
        return Err(format!("sales {sales} must be a finite number >= 0"));
    }
    Ok(SalesRecord {
        date,
        store,
        item,
        sales,
    })
}

/// Checks that the header is exactly `expected` (cells trimmed).
fn check_header<R: std::io::Read>(
    reader: &mut csv::Reader<R>,
    expected: &[&str],
) -> Result<(), DataError> {
    let header = reader.headers().map_err(|e| DataError::Row {
        line: 1,
        reason: e.to_string(),
    })?;
    if header.iter().map(str::trim).ne(expected.iter().copied()) {
        return Err(DataError::Header {
            expected: expected.join(","),
            found: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    Ok(())
}

fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("bad date {text:?}, expected YYYY-MM-DD"))
}

fn parse_id(text: &str, field: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{field} {text:?} is not a positive whole number"))
}

fn parse_store(text: &str) -> Result<StoreId, String> {
    parse_id(text, "store")
        .and_then(|id| StoreId::new(id).ok_or_else(|| format!("store {id} is out of range")))
}

fn parse_item(text: &str) -> Result<ItemId, String> {
    parse_id(text, "item")
        .and_then(|id| ItemId::new(id).ok_or_else(|| format!("item {id} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kaggle_schema() {
        let csv = b"date,store,item,sales\n2013-01-01,1,1,13\n2013-01-02,1,1,11\n";
        let history = parse_sales_csv(csv).unwrap();
        assert_eq!(history.records.len(), 2);
        assert_eq!(
            history.records[1].date,
            NaiveDate::from_ymd_opt(2013, 1, 2).unwrap()
        );
        assert_eq!(history.records[1].sales, 11.0);
        assert_eq!(history.sha256.len(), 64);
    }

    #[test]
    fn row_errors_carry_the_line_number() {
        let cases: [(&[u8], &str); 6] = [
            (
                b"date,store,item,sales\n2013-01-01,1,1,13\n2013-02-30,1,1,5\n",
                "line 3: bad date",
            ),
            (
                b"date,store,item,sales\n2013-01-01,1,1,-4\n",
                "line 2: sales -4 must be",
            ),
            (
                b"date,store,item,sales\n2013-01-01,1,1,lots\n",
                "line 2: sales \"lots\" is not a number",
            ),
            (
                b"date,store,item,sales\n2013-01-01,0,1,3\n",
                "line 2: store 0 is out of range",
            ),
            (
                b"date,store,item,sales\n2013-01-01,1,1,3\n2013-01-02,1,1\n",
                "line 3:",
            ),
            (
                b"id,date,store,item\n0,2018-01-01,1,1\n",
                "line 1: expected the header",
            ),
        ];
        for (csv, expected) in cases {
            let err = parse_sales_csv(csv).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{err} should start with {expected}"
            );
        }
    }

    #[test]
    fn an_empty_history_is_rejected() {
        assert!(matches!(
            parse_sales_csv(b"date,store,item,sales\n"),
            Err(DataError::Empty)
        ));
    }
}

/// One row of a Kaggle `test.csv` (`id,date,store,item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRow {
    /// The submission id.
    pub id: u64,
    /// The day.
    pub date: NaiveDate,
    /// The store.
    pub store: StoreId,
    /// The item.
    pub item: ItemId,
}

/// Reads a Kaggle-shaped `test.csv`, with line-numbered errors.
pub fn read_test_csv(path: &Path) -> Result<Vec<TestRow>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    check_header(&mut reader, &["id", "date", "store", "item"])?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| DataError::Row {
            line: e.position().map_or(0, csv::Position::line),
            reason: e.to_string(),
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let row_error = |reason: String| DataError::Row { line, reason };
        let field = |i: usize| record.get(i).map(str::trim).unwrap_or_default();
        let id = field(0)
            .parse()
            .map_err(|_| row_error(format!("bad id {:?}", field(0))))?;
        let date = parse_day(field(1)).map_err(row_error)?;
        let store = parse_store(field(2)).map_err(row_error)?;
        let item = parse_item(field(3)).map_err(row_error)?;
        rows.push(TestRow {
            id,
            date,
            store,
            item,
        });
    }
    Ok(rows)
}
