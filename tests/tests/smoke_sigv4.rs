//! `make smoke` against a stack with `ApiAuth=IAM`, without AWS: `infra/aws/smoke.sh` is run
//! against `tests/smoke/sigv4_api.py` on 127.0.0.1, which answers like API Gateway with an IAM
//! authorizer (403 unless the request's SigV4 signature verifies for its one set of
//! credentials). The script must sign every request with the caller's credentials from the
//! standard chain (session token included), and must fail when they are not the right ones.

// Integration-test helpers panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use e2e::workspace_root;
use serde_json::Value;

const ACCESS_KEY: &str = "AKIDSMOKETEST";
const SECRET_KEY: &str = "c2VjcmV0/smoke+key";
const TOKEN: &str = "session/token+1=";

/// The SigV4-checking endpoint, killed on drop.
struct SignedApi {
    child: Child,
    port: u16,
}

impl SignedApi {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// The endpoint with extra arguments (`--bearer <token>`: a JWT stand-in).
    fn start_with(extra: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .arg(workspace_root().join("tests/smoke/sigv4_api.py"))
            .args(["--region", "us-east-1", "--access-key", ACCESS_KEY])
            .args(["--secret-key", SECRET_KEY, "--token", TOKEN])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port: Option<u16> = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok());
        assert!(port.is_some(), "the endpoint did not start: {first:?}");
        let port = port.unwrap();
        Self { child, port }
    }

    /// Stops the endpoint and returns one record per request it answered.
    fn requests(mut self) -> Vec<Value> {
        self.child.kill().unwrap();
        let mut lines = Vec::new();
        let stdout = self.child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            lines.push(serde_json::from_str(&line.unwrap()).unwrap());
        }
        self.child.wait().unwrap();
        lines
    }
}

impl Drop for SignedApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `make smoke`'s script for a stack in `mode` at `port`, with `secret` as the caller's
/// secret key; returns whether it passed and what it printed.
fn smoke(mode: &str, port: u16, secret: &str) -> (bool, String) {
    smoke_with(mode, port, secret, None)
}

/// [`smoke`] with `SMOKE_BEARER_TOKEN` set to `bearer`.
fn smoke_with(mode: &str, port: u16, secret: &str, bearer: Option<&str>) -> (bool, String) {
    let mut command = Command::new("bash");
    if let Some(bearer) = bearer {
        command.env("SMOKE_BEARER_TOKEN", bearer);
    }
    let output = command
        .arg(workspace_root().join("infra/aws/smoke.sh"))
        .arg("demand-forecast-test")
        // Only these credentials: no profile or file of this machine is read.
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("SMOKE_API_URL", format!("http://127.0.0.1:{port}"))
        .env("SMOKE_API_AUTH", mode)
        .env("SMOKE_REGION", "us-east-1")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn make_smoke_signs_every_request_with_the_callers_credentials_when_the_stack_uses_iam() {
    // GIVEN an API that, like API Gateway with IAM auth, answers only verified signatures
    let api = SignedApi::start();
    // WHEN make smoke's script calls it for a stack with ApiAuth=IAM
    let (passed, printed) = smoke("IAM", api.port, SECRET_KEY);
    // THEN all three calls were signed, verified and answered as expected
    assert!(passed, "{printed}");
    assert!(printed.contains("signing with SigV4 (execute-api, us-east-1)"));
    let requests = api.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for request in &requests {
        assert_eq!(request["refused"], Value::Null, "{request}");
        let signed = request["signed_headers"].as_str().unwrap();
        assert!(
            signed.contains("x-amz-security-token"),
            "the session token is signed: {request}"
        );
    }
    // The secret never appears in what the script prints.
    assert!(!printed.contains(SECRET_KEY) && !printed.contains(TOKEN));
}

#[test]
fn make_smoke_fails_unsigned_or_with_credentials_the_api_does_not_accept() {
    // Someone else's secret: the signature does not verify, 403, the smoke fails.
    let api = SignedApi::start();
    let (passed, printed) = smoke("IAM", api.port, "another-secret");
    assert!(!passed, "{printed}");
    assert!(printed.contains("health -> 403"), "{printed}");
    let requests = api.requests();
    assert_eq!(requests[0]["refused"], "signature does not verify");
    // Not signing at all (the script's behaviour for ApiAuth=NONE): 403 as well.
    let api = SignedApi::start();
    let (passed, printed) = smoke("NONE", api.port, SECRET_KEY);
    assert!(!passed, "{printed}");
    assert_eq!(api.requests()[0]["refused"], "not signed with SigV4");
}

#[test]
fn make_smoke_sends_the_bearer_token_when_the_stack_uses_jwt() {
    let bearer = "eyJhbGciOiJSUzI1NiJ9.smoke.token";
    let api = SignedApi::start_with(&["--bearer", bearer]);
    let (passed, printed) = smoke_with("JWT", api.port, SECRET_KEY, Some(bearer));
    assert!(passed, "{printed}");
    assert!(!printed.contains(bearer), "the token is not printed");
    let requests = api.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests.iter().all(|r| r["refused"].is_null()),
        "{requests:?}"
    );
    // Without a token the script stops before calling anything.
    let api = SignedApi::start_with(&["--bearer", bearer]);
    let (passed, printed) = smoke_with("JWT", api.port, SECRET_KEY, None);
    assert!(
        !passed && printed.contains("set SMOKE_BEARER_TOKEN"),
        "{printed}"
    );
    assert!(api.requests().is_empty());
}
