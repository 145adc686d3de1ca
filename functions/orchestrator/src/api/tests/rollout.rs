//! Model rollout, in process: the model behind the alias is swapped (all at once, or split
//! between two versions as a gradual deployment does) while requests are answered. Every
//! answer comes from one model and equals that model's own predictions; a swap costs one
//! ping however many requests notice it.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;

use super::*;
use crate::model::MAX_MODEL_CHANGES;

/// One model version: its features, the stores it was trained on, and an offset added to
/// [`score`] so that each version's predictions are its own.
struct Version {
    name: &'static str,
    features: &'static [&'static str],
    stores: u32,
    offset: f64,
}

const V1: Version = Version {
    name: "v1",
    features: ORIGINAL,
    stores: 10,
    offset: 0.0,
};
const V2: Version = Version {
    name: "v2",
    features: CALENDAR,
    stores: 11,
    offset: 1_000.0,
};
/// A retrained v1: same features and stores, other predictions.
const V1_RETRAINED: Version = Version {
    name: "v1-retrained",
    features: ORIGINAL,
    stores: 10,
    offset: 500.0,
};

/// Which version answers an invocation.
#[derive(Clone, Copy)]
enum Routing {
    /// Every invocation (a swap is a change from one `Only` to another).
    Only(usize),
    /// Every `every`-th invocation goes to `canary`, the others to `stable`, as an alias
    /// with a routing configuration does (deterministically, to keep the test repeatable).
    Split {
        stable: usize,
        canary: usize,
        every: usize,
    },
    /// Pings reach one version and predictions another: the model never settles.
    Diverging { pings: usize, predictions: usize },
}

/// An alias in front of several model versions, each checking columns like the model host.
struct Alias {
    versions: Vec<Version>,
    routing: Mutex<Routing>,
    delay: Duration,
    invocations: AtomicUsize,
    pings: AtomicUsize,
}

impl Alias {
    fn new(versions: Vec<Version>, routing: Routing) -> Self {
        Self {
            versions,
            routing: Mutex::new(routing),
            delay: Duration::ZERO,
            invocations: AtomicUsize::new(0),
            pings: AtomicUsize::new(0),
        }
    }

    fn route(&self, routing: Routing) {
        *self.routing.lock().unwrap() = routing;
    }

    fn pings(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }

    fn version_for(&self, is_ping: bool) -> &Version {
        let n = self.invocations.fetch_add(1, Ordering::SeqCst);
        let index = match *self.routing.lock().unwrap() {
            Routing::Only(index) => index,
            Routing::Split {
                stable,
                canary,
                every,
            } => {
                if n % every == every - 1 {
                    canary
                } else {
                    stable
                }
            }
            Routing::Diverging { pings, predictions } => {
                if is_ping {
                    pings
                } else {
                    predictions
                }
            }
        };
        &self.versions[index]
    }
}

/// What version `version` predicts for `request`.
fn predicted_by(version: &Version, request: &ForecastRequest) -> f64 {
    let features = Feature::resolve_all(version.features).unwrap();
    score(&features::build_row(&features, request)) + version.offset
}

impl ModelClient for Alias {
    async fn ping(&self) -> Result<PingResponse, ModelCallError> {
        let version = self.version_for(true);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.pings.fetch_add(1, Ordering::SeqCst);
        Ok(ping_answer(version.name, version.features, version.stores))
    }

    async fn predict(
        &self,
        request: &PredictionsRequest,
    ) -> Result<PredictionsResponse, ModelCallError> {
        let version = self.version_for(false);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let columns = &request.dataframe_split.columns;
        if columns != version.features {
            return Err(ModelCallError::FunctionError {
                error_type: FunctionErrorType::Model(ModelErrorType::SchemaMismatch),
                message: format!("columns {columns:?} are not the model's features"),
            });
        }
        let rows = &request.dataframe_split.data;
        Ok(PredictionsResponse {
            predictions: rows.iter().map(|row| score(row) + version.offset).collect(),
            model: identity(version.name),
            quantiles: None,
        })
    }
}

fn predict_body(date: &str, store: u32, item: u32) -> String {
    json!({"date": date, "store": store, "item": item}).to_string()
}

fn parse(date: &str, store: u32, item: u32) -> ForecastRequest {
    ForecastRequest::from_json(
        &json!({"date": date, "store": store, "item": item}),
        &["body"],
    )
    .unwrap()
}

/// The version an answer names, after checking every prediction in it is that version's.
fn assert_one_version(app: &Orchestrator<Alias>, reply: &Answer, sent: &[ForecastRequest]) {
    let name = reply.headers[MODEL_VERSION_HEADER].to_str().unwrap();
    let version = app
        .model
        .client
        .versions
        .iter()
        .find(|v| v.name == name)
        .unwrap();
    let served: Vec<f64> = if let Some(sales) = reply.body["sales"].as_f64() {
        vec![sales]
    } else {
        assert_eq!(reply.body["model"]["version"], name, "{}", reply.body);
        let rows = reply.body["predictions"]
            .as_array()
            .or_else(|| reply.body["forecast"].as_array())
            .unwrap();
        rows.iter().map(|r| r["sales"].as_f64().unwrap()).collect()
    };
    let expected: Vec<f64> = sent.iter().map(|r| predicted_by(version, r)).collect();
    assert_eq!(served, expected, "not every prediction is {name}'s");
}

#[tokio::test]
async fn after_a_swap_one_ping_and_the_answer_is_the_new_models() {
    // GIVEN an orchestrator serving v1
    let app = Orchestrator::new(
        Alias::new(vec![V1, V2], Routing::Only(0)),
        Limits::default(),
    );
    let reply = answer(&app, post_predict(&predict_body("2018-01-01", 2, 3))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_one_version(&app, &reply, &[parse("2018-01-01", 2, 3)]);
    assert_eq!(reply.headers[MODEL_VERSION_HEADER], "v1");

    // WHEN the alias moves to v2, trained on calendar features and one more store
    app.model.client.route(Routing::Only(1));

    // THEN the next request is answered by v2 with v2's features, after one more ping
    let reply = answer(&app, post_predict(&predict_body("2018-01-01", 2, 3))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers[MODEL_VERSION_HEADER], "v2");
    assert_one_version(&app, &reply, &[parse("2018-01-01", 2, 3)]);
    assert_eq!(app.model.client.pings(), 2);

    // AND store 11, which only v2 knows, is served without another ping
    let reply = answer(&app, post_predict(&predict_body("2018-06-30", 11, 1))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_one_version(&app, &reply, &[parse("2018-06-30", 11, 1)]);
    assert_eq!(app.model.client.pings(), 2);
}

#[tokio::test]
async fn a_retrained_model_with_the_same_features_is_noticed_by_its_version() {
    let app = Orchestrator::new(
        Alias::new(vec![V1, V1_RETRAINED], Routing::Only(0)),
        Limits::default(),
    );
    let series = "/v1/api/forecast?store=1&item=1&start=2018-01-01&days=30";
    let sent = decode::forecast_query(Some(series.split_once('?').unwrap().1))
        .unwrap()
        .requests();
    let reply = answer(&app, get(series)).await;
    assert_one_version(&app, &reply, &sent);

    app.model.client.route(Routing::Only(1));
    let reply = answer(&app, get(series)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["model"]["version"], "v1-retrained");
    assert_one_version(&app, &reply, &sent);
    assert_eq!(app.model.client.pings(), 2);
}

#[tokio::test]
async fn sixteen_requests_in_flight_during_a_swap_send_one_ping_and_never_mix_models() {
    // GIVEN an orchestrator serving v1, with batches split in chunks of 100 rows
    let limits = Limits {
        chunk_rows: 100,
        concurrency: 4,
        ..Limits::default()
    };
    let mut alias = Alias::new(vec![V1, V2], Routing::Only(0));
    alias.delay = Duration::from_millis(5);
    let app = Orchestrator::new(alias, limits);
    let warm = answer(&app, post_predict(&predict_body("2018-01-01", 1, 1))).await;
    assert_eq!(warm.status, 200);

    // WHEN the alias moves to v2 and 16 predicts, batches and forecasts arrive at once
    app.model.client.route(Routing::Only(1));
    let batch: Vec<(String, u32, u32)> = (0..450u32)
        .map(|i| {
            (
                format!("2018-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
                i % 10 + 1,
                i % 50 + 1,
            )
        })
        .collect();
    let borrowed: Vec<(&str, u32, u32)> =
        batch.iter().map(|(d, s, i)| (d.as_str(), *s, *i)).collect();
    let batch_sent: Vec<ForecastRequest> = batch.iter().map(|(d, s, i)| parse(d, *s, *i)).collect();
    let series_query = "store=3&item=4&start=2018-02-01&days=60";
    let series_sent = decode::forecast_query(Some(series_query))
        .unwrap()
        .requests();
    let mut calls = Vec::new();
    for client in 0..16u32 {
        let (request, sent) = match client % 3 {
            0 => (
                post_predict(&predict_body("2018-03-04", client % 10 + 1, 7)),
                vec![parse("2018-03-04", client % 10 + 1, 7)],
            ),
            1 => (
                post("/v1/api/predict/batch", &batch_body(&borrowed)),
                batch_sent.clone(),
            ),
            _ => (
                get(&format!("/v1/api/forecast?{series_query}")),
                series_sent.clone(),
            ),
        };
        calls.push(async { (answer(&app, request).await, sent) });
    }
    let replies = join_all(calls).await;

    // THEN every one is a 200 from v2 alone, equal to v2's own predictions
    for (reply, sent) in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.headers[MODEL_VERSION_HEADER], "v2");
        assert_one_version(&app, reply, sent);
    }
    // AND the model was pinged once for the swap (plus the first ping)
    assert_eq!(app.model.client.pings(), 2);
}

#[tokio::test]
async fn while_the_alias_splits_traffic_every_batch_comes_from_one_model() {
    // 1 in 10 and 1 in 5 invocations to the new model, with the same or other features.
    for (versions, every) in [
        (vec![V1, V1_RETRAINED], 10),
        (vec![V1, V2], 10),
        (vec![V1, V1_RETRAINED], 5),
        (vec![V1, V2], 5),
    ] {
        let limits = Limits {
            chunk_rows: 100,
            concurrency: 4,
            ..Limits::default()
        };
        let alias = Alias::new(
            versions,
            Routing::Split {
                stable: 0,
                canary: 1,
                every,
            },
        );
        let app = Orchestrator::new(alias, limits);
        let batch: Vec<(String, u32, u32)> = (0..1_000u32)
            .map(|i| {
                (
                    format!("2017-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
                    i % 10 + 1,
                    i % 50 + 1,
                )
            })
            .collect();
        let borrowed: Vec<(&str, u32, u32)> =
            batch.iter().map(|(d, s, i)| (d.as_str(), *s, *i)).collect();
        let sent: Vec<ForecastRequest> = batch.iter().map(|(d, s, i)| parse(d, *s, *i)).collect();
        let mut served = BTreeSet::new();
        for _ in 0..20 {
            let reply = answer(&app, post("/v1/api/predict/batch", &batch_body(&borrowed))).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_one_version(&app, &reply, &sent);
            served.insert(reply.body["model"]["version"].as_str().unwrap().to_owned());
        }
        eprintln!(
            "1 in {every} invocations to the canary: 20 batches answered by {served:?} with {} pings",
            app.model.client.pings()
        );
    }
}

#[tokio::test]
async fn a_model_that_never_settles_is_a_503_after_a_bounded_number_of_pings() {
    // Pings reach v1, predictions v1-retrained: every answer contradicts the manifest.
    let alias = Alias::new(
        vec![V1, V1_RETRAINED],
        Routing::Diverging {
            pings: 0,
            predictions: 1,
        },
    );
    let app = Orchestrator::new(alias, Limits::default());
    let reply = answer(&app, post_predict(&predict_body("2018-01-01", 1, 1))).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
    assert_eq!(
        reply.body,
        json!({"detail": "the model is unavailable, retry later"})
    );
    assert_eq!(app.model.client.pings(), 1 + MAX_MODEL_CHANGES);
}

#[tokio::test]
async fn a_store_only_the_new_model_knows_rechecks_the_manifest_at_most_once_an_interval() {
    const RECHECK: Duration = Duration::from_millis(200);
    let app = Orchestrator::new(
        Alias::new(vec![V1, V2], Routing::Only(0)),
        Limits::default(),
    )
    .with_domain_recheck_after(RECHECK);
    let store_11 = predict_body("2018-01-01", 11, 1);
    // v1 does not know store 11, and its manifest is fresh: a 422 without a ping.
    let reply = answer(&app, post_predict(&store_11)).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.body["detail"][0]["type"], "out_of_training_domain");
    assert_eq!(app.model.client.pings(), 1);

    // The alias moves to v2; the manifest is still younger than the recheck interval.
    app.model.client.route(Routing::Only(1));
    assert_eq!(answer(&app, post_predict(&store_11)).await.status, 422);
    assert_eq!(app.model.client.pings(), 1);

    // Once it is older, the first request for store 11 re-reads it and is served by v2.
    tokio::time::sleep(RECHECK).await;
    let reply = answer(&app, post_predict(&store_11)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_one_version(&app, &reply, &[parse("2018-01-01", 11, 1)]);
    assert_eq!(app.model.client.pings(), 2);

    // A stream of requests for a store no model knows costs at most one ping an interval.
    let store_12 = predict_body("2018-01-01", 12, 1);
    for interval in 0..3 {
        tokio::time::sleep(RECHECK).await;
        for _ in 0..10 {
            let reply = answer(&app, post_predict(&store_12)).await;
            assert_eq!(reply.status, 422, "{}", reply.body);
        }
        assert_eq!(app.model.client.pings(), 3 + interval);
    }
}

#[tokio::test]
async fn health_learns_a_new_model_for_the_requests_that_follow() {
    let app = Orchestrator::new(
        Alias::new(vec![V1, V2], Routing::Only(0)),
        Limits::default(),
    );
    assert_eq!(answer(&app, get("/v1/api/health")).await.status, 200);
    app.model.client.route(Routing::Only(1));
    let health = answer(&app, get("/v1/api/health")).await;
    assert_eq!(health.body["model"]["version"], "v2");
    let invocations = app.model.client.invocations.load(Ordering::SeqCst);
    let reply = answer(&app, post_predict(&predict_body("2018-01-01", 11, 2))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_one_version(&app, &reply, &[parse("2018-01-01", 11, 2)]);
    assert_eq!(
        app.model.client.invocations.load(Ordering::SeqCst),
        invocations + 1,
        "one prediction, no ping"
    );
}
