//! `resnet-loadgen`: the command line around the load loop in `lib.rs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use resnet_loadgen::{load_payloads, run, LoadConfig};

/// Load generator for `resnet serve`: N concurrent clients POST real images round-robin to one
/// URL for D seconds, then report requests, errors by status, throughput and p50/p90/p99 latency.
#[derive(Parser)]
#[command(name = "resnet-loadgen", version, after_help = EXIT_CODES)]
struct Args {
    /// Where to POST, e.g. http://127.0.0.1:8080/predictions/resnet50
    #[arg(long)]
    url: String,
    /// Image files or folders (their .jpg/.jpeg/.png files, in name order); repeatable
    #[arg(long = "images", value_name = "FILE|DIR", required = true, num_args = 1..)]
    images: Vec<PathBuf>,
    /// Concurrent clients, each on its own keep-alive connection
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of load (requests in flight at the end finish and count)
    #[arg(long = "duration-s", default_value_t = 60.0)]
    duration_s: f64,
    /// Per-request timeout in milliseconds (counted as error kind "timeout")
    #[arg(long = "timeout-ms", default_value_t = 30_000)]
    timeout_ms: u64,
    /// Print the report as one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// Exit 1 if any request failed
    #[arg(long)]
    fail_on_error: bool,
}

const EXIT_CODES: &str = "Exit codes: 0 the run completed, 1 --fail-on-error and some requests failed, \
                          2 bad arguments or unreadable images.";

fn main() -> ExitCode {
    let args = Args::parse();
    match main_with(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn main_with(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.duration_s.is_finite() && args.duration_s > 0.0) {
        anyhow::bail!("--duration-s must be a positive number of seconds");
    }
    let config = LoadConfig {
        url: args.url,
        payloads: load_payloads(&args.images)?,
        clients: args.clients,
        duration: Duration::from_secs_f64(args.duration_s),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let report = run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if args.fail_on_error && report.error_count() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
