//! Errors of the model host: initialisation failures and per-invocation errors.

use forecast::manifest::ModelUriError;
pub use forecast::wire::{ModelError, ModelErrorType};
use lambda_runtime::Diagnostic;

/// Why an object could not be fetched, as far as the caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// The bucket does not exist.
    NoSuchBucket,
    /// The bucket exists but the key (or local file) does not.
    NoSuchKey,
    /// The store refused access to the object.
    AccessDenied,
    /// The store refused the credentials themselves.
    Credentials,
    /// The store could not be reached.
    Unreachable,
    /// Anything else the store said.
    Other,
}

impl FetchErrorKind {
    /// What to do about it, appended to the error message.
    fn hint(self) -> &'static str {
        match self {
            Self::NoSuchBucket => "; check the bucket name in MODEL_URI",
            Self::NoSuchKey => "; publish the model under that prefix or fix MODEL_URI",
            Self::AccessDenied => {
                "; allow s3:GetObject on the model prefix in the function's role (or make the file readable)"
            }
            Self::Credentials => "; check the AWS credentials the function runs with",
            Self::Unreachable => "; check the network and AWS_ENDPOINT_URL_S3",
            Self::Other => "",
        }
    }
}

/// Why the model could not be loaded at cold start. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A required environment variable is unset.
    #[error("environment variable {0} is not set")]
    MissingConfig(&'static str),
    /// An environment variable has an unusable value.
    #[error("environment variable {var}: {reason}")]
    BadConfig {
        /// The variable.
        var: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// `MODEL_URI` is not a valid `s3://` URI.
    #[error(transparent)]
    BadUri(#[from] ModelUriError),
    /// An object could not be fetched.
    #[error("cannot fetch {uri}: {reason}{}", kind.hint())]
    Fetch {
        /// The object.
        uri: String,
        /// Which failure it was.
        kind: FetchErrorKind,
        /// What the store (or the network) said.
        reason: String,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("invalid manifest {uri}: {reason}; republish the model")]
    BadManifest {
        /// The manifest object.
        uri: String,
        /// The parse error.
        reason: String,
    },
    /// `model.txt` does not hash to the manifest's `model_sha256`.
    #[error(
        "sha256 mismatch for {uri}: manifest says {expected}, object hashes to {actual}; republish model.txt and manifest.json together"
    )]
    ShaMismatch {
        /// The booster object.
        uri: String,
        /// sha256 recorded in the manifest.
        expected: String,
        /// sha256 of the fetched bytes.
        actual: String,
    },
    /// The booster text is not a valid LightGBM model.
    #[error("corrupt booster {uri}: {reason}")]
    CorruptBooster {
        /// The booster object.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid booster this host cannot serve.
    #[error("unsupported booster {uri}: {reason}")]
    UnsupportedModel {
        /// The booster object.
        uri: String,
        /// Why it cannot be served.
        reason: String,
    },
    /// The evaluator does not reproduce LightGBM's predictions of the manifest's check rows.
    #[error("unverified booster {uri}: {reason}")]
    CheckRowsMismatch {
        /// The booster object.
        uri: String,
        /// Which check failed.
        reason: String,
    },
    /// The booster's features differ from the manifest's.
    #[error(
        "feature mismatch for {uri}: manifest lists {manifest:?}, booster has {booster:?}; republish the model with its own manifest"
    )]
    FeatureMismatch {
        /// The booster object.
        uri: String,
        /// Features in the manifest.
        manifest: Vec<String>,
        /// Features in the booster.
        booster: Vec<String>,
    },
}

impl InitError {
    /// A stable name for the failure, for logs and alarms.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingConfig(_) => "MissingConfig",
            Self::BadConfig { .. } => "BadConfig",
            Self::BadUri(_) => "BadUri",
            Self::Fetch { kind, .. } => match kind {
                FetchErrorKind::NoSuchBucket => "NoSuchBucket",
                FetchErrorKind::NoSuchKey => "NoSuchKey",
                FetchErrorKind::AccessDenied => "AccessDenied",
                FetchErrorKind::Credentials => "Credentials",
                FetchErrorKind::Unreachable => "StoreUnreachable",
                FetchErrorKind::Other => "FetchFailed",
            },
            Self::BadManifest { .. } => "BadManifest",
            Self::ShaMismatch { .. } => "ShaMismatch",
            Self::CorruptBooster { .. } => "CorruptBooster",
            Self::UnsupportedModel { .. } => "UnsupportedModel",
            Self::FeatureMismatch { .. } => "FeatureMismatch",
            Self::CheckRowsMismatch { .. } => "CheckRowsMismatch",
        }
    }
}

/// The Lambda function error of a failed invocation: its kind is the `errorType`, so callers
/// can tell their own mistakes (`InvalidInput`, `SchemaMismatch`) from the host's
/// (`ModelUnavailable`, `Internal`). The kind and the body are the wire layer's, the
/// orchestrator matches the same type.
pub fn diagnostic(err: ModelError) -> Diagnostic {
    Diagnostic {
        error_type: err.kind.as_str().to_owned(),
        error_message: err.message,
    }
}

/// Quotes a caller-controlled string for an error message, shortened so that a huge name
/// cannot blow up the answer.
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_type_is_the_kind_and_the_message_is_kept() {
        for (kind, name) in [
            (ModelErrorType::InvalidInput, "InvalidInput"),
            (ModelErrorType::SchemaMismatch, "SchemaMismatch"),
            (ModelErrorType::ModelUnavailable, "ModelUnavailable"),
            (ModelErrorType::Internal, "Internal"),
            (ModelErrorType::NoDistribution, "NoDistribution"),
        ] {
            let diagnostic = diagnostic(ModelError::new(kind, "row 1 lacks column \"b\""));
            assert_eq!(diagnostic.error_type, name);
            assert_eq!(diagnostic.error_message, "row 1 lacks column \"b\"");
        }
    }

    #[test]
    fn fetch_errors_name_the_object_and_what_to_do() {
        let err = InitError::Fetch {
            uri: "s3://b/models/demand/v1/model.txt".into(),
            kind: FetchErrorKind::NoSuchKey,
            reason: "no such key (NoSuchKey)".into(),
        };
        assert_eq!(
            err.to_string(),
            "cannot fetch s3://b/models/demand/v1/model.txt: no such key (NoSuchKey); publish the model under that prefix or fix MODEL_URI"
        );
        assert_eq!(err.code(), "NoSuchKey");
    }

    #[test]
    fn every_fetch_kind_has_its_own_code() {
        let kinds = [
            FetchErrorKind::NoSuchBucket,
            FetchErrorKind::NoSuchKey,
            FetchErrorKind::AccessDenied,
            FetchErrorKind::Credentials,
            FetchErrorKind::Unreachable,
            FetchErrorKind::Other,
        ];
        let codes: std::collections::BTreeSet<_> = kinds
            .iter()
            .map(|&kind| {
                InitError::Fetch {
                    uri: String::new(),
                    kind,
                    reason: String::new(),
                }
                .code()
            })
            .collect();
        assert_eq!(codes.len(), kinds.len());
    }
}
