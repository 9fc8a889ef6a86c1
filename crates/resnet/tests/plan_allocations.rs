//! After warm-up, a run of the compiled plan allocates no activation memory — every
//! intermediate buffer comes from the plan's pool and graph outputs are exact-size copies —
//! and the pool does not grow from run to run.
//! Counted with a global allocator on a zoo-structured ResNet-18 (v1) and ResNet-50 (v2) at
//! 64×64, batch 4, one and two threads. Every allocation during a steady-state run is
//! attributed by backtrace: none of 32 KiB or more may come from our code, and the rest
//! outside `gemm` stays within a bookkeeping bound. (The `gemm` crate 0.19
//! allocates its packing workspace on every call — ~1.3–2.5 MB per ResNet-18 run here — which
//! only replacing or patching it can avoid; the test reports that figure.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use resnet::engine::passes::{self, PassOptions};
use resnet::engine::plan::direct::bf16;
use resnet::engine::plan::{Mode, Plan, PlanOptions};
use resnet::zoo::arch::{self, ArchSpec, Init};
use resnet::Tensor;

struct Counting;

/// Smallest allocation that is attributed: the smallest activation here, 4×512×2×2 floats
/// (the slot table of ResNet-50 v2, ~17 KB, stays below).
const BIG: usize = 32 * 1024;

static ARMED: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static GEMM_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Backtraces of big allocations that did not come from `gemm`.
static OURS: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while this thread attributes an allocation (the backtrace allocates too).
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

fn record(size: usize) {
    if !ARMED.load(Ordering::Relaxed) || IN_HOOK.with(|h| h.replace(true)) {
        return;
    }
    BYTES.fetch_add(size, Ordering::Relaxed);
    // Every allocation is attributed, small ones too: on CPUs without AVX-512 the 1×1 convs
    // run `gemm`, whose many small workspaces would otherwise count as the plan's bookkeeping.
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    if trace.contains("gemm_common") {
        GEMM_BYTES.fetch_add(size, Ordering::Relaxed);
    } else if size >= BIG {
        OURS.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{size} bytes at\n{trace}"));
    }
    IN_HOOK.with(|h| h.set(false));
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_runs_allocate_no_activation_buffers() {
    // bf16 mode (its per-thread bfloat16 panels) where the CPU has it.
    let modes: &[Mode] = if bf16::supported() { &[Mode::Exact, Mode::Bf16] } else { &[Mode::Exact] };
    for (name, &mode) in ["resnet18-v1", "resnet50-v2"].into_iter().flat_map(|n| modes.iter().map(move |m| (n, m))) {
        let mut spec = ArchSpec::from_name(name).unwrap();
        spec.input_size = 64;
        spec.classes = 10;
        let graph = passes::optimize(arch::build(&spec, Init::Seed(3)).unwrap(), &PassOptions::default()).unwrap();
        let mut one_thread: Option<Vec<f32>> = None;
        for threads in [1, 2] {
            let plan = Plan::compile(&graph, &PlanOptions { threads, mode, ..PlanOptions::default() }).unwrap();
            let name = format!("{name} {mode:?}");
            // v1 ends in Flatten, v2 in Reshape(0, -1): both work image by image, so on two
            // threads the batch of 4 runs as two parts of 2, each in its own buffer pool.
            assert_eq!(plan.splits_batches(), threads > 1, "{name}, {threads} threads");
            let input =
                Tensor::from_f32(vec![4, 3, 64, 64], (0..4 * 3 * 64 * 64).map(|i| (i % 17) as f32 / 17.0).collect());
            let first = plan.run(vec![input.clone()]).unwrap();
            for _ in 0..2 {
                plan.run(vec![input.clone()]).unwrap();
            }
            let x = input.clone();
            BYTES.store(0, Ordering::Relaxed);
            GEMM_BYTES.store(0, Ordering::Relaxed);
            ARMED.store(true, Ordering::Relaxed);
            let out = plan.run(vec![x]).unwrap();
            ARMED.store(false, Ordering::Relaxed);
            assert_eq!(out[0].as_f32(), first[0].as_f32(), "{name}: runs agree");
            match &one_thread {
                None => one_thread = Some(out[0].as_f32().unwrap().to_vec()),
                Some(want) => {
                    // bf16 rounds every 1×1 conv's input, which turns the float32 summation
                    // differences between the whole batch and its parts (fast mode's Winograd
                    // variant follows a call's tile count) into differences of its rounding.
                    let tol = if mode == Mode::Bf16 { 1e-3 } else { 1e-5 };
                    for (g, w) in out[0].as_f32().unwrap().iter().zip(want) {
                        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{name}: split {g} vs whole {w}");
                    }
                }
            }
            let ours = std::mem::take(&mut *OURS.lock().unwrap());
            assert!(ours.is_empty(), "{name}, {threads} threads: the plan allocated:\n{}", ours.join("\n"));
            let (bytes, gemm) = (BYTES.load(Ordering::Relaxed), GEMM_BYTES.load(Ordering::Relaxed));
            // Everything else is bookkeeping: slot table, shapes, the 80-byte output; one
            // slot table per part when the batch is split, the shapes and result lists of
            // the large-plane steps once per image (each part runs them image by image).
            let parts = if plan.splits_batches() { threads } else { 1 };
            let bound = parts * 32 * 1024 + 4 * 16 * 1024;
            assert!(bytes - gemm < bound, "{name}, {threads} threads: {} bytes outside gemm", bytes - gemm);
            eprintln!(
                "{name}, {threads} threads: per run {gemm} bytes in gemm's workspace, {} elsewhere",
                bytes - gemm
            );
            // The pool holds what the steps need, not one more buffer per run: each run's
            // input is the caller's and is dropped when dead, never pooled.
            let pooled = plan.pooled_bytes();
            for _ in 0..5 {
                plan.run(vec![input.clone()]).unwrap();
            }
            assert_eq!(plan.pooled_bytes(), pooled, "{name}, {threads} threads: the pool grew");
        }
    }
}
