//! End-to-end harness: the real local stack, started and stopped by the tests themselves.
//!
//! [`LocalS3`] runs `moto_server` (a real S3 HTTP endpoint) and [`LambdaWatch`] runs
//! `cargo lambda watch` (the real Lambda Invoke API and function URLs), both bound to
//! 127.0.0.1 on free ports and killed, with everything they spawned, when dropped.
//! The tests in `tests/` drive them exactly as API Gateway and `cargo lambda invoke` do.
//!
//! Run with `cargo test -p e2e` after `make deps` (needs `moto_server` and `cargo lambda`).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
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
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
fn wait_for_port(port: u16, child: &mut Child, timeout: Duration) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
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
    bail!("nothing listened on 127.0.0.1:{port} within {timeout:?}")
}

/// A child process started in its own process group, so that dropping it stops everything
/// it spawned (`cargo lambda watch` runs `cargo run`, which runs the function binaries).
#[derive(Debug)]
struct ProcessGroup {
    child: Child,
    name: &'static str,
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
        Ok(Self { child, name })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill").args([signal, "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        eprintln!(
            "warning: {} (pid {}) did not stop",
            self.name,
            self.child.id()
        );
    }
}

/// A real S3 server (`moto_server`) on 127.0.0.1.
#[derive(Debug)]
pub struct LocalS3 {
    process: ProcessGroup,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl LocalS3 {
    /// Starts `moto_server` on a free port and waits until it answers.
    pub fn start(log_dir: &Path) -> anyhow::Result<Self> {
        // A free port can be taken by a parallel test between the probe and moto's bind; the
        // loser exits at once, which is checked after the port answers, and tries another.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut process = ProcessGroup::spawn(
                "moto_server",
                Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]),
                &log_dir.join(format!("moto-{port}.log")),
            )?;
            match wait_for_port(port, &mut process.child, Duration::from_secs(60)) {
                Ok(()) => {
                    std::thread::sleep(Duration::from_millis(300));
                    if process.child.try_wait()?.is_none() {
                        let endpoint = format!("http://127.0.0.1:{port}");
                        return Ok(Self { process, endpoint });
                    }
                    last_error = Some(anyhow::anyhow!("moto_server exited after binding {port}"));
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto_server did not start")))
    }

    /// An S3 client for this server.
    pub async fn client(&self) -> aws_sdk_s3::Client {
        let credentials = aws_sdk_s3::config::Credentials::new("local", "local", None, None, "e2e");
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
        let port = free_port()?;
        let base_url = format!("http://127.0.0.1:{port}");
        let env_file = log_dir.join("watch.env");
        let mut file = std::fs::File::create(&env_file)?;
        for (key, value) in LOCAL_AWS_ENV.iter().map(|(k, v)| (*k, (*v).to_owned())) {
            writeln!(file, "{key}={value}")?;
        }
        writeln!(file, "AWS_ENDPOINT_URL_LAMBDA={base_url}")?;
        for (key, value) in env {
            writeln!(file, "{key}={value}")?;
        }
        let log = log_dir.join("watch.log");
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
            .arg("--env-file")
            .arg(&env_file);
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

    /// Process id of the emulator, for diagnostics.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}
