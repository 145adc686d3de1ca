//! The serving state of the Lambda: the loaded model, or why there is none.
//!
//! A cold start that cannot load its model does not exit. Lambda would answer every caller
//! with a bare `Runtime.ExitError` and re-run the whole cold start on the next request; the
//! host instead answers `ModelUnavailable` with the actionable reason (bad sha256, missing
//! key, denied access, ...), and retries the load at most once per [`RELOAD_INTERVAL`], so a
//! model published after the function was deployed is picked up without a redeploy.

use std::io::Write;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use forecast::ModelLocation;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::decode;
use crate::error::{InitError, ModelError, ModelErrorType};
use crate::handler::{ModelResponse, handle_json, respond};
use crate::loader::{LoadedModel, ObjectStore, load_model};

/// Least time between two attempts to load a model that failed to load.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// An invocation's JSON text, borrowed or owned ([`ModelHost::invoke`] drops an owned one as
/// soon as it is decoded).
pub trait Payload: Send {
    /// The JSON text.
    fn json(&self) -> &str;
}

impl Payload for &str {
    fn json(&self) -> &str {
        self
    }
}

impl Payload for &String {
    fn json(&self) -> &str {
        self
    }
}

impl Payload for String {
    fn json(&self) -> &str {
        self
    }
}

impl Payload for Box<RawValue> {
    fn json(&self) -> &str {
        self.get()
    }
}

/// The model host: a store, where the model lives in it, and the model once loaded.
#[derive(Debug)]
pub struct ModelHost<S> {
    store: S,
    location: ModelLocation,
    max_rows: usize,
    reload_interval: Duration,
    state: RwLock<State>,
    /// Held by the one invocation that retries a failed load.
    reloading: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
enum State {
    Ready(Arc<LoadedModel>),
    Unavailable { reason: String, since: Instant },
}

impl<S: ObjectStore> ModelHost<S> {
    /// Loads the model (logging one JSON line with the outcome) and returns the host, ready
    /// or not.
    pub async fn start(store: S, location: ModelLocation, max_rows: usize) -> Self {
        Self::start_with_reload_interval(store, location, max_rows, RELOAD_INTERVAL).await
    }

    /// [`ModelHost::start`] with another retry interval.
    pub async fn start_with_reload_interval(
        store: S,
        location: ModelLocation,
        max_rows: usize,
        reload_interval: Duration,
    ) -> Self {
        let state = load_state(&store, &location).await;
        Self {
            store,
            location,
            max_rows,
            reload_interval,
            state: RwLock::new(state),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The loaded model, if there is one.
    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Ready(model) => Some(Arc::clone(model)),
            State::Unavailable { .. } => None,
        }
    }

    /// Answers one invocation given as JSON text.
    pub async fn invoke<P: Payload>(&self, payload: P) -> Result<ModelResponse, ModelError> {
        let model = self.current().await?;
        let invocation = decode::decode_str(payload.json(), self.max_rows)?;
        // The text of a large batch is as big as its rows: not kept while they are scored.
        drop(payload);
        respond(&model, invocation, self.max_rows)
    }

    async fn current(&self) -> Result<Arc<LoadedModel>, ModelError> {
        if let Some(settled) = self.settled() {
            return settled;
        }
        // Only one invocation retries; the others answer at once rather than queue behind it.
        let Ok(_reloading) = self.reloading.try_lock() else {
            return self.snapshot();
        };
        // Another invocation may have finished a retry since the check above.
        if let Some(settled) = self.settled() {
            return settled;
        }
        let state = load_state(&self.store, &self.location).await;
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        self.snapshot()
    }

    /// The current state, unless it is a failure old enough to retry.
    fn settled(&self) -> Option<Result<Arc<LoadedModel>, ModelError>> {
        match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Ready(model) => Some(Ok(Arc::clone(model))),
            State::Unavailable { reason, since } if since.elapsed() < self.reload_interval => {
                Some(Err(unavailable(reason)))
            }
            State::Unavailable { .. } => None,
        }
    }

    fn snapshot(&self) -> Result<Arc<LoadedModel>, ModelError> {
        match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Ready(model) => Ok(Arc::clone(model)),
            State::Unavailable { reason, .. } => Err(unavailable(reason)),
        }
    }
}

fn unavailable(reason: &str) -> ModelError {
    ModelError::new(
        ModelErrorType::ModelUnavailable,
        format!("the model is not loaded: {reason}"),
    )
}

async fn load_state<S: ObjectStore>(store: &S, location: &ModelLocation) -> State {
    let started = Instant::now();
    match load_model(store, location).await {
        Ok(model) => {
            warm_handler(&model);
            emit(&loaded_log_line(&model));
            State::Ready(Arc::new(model))
        }
        Err(err) => {
            let source_uri = store.object_uri(&location.bucket, &location.prefix);
            emit(&failed_log_line(&err, &source_uri, started.elapsed()));
            State::Unavailable {
                reason: format!("{} ({})", err, err.code()),
                since: Instant::now(),
            }
        }
    }
}

/// Answers one single-row payload the way an invocation would (decode, predict, encode), so
/// the first real invocation does not pay for the first run of that code. The answer is
/// thrown away; a failure here would also fail that invocation, which reports it.
fn warm_handler(model: &LoadedModel) {
    let row = vec![0; model.manifest.features.len()];
    let payload = json!({"dataframe_split": {"columns": model.manifest.features, "data": [row]}});
    if let Ok(response) = handle_json(model, &payload.to_string(), 1) {
        let _ = serde_json::to_vec(&response);
    }
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The one log line that ends a successful cold start.
pub fn loaded_log_line(model: &LoadedModel) -> Value {
    json!({
        "timestamp": timestamp(),
        "level": "INFO",
        "message": "model loaded",
        "event": "model_init",
        "status": "ready",
        "model": {"name": model.manifest.name, "version": model.manifest.version},
        "model_sha256": model.manifest.model_sha256,
        "model_etag": model.model_etag,
        "source_uri": model.source_uri,
        "num_trees": model.booster.num_trees(),
        "num_features": model.booster.num_features(),
        "timings": model.timings,
    })
}

/// The one log line that ends a failed cold start.
pub fn failed_log_line(err: &InitError, source_uri: &str, elapsed: Duration) -> Value {
    json!({
        "timestamp": timestamp(),
        "level": "ERROR",
        "message": "model initialisation failed",
        "event": "model_init",
        "status": "unavailable",
        "error_code": err.code(),
        "error": err.to_string(),
        "source_uri": source_uri,
        "timings": {"total_ms": elapsed.as_secs_f64() * 1e3},
    })
}

/// Writes one JSON log line to stdout, where Lambda collects it as one CloudWatch event.
pub fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    // Logging must never fail an invocation; a closed stdout only loses the line.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use forecast::ModelManifest;

    use super::*;
    use crate::loader::{FetchFailure, StoredObject};
    use crate::testing::{MemoryStore, manifest_for, store_with, tiny_model_text};

    /// A store whose content can change between loads, counting fetches.
    struct SwappableStore {
        inner: std::sync::Mutex<MemoryStore>,
        fetches: AtomicUsize,
    }

    impl ObjectStore for SwappableStore {
        async fn get(&self, bucket: &str, key: &str) -> Result<StoredObject, FetchFailure> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let found = self
                .inner
                .lock()
                .unwrap()
                .0
                .get(&format!("{bucket}/{key}"))
                .cloned();
            found
                .map(|bytes| StoredObject { bytes, etag: None })
                .ok_or_else(|| {
                    FetchFailure::new(crate::error::FetchErrorKind::NoSuchKey, "no such key")
                })
        }
    }

    #[tokio::test]
    async fn a_ready_host_answers_predictions_and_pings() {
        let text = tiny_model_text();
        let (store, location) = store_with(&manifest_for(&text), &text);
        let host = ModelHost::start(store, location, 5).await;
        assert!(host.model().is_some());
        let answer = host.invoke(r#"{"instances": [[1, 2]]}"#).await.unwrap();
        assert!(matches!(answer, ModelResponse::Predictions(ref p) if p.predictions.len() == 1));
        let ModelResponse::Ping(ping) = host.invoke(r#"{"ping": {}}"#).await.unwrap() else {
            panic!("expected a ping answer");
        };
        assert_eq!(ping.max_rows, Some(5));
        let err = host
            .invoke(r#"{"instances": [[1,2],[1,2],[1,2],[1,2],[1,2],[1,2]]}"#)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ModelErrorType::InvalidInput);
    }

    #[tokio::test]
    async fn a_failed_load_answers_model_unavailable_and_is_retried_later() {
        let text = tiny_model_text();
        let location = ModelLocation::new("bucket", "tiny", "t1");
        let store = SwappableStore {
            inner: std::sync::Mutex::new(MemoryStore::default()),
            fetches: AtomicUsize::new(0),
        };
        let host = ModelHost::start_with_reload_interval(
            store,
            location.clone(),
            5,
            Duration::from_secs(1),
        )
        .await;
        assert!(host.model().is_none());
        let err = host.invoke(r#"{"ping": {}}"#).await.unwrap_err();
        assert_eq!(err.kind, ModelErrorType::ModelUnavailable);
        assert!(
            err.to_string().starts_with(
                "the model is not loaded: cannot fetch s3://bucket/models/tiny/t1/manifest.json: no such key"
            ),
            "{err}"
        );
        assert!(err.to_string().ends_with("(NoSuchKey)"), "{err}");
        // Within the interval nothing is fetched again.
        let fetched = host.store.fetches.load(Ordering::SeqCst);
        let _ = host.invoke(r#"{"ping": {}}"#).await.unwrap_err();
        assert_eq!(host.store.fetches.load(Ordering::SeqCst), fetched);

        // Once the model is published and the interval has passed, the next call loads it.
        {
            let mut inner = host.store.inner.lock().unwrap();
            inner.put(
                &location.manifest_key(),
                serde_json::to_vec(&manifest_for(&text)).unwrap(),
            );
            inner.put(&location.model_key(), text.into_bytes());
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let answer = host.invoke(r#"{"instances": [[1, 2]]}"#).await.unwrap();
        assert!(matches!(answer, ModelResponse::Predictions(_)));
        assert!(host.model().is_some());
    }

    #[tokio::test]
    async fn the_payload_reaches_the_host_as_the_runtime_deserialises_it() {
        // lambda_runtime decodes the event body with serde_path_to_error into the handler's
        // payload type; a raw JSON value must come through that unchanged.
        let body = br#"{"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1]]}}"#;
        let deserializer = &mut serde_json::Deserializer::from_slice(body);
        let payload: Box<serde_json::value::RawValue> =
            serde_path_to_error::deserialize(deserializer).unwrap();
        assert_eq!(payload.get().as_bytes(), body);
        let text = tiny_model_text();
        let (store, location) = store_with(&manifest_for(&text), &text);
        let host = ModelHost::start(store, location, 5).await;
        let answer = host.invoke(payload.get()).await.unwrap();
        let expected = host.model().unwrap().booster.predict(&[1.0, 2.0]).unwrap();
        assert!(matches!(answer, ModelResponse::Predictions(p) if p.predictions == expected));
    }

    #[test]
    fn the_init_log_lines_carry_timings_identity_and_sha256() {
        let text = tiny_model_text();
        let (store, location) = store_with(&manifest_for(&text), &text);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let model = runtime.block_on(load_model(&store, &location)).unwrap();
        let line = loaded_log_line(&model);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["event"], "model_init");
        assert_eq!(line["model"], json!({"name": "tiny", "version": "t1"}));
        assert_eq!(line["model_sha256"], model.manifest.model_sha256.as_str());
        assert_eq!(line["source_uri"], "s3://bucket/models/tiny/t1/");
        for timing in ["fetch_ms", "verify_ms", "parse_ms", "warmup_ms", "total_ms"] {
            assert!(
                line["timings"][timing].as_f64().is_some(),
                "{timing}: {line}"
            );
        }
        assert!(!line.to_string().contains('\n'));

        let renamed = ModelManifest {
            features: vec!["x".into(), "y".into()],
            ..manifest_for(&text)
        };
        let (store, location) = store_with(&renamed, &text);
        let err = runtime.block_on(load_model(&store, &location)).unwrap_err();
        let line = failed_log_line(
            &err,
            "s3://bucket/models/tiny/t1/",
            Duration::from_millis(3),
        );
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["error_code"], "FeatureMismatch");
        assert_eq!(line["timings"]["total_ms"], 3.0);
    }
}
