//! Publishing a trained model to S3 under `models/<name>/<version>/`.

use std::path::Path;

use anyhow::Context;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use forecast::ModelLocation;

use crate::evaluate::ModelFiles;

/// The S3 client every part of the system builds the same way: from the standard AWS
/// environment, path-style against a local endpoint.
pub use model::loader::s3_client_from_env;

/// Creates `bucket` unless it exists already.
pub async fn ensure_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("creating bucket {bucket}: {}", DisplayErrorContext(&e)))?;
    Ok(())
}

/// Uploads `model.txt` and `manifest.json` from `model_dir` to `bucket`, under the name and
/// version of the manifest. The booster is checked against the manifest's sha256 and, through
/// the native evaluator, against its check rows first, and uploaded before the manifest, so a reader that finds the manifest finds its booster too.
pub async fn publish(
    client: &aws_sdk_s3::Client,
    model_dir: &Path,
    bucket: &str,
) -> anyhow::Result<ModelLocation> {
    let files = ModelFiles::read(model_dir).context("refusing to publish")?;
    files.verified_booster().context("refusing to publish")?;
    let ModelFiles {
        manifest,
        manifest_bytes,
        model_bytes,
    } = files;
    let location = ModelLocation::new(bucket, &manifest.name, &manifest.version);
    for (key, body, content_type) in [
        (location.model_key(), model_bytes, "text/plain"),
        (location.manifest_key(), manifest_bytes, "application/json"),
    ] {
        client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("uploading s3://{bucket}/{key}: {}", DisplayErrorContext(&e))
            })?;
    }
    Ok(location)
}
