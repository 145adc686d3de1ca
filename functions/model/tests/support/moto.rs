//! A real S3 server (`moto_server`) on 127.0.0.1 for the tests that need one.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `moto_server` on a free port, stopped (with its process group) when dropped.
pub(crate) struct LocalS3 {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) endpoint: String,
}

impl LocalS3 {
    /// Starts `moto_server` with extra environment `env` and waits until it listens.
    pub(crate) fn start(env: &[(&str, &str)]) -> Self {
        // A free port can be taken by a parallel test between the probe and moto's bind; the
        // loser exits at once, which is checked after the port answers, and tries another.
        for _ in 0..5 {
            if let Some(server) = Self::try_start(env) {
                return server;
            }
        }
        panic!("moto_server could not start on a free port");
    }

    fn try_start(env: &[(&str, &str)]) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("moto_server must be installed (make deps)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr}"
            );
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        Some(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// An S3 client for this server with the given credentials.
    pub(crate) fn client_as(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let credentials =
            aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "test");
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// An S3 client with the placeholder credentials moto accepts while auth is off.
    pub(crate) fn client(&self) -> aws_sdk_s3::Client {
        self.client_as("local", "local")
    }

    /// Creates an IAM user with no policy and returns its access key id and secret, through
    /// moto's IAM query API (no IAM SDK needed: moto does not check signatures while its
    /// `INITIAL_NO_AUTH_ACTION_COUNT` lasts).
    pub(crate) fn create_user_without_permissions(&self, name: &str) -> (String, String) {
        let _ = self.iam(&format!(
            "Action=CreateUser&UserName={name}&Version=2010-05-08"
        ));
        let answer = self.iam(&format!(
            "Action=CreateAccessKey&UserName={name}&Version=2010-05-08"
        ));
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let start = answer.find(&open).map(|i| i + open.len()).unwrap();
            let end = answer[start..].find('<').unwrap() + start;
            answer[start..end].to_owned()
        };
        (field("AccessKeyId"), field("SecretAccessKey"))
    }

    fn iam(&self, form: &str) -> String {
        use std::io::{Read, Write};
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
    }
}

impl Drop for LocalS3 {
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
    }
}
