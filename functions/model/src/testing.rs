//! Test support: the shared tiny booster and its manifest, and in-memory object stores.

use std::collections::HashMap;

use bytes::Bytes;
use forecast::{ModelLocation, ModelManifest};
use test_support::manifest::ManifestSpec;

use crate::error::FetchErrorKind;
use crate::loader::{ETag, FetchFailure, Fetched, ObjectStore, Sink, StoredObject};

/// The tiny booster of the shared test support (10 trees on `y = 3a + b`, features `a, b`).
pub(crate) use test_support::booster::tiny as tiny_model_text;

/// A manifest matching `model_text` as the tiny booster's, with check rows LightGBM scored
/// (none when the text is not a model LightGBM loads).
pub(crate) fn manifest_for(model_text: &str) -> ModelManifest {
    ManifestSpec::tiny().manifest_for(model_text)
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

    async fn stream(&self, bucket: &str, key: &str, mut sink: impl Sink) -> Fetched<ETag> {
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
