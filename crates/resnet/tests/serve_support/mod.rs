//! Test-only helpers for the `serve_*` integration tests: start the real `resnet serve`
//! binary on loopback with ports 0, talk HTTP to it with ureq, find the shared assets.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use resnet_test_support::shared_asset;

pub const MODEL_REL: &str = "models/resnet50-v1-keras/model.onnx";

/// The real ResNet-50 (or `None` with a "skipping" note outside CI).
pub fn model_path() -> Option<PathBuf> {
    shared_asset(MODEL_REL)
}

/// The sample images folder (`images/` + `labels.tsv`).
pub fn samples_dir() -> Option<PathBuf> {
    shared_asset("data/imagenet-samples")
}

pub fn sample_image(name: &str) -> Vec<u8> {
    let dir = samples_dir().expect("samples exist when the model does");
    std::fs::read(dir.join("images").join(name)).unwrap()
}

/// A running `resnet serve`; killed (if still running) when dropped. Its stdin is a pipe held
/// by the test, and the server runs with `--exit-on-stdin-eof`, so it never outlives the test
/// process even if the test is killed.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`
    pub inference: String,
    pub management: String,
}

impl ServerProcess {
    /// `resnet serve --port 0 --management-port 0 --model r50=<the real model> <extra>`.
    pub fn start_r50(extra: &[&str]) -> ServerProcess {
        let model = model_path().expect("checked by the caller");
        let spec = format!("r50={}", model.display());
        let mut args = vec!["--model", spec.as_str()];
        args.extend_from_slice(extra);
        ServerProcess::start(&args)
    }

    pub fn start(args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_resnet"))
            .args(["serve", "--port", "0", "--management-port", "0", "--exit-on-stdin-eof"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start resnet serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(180);
        let (mut inference, mut management) = (None, None);
        while inference.is_none() || management.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("inference ") {
                        inference = Some(url.to_string());
                    } else if let Some(url) = line.strip_prefix("management ") {
                        management = Some(url.to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("resnet serve did not print its addresses (exit: {:?})", child.wait());
                }
            }
        }
        let stdin = child.stdin.take();
        ServerProcess { child, stdin, inference: inference.unwrap(), management: management.unwrap() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stdin.take();
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An answer: status, headers we look at, body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an MMS-style JSON error with this status; returns its message.
    pub fn assert_error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.content_type.starts_with("application/json"), "{}", self.content_type);
        let v = self.json();
        assert_eq!(v["code"], status, "{}", self.body);
        assert_eq!(v["type"], kind, "{}", self.body);
        let message = v["message"].as_str().expect("a message").to_string();
        assert!(!message.is_empty());
        message
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("an HTTP answer");
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let body = r.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
    Reply { status: r.status().as_u16(), content_type, retry_after, body }
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

pub fn options(url: &str) -> Reply {
    reply(agent().options(url).call())
}

pub fn delete(url: &str) -> Reply {
    reply(agent().delete(url).call())
}

pub fn post(url: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    let mut req = agent().post(url);
    if let Some(t) = content_type {
        req = req.header("Content-Type", t);
    }
    reply(req.send(body))
}

pub fn put(url: &str) -> Reply {
    reply(agent().put(url).send_empty())
}

pub fn post_with(agent: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> Result<Reply, ureq::Error> {
    let r = agent.post(url).header("Content-Type", content_type).send(body)?;
    Ok(reply(Ok(r)))
}

/// A multipart/form-data body with one file field.
pub fn multipart(field: &str, file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "resnet-test-boundary-7d93";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The value of a metric line `name{labels} value` in a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}
