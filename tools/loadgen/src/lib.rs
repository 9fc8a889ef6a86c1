//! The load loop of `resnet-loadgen`: N client threads, each with its own keep-alive HTTP/1.1
//! connection, POST real images round-robin to one URL until a deadline, and every answer is
//! sorted into ok / error-by-status with its latency. Blocking clients on OS threads measure
//! exactly what a client sees (no async scheduler between the clock and the socket); at the
//! request rates a ResNet-50 server reaches (tens to hundreds per second) 16 threads cost nothing.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// One request body: an image file read once at startup and shared by all clients.
#[derive(Debug, Clone)]
pub struct Payload {
    pub name: String,
    pub bytes: Arc<[u8]>,
    pub content_type: &'static str,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Full URL each request is POSTed to, e.g. `http://127.0.0.1:8080/predictions/resnet50`.
    pub url: String,
    /// Bodies, sent in order, cycling (one shared counter, so N clients still walk the list).
    pub payloads: Vec<Payload>,
    pub clients: usize,
    /// Clients start no new request after this; requests in flight at the deadline finish and count.
    pub duration: Duration,
    /// Per-request limit (connect + send + receive); past it the request counts as `timeout`.
    pub timeout: Duration,
}

/// Latency percentiles in milliseconds, over the successful requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub clients: usize,
    pub duration_s: f64,
    /// Wall time from the common start to the last client's last answer.
    pub elapsed_s: f64,
    /// Every request that got an answer or failed (ok + errors).
    pub requests: u64,
    /// 2xx answers whose body is a non-empty JSON array (a prediction list).
    pub ok: u64,
    /// Failed requests by kind: the HTTP status (`"503"`), `"invalid-body"` (2xx without a
    /// prediction list), `"timeout"` or `"transport"` (connection refused/reset, ...).
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second of `elapsed_s`.
    pub throughput_rps: f64,
    pub latency_ms: LatencyMs,
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The human-readable summary `resnet-loadgen` prints without `--json`.
    pub fn to_text(&self) -> String {
        let errors = if self.errors.is_empty() {
            "0".to_string()
        } else {
            let by_kind: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            format!("{} ({})", self.error_count(), by_kind.join(", "))
        };
        let l = &self.latency_ms;
        format!(
            "url         {}\n\
             clients     {} for {:.1} s (elapsed {:.2} s)\n\
             requests    {} (ok {})\n\
             errors      {}\n\
             throughput  {:.2} req/s\n\
             latency ms  p50 {:.1}  p90 {:.1}  p99 {:.1}  mean {:.1}  max {:.1}  (successful requests)\n",
            self.url,
            self.clients,
            self.duration_s,
            self.elapsed_s,
            self.requests,
            self.ok,
            errors,
            self.throughput_rps,
            l.p50,
            l.p90,
            l.p99,
            l.mean,
            l.max
        )
    }
}

/// Reads the images to send: each path is a file, or a folder whose `.jpg`/`.jpeg`/`.png`
/// files (any case) are taken in name order.
pub fn load_payloads(paths: &[PathBuf]) -> Result<Vec<Payload>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && content_type_of(p).is_some())
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("no .jpg, .jpeg or .png files in {}", path.display());
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        bail!("no images given (--images FILE|DIR)");
    }
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let content_type = content_type_of(&path).unwrap_or("application/octet-stream");
            Ok(Payload { name: path.display().to_string(), bytes: bytes.into(), content_type })
        })
        .collect()
}

fn content_type_of(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        _ => None,
    }
}

/// What one client saw, merged at the end.
#[derive(Default)]
struct ClientTally {
    ok_latencies_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs the load and waits for every client to finish.
pub fn run(config: &LoadConfig) -> Result<Report> {
    if config.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if config.payloads.is_empty() {
        bail!("no images to send");
    }
    if !config.url.starts_with("http://") && !config.url.starts_with("https://") {
        bail!("--url must start with http:// or https:// (got '{}')", config.url);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start_line = Arc::new(Barrier::new(config.clients + 1));
    let clients: Vec<_> = (0..config.clients)
        .map(|_| {
            let (config, next, start_line) = (config.clone(), next.clone(), start_line.clone());
            std::thread::spawn(move || {
                start_line.wait();
                client_loop(&config, &next)
            })
        })
        .collect();
    start_line.wait();
    let start = Instant::now();
    let mut total = ClientTally::default();
    for client in clients {
        let tally = client.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        total.ok_latencies_us.extend(tally.ok_latencies_us);
        for (kind, n) in tally.errors {
            *total.errors.entry(kind).or_default() += n;
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let ok = total.ok_latencies_us.len() as u64;
    let requests = ok + total.errors.values().sum::<u64>();
    Ok(Report {
        url: config.url.clone(),
        clients: config.clients,
        duration_s: config.duration.as_secs_f64(),
        elapsed_s,
        requests,
        ok,
        errors: total.errors,
        throughput_rps: ok as f64 / elapsed_s,
        latency_ms: latency_summary(total.ok_latencies_us),
    })
}

fn client_loop(config: &LoadConfig, next: &AtomicUsize) -> ClientTally {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(config.timeout)).build().into();
    let deadline = Instant::now() + config.duration;
    let mut tally = ClientTally::default();
    while Instant::now() < deadline {
        let payload = &config.payloads[next.fetch_add(1, Ordering::Relaxed) % config.payloads.len()];
        let sent = Instant::now();
        let outcome = agent
            .post(&config.url)
            .header("Content-Type", payload.content_type)
            .send(&payload.bytes[..])
            .map_err(classify_transport_error)
            .and_then(classify_response);
        let latency_us = sent.elapsed().as_micros() as u64;
        match outcome {
            Ok(()) => tally.ok_latencies_us.push(latency_us),
            Err(kind) => *tally.errors.entry(kind).or_default() += 1,
        }
    }
    tally
}

fn classify_transport_error(error: ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timeout".to_string(),
        _ => "transport".to_string(),
    }
}

/// Reads the whole body (so the connection can be reused) and judges the answer.
fn classify_response(mut response: ureq::http::Response<ureq::Body>) -> Result<(), String> {
    let status = response.status();
    let mut body = Vec::new();
    let read = response.body_mut().as_reader().read_to_end(&mut body);
    if !status.is_success() {
        return Err(status.as_u16().to_string());
    }
    if let Err(e) = read {
        let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
        return Err(if timed_out { "timeout" } else { "transport" }.to_string());
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(items)) if !items.is_empty() => Ok(()),
        _ => Err("invalid-body".to_string()),
    }
}

fn latency_summary(mut us: Vec<u64>) -> LatencyMs {
    if us.is_empty() {
        return LatencyMs::default();
    }
    us.sort_unstable();
    let ms: Vec<f64> = us.iter().map(|&u| u as f64 / 1000.0).collect();
    LatencyMs {
        p50: percentile(&ms, 50.0),
        p90: percentile(&ms, 90.0),
        p99: percentile(&ms, 99.0),
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
        max: ms[ms.len() - 1],
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest value with at least `p` percent
/// of the values at or below it (so p99 of 100 values is the 99th, never an interpolation).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of an empty list");
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 90.0), 90.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.0), 1.0);
    }

    #[test]
    fn latency_summary_of_known_values() {
        let s = latency_summary(vec![4000, 1000, 3000, 2000]);
        assert_eq!(s, LatencyMs { p50: 2.0, p90: 4.0, p99: 4.0, mean: 2.5, max: 4.0 });
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type_of(Path::new("a/b.JPEG")), Some("image/jpeg"));
        assert_eq!(content_type_of(Path::new("x.png")), Some("image/png"));
        assert_eq!(content_type_of(Path::new("labels.tsv")), None);
    }
}
