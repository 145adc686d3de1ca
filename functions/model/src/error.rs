//! Errors of the model host: initialisation failures and per-invocation errors.

use forecast::manifest::ModelUriError;
use forecast::wire::ModelErrorType;
use lambda_runtime::Diagnostic;

/// Why the model could not be loaded at cold start. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A required environment variable is unset.
    #[error("environment variable {0} is not set")]
    MissingConfig(&'static str),
    /// `MODEL_URI` is malformed.
    #[error(transparent)]
    BadUri(#[from] ModelUriError),
    /// An object could not be fetched.
    #[error("cannot fetch s3://{bucket}/{key}: {reason}")]
    Fetch {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What S3 (or the network) said.
        reason: String,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("invalid manifest s3://{bucket}/{key}: {reason}")]
    BadManifest {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The parse error.
        reason: String,
    },
    /// `model.txt` does not hash to the manifest's `model_sha256`.
    #[error(
        "sha256 mismatch for s3://{bucket}/{key}: manifest says {expected}, object hashes to {actual}"
    )]
    ShaMismatch {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// sha256 recorded in the manifest.
        expected: String,
        /// sha256 of the fetched bytes.
        actual: String,
    },
    /// LightGBM refused the booster text.
    #[error("corrupt booster s3://{bucket}/{key}: {reason}")]
    CorruptBooster {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// LightGBM's message.
        reason: String,
    },
    /// The booster's features differ from the manifest's.
    #[error(
        "feature mismatch for s3://{bucket}/{key}: manifest lists {manifest:?}, booster has {booster:?}"
    )]
    FeatureMismatch {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Features in the manifest.
        manifest: Vec<String>,
        /// Features in the booster.
        booster: Vec<String>,
    },
}

/// A failed invocation. The variant is reported as the Lambda `errorType`, so callers can
/// tell their own mistakes (`InvalidInput`, `SchemaMismatch`) from the host's (`Internal`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The payload cannot be decoded.
    #[error("{0}")]
    InvalidInput(String),
    /// The columns do not match the model's features.
    #[error("{0}")]
    SchemaMismatch(String),
    /// The booster failed.
    #[error("{0}")]
    Internal(String),
}

impl ModelError {
    /// The typed `errorType` of this error.
    pub fn error_type(&self) -> ModelErrorType {
        match self {
            Self::InvalidInput(_) => ModelErrorType::InvalidInput,
            Self::SchemaMismatch(_) => ModelErrorType::SchemaMismatch,
            Self::Internal(_) => ModelErrorType::Internal,
        }
    }
}

impl From<ModelError> for Diagnostic {
    fn from(err: ModelError) -> Self {
        Diagnostic {
            error_type: err.error_type().as_str().to_owned(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_type_is_the_variant_name() {
        let diagnostic = Diagnostic::from(ModelError::SchemaMismatch("missing column year".into()));
        assert_eq!(diagnostic.error_type, "SchemaMismatch");
        assert_eq!(diagnostic.error_message, "missing column year");
    }

    #[test]
    fn init_errors_name_bucket_and_key() {
        let err = InitError::Fetch {
            bucket: "b".into(),
            key: "models/demand/v1/model.txt".into(),
            reason: "NoSuchKey".into(),
        };
        assert_eq!(
            err.to_string(),
            "cannot fetch s3://b/models/demand/v1/model.txt: NoSuchKey"
        );
    }
}
