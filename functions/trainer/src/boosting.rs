//! Boosting one round at a time through LightGBM's C API.
//!
//! `lightgbm3::Booster::train` runs every round in one call, which leaves no way to report
//! progress. This module drives `LGBM_BoosterUpdateOneIter` itself and hands back the
//! finished model text, which the rest of the trainer loads with the safe `lightgbm3` API.
//! It also builds the dataset with the training parameters, as LightGBM's Python package
//! does, so both bin the data the same way. All `unsafe` of the trainer is here.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use lightgbm3_sys as sys;
use serde_json::{Map, Value};

/// Renders parameters the way LightGBM's config parser reads them: `key=value` pairs.
pub fn parameter_string(parameters: &Map<String, Value>) -> Result<String, String> {
    parameters
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => return Err(format!("parameter {key} has an unsupported value {other}")),
            };
            if key.contains(['=', ' ', '\0'])
                || value.contains(['=', ' ', '\0'])
                || value.is_empty()
            {
                return Err(format!(
                    "parameter {key}={value:?} cannot be passed to LightGBM"
                ));
            }
            Ok(format!("{key}={value}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|pairs| pairs.join(" "))
}

fn check(code: c_int) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: LGBM_GetLastError returns a pointer to a NUL-terminated, thread-local buffer
    // that stays valid until the next LightGBM call on this thread; it is copied at once.
    let message = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) };
    Err(message.to_string_lossy().into_owned())
}

/// Owns a dataset handle and frees it on drop.
struct DatasetHandle(sys::DatasetHandle);

impl Drop for DatasetHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed exactly once.
        unsafe { sys::LGBM_DatasetFree(self.0) };
    }
}

/// Owns a booster handle and frees it on drop.
struct BoosterHandle(sys::BoosterHandle);

impl Drop for BoosterHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterCreate and is freed exactly once.
        unsafe { sys::LGBM_BoosterFree(self.0) };
    }
}

/// A training matrix: row-major features, one label per row, feature names.
#[derive(Debug, Clone, Copy)]
pub struct TrainingData<'a> {
    /// Row-major features, `labels.len() * names.len()` values.
    pub features: &'a [f64],
    /// One label per row.
    pub labels: &'a [f32],
    /// Feature names, in column order.
    pub names: &'a [String],
    /// Each row's starting raw score (LightGBM's `init_score`), when boosting starts from a
    /// baseline instead of the labels' average.
    pub init_score: Option<&'a [f64]>,
}

/// Trains `rounds` boosting rounds (fewer if LightGBM cannot split any more), calling
/// `on_round` after each, and returns the model in LightGBM's text format.
pub fn train_model_text(
    data: TrainingData<'_>,
    parameters: &Map<String, Value>,
    rounds: u32,
    mut on_round: impl FnMut(u32),
) -> Result<String, String> {
    let n_rows = data.labels.len();
    let n_features = data.names.len();
    if n_rows == 0 || n_features == 0 || data.features.len() != n_rows * n_features {
        return Err(format!(
            "{} values do not form {n_rows} rows of {n_features} features",
            data.features.len()
        ));
    }
    let nrow = i32::try_from(n_rows).map_err(|_| "too many rows for LightGBM".to_owned())?;
    let ncol = i32::try_from(n_features).map_err(|_| "too many features".to_owned())?;
    let params = CString::new(parameter_string(parameters)?).map_err(|e| e.to_string())?;
    let names: Vec<CString> = data
        .names
        .iter()
        .map(|n| CString::new(n.as_str()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let label_field = c"label";

    let mut dataset = DatasetHandle(std::ptr::null_mut());
    // SAFETY: `features` holds nrow * ncol f64 values in row-major order (checked above) and
    // outlives the call; LightGBM copies what it needs into the dataset. `params` is a valid
    // C string; a null reference means "no reference dataset"; `dataset.0` receives the handle.
    check(unsafe {
        sys::LGBM_DatasetCreateFromMat(
            data.features.as_ptr().cast::<c_void>(),
            sys::C_API_DTYPE_FLOAT64 as c_int,
            nrow,
            ncol,
            1,
            params.as_ptr(),
            std::ptr::null_mut(),
            &mut dataset.0,
        )
    })?;
    // SAFETY: `labels` holds nrow f32 values that LightGBM copies; the field name is a C string.
    check(unsafe {
        sys::LGBM_DatasetSetField(
            dataset.0,
            label_field.as_ptr(),
            data.labels.as_ptr().cast::<c_void>(),
            nrow,
            sys::C_API_DTYPE_FLOAT32 as c_int,
        )
    })?;
    if let Some(init_score) = data.init_score {
        if init_score.len() != n_rows {
            return Err(format!(
                "{} initial scores for {n_rows} rows",
                init_score.len()
            ));
        }
        // SAFETY: `init_score` holds nrow f64 values (checked above) that LightGBM copies; the
        // field name is a C string.
        check(unsafe {
            sys::LGBM_DatasetSetField(
                dataset.0,
                c"init_score".as_ptr(),
                init_score.as_ptr().cast::<c_void>(),
                nrow,
                sys::C_API_DTYPE_FLOAT64 as c_int,
            )
        })?;
    }
    // SAFETY: `name_ptrs` holds ncol pointers to C strings owned by `names`, alive for the call.
    check(unsafe { sys::LGBM_DatasetSetFeatureNames(dataset.0, name_ptrs.as_mut_ptr(), ncol) })?;

    let mut booster = BoosterHandle(std::ptr::null_mut());
    // SAFETY: the dataset handle is valid and outlives the booster (dropped after it, below).
    check(unsafe { sys::LGBM_BoosterCreate(dataset.0, params.as_ptr(), &mut booster.0) })?;
    for round in 1..=rounds {
        let mut finished: c_int = 0;
        // SAFETY: the booster handle is valid; `finished` is a valid out-pointer.
        check(unsafe { sys::LGBM_BoosterUpdateOneIter(booster.0, &mut finished) })?;
        on_round(round);
        if finished != 0 {
            break;
        }
    }

    let mut length: i64 = 0;
    // SAFETY: a zero-length buffer asks only for the needed size, written to `length`.
    check(unsafe {
        sys::LGBM_BoosterSaveModelToString(
            booster.0,
            0,
            -1,
            0,
            0,
            &mut length,
            std::ptr::null_mut(),
        )
    })?;
    let mut buffer = vec![0u8; usize::try_from(length).map_err(|e| e.to_string())?];
    // SAFETY: `buffer` has exactly `length` bytes, as LightGBM asked for.
    check(unsafe {
        sys::LGBM_BoosterSaveModelToString(
            booster.0,
            0,
            -1,
            0,
            length,
            &mut length,
            buffer.as_mut_ptr().cast::<c_char>(),
        )
    })?;
    drop(booster);
    drop(dataset);
    let text = CStr::from_bytes_until_nul(&buffer).map_err(|e| e.to_string())?;
    Ok(text.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parameters_render_without_quotes_and_bad_values_are_refused() {
        let Value::Object(map) = json!({"objective": "regression_l1", "num_leaves": 64, "x": true})
        else {
            unreachable!()
        };
        assert_eq!(
            parameter_string(&map).unwrap(),
            "num_leaves=64 objective=regression_l1 x=true"
        );
        let Value::Object(bad) = json!({"objective": "a b"}) else {
            unreachable!()
        };
        assert!(parameter_string(&bad).is_err());
    }

    #[test]
    fn trains_round_by_round_and_reports_each_round() {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for a in 0..30 {
            for b in 0..10 {
                features.extend([f64::from(a), f64::from(b)]);
                labels.push((2 * a + b) as f32);
            }
        }
        let names = ["a".to_owned(), "b".to_owned()];
        let Value::Object(params) =
            json!({"objective": "regression", "verbosity": -1, "min_data_in_leaf": 5})
        else {
            unreachable!()
        };
        let mut rounds = Vec::new();
        let text = train_model_text(
            TrainingData {
                features: &features,
                labels: &labels,
                names: &names,
                init_score: None,
            },
            &params,
            7,
            |r| rounds.push(r),
        )
        .unwrap();
        assert_eq!(rounds, (1..=7).collect::<Vec<_>>());
        assert!(text.contains("feature_names=a b"));
        let booster = lightgbm3::Booster::from_string(&text).unwrap();
        assert_eq!(booster.num_iterations(), 7);
    }

    #[test]
    fn bad_shapes_and_lightgbm_errors_are_reported_not_panicked() {
        let names = ["a".to_owned()];
        let err = train_model_text(
            TrainingData {
                features: &[1.0, 2.0],
                labels: &[1.0],
                names: &names,
                init_score: None,
            },
            &Map::new(),
            1,
            |_| {},
        )
        .unwrap_err();
        assert!(err.contains("do not form"), "{err}");
        let Value::Object(params) = json!({"objective": "no_such_objective"}) else {
            unreachable!()
        };
        let err = train_model_text(
            TrainingData {
                features: &[1.0, 2.0],
                labels: &[1.0, 2.0],
                names: &names,
                init_score: None,
            },
            &params,
            1,
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_lowercase().contains("objective"), "{err}");
    }
}
