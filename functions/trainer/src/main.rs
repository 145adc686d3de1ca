//! `demand`: generate a sales history, train a booster on it, publish the booster to S3.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use trainer::generate::GenerateConfig;
use trainer::train::TrainConfig;

#[derive(Debug, Parser)]
#[command(
    name = "demand",
    version,
    about = "Train and publish store-item demand forecasting models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a Kaggle-shaped train.csv and test.csv, deterministic from --seed.
    Generate {
        /// Output directory.
        #[arg(long, default_value = "data/generated")]
        out: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 2018)]
        seed: u64,
        /// Number of stores.
        #[arg(long, default_value_t = 10)]
        stores: u32,
        /// Number of items.
        #[arg(long, default_value_t = 50)]
        items: u32,
        /// First day of train.csv (YYYY-MM-DD).
        #[arg(long, default_value = "2013-01-01")]
        start: chrono::NaiveDate,
        /// Last day of train.csv (YYYY-MM-DD).
        #[arg(long, default_value = "2017-12-31")]
        end: chrono::NaiveDate,
        /// Days in test.csv, starting the day after --end.
        #[arg(long, default_value_t = 90)]
        test_days: u32,
    },
    /// Train a booster on a sales CSV and write model.txt + manifest.json.
    Train {
        /// Sales history in the schema date,store,item,sales.
        #[arg(long, default_value = "data/generated/train.csv")]
        data: PathBuf,
        /// Output directory for model.txt and manifest.json.
        #[arg(long, default_value = "data/models/demand")]
        out: PathBuf,
        /// Model name.
        #[arg(long, default_value = "demand")]
        name: String,
        /// Model version (default: the UTC time of the run).
        #[arg(long)]
        version: Option<String>,
        /// Boosting rounds (default: the original 3000).
        #[arg(long)]
        rounds: Option<u32>,
        /// LightGBM threads (default: LightGBM's choice).
        #[arg(long)]
        threads: Option<u32>,
    },
    /// Upload model.txt + manifest.json to s3://BUCKET/models/<name>/<version>/.
    Publish {
        /// Directory holding model.txt and manifest.json.
        #[arg(long, default_value = "data/models/demand")]
        model_dir: PathBuf,
        /// Target bucket.
        #[arg(long, env = "MODEL_BUCKET")]
        bucket: String,
        /// Create the bucket when it does not exist (for local S3 servers).
        #[arg(long)]
        create_bucket: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate {
            out,
            seed,
            stores,
            items,
            start,
            end,
            test_days,
        } => {
            let config = GenerateConfig {
                seed,
                stores,
                items,
                train_start: start,
                train_end: end,
                test_days,
            };
            let (train_rows, test_rows) = trainer::generate::generate(&config, &out)?;
            eprintln!(
                "wrote {train_rows} training rows and {test_rows} test rows to {}",
                out.display()
            );
        }
        Command::Train {
            data,
            out,
            name,
            version,
            rounds,
            threads,
        } => {
            let history = trainer::data::read_sales_csv(&data)?;
            let mut config = TrainConfig {
                name,
                rounds,
                threads,
                ..TrainConfig::default()
            };
            if let Some(version) = version {
                config.version = version;
            }
            let trained = trainer::train::train(&history, &config, &out)?;
            let m = &trained.manifest;
            eprintln!(
                "trained {}/{}: {} trees on {} rows; validation ({}) {}",
                m.name,
                m.version,
                m.num_trees,
                m.rows.fit,
                m.split,
                m.metrics
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            eprintln!(
                "wrote {} and {}",
                trained.model_path.display(),
                trained.manifest_path.display()
            );
        }
        Command::Publish {
            model_dir,
            bucket,
            create_bucket,
        } => {
            let client = trainer::publish::s3_client_from_env().await;
            if create_bucket {
                trainer::publish::ensure_bucket(&client, &bucket).await?;
            }
            let location = trainer::publish::publish(&client, &model_dir, &bucket)
                .await
                .context("publishing the model")?;
            eprintln!("published {}", location.uri());
        }
    }
    Ok(())
}
