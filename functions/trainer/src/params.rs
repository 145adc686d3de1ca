//! LightGBM parameters from a file and from the command line.

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value};

/// Reads a parameter table from a `.toml` or `.json` file (a flat table of LightGBM names).
pub fn read_params_file(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            serde_json::to_value(table)?
        }
        Some("json") => {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        _ => anyhow::bail!(
            "{}: parameter files must end in .toml or .json",
            path.display()
        ),
    };
    let Value::Object(map) = value else {
        anyhow::bail!("{}: expected a table of parameters", path.display());
    };
    if let Some((key, _)) = map.iter().find(|(_, v)| v.is_object() || v.is_array()) {
        anyhow::bail!(
            "{}: parameter {key:?} must be a number, string or boolean",
            path.display()
        );
    }
    Ok(map)
}

/// Parses `key=value`; the value is read as JSON when it is valid JSON (numbers, booleans),
/// otherwise as a string (`objective=regression_l1`).
pub fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {text:?}"))?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad parameter name {key:?}"));
    }
    let value = value.trim();
    let parsed = serde_json::from_str::<Value>(value)
        .ok()
        .filter(|v| v.is_number() || v.is_boolean())
        .unwrap_or_else(|| Value::String(value.to_owned()));
    Ok((key.to_owned(), parsed))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_key_value_pairs() {
        assert_eq!(
            parse_param("num_leaves=31"),
            Ok(("num_leaves".into(), json!(31)))
        );
        assert_eq!(
            parse_param("learning_rate = 0.05"),
            Ok(("learning_rate".into(), json!(0.05)))
        );
        assert_eq!(
            parse_param("objective=poisson"),
            Ok(("objective".into(), json!("poisson")))
        );
        assert!(parse_param("no_equals").is_err());
        assert!(parse_param("bad key=1").is_err());
    }

    #[test]
    fn reads_toml_and_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("p.toml");
        std::fs::write(
            &toml_path,
            "objective = \"poisson\"\nnum_leaves = 31\nlearning_rate = 0.05\n",
        )
        .unwrap();
        let map = read_params_file(&toml_path).unwrap();
        assert_eq!(map["objective"], json!("poisson"));
        assert_eq!(map["num_leaves"], json!(31));
        let json_path = dir.path().join("p.json");
        std::fs::write(&json_path, r#"{"num_leaves": 15}"#).unwrap();
        assert_eq!(
            read_params_file(&json_path).unwrap()["num_leaves"],
            json!(15)
        );
        std::fs::write(&json_path, r#"{"nested": {"a": 1}}"#).unwrap();
        assert!(read_params_file(&json_path).is_err());
        assert!(read_params_file(&dir.path().join("p.yaml")).is_err());
    }
}

#[cfg(test)]
mod committed_files {
    use super::*;

    /// The parameter files shipped in `data/params/` stay readable.
    #[test]
    fn shipped_parameter_files_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/params");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let params = read_params_file(&path).unwrap();
            assert!(params.contains_key("objective"), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 1);
    }
}
