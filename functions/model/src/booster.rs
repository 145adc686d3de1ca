//! A LightGBM booster that can be shared by concurrent invocations.
//!
//! `lightgbm3::Booster` holds a raw `BoosterHandle` and is therefore neither `Send` nor
//! `Sync`. The handler state lives in an `Arc` shared with the Lambda runtime's tasks, which
//! needs both. This module is the only place that asserts thread safety, and it does so as
//! narrowly as it can: the booster is only ever reached through a `Mutex`.

#![allow(unsafe_code)]

use std::sync::Mutex;

use lightgbm3::Booster;

/// A booster moved between threads but used by one thread at a time.
struct OwnedBooster(Booster);

// SAFETY: `Send` only claims that the booster may be used from, and dropped on, a thread
// other than the one that created it. The value owns its `BoosterHandle` exclusively (it is
// never cloned or exposed), and LightGBM's C API keeps no thread-local state tied to a
// handle: any thread may call `LGBM_BoosterPredictForMat*` and `LGBM_BoosterFree` on it.
// `Sync` is NOT claimed for `OwnedBooster`; `Mutex<OwnedBooster>` derives `Sync` from this
// `Send`, and the mutex guarantees that at most one thread touches the handle at a time.
unsafe impl Send for OwnedBooster {}

/// A loaded booster, safe to share across threads (`Send + Sync` via its mutex).
pub struct SharedBooster {
    inner: Mutex<OwnedBooster>,
    num_features: usize,
}

impl std::fmt::Debug for SharedBooster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBooster")
            .field("num_features", &self.num_features)
            .finish()
    }
}

impl SharedBooster {
    /// Parses a booster from LightGBM's text format.
    pub fn from_model_text(text: &str) -> Result<Self, String> {
        // lightgbm3 builds a C string from the text and would panic on an interior NUL.
        if text.contains('\0') {
            return Err("the model text contains a NUL byte".to_owned());
        }
        let booster = Booster::from_string(text).map_err(|e| e.to_string())?;
        let num_features = usize::try_from(booster.num_features())
            .map_err(|_| "the booster reports a negative feature count".to_owned())?;
        if num_features == 0 {
            return Err("the booster has no features".to_owned());
        }
        Ok(Self {
            inner: Mutex::new(OwnedBooster(booster)),
            num_features,
        })
    }

    /// Number of input columns the booster expects.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Number of trees (boosting iterations).
    pub fn num_trees(&self) -> u32 {
        u32::try_from(self.lock().0.num_iterations()).unwrap_or(0)
    }

    /// Feature names stored in the booster.
    pub fn feature_names(&self) -> Result<Vec<String>, String> {
        self.lock().0.feature_name().map_err(|e| e.to_string())
    }

    /// Predicts row-major `rows` (`rows.len()` must be a multiple of `num_features`).
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
        let n_features = i32::try_from(self.num_features).map_err(|e| e.to_string())?;
        self.lock()
            .0
            .predict(rows, n_features, true)
            .map_err(|e| e.to_string())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OwnedBooster> {
        // A panic while the lock was held cannot leave the booster half-updated: prediction
        // does not mutate it. So a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
