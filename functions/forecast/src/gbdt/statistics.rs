//! The published model text without the training statistics prediction never reads.
//!
//! LightGBM writes each tree with its split gains, node and leaf weights, counts and
//! internal values (`tree.cpp`, `Tree::ToString`). They describe how the tree was grown; its
//! loader treats every one as optional and zero-fills what is absent (`tree.cpp`,
//! `Tree::Tree(const char*, size_t*)`: `split_gain`, `internal_count`, `internal_value`,
//! `internal_weight`, `leaf_weight`, `leaf_count`), and its predictor reads none of them
//! (`Tree::GetLeaf`, `Tree::Predict`). They are 45% of a 3000-tree model's text, which every
//! cold start downloads, hashes and reads, so the trainer publishes the text without them.
//! Everything else — the header, every other line of every tree, and what follows the
//! trees — is kept byte for byte; `tree_sizes`, the offsets LightGBM's loader slices the
//! trees at, is rewritten to the new sizes.

use super::ModelTextError;

/// Tree fields LightGBM records for inspection and training only.
pub const TRAINING_STATISTICS: [&str; 6] = [
    "split_gain",
    "leaf_weight",
    "leaf_count",
    "internal_value",
    "internal_weight",
    "internal_count",
];

/// `text` without the [`TRAINING_STATISTICS`] of its trees. The text must be LightGBM's
/// own: a header with `tree_sizes`, the trees at those offsets, then `end of trees`.
pub fn without_training_statistics(text: &str) -> Result<String, ModelTextError> {
    let corrupt =
        |what: &str| ModelTextError::Corrupt(format!("cannot slim the model text: {what}"));
    let trees_start = text
        .find("\nTree=")
        .map(|at| at + 1)
        .ok_or_else(|| corrupt("no tree"))?;
    let header = &text[..trees_start];
    let (sizes_at, sizes_line) = line_starting(header, "tree_sizes=")
        .ok_or_else(|| corrupt("the header has no tree_sizes"))?;
    let sizes = sizes_line["tree_sizes=".len()..]
        .split(' ')
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| corrupt("a tree size is not a number"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut slim_trees = String::with_capacity(text.len() / 2);
    let mut slim_sizes = Vec::with_capacity(sizes.len());
    let mut at = trees_start;
    for size in sizes {
        let tree = at
            .checked_add(size)
            .and_then(|end| text.get(at..end))
            .filter(|tree| tree.starts_with("Tree="))
            .ok_or_else(|| corrupt("tree_sizes do not match the trees"))?;
        let before = slim_trees.len();
        for line in tree.split_inclusive('\n') {
            let key = line.split_once('=').map_or("", |(key, _)| key);
            if !TRAINING_STATISTICS.contains(&key) {
                slim_trees.push_str(line);
            }
        }
        slim_sizes.push((slim_trees.len() - before).to_string());
        at += size;
    }
    let rest = &text[at..];
    if !rest.starts_with("end of trees") {
        return Err(corrupt("tree_sizes do not end where the trees end"));
    }

    let mut slim = String::with_capacity(trees_start + slim_trees.len() + rest.len());
    slim.push_str(&header[..sizes_at]);
    slim.push_str("tree_sizes=");
    slim.push_str(&slim_sizes.join(" "));
    slim.push_str(&header[sizes_at + sizes_line.len()..]);
    slim.push_str(&slim_trees);
    slim.push_str(rest);
    Ok(slim)
}

/// The offset and text (without its line break) of the first line of `text` that starts
/// with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(prefix) {
            return Some((at, line.trim_end_matches(['\n', '\r'])));
        }
        at += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gbdt::Booster;
    use crate::gbdt::tests::{TWO_TREES, two_trees_with_sizes};

    #[test]
    fn drops_only_the_statistics_and_resizes_the_trees() {
        let (sized, _, _) = two_trees_with_sizes();
        let slim = without_training_statistics(&sized).unwrap();
        let kept = |text: &str| {
            text.lines()
                .filter(|line| {
                    let key = line.split_once('=').map_or("", |(key, _)| key);
                    !TRAINING_STATISTICS.contains(&key) && key != "tree_sizes"
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(kept(&slim), kept(&sized));
        assert!(slim.len() < sized.len());
        for key in TRAINING_STATISTICS {
            assert!(sized.contains(&format!("\n{key}=")), "{key} in the fixture");
            assert!(!slim.contains(&format!("\n{key}=")), "{key} kept");
        }
        // The new sizes are where the trees now are: the reader cuts the trees at them
        // and refuses sizes that do not match.
        let full = Booster::from_model_text(&sized).unwrap();
        let read = Booster::from_model_text(&slim).unwrap();
        for row in full.probe_rows(&[1.0, 1.0]) {
            assert_eq!(
                full.predict_row(&row).unwrap().to_bits(),
                read.predict_row(&row).unwrap().to_bits()
            );
        }
        assert_eq!(without_training_statistics(&slim).unwrap(), slim);
    }

    #[test]
    fn a_text_whose_sizes_do_not_match_is_refused() {
        let (sized, _, _) = two_trees_with_sizes();
        let shifted = sized.replacen("tree_sizes=", "tree_sizes=1", 1);
        let no_end = sized.replace("end of trees", "end of the trees");
        for (text, expected) in [
            (shifted.as_str(), "tree_sizes do not match the trees"),
            (TWO_TREES, "the header has no tree_sizes"),
            (no_end.as_str(), "tree_sizes do not end where the trees end"),
            ("version=v4\n", "no tree"),
        ] {
            let error = without_training_statistics(text).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }
}
