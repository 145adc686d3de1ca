//! `demand`: generate a sales history, train a booster on it, publish the booster to S3, and
//! run batch forecasts on the Step Functions state machine.

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
        /// Features: `original`, `calendar`, or a comma-separated list of names.
        #[arg(long, default_value = "original")]
        features: String,
        /// Validation split: random:FRACTION[:SEED], time:YYYY-MM-DD or none.
        #[arg(long, default_value = "random:0.2:2018")]
        split: trainer::split::Split,
        /// After validation, retrain on all rows for the booster that is written.
        #[arg(long)]
        refit: bool,
        /// LightGBM parameters (.toml or .json) applied over the original notebook's.
        #[arg(long)]
        params: Option<PathBuf>,
        /// One LightGBM parameter, key=value; repeatable; applied last.
        #[arg(long = "param", value_parser = trainer::params::parse_param)]
        param: Vec<(String, serde_json::Value)>,
        /// Boosting rounds (default: the original 3000).
        #[arg(long)]
        rounds: Option<u32>,
        /// LightGBM threads (default: LightGBM's choice).
        #[arg(long)]
        threads: Option<u32>,
        /// The point the model answers by default: `mean` (the booster's prediction) or
        /// `smape` (the point minimising expected SMAPE under the predictive distribution).
        #[arg(long, default_value = "mean", value_parser = parse_point)]
        point: forecast::distribution::PointKind,
    },
    /// Score a model directory on a sales CSV (SMAPE, MAPE, MAE, RMSE as JSON).
    Evaluate {
        /// Directory holding model.txt and manifest.json.
        #[arg(long, default_value = "data/models/demand")]
        model_dir: PathBuf,
        /// Sales history in the schema date,store,item,sales.
        #[arg(long)]
        data: PathBuf,
    },
    /// Rolling-origin backtest of a model's recipe: fit before each window, score the window.
    Backtest {
        /// Directory of the trained model whose features, parameters and distribution are
        /// backtested.
        #[arg(long, default_value = "data/models/demand")]
        model_dir: PathBuf,
        /// Sales history in the schema date,store,item,sales.
        #[arg(long, default_value = "data/generated/train.csv")]
        data: PathBuf,
        /// Number of windows, ending on the last day of the history.
        #[arg(long, default_value_t = 4)]
        windows: u32,
        /// Days per window.
        #[arg(long, default_value_t = 90)]
        horizon: u32,
        /// Boosting rounds (default: the model's own).
        #[arg(long)]
        rounds: Option<u32>,
        /// Record the backtest in the model's manifest.json (before publishing it).
        #[arg(long)]
        record: bool,
    },
    /// SMAPE of the generator's own mean (the lambda oracle) on the days from --cutoff, for a
    /// history `demand generate` wrote with its default factors: the floor a model's SMAPE
    /// is compared with.
    Oracle {
        /// Generated sales history.
        #[arg(long, default_value = "data/generated/train.csv")]
        data: PathBuf,
        /// First scored day (YYYY-MM-DD), as in --split time:DATE.
        #[arg(long)]
        cutoff: chrono::NaiveDate,
    },
    /// SVG chart of one store-item: history, the model's forecast and P10-P90 band over its
    /// validation window and the horizon after the history.
    Plot(PlotArgs),
    /// Write a Kaggle submission (id,sales) for a test.csv (id,date,store,item).
    Predict {
        /// Directory holding model.txt and manifest.json.
        #[arg(long, default_value = "data/models/demand")]
        model_dir: PathBuf,
        /// Rows to predict.
        #[arg(long, default_value = "data/generated/test.csv")]
        test: PathBuf,
        /// Output CSV (JSON with --payload).
        #[arg(long, default_value = "submission.csv")]
        out: PathBuf,
        /// Write the model function's payload for the rows instead, as the orchestrator
        /// sends it (JSON: `dataframe_split` with the manifest's features).
        #[arg(long)]
        payload: bool,
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
    /// Batch forecasts from S3 to S3 on the Step Functions state machine.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BatchCommand {
    /// Start a job: every CSV under --input, or the whole catalogue from --start for --days.
    Submit(SubmitArgs),
    /// Show a job's status, partition counts and summary as JSON.
    Status {
        /// The execution ARN `submit` printed.
        #[arg(long)]
        execution_arn: String,
        /// Wait until the job is over.
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
}

#[derive(Debug, clap::Args)]
struct PlotArgs {
    /// Directory holding model.txt and manifest.json.
    #[arg(long, default_value = "data/models/demand")]
    model_dir: PathBuf,
    /// Sales history in the schema date,store,item,sales.
    #[arg(long, default_value = "data/generated/train.csv")]
    data: PathBuf,
    /// Store id.
    #[arg(long)]
    store: u32,
    /// Item id.
    #[arg(long)]
    item: u32,
    /// Days of history shown before the validation window.
    #[arg(long, default_value_t = 180)]
    history_days: u32,
    /// Days forecast after the last day of the history.
    #[arg(long, default_value_t = 90)]
    horizon: u32,
    /// Output SVG file.
    #[arg(long, default_value = "forecast.svg")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SubmitArgs {
    /// The state machine (stack output BatchStateMachineArn).
    #[arg(long, env = "BATCH_STATE_MACHINE_ARN")]
    state_machine_arn: String,
    /// Where results go: s3://bucket/prefix/ (under the stack's BatchPrefix).
    #[arg(long)]
    output: String,
    /// Score every .csv object (date,store,item[,id]) under s3://bucket/prefix/.
    #[arg(long, conflicts_with_all = ["start", "days"])]
    input: Option<String>,
    /// First day of a catalogue job (YYYY-MM-DD).
    #[arg(long, requires = "days")]
    start: Option<chrono::NaiveDate>,
    /// Days of a catalogue job.
    #[arg(long, requires = "start")]
    days: Option<u32>,
    /// Stores of a catalogue job, comma-separated (default: the model's training domain).
    #[arg(long, value_delimiter = ',')]
    stores: Option<Vec<u32>>,
    /// Items of a catalogue job, comma-separated (default: the model's training domain).
    #[arg(long, value_delimiter = ',')]
    items: Option<Vec<u32>>,
    /// Quantile levels in (0, 1) to answer beside each prediction, comma-separated
    /// (0.1,0.5,0.9 gives columns p10,p50,p90); the model needs a predictive distribution.
    #[arg(long, value_delimiter = ',')]
    quantiles: Option<Vec<f64>>,
    /// Rows per partition of a catalogue job.
    #[arg(long)]
    rows_per_partition: Option<u32>,
    /// Execution name (default: generated).
    #[arg(long)]
    name: Option<String>,
    /// Wait until the job is over and print its status.
    #[arg(long)]
    wait: bool,
}

impl SubmitArgs {
    fn job(&self) -> anyhow::Result<batch::Job> {
        let catalogue = match (self.start, self.days) {
            (Some(start), Some(days)) => Some(batch::job::CatalogueSpec {
                start,
                days,
                stores: self.stores.clone(),
                items: self.items.clone(),
                rows_per_partition: self.rows_per_partition,
            }),
            _ => None,
        };
        let job = batch::Job {
            output: batch::job::S3Prefix::parse(&self.output)?,
            input: self
                .input
                .as_deref()
                .map(batch::job::S3Prefix::parse)
                .transpose()?,
            catalogue,
            quantiles: self.quantiles.clone(),
        };
        job.shape()?;
        job.levels()?;
        Ok(job)
    }
}

fn parse_point(text: &str) -> Result<forecast::distribution::PointKind, String> {
    forecast::distribution::PointKind::parse(text)
        .ok_or_else(|| format!("expected mean or smape, got {text:?}"))
}

/// `demand plot`: the chart of one store-item.
fn plot(args: PlotArgs) -> anyhow::Result<()> {
    let PlotArgs { store, item, .. } = args;
    let model = trainer::evaluate::ModelDir::load(&args.model_dir)?;
    let history = trainer::data::read_sales_csv(&args.data)?;
    let last = history
        .records
        .iter()
        .map(|r| r.date)
        .max()
        .context("the history is empty")?;
    // The validation window of a time split; otherwise the last `horizon` days.
    let from = match model.manifest.split.parse::<trainer::split::Split>() {
        Ok(trainer::split::Split::Time { cutoff }) => cutoff,
        _ => last
            .checked_sub_days(chrono::Days::new(u64::from(args.horizon)))
            .context("date out of range")?,
    };
    let distribution = model
        .manifest
        .distribution
        .as_ref()
        .map_or(forecast::distribution::Predictive::POISSON, |d| {
            d.predictive
        });
    let days = trainer::plot::plot_days(
        &history.records,
        (store, item),
        trainer::plot::PlotSpan {
            from,
            history_days: args.history_days,
            horizon: args.horizon,
        },
        distribution,
        |requests| model.predict_requests(requests),
    )?;
    let title = format!(
        "store {store}, item {item}: {}/{} from {from} ({} band)",
        model.manifest.name, model.manifest.version, distribution.family
    );
    trainer::plot::write_svg(&args.out, &title, &days)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    std::io::Write::write_all(&mut stdout, b"\n")?;
    Ok(())
}

async fn run_batch(command: BatchCommand) -> anyhow::Result<()> {
    let client = trainer::batch::sfn_client_from_env().await;
    let poll = std::time::Duration::from_secs(5);
    match command {
        BatchCommand::Submit(args) => {
            let job = args.job()?;
            let arn = trainer::batch::submit(
                &client,
                &args.state_machine_arn,
                args.name.as_deref(),
                &job,
            )
            .await?;
            eprintln!("started {arn}");
            if args.wait {
                let status = trainer::batch::wait(
                    &client,
                    &arn,
                    poll,
                    std::time::Duration::from_secs(86_400),
                )
                .await?;
                print_json(&status)?;
            } else {
                print_json(&serde_json::json!({"execution_arn": arn}))?;
            }
        }
        BatchCommand::Status {
            execution_arn,
            wait,
            timeout_secs,
        } => {
            let status = if wait {
                trainer::batch::wait(
                    &client,
                    &execution_arn,
                    poll,
                    std::time::Duration::from_secs(timeout_secs),
                )
                .await?
            } else {
                trainer::batch::status(&client, &execution_arn).await?
            };
            print_json(&status)?;
        }
    }
    Ok(())
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
            features,
            split,
            refit,
            params,
            param,
            rounds,
            threads,
            point,
        } => {
            let history = trainer::data::read_sales_csv(&data)?;
            let mut config = TrainConfig {
                name,
                features: forecast::features::parse_feature_set(&features)?,
                split,
                refit,
                point,
                ..TrainConfig::default()
            };
            if let Some(version) = version {
                config.version = version;
            }
            if let Some(path) = params {
                config
                    .parameters
                    .extend(trainer::params::read_params_file(&path)?);
            }
            config.parameters.extend(param);
            if let Some(rounds) = rounds {
                config = config.set("num_iterations", rounds.into());
            }
            if let Some(threads) = threads {
                config = config.set("num_threads", threads.into());
            }
            let started = std::time::Instant::now();
            let trained = trainer::train::train(&history, &config, &out)?;
            let m = &trained.manifest;
            eprintln!(
                "trained {}/{} in {:.1} s: {} trees on {} rows; validation ({}, {} rows) {}",
                m.name,
                m.version,
                started.elapsed().as_secs_f64(),
                m.num_trees,
                m.rows.fit,
                m.split,
                m.rows.validation,
                m.metrics
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            if let Some(d) = &m.distribution {
                eprintln!(
                    "predictive distribution {} (dispersion {:.5}), ties counted half: {}",
                    d.predictive.family,
                    d.predictive.dispersion,
                    d.calibration
                        .iter()
                        .map(|s| format!(
                            "{} coverage={:.4} wQL={:.4} WAPE={:.4}",
                            forecast::distribution::level_key(s.level),
                            s.coverage,
                            s.wql,
                            s.wape
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            eprintln!(
                "wrote {} and {}",
                trained.model_path.display(),
                trained.manifest_path.display()
            );
        }
        Command::Evaluate { model_dir, data } => {
            let model = trainer::evaluate::ModelDir::load(&model_dir)?;
            let history = trainer::data::read_sales_csv(&data)?;
            let metrics = model.evaluate(&history)?;
            let report = serde_json::json!({
                "model": {"name": model.manifest.name, "version": model.manifest.version},
                "rows": history.records.len(),
                "metrics": metrics,
            });
            // The report goes to stdout, for scripts; progress and summaries go to stderr.
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            std::io::Write::write_all(&mut stdout, b"\n")?;
        }
        Command::Backtest {
            model_dir,
            data,
            windows,
            horizon,
            rounds,
            record,
        } => {
            let files = trainer::evaluate::ModelFiles::read(&model_dir)?;
            let manifest = files.manifest;
            let features = forecast::Feature::resolve_all(&manifest.features)?;
            let mut parameters = manifest.parameters.clone();
            if let Some(rounds) = rounds {
                parameters.insert("num_iterations".to_owned(), rounds.into());
            }
            let distribution = manifest
                .distribution
                .as_ref()
                .map_or(forecast::distribution::Predictive::POISSON, |d| {
                    d.predictive
                });
            let history = trainer::data::read_sales_csv(&data)?;
            let result = trainer::backtest::backtest(
                &history.records,
                &features,
                &parameters,
                distribution,
                windows,
                horizon,
                |w| {
                    eprintln!(
                        "window {}..{}: {} rows, smape {:.4}",
                        w.start,
                        w.end,
                        w.rows,
                        w.metrics.get("smape").copied().unwrap_or(f64::NAN)
                    );
                },
            )?;
            eprint!("{}", trainer::backtest::table(&result));
            if record {
                let mut manifest = manifest;
                manifest.backtest = Some(serde_json::to_value(&result)?);
                let path = model_dir.join(forecast::manifest::MANIFEST_FILE);
                trainer::train::write_atomically(&path, &serde_json::to_vec_pretty(&manifest)?)?;
                eprintln!("recorded the backtest in {}", path.display());
            }
            print_json(&result)?;
        }
        Command::Oracle { data, cutoff } => {
            let history = trainer::data::read_sales_csv(&data)?;
            let (actual, lambda): (Vec<f64>, Vec<f64>) = history
                .records
                .iter()
                .filter(|r| r.date >= cutoff)
                .map(|r| {
                    (
                        r.sales,
                        trainer::generate::expected_sales(r.date, r.store.get(), r.item.get()),
                    )
                })
                .unzip();
            anyhow::ensure!(!actual.is_empty(), "no rows on or after {cutoff}");
            let points = trainer::calibrate::smape_points(
                forecast::distribution::Predictive::POISSON,
                &lambda,
            );
            print_json(&serde_json::json!({
                "cutoff": cutoff.to_string(),
                "rows": actual.len(),
                "oracle_mean": trainer::metrics::all(&actual, &lambda),
                "oracle_smape_point": trainer::metrics::all(&actual, &points),
            }))?;
        }
        Command::Plot(args) => plot(args)?,
        Command::Predict {
            model_dir,
            test,
            out,
            payload,
        } => {
            let model = trainer::evaluate::ModelDir::load(&model_dir)?;
            let rows = trainer::data::read_test_csv(&test)?;
            if payload {
                let payload = serde_json::to_vec(&model.payload(&rows))?;
                std::fs::write(&out, payload)
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!(
                    "wrote the payload of {} rows to {}",
                    rows.len(),
                    out.display()
                );
            } else {
                let predictions = model.predict_rows(&rows)?;
                trainer::evaluate::write_submission(&out, &rows, &predictions)?;
                eprintln!("wrote {} predictions to {}", rows.len(), out.display());
            }
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
        Command::Batch { command } => run_batch(command).await?,
    }
    Ok(())
}
