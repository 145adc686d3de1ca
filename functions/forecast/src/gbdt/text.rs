//! Reading LightGBM's text model format (`model.txt`, format `v4`) into plain trees.
//!
//! The rules reproduce `GBDT::LoadModelFromString` (`src/boosting/gbdt_model_text.cpp`) and
//! `Tree::Tree(const char*, size_t*)` (`src/io/tree.cpp`) of LightGBM 4.7, with one difference
//! on purpose: every count and index is checked before it is used, so a truncated or edited
//! file is an error naming what is wrong, never an out-of-bounds read.

use rayon::prelude::*;

use super::ModelTextError::{self, Corrupt, Unsupported};

/// Most trees a model may hold; far beyond any model this service trains, and it bounds the
/// work a hostile file can ask for.
const MAX_TREES: usize = 1_000_000;
/// Most leaves one tree may have (LightGBM's own `num_leaves` limit is 131,072).
const MAX_LEAVES: usize = 131_072;
/// Most features a model may declare.
const MAX_FEATURES: usize = 1_000_000;
/// Most 32-bit words of categorical bitsets one tree may hold.
const MAX_CAT_WORDS: usize = 1 << 20;

/// `decision_type` bit 0: the split is categorical (`kCategoricalMask`, `tree.h`).
pub(super) const CATEGORICAL_MASK: i8 = 1;
/// `decision_type` bit 1: missing values go left (`kDefaultLeftMask`, `tree.h`).
pub(super) const DEFAULT_LEFT_MASK: i8 = 2;

/// How a numerical split treats missing values: bits 2-3 of `decision_type`
/// (`Tree::GetMissingType`, `tree.h`; `MissingType` in `bin.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum MissingType {
    /// NaN is read as 0.0; zero is an ordinary value.
    None,
    /// NaN is read as 0.0; zero takes the default direction.
    Zero,
    /// NaN takes the default direction; zero is an ordinary value.
    NaN,
}

/// One tree as written in the file, indices checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TextTree {
    /// Leaf outputs, `num_leaves` of them.
    pub leaf_value: Vec<f64>,
    /// Internal nodes, `num_leaves - 1` of them; node 0 is the root.
    pub nodes: Vec<TextNode>,
    /// Categorical bitsets: `cat_threshold[cat_boundaries[i]..cat_boundaries[i + 1]]`.
    pub cat_boundaries: Vec<usize>,
    /// The words of every categorical bitset of the tree.
    pub cat_threshold: Vec<u32>,
}

/// One internal node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TextNode {
    /// Column of the input row the node reads.
    pub feature: usize,
    /// Numerical threshold, or for a categorical node the index of its bitset.
    pub threshold: f64,
    /// The node's `decision_type` bits.
    pub decision_type: i8,
    /// Child taken when the decision is "left": `>= 0` an internal node, `< 0` leaf `!child`.
    pub left: i32,
    /// Child taken otherwise.
    pub right: i32,
}

impl TextNode {
    pub(super) fn is_categorical(&self) -> bool {
        self.decision_type & CATEGORICAL_MASK != 0
    }

    pub(super) fn default_left(&self) -> bool {
        self.decision_type & DEFAULT_LEFT_MASK != 0
    }

    pub(super) fn missing_type(&self) -> Result<MissingType, ModelTextError> {
        match (self.decision_type >> 2) & 3 {
            0 => Ok(MissingType::None),
            1 => Ok(MissingType::Zero),
            2 => Ok(MissingType::NaN),
            other => Err(Corrupt(format!("decision_type has missing type {other}"))),
        }
    }
}

/// The whole model file: header and trees.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TextModel {
    /// `feature_names=`, one per input column.
    pub feature_names: Vec<String>,
    /// `objective=` as written, e.g. `poisson` or `binary sigmoid:1`; absent for raw scores.
    pub objective: Option<String>,
    /// The `average_output` flag (random forests).
    pub average_output: bool,
    /// The trees in file order.
    pub trees: Vec<TextTree>,
}

/// Parses `text`; see the module comment for the rules. The whole text at once through
/// [`TextStream`].
#[cfg(test)]
pub(super) fn parse(text: &str) -> Result<TextModel, ModelTextError> {
    let mut stream = TextStream::default();
    stream.push(text.as_bytes());
    stream.finish()
}

/// Bytes of whole trees gathered before they are read, in parallel: about 600 trees of the
/// service's 3000-tree model as published (5.2 MB; 330 with LightGBM's training statistics
/// left in, 9.4 MB). Small enough that a text arriving over the network is
/// read while the rest is still on its way and is never held whole; large enough that waking
/// the thread pool is rare (256 KiB batches cost ~10 ms more of a cold start on two busy
/// cores).
pub(super) const BATCH_BYTES: usize = 1 << 20;

/// Model text read as it arrives, chunk by chunk: [`TextStream::push`] each chunk, then
/// [`TextStream::finish`].
///
/// The header is read line by line. When it declares `tree_sizes` (LightGBM always writes it)
/// the trees are cut out of the text at those byte offsets, as `GBDT::LoadModelFromString`
/// does, and read in parallel batches as soon as they are whole; the bytes of a read tree are
/// dropped, so a 9 MB model never sits in memory beside the trees made of it. Without
/// `tree_sizes` the text is kept whole and its trees are found one after the other by their
/// blank-line separators. Either way each tree must start with its own `Tree=<index>` line
/// and the trees must end exactly at the `end of trees` line; what follows it (importances,
/// parameters) is only checked to be UTF-8.
///
/// Errors do not depend on how the text is chunked: a structural error (header, sizes,
/// labels, the end line) wins over an error inside a tree, and among trees the first in file
/// order is reported, with its index. After an error further chunks are ignored, so a caller
/// may keep feeding the rest (to hash it, say) and ask [`TextStream::finish`] at the end.
#[derive(Debug, Default)]
pub(super) struct TextStream {
    /// Bytes received and not yet consumed.
    pending: Vec<u8>,
    /// Where the next unread line or tree starts in `pending`.
    cursor: usize,
    /// The final line, which has no `\n`, has been handed out (see [`Lines`]).
    last_line_taken: bool,
    stage: Stage,
    /// Bodies of trees cut out but not read yet, as ranges of `pending`.
    sliced: Vec<std::ops::Range<usize>>,
    sliced_bytes: usize,
    trees: Vec<TextTree>,
    /// The first error inside a tree; the trees after it are cut but not read.
    tree_error: Option<ModelTextError>,
    /// A structural error: nothing more is read.
    error: Option<ModelTextError>,
}

#[derive(Debug)]
enum Stage {
    /// Reading the header; `first` until the `tree` line has been seen.
    Header { header: Header, first: bool },
    /// Cutting trees at the offsets `tree_sizes` gives; `next` is the index of the next tree,
    /// `total` the bytes of the trees cut so far.
    Sized {
        header: FinishedHeader,
        sizes: Vec<usize>,
        next: usize,
        total: usize,
    },
    /// All sized trees cut: the next line must be `end of trees`.
    EndLine {
        header: FinishedHeader,
        total: usize,
    },
    /// No `tree_sizes`: the whole text is kept; the trees start at `trees_start`.
    Whole {
        header: FinishedHeader,
        trees_start: usize,
    },
    /// After `end of trees`: only checked to be UTF-8.
    Tail { header: FinishedHeader },
}

impl Default for Stage {
    fn default() -> Self {
        Self::Header {
            header: Header::default(),
            first: true,
        }
    }
}

impl TextStream {
    /// Takes the next chunk of the text.
    pub(super) fn push(&mut self, chunk: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.pending.extend_from_slice(chunk);
        if let Err(error) = self.advance(false) {
            self.fail(error);
        }
    }

    /// The model, once the whole text has been pushed.
    pub(super) fn finish(mut self) -> Result<TextModel, ModelTextError> {
        if self.error.is_none()
            && let Err(error) = self.advance(true)
        {
            self.fail(error);
        }
        if let Some(error) = self.error.or(self.tree_error) {
            return Err(error);
        }
        let header = match self.stage {
            Stage::Tail { header } => header,
            Stage::Whole {
                header,
                trees_start,
            } => {
                let text = std::str::from_utf8(&self.pending).map_err(not_utf8)?;
                let mut lines = Lines {
                    text,
                    at: trees_start,
                };
                let first = lines.next().map_or("", |(_, line)| line);
                let bodies = split_trees(first, lines)?;
                self.trees = read_trees(&bodies, 0, header.num_features)
                    .into_iter()
                    .collect::<Result<_, _>>()?;
                header
            }
            // `advance(true)` leaves no other stage without an error.
            Stage::Header { .. } | Stage::Sized { .. } | Stage::EndLine { .. } => {
                return Err(Corrupt("the model text is truncated".to_owned()));
            }
        };
        if self.trees.is_empty() {
            return Err(Corrupt("the model has no trees".to_owned()));
        }
        Ok(TextModel {
            feature_names: header.feature_names,
            objective: header.objective,
            average_output: header.average_output,
            trees: self.trees,
        })
    }

    /// Bytes of text the stream holds now.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.pending.len()
    }

    fn fail(&mut self, error: ModelTextError) {
        self.error = Some(error);
        self.pending = Vec::new();
        self.sliced.clear();
    }

    /// The next line at the cursor, like [`Lines`]: cut at `\n` with a `\r` before it
    /// dropped; at the end of the text, the rest once (possibly empty). `None` while the line
    /// is not whole yet.
    fn next_line(&mut self, at_end: bool) -> Option<(usize, std::ops::Range<usize>)> {
        let start = self.cursor;
        let rest = self.pending.get(start..)?;
        let end = match memchr::memchr(b'\n', rest) {
            Some(n) => {
                self.cursor += n + 1;
                start + n
            }
            None if at_end && !self.last_line_taken => {
                self.last_line_taken = true;
                self.cursor = self.pending.len();
                self.pending.len()
            }
            None => return None,
        };
        let end = if self.pending.get(end.wrapping_sub(1)) == Some(&b'\r') && end > start {
            end - 1
        } else {
            end
        };
        Some((start, start..end))
    }

    fn line_text(&self, range: std::ops::Range<usize>) -> Result<&str, ModelTextError> {
        std::str::from_utf8(self.pending.get(range).unwrap_or_default()).map_err(not_utf8)
    }

    /// Consumes what `pending` allows; `at_end`: nothing more will come.
    fn advance(&mut self, at_end: bool) -> Result<(), ModelTextError> {
        loop {
            match std::mem::take(&mut self.stage) {
                Stage::Header { mut header, first } => {
                    let Some((line_start, range)) = self.next_line(at_end) else {
                        self.stage = Stage::Header { header, first };
                        if at_end {
                            return Err(Corrupt(
                                "the model text is truncated: it has no trees and no `end of trees`"
                                    .to_owned(),
                            ));
                        }
                        return Ok(());
                    };
                    let line = self.line_text(range)?;
                    if first {
                        if line != "tree" {
                            return Err(Corrupt(
                                "the text does not start with a `tree` line".to_owned(),
                            ));
                        }
                        self.stage = Stage::Header {
                            header,
                            first: false,
                        };
                    } else if line.starts_with("Tree=") || line == "end of trees" {
                        let mut header = header.finish()?;
                        self.cursor = line_start;
                        self.last_line_taken = false;
                        self.stage = match header.tree_sizes.take() {
                            Some(sizes) => {
                                if sizes.len() > MAX_TREES {
                                    return Err(Unsupported(format!(
                                        "more than {MAX_TREES} trees"
                                    )));
                                }
                                self.pending.drain(..line_start);
                                self.cursor = 0;
                                Stage::Sized {
                                    header,
                                    sizes,
                                    next: 0,
                                    total: 0,
                                }
                            }
                            None => Stage::Whole {
                                header,
                                trees_start: line_start,
                            },
                        };
                    } else {
                        header.read(line)?;
                        self.stage = Stage::Header { header, first };
                    }
                }
                Stage::Sized {
                    header,
                    sizes,
                    mut next,
                    mut total,
                } => {
                    while let Some(&size) = sizes.get(next) {
                        let available = self.pending.len() - self.cursor;
                        if available < size {
                            if at_end {
                                return Err(sizes_mismatch(format!(
                                    "tree {next} ends outside the text"
                                )));
                            }
                            break;
                        }
                        let tree = self
                            .pending
                            .get(self.cursor..self.cursor + size)
                            .unwrap_or_default();
                        let (label, body) = match memchr::memchr(b'\n', tree) {
                            Some(n) => (&tree[..n], self.cursor + n + 1..self.cursor + size),
                            None => (tree, self.cursor + size..self.cursor + size),
                        };
                        let label = label.strip_suffix(b"\r").unwrap_or(label);
                        if label.strip_prefix(b"Tree=") != Some(next.to_string().as_bytes()) {
                            return Err(sizes_mismatch(format!(
                                "tree {next} starts at {:?}",
                                String::from_utf8_lossy(label)
                            )));
                        }
                        self.sliced_bytes += body.len();
                        self.sliced.push(body);
                        self.cursor += size;
                        total += size;
                        next += 1;
                    }
                    // Everything cut from this chunk is read at once: a text pushed whole (as
                    // `Booster::from_model_text` does) is read in one parallel pass, a text
                    // arriving in small chunks about every `BATCH_BYTES`.
                    let done = next == sizes.len();
                    if done || at_end || self.sliced_bytes >= BATCH_BYTES {
                        self.read_sliced(header.num_features);
                    }
                    if !done {
                        self.stage = Stage::Sized {
                            header,
                            sizes,
                            next,
                            total,
                        };
                        return Ok(());
                    }
                    self.stage = Stage::EndLine { header, total };
                }
                Stage::EndLine { header, total } => {
                    let Some((_, range)) = self.next_line(at_end) else {
                        self.stage = Stage::EndLine { header, total };
                        return Ok(());
                    };
                    let line = self.pending.get(range).unwrap_or_default();
                    if line != b"end of trees" {
                        return Err(sizes_mismatch(format!(
                            "tree_sizes add up to {total} bytes, followed by {:?} instead of \
                             `end of trees`",
                            String::from_utf8_lossy(line)
                                .chars()
                                .take(40)
                                .collect::<String>()
                        )));
                    }
                    self.stage = Stage::Tail { header };
                }
                Stage::Tail { header } => {
                    self.stage = Stage::Tail { header };
                    let rest = self.pending.get(self.cursor..).unwrap_or_default();
                    let kept = match std::str::from_utf8(rest) {
                        Ok(_) => rest.len(),
                        // A character cut between two chunks: keep its first bytes.
                        Err(e) if e.error_len().is_none() && !at_end => e.valid_up_to(),
                        Err(e) => return Err(not_utf8(e)),
                    };
                    self.cursor += kept;
                    self.pending.drain(..self.cursor);
                    self.cursor = 0;
                    return Ok(());
                }
                whole @ Stage::Whole { .. } => {
                    // Read by `finish`, once the whole text is here.
                    self.stage = whole;
                    return Ok(());
                }
            }
        }
    }

    /// Reads the trees cut so far (unless one already failed) and drops their bytes.
    fn read_sliced(&mut self, num_features: usize) {
        if self.tree_error.is_none() && !self.sliced.is_empty() {
            let bodies = self
                .sliced
                .iter()
                .map(|range| {
                    std::str::from_utf8(self.pending.get(range.clone()).unwrap_or_default())
                        .map_err(not_utf8)
                })
                .collect::<Vec<_>>();
            let first = self.trees.len();
            let trees = bodies
                .into_par_iter()
                .enumerate()
                .map_init(ThresholdCache::default, |cache, (i, body)| {
                    body.and_then(|body| read_tree(body, num_features, cache))
                        .map_err(|e| e.context(&format!("tree {}", first + i)))
                })
                .collect::<Vec<_>>();
            for tree in trees {
                match tree {
                    Ok(tree) => self.trees.push(tree),
                    Err(error) => {
                        self.tree_error = Some(error);
                        break;
                    }
                }
            }
        }
        self.sliced.clear();
        self.sliced_bytes = 0;
        self.pending.drain(..self.cursor);
        self.cursor = 0;
    }
}

fn not_utf8(error: std::str::Utf8Error) -> ModelTextError {
    Corrupt(format!("the model text is not UTF-8: {error}"))
}

/// LightGBM slices the trees at the `tree_sizes` offsets without bounds checks; a file whose
/// sizes do not match its trees is one LightGBM would read differently (or crash on), so it
/// is refused rather than evaluated.
fn sizes_mismatch(what: String) -> ModelTextError {
    Corrupt(format!(
        "the model text is truncated or edited: tree_sizes do not match the trees ({what})"
    ))
}

fn read_tree<'a>(
    body: &'a str,
    num_features: usize,
    cache: &mut ThresholdCache<'a>,
) -> Result<TextTree, ModelTextError> {
    Fields::read_body(body).and_then(|fields| fields.into_tree(num_features, cache))
}

/// The trees of `bodies` (the first being tree `first`), read in parallel.
fn read_trees(
    bodies: &[&str],
    first: usize,
    num_features: usize,
) -> Vec<Result<TextTree, ModelTextError>> {
    bodies
        .par_iter()
        .enumerate()
        .map_init(ThresholdCache::default, |cache, (i, body)| {
            read_tree(body, num_features, cache)
                .map_err(|e| e.context(&format!("tree {}", first + i)))
        })
        .collect()
}

/// The lines of a text with the byte offset each starts at, split at `\n` (a `\r` before it
/// is dropped), like `str::split('\n')` but with a vectorised search: a 3000-tree model is
/// 9 MB of text, most of it in lines the evaluator skips.
struct Lines<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.text.get(self.at..)?;
        let start = self.at;
        let line = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(end) => {
                self.at += end + 1;
                rest.split_at(end).0
            }
            None => {
                // Past the end: the next call answers `None`.
                self.at = self.text.len() + 1;
                rest
            }
        };
        Some((start, line.strip_suffix('\r').unwrap_or(line)))
    }
}

/// The tree texts after each `Tree=<index>` line, each ending at the blank line after it, for
/// a header without `tree_sizes`.
fn split_trees<'a>(first: &'a str, mut lines: Lines<'a>) -> Result<Vec<&'a str>, ModelTextError> {
    let text = lines.text;
    let mut bodies = Vec::new();
    let mut next = Some(first);
    while let Some(line) = next.take() {
        if line == "end of trees" {
            return Ok(bodies);
        }
        let index = line.strip_prefix("Tree=").ok_or_else(|| {
            Corrupt(format!(
                "expected `Tree=` or `end of trees`, found {line:?}"
            ))
        })?;
        if index != bodies.len().to_string() {
            return Err(Corrupt(format!(
                "tree {} is labelled `Tree={index}`",
                bodies.len()
            )));
        }
        if bodies.len() == MAX_TREES {
            return Err(Unsupported(format!("more than {MAX_TREES} trees")));
        }
        let body_start = lines.at.min(text.len());
        let mut body_end = text.len();
        for (at, field) in lines.by_ref() {
            if field.is_empty() {
                body_end = at;
                break;
            }
        }
        bodies.push(text.get(body_start..body_end).unwrap_or_default());
        next = lines
            .by_ref()
            .map(|(_, line)| line)
            .find(|line| !line.is_empty());
    }
    Err(Corrupt(
        "the model text is truncated: `end of trees` is missing".to_owned(),
    ))
}

#[derive(Debug, Default)]
struct Header {
    version: Option<String>,
    num_class: Option<i64>,
    num_tree_per_iteration: Option<i64>,
    max_feature_idx: Option<i64>,
    feature_names: Option<Vec<String>>,
    objective: Option<String>,
    average_output: bool,
    tree_sizes: Option<Vec<usize>>,
}

#[derive(Debug)]
struct FinishedHeader {
    num_features: usize,
    feature_names: Vec<String>,
    objective: Option<String>,
    average_output: bool,
    tree_sizes: Option<Vec<usize>>,
}

impl Header {
    fn read(&mut self, line: &str) -> Result<(), ModelTextError> {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        match key {
            "version" => self.version = Some(value.to_owned()),
            "num_class" => self.num_class = Some(integer(value, "num_class")?),
            "num_tree_per_iteration" => {
                self.num_tree_per_iteration = Some(integer(value, "num_tree_per_iteration")?);
            }
            "max_feature_idx" => self.max_feature_idx = Some(integer(value, "max_feature_idx")?),
            "feature_names" => {
                self.feature_names = Some(value.split(' ').map(str::to_owned).collect());
            }
            "objective" => self.objective = Some(value.to_owned()),
            "average_output" => self.average_output = true,
            "tree_sizes" => {
                let sizes = value
                    .split(' ')
                    .map(|s| {
                        s.parse::<usize>()
                            .map_err(|_| Corrupt(format!("tree_sizes has a non-number {s:?}")))
                    })
                    .collect::<Result<_, _>>()?;
                self.tree_sizes = Some(sizes);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<FinishedHeader, ModelTextError> {
        match self.version.as_deref() {
            Some("v4") => {}
            Some(other) => {
                return Err(Unsupported(format!(
                    "model format {other:?}; this evaluator reads LightGBM's v4 text format"
                )));
            }
            None => return Err(Corrupt("the header has no `version=` line".to_owned())),
        }
        let num_class = self
            .num_class
            .ok_or_else(|| Corrupt("the header has no `num_class=` line".to_owned()))?;
        let per_iteration = self.num_tree_per_iteration.unwrap_or(num_class);
        if num_class != 1 || per_iteration != 1 {
            return Err(Unsupported(format!(
                "the model predicts {num_class} classes with {per_iteration} trees per iteration; \
                 only single-output models are evaluated exactly"
            )));
        }
        let max_feature_idx = self
            .max_feature_idx
            .ok_or_else(|| Corrupt("the header has no `max_feature_idx=` line".to_owned()))?;
        let num_features = usize::try_from(max_feature_idx)
            .ok()
            .and_then(|n| n.checked_add(1))
            .filter(|n| *n <= MAX_FEATURES)
            .ok_or_else(|| Corrupt(format!("max_feature_idx {max_feature_idx} is out of range")))?;
        let feature_names = self
            .feature_names
            .ok_or_else(|| Corrupt("the header has no `feature_names=` line".to_owned()))?;
        if feature_names.len() != num_features {
            return Err(Corrupt(format!(
                "feature_names lists {} names for {num_features} features",
                feature_names.len()
            )));
        }
        Ok(FinishedHeader {
            num_features,
            feature_names,
            objective: self.objective,
            average_output: self.average_output,
            tree_sizes: self.tree_sizes,
        })
    }
}

/// The `key=value` lines of one tree.
#[derive(Debug, Default)]
struct Fields<'a> {
    num_leaves: Option<&'a str>,
    num_cat: Option<&'a str>,
    split_feature: Option<&'a str>,
    threshold: Option<&'a str>,
    decision_type: Option<&'a str>,
    left_child: Option<&'a str>,
    right_child: Option<&'a str>,
    leaf_value: Option<&'a str>,
    cat_boundaries: Option<&'a str>,
    cat_threshold: Option<&'a str>,
    is_linear: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// The fields of one tree's text: `key=value` lines, then nothing but blank lines.
    fn read_body(body: &'a str) -> Result<Self, ModelTextError> {
        let mut fields = Fields::default();
        let mut lines = Lines { text: body, at: 0 };
        for (_, line) in lines.by_ref() {
            if line.is_empty() {
                break;
            }
            fields.read(line)?;
        }
        if let Some((_, line)) = lines.find(|(_, line)| !line.is_empty()) {
            return Err(Corrupt(format!(
                "the tree goes on after a blank line: {:?} (tree_sizes do not match the trees)",
                line.chars().take(40).collect::<String>()
            )));
        }
        Ok(fields)
    }

    fn read(&mut self, line: &'a str) -> Result<(), ModelTextError> {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| Corrupt(format!("expected key=value in a tree, found {line:?}")))?;
        let slot = match key {
            "num_leaves" => &mut self.num_leaves,
            "num_cat" => &mut self.num_cat,
            "split_feature" => &mut self.split_feature,
            "threshold" => &mut self.threshold,
            "decision_type" => &mut self.decision_type,
            "left_child" => &mut self.left_child,
            "right_child" => &mut self.right_child,
            "leaf_value" => &mut self.leaf_value,
            "cat_boundaries" => &mut self.cat_boundaries,
            "cat_threshold" => &mut self.cat_threshold,
            "is_linear" => &mut self.is_linear,
            // split_gain, leaf_weight, leaf_count, internal_*, shrinkage: not used to predict.
            _ => return Ok(()),
        };
        *slot = Some(value);
        Ok(())
    }

    fn into_tree(
        self,
        num_features: usize,
        cache: &mut ThresholdCache<'a>,
    ) -> Result<TextTree, ModelTextError> {
        let required = |value: Option<&'a str>, name: &str| {
            value.ok_or_else(|| Corrupt(format!("the `{name}` field is missing")))
        };
        let num_leaves = integer(required(self.num_leaves, "num_leaves")?, "num_leaves")?;
        let num_leaves = usize::try_from(num_leaves)
            .ok()
            .filter(|n| (1..=MAX_LEAVES).contains(n))
            .ok_or_else(|| Corrupt(format!("num_leaves {num_leaves} is out of range")))?;
        let num_cat = integer(required(self.num_cat, "num_cat")?, "num_cat")?;
        let num_cat = usize::try_from(num_cat)
            .ok()
            .filter(|n| *n < num_leaves.max(1))
            .ok_or_else(|| Corrupt(format!("num_cat {num_cat} is out of range")))?;
        let is_linear = self
            .is_linear
            .map(|v| integer(v, "is_linear"))
            .transpose()?;
        if is_linear.is_some_and(|v| v != 0) {
            return Err(Unsupported(
                "linear trees (`linear_tree=true`) are not evaluated exactly by this evaluator"
                    .to_owned(),
            ));
        }
        let leaf_value = floats(
            required(self.leaf_value, "leaf_value")?,
            num_leaves,
            "leaf_value",
        )?;
        if num_leaves == 1 {
            return Ok(TextTree {
                leaf_value,
                nodes: Vec::new(),
                cat_boundaries: Vec::new(),
                cat_threshold: Vec::new(),
            });
        }
        let internal = num_leaves - 1;
        let node_integers = |value, name| integers(required(value, name)?, internal, name);
        let features = node_integers(self.split_feature, "split_feature")?;
        let thresholds = numbers(
            required(self.threshold, "threshold")?,
            internal,
            "threshold",
            "has a non-number",
            |item| cache.parse(item),
        )?;
        // A missing `decision_type` means all zeros (numerical, missing type None).
        let decision_types = match self.decision_type {
            Some(value) => integers(value, internal, "decision_type")?,
            None => vec![0; internal],
        };
        let lefts = node_integers(self.left_child, "left_child")?;
        let rights = node_integers(self.right_child, "right_child")?;
        let mut nodes = Vec::with_capacity(internal);
        for i in 0..internal {
            let feature = usize::try_from(features[i])
                .ok()
                .filter(|f| *f < num_features)
                .ok_or_else(|| {
                    Corrupt(format!(
                        "node {i} splits on feature {} of {num_features}",
                        features[i]
                    ))
                })?;
            let decision_type = i8::try_from(decision_types[i]).map_err(|_| {
                Corrupt(format!("node {i} has decision_type {}", decision_types[i]))
            })?;
            let child = |c: i64| -> Result<i32, ModelTextError> {
                let c = i32::try_from(c).map_err(|_| Corrupt(format!("node {i} has child {c}")))?;
                let in_range = if c >= 0 {
                    usize::try_from(c).is_ok_and(|c| c < internal)
                } else {
                    usize::try_from(!c).is_ok_and(|leaf| leaf < num_leaves)
                };
                if in_range {
                    Ok(c)
                } else {
                    Err(Corrupt(format!(
                        "node {i} points at child {c}, outside the tree"
                    )))
                }
            };
            let node = TextNode {
                feature,
                threshold: thresholds[i],
                decision_type,
                left: child(lefts[i])?,
                right: child(rights[i])?,
            };
            node.missing_type()
                .map_err(|e| e.context(&format!("node {i}")))?;
            if !node.is_categorical() && node.threshold.is_nan() {
                // LightGBM never writes one; the evaluator's sorted runs assume none.
                return Err(Unsupported(format!("node {i} has a NaN threshold")));
            }
            nodes.push(node);
        }
        check_is_a_tree(&nodes, num_leaves)?;
        let (cat_boundaries, cat_threshold) = if num_cat > 0 {
            let boundaries = integers(
                required(self.cat_boundaries, "cat_boundaries")?,
                num_cat + 1,
                "cat_boundaries",
            )?;
            let boundaries: Vec<usize> = boundaries
                .into_iter()
                .map(|b| usize::try_from(b).map_err(|_| Corrupt(format!("cat_boundaries has {b}"))))
                .collect::<Result<_, _>>()?;
            if boundaries.first() != Some(&0) || boundaries.windows(2).any(|w| w[0] > w[1]) {
                return Err(Corrupt("cat_boundaries is not ascending from 0".to_owned()));
            }
            let words = boundaries.last().copied().unwrap_or(0);
            if words > MAX_CAT_WORDS {
                return Err(Unsupported(format!("categorical bitsets of {words} words")));
            }
            let threshold = integers(
                required(self.cat_threshold, "cat_threshold")?,
                words,
                "cat_threshold",
            )?
            .into_iter()
            .map(|w| u32::try_from(w).map_err(|_| Corrupt(format!("cat_threshold has {w}"))))
            .collect::<Result<_, _>>()?;
            (boundaries, threshold)
        } else {
            (Vec::new(), Vec::new())
        };
        for (i, node) in nodes.iter().enumerate() {
            if node.is_categorical() {
                let index = categorical_index(node.threshold);
                if index.is_none_or(|index| index + 1 >= cat_boundaries.len()) {
                    return Err(Corrupt(format!(
                        "categorical node {i} names bitset {} of {num_cat}",
                        node.threshold
                    )));
                }
            }
        }
        Ok(TextTree {
            leaf_value,
            nodes,
            cat_boundaries,
            cat_threshold,
        })
    }
}

/// The bitset index of a categorical node: LightGBM's `static_cast<int>(threshold_[node])`
/// (`Tree::CategoricalDecision`), when it is a valid index.
pub(super) fn categorical_index(threshold: f64) -> Option<usize> {
    if threshold.is_finite() && threshold >= 0.0 && threshold < f64::from(i32::MAX) {
        // Truncation toward zero, as the C++ cast does for in-range values.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(threshold as usize)
    } else {
        None
    }
}

/// Every node and leaf is reached exactly once from the root: no cycles, no sharing, nothing
/// unreachable. This is what lets the walk end and lets the layout step pad the tree.
fn check_is_a_tree(nodes: &[TextNode], num_leaves: usize) -> Result<(), ModelTextError> {
    let mut seen_node = vec![false; nodes.len()];
    let mut seen_leaf = vec![false; num_leaves];
    let mut stack = vec![0i32];
    while let Some(child) = stack.pop() {
        if child >= 0 {
            let index = usize::try_from(child).unwrap_or(usize::MAX);
            let (Some(seen), Some(node)) = (seen_node.get_mut(index), nodes.get(index)) else {
                return Err(Corrupt(format!("node {child} is outside the tree")));
            };
            if std::mem::replace(seen, true) {
                return Err(Corrupt(format!("node {child} is reached twice")));
            }
            stack.push(node.left);
            stack.push(node.right);
        } else {
            let index = usize::try_from(!child).unwrap_or(usize::MAX);
            let Some(seen) = seen_leaf.get_mut(index) else {
                return Err(Corrupt(format!("leaf {} is outside the tree", !child)));
            };
            if std::mem::replace(seen, true) {
                return Err(Corrupt(format!("leaf {} is reached twice", !child)));
            }
        }
    }
    if seen_node.iter().chain(&seen_leaf).any(|seen| !seen) {
        return Err(Corrupt(
            "some nodes or leaves are unreachable from the root".to_owned(),
        ));
    }
    Ok(())
}

fn integer(value: &str, name: &str) -> Result<i64, ModelTextError> {
    whole_number(value.trim())
        .ok_or_else(|| Corrupt(format!("`{name}` is not a whole number: {value:?}")))
}

/// The values of an array field: LightGBM writes them separated by single spaces. This is
/// `value.split(' ')` without the empty items.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split_ascii_whitespace()
}

/// Thresholds already parsed, by their text. A model's trees split its few features at the
/// same few dozen thresholds again and again (51 distinct texts among the 93,000 thresholds
/// of the service's 3000-tree model), and a correctly rounded parse of a 17-digit number
/// costs far more than finding it here. Direct-mapped: a collision only costs a parse, and
/// equal texts parse to equal bits, so a hit can never change a threshold.
struct ThresholdCache<'a> {
    slots: [(&'a str, f64); 64],
}

impl Default for ThresholdCache<'_> {
    fn default() -> Self {
        Self {
            slots: [("", 0.0); 64],
        }
    }
}

impl<'a> ThresholdCache<'a> {
    fn parse(&mut self, item: &'a str) -> Option<f64> {
        let bytes = item.as_bytes();
        let mix = |i: usize| usize::from(bytes.get(i).copied().unwrap_or(0));
        let slot = (bytes.len()
            ^ (mix(0) << 1)
            ^ (mix(bytes.len().wrapping_sub(1)) << 2)
            ^ mix(bytes.len().wrapping_sub(2)))
            % 64;
        let entry = self.slots.get_mut(slot)?;
        if entry.0 == item && !item.is_empty() {
            return Some(entry.1);
        }
        let value: f64 = item.parse().ok()?;
        *entry = (item, value);
        Some(value)
    }
}

fn integers(value: &str, n: usize, name: &str) -> Result<Vec<i64>, ModelTextError> {
    match plain_integers(value, n) {
        Some(values) => Ok(values),
        None => numbers(value, n, name, "is not a whole number", whole_number),
    }
}

/// [`integers`] for the text LightGBM writes, in one pass over the bytes: exactly `n` items,
/// each an optional `-` and 1 to 18 digits, one space between two, none at either end. The
/// child, feature and decision arrays are a third of a model's numbers, nearly all of one or
/// two digits, and splitting them into items first cost more than reading them. Anything
/// else (a `+`, a longer number, other spacing, a wrong count, an error) answers `None`, and
/// [`numbers`] then reads the text as it always did, with its messages: where this answers,
/// it answers exactly what that would.
fn plain_integers(value: &str, n: usize) -> Option<Vec<i64>> {
    let mut values = Vec::with_capacity(n);
    let mut bytes = value.as_bytes().iter();
    loop {
        let mut next = bytes.next();
        let negative = next == Some(&b'-');
        if negative {
            next = bytes.next();
        }
        let (mut value, mut digits) = (0i64, 0u32);
        while let Some(&byte) = next.filter(|b| b.is_ascii_digit()) {
            if digits == 18 {
                // More could overflow: left to `numbers`.
                return None;
            }
            value = value * 10 + i64::from(byte - b'0');
            digits += 1;
            next = bytes.next();
        }
        if digits == 0 || values.len() == n {
            return None;
        }
        values.push(if negative { -value } else { value });
        match next {
            None => return (values.len() == n).then_some(values),
            Some(b' ') => {}
            Some(_) => return None,
        }
    }
}

// LightGBM reads these with `StringToArray<double>` (fast_double_parser, falling back to
// strtod): correctly rounded, like Rust's `f64::from_str`.
fn floats(value: &str, n: usize, name: &str) -> Result<Vec<f64>, ModelTextError> {
    numbers(value, n, name, "has a non-number", |item| item.parse().ok())
}

/// A decimal integer with an optional sign, as `i64::from_str` reads it; written out because
/// the trees' child, feature and decision arrays are a third of a model's numbers and nearly
/// all of them are one or two digits.
fn whole_number(item: &str) -> Option<i64> {
    let (negative, digits) = match item.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        digits => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for byte in digits {
        let digit = i64::from(byte.wrapping_sub(b'0'));
        if digit > 9 {
            return None;
        }
        // Accumulating downwards reaches i64::MIN, which upwards would overflow.
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Exactly `n` numbers of an array field, into a vector allocated once.
fn numbers<'a, T>(
    value: &'a str,
    n: usize,
    name: &str,
    complaint: &str,
    mut parse: impl FnMut(&'a str) -> Option<T>,
) -> Result<Vec<T>, ModelTextError> {
    let mut values = Vec::with_capacity(n);
    let mut items = items(value);
    for item in items.by_ref() {
        if values.len() == n {
            return Err(Corrupt(format!(
                "`{name}` has {} values, expected {n}",
                n + 1 + items.count()
            )));
        }
        let parsed =
            parse(item).ok_or_else(|| Corrupt(format!("`{name}` {complaint}: {item:?}")))?;
        values.push(parsed);
    }
    if values.len() == n {
        Ok(values)
    } else {
        Err(Corrupt(format!(
            "`{name}` has {} values, expected {n}",
            values.len()
        )))
    }
}

#[cfg(test)]
mod number_tests {
    use proptest::prelude::*;

    use super::{integers, numbers, whole_number};

    #[test]
    fn whole_numbers_read_as_the_standard_library_reads_them() {
        for item in [
            "0",
            "-0",
            "+0",
            "7",
            "-1",
            "+12",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "",
            "-",
            "+",
            "1.0",
            "1e3",
            " 1",
            "0x10",
            "--1",
            "12a",
            "\u{661}",
        ] {
            assert_eq!(whole_number(item), item.parse::<i64>().ok(), "{item:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_reads_as_the_standard_library_reads_it(item in "[-+]?[0-9]{0,21}|\\PC{0,6}") {
            prop_assert_eq!(whole_number(&item), item.parse::<i64>().ok());
        }

        #[test]
        fn every_i64_round_trips(value: i64) {
            prop_assert_eq!(whole_number(&value.to_string()), Some(value));
        }

        /// The one-pass reader of LightGBM's integer arrays answers what the item by item
        /// reader answers, values or error, on arrays as written and on anything near them.
        #[test]
        fn integer_arrays_read_as_item_by_item(
            value in "(-?[0-9]{1,3}( -?[0-9]{1,3}){0,6})|(-?[0-9]{17,20})|[-+0-9 \t.x]{0,24}",
            n in 0usize..9,
        ) {
            prop_assert_eq!(
                integers(&value, n, "f"),
                numbers(&value, n, "f", "is not a whole number", whole_number)
            );
        }
    }
}
