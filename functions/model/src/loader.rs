//! Cold-start loading: fetch manifest and booster from S3, verify, parse.

use std::future::Future;
use std::time::Instant;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use forecast::{ModelLocation, ModelManifest};
use sha2::{Digest, Sha256};

use crate::booster::SharedBooster;
use crate::error::InitError;

/// Why one object could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure(pub String);

/// Read access to an object store; one real implementation ([`S3ObjectStore`]).
pub trait ObjectStore: Send + Sync {
    /// Fetches the whole object `key` from `bucket`.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Bytes, FetchFailure>> + Send;
}

/// [`ObjectStore`] backed by `aws-sdk-s3`.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
}

impl S3ObjectStore {
    /// Builds a client from the standard AWS environment. `AWS_ENDPOINT_URL_S3` (or
    /// `AWS_ENDPOINT_URL`) points it at a local S3 server, which then gets path-style
    /// addressing since such servers do not serve `<bucket>.<host>` names.
    pub async fn from_env() -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let local = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(local)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    /// Wraps an existing client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

impl ObjectStore for S3ObjectStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, FetchFailure> {
        let output = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(describe_sdk_error)?;
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| FetchFailure(format!("reading the object body failed: {e}")))?;
        Ok(body.into_bytes())
    }
}

/// Turns an SDK error into an actionable sentence without dumping the whole error chain.
fn describe_sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E>,
) -> FetchFailure {
    let text = match &err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("NoSuchKey") => "no such key (NoSuchKey)".to_owned(),
            Some("NoSuchBucket") => "no such bucket (NoSuchBucket)".to_owned(),
            Some("AccessDenied") => {
                "access denied (AccessDenied): check the function's IAM policy".to_owned()
            }
            Some(code) => format!("S3 error {code}: {}", service.err().message().unwrap_or("")),
            None => format!("S3 answered HTTP {}", service.raw().status().as_u16()),
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!("S3 endpoint unreachable: {}", DisplayErrorContext(&err))
        }
        _ => DisplayErrorContext(&err).to_string(),
    };
    FetchFailure(text)
}

/// A verified booster with its manifest, ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    /// The manifest the booster was verified against.
    pub manifest: ModelManifest,
    /// The booster.
    pub booster: SharedBooster,
    /// `s3://bucket/prefix/` it came from.
    pub source_uri: String,
    /// When loading finished, RFC 3339 UTC.
    pub loaded_at: String,
}

/// Fetches manifest and booster concurrently, verifies sha256 and features, parses the booster.
pub async fn load_model<S: ObjectStore>(
    store: &S,
    location: &ModelLocation,
) -> Result<LoadedModel, InitError> {
    let started = Instant::now();
    let manifest_key = location.manifest_key();
    let model_key = location.model_key();
    let fetch_error = |key: &str, failure: FetchFailure| InitError::Fetch {
        bucket: location.bucket.clone(),
        key: key.to_owned(),
        reason: failure.0,
    };
    let (manifest_bytes, model_bytes) = tokio::join!(
        store.get(&location.bucket, &manifest_key),
        store.get(&location.bucket, &model_key)
    );
    let manifest_bytes = manifest_bytes.map_err(|f| fetch_error(&manifest_key, f))?;
    let model_bytes = model_bytes.map_err(|f| fetch_error(&model_key, f))?;
    let fetched = started.elapsed();

    let manifest: ModelManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| InitError::BadManifest {
            bucket: location.bucket.clone(),
            key: manifest_key.clone(),
            reason: e.to_string(),
        })?;

    let actual = hex::encode(Sha256::digest(&model_bytes));
    if !actual.eq_ignore_ascii_case(&manifest.model_sha256) {
        return Err(InitError::ShaMismatch {
            bucket: location.bucket.clone(),
            key: model_key,
            expected: manifest.model_sha256.clone(),
            actual,
        });
    }

    let corrupt = |reason: String| InitError::CorruptBooster {
        bucket: location.bucket.clone(),
        key: model_key.clone(),
        reason,
    };
    let text = std::str::from_utf8(&model_bytes)
        .map_err(|e| corrupt(format!("the model text is not UTF-8: {e}")))?;
    let booster = SharedBooster::from_model_text(text).map_err(corrupt)?;
    let booster_features = booster.feature_names().map_err(corrupt)?;
    if booster_features != manifest.features {
        return Err(InitError::FeatureMismatch {
            bucket: location.bucket.clone(),
            key: model_key,
            manifest: manifest.features.clone(),
            booster: booster_features,
        });
    }
    let loaded_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tracing::info!(
        model_name = %manifest.name,
        model_version = %manifest.version,
        model_sha256 = %actual,
        num_trees = booster.num_trees(),
        fetch_ms = fetched.as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "model loaded"
    );
    Ok(LoadedModel {
        manifest,
        booster,
        source_uri: location.uri(),
        loaded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryStore, manifest_for, tiny_model_text};

    fn store_with(manifest: &ModelManifest, model_text: &str) -> (MemoryStore, ModelLocation) {
        let location = ModelLocation::new("bucket", "tiny", "t1");
        let mut store = MemoryStore::default();
        store.0.insert(
            format!("bucket/{}", location.manifest_key()),
            Bytes::from(serde_json::to_vec(manifest).unwrap()),
        );
        store.0.insert(
            format!("bucket/{}", location.model_key()),
            Bytes::from(model_text.to_owned()),
        );
        (store, location)
    }

    #[tokio::test]
    async fn loads_a_verified_model() {
        let text = tiny_model_text();
        let (store, location) = store_with(&manifest_for(&text), &text);
        let model = load_model(&store, &location).await.unwrap();
        assert_eq!(model.booster.num_features(), 2);
        assert_eq!(model.booster.num_trees(), 10);
        assert_eq!(model.source_uri, "s3://bucket/models/tiny/t1/");
    }

    #[tokio::test]
    async fn each_failure_mode_is_a_distinct_error_naming_the_object() {
        let text = tiny_model_text();
        let good = manifest_for(&text);

        let (store, location) = store_with(&good, &text.replace("Tree=0", "Tree=zero"));
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(matches!(err, InitError::ShaMismatch { .. }), "{err}");

        let corrupt = "tree\nthis is not a booster\n";
        let (store, location) = store_with(&manifest_for(corrupt), corrupt);
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(matches!(err, InitError::CorruptBooster { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("s3://bucket/models/tiny/t1/model.txt"),
            "{err}"
        );

        let nul = "tree\n\0";
        let (store, location) = store_with(&manifest_for(nul), nul);
        assert!(matches!(
            load_model(&store, &location).await,
            Err(InitError::CorruptBooster { .. })
        ));

        let renamed = ModelManifest {
            features: vec!["b".into(), "a".into()],
            ..good.clone()
        };
        let (store, location) = store_with(&renamed, &text);
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(matches!(err, InitError::FeatureMismatch { .. }), "{err}");

        let (mut store, location) = store_with(&good, &text);
        store.0.insert(
            format!("bucket/{}", location.manifest_key()),
            Bytes::from_static(b"{\"name\":"),
        );
        let err = load_model(&store, &location).await.unwrap_err();
        assert!(matches!(err, InitError::BadManifest { .. }), "{err}");

        let empty = MemoryStore::default();
        let err = load_model(&empty, &location).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot fetch s3://bucket/models/tiny/t1/manifest.json: no such key (NoSuchKey)"
        );
    }
}
