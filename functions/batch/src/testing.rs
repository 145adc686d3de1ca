//! A small real model for the unit tests: trained once per test binary with the trainer on
//! generated data (3 stores x 4 items x 2 years), loaded through `model::load_model`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use forecast::ModelLocation;
use model::{LoadedModel, LocalFileStore};

/// Where the model was written, and the directory kept alive for the process.
fn model_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let data = trainer::generate::GenerateConfig {
            stores: 3,
            items: 4,
            train_end: chrono::NaiveDate::from_ymd_opt(2014, 12, 31).unwrap(),
            test_days: 1,
            ..trainer::generate::GenerateConfig::default()
        };
        trainer::generate::generate(&data, &dir.join("data")).unwrap();
        let history = trainer::data::read_sales_csv(&dir.join("data/train.csv")).unwrap();
        let config = trainer::train::TrainConfig {
            version: "unit".to_owned(),
            ..trainer::train::TrainConfig::default()
        }
        .set("num_iterations", serde_json::json!(20));
        trainer::train::train(&history, &config, &dir.join("model")).unwrap();
        dir.join("model")
    })
}

/// The model's location in the local file store.
pub(crate) fn location() -> ModelLocation {
    let dir = model_dir()
        .to_string_lossy()
        .trim_start_matches('/')
        .to_owned();
    ModelLocation {
        bucket: "/".to_owned(),
        prefix: format!("{dir}/"),
    }
}

/// The model, loaded and verified.
pub(crate) async fn loaded() -> Arc<LoadedModel> {
    Arc::new(
        model::load_model(&LocalFileStore, &location())
            .await
            .unwrap(),
    )
}
