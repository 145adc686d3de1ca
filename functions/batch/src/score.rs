//! Scoring one partition: rows in, `[id,]date,store,item,sales[,p10,...]` out, bad rows to
//! an error file with their line numbers.
//!
//! Input is read line by line from a stream, so a partition never sits in memory as text;
//! rows are predicted in chunks of [`CHUNK_ROWS`] with the same feature code
//! (`forecast::features`) and the same evaluator (`forecast::gbdt`) the HTTP API uses, so a
//! batch prediction equals the API's for the same row, bit for bit.

use std::fmt::Write as _;

use chrono::NaiveDate;
use forecast::distribution::{Predictive, level_key};
use forecast::features::{Feature, build_row};
use forecast::manifest::TrainingDomain;
use forecast::{ForecastRequest, ItemId, StoreId, parse_date};
use model::LoadedModel;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::error::BatchError;
use crate::store::ObjectReader;

/// Rows predicted per evaluator call.
pub const CHUNK_ROWS: usize = 8_192;
/// Longest input line accepted; a longer one is a bad row (and is not buffered whole).
pub const MAX_LINE_BYTES: usize = 4_096;
/// How much of a bad row the error file quotes.
const QUOTED_ROW_CHARS: usize = 200;

/// The result of one partition, ready to be written.
#[derive(Debug, Default)]
pub struct ScoredPartition {
    /// The output CSV, header included.
    pub csv: Vec<u8>,
    /// The error CSV (`line,error,row`), header included; only the header when no row was bad.
    pub errors: Vec<u8>,
    /// Data rows read.
    pub rows_read: u64,
    /// Rows scored.
    pub rows_scored: u64,
    /// Rows rejected.
    pub bad_rows: u64,
}

/// Header of the error files.
pub const ERROR_HEADER: &str = "line,error,row\n";

/// The model and what scoring needs from its manifest.
#[derive(Debug)]
pub struct Scorer<'a> {
    model: &'a LoadedModel,
    features: Vec<Feature>,
    /// The predictive distribution and the levels answered beside each prediction.
    quantiles: Option<(Predictive, Vec<f64>)>,
}

impl<'a> Scorer<'a> {
    /// A scorer for `model`, whose manifest must name features this service can build, and
    /// hold a predictive distribution when quantile `levels` are asked for.
    pub fn new(model: &'a LoadedModel, levels: Option<Vec<f64>>) -> Result<Self, BatchError> {
        let features = Feature::resolve_all(&model.manifest.features)
            .map_err(|e| BatchError::ModelUnavailable(format!("the model's features: {e}")))?;
        let quantiles = match levels {
            None => None,
            Some(levels) => Some((distribution(model)?, levels)),
        };
        Ok(Self {
            model,
            features,
            quantiles,
        })
    }

    fn domain(&self) -> &TrainingDomain {
        &self.model.manifest.domain
    }

    /// Scores a CSV stream with a header naming `date`, `store`, `item` and optionally `id`.
    pub async fn score_csv(
        &self,
        mut reader: ObjectReader,
        uri: &str,
    ) -> Result<ScoredPartition, BatchError> {
        let io_error = |e: std::io::Error| BatchError::Storage {
            uri: uri.to_owned(),
            reason: format!("reading the object failed: {e}"),
        };
        let mut line = Vec::with_capacity(256);
        let mut line_no: u64 = 0;
        // The header is the first line that is not blank.
        let columns = loop {
            let Some(fits) = read_line(&mut reader, &mut line).await.map_err(io_error)? else {
                return Err(BatchError::InvalidInput {
                    uri: uri.to_owned(),
                    reason: "the object is empty; expected a header date,store,item[,id]".into(),
                });
            };
            line_no += 1;
            let text = if fits {
                std::str::from_utf8(&line).ok()
            } else {
                None
            };
            match text.map(|t| t.trim_start_matches('\u{feff}').trim()) {
                Some("") => continue,
                Some(header) => {
                    break Columns::parse(header).map_err(|reason| BatchError::InvalidInput {
                        uri: uri.to_owned(),
                        reason: format!("line {line_no}: {reason}"),
                    })?;
                }
                None => {
                    return Err(BatchError::InvalidInput {
                        uri: uri.to_owned(),
                        reason: format!("line {line_no}: the header is not short UTF-8 text"),
                    });
                }
            }
        };
        let mut out = PartitionWriter::new(self, columns.id.is_some());
        while let Some(fits) = read_line(&mut reader, &mut line).await.map_err(io_error)? {
            line_no += 1;
            if !fits {
                out.reject(
                    line_no,
                    &format!("the line is longer than {MAX_LINE_BYTES} bytes"),
                    &String::from_utf8_lossy(&line),
                );
                continue;
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                out.reject(
                    line_no,
                    "the line is not UTF-8",
                    &String::from_utf8_lossy(&line),
                );
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            match columns.parse_row(text) {
                Ok((id, request)) => out.accept(line_no, id, request)?,
                Err(reason) => out.reject(line_no, &reason, text),
            }
        }
        out.finish()
    }

    /// Scores every `(store, item)` of `pairs` for `days` days from `start`, pair by pair.
    /// The error file's "line" of a rejected row is its 1-based position in that order.
    pub fn score_catalogue(
        &self,
        start: NaiveDate,
        days: u32,
        pairs: &[[u32; 2]],
    ) -> Result<ScoredPartition, BatchError> {
        let mut out = PartitionWriter::new(self, false);
        let mut position: u64 = 0;
        for &[store, item] in pairs {
            for offset in 0..days {
                position += 1;
                let described = format!("{start}+{offset},{store},{item}");
                let date = start.checked_add_days(chrono::Days::new(u64::from(offset)));
                match (date, StoreId::new(store), ItemId::new(item)) {
                    (Some(date), Some(store), Some(item)) => {
                        out.accept(position, None, ForecastRequest { date, store, item })?;
                    }
                    _ => out.reject(position, "date, store or item out of range", &described),
                }
            }
        }
        out.finish()
    }
}

/// Reads one line (without its line ending) into `line`. `None` at the end of the stream;
/// `Some(false)` when the line was longer than [`MAX_LINE_BYTES`] (its rest is skipped).
async fn read_line(reader: &mut ObjectReader, line: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    line.clear();
    let cap = MAX_LINE_BYTES as u64 + 1;
    let n = (&mut *reader).take(cap).read_until(b'\n', line).await?;
    if n == 0 {
        return Ok(None);
    }
    let mut fits = true;
    if line.last() != Some(&b'\n') && n as u64 == cap {
        fits = false;
        // Skip the rest of the long line without keeping it.
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let m = (&mut *reader)
                .take(cap)
                .read_until(b'\n', &mut rest)
                .await?;
            if m == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
        line.truncate(QUOTED_ROW_CHARS);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(fits))
}

/// Where `date`, `store`, `item` and `id` are in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    date: usize,
    store: usize,
    item: usize,
    id: Option<usize>,
    width: usize,
}

fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

impl Columns {
    fn parse(header: &str) -> Result<Self, String> {
        let names: Vec<String> = header
            .split(',')
            .map(|n| unquote(n).to_ascii_lowercase())
            .collect();
        let find = |name: &str| names.iter().position(|n| n == name);
        let (Some(date), Some(store), Some(item)) = (find("date"), find("store"), find("item"))
        else {
            return Err(format!(
                "the header {:?} does not name the columns date, store and item",
                header.chars().take(QUOTED_ROW_CHARS).collect::<String>()
            ));
        };
        Ok(Self {
            date,
            store,
            item,
            id: find("id"),
            width: names.len(),
        })
    }

    /// The row's id (when the input has an id column) and request, or why it is bad.
    fn parse_row(&self, text: &str) -> Result<(Option<String>, ForecastRequest), String> {
        let fields: Vec<&str> = text.split(',').map(unquote).collect();
        if fields.len() != self.width {
            return Err(format!(
                "expected {} fields, found {}",
                self.width,
                fields.len()
            ));
        }
        let mut problems = Vec::new();
        let date = parse_date(fields[self.date])
            .map_err(|e| problems.push(format!("date: {e}")))
            .ok();
        let whole = |value: &str| value.parse::<u32>().ok();
        let store = whole(fields[self.store]).and_then(StoreId::new);
        let item = whole(fields[self.item]).and_then(ItemId::new);
        for (name, column, valid) in [
            ("store", self.store, store.is_some()),
            ("item", self.item, item.is_some()),
        ] {
            if !valid {
                let max = forecast::request::MAX_ID;
                let value = fields[column];
                problems.push(format!(
                    "{name}: {value:?} is not a whole number from 1 to {max}"
                ));
            }
        }
        let row_id = match self.id.map(|i| fields[i]) {
            Some("") => {
                problems.push("id: empty".into());
                None
            }
            Some(value) if value.contains('"') => {
                problems.push("id: contains a quote".into());
                None
            }
            other => other.map(str::to_owned),
        };
        match (date, store, item) {
            (Some(date), Some(store), Some(item)) if problems.is_empty() => {
                Ok((row_id, ForecastRequest { date, store, item }))
            }
            _ => Err(problems.join("; ")),
        }
    }
}

/// Accumulates accepted rows into chunks, predicts each chunk, writes output and errors.
struct PartitionWriter<'s, 'a> {
    scorer: &'s Scorer<'a>,
    with_id: bool,
    pending: Vec<(Option<String>, ForecastRequest)>,
    features: Vec<f64>,
    result: ScoredPartition,
}

impl<'s, 'a> PartitionWriter<'s, 'a> {
    fn new(scorer: &'s Scorer<'a>, with_id: bool) -> Self {
        let mut header = if with_id { "id," } else { "" }.to_owned();
        header.push_str("date,store,item,sales");
        for level in scorer.quantiles.iter().flat_map(|(_, levels)| levels) {
            header.push(',');
            header.push_str(&level_key(*level));
        }
        header.push('\n');
        Self {
            scorer,
            with_id,
            pending: Vec::with_capacity(CHUNK_ROWS),
            features: Vec::with_capacity(CHUNK_ROWS * scorer.features.len()),
            result: ScoredPartition {
                csv: header.into_bytes(),
                errors: ERROR_HEADER.as_bytes().to_vec(),
                ..ScoredPartition::default()
            },
        }
    }

    /// A valid row: rejected if outside the model's training domain (as the API does),
    /// otherwise queued for prediction.
    fn accept(
        &mut self,
        line: u64,
        id: Option<String>,
        request: ForecastRequest,
    ) -> Result<(), BatchError> {
        self.result.rows_read += 1;
        let outside = self.scorer.domain().check(&request, &[]);
        if !outside.is_empty() {
            let reason: Vec<String> = outside.into_iter().map(|e| e.msg).collect();
            let row = format!(
                "{}{},{},{}",
                id.as_deref().map(|i| format!("{i},")).unwrap_or_default(),
                request.date,
                request.store.get(),
                request.item.get()
            );
            self.write_error(line, &reason.join("; "), &row);
            return Ok(());
        }
        self.features
            .extend(build_row(&self.scorer.features, &request));
        self.pending.push((id, request));
        if self.pending.len() >= CHUNK_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn reject(&mut self, line: u64, reason: &str, row: &str) {
        self.result.rows_read += 1;
        self.write_error(line, reason, row);
    }

    fn write_error(&mut self, line: u64, reason: &str, row: &str) {
        self.result.bad_rows += 1;
        let row: String = row.chars().take(QUOTED_ROW_CHARS).collect();
        let mut text = String::new();
        let _ = writeln!(text, "{line},{},{}", csv_quote(reason), csv_quote(&row));
        self.result.errors.extend_from_slice(text.as_bytes());
    }

    fn flush(&mut self) -> Result<(), BatchError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let sales = self
            .scorer
            .model
            .predict(&self.features)
            .map_err(|e| BatchError::Prediction(e.to_string()))?;
        let mut text = String::with_capacity(self.pending.len() * 40);
        let mut row = Vec::new();
        for ((id, request), sales) in self.pending.drain(..).zip(sales) {
            if self.with_id {
                text.push_str(id.as_deref().unwrap_or_default());
                text.push(',');
            }
            // f64's Display is the shortest text that parses back to the same bits.
            let _ = write!(
                text,
                "{},{},{},{sales}",
                request.date.format("%Y-%m-%d"),
                request.store.get(),
                request.item.get()
            );
            // The quantiles the model function answers for the same mean.
            if let Some((predictive, levels)) = &self.scorer.quantiles {
                predictive.at(sales).quantiles_into(levels, &mut row);
                for quantile in &row {
                    let _ = write!(text, ",{quantile}");
                }
            }
            text.push('\n');
            self.result.rows_scored += 1;
        }
        self.result.csv.extend_from_slice(text.as_bytes());
        self.features.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<ScoredPartition, BatchError> {
        self.flush()?;
        Ok(self.result)
    }
}

/// The model's predictive distribution, which quantiles need: a job asking them of a model
/// without one is refused, as the API answers such a request 422.
pub fn distribution(model: &LoadedModel) -> Result<Predictive, BatchError> {
    let manifest = &model.manifest;
    manifest
        .distribution
        .as_ref()
        .map(|d| d.predictive)
        .ok_or_else(|| {
            BatchError::InvalidJob(format!(
                "model {}/{} has no predictive distribution in its manifest, so it answers no \
                 quantiles; submit the job without them or publish a model trained with one",
                manifest.name, manifest.version
            ))
        })
}

/// `text` as one CSV field, quoted, with quotes doubled and line breaks replaced.
fn csv_quote(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("\"{}\"", clean.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::loaded;

    fn reader(text: &[u8]) -> ObjectReader {
        Box::pin(std::io::Cursor::new(text.to_vec()))
    }

    /// What the evaluator predicts for one row on its own, as the HTTP API computes it.
    fn api_prediction(model: &LoadedModel, date: &str, store: u32, item: u32) -> f64 {
        let features = Feature::resolve_all(&model.manifest.features).unwrap();
        let request = ForecastRequest {
            date: parse_date(date).unwrap(),
            store: StoreId::new(store).unwrap(),
            item: ItemId::new(item).unwrap(),
        };
        model.predict(&build_row(&features, &request)).unwrap()[0]
    }

    fn lines(bytes: &[u8]) -> Vec<String> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn good_rows_are_scored_exactly_and_bad_rows_reported_by_line() {
        // GIVEN a model trained on stores 1..=3 and items 1..=4
        let model = loaded().await;
        let scorer = Scorer::new(&model, None).unwrap();
        // AND a partition in Kaggle's test.csv order with bad rows among good ones
        let mut text = b"id,date,store,item\r\n\
            0,2018-01-01,1,1\r\n\
            1,2018-13-01,1,1\n\
            2,2018-01-02,2\n\
            \n\
            3,2018-01-03,3,4\n\
            4,2018-01-04,0,1\n\
            5,2018-01-05,1,9\n"
            .to_vec();
        text.extend_from_slice(b"6,2018-01-06,\xff,1\n");
        text.extend_from_slice(format!("7,{}\n", "9".repeat(MAX_LINE_BYTES)).as_bytes());
        text.extend_from_slice(b"8,2018-01-08T10:00:00,2,2");
        // WHEN it is scored
        let scored = scorer
            .score_csv(reader(&text), "s3://b/in/p.csv")
            .await
            .unwrap();
        // THEN every good row carries the prediction the API gives for it, bit for bit
        let out = lines(&scored.csv);
        assert_eq!(out[0], "id,date,store,item,sales");
        let expected = [
            ("0", "2018-01-01", 1, 1),
            ("3", "2018-01-03", 3, 4),
            ("8", "2018-01-08", 2, 2),
        ];
        assert_eq!(out.len(), expected.len() + 1, "{out:?}");
        for (line, (id, date, store, item)) in out[1..].iter().zip(expected) {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(
                fields[..4],
                [id, date, &store.to_string(), &item.to_string()]
            );
            let sales: f64 = fields[4].parse().unwrap();
            assert_eq!(
                sales.to_bits(),
                api_prediction(&model, date, store, item).to_bits(),
                "{line}"
            );
        }
        // AND every bad row is in the error file with its line number (header = line 1)
        let errors = lines(&scored.errors);
        assert_eq!(errors[0], "line,error,row");
        let numbers: Vec<&str> = errors[1..]
            .iter()
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(numbers, ["3", "4", "7", "8", "9", "10"], "{errors:?}");
        assert!(errors[1].contains("date"), "{}", errors[1]);
        assert!(
            errors[2].contains("expected 4 fields, found 3"),
            "{}",
            errors[2]
        );
        assert!(errors[3].contains("store"), "{}", errors[3]);
        assert!(
            errors[4].contains("outside the model's training data"),
            "{}",
            errors[4]
        );
        assert!(errors[5].contains("not UTF-8"), "{}", errors[5]);
        assert!(errors[6].contains("longer than"), "{}", errors[6]);
        // AND nothing is lost: read = scored + bad
        assert_eq!(scored.rows_read, 9);
        assert_eq!(scored.rows_scored, 3);
        assert_eq!(scored.bad_rows, 6);
    }

    #[tokio::test]
    async fn quantile_columns_carry_what_the_model_function_answers_for_the_same_row() {
        // GIVEN the model (with its predictive distribution) and a job asking P10/P50/P90
        let model = loaded().await;
        assert!(model.manifest.distribution.is_some());
        let scorer = Scorer::new(&model, Some(vec![0.1, 0.5, 0.9])).unwrap();
        // WHEN two store-items are forecast for three days
        let start = NaiveDate::from_ymd_opt(2018, 1, 1).unwrap();
        let scored = scorer.score_catalogue(start, 3, &[[1, 1], [3, 4]]).unwrap();
        // THEN each row carries the three quantiles after its sales
        let out = lines(&scored.csv);
        assert_eq!(out[0], "date,store,item,sales,p10,p50,p90");
        assert_eq!(out.len(), 7);
        for line in &out[1..] {
            let fields: Vec<&str> = line.split(',').collect();
            let (store, item): (u32, u32) =
                (fields[1].parse().unwrap(), fields[2].parse().unwrap());
            // AND they are the model function's own answer for that row, sales included
            let features = Feature::resolve_all(&model.manifest.features).unwrap();
            let request = ForecastRequest {
                date: parse_date(fields[0]).unwrap(),
                store: StoreId::new(store).unwrap(),
                item: ItemId::new(item).unwrap(),
            };
            let payload = serde_json::json!({
                "dataframe_split": {
                    "columns": model.manifest.features,
                    "data": [build_row(&features, &request)],
                },
                "params": {"quantiles": [0.1, 0.5, 0.9]},
            });
            let answer = model::handle_json(&model, &payload.to_string(), 10).unwrap();
            let answer = serde_json::to_value(answer).unwrap();
            let expected = [
                answer["predictions"][0].as_f64().unwrap(),
                answer["quantiles"]["p10"][0].as_f64().unwrap(),
                answer["quantiles"]["p50"][0].as_f64().unwrap(),
                answer["quantiles"]["p90"][0].as_f64().unwrap(),
            ];
            let got: Vec<f64> = fields[3..].iter().map(|f| f.parse().unwrap()).collect();
            assert_eq!(got, expected, "{line}");
            assert!(got[1] <= got[2] && got[2] <= got[3], "{line}");
        }
        // AND a model without a predictive distribution cannot take such a job
        let mut plain = model::load_model(&model::LocalFileStore, &crate::testing::location())
            .await
            .unwrap();
        plain.manifest.distribution = None;
        let err = Scorer::new(&plain, Some(vec![0.5])).unwrap_err();
        assert_eq!(err.error_type(), "InvalidJob");
        assert!(
            err.to_string().contains("no predictive distribution"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn columns_are_found_by_name_and_a_missing_header_fails_the_partition() {
        let model = loaded().await;
        let scorer = Scorer::new(&model, None).unwrap();
        let scored = scorer
            .score_csv(reader(b"item,store,date\n4,3,2018-02-01\n"), "s3://b/p.csv")
            .await
            .unwrap();
        let out = lines(&scored.csv);
        assert_eq!(out[0], "date,store,item,sales");
        assert!(out[1].starts_with("2018-02-01,3,4,"), "{out:?}");
        assert_eq!(scored.errors, ERROR_HEADER.as_bytes());

        for text in [&b""[..], b"2018-01-01,1,1\n", b"a,b,c\n"] {
            let err = scorer
                .score_csv(reader(text), "s3://b/p.csv")
                .await
                .unwrap_err();
            assert_eq!(err.error_type(), "InvalidInput", "{err}");
        }
    }

    #[tokio::test]
    async fn a_catalogue_partition_is_every_day_of_every_pair() {
        let model = loaded().await;
        let scorer = Scorer::new(&model, None).unwrap();
        let start = NaiveDate::from_ymd_opt(2017, 12, 30).unwrap();
        let scored = scorer.score_catalogue(start, 3, &[[1, 2], [3, 4]]).unwrap();
        let out = lines(&scored.csv);
        assert_eq!(out.len(), 7);
        assert!(out[1].starts_with("2017-12-30,1,2,"));
        assert!(out[3].starts_with("2018-01-01,1,2,"));
        assert!(out[6].starts_with("2018-01-01,3,4,"));
        let sales: f64 = out[6].rsplit(',').next().unwrap().parse().unwrap();
        assert_eq!(
            sales.to_bits(),
            api_prediction(&model, "2018-01-01", 3, 4).to_bits()
        );
        assert_eq!(
            (scored.rows_read, scored.rows_scored, scored.bad_rows),
            (6, 6, 0)
        );
    }
}
