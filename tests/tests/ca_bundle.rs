//! Every function names the platform's CA bundle before its runtime starts (the `ca-bundle`
//! crate says why: the cold start then decodes the bundle once, not the certificate directory
//! as well), and keeps a bundle its environment names.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use e2e::workspace_root;

const FUNCTIONS: [&str; 3] = ["model", "orchestrator", "batch"];

/// What the function logs about its CA bundle at start: each exits right after it, for want
/// of its configuration.
fn first_words(function: &str, environment: &[(&str, &str)]) -> String {
    let binary = workspace_root().join("target/debug").join(function);
    let output = Command::new(&binary)
        .env_clear()
        .env("RUST_LOG", "debug")
        .envs(environment.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("{}: {err}", binary.display()));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(
        !output.status.success(),
        "{function} ran without its configuration: {text}"
    );
    text
}

#[test]
fn every_function_names_the_platform_bundle_unless_its_environment_names_one() {
    // GIVEN the functions' binaries, built as `make test` builds them (the same features, so
    // nothing is built twice)
    let built = Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--bins", "--locked"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(built.success(), "cargo build failed");
    let Some(bundle) = ca_bundle::platform_bundle() else {
        eprintln!("no CA bundle on this machine: nothing to name");
        return;
    };
    for function in FUNCTIONS {
        // WHEN it starts with no certificate variable THEN it names the platform's bundle
        let named = format!("ca_bundle={:?}", Some(&bundle));
        let words = first_words(function, &[]);
        assert!(
            words.contains(&named),
            "{function} did not log {named}: {words}"
        );
        // AND WHEN its environment names a bundle or a directory THEN it names none
        for variable in ca_bundle::CERT_VARIABLES {
            let words = first_words(function, &[(variable, "/elsewhere")]);
            assert!(
                words.contains("ca_bundle=None"),
                "{function} with {variable} set: {words}"
            );
        }
    }
}
