//! Why a worker invocation failed. Bad rows are not errors: they go to the error file.

use lambda_runtime::Diagnostic;

/// A failed invocation; the variant name is the Lambda `errorType`, which the state
/// machine's `Retry` and `Catch` match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The job itself is malformed (shape, prefixes, ids, dates).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A partition cannot be read as a CSV of `date,store,item[,id]` at all.
    #[error("invalid input {uri}: {reason}")]
    InvalidInput {
        /// The object.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing S3 failed.
    #[error("storage error on {uri}: {reason}")]
    Storage {
        /// The object or prefix.
        uri: String,
        /// What the store said.
        reason: String,
    },
    /// The model could not be loaded (the next invocation tries again).
    #[error("the model is not available: {0}")]
    ModelUnavailable(String),
    /// The evaluator refused the rows (a feature row of the wrong width: a bug).
    #[error("prediction failed: {0}")]
    Prediction(String),
}

impl BatchError {
    /// The variant name, reported as the Lambda `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidJob(_) => "InvalidJob",
            Self::InvalidInput { .. } => "InvalidInput",
            Self::Storage { .. } => "Storage",
            Self::ModelUnavailable(_) => "ModelUnavailable",
            Self::Prediction(_) => "Prediction",
        }
    }
}

impl From<BatchError> for Diagnostic {
    fn from(err: BatchError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_type_is_the_variant_name() {
        let err = BatchError::Storage {
            uri: "s3://b/k".into(),
            reason: "NoSuchKey".into(),
        };
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "Storage");
        assert_eq!(
            diagnostic.error_message,
            "storage error on s3://b/k: NoSuchKey"
        );
        assert_eq!(
            Diagnostic::from(BatchError::InvalidJob("x".into())).error_type,
            "InvalidJob"
        );
    }
}
