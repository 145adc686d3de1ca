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
mod text;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use objective::OutputTransform;
use text::{MissingType, TextModel, TextNode, TextTree};

/// LightGBM's `kZeroThreshold` (`meta.h`): `1e-35f`, a float widened to double.
pub const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// Deepest tree stored as a padded complete tree; deeper ones are walked node by node.
pub const MAX_COMPLETE_DEPTH: u32 = 10;

/// Rows evaluated together, tree by tree.
const BLOCK_ROWS: usize = 32;

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

/// One split condition; its byte for a row is 1 when the row goes right.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    /// Condition 0 of every model: always left (read by the padding of complete trees).
    AlwaysLeft,
    /// `Tree::NumericalDecision` (`tree.h`).
    Numerical {
        feature: usize,
        threshold: f64,
        missing: MissingType,
        default_left: bool,
    },
    /// `Tree::CategoricalDecision` (`tree.h`): left when the category's bit is set in
    /// `cat_words[start..start + len]`.
    Categorical {
        feature: usize,
        start: usize,
        len: usize,
    },
}

/// Where one tree lives in the booster's flat arrays.
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

/// A LightGBM booster compiled for fast, exact, thread-safe prediction.
#[derive(Debug, Clone)]
pub struct Booster {
    feature_names: Vec<String>,
    transform: OutputTransform,
    average_output: bool,
    conditions: Vec<Condition>,
    cat_words: Vec<u32>,
    trees: Vec<TreeLayout>,
    node_conds: Vec<u32>,
    linked: Vec<LinkedNode>,
    leaves: Vec<f64>,
}

impl Booster {
    /// Parses and compiles a LightGBM text model.
    pub fn from_model_text(text: &str) -> Result<Self, ModelTextError> {
        let model = text::parse(text)?;
        let transform = OutputTransform::from_objective(model.objective.as_deref())?;
        Ok(Compiler::new(model.feature_names.len()).compile(model, transform))
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
        self.trees.len()
    }

    /// The objective's output transform.
    pub fn output_transform(&self) -> OutputTransform {
        self.transform
    }

    /// Predicts row-major `rows`, one prediction per row, in parallel for large batches.
    pub fn predict(&self, rows: &[f64]) -> Result<Vec<f64>, RowShapeError> {
        self.predict_chunked(rows, self.chunk_rows(rows.len()))
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
        let n_cond = self.conditions.len();
        let mut bytes = vec![0u8; BLOCK_ROWS * n_cond];
        for (rows, out) in rows
            .chunks(BLOCK_ROWS * width)
            .zip(out.chunks_mut(BLOCK_ROWS))
        {
            let block = out.len();
            for (row, bytes) in rows.chunks(width).zip(bytes.chunks_mut(n_cond)) {
                self.condition_bytes(row, bytes);
            }
            let mut sums = [0.0f64; BLOCK_ROWS];
            self.sum_trees(&bytes[..block * n_cond], n_cond, &mut sums[..block]);
            for (out, sum) in out.iter_mut().zip(&sums) {
                *out = self.finish(*sum);
            }
        }
    }

    /// Adds every tree's leaf, in file order, to each row's sum.
    fn sum_trees(&self, bytes: &[u8], n_cond: usize, sums: &mut [f64]) {
        for tree in &self.trees {
            match *tree {
                TreeLayout::Complete {
                    depth,
                    conds,
                    leaves,
                } => {
                    let internal = (1usize << depth) - 1;
                    let conds = &self.node_conds[conds..conds + internal];
                    let leaves = &self.leaves[leaves..leaves + internal + 1];
                    for (sum, bytes) in sums.iter_mut().zip(bytes.chunks_exact(n_cond)) {
                        let mut i = 0usize;
                        for _ in 0..depth {
                            i = 2 * i + 1 + usize::from(bytes[conds[i] as usize]);
                        }
                        *sum += leaves[i - internal];
                    }
                }
                TreeLayout::Linked { nodes, leaves } => {
                    for (sum, bytes) in sums.iter_mut().zip(bytes.chunks_exact(n_cond)) {
                        let mut node = 0i32;
                        while node >= 0 {
                            let n = self.linked[nodes + node as usize];
                            node = if bytes[n.cond as usize] != 0 {
                                n.right
                            } else {
                                n.left
                            };
                        }
                        *sum += self.leaves[leaves + (!node) as usize];
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
            sum / self.trees.len() as f64
        } else {
            sum
        };
        self.transform.apply(raw)
    }

    /// One byte per condition for `row` (1 = right), after LightGBM's input rules.
    fn condition_bytes(&self, row: &[f64], bytes: &mut [u8]) {
        for (condition, byte) in self.conditions.iter().zip(bytes.iter_mut()) {
            *byte = match *condition {
                Condition::AlwaysLeft => 0,
                Condition::Numerical {
                    feature,
                    threshold,
                    missing,
                    default_left,
                } => u8::from(!numerical_goes_left(
                    input_value(row[feature]),
                    threshold,
                    missing,
                    default_left,
                )),
                Condition::Categorical {
                    feature,
                    start,
                    len,
                } => u8::from(!categorical_goes_left(
                    input_value(row[feature]),
                    &self.cat_words[start..start + len],
                )),
            };
        }
    }

    /// Checks this evaluator against rows LightGBM scored: every prediction must be equal
    /// bit for bit. Returns how many rows were checked.
    pub fn verify(&self, check_rows: &[CheckRow]) -> Result<usize, String> {
        if check_rows.is_empty() {
            return Err(
                "the manifest carries no check rows, so this evaluator cannot prove it reproduces \
                 LightGBM on this model; retrain it with this version of `demand train`"
                    .to_owned(),
            );
        }
        for (index, check) in check_rows.iter().enumerate() {
            let row: Vec<f64> = check.features.iter().map(|v| v.0).collect();
            let got = self
                .predict_row(&row)
                .map_err(|e| format!("check row {index}: {e}"))?;
            if got.to_bits() != check.prediction.0.to_bits() {
                return Err(format!(
                    "check row {index} {row:?}: LightGBM predicted {:?}, this evaluator {got:?}",
                    check.prediction.0
                ));
            }
        }
        Ok(check_rows.len())
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
        for condition in &self.conditions {
            match *condition {
                Condition::AlwaysLeft => {}
                Condition::Numerical {
                    feature, threshold, ..
                } => per_feature[feature].extend([
                    threshold.next_down(),
                    threshold,
                    threshold.next_up(),
                    threshold + 0.5,
                ]),
                Condition::Categorical { feature, len, .. } => {
                    per_feature[feature].extend((0..=(len * 32).min(256)).map(|c| c as f64));
                }
            }
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

/// `Tree::NumericalDecision` (`tree.h`).
#[inline]
fn numerical_goes_left(
    mut x: f64,
    threshold: f64,
    missing: MissingType,
    default_left: bool,
) -> bool {
    if x.is_nan() && missing != MissingType::NaN {
        x = 0.0;
    }
    let is_zero = (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x);
    if (missing == MissingType::Zero && is_zero) || (missing == MissingType::NaN && x.is_nan()) {
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

/// Builds the flat layout from parsed trees.
struct Compiler {
    booster: Booster,
    index: std::collections::HashMap<(usize, u64, u8, bool), u32>,
}

impl Compiler {
    fn new(num_features: usize) -> Self {
        Self {
            booster: Booster {
                feature_names: Vec::with_capacity(num_features),
                transform: OutputTransform::Identity,
                average_output: false,
                conditions: vec![Condition::AlwaysLeft],
                cat_words: Vec::new(),
                trees: Vec::new(),
                node_conds: Vec::new(),
                linked: Vec::new(),
                leaves: Vec::new(),
            },
            index: std::collections::HashMap::new(),
        }
    }

    fn compile(mut self, model: TextModel, transform: OutputTransform) -> Booster {
        for tree in &model.trees {
            self.add_tree(tree);
        }
        let mut booster = self.booster;
        booster.feature_names = model.feature_names;
        booster.transform = transform;
        booster.average_output = model.average_output;
        booster
    }

    fn condition(&mut self, tree: &TextTree, node: &TextNode) -> u32 {
        let next = u32::try_from(self.booster.conditions.len()).unwrap_or(u32::MAX);
        if node.is_categorical() {
            // Bitsets are per tree, so categorical conditions are not shared.
            let index = text::categorical_index(node.threshold).unwrap_or(0);
            let start = tree.cat_boundaries[index];
            let end = tree.cat_boundaries[index + 1];
            let words = &tree.cat_threshold[start..end];
            let start = self.booster.cat_words.len();
            self.booster.cat_words.extend_from_slice(words);
            self.booster.conditions.push(Condition::Categorical {
                feature: node.feature,
                start,
                len: words.len(),
            });
            return next;
        }
        let missing = node.missing_type().unwrap_or(MissingType::None);
        let key = (
            node.feature,
            node.threshold.to_bits(),
            missing as u8,
            node.default_left(),
        );
        *self.index.entry(key).or_insert_with(|| {
            self.booster.conditions.push(Condition::Numerical {
                feature: node.feature,
                threshold: node.threshold,
                missing,
                default_left: node.default_left(),
            });
            next
        })
    }

    fn add_tree(&mut self, tree: &TextTree) {
        let depth = depth(&tree.nodes);
        let leaves_at = self.booster.leaves.len();
        if depth <= MAX_COMPLETE_DEPTH
            && (depth <= 6 || (1usize << depth) <= 8 * tree.leaf_value.len())
        {
            let internal = (1usize << depth) - 1;
            let conds_at = self.booster.node_conds.len();
            self.booster.node_conds.resize(conds_at + internal, 0);
            self.booster.leaves.resize(leaves_at + internal + 1, 0.0);
            if tree.nodes.is_empty() {
                self.booster.leaves[leaves_at] = tree.leaf_value[0];
            } else {
                self.place(tree, 0, 0, depth, conds_at, leaves_at);
            }
            self.booster.trees.push(TreeLayout::Complete {
                depth,
                conds: conds_at,
                leaves: leaves_at,
            });
        } else {
            let nodes_at = self.booster.linked.len();
            for node in &tree.nodes {
                let cond = self.condition(tree, node);
                self.booster.linked.push(LinkedNode {
                    cond,
                    left: node.left,
                    right: node.right,
                });
            }
            self.booster.leaves.extend_from_slice(&tree.leaf_value);
            self.booster.trees.push(TreeLayout::Linked {
                nodes: nodes_at,
                leaves: leaves_at,
            });
        }
    }

    /// Places `child` of the parsed tree at position `slot` (level order) of the padded tree.
    fn place(
        &mut self,
        tree: &TextTree,
        child: i32,
        slot: usize,
        depth: u32,
        conds_at: usize,
        leaves_at: usize,
    ) {
        let internal = (1usize << depth) - 1;
        if child >= 0 {
            let node = tree.nodes[child as usize];
            let cond = self.condition(tree, &node);
            self.booster.node_conds[conds_at + slot] = cond;
            self.place(tree, node.left, 2 * slot + 1, depth, conds_at, leaves_at);
            self.place(tree, node.right, 2 * slot + 2, depth, conds_at, leaves_at);
        } else {
            // A leaf at `slot`: its padded subtree reads condition 0 (left) all the way down;
            // every bottom position under it gets its value.
            let value = tree.leaf_value[(!child) as usize];
            let (mut first, mut last) = (slot, slot);
            while first < internal {
                first = 2 * first + 1;
                last = 2 * last + 2;
            }
            for position in first..=last {
                self.booster.leaves[leaves_at + position - internal] = value;
            }
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
mod tests;
