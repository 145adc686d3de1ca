//! Cold-start loading: fetch manifest and booster, verify, parse, prove on the check rows.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use forecast::wire::InitTimings;
use forecast::{ModelLocation, ModelManifest};

use crate::config::{ModelConfig, ModelSource};
use crate::error::{FetchErrorKind, InitError};
use forecast::artifact::{ArtifactError, ArtifactReader, VerifiedBooster};
use forecast::gbdt::{Booster, RowShapeError};

/// Largest object the host will load. A booster this big could not be served from a Lambda
/// function's memory anyway, and the cap keeps a bogus `Content-Length` from reserving it.
pub const MAX_OBJECT_BYTES: usize = 512 << 20;

/// One fetched object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its content.
    pub bytes: Bytes,
    /// Its ETag, if the store has such a thing.
    pub etag: Option<String>,
}

/// Why one object could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// Which failure, as far as the caller can act on it.
    pub kind: FetchErrorKind,
    /// What the store said.
    pub detail: String,
}

impl FetchFailure {
    /// A failure of `kind` described by `detail`.
    pub fn new(kind: FetchErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// What fetching from a store answers.
pub type Fetched<T> = Result<T, FetchFailure>;

/// An object's ETag, when the store has such a thing.
pub type ETag = Option<String>;

/// What a streamed object's chunks are handed to, in order.
pub trait Sink: FnMut(Bytes) + Send {}

impl<F: FnMut(Bytes) + Send> Sink for F {}

/// Read access to an object store: S3 ([`S3ObjectStore`]) or a local directory
/// ([`LocalFileStore`]).
pub trait ObjectStore: Send + Sync {
    /// Fetches the whole object `key` from `bucket`.
    fn get(&self, bucket: &str, key: &str) -> impl Future<Output = Fetched<StoredObject>> + Send;

    /// Fetches the object `key` from `bucket` chunk by chunk, handing each chunk to `sink`
    /// as it arrives, and answers its ETag. A store that cannot stream hands over the whole
    /// object at once.
    fn stream(
        &self,
        bucket: &str,
        key: &str,
        mut sink: impl Sink,
    ) -> impl Future<Output = Fetched<ETag>> + Send {
        async move {
            let object = self.get(bucket, key).await?;
            sink(object.bytes);
            Ok(object.etag)
        }
    }

    /// How messages and `ping` name an object (or a prefix) of this store.
    fn object_uri(&self, bucket: &str, key: &str) -> String {
        format!("s3://{bucket}/{key}")
    }
}

/// [`ObjectStore`] backed by `aws-sdk-s3`.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
}

impl S3ObjectStore {
    /// Builds a client from the standard AWS environment ([`s3_client_from_env`]).
    pub async fn from_env() -> Self {
        Self {
            client: s3_client_from_env().await,
        }
    }

    /// Wraps an existing client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

impl ObjectStore for S3ObjectStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<StoredObject, FetchFailure> {
        // Only small objects (the manifest) are fetched whole; the booster is streamed.
        let mut buffer = Vec::new();
        let etag = self
            .stream(bucket, key, |chunk| buffer.extend_from_slice(&chunk))
            .await?;
        Ok(StoredObject {
            bytes: Bytes::from(buffer),
            etag,
        })
    }

    async fn stream(&self, bucket: &str, key: &str, mut sink: impl Sink) -> Fetched<ETag> {
        let output = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(describe_sdk_error)?;
        let etag = output.e_tag().map(str::to_owned);
        let length = output
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        if length > MAX_OBJECT_BYTES {
            return Err(FetchFailure::new(
                FetchErrorKind::Other,
                format!(
                    "the object has {length} bytes, more than the {MAX_OBJECT_BYTES} this host loads"
                ),
            ));
        }
        let mut received = 0usize;
        let mut body = output.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            FetchFailure::new(
                FetchErrorKind::Unreachable,
                format!("reading the object body failed: {e}"),
            )
        })? {
            received += chunk.len();
            if received > MAX_OBJECT_BYTES {
                return Err(FetchFailure::new(
                    FetchErrorKind::Other,
                    format!(
                        "the object has more than the {MAX_OBJECT_BYTES} bytes this host loads"
                    ),
                ));
            }
            sink(chunk);
        }
        Ok(etag)
    }
}

/// An S3 client from the standard AWS environment. `AWS_ENDPOINT_URL_S3` (or
/// `AWS_ENDPOINT_URL`) points it at a local S3 server, which then gets path-style addressing
/// since such servers do not serve `<bucket>.<host>` names.
pub async fn s3_client_from_env() -> aws_sdk_s3::Client {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let local = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(local)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Turns an SDK error into an actionable sentence without dumping the whole error chain.
pub fn describe_sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E>,
) -> FetchFailure {
    use FetchErrorKind::{AccessDenied, Credentials, NoSuchBucket, NoSuchKey, Other, Unreachable};
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let message = service.err().message().unwrap_or("");
            match service.err().code() {
                Some("NoSuchKey") => FetchFailure::new(NoSuchKey, "no such key (NoSuchKey)"),
                Some("NoSuchBucket") => {
                    FetchFailure::new(NoSuchBucket, "no such bucket (NoSuchBucket)")
                }
                Some("AccessDenied") => {
                    FetchFailure::new(AccessDenied, "access denied (AccessDenied)")
                }
                Some(
                    code @ ("InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"),
                ) => FetchFailure::new(
                    Credentials,
                    format!("S3 rejected the credentials ({code}): {message}"),
                ),
                Some(code) => FetchFailure::new(Other, format!("S3 error {code}: {message}")),
                None if status == 404 => FetchFailure::new(NoSuchKey, "not found (HTTP 404)"),
                None if status == 403 => {
                    FetchFailure::new(AccessDenied, "access denied (HTTP 403)")
                }
                None => FetchFailure::new(Other, format!("S3 answered HTTP {status}")),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => FetchFailure::new(
            Unreachable,
            format!("S3 endpoint unreachable: {}", DisplayErrorContext(&err)),
        ),
        _ => FetchFailure::new(Other, DisplayErrorContext(&err).to_string()),
    }
}

/// [`ObjectStore`] over the local file system, for `file://` model URIs: a bucket is a
/// directory and a key a path relative to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFileStore;

impl ObjectStore for LocalFileStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<StoredObject, FetchFailure> {
        let path = Path::new(bucket).join(key);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(StoredObject {
                bytes: Bytes::from(bytes),
                etag: None,
            }),
            Err(err) => {
                let kind = match err.kind() {
                    std::io::ErrorKind::NotFound => FetchErrorKind::NoSuchKey,
                    std::io::ErrorKind::PermissionDenied => FetchErrorKind::AccessDenied,
                    _ => FetchErrorKind::Other,
                };
                Err(FetchFailure::new(kind, err.to_string()))
            }
        }
    }

    fn object_uri(&self, bucket: &str, key: &str) -> String {
        format!("file://{}", Path::new(bucket).join(key).display())
    }
}

/// The store a [`ModelConfig`] names.
#[derive(Debug, Clone)]
pub enum ConfiguredStore {
    /// S3, through the standard AWS environment.
    S3(S3ObjectStore),
    /// The local file system.
    LocalFile(LocalFileStore),
}

impl ConfiguredStore {
    /// Builds the store for `config`.
    pub async fn for_config(config: &ModelConfig) -> Self {
        match config.source {
            ModelSource::S3 => Self::S3(S3ObjectStore::from_env().await),
            ModelSource::LocalFile => Self::LocalFile(LocalFileStore),
        }
    }
}

impl ObjectStore for ConfiguredStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<StoredObject, FetchFailure> {
        match self {
            Self::S3(store) => store.get(bucket, key).await,
            Self::LocalFile(store) => store.get(bucket, key).await,
        }
    }

    async fn stream(&self, bucket: &str, key: &str, sink: impl Sink) -> Fetched<ETag> {
        match self {
            Self::S3(store) => store.stream(bucket, key, sink).await,
            Self::LocalFile(store) => store.stream(bucket, key, sink).await,
        }
    }

    fn object_uri(&self, bucket: &str, key: &str) -> String {
        match self {
            Self::S3(store) => store.object_uri(bucket, key),
            Self::LocalFile(store) => store.object_uri(bucket, key),
        }
    }
}

/// A verified, warmed-up booster with its manifest, ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    /// The manifest the booster was verified against.
    pub manifest: ModelManifest,
    /// The booster, compiled for the native evaluator and verified against the manifest's
    /// check rows.
    pub booster: Booster,
    /// The prefix it came from, e.g. `s3://bucket/models/demand/v1/`.
    pub source_uri: String,
    /// When loading finished, RFC 3339 UTC.
    pub loaded_at: String,
    /// ETag of `model.txt`, when the store has one.
    pub model_etag: Option<String>,
    /// Where the load spent its time.
    pub timings: InitTimings,
}

impl LoadedModel {
    /// The model's predictions (its mean) for rows in its feature order, row-major: the
    /// booster's, times each row's baseline when the model has one.
    pub fn predict(&self, values: &[f64]) -> Result<Vec<f64>, RowShapeError> {
        let mut means = self.booster.predict(values)?;
        if let Some(baseline) = &self.manifest.baseline {
            baseline.apply(values, &mut means);
        }
        Ok(means)
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Fetches manifest and booster concurrently (the manifest from the booster's first bytes
/// on), verifies the booster's sha256 and features against the manifest, parses it and
/// reproduces the manifest's check rows, which also runs every tree once before the first
/// invocation.
///
/// The booster is hashed and read chunk by chunk while it downloads ([`ArtifactReader`]): the
/// work overlaps the transfer and the text is never held whole. Its sha256 is still judged
/// before anything read from it: a text that fails to parse but does not match the manifest's
/// hash is a [`InitError::ShaMismatch`], as when it was checked first.
pub async fn load_model<S: ObjectStore>(
    store: &S,
    location: &ModelLocation,
) -> Result<LoadedModel, InitError> {
    let started = Instant::now();
    let manifest_key = location.manifest_key();
    let model_key = location.model_key();
    let manifest_uri = store.object_uri(&location.bucket, &manifest_key);
    let model_uri = store.object_uri(&location.bucket, &model_key);
    let fetch_error = |uri: &str, failure: FetchFailure| InitError::Fetch {
        uri: uri.to_owned(),
        kind: failure.kind,
        reason: failure.detail,
    };
    // The booster is hashed and read chunk by chunk as it arrives, in the download loop: the
    // text is never held whole. (Reading on a thread of its own, fed through a queue, was
    // measured: no faster on two cores, and a megabyte more at the peak.)
    let mut reader = ArtifactReader::default();
    let mut in_loop = Duration::ZERO;
    // The manifest is asked for once the booster's first bytes are in (or its request has
    // ended): asked for together, the two first answers wait on each other at the store, and
    // the booster's is the one the load waits for, while the manifest is read only at the end.
    let booster_answered = tokio::sync::Notify::new();
    let manifest = async {
        booster_answered.notified().await;
        store.get(&location.bucket, &manifest_key).await
    };
    let booster = async {
        let etag = store
            .stream(&location.bucket, &model_key, |chunk| {
                booster_answered.notify_one();
                let start = Instant::now();
                reader.push(&chunk);
                in_loop += start.elapsed();
            })
            .await;
        booster_answered.notify_one();
        etag
    };
    let (manifest_object, model_etag) = tokio::join!(manifest, booster);
    let manifest_object = manifest_object.map_err(|f| fetch_error(&manifest_uri, f))?;
    let model_etag = model_etag.map_err(|f| fetch_error(&model_uri, f))?;
    let fetched = started.elapsed();

    let manifest: ModelManifest =
        serde_json::from_slice(&manifest_object.bytes).map_err(|e| InitError::BadManifest {
            uri: manifest_uri.clone(),
            reason: e.to_string(),
        })?;
    // Serve nothing this evaluator does not reproduce bit for bit: the check rows are
    // LightGBM's own predictions, made when the model was trained.
    let VerifiedBooster { booster, timings } = reader.finish(&manifest).map_err(|e| {
        let uri = model_uri.clone();
        match e {
            ArtifactError::ShaMismatch { expected, actual } => InitError::ShaMismatch {
                uri,
                expected,
                actual,
            },
            ArtifactError::Corrupt(reason) => InitError::CorruptBooster { uri, reason },
            ArtifactError::Unsupported(reason) => InitError::UnsupportedModel { uri, reason },
            ArtifactError::FeatureMismatch { manifest, booster } => InitError::FeatureMismatch {
                uri,
                manifest,
                booster,
            },
            ArtifactError::CheckRows(reason) => InitError::CheckRowsMismatch { uri, reason },
            ArtifactError::Manifest(reason) => InitError::BadManifest {
                uri: manifest_uri.clone(),
                reason,
            },
        }
    })?;
    let total = started.elapsed();

    Ok(LoadedModel {
        manifest,
        booster,
        source_uri: store.object_uri(&location.bucket, &location.prefix),
        loaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        model_etag,
        timings: InitTimings {
            // The hashing and reading done inside the transfer count as verifying and parsing.
            fetch_ms: millis(fetched.saturating_sub(in_loop)),
            verify_ms: millis(timings.hashing),
            parse_ms: millis(timings.reading),
            warmup_ms: millis(timings.checking),
            total_ms: millis(total),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        ChunkedStore, FailingStore, MemoryStore, manifest_for, store_with, tiny_model_text,
    };

    #[tokio::test]
    async fn loads_a_verified_model_with_timings() {
        let text = tiny_model_text();
        let (store, location) = store_with(&manifest_for(&text), &text);
        let model = load_model(&store, &location).await.unwrap();
        assert_eq!(model.booster.num_features(), 2);
        assert_eq!(model.booster.num_trees(), 10);
        assert_eq!(model.source_uri, "s3://bucket/models/tiny/t1/");
        assert_eq!(model.model_etag.as_deref(), Some("\"etag-of-model.txt\""));
        let t = model.timings;
        assert!(t.total_ms >= t.fetch_ms + t.verify_ms + t.parse_ms, "{t:?}");
        assert!(t.total_ms > 0.0);
    }

    #[tokio::test]
    async fn a_booster_streamed_in_chunks_loads_and_fails_as_a_whole_one() {
        let text = tiny_model_text();
        let (store, location) = store_with(&manifest_for(&text), &text);
        let whole = load_model(&store, &location).await.unwrap();
        let rows: Vec<f64> = (0..200).map(|i| f64::from(i % 23) - 3.0).collect();
        let expected = whole.booster.predict(&rows).unwrap();
        for size in [1, 7, 4096] {
            let (store, location) = store_with(&manifest_for(&text), &text);
            let model = load_model(&ChunkedStore(store, size), &location)
                .await
                .unwrap();
            assert_eq!(
                model.booster.predict(&rows).unwrap(),
                expected,
                "chunks of {size}"
            );
            assert_eq!(model.model_etag, whole.model_etag);
        }
        // A text that does not parse is judged by its hash first, then by its content.
        let broken = text.replace("leaf_value=", "leaf_value=x");
        for (manifest, code) in [
            (manifest_for(&text), "ShaMismatch"),
            (manifest_for(&broken), "CorruptBooster"),
        ] {
            let (store, location) = store_with(&manifest, &broken);
            let err = load_model(&store, &location).await.unwrap_err();
            assert_eq!(err.code(), code, "{err}");
            let expected = err.to_string();
            for size in [1, 7, 4096] {
                let (store, location) = store_with(&manifest, &broken);
                let err = load_model(&ChunkedStore(store, size), &location)
                    .await
                    .unwrap_err();
                assert_eq!(err.to_string(), expected, "chunks of {size}");
            }
        }
    }

    #[tokio::test]
    async fn sha256_mismatch() {
        let text = tiny_model_text();
        let (store, location) =
            store_with(&manifest_for(&text), &text.replace("Tree=0", "Tree=zero"));
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(matches!(err, InitError::ShaMismatch { .. }), "{err}");
        assert_eq!(err.code(), "ShaMismatch");
        assert!(
            err.to_string()
                .starts_with("sha256 mismatch for s3://bucket/models/tiny/t1/model.txt"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn corrupt_booster() {
        for corrupt in ["tree\nthis is not a booster\n", "tree\n\0", "\u{feff}"] {
            let (store, location) = store_with(&manifest_for(corrupt), corrupt);
            let err = load_model(&store, &location).await.unwrap_err();
            assert!(matches!(err, InitError::CorruptBooster { .. }), "{err}");
            assert!(
                err.to_string()
                    .starts_with("corrupt booster s3://bucket/models/tiny/t1/model.txt"),
                "{err}"
            );
        }
        let mut store = MemoryStore::default();
        let location = ModelLocation::new("bucket", "tiny", "t1");
        let bytes = vec![0xff, 0xfe, 0x00];
        let mut manifest = manifest_for("");
        manifest.model_sha256 = forecast::artifact::sha256_hex(&bytes);
        store.put(
            &location.manifest_key(),
            serde_json::to_vec(&manifest).unwrap(),
        );
        store.put(&location.model_key(), bytes);
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[tokio::test]
    async fn feature_mismatch() {
        let text = tiny_model_text();
        let renamed = ModelManifest {
            features: vec!["b".into(), "a".into()],
            ..manifest_for(&text)
        };
        let (store, location) = store_with(&renamed, &text);
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(matches!(err, InitError::FeatureMismatch { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("manifest lists [\"b\", \"a\"], booster has [\"a\", \"b\"]"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_booster_the_evaluator_does_not_reproduce_is_refused() {
        let text = tiny_model_text();
        let mut manifest = manifest_for(&text);
        assert!(manifest.check_rows.len() > 10);
        let (store, location) = store_with(&manifest, &text);
        assert!(load_model(&store, &location).await.is_ok());

        let last = manifest.check_rows.len() - 1;
        let prediction = &mut manifest.check_rows[last].prediction;
        *prediction = forecast::gbdt::ExactF64(prediction.0.next_up());
        let (store, location) = store_with(&manifest, &text);
        let err = load_model(&store, &location).await.unwrap_err();
        assert_eq!(err.code(), "CheckRowsMismatch");
        assert!(
            err.to_string().contains(&format!("check row {last}")),
            "{err}"
        );

        manifest.check_rows.clear();
        let (store, location) = store_with(&manifest, &text);
        let err = load_model(&store, &location).await.unwrap_err();
        assert_eq!(err.code(), "CheckRowsMismatch");
        assert!(err.to_string().contains("no check rows"), "{err}");
    }

    #[tokio::test]
    async fn bad_manifest() {
        let text = tiny_model_text();
        let (mut store, location) = store_with(&manifest_for(&text), &text);
        store.put(&location.manifest_key(), b"{\"name\":".to_vec());
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(matches!(err, InitError::BadManifest { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("invalid manifest s3://bucket/models/tiny/t1/manifest.json"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn missing_objects_name_the_first_one_missing() {
        let location = ModelLocation::new("bucket", "tiny", "t1");
        let err = load_model(&MemoryStore::default(), &location)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot fetch s3://bucket/models/tiny/t1/manifest.json: no such key (NoSuchKey); publish the model under that prefix or fix MODEL_URI"
        );
        let text = tiny_model_text();
        let (mut store, location) = store_with(&manifest_for(&text), &text);
        store.0.remove(&format!("bucket/{}", location.model_key()));
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot fetch s3://bucket/models/tiny/t1/model.txt: no such key"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn each_store_failure_keeps_its_kind() {
        let location = ModelLocation::new("bucket", "tiny", "t1");
        for (kind, code, hint) in [
            (
                FetchErrorKind::NoSuchBucket,
                "NoSuchBucket",
                "check the bucket name",
            ),
            (
                FetchErrorKind::AccessDenied,
                "AccessDenied",
                "allow s3:GetObject",
            ),
            (
                FetchErrorKind::Credentials,
                "Credentials",
                "AWS credentials",
            ),
            (
                FetchErrorKind::Unreachable,
                "StoreUnreachable",
                "AWS_ENDPOINT_URL_S3",
            ),
        ] {
            let store = FailingStore(FetchFailure::new(kind, "what the store said"));
            let err = load_model(&store, &location).await.unwrap_err();
            assert!(
                matches!(err, InitError::Fetch { kind: k, .. } if k == kind),
                "{err}"
            );
            assert_eq!(err.code(), code);
            assert!(err.to_string().contains("what the store said"), "{err}");
            assert!(err.to_string().contains(hint), "{err}");
        }
    }

    #[tokio::test]
    async fn loads_from_a_local_directory() {
        let dir = tempfile::tempdir().unwrap();
        let text = tiny_model_text();
        std::fs::write(dir.path().join("model.txt"), &text).unwrap();
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&manifest_for(&text)).unwrap(),
        )
        .unwrap();
        let uri = format!("file://{}/", dir.path().display());
        let (_, location) = crate::config::parse_model_uri(&uri).unwrap();
        let model = load_model(&LocalFileStore, &location).await.unwrap();
        assert_eq!(model.source_uri, uri);
        assert_eq!(model.model_etag, None);
        assert_eq!(model.booster.num_trees(), 10);

        std::fs::remove_file(dir.path().join("model.txt")).unwrap();
        let err = load_model(&LocalFileStore, &location).await.unwrap_err();
        assert_eq!(err.code(), "NoSuchKey");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot fetch {uri}model.txt")),
            "{err}"
        );
    }
}
