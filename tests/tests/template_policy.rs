//! Policy checks on `template.yaml` that `sam validate --lint` does not make: least-privilege
//! IAM (a function is invoked through its alias only), locked-down buckets, explicit log
//! groups, and gradual deployments rolled back by the template's own alarms. Each rule is also
//! shown to catch a violation, so the check cannot pass vacuously.

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

/// A value as the template writes it: its text, or `!Tag target` for other intrinsics.
fn describe(value: &Value) -> String {
    match (text_of(value), value) {
        (Some(text), _) => text,
        (None, Value::Tagged(tagged)) => match tagged.value.as_str() {
            Some(target) => format!("{} {target}", tagged.tag),
            None => format!("{} ...", tagged.tag),
        },
        (None, other) => format!("{other:?}"),
    }
}

/// The values `text` can take: each allowed value (else the default) of a `${Parameter}` in
/// it substituted, or `text` itself.
fn expand_parameter(template: &Value, text: &str) -> Vec<String> {
    let Some((before, rest)) = text.split_once("${") else {
        return vec![text.to_owned()];
    };
    let Some((parameter, after)) = rest.split_once('}') else {
        return vec![text.to_owned()];
    };
    let declared = &template["Parameters"][parameter];
    let values: Vec<String> = match declared["AllowedValues"].as_sequence() {
        Some(allowed) => allowed.iter().filter_map(text_of).collect(),
        None => text_of(&declared["Default"]).into_iter().collect(),
    };
    values
        .into_iter()
        .map(|value| format!("{before}{value}{after}"))
        .collect()
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

/// `AutoPublishAlias` of every function in the template, by logical id.
fn aliases(template: &Value) -> Vec<(String, String)> {
    resources(template)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .filter_map(|(name, r)| {
            let alias = r["Properties"]["AutoPublishAlias"].as_str()?;
            Some((name, alias.to_owned()))
        })
        .collect()
}

/// Whether `text` names a function of the template qualified by its alias: `${F}:alias`
/// (`arn` false) or `${F.Arn}:alias` (`arn` true).
fn is_alias_of_a_function(text: &str, aliases: &[(String, String)], arn: bool) -> bool {
    aliases.iter().any(|(function, alias)| {
        let target = if arn {
            format!("${{{function}.Arn}}:{alias}")
        } else {
            format!("${{{function}}}:{alias}")
        };
        text == target
    })
}

fn check_statement(
    owner: &str,
    statement: &Value,
    aliases: &[(String, String)],
    violations: &mut Vec<String>,
) {
    if statement["Effect"].as_str() != Some("Allow") {
        return;
    }
    let mut invokes = false;
    for action in values_of(owner, &statement["Action"], violations) {
        if action == "*" || action.ends_with(":*") {
            violations.push(format!("{owner}: action {action:?} is a wildcard"));
        }
        invokes |= action == "lambda:InvokeFunction";
    }
    let resources = list(&statement["Resource"]);
    // Invoking a function unqualified runs $LATEST, which no deployment shifts or rolls back.
    for resource in resources.iter().filter(|_| invokes) {
        let text = describe(resource);
        let every_value_an_alias = resolve(resource)
            .is_ok_and(|all| all.iter().all(|t| is_alias_of_a_function(t, aliases, true)));
        if !every_value_an_alias {
            violations.push(format!(
                "{owner}: may invoke {text}, not only a function's AutoPublishAlias"
            ));
        }
    }
    if resources.is_empty() {
        violations.push(format!("{owner}: statement without a resource"));
    }
    for text in values_of(owner, &statement["Resource"], violations) {
        if text == "*" {
            violations.push(format!("{owner}: resource is a bare \"*\""));
        }
        check_attribute_resource(owner, &text, aliases, violations);
        if text.contains(":s3:::") {
            check_s3_resource(owner, statement, &text, violations);
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

/// Every text an IAM value can take once CloudFormation has resolved it, with references kept
/// as `${Name}` / `${Name.Attribute}` (as `!Sub` writes them): plain text; `!Sub` with its
/// variables substituted; `!Join` of every combination of its parts; both branches of `!If`
/// (`AWS::NoValue` is no value); `!Ref` and `!GetAtt`. Anything else (`!Select`,
/// `!FindInMap`, `!ImportValue`, ...) cannot be checked here, and is refused rather than skipped.
fn resolve(value: &Value) -> Result<Vec<String>, String> {
    let (tag, inner) = match value {
        Value::String(s) => return Ok(vec![s.clone()]),
        Value::Number(n) => return Ok(vec![n.to_string()]),
        Value::Bool(b) => return Ok(vec![b.to_string()]),
        Value::Tagged(tagged) => (
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        ),
        // The long form, `{"Fn::Join": [...]}` or `{"Ref": "X"}`.
        Value::Mapping(m) if m.len() == 1 => match m.iter().next() {
            Some((Value::String(key), inner)) if key == "Ref" || key.starts_with("Fn::") => {
                (key.trim_start_matches("Fn::").to_owned(), inner)
            }
            _ => return Err(format!("{value:?}")),
        },
        other => return Err(format!("{other:?}")),
    };
    let parts = |value: &Value| -> Result<Vec<Value>, String> {
        value
            .as_sequence()
            .cloned()
            .ok_or_else(|| format!("!{tag} {value:?}"))
    };
    match tag.as_str() {
        "Ref" if inner.as_str() == Some("AWS::NoValue") => Ok(Vec::new()),
        "Ref" => inner
            .as_str()
            .map(|name| vec![format!("${{{name}}}")])
            .ok_or_else(|| format!("!Ref {inner:?}")),
        "GetAtt" => match inner {
            Value::String(target) => Ok(vec![format!("${{{target}}}")]),
            Value::Sequence(path) => {
                let path: Vec<&str> = path.iter().filter_map(Value::as_str).collect();
                Ok(vec![format!("${{{}}}", path.join("."))])
            }
            other => Err(format!("!GetAtt {other:?}")),
        },
        "Sub" => {
            let (text, variables) = match inner {
                Value::String(text) => (text.clone(), Mapping::new()),
                Value::Sequence(pair) => match pair.as_slice() {
                    [Value::String(text), Value::Mapping(variables)] => {
                        (text.clone(), variables.clone())
                    }
                    _ => return Err(format!("!Sub {inner:?}")),
                },
                other => return Err(format!("!Sub {other:?}")),
            };
            let mut texts = vec![text];
            for (name, value) in &variables {
                let name = name.as_str().ok_or_else(|| format!("!Sub {inner:?}"))?;
                let placeholder = format!("${{{name}}}");
                let values = resolve(value)?;
                texts = texts
                    .iter()
                    .flat_map(|t| values.iter().map(|v| t.replace(&placeholder, v)))
                    .collect();
            }
            Ok(texts)
        }
        "Join" => {
            let pair = parts(inner)?;
            let [delimiter, items] = pair.as_slice() else {
                return Err(format!("!Join {inner:?}"));
            };
            let delimiter = delimiter
                .as_str()
                .ok_or_else(|| format!("!Join {inner:?}"))?;
            let mut texts = vec![String::new()];
            for (i, item) in parts(items)?.iter().enumerate() {
                let values = resolve(item)?;
                texts = texts
                    .iter()
                    .flat_map(|t| {
                        values.iter().map(move |v| {
                            if i == 0 {
                                v.clone()
                            } else {
                                format!("{t}{delimiter}{v}")
                            }
                        })
                    })
                    .collect();
            }
            Ok(texts)
        }
        "If" => {
            let branches = parts(inner)?;
            let [_, when_true, when_false] = branches.as_slice() else {
                return Err(format!("!If {inner:?}"));
            };
            let mut texts = resolve(when_true)?;
            texts.extend(resolve(when_false)?);
            Ok(texts)
        }
        _ => Err(format!("!{tag} {inner:?}")),
    }
}

/// The resolved texts of an `Action` or `Resource` (one value or a list); a value that cannot
/// be resolved is a violation, so no statement is passed unread.
fn values_of(owner: &str, value: &Value, violations: &mut Vec<String>) -> Vec<String> {
    let mut texts = Vec::new();
    for item in list(value) {
        match resolve(item) {
            Ok(values) => texts.extend(values),
            Err(unresolved) => violations.push(format!(
                "{owner}: cannot check {unresolved}; write it as text, !Sub, !Ref, !GetAtt, !Join or !If"
            )),
        }
    }
    texts
}

/// A resource written as another resource's ARN (`!GetAtt X.Arn`, `${X.Arn}`) has a scope
/// this check cannot see (a whole bucket, a whole table); only a function's alias, which the
/// invoke rule checks, may be named that way.
fn check_attribute_resource(
    owner: &str,
    text: &str,
    aliases: &[(String, String)],
    violations: &mut Vec<String>,
) {
    let attribute = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .find(|name| name.contains('.'));
    if let Some(attribute) = attribute
        && !is_alias_of_a_function(text, aliases, true)
    {
        violations.push(format!(
            "{owner}: resource {text} is the {attribute} of a resource, whose scope cannot be checked; write the ARN out"
        ));
    }
}

/// Permissions come only from inline statements on the function or state machine itself: a
/// managed policy (`ManagedPolicyArns`, an `AWS::IAM::ManagedPolicy`) grants what this check
/// never reads, and a function's `Role:` replaces its checked `Policies` unless the role is
/// one of the template's own, whose inline policies are checked.
fn check_roles_and_managed_policies(all: &[(String, &Value)], violations: &mut Vec<String>) {
    let template_roles: Vec<&String> = all
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::IAM::Role")
        .map(|(name, _)| name)
        .collect();
    for (name, resource) in all {
        let properties = &resource["Properties"];
        let managed = list(&properties["ManagedPolicyArns"]);
        if !managed.is_empty() {
            let arns: Vec<String> = managed.iter().map(|m| describe(m)).collect();
            violations.push(format!(
                "{name}: managed policies {arns:?} are not inline statements"
            ));
        }
        let kind = resource["Type"].as_str().unwrap_or_default();
        if kind == "AWS::IAM::ManagedPolicy" {
            violations.push(format!("{name}: a managed policy, not an inline statement"));
        }
        let is_function = kind == "AWS::Serverless::Function" || kind == "AWS::Lambda::Function";
        if is_function && !properties["Role"].is_null() {
            let role = reference(&properties["Role"]);
            if !role.as_ref().is_some_and(|r| template_roles.contains(&r)) {
                violations.push(format!(
                    "{name}: runs as role {}, not one of the template's roles",
                    describe(&properties["Role"])
                ));
            }
        }
    }
}

/// Every violation of the rules, as readable sentences.
fn violations(template: &Value) -> Vec<String> {
    let all = resources(template);
    let aliases = aliases(template);
    let alarms: Vec<&String> = all
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(name, _)| name)
        .collect();
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
                                check_statement(name, statement, &aliases, &mut violations);
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
                                check_statement(name, statement, &aliases, &mut violations);
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
                check_deployment(
                    template,
                    name,
                    properties,
                    &aliases,
                    &alarms,
                    &mut violations,
                );
            }
            "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
                let documents = list(&properties["Policies"])
                    .into_iter()
                    .map(|p| &p["PolicyDocument"])
                    .chain([&properties["PolicyDocument"]]);
                for document in documents {
                    for statement in list(&document["Statement"]) {
                        check_statement(name, statement, &aliases, &mut violations);
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
    check_roles_and_managed_policies(&all, &mut violations);
    violations
}

/// A function is published with an alias and shifted to a new version gradually (canary or
/// linear), rolled back by alarms the template defines; a function it invokes by name, it
/// invokes through that function's alias.
fn check_deployment(
    template: &Value,
    name: &str,
    properties: &Value,
    aliases: &[(String, String)],
    alarms: &[&String],
    violations: &mut Vec<String>,
) {
    if properties["AutoPublishAlias"].as_str().is_none() {
        violations.push(format!("{name}: no AutoPublishAlias"));
        return;
    }
    let preference = &properties["DeploymentPreference"];
    let kinds = expand_parameter(template, &describe(&preference["Type"]));
    for kind in &kinds {
        if !(kind.contains("Canary") || kind.contains("Linear")) {
            violations.push(format!(
                "{name}: deployment type {kind:?} is not a canary or linear shift"
            ));
        }
    }
    if kinds.is_empty() {
        violations.push(format!("{name}: no deployment type"));
    }
    let rollback = list(&preference["Alarms"]);
    if rollback.is_empty() {
        violations.push(format!("{name}: no alarm rolls a deployment back"));
    }
    for alarm in rollback {
        let target = reference(alarm);
        if !target.as_ref().is_some_and(|t| alarms.contains(&t)) {
            violations.push(format!(
                "{name}: rollback alarm {alarm:?} is not an alarm of the template"
            ));
        }
    }
    let invoked = &properties["Environment"]["Variables"]["MODEL_FUNCTION_NAME"];
    if !invoked.is_null() {
        let text = describe(invoked);
        if !is_alias_of_a_function(&text, aliases, false) {
            violations.push(format!(
                "{name}: invokes {text}, not a function's AutoPublishAlias"
            ));
        }
    }
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
fn the_orchestrator_invokes_the_model_alias_and_both_functions_deploy_by_canary() {
    let template = project_template();
    let orchestrator = &template["Resources"]["OrchestratorFunction"]["Properties"];
    let model = &template["Resources"]["ModelFunction"]["Properties"];
    let alias = model["AutoPublishAlias"].as_str().unwrap();
    assert_eq!(
        text_of(&orchestrator["Environment"]["Variables"]["MODEL_FUNCTION_NAME"]),
        Some(format!("${{ModelFunction}}:{alias}"))
    );
    let invoke: Vec<String> = list(&orchestrator["Policies"][0]["Statement"])
        .into_iter()
        .filter(|s| s["Action"][0] == "lambda:InvokeFunction")
        .flat_map(|s| list(&s["Resource"]).into_iter().filter_map(text_of))
        .collect();
    assert_eq!(invoke, [format!("${{ModelFunction.Arn}}:{alias}")]);
    for function in [model, orchestrator] {
        assert!(function["DeploymentPreference"].is_mapping());
    }
}

#[test]
fn invoking_without_the_alias_and_foreign_or_missing_rollback_alarms_are_caught() {
    let invoke = |resource: &str| {
        parse(&format!(
            "Version: '2012-10-17'\nStatement:\n  - Effect: Allow\n    Action: lambda:InvokeFunction\n    Resource: {resource}\n"
        ))
    };
    for (resource, needle) in [
        // $LATEST, the function and every qualifier, another alias, a bare wildcard
        (
            "!GetAtt ModelFunction.Arn",
            "invoke !GetAtt ModelFunction.Arn, not only",
        ),
        (
            "!Sub '${ModelFunction.Arn}:*'",
            "${ModelFunction.Arn}:*, not only",
        ),
        (
            "!Sub '${ModelFunction.Arn}:$LATEST'",
            "not only a function's AutoPublishAlias",
        ),
        (
            "!Sub '${ModelFunction.Arn}:beta'",
            "not only a function's AutoPublishAlias",
        ),
        ("'*'", "bare \"*\""),
    ] {
        let template = edited("OrchestratorFunction", |r| {
            r.get_mut("Properties").unwrap()["Policies"] = Value::Sequence(vec![invoke(resource)]);
        });
        assert_caught(&template, needle);
    }
    for (name, needle) in [
        ("!Ref ModelFunction", "invokes !Ref ModelFunction"),
        (
            "!Sub '${ModelFunction}:beta'",
            "invokes ${ModelFunction}:beta",
        ),
    ] {
        let template = edited("OrchestratorFunction", |r| {
            r.get_mut("Properties").unwrap()["Environment"]["Variables"]["MODEL_FUNCTION_NAME"] =
                parse(name);
        });
        assert_caught(&template, needle);
    }
    let template = edited("ModelFunction", |r| {
        r.get_mut("Properties").unwrap()["DeploymentPreference"]["Alarms"] =
            parse("- !Ref SomeoneElsesAlarm");
    });
    assert_caught(&template, "is not an alarm of the template");
    let template = edited("ModelFunction", |r| {
        r.get_mut("Properties").unwrap()["DeploymentPreference"]["Type"] = parse("AllAtOnce");
    });
    assert_caught(&template, "\"AllAtOnce\" is not a canary or linear shift");
    let mut template = project_template();
    template["Parameters"]["DeploymentType"]["AllowedValues"] =
        parse("[Canary10Percent5Minutes, AllAtOnce]");
    assert_caught(
        &template,
        "\"CodeDeployDefault.LambdaAllAtOnce\" is not a canary or linear shift",
    );
    let template = edited("OrchestratorFunction", |r| {
        r.get_mut("Properties")
            .unwrap()
            .as_mapping_mut()
            .unwrap()
            .remove("AutoPublishAlias");
    });
    assert_caught(&template, "OrchestratorFunction: no AutoPublishAlias");
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

// ---------------------------------------------------------------- API authorization
//
// Who may call the HTTP API is the `ApiAuth` parameter (IAM, JWT or NONE). SAM's `Auth`
// property takes no conditions, so `ForecastApi` declares every route in its `DefinitionBody`
// with a `security` chosen by `!If`; these checks evaluate the template's conditions for each
// value of `ApiAuth`, as CloudFormation will, and for the parameters of `samconfig.toml`'s
// environments.

/// A tag's name without its `!`.
fn tag_name(tagged: &serde_norway::value::TaggedValue) -> String {
    tagged.tag.to_string().trim_start_matches('!').to_owned()
}

/// Whether `value` is `!Ref name`.
fn is_ref(value: &Value, name: &str) -> bool {
    matches!(value, Value::Tagged(tagged) if tag_name(tagged) == "Ref" && tagged.value.as_str() == Some(name))
}

/// The value of `!Ref parameter` under `parameters` (a list parameter as its items joined by
/// commas), or a literal.
fn scalar(value: &Value, parameters: &std::collections::BTreeMap<String, String>) -> String {
    match value {
        Value::Tagged(tagged) if tag_name(tagged) == "Ref" => {
            let name = tagged.value.as_str().unwrap_or_default();
            parameters.get(name).cloned().unwrap_or_default()
        }
        // `!Join [delimiter, !Ref ListParameter]` or `!Join [delimiter, [values]]`.
        Value::Tagged(tagged) if tag_name(tagged) == "Join" => {
            let args = list(&tagged.value);
            let delimiter = args
                .first()
                .map(|d| scalar(d, parameters))
                .unwrap_or_default();
            match args.get(1) {
                Some(Value::Sequence(items)) => items
                    .iter()
                    .map(|item| scalar(item, parameters))
                    .collect::<Vec<_>>()
                    .join(&delimiter),
                Some(other) => scalar(other, parameters)
                    .split(',')
                    .collect::<Vec<_>>()
                    .join(&delimiter),
                None => String::new(),
            }
        }
        other => text_of(other).unwrap_or_default(),
    }
}

/// Whether the template's condition `name` holds under `parameters`.
fn condition_holds(
    template: &Value,
    name: &str,
    parameters: &std::collections::BTreeMap<String, String>,
) -> bool {
    holds(template, &template["Conditions"][name], parameters)
}

/// Whether a condition function holds under `parameters` (`!Equals`, `!Not`, `!And`, `!Or`
/// and `!Condition`, what the template's conditions and rules use); anything else is false.
fn holds(
    template: &Value,
    value: &Value,
    parameters: &std::collections::BTreeMap<String, String>,
) -> bool {
    let Value::Tagged(tagged) = value else {
        return false;
    };
    let args = list(&tagged.value);
    match tag_name(tagged).as_str() {
        "Equals" => args.len() == 2 && scalar(args[0], parameters) == scalar(args[1], parameters),
        "Not" => !args.first().is_some_and(|a| holds(template, a, parameters)),
        "And" => args.iter().all(|a| holds(template, a, parameters)),
        "Or" => args.iter().any(|a| holds(template, a, parameters)),
        "Condition" => tagged
            .value
            .as_str()
            .is_some_and(|n| condition_holds(template, n, parameters)),
        _ => false,
    }
}

/// `value` with every `!If` decided under `parameters`; `None` where it is `!Ref AWS::NoValue`.
fn resolve_for_parameters(
    template: &Value,
    value: &Value,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Option<Value> {
    match value {
        Value::Tagged(tagged) if tag_name(tagged) == "If" => {
            let args = list(&tagged.value);
            let condition = args.first().and_then(|c| c.as_str()).unwrap_or_default();
            let chosen = if condition_holds(template, condition, parameters) {
                args.get(1)
            } else {
                args.get(2)
            };
            chosen.and_then(|v| resolve_for_parameters(template, v, parameters))
        }
        Value::Tagged(tagged)
            if tag_name(tagged) == "Ref" && tagged.value.as_str() == Some("AWS::NoValue") =>
        {
            None
        }
        Value::Mapping(mapping) => {
            let mut resolved = Mapping::new();
            for (key, item) in mapping {
                if let Some(item) = resolve_for_parameters(template, item, parameters) {
                    resolved.insert(key.clone(), item);
                }
            }
            Some(Value::Mapping(resolved))
        }
        Value::Sequence(items) => Some(Value::Sequence(
            items
                .iter()
                .filter_map(|item| resolve_for_parameters(template, item, parameters))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// The template's parameter defaults with `overrides` applied.
fn parameters_with(
    template: &Value,
    overrides: &[(&str, &str)],
) -> std::collections::BTreeMap<String, String> {
    let mut parameters: std::collections::BTreeMap<String, String> = template["Parameters"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(name, declared)| {
                    let default = match &declared["Default"] {
                        Value::Number(n) => n.to_string(),
                        other => text_of(other).unwrap_or_default(),
                    };
                    (name.as_str().unwrap_or_default().to_owned(), default)
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, value) in overrides {
        parameters.insert((*name).to_owned(), (*value).to_owned());
    }
    parameters
}

/// The `parameter_overrides` of `samconfig.toml`'s `[<env>.deploy.parameters]`, as pairs.
fn samconfig_overrides(env: &str) -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samconfig.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let section = format!("[{env}.deploy.parameters]");
    let body = text
        .split_once(section.as_str())
        .map_or("", |(_, rest)| rest.split("\n[").next().unwrap_or_default());
    body.lines()
        .filter_map(|line| line.trim().strip_prefix("parameter_overrides"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .flat_map(|value| {
            value
                .trim()
                .trim_matches('"')
                .split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The security a route of `api` gets under `parameters`: the resolved `security` of its
/// operation in the `DefinitionBody` (method `ANY` is `x-amazon-apigateway-any-method`), or
/// `None` when the body does not declare the operation.
fn route_security(
    template: &Value,
    api: &Value,
    path: &str,
    method: &str,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Option<Value> {
    let method = match method.to_ascii_lowercase().as_str() {
        "any" => "x-amazon-apigateway-any-method".to_owned(),
        other => other.to_owned(),
    };
    let operation = api["Properties"]["DefinitionBody"]["paths"][path].get(method.as_str())?;
    Some(
        resolve_for_parameters(template, &operation["security"], parameters).unwrap_or(Value::Null),
    )
}

/// Every violation of the authorization rules under `parameters`: each `HttpApi` event's
/// route is declared by its API with the security scheme of `ApiAuth` (none open under IAM or
/// JWT, none overriding it), the scheme exists, the orchestrator is told the same mode, and a
/// deployment that requires auth allows no `*` CORS origin when `strict_cors`.
fn auth_violations(
    template: &Value,
    parameters: &std::collections::BTreeMap<String, String>,
    strict_cors: bool,
) -> Vec<String> {
    let mode = parameters.get("ApiAuth").cloned().unwrap_or_default();
    let scheme = match mode.as_str() {
        "IAM" => Some("AWS_IAM"),
        "JWT" => Some("JwtAuthorizer"),
        _ => None,
    };
    let mut violations = Vec::new();
    let all = resources(template);
    let mut routes = 0;
    for (name, resource) in &all {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let events = resource["Properties"]["Events"].as_mapping();
        let http_events = events
            .into_iter()
            .flatten()
            .filter(|(_, e)| e["Type"] == "HttpApi");
        for (event, e) in http_events {
            let (event, properties) = (event.as_str().unwrap_or_default(), &e["Properties"]);
            routes += 1;
            let path = properties["Path"].as_str().unwrap_or_default();
            let method = properties["Method"].as_str().unwrap_or_default();
            let route = format!("{name}.{event} ({method} {path})");
            if !properties["Auth"].is_null() {
                violations.push(format!("{route}: sets its own Auth instead of the API's"));
            }
            let Some(api_name) = reference(&properties["ApiId"]) else {
                violations.push(format!(
                    "{route}: on SAM's implicit API, which has no authorizer"
                ));
                continue;
            };
            let api = &template["Resources"][api_name.as_str()];
            match route_security(template, api, path, method, parameters) {
                None => violations.push(format!(
                    "{route}: not declared in {api_name}'s DefinitionBody, so it has no authorizer"
                )),
                Some(security) => {
                    let expected = scheme
                        .map(|s| parse(&format!("[{{{s}: []}}]")))
                        .unwrap_or(Value::Null);
                    if security != expected {
                        let state = if security.is_null() {
                            "open".to_owned()
                        } else {
                            format!("secured by {security:?}")
                        };
                        violations.push(format!(
                            "{route}: {state} under ApiAuth={mode}, expected {}",
                            scheme.unwrap_or("no authorizer")
                        ));
                    }
                }
            }
        }
    }
    if routes == 0 {
        violations.push("no HttpApi route in the template".to_owned());
    }
    for (name, api) in all
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::HttpApi")
    {
        let properties = &api["Properties"];
        if !properties["Auth"].is_null() {
            violations.push(format!(
                "{name}: Auth cannot follow ApiAuth (SAM takes no conditions there)"
            ));
        }
        let schemes = resolve_for_parameters(
            template,
            &properties["DefinitionBody"]["components"]["securitySchemes"],
            parameters,
        )
        .unwrap_or(Value::Null);
        if let Some(scheme) = scheme {
            let declared = &schemes[scheme];
            let fits = match scheme {
                "AWS_IAM" => declared["x-amazon-apigateway-authtype"] == "awsSigv4",
                _ => {
                    let authorizer = &declared["x-amazon-apigateway-authorizer"];
                    authorizer["type"] == "jwt"
                        && is_ref(&authorizer["jwtConfiguration"]["issuer"], "JwtIssuer")
                        && is_ref(&authorizer["jwtConfiguration"]["audience"], "JwtAudience")
                }
            };
            if !fits {
                violations.push(format!(
                    "{name}: no {scheme} security scheme under ApiAuth={mode}"
                ));
            }
        }
        if strict_cors && scheme.is_some() {
            let origins = resolve_for_parameters(
                template,
                &properties["CorsConfiguration"]["AllowOrigins"],
                parameters,
            )
            .map(|v| scalar(&v, parameters))
            .unwrap_or_default();
            if origins
                .split(',')
                .any(|o| o.trim() == "*" || o.trim().is_empty())
            {
                violations.push(format!("{name}: CORS allows the origin {origins:?}"));
            }
        }
    }
    let told = &template["Resources"]["OrchestratorFunction"]["Properties"]["Environment"]["Variables"]
        ["API_AUTH"];
    if !is_ref(told, "ApiAuth") {
        violations.push(format!(
            "OrchestratorFunction: API_AUTH is {}, not the API's mode (!Ref ApiAuth)",
            describe(told)
        ));
    }
    violations
}

fn auth_modes(template: &Value) -> Vec<String> {
    list(&template["Parameters"]["ApiAuth"]["AllowedValues"])
        .into_iter()
        .filter_map(text_of)
        .collect()
}

#[test]
fn every_route_carries_the_authorizer_of_each_api_auth_mode() {
    let template = project_template();
    let modes = auth_modes(&template);
    assert_eq!(modes, ["IAM", "JWT", "NONE"]);
    for mode in &modes {
        let parameters = parameters_with(&template, &[("ApiAuth", mode)]);
        assert_eq!(
            auth_violations(&template, &parameters, false),
            Vec::<String>::new(),
            "ApiAuth={mode}"
        );
    }
    // The conditions really decide: under IAM every route is IAM-signed, under NONE open.
    let iam = parameters_with(&template, &[("ApiAuth", "IAM")]);
    let none = parameters_with(&template, &[("ApiAuth", "NONE")]);
    let api = &template["Resources"]["ForecastApi"];
    assert_eq!(
        route_security(&template, api, "/v1/api/health", "GET", &iam),
        Some(parse("[{AWS_IAM: []}]"))
    );
    assert_eq!(
        route_security(&template, api, "/v1/api/health", "GET", &none),
        Some(Value::Null)
    );
}

#[test]
fn prod_requires_iam_and_names_its_cors_origins_and_dev_may_be_open() {
    let template = project_template();
    let declared = text_of(&template["Parameters"]["ApiAuth"]["Default"]);
    assert_eq!(
        declared.as_deref(),
        Some("IAM"),
        "a stack without overrides requires IAM"
    );
    let prod = samconfig_overrides("prod");
    let prod: Vec<(&str, &str)> = prod.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(prod.contains(&("ApiAuth", "IAM")), "{prod:?}");
    let parameters = parameters_with(&template, &prod);
    assert_eq!(
        auth_violations(&template, &parameters, true),
        Vec::<String>::new()
    );
    let dev = samconfig_overrides("dev");
    assert!(
        dev.contains(&("ApiAuth".to_owned(), "NONE".to_owned())),
        "{dev:?}"
    );
}

#[test]
fn an_open_route_a_missing_scheme_or_a_star_origin_in_prod_are_caught() {
    let iam = |template: &Value| parameters_with(template, &[("ApiAuth", "IAM")]);
    let jwt = |template: &Value| parameters_with(template, &[("ApiAuth", "JWT")]);
    let caught = |template: &Value, parameters, needle: &str| {
        let found = auth_violations(template, &parameters, true);
        assert!(
            found.iter().any(|v| v.contains(needle)),
            "expected {needle:?} in {found:?}"
        );
    };

    // A route losing its security: open under IAM and JWT.
    let template = edited("ForecastApi", |r| {
        r.get_mut("Properties").unwrap()["DefinitionBody"]["paths"]["/v1/api/predict"]["post"]
            .as_mapping_mut()
            .unwrap()
            .remove("security");
    });
    caught(
        &template,
        iam(&template),
        "(POST /v1/api/predict): open under ApiAuth=IAM",
    );
    caught(
        &template,
        jwt(&template),
        "(POST /v1/api/predict): open under ApiAuth=JWT",
    );
    // A route secured by IAM whatever the mode.
    let template = edited("ForecastApi", |r| {
        r.get_mut("Properties").unwrap()["DefinitionBody"]["paths"]["/v1/api/health"]["get"]["security"] =
            parse("[{AWS_IAM: []}]");
    });
    caught(
        &template,
        jwt(&template),
        "(GET /v1/api/health): secured by",
    );
    // A new event the body does not declare: SAM would add it without an authorizer.
    let mut template = project_template();
    template["Resources"]["OrchestratorFunction"]["Properties"]["Events"]["Extra"] = parse(
        "Type: HttpApi\nProperties:\n  ApiId: !Ref ForecastApi\n  Path: /v1/api/extra\n  Method: GET\n",
    );
    caught(
        &template,
        iam(&template),
        "not declared in ForecastApi's DefinitionBody",
    );
    // An event on SAM's implicit API, or overriding the authorizer.
    let mut template = project_template();
    template["Resources"]["OrchestratorFunction"]["Properties"]["Events"]["Extra"] =
        parse("Type: HttpApi\nProperties:\n  Path: /v1/api/extra\n  Method: GET\n");
    caught(&template, iam(&template), "implicit API");
    let mut template = project_template();
    template["Resources"]["OrchestratorFunction"]["Properties"]["Events"]["Health"]["Properties"]
        ["Auth"] = parse("Authorizer: NONE");
    caught(&template, iam(&template), "sets its own Auth");
    // The scheme itself missing, or a JWT authorizer not configured from the parameters.
    let template = edited("ForecastApi", |r| {
        r.get_mut("Properties").unwrap()["DefinitionBody"]["components"]["securitySchemes"]
            .as_mapping_mut()
            .unwrap()
            .remove("AWS_IAM");
    });
    caught(&template, iam(&template), "no AWS_IAM security scheme");
    let template = edited("ForecastApi", |r| {
        r.get_mut("Properties").unwrap()["DefinitionBody"]["components"]["securitySchemes"]["JwtAuthorizer"] =
            parse("type: oauth2");
    });
    caught(
        &template,
        jwt(&template),
        "no JwtAuthorizer security scheme",
    );
    // The handler told another mode than the API's.
    let template = edited("OrchestratorFunction", |r| {
        r.get_mut("Properties").unwrap()["Environment"]["Variables"]["API_AUTH"] = parse("NONE");
    });
    caught(&template, iam(&template), "API_AUTH is NONE");
    // A `*` (the template's default) or empty CORS origin where auth is required.
    let template = project_template();
    caught(
        &template,
        parameters_with(
            &template,
            &[
                ("ApiAuth", "IAM"),
                ("CorsAllowOrigins", "https://a.example,*"),
            ],
        ),
        "CORS allows the origin",
    );
    caught(&template, iam(&template), "CORS allows the origin \"*\"");
}

#[test]
fn jwt_mode_needs_an_issuer_and_an_audience() {
    let template = project_template();
    let rules = template["Rules"].as_mapping().unwrap();
    // Whether CloudFormation's rules let a stack with these parameters be deployed.
    let deployable = |overrides: &[(&str, &str)]| {
        let parameters = parameters_with(&template, overrides);
        rules.values().all(|rule| {
            !holds(&template, &rule["RuleCondition"], &parameters)
                || list(&rule["Assertions"])
                    .iter()
                    .all(|assertion| holds(&template, &assertion["Assert"], &parameters))
        })
    };
    assert!(deployable(&[("ApiAuth", "IAM")]));
    assert!(deployable(&[("ApiAuth", "NONE")]));
    assert!(deployable(&[
        ("ApiAuth", "JWT"),
        ("JwtIssuer", "https://issuer.example.com"),
        ("JwtAudience", "client-a,client-b"),
    ]));
    assert!(!deployable(&[("ApiAuth", "JWT")]));
    assert!(!deployable(&[
        ("ApiAuth", "JWT"),
        ("JwtIssuer", "https://issuer.example.com")
    ]));
    assert!(!deployable(&[
        ("ApiAuth", "JWT"),
        ("JwtAudience", "client-a")
    ]));
}

#[test]
fn a_statement_without_a_resource_and_a_log_group_without_retention_are_caught() {
    let template = edited("ModelFunction", |r| {
        r.get_mut("Properties").unwrap()["Policies"] =
            parse("- Statement:\n    - Effect: Allow\n      Action: s3:GetObject\n");
    });
    assert_caught(&template, "ModelFunction: statement without a resource");

    // The function still names its log group, but the group keeps logs forever.
    let template = edited("ModelLogGroup", |r| {
        r.get_mut("Properties")
            .unwrap()
            .as_mapping_mut()
            .unwrap()
            .remove("RetentionInDays");
    });
    assert_caught(
        &template,
        "ModelFunction: no explicit log group with a retention",
    );
}

#[test]
fn iam_roles_and_policies_of_the_template_are_held_to_the_same_rules() {
    let with_resource = |name: &str, yaml: &str| {
        let mut template = project_template();
        template["Resources"]
            .as_mapping_mut()
            .unwrap()
            .insert(Value::String(name.to_owned()), parse(yaml));
        template
    };
    for (kind, document) in [
        (
            "AWS::IAM::Role",
            "Policies:\n    - PolicyName: p\n      PolicyDocument:",
        ),
        ("AWS::IAM::Policy", "PolicyName: p\n  PolicyDocument:"),
        ("AWS::IAM::ManagedPolicy", "PolicyDocument:"),
    ] {
        let indent = if kind == "AWS::IAM::Role" {
            "          "
        } else {
            "      "
        };
        for (action, resource, needle) in [
            ("'s3:*'", "arn:aws:s3:::b/models/x/*", "is a wildcard"),
            ("s3:GetObject", "'*'", "bare \"*\""),
            (
                "s3:GetObject",
                "arn:aws:s3:::b/*",
                "not limited to a model prefix",
            ),
        ] {
            let yaml = format!(
                "Type: {kind}\nProperties:\n  {document}\n{indent}Statement:\n{indent}  - Effect: Allow\n{indent}    Action: {action}\n{indent}    Resource: {resource}\n"
            );
            assert_caught(&with_resource("Extra", &yaml), "Extra: ");
            assert_caught(&with_resource("Extra", &yaml), needle);
        }
    }
}

#[test]
fn managed_policies_and_roles_from_outside_the_template_are_caught() {
    // A role of the template whose inline policy passes, but with a managed policy attached.
    let mut template = project_template();
    template["Resources"].as_mapping_mut().unwrap().insert(
        Value::String("ExtraRole".to_owned()),
        parse(
            "Type: AWS::IAM::Role\nProperties:\n  ManagedPolicyArns:\n    - arn:aws:iam::aws:policy/AdministratorAccess\n",
        ),
    );
    assert_caught(&template, "ExtraRole: managed policies");
    let template = edited("ModelFunction", |r| {
        r.get_mut("Properties").unwrap()["Role"] = parse("arn:aws:iam::123456789012:role/anything");
    });
    assert_caught(
        &template,
        "ModelFunction: runs as role arn:aws:iam::123456789012:role/anything",
    );
    let template = edited("BatchFunction", |r| {
        r.get_mut("Properties").unwrap()["Role"] = parse("!GetAtt SomeoneElsesRole.Arn");
    });
    assert_caught(
        &template,
        "BatchFunction: runs as role !GetAtt SomeoneElsesRole.Arn",
    );
    let mut template = project_template();
    template["Resources"].as_mapping_mut().unwrap().insert(
        Value::String("ExtraPolicy".to_owned()),
        parse("Type: AWS::IAM::ManagedPolicy\nProperties:\n  PolicyDocument:\n    Statement: []\n"),
    );
    assert_caught(&template, "ExtraPolicy: a managed policy");
}

#[test]
fn join_if_and_getatt_values_are_resolved_or_refused_never_skipped() {
    let statement = |action: &str, resource: &str| {
        parse(&format!(
            "- Statement:\n    - Effect: Allow\n      Action: {action}\n      Resource: {resource}\n"
        ))
    };
    for (action, resource, needle) in [
        // A wildcard action or resource in one branch of an !If.
        (
            "!If [C, 's3:*', s3:GetObject]",
            "arn:aws:s3:::b/models/x/*",
            "action \"s3:*\" is a wildcard",
        ),
        (
            "s3:GetObject",
            "!If [C, arn:aws:s3:::b/models/x/*, '*']",
            "bare \"*\"",
        ),
        // A whole bucket, spelled with !Join, long-form Fn::Join, or a !Sub variable.
        (
            "s3:GetObject",
            "!Join ['', ['arn:aws:s3:::', !Ref B, '/*']]",
            "S3 access \"arn:aws:s3:::${B}/*\" is not limited",
        ),
        (
            "s3:GetObject",
            "{'Fn::Join': ['/', ['arn:aws:s3:::b', '*']]}",
            "S3 access \"arn:aws:s3:::b/*\" is not limited",
        ),
        (
            "s3:GetObject",
            "!Sub ['arn:aws:s3:::${Where}', {Where: 'b/*'}]",
            "S3 access \"arn:aws:s3:::b/*\" is not limited",
        ),
        // Another resource's ARN: its scope is not written in the statement.
        (
            "s3:GetObject",
            "!GetAtt ModelBucket.Arn",
            "is the ModelBucket.Arn of a resource",
        ),
        (
            "s3:GetObject",
            "!Sub '${ModelBucket.Arn}/models/*'",
            "is the ModelBucket.Arn of a resource",
        ),
        // What cannot be resolved here is refused.
        (
            "s3:GetObject",
            "!Select [0, [a, b]]",
            "cannot check !Select",
        ),
        (
            "!FindInMap [M, K, V]",
            "arn:aws:s3:::b/models/x/*",
            "cannot check !FindInMap",
        ),
    ] {
        let template = edited("ModelFunction", |r| {
            r.get_mut("Properties").unwrap()["Policies"] = statement(action, resource);
        });
        assert_caught(&template, needle);
    }
    // The invoke rule sees both branches too.
    let template = edited("OrchestratorFunction", |r| {
        r.get_mut("Properties").unwrap()["Policies"] = statement(
            "lambda:InvokeFunction",
            "!If [C, !Sub '${ModelFunction.Arn}:live', !GetAtt ModelFunction.Arn]",
        );
    });
    assert_caught(&template, "OrchestratorFunction: may invoke !If ...");
}
