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

/// Parses `text`; see the module comment for the rules.
pub(super) fn parse(text: &str) -> Result<TextModel, ModelTextError> {
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    if lines.next() != Some("tree") {
        return Err(Corrupt(
            "the text does not start with a `tree` line".to_owned(),
        ));
    }
    let mut header = Header::default();
    let mut next = None;
    for line in lines.by_ref() {
        if line.starts_with("Tree=") {
            next = Some(line);
            break;
        }
        if line == "end of trees" {
            next = Some(line);
            break;
        }
        header.read(line)?;
    }
    if next.is_none() {
        return Err(Corrupt(
            "the model text is truncated: it has no trees and no `end of trees`".to_owned(),
        ));
    }
    let header = header.finish()?;
    // Lines are split here, in order; the numbers of each tree are parsed below, in parallel.
    let mut trees: Vec<Fields<'_>> = Vec::new();
    let mut ended = false;
    while let Some(line) = next.take() {
        if line == "end of trees" {
            ended = true;
            break;
        }
        let index = line.strip_prefix("Tree=").ok_or_else(|| {
            Corrupt(format!(
                "expected `Tree=` or `end of trees`, found {line:?}"
            ))
        })?;
        if index != trees.len().to_string() {
            return Err(Corrupt(format!(
                "tree {} is labelled `Tree={index}`",
                trees.len()
            )));
        }
        if trees.len() == MAX_TREES {
            return Err(Unsupported(format!("more than {MAX_TREES} trees")));
        }
        let mut fields = Fields::default();
        for field in lines.by_ref() {
            if field.is_empty() {
                break;
            }
            fields.read(field)?;
        }
        trees.push(fields);
        next = lines.by_ref().find(|line| !line.is_empty());
    }
    if !ended {
        return Err(Corrupt(
            "the model text is truncated: `end of trees` is missing".to_owned(),
        ));
    }
    if trees.is_empty() {
        return Err(Corrupt("the model has no trees".to_owned()));
    }
    if let Some(sizes) = &header.tree_sizes {
        check_tree_sizes(text, sizes, trees.len())?;
    }
    let trees = trees
        .into_par_iter()
        .enumerate()
        .map(|(index, fields)| {
            fields
                .into_tree(header.num_features)
                .map_err(|e| e.context(&format!("tree {index}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TextModel {
        feature_names: header.feature_names,
        objective: header.objective,
        average_output: header.average_output,
        trees,
    })
}

/// LightGBM slices the trees at the byte offsets of `tree_sizes=` without bounds checks; a
/// file whose sizes do not add up is one LightGBM would read differently (or crash on), so
/// it is refused rather than evaluated.
fn check_tree_sizes(text: &str, sizes: &[usize], trees: usize) -> Result<(), ModelTextError> {
    if sizes.len() != trees {
        return Err(Corrupt(format!(
            "tree_sizes lists {} trees, the text has {trees}",
            sizes.len()
        )));
    }
    let position = |marker: &str| {
        text.match_indices(marker)
            .find(|(at, _)| *at == 0 || text.as_bytes().get(at - 1) == Some(&b'\n'))
            .map(|(at, _)| at)
    };
    let (Some(first), Some(end)) = (position("Tree="), position("end of trees")) else {
        return Err(Corrupt(
            "tree_sizes is declared but the trees are missing".to_owned(),
        ));
    };
    let total = sizes
        .iter()
        .try_fold(0usize, |sum, size| sum.checked_add(*size))
        .ok_or_else(|| Corrupt("tree_sizes overflows".to_owned()))?;
    if first.checked_add(total) != Some(end) {
        return Err(Corrupt(format!(
            "the model text is truncated or edited: tree_sizes add up to {total} bytes, the trees take {}",
            end.saturating_sub(first)
        )));
    }
    Ok(())
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

    fn into_tree(self, num_features: usize) -> Result<TextTree, ModelTextError> {
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
        // LightGBM reads these two with `StringToArray<double>` (fast_double_parser, falling
        // back to strtod): correctly rounded, like Rust's `f64::from_str`.
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
        let features = integers(
            required(self.split_feature, "split_feature")?,
            internal,
            "split_feature",
        )?;
        let thresholds = floats(
            required(self.threshold, "threshold")?,
            internal,
            "threshold",
        )?;
        // A missing `decision_type` means all zeros (numerical, missing type None).
        let decision_types = match self.decision_type {
            Some(value) => integers(value, internal, "decision_type")?,
            None => vec![0; internal],
        };
        let lefts = integers(
            required(self.left_child, "left_child")?,
            internal,
            "left_child",
        )?;
        let rights = integers(
            required(self.right_child, "right_child")?,
            internal,
            "right_child",
        )?;
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
    value
        .trim()
        .parse()
        .map_err(|_| Corrupt(format!("`{name}` is not a whole number: {value:?}")))
}

/// The values of an array field: LightGBM writes them separated by single spaces.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(' ').filter(|v| !v.is_empty())
}

fn integers(value: &str, n: usize, name: &str) -> Result<Vec<i64>, ModelTextError> {
    let values: Vec<i64> = items(value)
        .map(|v| {
            v.parse()
                .map_err(|_| Corrupt(format!("`{name}` is not a whole number: {v:?}")))
        })
        .collect::<Result<_, _>>()?;
    expect_len(values, n, name)
}

fn floats(value: &str, n: usize, name: &str) -> Result<Vec<f64>, ModelTextError> {
    let values: Vec<f64> = items(value)
        .map(|v| {
            v.parse::<f64>()
                .map_err(|_| Corrupt(format!("`{name}` has a non-number {v:?}")))
        })
        .collect::<Result<_, _>>()?;
    expect_len(values, n, name)
}

fn expect_len<T>(values: Vec<T>, n: usize, name: &str) -> Result<Vec<T>, ModelTextError> {
    if values.len() == n {
        Ok(values)
    } else {
        Err(Corrupt(format!(
            "`{name}` has {} values, expected {n}",
            values.len()
        )))
    }
}
