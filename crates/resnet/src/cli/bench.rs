//! `resnet bench`: time a model on random input — load, compile, per-run latency, throughput,
//! GFLOP/s against the machine's measured FMA peak, and peak memory.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use resnet::engine::plan::Plan;
use resnet::{Model, Tensor};
use serde::Serialize;

/// Time a model on random input: latency, throughput, GFLOP/s, fraction of peak, peak RSS.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet bench --model resnet50-v2                          # compiled plan, batch 1, all cores
  resnet bench --model resnet50-v2 --engine reference       # the node-by-node reference executor
  resnet bench --model model.onnx --batch 8 --threads 2 --runs 20
  resnet bench --model model.onnx --mode exact              # no Winograd (fast is the default)
  resnet bench --model resnet18-v1 --threads 1 --json | jq .median_ms
  scripts/bench-vs-ort.sh --quick                           # ours vs ONNX Runtime, side by side

The input is random normal [B,3,H,W] with H and W from the model's declared input (224 where
symbolic); weights, not input values, decide the speed. Load is parsing and importing the
file; compile is what the engine does before the first run: graph passes (BatchNorm folding,
…) and plan compilation (weight packing) for `plan`, nothing for `reference`. Times per run
are wall-clock after --warmup runs; min/median/max are over --runs.

GFLOP/s counts 2 FLOPs per multiply-add of Conv, Gemm and MatMul (as `resnet inspect`
counts MACs) times the batch, divided by the median time. The peak it is compared with is
measured at startup: every thread runs an FMA loop with the widest vectors the CPU has
(AVX-512 where present, else AVX2; 12 independent accumulators, ~55 ms) at the same time
and the best of three trials counts; on CPUs
without AVX2+FMA the fraction is n/a unless --peak-gflops gives the peak (e.g. 116 per
core on the project's AMD EPYC Zen 4, ../shared/PERFORMANCE.md). Other load on the machine
lowers the measured peak as it lowers the timings; give --peak-gflops for a fixed reference.
On AVX-512 CPUs the report also says whether 512-bit FMAs run at full rate (two a cycle, as
256-bit ones: Intel Xeon cores with both FMA ports) or at half (AMD Zen 4, one-port cores):
the plan's kernels choose some code paths by it, and it is why the AVX-512 peak is twice the
AVX2 one on some CPUs and equal on others.
Peak RSS is the process's high-water mark (VmHWM, Linux only) at the end: model, engine
buffers and all runs.

Compare with other runtimes only within one run, alternating (scripts/bench-vs-ort.sh).")]
pub struct Args {
    /// ONNX model file, or a zoo model name (see `resnet models list`).
    #[arg(long, short = 'm', value_name = "FILE|NAME")]
    model: String,
    /// Images per run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Threads the engine runs on (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Timed runs (median, min, max are over these).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// Engine: `plan`, the compiled plan after the graph passes, or `reference`, the
    /// node-by-node reference executor.
    #[arg(long, default_value = "plan", value_parser = ["plan", "reference"])]
    engine: String,
    #[doc = "Arithmetic of the plan's convolutions: `fast` (Winograd, the default) or `exact`."]
    #[arg(long, value_enum, long_help = super::MODE_HELP)]
    mode: Option<super::ModeChoice>,
    /// Use this fp32 peak (GFLOP/s, all threads together) instead of measuring it.
    #[arg(long, value_name = "GFLOPS")]
    peak_gflops: Option<f64>,
    /// Also time every step of the plan (--runs profiled runs; median per step) and print
    /// the time and GFLOP/s per kernel shape — where the time goes — and the time a run
    /// spends outside its steps (plan engine only).
    #[arg(long)]
    profile: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: super::models::RegistryArgs,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    engine: String,
    mode: String,
    batch: usize,
    threads: usize,
    /// The plan ran each batch as one part per thread (`Plan::splits_batches`, batch ≥
    /// threads), not every step split over the threads.
    batch_per_thread: bool,
    runs: u32,
    warmup: u32,
    input_shape: Vec<usize>,
    /// Parsing and importing the file.
    load_ms: f64,
    /// Graph passes and plan compilation (0 for the reference executor).
    compile_ms: f64,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    images_per_s: f64,
    /// Multiply-adds of one image at `input_shape`.
    macs_per_image: u64,
    gflops: f64,
    /// fp32 peak of `threads` threads, GFLOP/s; `None` when it could not be measured.
    peak_gflops: Option<f64>,
    /// `measured (avx512 fma loop, T threads)` (or avx2) or `--peak-gflops`.
    peak_source: String,
    /// Whether 512-bit FMAs run at the rate of 256-bit ones (`kernels::fma512_full_rate`);
    /// `None` without AVX-512.
    fma512_full_rate: Option<bool>,
    fraction_of_peak: Option<f64>,
    /// VmHWM in MB (10^6 bytes); `None` off Linux.
    peak_rss_mb: Option<f64>,
    /// With --profile: one row per kernel shape, slowest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<Vec<ProfileRow>>,
    /// With --profile: the median wall time of a profiled run, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_run_ms: Option<f64>,
    /// With --profile: the median over the profiled runs of each run's wall time minus its
    /// steps' times, ms — what lies between and around the steps (handing buffers over,
    /// starting and ending the threads' team, the input check and the output's copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_outside_ms: Option<f64>,
}

/// Steps of one kernel shape and fusion (e.g. every `conv W[64, 64, 3, 3] group 1` with
/// `Conv+Relu`) together.
#[derive(Debug, Serialize)]
struct ProfileRow {
    kind: String,
    /// Fused op types of the steps, e.g. `Conv+Add+Relu`.
    fused: String,
    steps: usize,
    /// Sum over the steps of each step's median time.
    ms: f64,
    /// Share of the profiled run's total.
    fraction: f64,
    gmacs: f64,
    gflops: Option<f64>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(m) = a.mode.filter(|&m| a.engine == "reference" && m != super::ModeChoice::Exact) {
        anyhow::bail!("--mode {} needs --engine plan (the reference executor has exact arithmetic only)", m.name());
    }
    let mode = match a.engine.as_str() {
        "reference" => super::ModeChoice::Exact,
        _ => a.mode.unwrap_or(super::ModeChoice::Fast),
    };
    let threads = match a.engine.as_str() {
        // The reference executor's kernels run on rayon's global pool.
        "reference" => {
            super::init_threads(a.threads.map(|t| t as usize))?;
            rayon::current_num_threads()
        }
        // The plan owns its pool (PlanOptions::threads, 0 = one per core).
        _ => a.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |t| t as usize),
    };
    let batch = a.batch as usize;

    let path = resnet::resolve_model(&a.model, &a.registry.resolve_options())?;
    let start = Instant::now();
    let model = Model::load(&path)?;
    let load = start.elapsed();

    // MACs and the input shape from the same shape inference `resnet inspect` uses: batch 1,
    // 224 for symbolic spatial sizes.
    let summary = resnet::inspect::summarize(&model)?;
    let macs_per_image = summary
        .macs
        .with_context(|| format!("{}: cannot count multiply-adds (shapes depend on runtime values)", path.display()))?;
    anyhow::ensure!(
        model.graph().inputs.len() == 1 && summary.macs_input.len() == 4,
        "{}: bench needs one image input [N,C,H,W], the model declares {} input(s) of shape {:?}",
        path.display(),
        model.graph().inputs.len(),
        summary.macs_input
    );
    let mut input_shape = summary.macs_input.clone();
    input_shape[0] = batch;
    let input = random_normal(input_shape.clone(), 0);

    let node_macs = if a.profile {
        anyhow::ensure!(a.engine == "plan", "--profile times the steps of the compiled plan: use --engine plan");
        resnet::inspect::node_macs(&model).map(|(m, _)| m.into_iter().collect::<std::collections::HashMap<_, _>>())
    } else {
        None
    };
    let start = Instant::now();
    let engine = Engine::compile(&a.engine, model, threads, mode.into())?;
    let compile = start.elapsed();

    for _ in 0..a.warmup {
        engine.run(&input)?;
    }
    let mut times_ms = Vec::with_capacity(a.runs as usize);
    for _ in 0..a.runs {
        let t = Instant::now();
        engine.run(&input)?;
        times_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times_ms.sort_by(f64::total_cmp);
    let median_ms = median(&times_ms);

    let (peak, peak_source) = match a.peak_gflops {
        Some(p) => (Some(p), "--peak-gflops".to_string()),
        None => {
            let (peak, isa) = match peak_gflops(threads) {
                Some((p, isa)) => (Some(p), isa),
                None => (None, "none"),
            };
            (peak, format!("measured ({isa} fma loop, {threads} threads)"))
        }
    };
    let gflops = 2.0 * macs_per_image as f64 * batch as f64 / (median_ms * 1e6);
    let (profile, profile_run_ms, profile_outside_ms) = match (&engine, a.profile) {
        (Engine::Plan(plan), true) => {
            let p = profile(plan, &input, a.runs, batch, &node_macs.unwrap_or_default())?;
            (Some(p.rows), Some(p.run_ms), Some(p.outside_ms))
        }
        _ => (None, None, None),
    };
    let report = Report {
        model: path.display().to_string(),
        engine: a.engine,
        mode: format!("{mode:?}").to_lowercase(),
        batch,
        threads,
        batch_per_thread: matches!(&engine, Engine::Plan(p) if p.splits_batch_of(batch)),
        runs: a.runs,
        warmup: a.warmup,
        input_shape,
        load_ms: ms(load),
        compile_ms: ms(compile),
        median_ms,
        min_ms: times_ms[0],
        max_ms: times_ms[times_ms.len() - 1],
        images_per_s: batch as f64 * 1e3 / median_ms,
        macs_per_image,
        gflops,
        peak_gflops: peak,
        peak_source,
        fma512_full_rate: avx512().then(resnet_engine::plan::kernels::fma512_full_rate),
        fraction_of_peak: peak.map(|p| gflops / p),
        peak_rss_mb: peak_rss_bytes().map(|b| b as f64 / 1e6),
        profile,
        profile_run_ms,
        profile_outside_ms,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    let or_na = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
    println!("{}", r.model);
    let parts = if r.batch_per_thread { ", one part of the batch per thread" } else { "" };
    println!("  engine      {} ({}), {} threads{parts}", r.engine, r.mode, r.threads);
    println!("  input       {:?}, {} runs after {} warm-up", r.input_shape, r.runs, r.warmup);
    println!("  load        {:.1} ms (parse + import)", r.load_ms);
    println!("  compile     {:.1} ms", r.compile_ms);
    println!("  per run     median {:.2} ms  (min {:.2}, max {:.2})", r.median_ms, r.min_ms, r.max_ms);
    println!("  throughput  {:.2} images/s", r.images_per_s);
    println!("  compute     {:.1} GFLOP/s ({:.3} GMACs per image)", r.gflops, r.macs_per_image as f64 / 1e9);
    let rate = match r.fma512_full_rate {
        Some(true) => "; 512-bit FMAs at full rate",
        Some(false) => "; 512-bit FMAs at half rate",
        None => "",
    };
    println!(
        "  of peak     {} (peak {} GFLOP/s, {}{rate})",
        or_na(r.fraction_of_peak.map(|f| format!("{:.1} %", f * 100.0))),
        or_na(r.peak_gflops.map(|p| format!("{p:.1}"))),
        r.peak_source
    );
    println!("  peak RSS    {}", or_na(r.peak_rss_mb.map(|m| format!("{m:.1} MB"))));
    if let Some(rows) = &r.profile {
        println!("  profile     median per step over {} runs, summed per kernel shape:", r.runs);
        if r.batch_per_thread {
            println!("              (profiled runs take the whole batch through each step on all threads)");
        }
        println!("  {:>9} {:>6} {:>5} {:>8} {:>8}  kernel [fused]", "ms", "share", "steps", "GMACs", "GFLOP/s");
        for row in rows {
            println!(
                "  {:>9.3} {:>5.1}% {:>5} {:>8.3} {:>8}  {} [{}]",
                row.ms,
                row.fraction * 100.0,
                row.steps,
                row.gmacs,
                or_na(row.gflops.map(|g| format!("{g:.1}"))),
                row.kind,
                row.fused
            );
        }
    }
    if let (Some(run), Some(outside)) = (r.profile_run_ms, r.profile_outside_ms) {
        println!("  outside     {outside:.3} ms of a profiled run's {run:.2} (medians): between and around the steps");
    }
}

/// [`profile`]'s result.
struct Profile {
    rows: Vec<ProfileRow>,
    /// Median wall time of a profiled run, ms.
    run_ms: f64,
    /// Median of each profiled run's wall time minus its steps' times, ms.
    outside_ms: f64,
}

/// Profiled runs of `plan`: the median time of each step, summed per kernel shape, with the
/// multiply-adds of the steps' nodes (`node_macs`, per image) times the batch; and the runs'
/// wall times, whole and outside the steps.
fn profile(
    plan: &Plan,
    input: &Tensor,
    runs: u32,
    batch: usize,
    node_macs: &std::collections::HashMap<String, u64>,
) -> anyhow::Result<Profile> {
    let steps = plan.step_summaries();
    let mut per_step: Vec<Vec<f64>> = vec![Vec::with_capacity(runs as usize); steps.len()];
    let (mut walls, mut outside) = (Vec::with_capacity(runs as usize), Vec::with_capacity(runs as usize));
    for _ in 0..runs {
        let x = vec![input.clone()];
        let start = Instant::now();
        let (_, times) = plan.run_profiled(x)?;
        let wall = ms(start.elapsed());
        // The steps run one after the other inside the call: their sum is within its wall time.
        outside.push((wall - times.iter().sum::<f64>()).max(0.0));
        walls.push(wall);
        for (acc, t) in per_step.iter_mut().zip(times) {
            acc.push(t);
        }
    }
    walls.sort_by(f64::total_cmp);
    outside.sort_by(f64::total_cmp);
    let mut rows: Vec<ProfileRow> = Vec::new();
    for (step, mut times) in steps.iter().zip(per_step) {
        times.sort_by(f64::total_cmp);
        let t = median(&times);
        let macs = node_macs.get(&step.name).copied().unwrap_or(0) as f64 * batch as f64;
        let fused = step.fused.join("+");
        match rows.iter_mut().find(|r| r.kind == step.kind && r.fused == fused) {
            Some(row) => {
                row.steps += 1;
                row.ms += t;
                row.gmacs += macs / 1e9;
            }
            None => rows.push(ProfileRow {
                kind: step.kind.clone(),
                fused,
                steps: 1,
                ms: t,
                fraction: 0.0,
                gmacs: macs / 1e9,
                gflops: None,
            }),
        }
    }
    let total: f64 = rows.iter().map(|r| r.ms).sum();
    for row in &mut rows {
        row.fraction = if total > 0.0 { row.ms / total } else { 0.0 };
        row.gflops = (row.gmacs > 0.0 && row.ms > 0.0).then(|| 2.0 * row.gmacs / (row.ms * 1e-3));
    }
    rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(Profile { rows, run_ms: median(&walls), outside_ms: median(&outside) })
}

/// The engine being timed, prepared once before the runs.
enum Engine {
    Reference(Model),
    Plan(Arc<Plan>),
}

impl Engine {
    fn compile(name: &str, model: Model, threads: usize, mode: resnet::Mode) -> anyhow::Result<Engine> {
        match name {
            "reference" => Ok(Engine::Reference(model)),
            "plan" => {
                // The same passes and compilation as `Model::run` uses.
                let model = model.with_engine(resnet::Engine::Plan).with_mode(mode).with_threads(threads);
                Ok(Engine::Plan(model.plan()?))
            }
            other => anyhow::bail!("unknown engine '{other}' (choose from: plan, reference)"),
        }
    }

    fn run(&self, input: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        match self {
            Engine::Reference(model) => Ok(model.run(vec![input.clone()])?),
            Engine::Plan(plan) => Ok(plan.run(vec![input.clone()])?),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median of sorted, non-empty values (the upper middle one for an even count, as
/// ../shared/tools/ort_bench.py takes it).
fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// Standard normal values (SplitMix64 + Box–Muller): input values do not change the speed,
/// so any reproducible stream will do.
fn random_normal(shape: Vec<usize>, seed: u64) -> Tensor {
    let mut state = seed;
    let mut next_unit = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64 // in (0, 1)
    };
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let (u, v) = (next_unit(), next_unit());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_f32(shape, data)
}

/// The process's peak resident set size (VmHWM), on Linux.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Whether this CPU has AVX-512F.
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// fp32 peak of `threads` threads running at once, in GFLOP/s, and the instruction set that
/// reached it: the best of three trials of an FMA loop on every thread, with the widest
/// vectors the CPU has (AVX-512 where present: on cores with two 512-bit FMA units it doubles
/// AVX2's peak; on Zen 4 it equals it). `None` without AVX2 and FMA (not x86-64, or an old CPU).
fn peak_gflops(threads: usize) -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    {
        use resnet_engine::plan::kernels::fma;
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        let avx512 = avx512();
        // 12 accumulators × 8 (16) lanes × 2 FLOPs per iteration: 2^25 iterations are 6.4
        // (12.9) GFLOP, ~55 ms at 116 (232) GFLOP/s per core — long against a thread's ~1 ms
        // wake-up at the barrier.
        const ITERATIONS: u64 = 1 << 25;
        let lanes = if avx512 { 16.0 } else { 8.0 };
        let flops_per_thread = ITERATIONS as f64 * fma::FLOPS_PER_LANE_ITERATION * lanes;
        let mut best = 0.0f64;
        for _ in 0..3 {
            let barrier = std::sync::Barrier::new(threads);
            let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            let start = Instant::now();
                            // SAFETY: AVX2 and FMA (AVX-512F when `avx512`) were detected above.
                            std::hint::black_box(unsafe {
                                if avx512 {
                                    fma::fma_loop_avx512(ITERATIONS)
                                } else {
                                    fma::fma_loop(ITERATIONS)
                                }
                            });
                            (start, Instant::now())
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().expect("the FMA loop does not panic")).collect()
            });
            // From the first thread's start to the last one's end: each thread times itself,
            // so a late wake-up of any thread cannot shorten the span.
            let first = spans.iter().map(|s| s.0).min()?;
            let last = spans.iter().map(|s| s.1).max()?;
            let seconds = (last - first).as_secs_f64();
            best = best.max(flops_per_thread * threads as f64 / seconds / 1e9);
        }
        Some((best, if avx512 { "avx512" } else { "avx2" }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        None
    }
}
