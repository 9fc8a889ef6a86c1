//! `GET /metrics`: Prometheus text exposition (format 0.0.4), formatted here — a handful of
//! counters and histograms do not need a metrics framework.
//!
//! * `resnet_requests_total{model, api, code}`: answered inference requests (`api` is
//!   `predictions` or `kserve`; a model that does not exist is counted as `model=""`, so
//!   clients cannot grow the label set).
//! * `resnet_request_duration_seconds{model}`: arrival to answer, every status (histogram).
//! * `resnet_batch_size{model}`: images per model run (histogram).
//! * `resnet_inference_duration_seconds{model}`: one batched model run (histogram).
//! * `resnet_queue_depth{model}`: admitted requests waiting for a worker (gauge).
//! * `resnet_requests_in_flight`: inference requests whose handler has started and not yet
//!   answered, all models (gauge): what a graceful shutdown still answers.
//! * `resnet_model_load_seconds{model}`: load + compile time of the loaded model (gauge).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const LATENCY_BUCKETS_S: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last entry is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        let i = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, &'static str, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batch_size: BTreeMap<String, Histogram>,
    inference: BTreeMap<String, Histogram>,
    load_seconds: BTreeMap<String, f64>,
}

/// The server's metrics; shared by the handlers and the model workers.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
}

/// One inference request in flight ([`Metrics::enter`]); counted until dropped, so a handler
/// cancelled by a client that went away is uncounted too.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A label value with `\`, `"` and newlines escaped as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An inference request's handler starts: in flight until the guard is dropped.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// One answered inference request.
    pub fn request(&self, model: &str, api: &'static str, code: u16, elapsed: Duration) {
        let mut m = self.lock();
        *m.requests.entry((model.to_string(), api, code)).or_default() += 1;
        m.latency
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS_S))
            .observe(elapsed.as_secs_f64());
    }

    /// One batched model run of `images` images.
    pub fn batch(&self, model: &str, images: usize, elapsed: Duration) {
        let mut m = self.lock();
        m.batch_size.entry(model.to_string()).or_insert_with(|| Histogram::new(BATCH_BUCKETS)).observe(images as f64);
        m.inference
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS_S))
            .observe(elapsed.as_secs_f64());
    }

    pub fn model_loaded(&self, model: &str, elapsed: Duration) {
        self.lock().load_seconds.insert(model.to_string(), elapsed.as_secs_f64());
    }

    pub fn model_unloaded(&self, model: &str) {
        self.lock().load_seconds.remove(model);
    }

    /// The text exposition; `queues` gives each loaded model's current queue depth.
    pub fn render(&self, queues: &[(String, usize)]) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# HELP resnet_requests_total Inference requests answered, by model, API and HTTP status.\n");
        out.push_str("# TYPE resnet_requests_total counter\n");
        for ((model, api, code), n) in &m.requests {
            let _ =
                writeln!(out, "resnet_requests_total{{model=\"{}\",api=\"{api}\",code=\"{code}\"}} {n}", escape(model));
        }
        let histograms = [
            ("resnet_request_duration_seconds", "Inference request latency, arrival to answer.", &m.latency),
            ("resnet_batch_size", "Images per batched model run.", &m.batch_size),
            ("resnet_inference_duration_seconds", "Duration of one batched model run.", &m.inference),
        ];
        for (name, help, series) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (model, h) in series {
                h.render(&mut out, name, &format!("model=\"{}\"", escape(model)));
            }
        }
        out.push_str("# HELP resnet_queue_depth Admitted inference requests not yet taken by a worker.\n");
        out.push_str("# TYPE resnet_queue_depth gauge\n");
        for (model, depth) in queues {
            let _ = writeln!(out, "resnet_queue_depth{{model=\"{}\"}} {depth}", escape(model));
        }
        out.push_str("# HELP resnet_requests_in_flight Inference requests being handled, all models.\n");
        out.push_str("# TYPE resnet_requests_in_flight gauge\n");
        let _ = writeln!(out, "resnet_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out.push_str("# HELP resnet_model_load_seconds Time to load and compile the model.\n");
        out.push_str("# TYPE resnet_model_load_seconds gauge\n");
        for (model, s) in &m.load_seconds {
            let _ = writeln!(out, "resnet_model_load_seconds{{model=\"{}\"}} {s}", escape(model));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_histograms_and_labelled_counters() {
        let m = Metrics::default();
        m.request("r50", "predictions", 200, Duration::from_millis(30));
        m.request("r50", "predictions", 200, Duration::from_millis(300));
        m.request("", "predictions", 404, Duration::from_millis(1));
        m.batch("r50", 3, Duration::from_millis(100));
        m.model_loaded("r50", Duration::from_millis(1500));
        let text = m.render(&[("r50".into(), 2)]);
        assert!(text.contains("resnet_requests_total{model=\"r50\",api=\"predictions\",code=\"200\"} 2\n"), "{text}");
        assert!(text.contains("resnet_requests_total{model=\"\",api=\"predictions\",code=\"404\"} 1\n"));
        assert!(text.contains("resnet_request_duration_seconds_bucket{model=\"r50\",le=\"0.025\"} 0\n"));
        assert!(text.contains("resnet_request_duration_seconds_bucket{model=\"r50\",le=\"0.05\"} 1\n"));
        assert!(text.contains("resnet_request_duration_seconds_bucket{model=\"r50\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("resnet_request_duration_seconds_count{model=\"r50\"} 2\n"));
        assert!(text.contains("resnet_batch_size_bucket{model=\"r50\",le=\"2\"} 0\n"));
        assert!(text.contains("resnet_batch_size_bucket{model=\"r50\",le=\"4\"} 1\n"));
        assert!(text.contains("resnet_queue_depth{model=\"r50\"} 2\n"));
        assert!(text.contains("resnet_model_load_seconds{model=\"r50\"} 1.5\n"));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
