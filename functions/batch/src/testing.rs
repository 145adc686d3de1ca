//! A small real model for the unit tests: trained once per test binary with the trainer on
//! the shared small generated history (3 stores x 4 items x 2 years, 20 rounds), loaded
//! through `model::load_model`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use forecast::ModelLocation;
use model::{LoadedModel, LocalFileStore};

/// Where the model was written, and the directory kept alive for the process.
fn model_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        test_support::trained::train_generated(
            &dir,
            "unit",
            &test_support::trained::small_history(),
            &forecast::features::ORIGINAL_FEATURES,
            20,
        )
        .unwrap();
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
