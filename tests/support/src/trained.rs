//! Models trained the way `demand generate` and `demand train` make them: generated CSV
//! history, the trainer's own pipeline, a model directory with its real manifest.

use std::path::Path;

use chrono::NaiveDate;
use forecast::Feature;
use trainer::generate::GenerateConfig;
use trainer::train::{TrainConfig, TrainedModel};

/// The small generated history the tests train on: 3 stores x 4 items over 2013-2014.
pub fn small_history() -> GenerateConfig {
    GenerateConfig {
        stores: 3,
        items: 4,
        train_end: NaiveDate::from_ymd_opt(2014, 12, 31).expect("a valid date"),
        test_days: 1,
        ..GenerateConfig::default()
    }
}

/// Generates `data` into `dir/data` and trains a `rounds`-round model on `features` of it into
/// `dir/model`, with `version`.
pub fn train_generated(
    dir: &Path,
    version: &str,
    data: &GenerateConfig,
    features: &[Feature],
    rounds: u32,
) -> anyhow::Result<TrainedModel> {
    trainer::generate::generate(data, &dir.join("data"))?;
    let history = trainer::data::read_sales_csv(&dir.join("data/train.csv"))?;
    let config = TrainConfig {
        version: version.to_owned(),
        features: features.to_vec(),
        ..TrainConfig::default()
    }
    .set("num_iterations", serde_json::json!(rounds));
    trainer::train::train(&history, &config, &dir.join("model"))
}
