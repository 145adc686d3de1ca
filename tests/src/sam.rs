//! `sam local` in Docker, as the tests drive it: the engine ([`DockerEngine`], started only when
//! none answers), the locally built base image and `sam build` ([`prepare`]), and
//! `sam local start-lambda` / `start-api` ([`SamLocal`]) and `sam local invoke` ([`SamConfig`]).
//!
//! Traffic stays on this machine: the containers reach host services through
//! `host.docker.internal`, mapped to the Docker bridge's gateway address, so those services
//! listen on that address; `sam` itself and the tests use loopback and that address only.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{LOCAL_AWS_ENV, ProcessGroup, wait_for_address, workspace_root};

/// The functions' architecture under `sam local`: `SAM_LOCAL_ARCH`, else arm64 (what deploys).
pub fn architecture() -> String {
    std::env::var("SAM_LOCAL_ARCH").unwrap_or_else(|_| "arm64".to_owned())
}

/// Where `sam build` puts the functions for `sam local` on `arch` (as `make sam-local` does).
pub fn build_dir(arch: &str) -> PathBuf {
    workspace_root().join(format!(".aws-sam/local-{arch}"))
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The default bridge's gateway address: its `Gateway`, or (where the engine does not report
/// one) the first address of its subnet, which the engine gives the bridge.
fn bridge_address() -> anyhow::Result<IpAddr> {
    let output = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let (first, second) = (fields.next(), fields.next());
    let (gateway, subnet) = match (first, second) {
        (Some(gateway), Some(subnet)) => (Some(gateway), subnet),
        (Some(subnet), None) => (None, subnet),
        _ => bail!("the bridge network has no address: {text:?}"),
    };
    if let Some(gateway) = gateway {
        return Ok(gateway.parse()?);
    }
    let (network, _) = subnet
        .split_once('/')
        .with_context(|| format!("the bridge network's subnet: {subnet:?}"))?;
    let network: std::net::Ipv4Addr = network.parse()?;
    Ok(IpAddr::V4((u32::from(network) + 1).into()))
}

/// A Docker engine: the one already running, or `dockerd` started here and stopped on drop.
#[derive(Debug)]
pub struct DockerEngine {
    dockerd: Option<ProcessGroup>,
    /// The default bridge's gateway: this host as the containers see it (`host.docker.internal`).
    pub bridge: IpAddr,
}

impl DockerEngine {
    /// Uses the running engine, or starts `dockerd` (as root) and waits until it answers.
    pub fn ensure(log_dir: &Path) -> anyhow::Result<Self> {
        let mut dockerd = None;
        if !docker_answers() {
            // Without the userland proxy a published port refuses connections until the
            // container listens, so SAM's wait for a function's runtime API (a TCP connect) is
            // real; with it, the proxy accepts at once and an invoke can go out too early.
            let mut process = ProcessGroup::spawn(
                "dockerd",
                Command::new("dockerd").arg("--userland-proxy=false"),
                &log_dir.join("dockerd.log"),
            )?
            // dockerd stops its containers before it exits.
            .with_grace(Duration::from_secs(60));
            let deadline = Instant::now() + Duration::from_secs(60);
            while !docker_answers() {
                if let Some(status) = process.child.try_wait()? {
                    bail!("dockerd exited with {status}; see {}", log_dir.display());
                }
                if Instant::now() > deadline {
                    bail!("dockerd did not answer within 60 s");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            dockerd = Some(process);
        }
        let bridge = bridge_address()?;
        Ok(Self { dockerd, bridge })
    }

    /// Whether this engine was started here (and so is stopped on drop).
    pub fn started_here(&self) -> bool {
        self.dockerd.is_some()
    }
}

fn run_script(script: &str, args: &[&str], log: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let log_file = std::fs::File::create(log)?;
    let status = Command::new(workspace_root().join(script))
        .args(args)
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("running {script}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "{script} {args:?} failed ({status}):\n{}",
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    Ok(started.elapsed())
}

/// How long [`prepare`] took, step by step.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    /// The base image (nothing to do when it exists).
    pub base_image: Duration,
    /// `sam build` of both functions.
    pub sam_build: Duration,
}

/// Builds the base image for `arch` if it is missing and runs `sam build` for `arch` into
/// [`build_dir`], through the same scripts as `make sam-local`.
pub fn prepare(arch: &str, log_dir: &Path) -> anyhow::Result<Prepared> {
    let base_image = run_script(
        "infra/local/lambda-base-image.sh",
        &[arch],
        &log_dir.join("base-image.log"),
    )?;
    let build_dir = build_dir(arch);
    let build_dir = build_dir.to_string_lossy();
    let sam_build = run_script(
        "infra/local/sam-build.sh",
        &[arch, &build_dir],
        &log_dir.join("sam-build.log"),
    )?;
    Ok(Prepared {
        base_image,
        sam_build,
    })
}

/// Ids (short form) of the containers, in any state, labelled as `sam local`'s function
/// containers on this engine.
pub fn lambda_containers() -> anyhow::Result<Vec<String>> {
    let output = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            "label=sam.cli.container.type=lambda",
        ])
        .output()?;
    let mut ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    ids.sort();
    Ok(ids)
}

/// Waits up to `timeout` for the Lambda containers to be `expected` (SAM stops its warm
/// containers while it shuts down, which can outlast its own exit by a few seconds on a busy
/// machine), and answers the last list seen.
pub fn wait_for_lambda_containers(
    expected: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = lambda_containers()?;
        if now == expected || Instant::now() >= deadline {
            return Ok(now);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Removes every Lambda container not in `keep` (what SAM left behind; `make sam-local` does
/// the same when it stops) and answers what it removed, after printing what each was.
pub fn remove_lambda_containers_except(keep: &[String]) -> anyhow::Result<Vec<String>> {
    let left: Vec<String> = lambda_containers()?
        .into_iter()
        .filter(|id| !keep.contains(id))
        .collect();
    if left.is_empty() {
        return Ok(left);
    }
    let inspect = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.Name}} {{.Config.Image}} created {{.Created}} {{.State.Status}} \
             labels {{json .Config.Labels}}",
        ])
        .args(&left)
        .output()?;
    eprintln!(
        "removing Lambda containers: {}",
        String::from_utf8_lossy(&inspect.stdout)
    );
    let status = Command::new("docker")
        .args(["rm", "--force"])
        .args(&left)
        .status()?;
    if !status.success() {
        bail!("docker rm --force {left:?}: {status}");
    }
    Ok(left)
}

/// Creates (without starting) a container labelled as a `sam local` function container, from
/// the local base image of `arch`: what a container SAM left behind looks like to the sweep.
/// Answers its short id.
pub fn create_stray_lambda_container(arch: &str) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args([
            "create",
            "--label",
            "sam.cli.container.type=lambda",
            &format!("public.ecr.aws/lambda/provided:al2023-{arch}"),
            // Never started: any command does (the image has none of its own).
            "true",
        ])
        .output()?;
    if !output.status.success() {
        bail!("docker create: {}", String::from_utf8_lossy(&output.stderr));
    }
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(id.chars().take(12).collect())
}

/// What every `sam local` command of a test shares.
#[derive(Debug, Clone)]
pub struct SamConfig {
    /// Architecture the functions were built for.
    pub arch: String,
    /// The `--env-vars` file.
    pub env_vars: PathBuf,
    /// An STS endpoint on this machine (the local S3 server answers STS too): `sam` asks for
    /// the account id at start, and would otherwise try AWS.
    pub sts_endpoint: String,
}

impl SamConfig {
    fn command(&self, subcommand: &str) -> Command {
        let template = build_dir(&self.arch).join("template.yaml");
        let mut command = Command::new("sam");
        command
            .current_dir(workspace_root())
            .args(["local", subcommand, "--template"])
            .arg(template)
            .args([
                "--parameter-overrides",
                &format!("Architecture={}", self.arch),
            ])
            .arg("--env-vars")
            .arg(&self.env_vars)
            .args([
                "--skip-pull-image",
                "--add-host",
                "host.docker.internal:host-gateway",
                // SAM reaches each container's published port here; "localhost" may try ::1
                // first, where nothing listens without Docker's userland proxy.
                "--container-host",
                "127.0.0.1",
            ])
            .env("SAM_CLI_TELEMETRY", "0")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL_STS", &self.sts_endpoint)
            .envs(LOCAL_AWS_ENV);
        command
    }

    /// `sam local invoke <function> --event <event>`: a cold container per call.
    pub fn invoke(&self, function: &str, event: &Path) -> anyhow::Result<Output> {
        let output = self
            .command("invoke")
            .arg(function)
            .arg("--event")
            .arg(event)
            .output()
            .context("running sam local invoke; run `make deps` to install sam")?;
        Ok(output)
    }
}

/// The last 40 lines of a log file.
pub fn tail_of(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `sam local start-lambda` or `start-api`, with warm containers, stopped on drop (SAM removes
/// its containers on SIGTERM).
#[derive(Debug)]
pub struct SamLocal {
    process: ProcessGroup,
    /// `http://<address>:<port>`.
    pub base_url: String,
    /// Where SAM's and the functions' output goes.
    pub log: PathBuf,
}

impl SamLocal {
    /// `sam local start-lambda <functions>` on `addr` (a free port of an address of this host).
    pub fn start_lambda(
        config: &SamConfig,
        addr: SocketAddr,
        functions: &[&str],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut command = config.command("start-lambda");
        command.args(functions);
        Self::start(command, addr, log_dir.join("sam-start-lambda.log"))
    }

    /// `sam local start-api` on `addr`.
    pub fn start_api(config: &SamConfig, addr: SocketAddr, log_dir: &Path) -> anyhow::Result<Self> {
        Self::start(
            config.command("start-api"),
            addr,
            log_dir.join("sam-start-api.log"),
        )
    }

    /// Starts SAM and waits until it listens. SAM exits now and then while it starts its warm
    /// containers (seen once in a full `make test`: exit status 1 a few seconds in, and not
    /// again in the next runs), so an exit before listening is retried once; its log goes to
    /// the test's output, and a second failure is the error, with SAM's log.
    fn start(mut command: Command, addr: SocketAddr, log: PathBuf) -> anyhow::Result<Self> {
        command
            .args(["--warm-containers", "EAGER", "--no-watch", "--host"])
            .arg(addr.ip().to_string())
            .args(["--port", &addr.port().to_string()]);
        let mut attempt = 1;
        loop {
            // SAM stops and removes its warm containers on SIGTERM, one after the other, each
            // given 3 s to stop: on a busy machine that can outlast a 10 s grace, and SAM killed
            // part way would leave the rest behind, so it gets a minute.
            let mut process = ProcessGroup::spawn("sam local", &mut command, &log)?
                .with_grace(Duration::from_secs(60));
            // Warm containers start (and their image is built, once) before SAM listens.
            match wait_for_address(addr, &mut process.child, Duration::from_secs(300)) {
                Ok(()) => {
                    return Ok(Self {
                        process,
                        base_url: format!("http://{addr}"),
                        log,
                    });
                }
                Err(error) => {
                    let tail = tail_of(&log);
                    if attempt == 2 {
                        return Err(error.context(format!("SAM's log:\n{tail}")));
                    }
                    eprintln!("sam local did not start ({error}); once more. Its log:\n{tail}");
                    drop(process);
                    attempt += 1;
                }
            }
        }
    }

    /// SAM's log so far, for failure messages.
    pub fn log_tail(&self) -> String {
        tail_of(&self.log)
    }

    /// Process id of SAM.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// The `--env-vars` document for both functions: the model reads `model_uri` from the S3 server
/// on `s3_port` and the orchestrator invokes the model through the Invoke API on `lambda_port`,
/// both on this host as the containers see it.
pub fn env_vars(s3_port: u16, model_uri: &str, lambda_port: u16) -> serde_json::Value {
    serde_json::json!({
        "ModelFunction": {
            "AWS_ENDPOINT_URL_S3": format!("http://host.docker.internal:{s3_port}"),
            "MODEL_URI": model_uri,
        },
        "OrchestratorFunction": {
            "AWS_ENDPOINT_URL_LAMBDA": format!("http://host.docker.internal:{lambda_port}"),
            "MODEL_FUNCTION_NAME": "ModelFunction",
            "MODEL_INVOKE_TIMEOUT_MS": "60000",
            // `sam local start-api` runs no IAM or JWT authorizer, so its events carry no
            // caller; the template's default (IAM) would have the handler refuse them all.
            "API_AUTH": "NONE",
        },
    })
}
