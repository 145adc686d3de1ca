//! End-to-end harness: the real local stack, started and stopped by the tests themselves.
//!
//! [`LocalS3`] runs `moto_server` (a real S3 HTTP endpoint) and [`LambdaWatch`] runs
//! `cargo lambda watch` (the real Lambda Invoke API and function URLs), both bound to
//! 127.0.0.1 on free ports and killed, with everything they spawned, when dropped.
//! [`sam`] runs the same functions in containers under `sam local`.
//! The tests in `tests/` drive them exactly as API Gateway and `cargo lambda invoke` do.
//!
//! [`LocalS3::start_with_step_functions`] runs moto with Step Functions executing state
//! machines (`infra/local/moto_sfn.py`), their Lambda tasks sent to `cargo lambda watch`.
//!
//! Run with `cargo test -p e2e` after `make deps` (needs `moto_server` and `cargo lambda`;
//! the `sam local` suite needs Docker, which `make deps` installs).

pub mod sam;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Credentials and region the local stack accepts; never real ones.
pub const LOCAL_AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "local"),
    ("AWS_SECRET_ACCESS_KEY", "local"),
    ("AWS_REGION", "us-east-1"),
];

/// The workspace root (where `Cargo.toml` with `[workspace]` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free TCP port on `host` (an address of this machine).
pub fn free_port_on(host: IpAddr) -> anyhow::Result<u16> {
    let listener = TcpListener::bind((host, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
fn wait_for_port(port: u16, child: &mut Child, timeout: Duration) -> anyhow::Result<()> {
    wait_for_address(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        child,
        timeout,
    )
}

/// Waits until something accepts TCP connections on `addr`.
fn wait_for_address(addr: SocketAddr, child: &mut Child, timeout: Duration) -> anyhow::Result<()> {
    let port = addr.port();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the process exited with {status} before listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listened on {addr} within {timeout:?}")
}

/// A child process started in its own process group, so that dropping it stops everything
/// it spawned (`cargo lambda watch` runs `cargo run`, which runs the function binaries).
#[derive(Debug)]
struct ProcessGroup {
    child: Child,
    name: &'static str,
    /// How long the group has between SIGTERM and SIGKILL.
    grace: Duration,
}

impl ProcessGroup {
    fn spawn(name: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}; run `make deps` to install it"))?;
        Ok(Self {
            child,
            name,
            grace: Duration::from_secs(10),
        })
    }

    /// A longer time between SIGTERM and SIGKILL, for a process that cleans up on SIGTERM.
    fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        for (signal, wait) in [("-TERM", self.grace), ("-KILL", Duration::from_secs(10))] {
            let _ = Command::new("kill").args([signal, "--", &group]).status();
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "warning: {} (pid {}) still ran {wait:?} after {signal}",
                self.name,
                self.child.id()
            );
        }
        eprintln!(
            "warning: {} (pid {}) did not stop",
            self.name,
            self.child.id()
        );
    }
}

/// A real S3 server (`moto_server`) on 127.0.0.1 (or another address of this machine).
#[derive(Debug)]
pub struct LocalS3 {
    process: ProcessGroup,
    /// `http://<address>:<port>`.
    pub endpoint: String,
}

impl LocalS3 {
    /// Starts `moto_server` on a free port and waits until it answers.
    pub fn start(log_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with_env(log_dir, &[])
    }

    /// Starts `moto_server` on `port` (a port the caller reserved, e.g. one a function was
    /// told about while nothing listened on it).
    pub fn start_on(port: u16, log_dir: &Path) -> anyhow::Result<Self> {
        let mut process = ProcessGroup::spawn(
            "moto_server",
            Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            &log_dir.join(format!("moto-{port}.log")),
        )?;
        wait_for_port(port, &mut process.child, Duration::from_secs(60))?;
        Ok(Self {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Starts `moto_server` with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`,
    /// after which moto enforces IAM).
    pub fn start_with_env(log_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_at(IpAddr::V4(Ipv4Addr::LOCALHOST), log_dir, env)
    }

    /// Starts `moto_server` on a free port of `host`, an address of this machine (e.g. the
    /// Docker bridge's, where containers reach it), with extra environment.
    pub fn start_at(host: IpAddr, log_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        // A free port can be taken by a parallel test between the probe and moto's bind; the
        // loser exits at once, which is checked after the port answers, and tries another.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port_on(host)?;
            let mut process = ProcessGroup::spawn(
                "moto_server",
                Command::new("moto_server")
                    .args(["-H", &host.to_string(), "-p", &port.to_string()])
                    .envs(env.iter().copied()),
                &log_dir.join(format!("moto-{port}.log")),
            )?;
            let addr = SocketAddr::from((host, port));
            match wait_for_address(addr, &mut process.child, Duration::from_secs(60)) {
                Ok(()) => {
                    std::thread::sleep(Duration::from_millis(300));
                    if process.child.try_wait()?.is_none() {
                        let endpoint = format!("http://{addr}");
                        return Ok(Self { process, endpoint });
                    }
                    last_error = Some(anyhow::anyhow!("moto_server exited after binding {port}"));
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto_server did not start")))
    }

    /// S3 and Step Functions in one moto process (`infra/local/moto_sfn.py`) that executes
    /// state machines, sending their Lambda tasks to `lambda_endpoint`.
    pub fn start_with_step_functions(
        log_dir: &Path,
        lambda_endpoint: &str,
    ) -> anyhow::Result<Self> {
        let script = workspace_root().join("infra/local/moto_sfn.py");
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut command = Command::new("python3");
            command
                .arg(&script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .envs(LOCAL_AWS_ENV)
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_ENDPOINT_URL_LAMBDA", lambda_endpoint)
                // Its own S3 calls (ItemReader, ResultWriter) stay inside the process.
                .env_remove("AWS_ENDPOINT_URL_S3")
                .env_remove("AWS_ENDPOINT_URL");
            let mut process = ProcessGroup::spawn(
                "moto (S3 + Step Functions)",
                &mut command,
                &log_dir.join(format!("moto-sfn-{port}.log")),
            )?;
            match wait_for_port(port, &mut process.child, Duration::from_secs(60)) {
                Ok(()) => {
                    std::thread::sleep(Duration::from_millis(300));
                    if process.child.try_wait()?.is_none() {
                        let endpoint = format!("http://127.0.0.1:{port}");
                        return Ok(Self { process, endpoint });
                    }
                    last_error = Some(anyhow::anyhow!("moto exited after binding {port}"));
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    /// A Step Functions client for this server.
    pub fn sfn_client(&self) -> aws_sdk_sfn::Client {
        let credentials =
            aws_sdk_sfn::config::Credentials::new("local", "local", None, None, "e2e");
        let config = aws_sdk_sfn::config::Builder::new()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(&self.endpoint)
            .build();
        aws_sdk_sfn::Client::from_conf(config)
    }

    /// An S3 client for this server, with the placeholder credentials moto accepts while it
    /// does not enforce IAM.
    pub async fn client(&self) -> aws_sdk_s3::Client {
        self.client_as("local", "local")
    }

    /// An S3 client for this server with the given credentials.
    pub fn client_as(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let credentials =
            aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "e2e");
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Process id of the server, for diagnostics.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Creates an IAM user with no policy and returns its access key id and secret, through
    /// moto's IAM query API (no IAM SDK needed: moto does not check signatures while its
    /// `INITIAL_NO_AUTH_ACTION_COUNT` lasts).
    pub fn create_user_without_permissions(&self, name: &str) -> anyhow::Result<(String, String)> {
        self.iam(&format!(
            "Action=CreateUser&UserName={name}&Version=2010-05-08"
        ))?;
        let answer = self.iam(&format!(
            "Action=CreateAccessKey&UserName={name}&Version=2010-05-08"
        ))?;
        let field = |tag: &str| -> anyhow::Result<String> {
            let open = format!("<{tag}>");
            let start = answer
                .find(&open)
                .map(|i| i + open.len())
                .with_context(|| format!("no {tag} in {answer}"))?;
            let end = answer[start..]
                .find('<')
                .map_or(answer.len(), |i| i + start);
            Ok(answer[start..end].to_owned())
        };
        Ok((field("AccessKeyId")?, field("SecretAccessKey")?))
    }

    /// Attaches an inline policy allowing `s3:GetObject` on everything to IAM user `name`.
    pub fn allow_get_object(&self, name: &str) -> anyhow::Result<()> {
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"*"}]}"#;
        let encoded: String = form_urlencoded::byte_serialize(policy.as_bytes()).collect();
        self.iam(&format!(
            "Action=PutUserPolicy&UserName={name}&PolicyName=read-models&PolicyDocument={encoded}&Version=2010-05-08"
        ))?;
        Ok(())
    }

    fn iam(&self, form: &str) -> anyhow::Result<String> {
        use std::io::Read;
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host)?;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("moto IAM refused {form}: {answer}");
        }
        Ok(answer)
    }
}

/// `cargo lambda watch` serving both functions of the workspace on 127.0.0.1.
#[derive(Debug)]
pub struct LambdaWatch {
    process: ProcessGroup,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// Where the emulator's and the functions' output goes.
    pub log: PathBuf,
}

impl LambdaWatch {
    /// Starts the emulator with `env` (written to an env file) and waits until it listens.
    pub fn start(env: &[(&str, String)], log_dir: &Path) -> anyhow::Result<Self> {
        Self::start_full(free_port()?, 1, env, log_dir, "watch", &[])
    }

    /// [`LambdaWatch::start`] with more `cargo lambda watch` arguments, its env file and log
    /// named after `name` in `log_dir`.
    pub fn start_with(
        env: &[(&str, String)],
        log_dir: &Path,
        name: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_full(free_port()?, 1, env, log_dir, name, extra_args)
    }

    /// [`LambdaWatch::start`] on `port` (reserved by the caller, e.g. because a state machine
    /// was told about it), running up to `concurrency` instances of each function.
    pub fn start_on(
        port: u16,
        concurrency: usize,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_full(port, concurrency, env, log_dir, "watch", &[])
    }

    fn start_full(
        port: u16,
        concurrency: usize,
        env: &[(&str, String)],
        log_dir: &Path,
        name: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let base_url = format!("http://127.0.0.1:{port}");
        let env_file = log_dir.join(format!("{name}.env"));
        let mut file = std::fs::File::create(&env_file)?;
        for (key, value) in LOCAL_AWS_ENV.iter().map(|(k, v)| (*k, (*v).to_owned())) {
            writeln!(file, "{key}={value}")?;
        }
        if !env.iter().any(|(key, _)| *key == "AWS_ENDPOINT_URL_LAMBDA") {
            writeln!(file, "AWS_ENDPOINT_URL_LAMBDA={base_url}")?;
        }
        for (key, value) in env {
            writeln!(file, "{key}={value}")?;
        }
        let log = log_dir.join(format!("{name}.log"));
        let mut command = Command::new("cargo");
        command
            .current_dir(workspace_root())
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .args(extra_args)
            .arg("--env-file")
            .arg(&env_file)
            .args(["--concurrency", &concurrency.to_string()]);
        let mut process = ProcessGroup::spawn("cargo lambda watch", &mut command, &log)?;
        wait_for_port(port, &mut process.child, Duration::from_secs(120))?;
        Ok(Self {
            process,
            base_url,
            log,
        })
    }

    /// URL of the Lambda Invoke API for `function`.
    pub fn invoke_url(&self, function: &str) -> String {
        format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.base_url
        )
    }

    /// URL of `path` on the function URL of `function`.
    pub fn function_url(&self, function: &str, path: &str) -> String {
        format!("{}/lambda-url/{function}{path}", self.base_url)
    }

    /// The emulator's log so far, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Process id of the emulator, which is also the process group of the functions it runs.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// Trains a small model on generated data (3 stores x 4 items x 2 years, 40 rounds) into
/// `dir/model`, with `version`.
pub fn train_small_model(
    dir: &Path,
    version: &str,
) -> anyhow::Result<trainer::train::TrainedModel> {
    train_model(
        dir,
        version,
        &test_support::trained::small_history(),
        &forecast::features::ORIGINAL_FEATURES,
    )
}

/// Trains a 40-round model on `features` of data generated with `data` into `dir/model`,
/// with `version`.
pub fn train_model(
    dir: &Path,
    version: &str,
    data: &trainer::generate::GenerateConfig,
    features: &[forecast::Feature],
) -> anyhow::Result<trainer::train::TrainedModel> {
    test_support::trained::train_generated(dir, version, data, features, 40)
}

/// Uploads `model.txt`, then `manifest.json`, from `model_dir` to `location`, whatever the
/// manifest's version: the local stand-in for a deploy that points the model function at a
/// new model (on AWS, a new `ModelVersion` is a new `MODEL_URI` and a new function version;
/// `cargo lambda watch` keeps one environment, so the new model goes where it reads).
pub async fn publish_model_at(
    s3: &LocalS3,
    model_dir: &Path,
    location: &forecast::ModelLocation,
) -> anyhow::Result<()> {
    let client = s3.client().await;
    trainer::publish::ensure_bucket(&client, &location.bucket).await?;
    for (key, file) in [
        (location.model_key(), "model.txt"),
        (location.manifest_key(), "manifest.json"),
    ] {
        let body = std::fs::read(model_dir.join(file))?;
        client
            .put_object()
            .bucket(&location.bucket)
            .key(&key)
            .body(body.into())
            .send()
            .await
            .with_context(|| format!("uploading {key}"))?;
    }
    Ok(())
}

/// Pids of the processes named `name` that the emulator with pid `watch_pid` runs.
pub fn function_pids(watch_pid: u32, name: &str) -> Vec<u32> {
    descendant_rss_kib(watch_pid, name)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// Sends SIGKILL to process `pid`.
pub fn kill_process(pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -KILL {pid} failed: {status}");
    }
    Ok(())
}

/// Creates `bucket` on `s3` if needed and publishes the model directory `model_dir` to it.
pub async fn publish_model(
    s3: &LocalS3,
    model_dir: &Path,
    bucket: &str,
) -> anyhow::Result<forecast::ModelLocation> {
    let client = s3.client().await;
    trainer::publish::ensure_bucket(&client, bucket).await?;
    trainer::publish::publish(&client, model_dir, bucket).await
}

/// The functions' environment for a model at `location` on the S3 server at `s3_endpoint`,
/// with an invoke timeout long enough for the first request to compile and cold-start.
pub fn stack_env(
    s3_endpoint: &str,
    location: &forecast::ModelLocation,
) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_S3", s3_endpoint.to_owned()),
        ("MODEL_URI", location.uri()),
        ("MODEL_FUNCTION_NAME", "model".to_owned()),
        ("MODEL_INVOKE_TIMEOUT_MS", "600000".to_owned()),
    ]
}

/// The batch state machine's definition (`statemachine/batch.asl.json`) with the template's
/// substitutions: the worker `function` (a name, for `cargo lambda watch`) and
/// `max_concurrency`.
pub fn batch_definition(function: &str, max_concurrency: u32) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(workspace_root().join("statemachine/batch.asl.json"))?;
    Ok(text
        .replace("${BatchFunctionArn}", function)
        .replace("${MaxConcurrency}", &max_concurrency.to_string()))
}

/// An answer through `cargo lambda watch`.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// It carries `x-request-id`: the service answered, not the emulator.
    pub ours: bool,
    pub text: String,
}

/// Sends the request `request` builds through `cargo lambda watch` and answers the service's
/// status and body. The emulator now and then answers a request with its own 500 (no
/// `x-request-id`: it lost a large response, or the function never saw the request); only
/// that answer is retried, up to five times. Any other answer is returned as it is.
pub async fn to_service(request: impl Fn() -> reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    for _ in 0..5 {
        let response = request().send().await?;
        let url = response.url().clone();
        let status = response.status().as_u16();
        let ours = response.headers().contains_key("x-request-id");
        let text = response.text().await?;
        if ours || status != 500 {
            return Ok(Answer { status, ours, text });
        }
        eprintln!("the emulator answered {url} with its own {status}; retrying: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the emulator answered a request with its own 500 five times")
}

/// POSTs `body` (JSON) to `url` through [`to_service`].
pub async fn post_to_service(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    let answer = to_service(|| {
        http.post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
    })
    .await?;
    Ok((answer.status, answer.text))
}

/// A whole number from the environment variable `name`, or `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fault [`FaultProxy`] injects into the Lambda Invoke API, as real Lambda would answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward every request unchanged.
    None,
    /// `429 TooManyRequestsException`: the model function is throttled.
    Throttle,
    /// `200` with `X-Amz-Function-Error: Unhandled`: the model function failed.
    FunctionError,
    /// Forward, but only after this long: the model function is slow.
    Delay(Duration),
}

/// An HTTP proxy in front of the Lambda Invoke API on 127.0.0.1 that injects [`Fault`]s;
/// the orchestrator reaches the model through it (`AWS_ENDPOINT_URL_LAMBDA`).
#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: std::sync::Arc<std::sync::Mutex<(Fault, String)>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    in_flight: InFlight,
    task: tokio::task::JoinHandle<()>,
}

/// Requests forwarded and not yet answered, by upstream.
type InFlight = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

impl FaultProxy {
    /// Listens on a free port; forwards to nowhere until [`FaultProxy::set_upstream`].
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = std::sync::Arc::new(std::sync::Mutex::new((Fault::None, String::new())));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let in_flight = InFlight::default();
        let (shared, counted, pending) = (
            std::sync::Arc::clone(&state),
            std::sync::Arc::clone(&requests),
            std::sync::Arc::clone(&in_flight),
        );
        let client = reqwest::Client::new();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = std::sync::Arc::clone(&shared);
                let counted = std::sync::Arc::clone(&counted);
                let pending = std::sync::Arc::clone(&pending);
                let client = client.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, state, counted, pending, client).await;
                });
            }
        });
        Ok(Self {
            url,
            state,
            requests,
            in_flight,
            task,
        })
    }

    /// Where requests are forwarded (the emulator's base URL).
    pub fn set_upstream(&self, upstream: &str) {
        if let Ok(mut state) = self.state.lock() {
            upstream.clone_into(&mut state.1);
        }
    }

    /// Requests received so far (model invocations, when it fronts the Invoke API).
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests forwarded to `upstream` that it has not answered yet.
    pub fn in_flight_to(&self, upstream: &str) -> usize {
        self.in_flight
            .lock()
            .map(|pending| pending.get(upstream).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Injects `fault` into every request from now on.
    pub fn inject(&self, fault: Fault) {
        if let Ok(mut state) = self.state.lock() {
            state.0 = fault;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/1.1 requests (with `Content-Length` bodies, keep-alive) on one connection.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: std::sync::Arc<std::sync::Mutex<(Fault, String)>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    in_flight: InFlight,
    client: reqwest::Client,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("GET").to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
                if name == "content-length" {
                    length = value.parse()?;
                }
                headers.push((name, value));
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);

        let (fault, upstream) = state
            .lock()
            .map(|s| (s.0, s.1.clone()))
            .map_err(|_| anyhow::anyhow!("proxy state poisoned"))?;
        let (status, reply_headers, reply) = match fault {
            Fault::Throttle => (
                429,
                vec![("x-amzn-errortype".to_owned(), "TooManyRequestsException".to_owned())],
                br#"{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}"#.to_vec(),
            ),
            Fault::FunctionError => (
                200,
                vec![("x-amz-function-error".to_owned(), "Unhandled".to_owned())],
                br#"{"errorType":"Internal","errorMessage":"the booster failed at /var/task/src/booster.rs:42"}"#.to_vec(),
            ),
            Fault::None | Fault::Delay(_) => {
                if let Fault::Delay(delay) = fault {
                    tokio::time::sleep(delay).await;
                }
                let method = reqwest::Method::from_bytes(method.as_bytes())?;
                let mut forward = client.request(method, format!("{upstream}{target}"));
                for (name, value) in &headers {
                    if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                        forward = forward.header(name.as_str(), value.as_str());
                    }
                }
                let count = |delta: isize| {
                    if let Ok(mut pending) = in_flight.lock() {
                        let n = pending.entry(upstream.clone()).or_insert(0);
                        *n = n.saturating_add_signed(delta);
                    }
                };
                count(1);
                let answer = forward.body(body).send().await;
                count(-1);
                let answer = answer?;
                let status = answer.status().as_u16();
                let kept: Vec<(String, String)> = answer
                    .headers()
                    .iter()
                    .filter(|(name, _)| {
                        let name = name.as_str();
                        name.starts_with("x-amz") || name == "content-type"
                    })
                    .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                    .collect();
                (status, kept, answer.bytes().await?.to_vec())
            }
        };
        let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", reply.len());
        for (name, value) in reply_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = stream.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&reply).await?;
        stream.flush().await?;
    }
}

/// What an error body must never show: ARNs, object URIs, file paths, SDK or S3 error codes,
/// model error types or messages, stack traces, local addresses.
pub const INTERNAL_MARKERS: [&str; 20] = [
    "arn:",
    "s3://",
    "file://",
    "/var/",
    "/tmp/",
    "/home/",
    ".rs",
    "NoSuch",
    "AccessDenied",
    "InvalidAccessKeyId",
    "sha256",
    "dispatch failure",
    "TooManyRequests",
    "Unhandled",
    "errorType",
    "errorMessage",
    "panicked",
    "127.0.0.1",
    "Mismatch",
    "booster",
];

/// The internal markers `body` shows that `request` (what the client sent, which validation
/// errors may echo) does not.
pub fn leaks(body: &str, request: &str) -> Vec<&'static str> {
    INTERNAL_MARKERS
        .into_iter()
        .filter(|marker| body.contains(marker) && !request.contains(marker))
        .collect()
}

/// Fails when an error body shows anything internal (see [`INTERNAL_MARKERS`]).
pub fn assert_no_leak(body: &str) {
    let found = leaks(body, "");
    assert!(found.is_empty(), "response leaks {found:?}: {body}");
}

/// Resident set size, in KiB, of every descendant of process `root` whose executable name is
/// `name`, by pid (from `/proc`, Linux only).
pub fn descendant_rss_kib(root: u32, name: &str) -> Vec<(u32, u64)> {
    // pid -> (comm, ppid), from `pid (comm) state ppid ...`; comm may hold spaces.
    let mut table = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map_or("", |(_, c)| c).to_owned();
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        table.insert(pid, (comm, ppid.unwrap_or(0)));
    }
    let descends = |mut pid: u32| {
        for _ in 0..64 {
            match table.get(&pid) {
                Some((_, ppid)) if *ppid == root => return true,
                Some((_, ppid)) if *ppid > 1 => pid = *ppid,
                _ => return false,
            }
        }
        false
    };
    let mut found = Vec::new();
    for (pid, (comm, _)) in &table {
        if comm != name || !descends(*pid) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
        {
            found.push((*pid, kib));
        }
    }
    found
}
