//! Test support: a tiny real booster and an in-memory object store.

use std::collections::HashMap;

use bytes::Bytes;
use forecast::ModelManifest;
use forecast::manifest::{RowCounts, TrainingDomain};
use lightgbm3::{Booster, Dataset};
use serde_json::json;

use forecast::ModelLocation;

use crate::error::FetchErrorKind;
use crate::loader::{FetchFailure, ObjectStore, StoredObject};

/// Trains a 10-tree booster on `y = 3a + b` with features `a, b` and returns its text.
pub(crate) fn tiny_model_text() -> String {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for a in 0..20 {
        for b in 0..20 {
            x.extend([f64::from(a), f64::from(b)]);
            y.push((3 * a + b) as f32);
        }
    }
    let mut dataset = Dataset::from_slice(&x, &y, 2, true).unwrap();
    dataset
        .set_feature_names(&["a".to_owned(), "b".to_owned()])
        .unwrap();
    let params = json!({"num_iterations": 10, "objective": "regression", "verbosity": -1, "min_data_in_leaf": 5});
    Booster::train(dataset, &params)
        .unwrap()
        .save_string()
        .unwrap()
}

/// A manifest matching `model_text`, with check rows LightGBM scored (none when the text is
/// not a model LightGBM loads).
pub(crate) fn manifest_for(model_text: &str) -> ModelManifest {
    ModelManifest {
        format_version: forecast::manifest::MANIFEST_FORMAT_VERSION,
        name: "tiny".into(),
        version: "t1".into(),
        features: vec!["a".into(), "b".into()],
        objective: "regression".into(),
        parameters: serde_json::Map::new(),
        split: "none".into(),
        metrics: Default::default(),
        trained_at: "2026-01-01T00:00:00Z".into(),
        training_data_sha256: "00".into(),
        model_sha256: forecast::artifact::sha256_hex(model_text.as_bytes()),
        num_trees: 10,
        domain: TrainingDomain {
            stores: vec![],
            items: vec![],
            date_min: String::new(),
            date_max: String::new(),
        },
        rows: RowCounts {
            total: 400,
            fit: 400,
            validation: 0,
        },
        tool_versions: Default::default(),
        check_rows: trainer::train::check_rows(model_text, &[1.0, 1.0]).unwrap_or_default(),
        distribution: None,
        point: Default::default(),
        backtest: None,
    }
}

/// An object store holding objects in memory, keyed by `bucket/key`.
#[derive(Default)]
pub(crate) struct MemoryStore(pub(crate) HashMap<String, Bytes>);

impl MemoryStore {
    /// Stores `bytes` under `key` in bucket `bucket`.
    pub(crate) fn put(&mut self, key: &str, bytes: Vec<u8>) {
        self.0.insert(format!("bucket/{key}"), Bytes::from(bytes));
    }
}

impl ObjectStore for MemoryStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<StoredObject, FetchFailure> {
        self.0
            .get(&format!("{bucket}/{key}"))
            .cloned()
            .map(|bytes| StoredObject {
                bytes,
                etag: Some(format!(
                    "\"etag-of-{}\"",
                    key.rsplit('/').next().unwrap_or(key)
                )),
            })
            .ok_or_else(|| FetchFailure::new(FetchErrorKind::NoSuchKey, "no such key (NoSuchKey)"))
    }
}

/// A [`MemoryStore`] that streams its objects in chunks of the given size, as S3 does.
pub(crate) struct ChunkedStore(pub(crate) MemoryStore, pub(crate) usize);

impl ObjectStore for ChunkedStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<StoredObject, FetchFailure> {
        self.0.get(bucket, key).await
    }

    async fn stream<F: FnMut(Bytes) + Send>(
        &self,
        bucket: &str,
        key: &str,
        mut sink: F,
    ) -> Result<Option<String>, FetchFailure> {
        let object = self.0.get(bucket, key).await?;
        let size = self.1.max(1);
        for start in (0..object.bytes.len()).step_by(size) {
            sink(
                object
                    .bytes
                    .slice(start..(start + size).min(object.bytes.len())),
            );
        }
        Ok(object.etag)
    }
}

/// An object store that fails every fetch the same way.
pub(crate) struct FailingStore(pub(crate) FetchFailure);

impl ObjectStore for FailingStore {
    async fn get(&self, _: &str, _: &str) -> Result<StoredObject, FetchFailure> {
        Err(self.0.clone())
    }
}

/// A store holding `manifest` and `model_text` at `s3://bucket/models/tiny/t1/`.
pub(crate) fn store_with(
    manifest: &ModelManifest,
    model_text: &str,
) -> (MemoryStore, ModelLocation) {
    let location = ModelLocation::new("bucket", "tiny", "t1");
    let mut store = MemoryStore::default();
    store.put(
        &location.manifest_key(),
        serde_json::to_vec(manifest).unwrap(),
    );
    store.put(&location.model_key(), model_text.as_bytes().to_vec());
    (store, location)
}
