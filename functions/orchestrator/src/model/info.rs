//! What the orchestrator knows about the model behind the alias it invokes, and how it
//! learns it again when the model changes.
//!
//! The model's manifest (features, training domain, row limit, name and version) comes from a
//! ping. A warm orchestrator can live for hours while a new model is rolled out behind the
//! same alias, so the answer it caches is replaced whenever a model answer shows it is stale:
//! an answer named with another version, or a `SchemaMismatch` for the columns the cached
//! manifest asked for. Replacing it is single-flight: however many requests notice the change
//! at once, one ping is sent and the others wait for its answer.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use forecast::features::{self, Feature};
use forecast::manifest::TrainingDomain;
use forecast::wire::{ModelIdentity, PingResponse};

use crate::model_client::ModelCallError;

/// The model's manifest as one ping reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The features the model was trained on, in its order.
    pub features: Vec<Feature>,
    /// Their names: the columns every prediction payload carries.
    pub columns: Vec<String>,
    /// Name and version of the model.
    pub identity: ModelIdentity,
    /// The store and item ids it was trained on, when the manifest says.
    pub domain: Option<TrainingDomain>,
    /// Rows the model accepts per invocation, when it says.
    pub max_rows: Option<usize>,
    /// When the ping was answered.
    pub learnt_at: Instant,
}

impl ModelInfo {
    /// Reads a ping answer; a feature the orchestrator cannot build makes the model unusable.
    pub fn from_ping(ping: PingResponse) -> Result<Self, ModelCallError> {
        let features = Feature::resolve_all(&ping.features).map_err(|e| {
            ModelCallError::BadResponse(format!("the model needs a feature we cannot build: {e}"))
        })?;
        Ok(Self {
            columns: features::names(&features),
            features,
            identity: ping.model,
            domain: ping.domain,
            max_rows: ping.max_rows,
            learnt_at: Instant::now(),
        })
    }
}

/// The manifest of the model being served, replaced single-flight when it goes stale.
#[derive(Debug, Default)]
pub struct ModelCache {
    current: RwLock<Option<Arc<ModelInfo>>>,
    /// Held while one caller pings; the others queue behind it and reuse its answer.
    refreshing: tokio::sync::Mutex<()>,
}

/// What [`ModelCache::refresh`] did.
#[derive(Debug)]
pub struct Refreshed {
    /// The manifest to use from now on.
    pub info: Arc<ModelInfo>,
    /// Whether this call pinged the model (false: another caller's answer was reused).
    pub pinged: bool,
}

impl ModelCache {
    /// The manifest in use, if the model was ever reached.
    pub fn current(&self) -> Option<Arc<ModelInfo>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the manifest with `stale`'s successor. `stale` is what the caller used (None:
    /// it had nothing). When the manifest in use is no longer `stale` (another caller replaced
    /// it, or it was learnt while the caller waited), that replacement is returned without a
    /// ping; otherwise `ping` is awaited, by one caller at a time.
    pub async fn refresh<F, Fut>(
        &self,
        stale: Option<&Arc<ModelInfo>>,
        ping: F,
    ) -> Result<Refreshed, ModelCallError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PingResponse, ModelCallError>>,
    {
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(current) = self.current() {
            let replaced = stale.is_none_or(|stale| !Arc::ptr_eq(stale, &current));
            if replaced {
                return Ok(Refreshed {
                    info: current,
                    pinged: false,
                });
            }
        }
        let info = Arc::new(ModelInfo::from_ping(ping().await?)?);
        self.store(Arc::clone(&info));
        Ok(Refreshed { info, pinged: true })
    }

    /// Takes a manifest learnt elsewhere (a health check's ping) when it names another model
    /// than the one in use, or none is in use.
    pub fn learn(&self, info: ModelInfo) {
        let known = self.current();
        if known.is_none_or(|known| known.identity != info.identity) {
            self.store(Arc::new(info));
        }
    }

    fn store(&self, info: Arc<ModelInfo>) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = current.as_ref()
            && previous.identity != info.identity
        {
            tracing::info!(
                previous = %previous.identity.version,
                current = %info.identity.version,
                features = ?info.columns,
                "the model changed; serving the new one"
            );
        }
        *current = Some(info);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn ping(version: &str, features: &[&str]) -> PingResponse {
        serde_json::from_value(json!({
            "status": "ready",
            "model": {"name": "demand", "version": version},
            "features": features,
            "num_trees": 1,
            "source_uri": "s3://b/models/demand/v/",
            "model_sha256": "00",
            "loaded_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    const ORIGINAL: [&str; 5] = ["store", "item", "month", "day", "year"];

    #[tokio::test]
    async fn the_first_refresh_pings_and_later_ones_with_nothing_stale_do_not() {
        let cache = ModelCache::default();
        assert!(cache.current().is_none());
        let first = cache
            .refresh(None, || async { Ok(ping("v1", &ORIGINAL)) })
            .await
            .unwrap();
        assert!(first.pinged);
        let again = cache
            .refresh(None, || async { panic!("must not ping") })
            .await
            .unwrap();
        assert!(!again.pinged && Arc::ptr_eq(&first.info, &again.info));
    }

    #[tokio::test]
    async fn sixteen_callers_noticing_the_same_stale_model_send_one_ping() {
        let cache = Arc::new(ModelCache::default());
        let v1 = cache
            .refresh(None, || async { Ok(ping("v1", &ORIGINAL)) })
            .await
            .unwrap()
            .info;
        let pings = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..16 {
            let (cache, pings, v1) = (Arc::clone(&cache), Arc::clone(&pings), Arc::clone(&v1));
            callers.push(tokio::spawn(async move {
                cache
                    .refresh(Some(&v1), || async move {
                        pings.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(ping("v2", &["store", "item", "dayofyear", "quarter"]))
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut versions = Vec::new();
        for caller in callers {
            versions.push(caller.await.unwrap().info.identity.version.clone());
        }
        assert_eq!(pings.load(Ordering::SeqCst), 1);
        assert!(versions.iter().all(|v| v == "v2"), "{versions:?}");
        assert_eq!(cache.current().unwrap().columns[2], "dayofyear");
    }

    #[tokio::test]
    async fn a_failed_ping_keeps_the_manifest_and_the_next_caller_tries_again() {
        let cache = ModelCache::default();
        let v1 = cache
            .refresh(None, || async { Ok(ping("v1", &ORIGINAL)) })
            .await
            .unwrap()
            .info;
        let failed = cache
            .refresh(Some(&v1), || async { Err(ModelCallError::Timeout) })
            .await;
        assert_eq!(failed.unwrap_err(), ModelCallError::Timeout);
        assert!(Arc::ptr_eq(&cache.current().unwrap(), &v1));
        let retried = cache
            .refresh(Some(&v1), || async { Ok(ping("v2", &ORIGINAL)) })
            .await
            .unwrap();
        assert!(retried.pinged);
        assert_eq!(retried.info.identity.version, "v2");
    }

    #[tokio::test]
    async fn a_model_needing_an_unknown_feature_is_not_learnt() {
        let cache = ModelCache::default();
        let err = cache
            .refresh(None, || async { Ok(ping("v9", &["store", "moon_phase"])) })
            .await
            .unwrap_err();
        assert!(matches!(err, ModelCallError::BadResponse(_)), "{err}");
        assert!(cache.current().is_none());
    }

    #[tokio::test]
    async fn a_health_ping_replaces_the_manifest_only_when_the_model_changed() {
        let cache = ModelCache::default();
        cache.learn(ModelInfo::from_ping(ping("v1", &ORIGINAL)).unwrap());
        let v1 = cache.current().unwrap();
        cache.learn(ModelInfo::from_ping(ping("v1", &ORIGINAL)).unwrap());
        assert!(Arc::ptr_eq(&cache.current().unwrap(), &v1));
        cache.learn(ModelInfo::from_ping(ping("v2", &ORIGINAL)).unwrap());
        assert_eq!(cache.current().unwrap().identity.version, "v2");
    }
}
