//! Configuration of the orchestrator, read once from the environment at cold start.

use std::time::Duration;

/// Typed configuration of the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrchestratorConfig {
    /// Name or ARN of the model function (`MODEL_FUNCTION_NAME`).
    pub model_function_name: String,
    /// How long one model invocation may take (`MODEL_INVOKE_TIMEOUT_MS`, default 10 s).
    pub model_timeout: Duration,
    /// Request-size and batching limits.
    pub limits: Limits,
    /// Who may call the API (`API_AUTH`: `IAM`, `JWT` or `NONE`, the default).
    pub auth: crate::auth::ApiAuth,
}

/// How much one request may carry and how batches are split for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted, in bytes (`MAX_BODY_BYTES`, default 2 MiB); larger is 413.
    pub max_body_bytes: usize,
    /// Rows per model invocation (`BATCH_CHUNK_ROWS`, default 1,000); never more than the
    /// model's own `max_rows`.
    pub chunk_rows: usize,
    /// Model invocations one request may have in flight (`BATCH_MAX_CONCURRENCY`, default 10).
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            chunk_rows: 1_000,
            concurrency: 10,
        }
    }
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
        let timeout_ms = number(
            &lookup,
            "MODEL_INVOKE_TIMEOUT_MS",
            DEFAULT_TIMEOUT_MS,
            1..=900_000,
            "milliseconds in 1..=900000",
        )?;
        let defaults = Limits::default();
        let limits = Limits {
            max_body_bytes: number(
                &lookup,
                "MAX_BODY_BYTES",
                defaults.max_body_bytes,
                1_024..=6 * 1024 * 1024,
                "bytes in 1024..=6291456 (Lambda's 6 MB payload limit)",
            )?,
            chunk_rows: number(
                &lookup,
                "BATCH_CHUNK_ROWS",
                defaults.chunk_rows,
                1..=50_000,
                "rows in 1..=50000",
            )?,
            concurrency: number(
                &lookup,
                "BATCH_MAX_CONCURRENCY",
                defaults.concurrency,
                1..=64,
                "a count in 1..=64",
            )?,
        };
        Ok(Self {
            model_function_name,
            model_timeout: Duration::from_millis(timeout_ms),
            limits,
            auth: crate::auth::ApiAuth::from_lookup(&lookup)?,
        })
    }
}

/// Reads an optional whole number within `range`, `default` when unset.
fn number<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd,
{
    let Some(value) = lookup(name) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or(ConfigError::Invalid {
            name,
            expected,
            value,
        })
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
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn reads_the_limits() {
        let config = OrchestratorConfig::from_lookup(|n| match n {
            "MODEL_FUNCTION_NAME" => Some("model".into()),
            "MAX_BODY_BYTES" => Some("4096".into()),
            "BATCH_CHUNK_ROWS" => Some(" 250 ".into()),
            "BATCH_MAX_CONCURRENCY" => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            config.limits,
            Limits {
                max_body_bytes: 4096,
                chunk_rows: 250,
                concurrency: 3
            }
        );
        for (name, value) in [
            ("BATCH_CHUNK_ROWS", "0"),
            ("BATCH_MAX_CONCURRENCY", "65"),
            ("MAX_BODY_BYTES", "lots"),
        ] {
            let err = OrchestratorConfig::from_lookup(|n| match n {
                "MODEL_FUNCTION_NAME" => Some("model".into()),
                n if n == name => Some(value.into()),
                _ => None,
            })
            .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
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
