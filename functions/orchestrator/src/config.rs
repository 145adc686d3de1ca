//! Configuration of the orchestrator, read once from the environment at cold start.

use std::time::Duration;

/// Typed configuration of the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrchestratorConfig {
    /// Name or ARN of the model function (`MODEL_FUNCTION_NAME`).
    pub model_function_name: String,
    /// How long one model invocation may take (`MODEL_INVOKE_TIMEOUT_MS`, default 10 s).
    pub model_timeout: Duration,
}

/// A missing or malformed setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("environment variable {name} must be {expected}, got {value:?}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        value: String,
    },
}

const DEFAULT_TIMEOUT_MS: u64 = 10_000;

impl OrchestratorConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let model_function_name = lookup("MODEL_FUNCTION_NAME")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing("MODEL_FUNCTION_NAME"))?;
        let model_timeout = match lookup("MODEL_INVOKE_TIMEOUT_MS") {
            None => Duration::from_millis(DEFAULT_TIMEOUT_MS),
            Some(value) => value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or(ConfigError::Invalid {
                    name: "MODEL_INVOKE_TIMEOUT_MS",
                    expected: "a positive number of milliseconds",
                    value,
                })?,
        };
        Ok(Self {
            model_function_name,
            model_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_function_name_and_default_timeout() {
        let config = OrchestratorConfig::from_lookup(|n| {
            (n == "MODEL_FUNCTION_NAME").then(|| "model".into())
        })
        .unwrap();
        assert_eq!(config.model_function_name, "model");
        assert_eq!(config.model_timeout, Duration::from_secs(10));
    }

    #[test]
    fn rejects_missing_name_and_bad_timeout() {
        assert_eq!(
            OrchestratorConfig::from_lookup(|_| None),
            Err(ConfigError::Missing("MODEL_FUNCTION_NAME"))
        );
        let err = OrchestratorConfig::from_lookup(|n| match n {
            "MODEL_FUNCTION_NAME" => Some("model".into()),
            _ => Some("soon".into()),
        })
        .unwrap_err();
        assert!(err.to_string().contains("MODEL_INVOKE_TIMEOUT_MS"));
    }
}
