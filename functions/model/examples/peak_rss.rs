//! Peak resident memory (`VmHWM`) of the model host: cold start from a model URI, then the
//! largest requests it accepts. The Lambda runs at 128 MB, so this should stay <= 64 MB with a
//! 3000-round booster.
//!
//! ```sh
//! cargo run --release -p model --example peak_rss -- write <dir>   # trains a 3000-round booster into <dir>
//! cargo run --release -p model --example peak_rss -- file://<absolute dir>/
//! AWS_ENDPOINT_URL_S3=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
//!   AWS_REGION=us-east-1 cargo run --release -p model --example peak_rss -- s3://bucket/models/demand/v1/
//! ```

// A measuring tool: its output is the point, and a failed step ends it.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::Path;

use model::config::MODEL_URI_VAR;
use model::{ConfiguredStore, ModelConfig, ModelHost, ModelResponse};
use test_support::manifest::{ManifestSpec, write_model_dir};
use test_support::{booster, payload, synthetic};

/// A `kB` field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn report(stage: &str) {
    println!(
        "{stage:<40} VmRSS {:>6.1} MiB   VmHWM (peak) {:>6.1} MiB",
        status_mib("VmRSS:"),
        status_mib("VmHWM:")
    );
}

fn write_model(dir: &Path) {
    let rounds = 3000;
    let text = booster::sales(rounds, 10, 50, 730);
    let manifest = ManifestSpec::sales("demand", "synthetic", rounds).manifest_for(&text);
    write_model_dir(dir, &text, &manifest);
    println!(
        "wrote a {rounds}-round booster ({} bytes) to {}",
        text.len(),
        dir.display()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, dir] if command == "write" => return write_model(Path::new(dir)),
        [_] => {}
        _ => {
            println!("usage: peak_rss write <dir> | peak_rss <MODEL_URI>");
            return;
        }
    }
    let uri = args[0].clone();
    report("start");
    let config = ModelConfig::from_lookup(|name| {
        if name == MODEL_URI_VAR {
            Some(uri.clone())
        } else {
            std::env::var(name).ok()
        }
    })
    .unwrap();
    let store = ConfiguredStore::for_config(&config).await;
    let host = ModelHost::start(store, config.location, config.max_rows).await;
    let model = host.model().expect("the model loads");
    println!(
        "loaded {} trees from {} in {:.0} ms ({:?})",
        model.booster.num_trees(),
        model.source_uri,
        model.timings.total_ms,
        model.timings
    );
    report("after cold start");

    for rows in [1, 100, 10_000, config.max_rows] {
        let values = synthetic::query_rows(rows);
        for (form, payload) in [
            ("dataframe_split", payload::dataframe_split(&values)),
            ("dataframe_records", payload::dataframe_records(&values)),
        ] {
            report(&format!("{rows} rows as {form}: payload built"));
            let answer = host.invoke(&payload).await.unwrap();
            let ModelResponse::Predictions(predictions) = &answer else {
                panic!("expected predictions");
            };
            assert_eq!(predictions.predictions.len(), rows);
            let body = serde_json::to_vec(&answer).unwrap();
            report(&format!(
                "after {rows} rows as {form} ({} kB in, {} kB out)",
                payload.len() / 1024,
                body.len() / 1024
            ));
        }
    }
}
