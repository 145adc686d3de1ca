//! The worker's view of S3: stream an object, write one, list a prefix. One real
//! implementation over `aws-sdk-s3` and an in-memory one for tests.

use std::future::Future;
use std::pin::Pin;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::AsyncBufRead;

use crate::error::BatchError;

/// A readable object body, consumed incrementally.
pub type ObjectReader = Pin<Box<dyn AsyncBufRead + Send>>;

/// Object access the worker needs.
pub trait BatchStore: Send + Sync {
    /// Opens `key` for streaming reads.
    fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<ObjectReader, BatchError>> + Send;

    /// Reads a whole (small) object: plans and statuses.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<u8>, BatchError>> + Send;

    /// Writes `key`, replacing any object there.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), BatchError>> + Send;

    /// Deletes `key`; deleting a missing key succeeds.
    fn delete(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), BatchError>> + Send;

    /// Every key under `prefix`, in key order.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, BatchError>> + Send;
}

fn storage(bucket: &str, key: &str, reason: impl std::fmt::Display) -> BatchError {
    BatchError::Storage {
        uri: format!("s3://{bucket}/{key}"),
        reason: reason.to_string(),
    }
}

/// [`BatchStore`] over `aws-sdk-s3`.
#[derive(Debug, Clone)]
pub struct S3BatchStore {
    client: aws_sdk_s3::Client,
}

impl S3BatchStore {
    /// Wraps a client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }

    /// `GetObject`, its failure named by bucket and key; `open` streams the body, `get` reads it.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, BatchError> {
        self.client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| storage(bucket, key, DisplayErrorContext(e)))
    }
}

impl BatchStore for S3BatchStore {
    async fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader, BatchError> {
        let output = self.get_object(bucket, key).await?;
        Ok(Box::pin(output.body.into_async_read()))
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, BatchError> {
        let output = self.get_object(bucket, key).await?;
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| storage(bucket, key, e))?;
        Ok(bytes.to_vec())
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BatchError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| storage(bucket, key, DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BatchError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| storage(bucket, key, DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BatchError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage(bucket, prefix, DisplayErrorContext(e)))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }
}

/// [`BatchStore`] in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: std::sync::Mutex<std::collections::BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryStore {
    fn objects(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, String), Vec<u8>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores an object.
    pub fn insert(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        self.objects()
            .insert((bucket.to_owned(), key.to_owned()), body.into());
    }

    /// An object's content, if present.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.objects()
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }
}

impl BatchStore for MemoryStore {
    async fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader, BatchError> {
        let body = self.get(bucket, key).await?;
        Ok(Box::pin(std::io::Cursor::new(body)))
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, BatchError> {
        self.object(bucket, key)
            .ok_or_else(|| storage(bucket, key, "NoSuchKey"))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), BatchError> {
        self.insert(bucket, key, body);
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BatchError> {
        self.objects().remove(&(bucket.to_owned(), key.to_owned()));
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BatchError> {
        Ok(self
            .objects()
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect())
    }
}
