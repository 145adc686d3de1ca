//! Configuration of the model host, read once from the environment at cold start.

use crate::decode::DEFAULT_MAX_ROWS;
use forecast::ModelLocation;

use crate::error::InitError;

/// Environment variable holding the model's location.
pub const MODEL_URI_VAR: &str = "MODEL_URI";
/// Environment variable capping the rows of one request.
pub const MAX_ROWS_VAR: &str = "MODEL_MAX_ROWS";
/// Highest accepted `MODEL_MAX_ROWS`: beyond it a request of five features no longer fits
/// Lambda's 6 MB synchronous payload anyway.
pub const MAX_ROWS_CEILING: usize = 1_000_000;

/// Which kind of store holds the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// `s3://bucket/prefix/`.
    S3,
    /// `file:///abs/dir/`, for offline experiments: the location's bucket is `/` and its
    /// prefix the directory without its leading slash.
    LocalFile,
}

/// Typed configuration of the model host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Which store the model lives in.
    pub source: ModelSource,
    /// Where the booster and its manifest live in that store.
    pub location: ModelLocation,
    /// Most rows one request may carry.
    pub max_rows: usize,
}

impl ModelConfig {
    /// Reads `MODEL_URI` and `MODEL_MAX_ROWS` from the process environment.
    pub fn from_env() -> Result<Self, InitError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, InitError> {
        let uri = lookup(MODEL_URI_VAR)
            .filter(|v| !v.trim().is_empty())
            .ok_or(InitError::MissingConfig(MODEL_URI_VAR))?;
        let (source, location) = parse_model_uri(uri.trim())?;
        let max_rows = match lookup(MAX_ROWS_VAR).filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_MAX_ROWS,
            Some(value) => value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_ROWS_CEILING).contains(n))
                .ok_or_else(|| InitError::BadConfig {
                    var: MAX_ROWS_VAR,
                    reason: format!("{value:?} is not a whole number from 1 to {MAX_ROWS_CEILING}"),
                })?,
        };
        Ok(Self {
            source,
            location,
            max_rows,
        })
    }
}

/// Parses `s3://bucket/prefix/` or `file:///absolute/dir/`.
pub fn parse_model_uri(uri: &str) -> Result<(ModelSource, ModelLocation), InitError> {
    let Some(path) = uri.strip_prefix("file://") else {
        return Ok((ModelSource::S3, ModelLocation::parse_s3_uri(uri)?));
    };
    let bad = |reason: &str| InitError::BadConfig {
        var: MODEL_URI_VAR,
        reason: format!("{uri:?} {reason} (expected file:///absolute/dir/)"),
    };
    if !path.starts_with('/') {
        return Err(bad("does not hold an absolute path"));
    }
    let dir = path.trim_matches('/');
    if dir.is_empty() {
        return Err(bad("names the root directory"));
    }
    Ok((
        ModelSource::LocalFile,
        ModelLocation {
            bucket: "/".to_owned(),
            prefix: format!("{dir}/"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(uri: &str, max_rows: Option<&str>) -> Result<ModelConfig, InitError> {
        ModelConfig::from_lookup(|name| match name {
            MODEL_URI_VAR => Some(uri.to_owned()),
            MAX_ROWS_VAR => max_rows.map(str::to_owned),
            _ => None,
        })
    }

    #[test]
    fn reads_an_s3_model_uri() {
        let config = config("s3://models-bucket/models/demand/v1/", None).unwrap();
        assert_eq!(config.source, ModelSource::S3);
        assert_eq!(config.location.bucket, "models-bucket");
        assert_eq!(config.location.prefix, "models/demand/v1/");
        assert_eq!(config.max_rows, DEFAULT_MAX_ROWS);
    }

    #[test]
    fn reads_a_file_uri_for_offline_experiments() {
        let config = config("file:///tmp/models/demand/v1", None).unwrap();
        assert_eq!(config.source, ModelSource::LocalFile);
        assert_eq!(config.location.bucket, "/");
        assert_eq!(config.location.prefix, "tmp/models/demand/v1/");
        for bad in ["file://relative/dir/", "file:///", "file://"] {
            let err = ModelConfig::from_lookup(|_| Some(bad.into())).unwrap_err();
            assert!(err.to_string().contains("file:///absolute/dir/"), "{err}");
        }
    }

    #[test]
    fn reads_the_row_limit() {
        assert_eq!(config("s3://b/p/", Some("100")).unwrap().max_rows, 100);
        for bad in ["0", "-1", "lots", "1000001"] {
            let err = config("s3://b/p/", Some(bad)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("environment variable MODEL_MAX_ROWS"),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_or_malformed_uri_is_an_init_error() {
        let err = ModelConfig::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains("MODEL_URI"), "{err}");
        let err = ModelConfig::from_lookup(|_| Some("bucket/key".into())).unwrap_err();
        assert!(err.to_string().contains("s3://"), "{err}");
    }
}
