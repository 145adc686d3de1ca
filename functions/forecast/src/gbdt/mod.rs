//! A native evaluator for LightGBM boosters, bit-identical to LightGBM 4.7's own predictor.
//!
//! [`Booster::from_model_text`] reads `model.txt` (see [`text`] for the parsing rules) and
//! compiles it once into a layout built for walking:
//!
//! - every distinct split condition of the model — a (feature, threshold, missing type,
//!   default direction) tuple, or a categorical bitset — gets a number; for each row the
//!   evaluator first computes one byte per condition (1 = go right);
//! - a tree of depth `d` (up to [`MAX_COMPLETE_DEPTH`]) is padded to a complete binary tree
//!   stored level by level, so its walk is `d` steps of `i = 2i + 1 + byte[cond[i]]` with no
//!   data-dependent branch; a leaf above the bottom level is copied into every padded leaf
//!   below it and its padded nodes read condition 0, which is always "left". Deeper trees are
//!   walked node by node through the same condition bytes;
//! - rows are evaluated in blocks, tree by tree, so the walks of different rows overlap in
//!   the CPU while each row's sum still runs over the trees in file order from `+0.0`, which
//!   is what makes the result bit-identical to LightGBM's `GBDT::PredictRaw`.
//!
//! Large batches are split into chunks evaluated on rayon's thread pool; a row's prediction
//! never depends on which chunk, block or thread it lands in. The booster is immutable after
//! load, so it is `Send + Sync` without a lock.
//!
//! Every model is also checked against the rows LightGBM itself scored at training time
//! ([`Booster::verify`] with the manifest's check rows), so a rule this module got wrong can
//! never be served silently.

mod objective;
mod statistics;
mod text;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;

pub use objective::OutputTransform;
pub use statistics::{TRAINING_STATISTICS, without_training_statistics};
use text::{MissingType, TextModel, TextNode, TextTree};

/// LightGBM's `kZeroThreshold` (`meta.h`): `1e-35f`, a float widened to double.
pub const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// Deepest tree stored as a padded complete tree; deeper ones are walked node by node.
pub const MAX_COMPLETE_DEPTH: u32 = 10;

/// Rows evaluated together, tree by tree.
const BLOCK_ROWS: usize = 32;

/// Distinct thresholds of one feature kept sorted while they are read; beyond this many they
/// are sorted once at the end instead.
const SORTED_INSERT_LIMIT: usize = 1024;

/// Batches smaller than this are evaluated on the calling thread.
const PARALLEL_MIN_ROWS: usize = 512;

/// Why a model text cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelTextError {
    /// The text is not a valid LightGBM model (truncated, edited, inconsistent).
    #[error("{0}")]
    Corrupt(String),
    /// A valid model this evaluator cannot reproduce exactly (multiclass, linear trees, ...).
    #[error("{0}")]
    Unsupported(String),
}

impl ModelTextError {
    fn context(self, at: &str) -> Self {
        match self {
            Self::Corrupt(m) => Self::Corrupt(format!("{at}: {m}")),
            Self::Unsupported(m) => Self::Unsupported(format!("{at}: {m}")),
        }
    }
}

/// Rows whose length is not a multiple of the model's feature count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{values} values do not form rows of {features} features")]
pub struct RowShapeError {
    /// Values given.
    pub values: usize,
    /// Features per row.
    pub features: usize,
}

/// A run of numerical conditions on one feature with one missing-value rule, sorted by
/// threshold and numbered `start..start + thresholds.len()`. For a value that is not
/// "missing" under the rule, the conditions it goes right at (`x > t`) are a prefix of the
/// run, so a row fills the run's bytes with one search and two fills.
#[derive(Debug, Clone, PartialEq)]
struct ConditionRun {
    feature: usize,
    missing: MissingType,
    default_left: bool,
    start: usize,
    thresholds: Vec<f64>,
}

/// A categorical condition (`Tree::CategoricalDecision`, `tree.h`): left when the category's
/// bit is set in `cat_words[words.0..words.0 + words.1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CategoricalCondition {
    id: usize,
    feature: usize,
    words: (usize, usize),
}

/// Where one tree of the general layout lives in the booster's flat arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TreeLayout {
    /// `2^depth - 1` conditions at `conds`, level by level, and `2^depth` leaves at `leaves`.
    Complete {
        depth: u32,
        conds: usize,
        leaves: usize,
    },
    /// Nodes at `nodes` in file order, leaves at `leaves`.
    Linked { nodes: usize, leaves: usize },
}

/// An internal node of a deep tree: children as in the file (`< 0` is leaf `!child`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkedNode {
    cond: u32,
    left: i32,
    right: i32,
}

/// Depth of every tree of the compact layout (shallower trees are padded to it).
const COMPACT_DEPTH: u32 = 5;
/// Most conditions the compact layout numbers (its condition ids are bytes).
const COMPACT_CONDITIONS: usize = 256;

/// A tree of depth <= 5 in a model of <= 256 conditions, stored inline: condition ids of the
/// 31 nodes level by level (and one unused) and the 32 leaves. The walk is five steps of
/// `i = 2i + 1 + byte[cond[i]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CompactTree {
    conds: [u8; 32],
    leaves: [f64; 32],
}

/// How the trees are stored.
#[derive(Debug, Clone, PartialEq)]
enum Trees {
    /// Every tree is [`CompactTree`] (depth <= 5, <= 256 conditions): the service's models.
    Compact(Vec<CompactTree>),
    /// Any other model.
    General {
        trees: Vec<TreeLayout>,
        node_conds: Vec<u32>,
        linked: Vec<LinkedNode>,
        leaves: Vec<f64>,
    },
}

/// A LightGBM booster compiled for fast, exact, thread-safe prediction.
#[derive(Debug, Clone)]
pub struct Booster {
    feature_names: Vec<String>,
    transform: OutputTransform,
    average_output: bool,
    /// Condition 0 is "always left", read by the padding of complete trees.
    num_conditions: usize,
    runs: Vec<ConditionRun>,
    categorical: Vec<CategoricalCondition>,
    cat_words: Vec<u32>,
    num_trees: usize,
    trees: Trees,
}

/// A [`Booster`] read from its text while the text arrives, chunk by chunk (the rules are
/// [`Booster::from_model_text`]'s). The model function feeds it `model.txt` as it downloads:
/// the trees are read while the rest is on its way, and the 9 MB of a 3000-tree model are
/// never held whole beside the trees made of them, which is most of the function's peak
/// memory.
#[derive(Debug, Default)]
pub struct BoosterReader {
    stream: text::TextStream,
}

impl BoosterReader {
    /// Takes the next chunk of the text. An error is kept for [`BoosterReader::finish`];
    /// later chunks are then ignored, so a caller may go on feeding (and hashing) the rest.
    pub fn push(&mut self, chunk: &[u8]) {
        self.stream.push(chunk);
    }

    /// The compiled booster, once the whole text has been pushed.
    pub fn finish(self) -> Result<Booster, ModelTextError> {
        let model = self.stream.finish()?;
        let transform = OutputTransform::from_objective(model.objective.as_deref())?;
        Ok(compile(model, transform, true))
    }
}

impl Booster {
    /// Parses and compiles a LightGBM text model.
    pub fn from_model_text(text: &str) -> Result<Self, ModelTextError> {
        let mut reader = BoosterReader::default();
        reader.push(text.as_bytes());
        reader.finish()
    }

    /// Whether the model compiled to the compact layout (every tree of depth <= 5 and at most
    /// 256 distinct conditions, as the service's models are) rather than the general one.
    pub fn is_compact(&self) -> bool {
        matches!(self.trees, Trees::Compact(_))
    }

    /// Number of input columns.
    pub fn num_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Feature names, in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Number of trees.
    pub fn num_trees(&self) -> usize {
        self.num_trees
    }

    /// Predicts row-major `rows`, one prediction per row, in parallel for large batches.
    pub fn predict(&self, rows: &[f64]) -> Result<Vec<f64>, RowShapeError> {
        self.predict_chunked(
            rows,
            self.chunk_rows(rows.len() / self.num_features().max(1)),
        )
    }

    /// [`Booster::predict`] with chunks of `chunk_rows` rows spread over the current rayon
    /// pool. The result is the same for every chunk size and thread count.
    pub fn predict_chunked(
        &self,
        rows: &[f64],
        chunk_rows: usize,
    ) -> Result<Vec<f64>, RowShapeError> {
        let width = self.num_features();
        if !rows.len().is_multiple_of(width) {
            return Err(RowShapeError {
                values: rows.len(),
                features: width,
            });
        }
        let n = rows.len() / width;
        let mut out = vec![0.0; n];
        let chunk_rows = chunk_rows.max(1);
        if n <= chunk_rows {
            self.predict_serial(rows, &mut out);
        } else {
            out.par_chunks_mut(chunk_rows)
                .zip(rows.par_chunks(chunk_rows * width))
                .for_each(|(out, rows)| self.predict_serial(rows, out));
        }
        Ok(out)
    }

    /// Predicts one row of exactly [`Booster::num_features`] values.
    pub fn predict_row(&self, row: &[f64]) -> Result<f64, RowShapeError> {
        if row.len() != self.num_features() {
            return Err(RowShapeError {
                values: row.len(),
                features: self.num_features(),
            });
        }
        let mut out = [0.0];
        self.predict_serial(row, &mut out);
        Ok(out[0])
    }

    fn chunk_rows(&self, n: usize) -> usize {
        if n < PARALLEL_MIN_ROWS {
            return n.max(1);
        }
        // A few chunks per thread keeps the threads busy to the end; each chunk stays large
        // enough that the tree data it streams through is reused by many rows.
        let threads = rayon::current_num_threads().max(1);
        n.div_ceil(threads * 4).max(PARALLEL_MIN_ROWS / 2)
    }

    /// Evaluates `rows` into `out` on this thread, block by block.
    fn predict_serial(&self, rows: &[f64], out: &mut [f64]) {
        let width = self.num_features();
        let mut sums = [0.0f64; BLOCK_ROWS];
        match &self.trees {
            Trees::Compact(trees) => {
                if let [out] = out {
                    // One row (the API's common case): a 256-byte buffer, not a block's 8 KB.
                    let mut bytes = [false; COMPACT_CONDITIONS];
                    self.condition_bytes(rows, &mut bytes);
                    *out = self.finish(sum_compact_row(trees, &bytes));
                    return;
                }
                let mut bytes = [[false; COMPACT_CONDITIONS]; BLOCK_ROWS];
                for (rows, out) in rows
                    .chunks(BLOCK_ROWS * width)
                    .zip(out.chunks_mut(BLOCK_ROWS))
                {
                    let block = out.len();
                    for (row, bytes) in rows.chunks(width).zip(bytes.iter_mut()) {
                        self.condition_bytes(row, bytes);
                    }
                    let sums = &mut sums[..block];
                    sums.fill(0.0);
                    sum_compact(trees, &bytes[..block], sums);
                    for (out, sum) in out.iter_mut().zip(sums.iter()) {
                        *out = self.finish(*sum);
                    }
                }
            }
            Trees::General {
                trees,
                node_conds,
                linked,
                leaves,
            } => {
                let n_cond = self.num_conditions;
                let mut bytes = vec![false; BLOCK_ROWS * n_cond];
                for (rows, out) in rows
                    .chunks(BLOCK_ROWS * width)
                    .zip(out.chunks_mut(BLOCK_ROWS))
                {
                    let block = out.len();
                    for (row, bytes) in rows.chunks(width).zip(bytes.chunks_mut(n_cond)) {
                        self.condition_bytes(row, bytes);
                    }
                    let sums = &mut sums[..block];
                    sums.fill(0.0);
                    let bytes = &bytes[..block * n_cond];
                    for tree in trees {
                        sum_general(*tree, node_conds, linked, leaves, bytes, n_cond, sums);
                    }
                    for (out, sum) in out.iter_mut().zip(sums.iter()) {
                        *out = self.finish(*sum);
                    }
                }
            }
        }
    }

    /// `GBDT::Predict`: average for random forests, then the objective's transform.
    #[inline]
    fn finish(&self, sum: f64) -> f64 {
        let raw = if self.average_output {
            // `output[k] /= num_iteration_for_pred_`: one tree per iteration here.
            sum / self.num_trees as f64
        } else {
            sum
        };
        self.transform.apply(raw)
    }

    /// One byte per condition for `row` (1 = right), after LightGBM's input rules
    /// (`Tree::NumericalDecision`, `Tree::CategoricalDecision`).
    fn condition_bytes(&self, row: &[f64], bytes: &mut [bool]) {
        bytes[0] = false;
        for run in &self.runs {
            let x = input_value(row[run.feature]);
            let out = &mut bytes[run.start..run.start + run.thresholds.len()];
            let missing = match run.missing {
                // NaN reads as 0.0, which is "missing" under the Zero rule.
                MissingType::Zero => x.is_nan() || is_zero(x),
                MissingType::NaN => x.is_nan(),
                MissingType::None => false,
            };
            if missing {
                out.fill(!run.default_left);
                continue;
            }
            let x = if x.is_nan() { 0.0 } else { x };
            // Right exactly when `!(x <= t)`, i.e. `t < x` for a number x: a prefix.
            let right = run.thresholds.partition_point(|t| *t < x);
            out[..right].fill(true);
            out[right..].fill(false);
        }
        for condition in &self.categorical {
            let (start, len) = condition.words;
            bytes[condition.id] = !categorical_goes_left(
                input_value(row[condition.feature]),
                &self.cat_words[start..start + len],
            );
        }
    }
    /// Checks this evaluator against rows LightGBM scored: every prediction, times the row's
    /// baseline when the model has one, must be equal bit for bit. Returns how many rows
    /// were checked.
    pub fn verify(
        &self,
        check_rows: &[CheckRow],
        baseline: Option<&Baseline>,
    ) -> Result<usize, String> {
        if check_rows.is_empty() {
            return Err(
                "the manifest carries no check rows, so this evaluator cannot prove it reproduces \
                 LightGBM on this model; retrain it with this version of `demand train`"
                    .to_owned(),
            );
        }
        // Each row through the single-row path, the rows spread over the thread pool (they
        // are a cold start's last step); the first failing row in manifest order is named.
        let outcomes: Vec<Result<(), String>> = check_rows
            .par_iter()
            .enumerate()
            .map(|(index, check)| {
                let row: Vec<f64> = check.features.iter().map(|v| v.0).collect();
                let got = self
                    .predict_row(&row)
                    .map_err(|e| format!("check row {index}: {e}"))?;
                let got = baseline.map_or(got, |baseline| got * baseline.of(&row));
                if got.to_bits() == check.prediction.0.to_bits() {
                    Ok(())
                } else {
                    Err(format!(
                        "check row {index} {row:?}: LightGBM predicted {:?}, this evaluator {got:?}",
                        check.prediction.0
                    ))
                }
            })
            .collect();
        outcomes
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(check_rows.len()), Err)
    }

    /// Rows that exercise every split of the model: each numerical threshold and its two
    /// neighbouring doubles, every category a bitset names and the next, and for every
    /// feature zeros of both signs, values around LightGBM's zero threshold, a subnormal,
    /// NaN, both infinities, a negative, a fraction and values outside every threshold.
    /// Feature `f` of row `k` is the `k`-th of `f`'s values (cycling), the other columns
    /// start from `base`.
    pub fn probe_rows(&self, base: &[f64]) -> Vec<Vec<f64>> {
        let width = self.num_features();
        let mut per_feature: Vec<Vec<f64>> = vec![Vec::new(); width];
        for run in &self.runs {
            for threshold in &run.thresholds {
                per_feature[run.feature].extend([
                    threshold.next_down(),
                    *threshold,
                    threshold.next_up(),
                    threshold + 0.5,
                ]);
            }
        }
        for condition in &self.categorical {
            let categories = (condition.words.1 * 32).min(256);
            per_feature[condition.feature].extend((0..=categories).map(|c| c as f64));
        }
        for (feature, values) in per_feature.iter_mut().enumerate() {
            let low = values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::min);
            let high = values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            values.extend([
                base.get(feature).copied().unwrap_or(0.0),
                0.0,
                -0.0,
                1e-36,
                -1e-36,
                ZERO_THRESHOLD,
                ZERO_THRESHOLD.next_up(),
                -ZERO_THRESHOLD,
                (-ZERO_THRESHOLD).next_down(),
                f64::MIN_POSITIVE / 4.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -1.0,
                0.5,
                low - 1.0,
                high + 1.0,
            ]);
            values.sort_by(f64::total_cmp);
            values.dedup_by(|a, b| a.to_bits() == b.to_bits());
        }
        let count = per_feature.iter().map(Vec::len).max().unwrap_or(0);
        (0..count)
            .map(|k| {
                (0..width)
                    .map(|f| {
                        let values = &per_feature[f];
                        // Offset by the feature so rows mix low and high values across columns.
                        values[(k + f * 7) % values.len()]
                    })
                    .collect()
            })
            .collect()
    }
}

/// The value LightGBM's predictor sees for an input: `RowFunctionFromDenseMatrix` keeps only
/// values with `|x| > kZeroThreshold` or NaN (`c_api.cpp`); the rest read as 0.0.
#[inline]
fn input_value(x: f64) -> f64 {
    if x.is_nan() || x.abs() > ZERO_THRESHOLD {
        x
    } else {
        0.0
    }
}

/// `Tree::NumericalDecision` (`tree.h`) for one node, literally: the reference the condition
/// runs of [`Booster::condition_bytes`] are tested against.
#[cfg(test)]
fn numerical_goes_left(
    mut x: f64,
    threshold: f64,
    missing: MissingType,
    default_left: bool,
) -> bool {
    if x.is_nan() && missing != MissingType::NaN {
        x = 0.0;
    }
    if (missing == MissingType::Zero && is_zero(x)) || (missing == MissingType::NaN && x.is_nan()) {
        return default_left;
    }
    x <= threshold
}

/// `Tree::CategoricalDecision` (`tree.h`) with `Common::FindInBitset` (`common.h`).
#[inline]
fn categorical_goes_left(x: f64, bitset: &[u32]) -> bool {
    if x.is_nan() {
        return false;
    }
    // `static_cast<int>(fval)`: truncation toward zero. Values beyond int's range are
    // undefined behaviour in C++; x86-64 yields INT_MIN (negative: right) and AArch64
    // saturates to INT_MAX (a bit far past any bitset: right), and so does this.
    if x < 0.0 && x > -1.0 {
        // Truncates to 0, a valid category.
    } else if !(0.0..2_147_483_648.0).contains(&x) {
        return false;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let category = x.max(0.0) as usize;
    bitset
        .get(category / 32)
        .is_some_and(|word| (word >> (category % 32)) & 1 == 1)
}

/// LightGBM's `Tree::IsZero` (`tree.h`).
#[inline]
fn is_zero(x: f64) -> bool {
    (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x)
}

/// One row's sum of every compact tree's leaf, in file order from `+0.0`. The sum is the only
/// dependency chain; the walks of later trees overlap it.
fn sum_compact_row(trees: &[CompactTree], bytes: &[bool; COMPACT_CONDITIONS]) -> f64 {
    let mut sum = 0.0;
    for tree in trees {
        sum += tree.walk(bytes);
    }
    sum
}

/// Adds every compact tree's leaf, in file order, to each row's sum.
fn sum_compact(trees: &[CompactTree], bytes: &[[bool; COMPACT_CONDITIONS]], sums: &mut [f64]) {
    if let ([sum], [bytes]) = (&mut *sums, bytes) {
        *sum += sum_compact_row(trees, bytes);
        return;
    }
    for tree in trees {
        for (sum, bytes) in sums.iter_mut().zip(bytes) {
            *sum += tree.walk(bytes);
        }
    }
}

impl CompactTree {
    /// The leaf a row reaches: five steps of `i = 2i + 1 + right`, unrolled. The bytes are
    /// `bool`, so the index after step k is provably below 2^(k+1) - 1 and every access is in
    /// bounds without a check.
    #[inline(always)]
    fn walk(&self, bytes: &[bool; COMPACT_CONDITIONS]) -> f64 {
        let c = &self.conds;
        let mut i = 1 + usize::from(bytes[usize::from(c[0])]);
        i = 2 * i + 1 + usize::from(bytes[usize::from(c[i])]);
        i = 2 * i + 1 + usize::from(bytes[usize::from(c[i])]);
        i = 2 * i + 1 + usize::from(bytes[usize::from(c[i])]);
        i = 2 * i + 1 + usize::from(bytes[usize::from(c[i])]);
        self.leaves[i - 31]
    }
}

/// Adds one tree of the general layout to each row's sum.
fn sum_general(
    tree: TreeLayout,
    node_conds: &[u32],
    linked: &[LinkedNode],
    leaves: &[f64],
    bytes: &[bool],
    n_cond: usize,
    sums: &mut [f64],
) {
    match tree {
        TreeLayout::Complete {
            depth,
            conds,
            leaves: at,
        } => {
            let internal = (1usize << depth) - 1;
            let conds = &node_conds[conds..conds + internal];
            let leaves = &leaves[at..at + internal + 1];
            for (sum, bytes) in sums.iter_mut().zip(bytes.chunks_exact(n_cond)) {
                let mut i = 0usize;
                for _ in 0..depth {
                    i = 2 * i + 1 + usize::from(bytes[conds[i] as usize]);
                }
                *sum += leaves[i - internal];
            }
        }
        TreeLayout::Linked { nodes, leaves: at } => {
            for (sum, bytes) in sums.iter_mut().zip(bytes.chunks_exact(n_cond)) {
                let mut node = 0i32;
                while node >= 0 {
                    let n = linked[nodes + node as usize];
                    node = if bytes[n.cond as usize] {
                        n.right
                    } else {
                        n.left
                    };
                }
                *sum += leaves[at + (!node) as usize];
            }
        }
    }
}

/// Numbers the conditions of `model` and lays its trees out for walking.
fn compile(model: TextModel, transform: OutputTransform, allow_compact: bool) -> Booster {
    // Pass 1: every distinct numerical condition, grouped into runs sorted by threshold.
    // A model has a handful of (feature, missing rule, default) keys, so a vector searched
    // from the last key hit beats a map; sorting it gives the runs a fixed order. Each key's
    // thresholds are few and repeated across thousands of trees, so they are kept sorted and
    // distinct as they come, until a key has so many that sorting once at the end is cheaper.
    let mut grouped: Vec<((usize, u8, bool), Vec<f64>)> = Vec::new();
    let mut last = 0usize;
    let mut num_categorical = 0usize;
    for tree in &model.trees {
        for node in &tree.nodes {
            if node.is_categorical() {
                num_categorical += 1;
                continue;
            }
            let missing = node.missing_type().unwrap_or(MissingType::None);
            let key = (node.feature, missing as u8, node.default_left());
            if grouped.get(last).is_none_or(|(k, _)| *k != key) {
                last = match grouped.iter().position(|(k, _)| *k == key) {
                    Some(found) => found,
                    None => {
                        grouped.push((key, Vec::new()));
                        grouped.len() - 1
                    }
                };
            }
            if let Some((_, thresholds)) = grouped.get_mut(last) {
                if thresholds.len() >= SORTED_INSERT_LIMIT {
                    thresholds.push(node.threshold);
                } else if let Err(at) =
                    thresholds.binary_search_by(|t| t.total_cmp(&node.threshold))
                {
                    thresholds.insert(at, node.threshold);
                }
            }
        }
    }
    grouped.sort_by_key(|(key, _)| *key);
    let mut runs = Vec::with_capacity(grouped.len());
    let mut next = 1usize;
    for ((feature, missing, default_left), mut thresholds) in grouped {
        if thresholds.len() >= SORTED_INSERT_LIMIT {
            thresholds.sort_by(f64::total_cmp);
            // `total_cmp` equality is bit equality.
            thresholds.dedup_by(|a, b| a.to_bits() == b.to_bits());
        }
        let missing = match missing {
            0 => MissingType::None,
            1 => MissingType::Zero,
            _ => MissingType::NaN,
        };
        let len = thresholds.len();
        runs.push(ConditionRun {
            feature,
            missing,
            default_left,
            start: next,
            thresholds,
        });
        next += len;
    }
    let mut compiler = Compiler {
        runs,
        last_run: 0,
        next_categorical: next,
        categorical: Vec::with_capacity(num_categorical),
        cat_words: Vec::new(),
    };
    let num_conditions = next + num_categorical;
    let depth_of: Vec<u32> = model.trees.iter().map(|t| depth(&t.nodes)).collect();
    let compact = allow_compact
        && num_conditions <= COMPACT_CONDITIONS
        && depth_of.iter().all(|d| *d <= COMPACT_DEPTH);
    let trees = if compact {
        Trees::Compact(
            model
                .trees
                .iter()
                .map(|tree| compiler.compact_tree(tree))
                .collect(),
        )
    } else {
        let mut general = GeneralLayout::default();
        for (tree, depth) in model.trees.iter().zip(depth_of) {
            general.add_tree(&mut compiler, tree, depth);
        }
        Trees::General {
            trees: general.trees,
            node_conds: general.node_conds,
            linked: general.linked,
            leaves: general.leaves,
        }
    };
    Booster {
        feature_names: model.feature_names,
        transform,
        average_output: model.average_output,
        num_conditions,
        runs: compiler.runs,
        categorical: compiler.categorical,
        cat_words: compiler.cat_words,
        num_trees: model.trees.len(),
        trees,
    }
}

/// Condition ids of the nodes of parsed trees.
struct Compiler {
    runs: Vec<ConditionRun>,
    /// The run of the last numerical condition looked up: consecutive nodes often share it.
    last_run: usize,
    next_categorical: usize,
    categorical: Vec<CategoricalCondition>,
    cat_words: Vec<u32>,
}

impl Compiler {
    /// The id of `node`'s condition; a categorical node gets a new one (bitsets are per tree).
    fn condition(&mut self, tree: &TextTree, node: &TextNode) -> u32 {
        if node.is_categorical() {
            let index = text::categorical_index(node.threshold).unwrap_or(0);
            let words =
                &tree.cat_threshold[tree.cat_boundaries[index]..tree.cat_boundaries[index + 1]];
            let id = self.next_categorical;
            self.next_categorical += 1;
            self.categorical.push(CategoricalCondition {
                id,
                feature: node.feature,
                words: (self.cat_words.len(), words.len()),
            });
            self.cat_words.extend_from_slice(words);
            return u32::try_from(id).unwrap_or(u32::MAX);
        }
        let missing = node.missing_type().unwrap_or(MissingType::None);
        let is_run = |run: &ConditionRun| {
            run.feature == node.feature
                && run.missing == missing
                && run.default_left == node.default_left()
        };
        if !self.runs.get(self.last_run).is_some_and(is_run) {
            self.last_run = self.runs.iter().position(is_run).unwrap_or(0);
        }
        let id = self
            .runs
            .get(self.last_run)
            .filter(|run| is_run(run))
            .and_then(|run| {
                run.thresholds
                    .binary_search_by(|t| t.total_cmp(&node.threshold))
                    .ok()
                    .map(|k| run.start + k)
            });
        // Every numerical node's condition was numbered in the first pass.
        id.and_then(|id| u32::try_from(id).ok()).unwrap_or(0)
    }

    /// Fills the padded complete tree of `depth` levels at `conds`/`leaves` from `child`,
    /// placed at `slot` (level order).
    fn place(
        &mut self,
        tree: &TextTree,
        child: i32,
        slot: usize,
        depth: u32,
        conds: &mut [u32],
        leaves: &mut [f64],
    ) {
        let internal = (1usize << depth) - 1;
        if child >= 0 {
            let node = tree.nodes[child as usize];
            conds[slot] = self.condition(tree, &node);
            self.place(tree, node.left, 2 * slot + 1, depth, conds, leaves);
            self.place(tree, node.right, 2 * slot + 2, depth, conds, leaves);
        } else {
            // A leaf at `slot`: its padded subtree reads condition 0 (left) all the way down;
            // every bottom position under it gets its value.
            let value = tree.leaf_value[(!child) as usize];
            let (mut first, mut last) = (slot, slot);
            while first < internal {
                first = 2 * first + 1;
                last = 2 * last + 2;
            }
            leaves[first - internal..=last - internal].fill(value);
        }
    }

    fn compact_tree(&mut self, tree: &TextTree) -> CompactTree {
        let mut conds = [0u32; 32];
        let mut leaves = [0.0f64; 32];
        self.place(
            tree,
            root(tree),
            0,
            COMPACT_DEPTH,
            &mut conds[..31],
            &mut leaves,
        );
        CompactTree {
            // Every id is below COMPACT_CONDITIONS (256) in a compact model.
            conds: conds.map(|c| u8::try_from(c).unwrap_or(0)),
            leaves,
        }
    }
}

/// The root of a parsed tree: node 0, or leaf 0 for a single-leaf tree.
fn root(tree: &TextTree) -> i32 {
    if tree.nodes.is_empty() { -1 } else { 0 }
}

/// The general layout, built tree by tree.
#[derive(Debug, Default)]
struct GeneralLayout {
    trees: Vec<TreeLayout>,
    node_conds: Vec<u32>,
    linked: Vec<LinkedNode>,
    leaves: Vec<f64>,
}

impl GeneralLayout {
    fn add_tree(&mut self, compiler: &mut Compiler, tree: &TextTree, depth: u32) {
        let leaves_at = self.leaves.len();
        if depth <= MAX_COMPLETE_DEPTH
            && (depth <= 6 || (1usize << depth) <= 8 * tree.leaf_value.len())
        {
            let internal = (1usize << depth) - 1;
            let conds_at = self.node_conds.len();
            self.node_conds.resize(conds_at + internal, 0);
            self.leaves.resize(leaves_at + internal + 1, 0.0);
            compiler.place(
                tree,
                root(tree),
                0,
                depth,
                &mut self.node_conds[conds_at..],
                &mut self.leaves[leaves_at..],
            );
            self.trees.push(TreeLayout::Complete {
                depth,
                conds: conds_at,
                leaves: leaves_at,
            });
        } else {
            let nodes_at = self.linked.len();
            for node in &tree.nodes {
                let cond = compiler.condition(tree, node);
                self.linked.push(LinkedNode {
                    cond,
                    left: node.left,
                    right: node.right,
                });
            }
            self.leaves.extend_from_slice(&tree.leaf_value);
            self.trees.push(TreeLayout::Linked {
                nodes: nodes_at,
                leaves: leaves_at,
            });
        }
    }
}

/// Depth of a checked tree (0 for a single leaf).
fn depth(nodes: &[TextNode]) -> u32 {
    if nodes.is_empty() {
        return 0;
    }
    let mut deepest = 0;
    let mut stack = vec![(0i32, 1u32)];
    while let Some((node, level)) = stack.pop() {
        let n = nodes[node as usize];
        deepest = deepest.max(level);
        for child in [n.left, n.right] {
            if child >= 0 {
                stack.push((child, level + 1));
            }
        }
    }
    deepest
}

/// An `f64` that survives JSON exactly, NaN and infinities included: finite values are
/// numbers (printed to round-trip), the others the strings `"NaN"`, `"inf"`, `"-inf"`.
#[derive(Debug, Clone, Copy)]
pub struct ExactF64(pub f64);

impl PartialEq for ExactF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Serialize for ExactF64 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_finite() {
            serializer.serialize_f64(x)
        } else if x.is_nan() {
            serializer.serialize_str("NaN")
        } else if x > 0.0 {
            serializer.serialize_str("inf")
        } else {
            serializer.serialize_str("-inf")
        }
    }
}

impl<'de> Deserialize<'de> for ExactF64 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spelled {
            Number(f64),
            Text(String),
        }
        match Spelled::deserialize(deserializer)? {
            Spelled::Number(x) => Ok(Self(x)),
            Spelled::Text(text) => match text.as_str() {
                "NaN" => Ok(Self(f64::NAN)),
                "inf" => Ok(Self(f64::INFINITY)),
                "-inf" => Ok(Self(f64::NEG_INFINITY)),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"NaN\", \"inf\" or \"-inf\", found {other:?}"
                ))),
            },
        }
    }
}

/// A feature row and LightGBM's own prediction for it, stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    /// The row, in the model's feature order.
    pub features: Vec<ExactF64>,
    /// What LightGBM predicted, exactly.
    pub prediction: ExactF64,
}

#[cfg(test)]
pub(crate) mod tests;
