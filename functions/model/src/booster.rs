//! A LightGBM booster that can be shared by concurrent invocations.
//!
//! `lightgbm3::Booster` holds a raw `BoosterHandle` (and, once initialised, a `FastConfigHandle`
//! for single-row predictions) and is therefore neither `Send` nor `Sync`. The host keeps it in
//! an `Arc` shared with the Lambda runtime's tasks, which needs both. This module is the only
//! place that asserts thread safety, and it does so as narrowly as it can: the booster is only
//! ever reached through a `Mutex`, so LightGBM sees one call at a time.
//!
//! Why a mutex and not `Sync` on the booster itself: LightGBM's C API does not make concurrent
//! predictions on one handle safe. `Booster::Predict` in `c_api.cpp` takes only a *shared*
//! lock, then builds a `Predictor`, whose constructor calls `GBDT::InitPredict`; that writes the
//! booster's `num_iteration_for_pred_` and `start_iteration_for_pred_` (plain `int`s) while other
//! predictions hold the same shared lock and read them. Two concurrent predictions are thus a
//! data race in C++ terms (undefined behaviour), even when both write the same values; the
//! comment above `Booster::InitSingleRowPredictor` in `c_api.cpp` says as much (upstream issue
//! 6142). The single-row fast path has the same problem against any concurrent batch call. The
//! mutex costs an uncontended lock per prediction (tens of nanoseconds, against tens of
//! microseconds for one row through thousands of trees), and LightGBM is built here without
//! OpenMP, so a prediction never had more than one thread to give anyway.

#![allow(unsafe_code)]

use std::sync::{Mutex, MutexGuard, PoisonError};

use lightgbm3::Booster;

/// LightGBM truncates feature names longer than this when it hands them out (it copies them
/// into 64-byte buffers), which could cut a UTF-8 character in half.
const MAX_FEATURE_NAME_BYTES: usize = 63;

/// A booster moved between threads but used by one thread at a time.
struct OwnedBooster(Booster);

// SAFETY: `Send` only claims that the booster may be used from, and dropped on, a thread other
// than the one that created it. The value owns its `BoosterHandle` and `FastConfigHandle`
// exclusively (they are never cloned or exposed), and LightGBM ties no state to the creating
// thread: the only thread-local in its C API is the last-error message, which `lightgbm3`
// reads on the same thread right after the failing call, inside the same method, so it never
// crosses a move. Any thread may therefore call `LGBM_BoosterPredictForMat*`,
// `LGBM_BoosterPredictForMatSingleRowFast`, `LGBM_FastConfigFree` and `LGBM_BoosterFree` on it.
// `Sync` is NOT claimed for `OwnedBooster` (see the module comment for why it would be unsound);
// `Mutex<OwnedBooster>` derives `Sync` from this `Send`, and the mutex guarantees that at most
// one thread touches the handles at a time.
unsafe impl Send for OwnedBooster {}

/// Why a booster could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoosterLoadError {
    /// The text is not a booster LightGBM can parse.
    Corrupt(String),
    /// A valid booster this host cannot serve (e.g. a multiclass model).
    Unsupported(String),
}

/// A loaded single-output booster, safe to share across threads (`Send + Sync` via its mutex).
pub struct SharedBooster {
    inner: Mutex<OwnedBooster>,
    num_features: usize,
    num_trees: u32,
    feature_names: Vec<String>,
}

impl std::fmt::Debug for SharedBooster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBooster")
            .field("num_features", &self.num_features)
            .field("num_trees", &self.num_trees)
            .finish_non_exhaustive()
    }
}

/// Checks the one structure LightGBM's parser trusts blindly: with a `tree_sizes=` header it
/// slices each tree at those byte offsets without bounds checks, so a truncated or edited
/// file crashes the process (SIGSEGV) instead of failing. The trees must end exactly where
/// `end of trees` begins, and that marker must be there.
fn check_tree_layout(text: &str) -> Result<(), String> {
    const END: &str = "end of trees";
    let truncated = || format!("the model text is truncated or edited: {END:?} is missing");
    let end = text
        .match_indices(END)
        .find(|(at, _)| *at == 0 || text.as_bytes().get(at - 1) == Some(&b'\n'))
        .map(|(at, _)| at)
        .ok_or_else(truncated)?;
    let Some(sizes) = text
        .lines()
        .take_while(|line| !line.starts_with("Tree="))
        .find_map(|line| line.strip_prefix("tree_sizes="))
    else {
        return Ok(());
    };
    let mut total = 0usize;
    for size in sizes.split_whitespace() {
        let size: usize = size
            .parse()
            .map_err(|_| format!("tree_sizes has a non-number {size:?}"))?;
        total = total
            .checked_add(size)
            .ok_or_else(|| "tree_sizes overflows".to_owned())?;
    }
    let first_tree = text
        .match_indices("Tree=")
        .find(|(at, _)| text.as_bytes().get(at.wrapping_sub(1)) == Some(&b'\n'))
        .map(|(at, _)| at)
        .ok_or_else(|| "tree_sizes is declared but there are no trees".to_owned())?;
    if first_tree.checked_add(total) != Some(end) {
        return Err(format!(
            "the model text is truncated or edited: tree_sizes add up to {total} bytes, the trees take {}",
            end.saturating_sub(first_tree)
        ));
    }
    Ok(())
}

impl SharedBooster {
    /// Parses a booster from LightGBM's text format and prepares its single-row fast path.
    pub fn from_model_text(text: &str) -> Result<Self, BoosterLoadError> {
        use BoosterLoadError::{Corrupt, Unsupported};
        // lightgbm3 builds a C string from the text and would panic on an interior NUL.
        if text.contains('\0') {
            return Err(Corrupt("the model text contains a NUL byte".to_owned()));
        }
        // lightgbm3 would panic on a name LightGBM truncated inside a UTF-8 character.
        if let Some(name) = declared_feature_names(text)
            .into_iter()
            .flatten()
            .find(|name| name.len() > MAX_FEATURE_NAME_BYTES)
        {
            return Err(Unsupported(format!(
                "feature name {name:?} is longer than {MAX_FEATURE_NAME_BYTES} bytes"
            )));
        }
        check_tree_layout(text).map_err(Corrupt)?;
        let mut booster = Booster::from_string(text).map_err(|e| Corrupt(e.to_string()))?;
        let num_features = usize::try_from(booster.num_features())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Corrupt("the booster has no features".to_owned()))?;
        let num_trees = u32::try_from(booster.num_iterations())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Corrupt("the booster has no trees".to_owned()))?;
        if booster.num_classes() != 1 {
            return Err(Unsupported(format!(
                "the booster predicts {} classes; this host serves single-output models",
                booster.num_classes()
            )));
        }
        let feature_names = booster.feature_name().map_err(|e| Corrupt(e.to_string()))?;
        booster
            .single_row_fast_init::<f64>(None)
            .map_err(|e| Corrupt(format!("cannot prepare single-row prediction: {e}")))?;
        Ok(Self {
            inner: Mutex::new(OwnedBooster(booster)),
            num_features,
            num_trees,
            feature_names,
        })
    }

    /// Number of input columns the booster expects.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Number of trees (boosting iterations).
    pub fn num_trees(&self) -> u32 {
        self.num_trees
    }

    /// Feature names stored in the booster, in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Predicts row-major `rows` (`rows.len()` must be a multiple of `num_features`), one
    /// prediction per row. A single row takes LightGBM's single-row fast path, which reuses a
    /// predictor prepared at load instead of parsing a parameter string and building a
    /// predictor per call; both paths run the same tree walk and give identical results.
    pub fn predict(&self, rows: &[f64]) -> Result<Vec<f64>, String> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if !rows.len().is_multiple_of(self.num_features) {
            return Err(format!(
                "{} values do not form rows of {} features",
                rows.len(),
                self.num_features
            ));
        }
        let guard = self.lock();
        if rows.len() == self.num_features {
            // The fast path reads exactly `num_features` f64 values from the slice (the width
            // and type it was initialised with), which is what the length check above ensures.
            guard
                .0
                .predict_single_row_fast(rows)
                .map_err(|e| e.to_string())
        } else {
            let n_features = i32::try_from(self.num_features).map_err(|e| e.to_string())?;
            guard
                .0
                .predict(rows, n_features, true)
                .map_err(|e| e.to_string())
        }
    }

    /// Predicts through LightGBM's general matrix call even for one row (the path `predict`
    /// avoids for single rows), so tests can compare the two paths.
    #[cfg(test)]
    fn predict_general(&self, rows: &[f64]) -> Result<Vec<f64>, String> {
        let n_features = i32::try_from(self.num_features).map_err(|e| e.to_string())?;
        self.lock()
            .0
            .predict(rows, n_features, true)
            .map_err(|e| e.to_string())
    }

    fn lock(&self) -> MutexGuard<'_, OwnedBooster> {
        // A panic while the lock was held cannot leave the booster half-updated: prediction
        // does not mutate anything a later call relies on. So a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The names on the model text's `feature_names=` header line, if it has one.
fn declared_feature_names(text: &str) -> Option<Vec<&str>> {
    text.lines()
        .take_while(|line| !line.starts_with("Tree="))
        .find_map(|line| line.strip_prefix("feature_names="))
        .map(|names| names.split(' ').collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::tiny_model_text;

    fn grid() -> Vec<f64> {
        let mut rows = Vec::new();
        for a in 0..20 {
            for b in 0..20 {
                rows.extend([f64::from(a) + 0.25, f64::from(b) - 0.5]);
            }
        }
        rows
    }

    #[test]
    fn a_model_text_cut_anywhere_is_corrupt_or_loads_never_a_crash() {
        // LightGBM slices trees by `tree_sizes` without bounds checks: a cut file used to
        // crash the process. Every cut point now fails cleanly (or loads, when only the
        // trailing parameters were cut).
        let text = tiny_model_text();
        let end = text.find("end of trees").unwrap();
        let cuts = (1..text.len())
            .step_by(text.len() / 97 + 1)
            .chain([end, end + 3]);
        for cut in cuts {
            let Some(prefix) = text.get(..cut) else {
                continue;
            };
            match SharedBooster::from_model_text(prefix) {
                Ok(_) => assert!(cut > end, "loaded a booster cut at {cut} of {end}"),
                Err(BoosterLoadError::Corrupt(_) | BoosterLoadError::Unsupported(_)) => {}
            }
        }
        let edited = text.replacen("tree_sizes=", "tree_sizes=1 ", 1);
        assert!(matches!(
            SharedBooster::from_model_text(&edited),
            Err(BoosterLoadError::Corrupt(message)) if message.contains("tree_sizes")
        ));
    }

    #[test]
    fn the_single_row_fast_path_equals_the_general_path_bit_for_bit() {
        let booster = SharedBooster::from_model_text(&tiny_model_text()).unwrap();
        for row in grid().chunks(2) {
            let fast = booster.predict(row).unwrap();
            let general = booster.predict_general(row).unwrap();
            assert_eq!(fast.len(), 1);
            assert_eq!(fast[0].to_bits(), general[0].to_bits(), "{row:?}");
        }
    }

    #[test]
    fn a_batch_equals_its_rows_one_by_one() {
        let booster = SharedBooster::from_model_text(&tiny_model_text()).unwrap();
        let rows = grid();
        let batch = booster.predict(&rows).unwrap();
        assert_eq!(batch.len(), rows.len() / 2);
        for (row, expected) in rows.chunks(2).zip(&batch) {
            assert_eq!(
                booster.predict(row).unwrap()[0].to_bits(),
                expected.to_bits()
            );
        }
    }

    #[test]
    fn concurrent_predictions_equal_sequential_ones() {
        let booster = Arc::new(SharedBooster::from_model_text(&tiny_model_text()).unwrap());
        let rows = grid();
        let sequential = booster.predict(&rows).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let booster = Arc::clone(&booster);
                let rows = rows.clone();
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    for round in 0..50 {
                        // Mix single rows (fast path) and batches (general path).
                        if (t + round) % 2 == 0 {
                            answers.push(booster.predict(&rows).unwrap());
                        } else {
                            let one: Vec<f64> = rows
                                .chunks(2)
                                .flat_map(|row| booster.predict(row).unwrap())
                                .collect();
                            answers.push(one);
                        }
                    }
                    answers
                })
            })
            .collect();
        for thread in threads {
            for answer in thread.join().unwrap() {
                assert_eq!(answer, sequential);
            }
        }
    }

    #[test]
    fn reports_trees_features_and_names() {
        let booster = SharedBooster::from_model_text(&tiny_model_text()).unwrap();
        assert_eq!(booster.num_features(), 2);
        assert_eq!(booster.num_trees(), 10);
        assert_eq!(booster.feature_names(), ["a", "b"]);
        assert!(format!("{booster:?}").contains("num_trees: 10"));
    }

    #[test]
    fn rows_of_the_wrong_width_are_refused_before_reaching_lightgbm() {
        let booster = SharedBooster::from_model_text(&tiny_model_text()).unwrap();
        assert_eq!(booster.predict(&[]).unwrap(), Vec::<f64>::new());
        assert!(booster.predict(&[1.0]).is_err());
        assert!(booster.predict(&[1.0, 2.0, 3.0]).is_err());
    }

    #[test]
    fn corrupt_and_unsupported_texts_are_told_apart() {
        assert!(matches!(
            SharedBooster::from_model_text("tree\nthis is not a booster\n"),
            Err(BoosterLoadError::Corrupt(_))
        ));
        assert!(matches!(
            SharedBooster::from_model_text("tree\n\0"),
            Err(BoosterLoadError::Corrupt(_))
        ));
        let long = format!("feature_names={} b", "é".repeat(40));
        let text = tiny_model_text().replace("feature_names=a b", &long);
        assert!(matches!(
            SharedBooster::from_model_text(&text),
            Err(BoosterLoadError::Unsupported(message)) if message.contains("longer than 63 bytes")
        ));
    }

    #[test]
    fn multiclass_boosters_are_unsupported() {
        use lightgbm3::Dataset;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..300 {
            x.push(f64::from(i));
            y.push((i % 3) as f32);
        }
        let dataset = Dataset::from_slice(&x, &y, 1, true).unwrap();
        let params = serde_json::json!({
            "num_iterations": 2, "objective": "multiclass", "num_class": 3, "verbosity": -1
        });
        let text = Booster::train(dataset, &params)
            .unwrap()
            .save_string()
            .unwrap();
        assert!(matches!(
            SharedBooster::from_model_text(&text),
            Err(BoosterLoadError::Unsupported(message)) if message.contains("3 classes")
        ));
    }
}
