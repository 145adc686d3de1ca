//! Configuration of the model host, read once from the environment at cold start.

use forecast::ModelLocation;

use crate::error::InitError;

/// Environment variable holding the model's location.
pub const MODEL_URI_VAR: &str = "MODEL_URI";

/// Typed configuration of the model host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Where the booster and its manifest live.
    pub location: ModelLocation,
}

impl ModelConfig {
    /// Reads `MODEL_URI` from the process environment.
    pub fn from_env() -> Result<Self, InitError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, InitError> {
        let uri = lookup(MODEL_URI_VAR)
            .filter(|v| !v.trim().is_empty())
            .ok_or(InitError::MissingConfig(MODEL_URI_VAR))?;
        let location = ModelLocation::parse_s3_uri(uri.trim())?;
        Ok(Self { location })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_model_uri() {
        let config =
            ModelConfig::from_lookup(|_| Some("s3://models-bucket/models/demand/v1/".into()))
                .unwrap();
        assert_eq!(config.location.bucket, "models-bucket");
        assert_eq!(config.location.prefix, "models/demand/v1/");
    }

    #[test]
    fn missing_or_malformed_uri_is_an_init_error() {
        let err = ModelConfig::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains("MODEL_URI"), "{err}");
        let err = ModelConfig::from_lookup(|_| Some("bucket/key".into())).unwrap_err();
        assert!(err.to_string().contains("s3://"), "{err}");
    }
}
