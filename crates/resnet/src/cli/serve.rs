//! `resnet serve`: the model server (MMS-compatible inference and management APIs, KServe v2
//! REST, dynamic batching); everything but the argument parsing lives in `resnet::serve`.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use resnet::serve::{BatchSettings, Limits, ModelSpec, ServeConfig, Server};

/// Serve image classifiers over HTTP (Model Server-compatible API, KServe v2, dynamic batching).
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet serve --model resnet50=resnet50-v2                      # a zoo model, fetched on first use
  resnet serve --model r50=model.onnx --port 0 --management-port 0
  curl -T kitten.jpg http://127.0.0.1:8080/predictions/resnet50   # top-5 classes as JSON

At startup the bound addresses are printed to stdout, one line each:
  inference http://127.0.0.1:8080
  management http://127.0.0.1:8081
SIGTERM or Ctrl-C stops accepting connections, answers in-flight requests and exits 0.
The API and every status code: docs/serve.md.")]
pub struct Args {
    /// A model to serve: NAME=PATH|ZOO_NAME (repeatable); without NAME= it is named after the
    /// zoo name or file stem. More can be registered through the management API.
    #[arg(long = "model", short = 'm', value_name = "NAME=PATH|ZOO_NAME", value_parser = ModelSpec::parse)]
    models: Vec<ModelSpec>,
    /// Address both APIs listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Inference API port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Management API port (0: any free port).
    #[arg(long, default_value_t = 8081)]
    management_port: u16,
    /// Most images per model run (dynamic batching); 1 turns batching off.
    #[arg(long, default_value_t = BatchSettings::default().batch_size)]
    batch_size: usize,
    /// How long the first request of a batch waits for more, in milliseconds.
    #[arg(long, default_value_t = BatchSettings::default().max_batch_delay_ms)]
    max_batch_delay_ms: u64,
    /// Worker threads per model taking batches from its queue.
    #[arg(long, default_value_t = BatchSettings::default().workers)]
    workers: usize,
    /// Threads of each model's engine pool (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Requests admitted per model and not yet taken by a worker; one more gets 503.
    #[arg(long, default_value_t = Limits::default().queue_depth)]
    queue_depth: usize,
    /// From a request's arrival to its answer; past it the answer is 504.
    #[arg(long, default_value_t = Limits::default().request_timeout.as_millis() as u64)]
    request_timeout_ms: u64,
    /// Largest request body; larger gets 413.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest image in pixels (width × height from its header); larger gets 413 before any
    /// pixel is decoded (decompression bombs).
    #[arg(long, default_value_t = Limits::default().max_image_pixels)]
    max_image_pixels: u64,
    #[command(flatten)]
    engine: super::EngineArgs,
    /// Also shut down (gracefully) when standard input reaches end of file: for supervisors
    /// and tests that hold the server's stdin, so it never outlives them.
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.queue_depth > 0, "--queue-depth must be at least 1");
    anyhow::ensure!(a.request_timeout_ms > 0, "--request-timeout-ms must be at least 1");
    anyhow::ensure!(a.threads != Some(0), "--threads must be at least 1");
    a.engine.validate()?;
    let batch =
        BatchSettings { batch_size: a.batch_size, max_batch_delay_ms: a.max_batch_delay_ms, workers: a.workers };
    batch.validate().map_err(anyhow::Error::msg)?;
    let config = ServeConfig {
        bind: a.bind,
        port: a.port,
        management_port: a.management_port,
        models: a.models,
        batch,
        limits: Limits {
            queue_depth: a.queue_depth,
            request_timeout: Duration::from_millis(a.request_timeout_ms),
            max_body_bytes: a.max_body_bytes,
            max_image_pixels: a.max_image_pixels,
        },
        threads: a.threads.unwrap_or(0),
        engine: a.engine.engine(),
        mode: a.engine.mode(super::ModeChoice::Fast).into(),
    };
    let names: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("serve-http").build()?;
    let result = runtime.block_on(async move {
        let server = Server::start(config).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "inference http://{}", server.inference_addr())?;
        writeln!(out, "management http://{}", server.management_addr())?;
        out.flush()?;
        drop(out);
        eprintln!("serving {} model(s): {}", names.len(), names.join(", "));
        let exit_on_eof = a.exit_on_stdin_eof;
        server
            .run(async move {
                tokio::select! {
                    _ = resnet::serve::shutdown_signal() => {},
                    _ = stdin_eof(), if exit_on_eof => {},
                }
                eprintln!("shutting down: answering in-flight requests");
            })
            .await?;
        eprintln!("stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    });
    // Every request is answered and every worker joined; nothing left worth waiting for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Completes when standard input is closed. Read on a plain thread: the runtime would wait
/// for a blocking stdin read at exit.
async fn stdin_eof() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("serve-stdin".into()).spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    match spawned {
        Ok(_) => {
            let _ = rx.await;
        }
        Err(_) => std::future::pending().await,
    }
}
