//! Policy checks on `template.yaml` that `sam validate --lint` does not make: least-privilege
//! IAM, locked-down buckets and explicit log groups. Each rule is also shown to catch a
//! violation, so the check cannot pass vacuously.

// Test helpers panic on purpose: a template that cannot be read is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_norway::{Mapping, Value};

fn parse(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

fn resources(template: &Value) -> Vec<(String, &Value)> {
    template["Resources"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v))
                .collect()
        })
        .unwrap_or_default()
}

/// The plain text of a scalar, or of the string inside `!Sub "..."` / `!Sub ["...", {...}]`.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Tagged(tagged) if tagged.tag == "Sub" => match &tagged.value {
            Value::String(s) => Some(s.clone()),
            Value::Sequence(parts) => parts.first().and_then(text_of),
            _ => None,
        },
        _ => None,
    }
}

fn list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The name a `!Ref X` or `!GetAtt X.Arn` points to.
fn reference(value: &Value) -> Option<String> {
    let Value::Tagged(tagged) = value else {
        return None;
    };
    let target = tagged.value.as_str()?;
    match tagged.tag.to_string().trim_start_matches('!') {
        "Ref" => Some(target.to_owned()),
        "GetAtt" => target.split('.').next().map(str::to_owned),
        _ => None,
    }
}

fn check_statement(owner: &str, statement: &Value, violations: &mut Vec<String>) {
    if statement["Effect"].as_str() != Some("Allow") {
        return;
    }
    for action in list(&statement["Action"]) {
        let action = text_of(action).unwrap_or_default();
        if action == "*" || action.ends_with(":*") {
            violations.push(format!("{owner}: action {action:?} is a wildcard"));
        }
    }
    let resources = list(&statement["Resource"]);
    if resources.is_empty() {
        violations.push(format!("{owner}: statement without a resource"));
    }
    for resource in resources {
        let text = text_of(resource);
        if text.as_deref() == Some("*") {
            violations.push(format!("{owner}: resource is a bare \"*\""));
        }
        if let Some(arn) = text.filter(|t| t.contains(":s3:::")) {
            check_s3_resource(owner, statement, &arn, violations);
        }
    }
}

/// S3 access is to objects under `models/` or the batch prefix; a bucket ARN only for
/// `s3:ListBucket` restricted by an `s3:prefix` condition.
fn check_s3_resource(owner: &str, statement: &Value, arn: &str, violations: &mut Vec<String>) {
    let path = arn.split_once(":s3:::").map_or("", |(_, path)| path);
    match path.split_once('/') {
        Some((_, key)) => {
            if !(key.starts_with("models/") || key.starts_with("${BatchPrefix}")) {
                violations.push(format!(
                    "{owner}: S3 access {arn:?} is not limited to a model prefix or the batch prefix"
                ));
            }
        }
        None => {
            let list_only = list(&statement["Action"])
                .iter()
                .all(|a| text_of(a).as_deref() == Some("s3:ListBucket"));
            let prefixed = !statement["Condition"]["StringLike"]["s3:prefix"].is_null();
            if !(list_only && prefixed) {
                violations.push(format!(
                    "{owner}: bucket-wide S3 access {arn:?} is not a ListBucket limited by s3:prefix"
                ));
            }
        }
    }
}

/// Every violation of the rules, as readable sentences.
fn violations(template: &Value) -> Vec<String> {
    let all = resources(template);
    let mut violations = Vec::new();
    let log_groups: Vec<&String> = all
        .iter()
        .filter(|(_, r)| {
            r["Type"] == "AWS::Logs::LogGroup" && !r["Properties"]["RetentionInDays"].is_null()
        })
        .map(|(name, _)| name)
        .collect();

    for (name, resource) in &all {
        let properties = &resource["Properties"];
        match resource["Type"].as_str().unwrap_or_default() {
            "AWS::Serverless::StateMachine" => {
                for policy in list(&properties["Policies"]) {
                    match policy.get("Statement") {
                        Some(statements) => {
                            for statement in list(statements) {
                                check_statement(name, statement, &mut violations);
                            }
                        }
                        None => violations.push(format!(
                            "{name}: policy {policy:?} is not an inline statement list"
                        )),
                    }
                }
                if !properties["Role"].is_null() {
                    violations.push(format!("{name}: a role from outside the template"));
                }
                check_definition(name, properties, &mut violations);
            }
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
                for policy in list(&properties["Policies"]) {
                    match policy.get("Statement") {
                        Some(statements) => {
                            for statement in list(statements) {
                                check_statement(name, statement, &mut violations);
                            }
                        }
                        None => violations.push(format!(
                            "{name}: policy {policy:?} is not an inline statement list"
                        )),
                    }
                }
                let group = reference(&properties["LoggingConfig"]["LogGroup"]);
                if !group.as_ref().is_some_and(|g| log_groups.contains(&g)) {
                    violations.push(format!("{name}: no explicit log group with a retention"));
                }
            }
            "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
                let documents = list(&properties["Policies"])
                    .into_iter()
                    .map(|p| &p["PolicyDocument"])
                    .chain([&properties["PolicyDocument"]]);
                for document in documents {
                    for statement in list(&document["Statement"]) {
                        check_statement(name, statement, &mut violations);
                    }
                }
            }
            "AWS::S3::Bucket" => {
                let block = &properties["PublicAccessBlockConfiguration"];
                let all_blocked = [
                    "BlockPublicAcls",
                    "BlockPublicPolicy",
                    "IgnorePublicAcls",
                    "RestrictPublicBuckets",
                ]
                .iter()
                .all(|flag| block[*flag].as_bool() == Some(true));
                if !all_blocked {
                    violations.push(format!("{name}: public access is not fully blocked"));
                }
                let tls_only = all.iter().any(|(_, policy)| {
                    policy["Type"] == "AWS::S3::BucketPolicy"
                        && reference(&policy["Properties"]["Bucket"]).as_deref()
                            == Some(name.as_str())
                        && list(&policy["Properties"]["PolicyDocument"]["Statement"])
                            .iter()
                            .any(|s| {
                                s["Effect"] == "Deny"
                                    && s["Condition"]["Bool"]["aws:SecureTransport"].as_str()
                                        == Some("false")
                            })
                });
                if !tls_only {
                    violations.push(format!("{name}: no bucket policy denying non-TLS access"));
                }
            }
            _ => {}
        }
    }
    violations
}

/// The definition file exists, parses, and its `${...}` placeholders are exactly the
/// `DefinitionSubstitutions`.
fn check_definition(name: &str, properties: &Value, violations: &mut Vec<String>) {
    let Some(uri) = properties["DefinitionUri"].as_str() else {
        violations.push(format!("{name}: the definition is not in its own file"));
        return;
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(uri);
    let Ok(text) = std::fs::read_to_string(&path) else {
        violations.push(format!("{name}: no definition file {uri}"));
        return;
    };
    if serde_json::from_str::<serde_json::Value>(&text).is_err() {
        violations.push(format!("{name}: {uri} is not JSON"));
    }
    let mut used: Vec<&str> = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect();
    used.sort_unstable();
    used.dedup();
    let mut given: Vec<&str> = properties["DefinitionSubstitutions"]
        .as_mapping()
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    given.sort_unstable();
    if used != given {
        violations.push(format!(
            "{name}: {uri} uses substitutions {used:?} but the template gives {given:?}"
        ));
    }
}

fn project_template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    parse(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn the_template_follows_every_rule() {
    let template = project_template();
    assert_eq!(violations(&template), Vec::<String>::new());
    // The rules only mean something if the resources they look at are there.
    let types: Vec<String> = resources(&template)
        .iter()
        .filter_map(|(_, r)| r["Type"].as_str().map(str::to_owned))
        .collect();
    for expected in [
        "AWS::Serverless::Function",
        "AWS::Serverless::StateMachine",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::Logs::LogGroup",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "no {expected} in the template"
        );
    }
}

/// Returns the project template with `edit` applied to the resource `name`.
fn edited(name: &str, edit: impl FnOnce(&mut Mapping)) -> Value {
    let mut template = project_template();
    let resource = template["Resources"][name].as_mapping_mut().unwrap();
    edit(resource);
    template
}

fn assert_caught(template: &Value, needle: &str) {
    let found = violations(template);
    assert!(
        found.iter().any(|v| v.contains(needle)),
        "expected {needle:?} in {found:?}"
    );
}

#[test]
fn wildcard_actions_and_bare_resources_are_caught() {
    let statement = |action: &str, resource: &str| {
        parse(&format!(
            "Version: '2012-10-17'\nStatement:\n  - Effect: Allow\n    Action: {action}\n    Resource: '{resource}'\n"
        ))
    };
    for (action, resource, needle) in [
        ("'*'", "arn:aws:s3:::b/models/demand/*", "is a wildcard"),
        ("s3:*", "arn:aws:s3:::b/models/demand/*", "is a wildcard"),
        ("s3:GetObject", "*", "bare \"*\""),
        (
            "s3:GetObject",
            "arn:aws:s3:::b/*",
            "not limited to a model prefix",
        ),
    ] {
        let template = edited("ModelFunction", |r| {
            r.get_mut("Properties").unwrap()["Policies"] =
                Value::Sequence(vec![statement(action, resource)]);
        });
        assert_caught(&template, needle);
    }
    let template = edited("OrchestratorFunction", |r| {
        r.get_mut("Properties").unwrap()["Policies"] = parse("- AWSLambdaRole");
    });
    assert_caught(&template, "is not an inline statement list");
}

#[test]
fn open_buckets_and_missing_log_groups_are_caught() {
    let template = edited("ModelBucket", |r| {
        r.get_mut("Properties").unwrap()["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] =
            Value::Bool(false);
    });
    assert_caught(&template, "public access is not fully blocked");

    let mut template = project_template();
    template["Resources"]
        .as_mapping_mut()
        .unwrap()
        .remove("ModelBucketPolicy");
    assert_caught(&template, "no bucket policy denying non-TLS access");

    let template = edited("ModelFunction", |r| {
        r.get_mut("Properties")
            .unwrap()
            .as_mapping_mut()
            .unwrap()
            .remove("LoggingConfig");
    });
    assert_caught(&template, "ModelFunction: no explicit log group");
}

#[test]
fn the_batch_worker_and_state_machine_are_held_to_the_same_rules() {
    // The worker writing outside the batch prefix.
    let template = edited("BatchFunction", |r| {
        r.get_mut("Properties").unwrap()["Policies"] = parse(
            "- Statement:\n    - Effect: Allow\n      Action: s3:PutObject\n      Resource: arn:aws:s3:::b/*\n",
        );
    });
    assert_caught(&template, "BatchFunction: S3 access");
    // Listing the whole bucket.
    let template = edited("BatchFunction", |r| {
        r.get_mut("Properties").unwrap()["Policies"] = parse(
            "- Statement:\n    - Effect: Allow\n      Action: s3:ListBucket\n      Resource: arn:aws:s3:::b\n",
        );
    });
    assert_caught(&template, "is not a ListBucket limited by s3:prefix");
    // The state machine invoking any function, or starting any execution.
    for (action, resource) in [
        ("lambda:*", "arn:aws:lambda:us-east-1:1:function:batch"),
        ("states:StartExecution", "*"),
    ] {
        let template = edited("BatchStateMachine", |r| {
            r.get_mut("Properties").unwrap()["Policies"] = parse(&format!(
                "- Statement:\n    - Effect: Allow\n      Action: '{action}'\n      Resource: '{resource}'\n"
            ));
        });
        assert_caught(&template, "BatchStateMachine: ");
    }
    // A definition placeholder without a substitution.
    let template = edited("BatchStateMachine", |r| {
        r.get_mut("Properties").unwrap()["DefinitionSubstitutions"]
            .as_mapping_mut()
            .unwrap()
            .remove("MaxConcurrency");
    });
    assert_caught(&template, "uses substitutions");
}
