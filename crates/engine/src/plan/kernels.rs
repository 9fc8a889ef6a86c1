//! The plan's element-wise and pooling kernels: plain loops written to autovectorize,
//! compiled three times — for the baseline target, with `avx2,fma`, and with `avx512f` —
//! and picked at run time with `is_x86_feature_detected!` (other CPUs get the portable copy).
//! The copies compute bit-identical results: the bodies fix the order of every sum, and Rust
//! never contracts `a * b + c` into an FMA on its own.
//!
//! Layout everywhere is NCHW row-major; "plane" means one `[H·W]` (or `[D·H·W]`) channel
//! plane of one image.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

use crate::ops::padding::Axis;

/// Instruction sets the kernels are compiled for, widest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Portable = 0,
    Avx2 = 1,
    Avx512 = 2,
}

/// The widest [`Isa`] the kernels may use (default: no limit). Tests lower it to run each
/// copy; results are identical, so changing it while plans run is harmless.
static ISA_CAP: AtomicU8 = AtomicU8::new(Isa::Avx512 as u8);

/// How many filter chunks to cut each of `tiles` equal conv tiles into so that `threads`
/// workers get equal shares: `threads / gcd(tiles, threads)` while there are fewer tiles than
/// `4 · threads`, else 1 (never more than `max` chunks). Every chunk re-does its tile's input
/// preparation (the direct kernel's padded band, `gemm`'s packing of the im2col panel or
/// input), so the fewest chunks that balance the threads win: against 8 (direct) or 4 (gemm)
/// tiles per 2 threads, Keras ResNet-50 at batch 1 on 2 threads measured 3×3 layers 4–5 %
/// and 1×1 layers ~10 % faster (`resnet bench --threads 2 --runs 20 --mode exact
/// --profile`, alternated 3×: run median 55.0–59.0 → 50.1–52.6 ms).
pub(crate) fn filter_split(tiles: usize, threads: usize, max: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if threads <= 1 || tiles >= 4 * threads {
        return 1;
    }
    (threads / gcd(tiles, threads)).min(max).max(1)
}

/// Most keys a [`memoized`] cache holds before it starts over.
const MEMO_KEYS: usize = 64;

/// A [`memoized`] cache: values by key, the most recent last.
pub(crate) type Memo<const N: usize, V> = std::cell::RefCell<Vec<([usize; N], V)>>;

/// `f()`, remembered in `cache` under `key`: for the cost-model searches a kernel ran on
/// every call (`f` a pure function of `key`; `wide_tiling` and `busiest_load` were ~0.15 % of
/// a two-thread Keras ResNet-50 run's `perf` samples). The caches are per thread, one per
/// kernel kind, and start over after [`MEMO_KEYS`] shapes.
pub(crate) fn memoized<const N: usize, V: Copy>(cache: &Memo<N, V>, key: [usize; N], f: impl FnOnce() -> V) -> V {
    if let Some(&(_, v)) = cache.borrow().iter().find(|(k, _)| *k == key) {
        return v;
    }
    let v = f();
    let mut c = cache.borrow_mut();
    if c.len() >= MEMO_KEYS {
        c.clear();
    }
    c.push((key, v));
    v
}

/// Most workers [`busiest_load`] tracks, and most ranges the team cuts a step into.
pub(crate) const MAX_WORKERS: usize = 64;

/// Tasks `start .. end` of range `r` when `tasks` are cut into `ranges` contiguous ranges,
/// one per worker of the team (see `team`'s docs), the first ones shorter by one at most.
pub(crate) fn task_range(r: usize, ranges: usize, tasks: usize) -> (usize, usize) {
    (tasks * r / ranges, tasks * (r + 1) / ranges)
}

/// The task the worker that runs task `t` of `tasks` on `threads` workers takes next while the
/// workers keep pace (the team's order, see [`task_range`]): `t + 1` within its range, none at
/// the range's end (then it takes whatever another range has left).
pub(crate) fn next_own_task(t: usize, tasks: usize, threads: usize) -> Option<usize> {
    let ranges = threads.clamp(1, MAX_WORKERS);
    let mut r = (t * ranges / tasks.max(1)).min(ranges - 1);
    while r > 0 && task_range(r, ranges, tasks).0 > t {
        r -= 1;
    }
    while r + 1 < ranges && task_range(r + 1, ranges, tasks).0 <= t {
        r += 1;
    }
    (t + 1 < task_range(r, ranges, tasks).1).then_some(t + 1)
}

/// The load of the busiest of `threads` workers (1 ..= [`MAX_WORKERS`]) when `tasks` of
/// costs `cost(t)` are handed out as the team does: each worker runs its own range of
/// [`task_range`] in order, then takes the next unclaimed task of the ranges after its own;
/// the worker that is least loaded at any moment claims next.
pub(crate) fn busiest_load(threads: usize, tasks: usize, cost: impl Fn(usize) -> f64) -> f64 {
    assert!((1..=MAX_WORKERS).contains(&threads), "1 to {MAX_WORKERS} workers");
    let mut load = [0.0f64; MAX_WORKERS];
    let mut next: [usize; MAX_WORKERS] =
        std::array::from_fn(|r| if r < threads { task_range(r, threads, tasks).0 } else { 0 });
    let load = &mut load[..threads];
    loop {
        let me = (0..threads).min_by(|&a, &b| load[a].total_cmp(&load[b])).expect("threads ≥ 1");
        let Some(r) = (0..threads).map(|i| (me + i) % threads).find(|&r| next[r] < task_range(r, threads, tasks).1)
        else {
            break;
        };
        load[me] += cost(next[r]);
        next[r] += 1;
    }
    load.iter().copied().fold(0.0, f64::max)
}

thread_local! {
    /// Set while this thread runs one part of a batch split over the plan's threads
    /// ([`alone`]): the kernels then take no other thread.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// The threads a kernel spreads one step over: the current rayon pool's, or 1 inside
/// [`alone`].
pub(crate) fn threads() -> usize {
    if ALONE.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `body` with the kernels on this thread only ([`threads`] is 1 and [`for_each_task`]
/// runs in order): one part of a batch the plan splits over its threads.
pub(crate) fn alone<R>(body: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ALONE.with(|a| a.set(self.0));
        }
    }
    let _reset = Reset(ALONE.with(|a| a.replace(true)));
    body()
}

/// Runs `f(0..tasks)`: on the current rayon pool when it has more than one thread and there
/// is more than one task, else (or inside [`alone`]) in order on this thread (no fork-join
/// overhead).
pub(crate) fn for_each_task(tasks: usize, f: impl Fn(usize) + Send + Sync) {
    if threads() > 1 && tasks > 1 {
        if super::team::run_tasks(tasks, &f) {
            return;
        }
        (0..tasks).into_par_iter().for_each(f);
    } else {
        (0..tasks).for_each(f);
    }
}

/// Limits the kernels to `isa` and narrower (they still use only what the CPU has).
pub fn set_isa_cap(isa: Isa) {
    ISA_CAP.store(isa as u8, Ordering::Relaxed);
}

/// The copy the kernels run now: the widest the CPU has, within [`set_isa_cap`]'s limit.
pub fn active_isa() -> Isa {
    let cap = ISA_CAP.load(Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    {
        if cap >= Isa::Avx512 as u8 && std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if cap >= Isa::Avx2 as u8 && avx2_fma() {
            return Isa::Avx2;
        }
    }
    let _ = cap;
    Isa::Portable
}

/// Whether the CPU has AVX2 and FMA (every AVX-512 CPU does; kernels whose AVX-512 path
/// shares an AVX2 routine check it rather than assume it).
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One core's L2 cache in bytes, as Linux reports it for CPU 0
/// (`/sys/devices/system/cpu/cpu0/cache/index*/`: the level-2 data or unified cache), read
/// once per process; [`DEFAULT_L2_BYTES`] where that is missing or unreadable (other
/// systems, a sandbox without `/sys`).
pub(crate) fn l2_bytes() -> usize {
    static L2: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *L2.get_or_init(|| {
        sysfs_l2_bytes(std::path::Path::new("/sys/devices/system/cpu/cpu0/cache")).unwrap_or(DEFAULT_L2_BYTES)
    })
}

/// [`l2_bytes`] where the system does not say: 1 MiB (AMD Zen 4; Intel's client cores have
/// 1.25–2 MiB, its Xeon Scalable cores 1–2 MiB).
const DEFAULT_L2_BYTES: usize = 1 << 20;

/// The level-2 data or unified cache among the `index*` folders under `dir`, in bytes
/// (`size` reads like `2048K`).
fn sysfs_l2_bytes(dir: &std::path::Path) -> Option<usize> {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let p = e.path();
        if !e.file_name().to_str()?.starts_with("index")
            || read(p.join("level"))? != "2"
            || read(p.join("type"))? == "Instruction"
        {
            return None;
        }
        let size = read(p.join("size"))?;
        let (digits, unit) = size.split_at(size.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(size.len()));
        let n: usize = digits.parse().ok()?;
        let bytes = match unit {
            "" => Some(n),
            "K" => n.checked_mul(1 << 10),
            "M" => n.checked_mul(1 << 20),
            _ => None,
        }?;
        (bytes > 0).then_some(bytes)
    })
}

/// Whether this CPU runs 512-bit FMAs at the rate of 256-bit ones (two per cycle: Intel's
/// Xeon Scalable cores with both FMA ports), so that AVX-512 doubles the direct kernels'
/// multiply-adds per cycle; `false` where a 512-bit FMA takes two 256-bit units' cycle (AMD
/// Zen 4, one-port Intel cores) or there is no AVX-512. Timed once per process: 12
/// independent FMA chains of 512-bit and of 256-bit vectors ([`fma`], the loops of `resnet
/// bench`'s peak), the same count of each, best of five rounds after a longer warm-up (~1 ms
/// in all); full rate when the 512-bit loop takes less than 1.5× the 256-bit one's time (1×
/// full rate, 2× half rate).
pub fn fma512_full_rate() -> bool {
    static FULL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FULL.get_or_init(|| fma_probe().is_some_and(|(t512, t256)| t512.as_secs_f64() < 1.5 * t256.as_secs_f64()))
}

/// [`fma512_full_rate`]'s timings: the best of five rounds of 4096 iterations of the 512-bit
/// and of the 256-bit loop, after a warm-up of 64× that; `None` without AVX-512F, AVX2 and
/// FMA.
fn fma_probe() -> Option<(std::time::Duration, std::time::Duration)> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(std::arch::is_x86_feature_detected!("avx512f") && avx2_fma()) {
            return None;
        }
        const ITERATIONS: u64 = 4096;
        let time = |f: &dyn Fn() -> f32| {
            let t = std::time::Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        };
        let (mut best512, mut best256) = (std::time::Duration::MAX, std::time::Duration::MAX);
        for round in 0..6 {
            // Round 0 is a warm-up, long enough (~0.6 ms) for the core to reach its AVX-512
            // power state: until then some Intel cores run 512-bit ops slower.
            let n = if round == 0 { 64 * ITERATIONS } else { ITERATIONS };
            // SAFETY: AVX-512F, AVX2 and FMA are checked above.
            let t512 = time(&|| unsafe { fma::fma_loop_avx512(n) });
            // SAFETY: as above.
            let t256 = time(&|| unsafe { fma::fma_loop(n) });
            if round > 0 {
                best512 = best512.min(t512);
                best256 = best256.min(t256);
            }
        }
        Some((best512, best256))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// FMA throughput loops: [`fma512_full_rate`]'s probe and `resnet bench`'s peak (its
/// "fraction of peak").
#[cfg(target_arch = "x86_64")]
pub mod fma {
    use std::arch::x86_64::*;

    /// 12 accumulators × (multiply + add), per vector lane.
    pub const FLOPS_PER_LANE_ITERATION: f64 = 12.0 * 2.0;

    /// `iterations` rounds of 12 independent 8-lane FMAs: enough independent chains to cover
    /// 2 FMA pipes × 4-5 cycles of latency on current x86 cores.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_loop(iterations: u64) -> f32 {
        // The count through `black_box`, so that a call is never a pure function of it: with
        // a known count the optimizer kept one call per count in `fma512_full_rate`'s probe,
        // its timed rounds measured nothing (20 ns) and a Zen 4 read as full rate.
        let iterations = std::hint::black_box(iterations);
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iterations {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for x in acc {
            sum = _mm256_add_ps(sum, x);
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), sum);
        out.iter().sum()
    }

    /// [`fma_loop`] with 16-lane AVX-512 vectors.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_loop_avx512(iterations: u64) -> f32 {
        // As in `fma_loop`.
        let iterations = std::hint::black_box(iterations);
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iterations {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for x in acc {
            sum = _mm512_add_ps(sum, x);
        }
        _mm512_reduce_add_ps(sum)
    }
}

/// Defines `$vis fn $name(args)` that runs the body compiled for the widest instruction set
/// [`active_isa`] allows (AVX-512F, AVX2+FMA, or the baseline target). The body must be
/// safe code. Shared by the plan's kernel modules (`use crate::plan::kernels::multiversion`).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::plan::kernels::active_isa() {
                    // SAFETY: `active_isa` returns an ISA only when the CPU supports it.
                    $crate::plan::kernels::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::plan::kernels::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::plan::kernels::Isa::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// `c[p][j] += b[p] · w[8j ..]` for 3 broadcasts `b[0] = *x`, `b[1] = *(x + o1)`, `b[2] = *(x
/// + o2)` (byte offsets) and the 4 vectors of 32 floats at `w`, in inline assembly: its 12
/// accumulators (`c`, `[[__m256; 4]; 3]`), 3 broadcasts and one vector of `w` take all 16
/// ymm registers (the broadcasts first, then each vector with its 3 FMAs), which LLVM,
/// given intrinsics, spills. One channel step of the AVX2 Winograd products (3 tiles × a
/// 32-channel `U` panel) and one tap of the AVX2 narrow-plane conv kernel (3 positions ×
/// 32 filters). Must be used in an `unsafe` context with AVX2 and FMA enabled, the
/// broadcast addresses and `w .. + 32` readable.
#[cfg(target_arch = "x86_64")]
macro_rules! fma_3x4 {
    ($c:ident, $x:expr, $o1:expr, $o2:expr, $w:expr) => {
        std::arch::asm!(
            "vbroadcastss {x0}, dword ptr [{xp}]",
            "vbroadcastss {x1}, dword ptr [{xp} + {o1}]",
            "vbroadcastss {x2}, dword ptr [{xp} + {o2}]",
            "vmovups {w}, ymmword ptr [{wp}]",
            "vfmadd231ps {c00}, {x0}, {w}",
            "vfmadd231ps {c10}, {x1}, {w}",
            "vfmadd231ps {c20}, {x2}, {w}",
            "vmovups {w}, ymmword ptr [{wp} + 32]",
            "vfmadd231ps {c01}, {x0}, {w}",
            "vfmadd231ps {c11}, {x1}, {w}",
            "vfmadd231ps {c21}, {x2}, {w}",
            "vmovups {w}, ymmword ptr [{wp} + 64]",
            "vfmadd231ps {c02}, {x0}, {w}",
            "vfmadd231ps {c12}, {x1}, {w}",
            "vfmadd231ps {c22}, {x2}, {w}",
            "vmovups {w}, ymmword ptr [{wp} + 96]",
            "vfmadd231ps {c03}, {x0}, {w}",
            "vfmadd231ps {c13}, {x1}, {w}",
            "vfmadd231ps {c23}, {x2}, {w}",
            xp = in(reg) $x,
            o1 = in(reg) $o1,
            o2 = in(reg) $o2,
            wp = in(reg) $w,
            x0 = out(ymm_reg) _,
            x1 = out(ymm_reg) _,
            x2 = out(ymm_reg) _,
            w = out(ymm_reg) _,
            c00 = inout(ymm_reg) $c[0][0],
            c01 = inout(ymm_reg) $c[0][1],
            c02 = inout(ymm_reg) $c[0][2],
            c03 = inout(ymm_reg) $c[0][3],
            c10 = inout(ymm_reg) $c[1][0],
            c11 = inout(ymm_reg) $c[1][1],
            c12 = inout(ymm_reg) $c[1][2],
            c13 = inout(ymm_reg) $c[1][3],
            c20 = inout(ymm_reg) $c[2][0],
            c21 = inout(ymm_reg) $c[2][1],
            c22 = inout(ymm_reg) $c[2][2],
            c23 = inout(ymm_reg) $c[2][3],
            options(nostack, preserves_flags, readonly),
        )
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use fma_3x4;

multiversion! {
    /// `x = max(x, 0)` in place.
    pub fn relu_in_place(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

multiversion! {
    /// `y = max(x, 0)`.
    pub fn relu_into(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v.max(0.0);
        }
    }
}

multiversion! {
    /// `y += x`, optionally followed by ReLU.
    pub fn add_in_place(y: &mut [f32], x: &[f32], relu: bool) {
        if relu {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = (*o + v).max(0.0);
            }
        } else {
            for (o, &v) in y.iter_mut().zip(x) {
                *o += v;
            }
        }
    }
}

multiversion! {
    /// `y = a + b`, optionally followed by ReLU.
    pub fn add_into(a: &[f32], b: &[f32], y: &mut [f32], relu: bool) {
        if relu {
            for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
                *o = (u + v).max(0.0);
            }
        } else {
            for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
                *o = u + v;
            }
        }
    }
}

multiversion! {
    /// Per-channel affine `y = x·scale[c] + shift[c]` (inference BatchNorm), optional ReLU.
    /// `x` and `y` are `[N, C, plane]`.
    pub fn affine_into(x: &[f32], y: &mut [f32], scale: &[f32], shift: &[f32], plane: usize, relu: bool) {
        let c = scale.len();
        if plane == 0 || c == 0 {
            return;
        }
        for (i, (xp, yp)) in x.chunks_exact(plane).zip(y.chunks_exact_mut(plane)).enumerate() {
            let (s, t) = (scale[i % c], shift[i % c]);
            if relu {
                for (o, &v) in yp.iter_mut().zip(xp) {
                    *o = (v * s + t).max(0.0);
                }
            } else {
                for (o, &v) in yp.iter_mut().zip(xp) {
                    *o = v * s + t;
                }
            }
        }
    }
}

multiversion! {
    /// The conv epilogue on one output row segment, right after the GEMM wrote it (while it
    /// is in cache): adds the filter's bias, then the matching residual segment, then ReLU.
    pub fn conv_epilogue_row(row: &mut [f32], bias: f32, residual: Option<&[f32]>, relu: bool) {
        match residual {
            Some(res) => {
                if relu {
                    for (o, &v) in row.iter_mut().zip(res) {
                        *o = (*o + bias + v).max(0.0);
                    }
                } else {
                    for (o, &v) in row.iter_mut().zip(res) {
                        *o = *o + bias + v;
                    }
                }
            }
            None => {
                if relu {
                    for o in row.iter_mut() {
                        *o = (*o + bias).max(0.0);
                    }
                } else if bias != 0.0 {
                    for o in row.iter_mut() {
                        *o += bias;
                    }
                }
            }
        }
    }
}

/// Most rows (images) for which [`fc_small`] runs a fully connected layer instead of `gemm`.
pub(crate) const FC_SMALL_ROWS: usize = 8;

/// Columns per panel of a fully connected layer's packed filters ([`fc_panels_with`]).
pub(crate) const FC_PANEL: usize = 512;

/// A `[k, n]` matrix (element `(kk, j)` = `at(kk, j)`) as column panels of [`FC_PANEL`] (the
/// last narrower), each `[k, w]` row-major and contiguous: panel `p` starts at `k · p ·
/// FC_PANEL`. A thread streams its panels front to back, side by side ([`fc_columns`]); two
/// threads reading halves of each `[k, n]` row (2 KB runs at a 4 KB stride) were no faster
/// than one.
pub(crate) fn fc_panels_with(k: usize, n: usize, at: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(k * n);
    for j0 in (0..n).step_by(FC_PANEL) {
        let w = FC_PANEL.min(n - j0);
        for kk in 0..k {
            out.extend((j0..j0 + w).map(|j| at(kk, j)));
        }
    }
    out
}

/// `y[r·n + j] = alpha · Σ_kk a[r·k + kk] · b[kk][j] + y[r·n + j]` (the last term only with
/// `accumulate`) for `r < m ≤ FC_SMALL_ROWS`, `b` packed by [`fc_panels_with`]: a fully connected
/// layer at small batches, where it streams `b` (ResNet's 2048 × 1000 filters, 8 MB) from
/// memory once. The panels in one contiguous range per thread, each range's panels read
/// side by side ([`fc_columns`]); each column's sum in the order of `kk`, each product then
/// sum as written (no FMA), so any thread count gives the same bits.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fc_small(
    a: &[f32],
    m: usize,
    k: usize,
    b: &[f32],
    n: usize,
    alpha: f32,
    accumulate: bool,
    y: &mut [f32],
) {
    assert!(m <= FC_SMALL_ROWS, "fc_small takes at most {FC_SMALL_ROWS} rows");
    assert!(a.len() == m * k && b.len() == k * n && y.len() == m * n, "fc_small shapes");
    let out = OutPtr(y.as_mut_ptr());
    let panels = n.div_ceil(FC_PANEL);
    let tasks = threads().min(panels).max(1);
    for_each_task(tasks, |t| {
        let (p0, p1) = task_range(t, tasks, panels);
        let (j0, j1) = (p0 * FC_PANEL, (p1 * FC_PANEL).min(n));
        let cols = j1 - j0;
        SUMS.with(|sums| {
            let mut sums = sums.borrow_mut();
            if sums.len() < m * cols {
                sums.resize(m * cols, 0.0);
            }
            let sums = &mut sums[..m * cols];
            sums.fill(0.0);
            fc_columns(a, m, k, &b[k * j0..k * j1], cols, sums);
            for r in 0..m {
                // SAFETY: row `r`, columns `j0..j1` of `y` (checked `m·n` long): this
                // task's only.
                let row = unsafe { std::slice::from_raw_parts_mut(out.at(r * n + j0), cols) };
                for (o, &s) in row.iter_mut().zip(&sums[r * cols..(r + 1) * cols]) {
                    *o = if accumulate { alpha * s + *o } else { alpha * s };
                }
            }
        });
    });
}

thread_local! {
    /// [`fc_small`]'s per-thread sums; grows to the largest layer once.
    static SUMS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A kernel's raw output pointer, shared by its tasks: each writes a disjoint set of the
/// elements of one buffer that outlives the parallel loop (the callers say which).
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: the tasks write disjoint elements of one buffer that outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer `off` elements on. A method, so closures capture the (`Sync`) wrapper
    /// rather than its raw field.
    pub(crate) fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

multiversion! {
    /// `sums[r·cols + j] += Σ_kk a[r·k + kk] · b(kk, j)` for `r < m`, `j < cols`, `kk` in
    /// order, `b` being `cols` columns packed by [`fc_panels_with`]: row `kk` of every panel,
    /// then row `kk + 1` — one stream per panel read at once. ResNet-50's 2048 × 1000
    /// filters on one thread (two panels, 8 MB from memory each run) took 0.60–0.64 ms this
    /// way against 0.68–0.73 a panel after the other (`resnet bench --profile`, alternated
    /// twice); four panels of 256 columns 0.64.
    fn fc_columns(a: &[f32], m: usize, k: usize, b: &[f32], cols: usize, sums: &mut [f32]) {
        let panels = cols.div_ceil(FC_PANEL);
        for kk in 0..k {
            for p in 0..panels {
                let w = FC_PANEL.min(cols - p * FC_PANEL);
                let row = &b[k * p * FC_PANEL + kk * w..][..w];
                for r in 0..m {
                    let x = a[r * k + kk];
                    for (o, &v) in sums[r * cols + p * FC_PANEL..][..w].iter_mut().zip(row) {
                        *o += x * v;
                    }
                }
            }
        }
    }
}

multiversion! {
    /// Mean of each plane: `x` is `[planes, plane]`, `y` is `[planes]`.
    pub fn global_average(x: &[f32], y: &mut [f32], plane: usize) {
        if plane == 0 {
            y.fill(f32::NAN);
            return;
        }
        for (o, xp) in y.iter_mut().zip(x.chunks_exact(plane)) {
            // Eight partial sums: vectorizes, and is more accurate than one running sum.
            let mut acc = [0.0f32; 8];
            let mut chunks = xp.chunks_exact(8);
            for c in &mut chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += v;
                }
            }
            let tail: f32 = chunks.remainder().iter().sum();
            *o = (acc.iter().sum::<f32>() + tail) / plane as f32;
        }
    }
}

/// Longest padded input row [`max_pool_3_2`] takes (on the stack).
const WIDE_ROW: usize = 1024;

/// Output rows ahead at which [`max_pool_3_2`] prefetches its window's input rows. Keras
/// ResNet-50's pool (64 planes of 112×112, one thread, `resnet bench --profile` alternated
/// three times): 0.29–0.35 ms none, 0.28–0.32 two rows ahead, 0.28–0.30 four, 0.29–0.31 eight.
const POOL_AHEAD: usize = 4;

/// Most window rows [`max_pool_3_2_avx512`] takes.
const POOL_ROWS: usize = 8;

/// [`max_pool_3_2`] on AVX-512, in registers: per output row and 16 outputs `j0 ..`, the
/// window rows' maxima of the input columns `2·j0 − pb ..+ 32` and `..+ 2 ..+ 34` (loads
/// masked where the columns leave the row: the padding is the mask; the masks are the same
/// for every row), split by phase with two-source permutes. `vmaxps(x, acc)` returns `acc`
/// when `x` is NaN, so NaN never wins, as in the scalar `max`. The other ISAs' path — a row
/// buffer on the stack, filled with `-inf`, stored in vectors and read back at odd offsets —
/// took 60 ns an output row of ResNet's stem pool with its input in L1, this one 34 (a
/// throwaway microbenchmark); ResNet-18's pool step on one thread 0.289–0.304 → 0.179–0.209
/// ms (`resnet bench --profile`, old and new binaries alternated three times; ONNX Runtime's
/// 0.162).
///
/// # Safety
/// AVX-512F available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_pool_3_2_avx512(x: &[f32], y: &mut [f32], ah: &Axis, aw: &Axis) {
    use std::arch::x86_64::*;
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (iw, ow, pb) = (aw.input, aw.output, aw.pad_begin as isize);
    if ow == 0 {
        return;
    }
    // Per 16 outputs: the first column read, the masks of the four loads (`None`: all 34
    // columns inside the row) and of the store.
    let chunk = |j0: usize| {
        let base = 2 * j0 as isize - pb;
        // The lanes of 16 columns from `base + off` that lie in the row.
        let lanes = |off: isize| lane_mask16(-(base + off), iw as isize - (base + off));
        let inside = base >= 0 && base + 34 <= iw as isize;
        let masks = (!inside).then(|| [lanes(0), lanes(16), lanes(2), lanes(18)]);
        (base, masks, lane_mask16(0, (ow - j0) as isize))
    };
    let mut chunks = [(0, None, 0); WIDE_ROW / 32];
    for (c, slot) in chunks.iter_mut().enumerate().take(ow.div_ceil(16)) {
        *slot = chunk(16 * c);
    }
    let chunks = &chunks[..ow.div_ceil(16)];
    // Every input row lies in `x` (so the lines below are in bounds).
    assert!(ah.input * iw <= x.len(), "pool input shorter than its plane");
    let xp = x.as_ptr();
    for (oh, out) in y.chunks_exact_mut(ow).take(ah.output).enumerate() {
        // The window rows of the output row [`POOL_AHEAD`] on, fetched into L1 (the stem's
        // output, 3.2 MB at 224×224, comes from L3).
        for kh in 1..ah.kernel {
            let ih = ah.input_pos(oh + POOL_AHEAD, kh);
            if ih >= 0 && (ih as usize) < ah.input {
                let line = xp.wrapping_add(ih as usize * iw);
                for l in (0..iw).step_by(16) {
                    _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(l).cast());
                }
            }
        }
        let mut lines = [std::ptr::null(); POOL_ROWS];
        let mut n = 0;
        for kh in 0..ah.kernel {
            let ih = ah.input_pos(oh, kh);
            if ih >= 0 && (ih as usize) < ah.input {
                // In `x`: the assertion above.
                lines[n] = xp.wrapping_add(ih as usize * iw);
                n += 1;
            }
        }
        let lines = &lines[..n];
        for (c, &(base, masks, store)) in chunks.iter().enumerate() {
            let (mut a, mut b, mut d, mut e) = (ninf, ninf, ninf, ninf);
            for &line in lines {
                let p = line.wrapping_offset(base);
                // SAFETY: each line holds `iw` floats of `x` (asserted above). Unmasked: columns
                // `base .. base + 34` lie in it; masked: the lanes read do, the others are
                // neither read nor fault.
                unsafe {
                    match masks {
                        None => {
                            a = _mm512_max_ps(_mm512_loadu_ps(p), a);
                            b = _mm512_max_ps(_mm512_loadu_ps(p.add(16)), b);
                            d = _mm512_max_ps(_mm512_loadu_ps(p.add(2)), d);
                            e = _mm512_max_ps(_mm512_loadu_ps(p.add(18)), e);
                        }
                        Some([ma, mb, md, me]) => {
                            a = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, ma, p), a);
                            b = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, mb, p.wrapping_add(16)), b);
                            d = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, md, p.wrapping_add(2)), d);
                            e = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, me, p.wrapping_add(18)), e);
                        }
                    }
                }
            }
            let pair = _mm512_max_ps(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
            let m = _mm512_max_ps(pair, _mm512_permutex2var_ps(d, even, e));
            // SAFETY: the store's lanes are `out[16c ..][..min(16, ow − 16c)]`.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(16 * c), store, m) };
        }
    }
}

/// `out[j] = max(row[2j], row[2j + 1], row[2j + 2])` for the first outputs in groups of 8
/// whose reads lie in `row` (each group's 18 columns split by phase with shuffles, where
/// LLVM's vectorization of the scalar loop gathered them); returns how many it wrote.
/// `row` holds no NaN (its values are maxima that NaN never wins), so `vmaxps` gives the
/// scalar `max`'s values.
///
/// # Safety
/// AVX2 available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max3_stride2_avx2(row: &[f32], out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    // Even lanes of `a`, then of `b`: [a0, a2, a4, a6, b0, b2, b4, b6] (`ODD`: the odd ones).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn split<const ODD: bool>(a: __m256, b: __m256) -> __m256 {
        let s = if ODD { _mm256_shuffle_ps::<0xdd>(a, b) } else { _mm256_shuffle_ps::<0x88>(a, b) };
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0xd8>(_mm256_castps_pd(s)))
    }
    let mut j = 0;
    while j + 8 <= out.len() && 2 * j + 18 <= row.len() {
        let at = row[2 * j..].as_ptr();
        // SAFETY: columns 2j .. 2j + 18 lie in `row` (the loop test); out[j .. j + 8] too.
        unsafe {
            let (a, b) = (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)));
            let (c, d) = (_mm256_loadu_ps(at.add(2)), _mm256_loadu_ps(at.add(10)));
            let m = _mm256_max_ps(_mm256_max_ps(split::<false>(a, b), split::<true>(a, b)), split::<false>(c, d));
            _mm256_storeu_ps(out[j..].as_mut_ptr(), m);
        }
        j += 8;
    }
    j
}

multiversion! {
    /// [`max_pool_plane`] for 2-D windows 3 wide at stride 2 (ResNet's 3×3/2 stem pool): per
    /// output row, the max over the window's rows first (contiguous vectors), into a copy of
    /// the row shifted by the left pad between `-inf`s, then the three taps along it — one
    /// strided pass instead of one per tap (9 for 3×3; 0.54–0.76 ms of a ResNet-50 run
    /// against ONNX Runtime's 0.22–0.30). Same results: `max` with NaN never winning, in any
    /// order, and `-inf` for a window of only padding.
    fn max_pool_3_2(x: &[f32], y: &mut [f32], ah: &Axis, aw: &Axis) {
        #[cfg(target_arch = "x86_64")]
        if active_isa() == Isa::Avx512 && ah.kernel <= POOL_ROWS {
            // SAFETY: AVX-512F is active.
            unsafe { max_pool_3_2_avx512(x, y, ah, aw) };
            return;
        }
        let (iw, pb) = (aw.input, aw.pad_begin);
        let mut row = [f32::NEG_INFINITY; WIDE_ROW];
        // row[j] = max over the window's rows of input column j − pb (when inside the row).
        let lo = pb.min(WIDE_ROW);
        let hi = (pb + iw).min(WIDE_ROW).min(2 * aw.output + 2).max(lo);
        for (oh, out) in y.chunks_exact_mut(aw.output.max(1)).take(ah.output).enumerate() {
            // The input rows of the window [`POOL_AHEAD`] output rows on, fetched into L1: a
            // plane's rows come from L3 (the stem's output, 3.2 MB at 224×224), where the
            // hardware prefetcher starts over at each 4 KiB page.
            #[cfg(target_arch = "x86_64")]
            for kh in 1..ah.kernel {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                if let Some(ih) = ah.input_index(oh + POOL_AHEAD, kh) {
                    let line = x[ih * iw..].as_ptr();
                    for l in (0..iw).step_by(16) {
                        // SAFETY: a prefetch is a hint; it never faults, whatever the address.
                        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(l).cast()) };
                    }
                }
            }
            row[..hi].fill(f32::NEG_INFINITY);
            for kh in 0..ah.kernel {
                let Some(ih) = ah.input_index(oh, kh) else { continue };
                let line = &x[ih * iw..][..hi - lo];
                for (r, &v) in row[lo..hi].iter_mut().zip(line) {
                    *r = r.max(v);
                }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 is active when `active_isa` says so.
            let done = if active_isa() >= Isa::Avx2 { unsafe { max3_stride2_avx2(&row, out) } } else { 0 };
            #[cfg(not(target_arch = "x86_64"))]
            let done = 0;
            for (ow, o) in out.iter_mut().enumerate().skip(done) {
                let w = &row[2 * ow..2 * ow + 3];
                *o = w[0].max(w[1]).max(w[2]);
            }
        }
    }
}

multiversion! {
    /// MaxPool over one `[D,H,W]` plane (axes lifted to 3-D); padding never wins, a window
    /// of only padding gives -inf, NaN never wins (as the reference kernel). Loop order: per
    /// output row, one pass per kernel tap over the row's valid outputs — a branch-free
    /// strided max that vectorizes (the per-output tap loop took 6.8 ms on ResNet-50's 3×3/2 pool).
    pub fn max_pool_plane(x: &[f32], y: &mut [f32], axes: &[Axis; 3]) {
        let [ad, ah, aw] = axes;
        if *ad == Axis::UNIT && aw.kernel == 3 && aw.stride == 2 && aw.dilation == 1 && 2 * aw.output + 2 <= WIDE_ROW {
            max_pool_3_2(x, y, ah, aw);
            return;
        }
        let mut rows = y.chunks_exact_mut(aw.output.max(1));
        for od in 0..ad.output {
            for oh in 0..ah.output {
                let Some(out) = rows.next() else { return };
                out.fill(f32::NEG_INFINITY);
                for kd in 0..ad.kernel {
                    let Some(id) = ad.input_index(od, kd) else { continue };
                    for kh in 0..ah.kernel {
                        let Some(ih) = ah.input_index(oh, kh) else { continue };
                        let line = &x[(id * ah.input + ih) * aw.input..][..aw.input];
                        for kw in 0..aw.kernel {
                            // Input position ow·s + off; valid for ow in lo..hi.
                            let (s, off) = (aw.stride, (kw * aw.dilation) as isize - aw.pad_begin as isize);
                            let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(s) };
                            let end = aw.input as isize - off;
                            let hi = if end <= 0 { 0 } else { (end as usize).div_ceil(s).min(aw.output) };
                            if hi <= lo {
                                continue;
                            }
                            let first = (lo * s).wrapping_add_signed(off);
                            if s == 2 {
                                // Pairs of inputs per output: a stride LLVM vectorizes with
                                // shuffles (the ResNet stem's 3×3/2 pool: ~4× faster than
                                // the strided index below).
                                let (body, last) = out[lo..hi].split_at_mut(hi - lo - 1);
                                for (o, pair) in body.iter_mut().zip(line[first..].chunks_exact(2)) {
                                    *o = o.max(pair[0]);
                                }
                                last[0] = last[0].max(line[first + 2 * (hi - lo - 1)]);
                            } else {
                                for (k, o) in out[lo..hi].iter_mut().enumerate() {
                                    *o = o.max(line[first + k * s]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The probe times real work: 4096 × 12 FMAs of each width take at least 24 Ki cycles
    /// at two a cycle, over 4 µs below 6 GHz (with the loops' count known the optimizer once
    /// reduced the timed rounds to 20 ns, and a Zen 4 read as full rate).
    #[test]
    fn the_fma_probe_times_its_loops() {
        if let Some((t512, t256)) = super::fma_probe() {
            let floor = std::time::Duration::from_micros(4);
            assert!(t512 >= floor && t256 >= floor, "512-bit {t512:?}, 256-bit {t256:?}");
        }
    }

    use super::{busiest_load, fc_panels_with, fc_small, filter_split, next_own_task, task_range, LineFetch};

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn prefix_stores_write_exactly_the_first_lanes() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        let lanes: [f32; 8] = std::array::from_fn(|i| 1.0 + i as f32);
        for n in 0..=9 {
            let (mut wide, mut narrow) = ([-1.0f32; 10], [-1.0f32; 6]);
            // SAFETY: AVX is available (checked above); each store stays within its buffer
            // (at most 8 floats from 1 of 10, 4 from 1 of 6).
            unsafe {
                super::store_prefix8(wide.as_mut_ptr().add(1), _mm256_loadu_ps(lanes.as_ptr()), n);
                super::store_prefix4(narrow.as_mut_ptr().add(1), _mm_loadu_ps(lanes.as_ptr()), n);
            }
            let want = |len: usize, cap: usize| -> Vec<f32> {
                (0..len).map(|i| if i >= 1 && i <= n.min(cap) { i as f32 } else { -1.0 }).collect()
            };
            assert_eq!(wide.to_vec(), want(10, 8), "8 lanes, n = {n}");
            assert_eq!(narrow.to_vec(), want(6, 4), "4 lanes, n = {n}");
        }
    }

    /// The L2 entry is found among the cache folders whatever their order, the level-1 and
    /// level-3 ones and instruction caches are skipped, and a tree without one (or with an
    /// unreadable size) gives `None`, which [`super::l2_bytes`] turns into its default.
    #[test]
    fn sysfs_l2_size_is_the_level_2_data_or_unified_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = |name: &str, level: &str, kind: &str, size: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (file, text) in [("level", level), ("type", kind), ("size", size)] {
                std::fs::write(d.join(file), format!("{text}\n")).unwrap();
            }
        };
        assert_eq!(super::sysfs_l2_bytes(dir.path()), None);
        cache("index0", "1", "Data", "48K");
        cache("index1", "1", "Instruction", "32K");
        cache("index3", "3", "Unified", "266240K");
        assert_eq!(super::sysfs_l2_bytes(dir.path()), None);
        cache("index2", "2", "Unified", "2048K");
        assert_eq!(super::sysfs_l2_bytes(dir.path()), Some(2 << 20));
        cache("index2", "2", "Data", "1M");
        assert_eq!(super::sysfs_l2_bytes(dir.path()), Some(1 << 20));
        cache("index2", "2", "Unified", "lots");
        assert_eq!(super::sysfs_l2_bytes(dir.path()), None);
        cache("index2", "2", "Unified", &format!("{}M", usize::MAX));
        assert_eq!(super::sysfs_l2_bytes(dir.path()), None);
        assert_eq!(super::sysfs_l2_bytes(&dir.path().join("missing")), None);
        assert!(super::l2_bytes() >= 64 << 10, "{} bytes", super::l2_bytes());
    }

    #[test]
    fn ranges_cover_the_tasks_and_the_busiest_load_follows_the_team() {
        for (tasks, ranges) in [(0, 1), (7, 2), (8, 3), (2, 5), (100, 64)] {
            let mut next = 0;
            for r in 0..ranges {
                let (start, end) = task_range(r, ranges, tasks);
                assert!(start == next && end >= start && end - start <= tasks.div_ceil(ranges));
                next = end;
            }
            assert_eq!(next, tasks);
        }
        // Ranges {0, 1} and {2, 3}: worker 0 runs task 0 (3), worker 1 tasks 2 and 3 (1 + 1)
        // and then takes task 1 from worker 0's range: 3 each.
        assert_eq!(busiest_load(2, 4, |t| [3.0, 1.0, 1.0, 1.0][t]), 3.0);
        // Ranges {2, 2} and {1, 1}: 4 against 2 (tasks claimed in order by whoever is free
        // would give 3 and 3; the ranges keep each worker on its own part).
        assert_eq!(busiest_load(2, 4, |t| [2.0, 2.0, 1.0, 1.0][t]), 4.0);
        assert_eq!(busiest_load(1, 3, |_| 1.5), 4.5);
        // Each worker's next task is the next of its own range.
        let next: Vec<_> = (0..7).map(|t| next_own_task(t, 7, 2)).collect();
        assert_eq!(next, [Some(1), Some(2), None, Some(4), Some(5), Some(6), None]);
        assert_eq!(next_own_task(3, 4, 1), None);
        assert_eq!(next_own_task(0, 4, 1), Some(1));
        assert_eq!(next_own_task(0, 2, 3), None);
        assert_eq!(busiest_load(3, 0, |_| 1.0), 0.0);
    }

    /// A memoized value is computed once per key (and again after the cache starts over).
    #[test]
    fn memoized_computes_each_key_once() {
        let cache: super::Memo<2, usize> = std::cell::RefCell::new(Vec::new());
        let calls = std::cell::Cell::new(0);
        let get = |k: [usize; 2]| {
            super::memoized(&cache, k, || {
                calls.set(calls.get() + 1);
                k[0] * 10 + k[1]
            })
        };
        assert_eq!((get([1, 2]), get([3, 4]), get([1, 2]), get([3, 4])), (12, 34, 12, 34));
        assert_eq!(calls.get(), 2);
        for i in 0..super::MEMO_KEYS {
            assert_eq!(get([i, 100]), i * 10 + 100);
        }
        assert_eq!(get([1, 2]), 12, "a key dropped when the cache started over comes back");
        assert_eq!(calls.get(), 2 + super::MEMO_KEYS + 1);
    }

    /// On one to three threads (a thread's range of one to three panels, read side by side),
    /// each output has the bits of the plain sum in the order of `kk`.
    #[test]
    fn fc_small_matches_a_plain_product() {
        let value = |i: usize| ((i * 7919) % 23) as f32 / 8.0 - 1.5;
        for (m, k, n, alpha, accumulate, threads) in [
            (1, 2048, 1000, 1.0, true, 1),
            (1, 2048, 1000, 1.0, true, 2),
            (2, 64, 3 * super::FC_PANEL - 5, 1.0, false, 1),
            (2, 64, 3 * super::FC_PANEL - 5, 1.0, false, 2),
            (1, 16, 5 * super::FC_PANEL, 0.25, true, 3),
            (3, 5, 17, 0.5, false, 2),
            (8, 40, 33, -2.0, true, 1),
            (2, 0, 9, 1.0, true, 2),
        ] {
            let a: Vec<f32> = (0..m * k).map(value).collect();
            let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
            let c: Vec<f32> = (0..m * n).map(|i| value(i + 11)).collect();
            let mut y = c.clone();
            let packed = fc_panels_with(k, n, |kk, j| b[kk * n + j]);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| fc_small(&a, m, k, &packed, n, alpha, accumulate, &mut y));
            for r in 0..m {
                for j in 0..n {
                    let mut s = 0f32;
                    for kk in 0..k {
                        s += a[r * k + kk] * b[kk * n + j];
                    }
                    let want = if accumulate { alpha * s + c[r * n + j] } else { alpha * s };
                    assert_eq!(
                        y[r * n + j].to_bits(),
                        want.to_bits(),
                        "m {m} k {k} n {n} threads {threads}: [{r}, {j}]"
                    );
                }
            }
        }
    }

    #[test]
    fn line_fetch_shares_cover_every_line_once() {
        let base = 0x1000 as *const f32;
        // 2·k lines over calls of k (Winograd with two or more calls, the narrow-plane kernel),
        // and over one call of 2·k: each line once, in order, none past the end.
        for (lines, per_call, calls) in [(64, 32, 5), (64, 64, 1), (10, 4, 4), (7, 3, 1)] {
            let mut next = 0;
            for call in 0..calls {
                let f = LineFetch::share(base, lines, call, per_call, 1);
                if f.left > 0 {
                    assert_eq!(f.at, base.wrapping_add(16 * next), "{lines} {per_call} {call}");
                }
                next += f.left;
            }
            assert_eq!(next, lines.min(per_call * calls), "{lines} {per_call} {calls}");
        }
    }

    #[test]
    fn filter_split_gives_every_thread_an_equal_share_with_the_fewest_chunks() {
        // (tiles, threads, max) → chunks per tile
        for (tiles, threads, max, want) in [
            (1, 2, 64, 2),
            (2, 2, 64, 1),
            (3, 2, 64, 2),
            (3, 4, 64, 4),
            (6, 4, 64, 2),
            (7, 2, 64, 2),
            (8, 2, 64, 1),
            (9, 2, 64, 1),
            (1, 2, 1, 1),
            (1, 1, 64, 1),
            (0, 2, 64, 1),
        ] {
            assert_eq!(filter_split(tiles, threads, max), want, "tiles {tiles}, threads {threads}, max {max}");
            if want > 1 && want < max {
                assert_eq!(tiles * want % threads, 0, "balanced");
            }
        }
    }
}

/// Lanes `lo .. hi` (clamped to `0 .. 16`) of a 16-float AVX-512 vector as a mask: the
/// row ends of the AVX-512 pool, band fills and direct kernels' stores.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn lane_mask16(lo: isize, hi: isize) -> std::arch::x86_64::__mmask16 {
    let (lo, hi) = (lo.clamp(0, 16), hi.clamp(0, 16));
    if hi <= lo {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }
}

/// Lanes `lo .. hi` (clamped to `0 .. 8`) of an 8-float AVX2 vector as a mask for
/// `_mm256_maskload_ps` / `_mm256_maskstore_ps` (lane set: all bits), and how many they are
/// (8: the callers use plain loads and stores). Shared by the AVX2 direct and Winograd
/// kernels.
///
/// # Safety
/// AVX2 available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn lane_mask8(lo: isize, hi: isize) -> (std::arch::x86_64::__m256i, isize) {
    use std::arch::x86_64::*;
    let (lo, hi) = (lo.clamp(0, 8), hi.clamp(0, 8));
    // SAFETY: register operations only (AVX2 available: the caller's contract).
    unsafe {
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let ge_lo = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo as i32 - 1));
        let lt_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(hi as i32), idx);
        (_mm256_and_si256(ge_lo, lt_hi), (hi - lo).max(0))
    }
}

/// Lanes `0 .. n` of `v` stored at `p` (`n ≥ 8`: all 8) as plain 4-, 2- and 1-float stores,
/// where `_mm256_maskstore_ps` would do: on AMD Zen 3 a masked 256-bit store is microcoded,
/// and its stores held ~58 % of the F(4×4) input transform's `perf` samples in a 56×56
/// layer (rows of 14 tiles, 8 + 6: every second store masked; at 28×28, 7 tiles, all of
/// them). Same values in the same places.
///
/// # Safety
/// AVX available; `p .. p + min(n, 8)` writable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn store_prefix8(p: *mut f32, v: std::arch::x86_64::__m256, n: usize) {
    use std::arch::x86_64::*;
    // SAFETY: stores only within `p .. p + min(n, 8)` (the caller's contract); AVX available.
    unsafe {
        if n >= 8 {
            _mm256_storeu_ps(p, v);
            return;
        }
        let lo = _mm256_castps256_ps128(v);
        if n >= 4 {
            _mm_storeu_ps(p, lo);
            store_prefix4(p.add(4), _mm256_extractf128_ps::<1>(v), n - 4);
        } else {
            store_prefix4(p, lo, n);
        }
    }
}

/// Lanes `0 .. n` of the 4-float `v` stored at `p` (`n ≥ 4`: all 4) as plain 2- and 1-float
/// stores, where `_mm_maskstore_ps` would do ([`store_prefix8`]).
///
/// # Safety
/// AVX available; `p .. p + min(n, 4)` writable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn store_prefix4(p: *mut f32, v: std::arch::x86_64::__m128, n: usize) {
    use std::arch::x86_64::*;
    // SAFETY: stores only within `p .. p + min(n, 4)` (the caller's contract).
    unsafe {
        if n >= 4 {
            _mm_storeu_ps(p, v);
            return;
        }
        let (mut q, mut at) = (v, p);
        if n & 2 != 0 {
            _mm_store_sd(at.cast(), _mm_castps_pd(q));
            q = _mm_movehl_ps(q, q);
            at = at.add(2);
        }
        if n & 1 != 0 {
            _mm_store_ss(at, q);
        }
    }
}

/// The 64-byte aligned part of `buf` (a cache line, a zmm vector): at most 15 floats shorter.
/// Unaligned strips make every 64-byte load straddle two cache lines.
pub(crate) fn align64(buf: &mut [f32]) -> &mut [f32] {
    let skip = buf.as_ptr().align_offset(64).min(buf.len());
    &mut buf[skip..]
}

/// Cache lines a micro-kernel prefetches into L2 a few per loop step: its share of the
/// filters the caller multiplies next, which it otherwise streams from memory while the
/// calls reusing the current ones run from cache with memory idle (the Winograd products'
/// `U` panels, the narrow-plane direct kernel's filter blocks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineFetch {
    at: *const f32,
    left: usize,
    per_step: usize,
}

impl LineFetch {
    /// Nothing to fetch.
    pub(crate) const NONE: LineFetch = LineFetch { at: std::ptr::null(), left: 0, per_step: 0 };

    /// Share `call` of the `lines` cache lines at `next`: `per_call` lines per call (lines
    /// `call·per_call ..`), `per_step` per [`LineFetch::step`]. A hint only: the addresses are
    /// never read, so `next` need not be valid.
    pub(crate) fn share(next: *const f32, lines: usize, call: usize, per_call: usize, per_step: usize) -> Self {
        let first = call * per_call;
        if first >= lines {
            return LineFetch::NONE;
        }
        LineFetch { at: next.wrapping_add(16 * first), left: per_call.min(lines - first), per_step }
    }

    /// Prefetches (T1) every line left of the share at once: for a kernel whose share is a
    /// few lines per call, so its tap loop carries no prefetch test.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) fn all(self) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        for i in 0..self.left {
            // SAFETY: a prefetch is a hint; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(self.at.wrapping_add(16 * i).cast()) };
        }
    }

    /// Prefetches (T1) the next line of the share, and a second one with `per_step` 2 (the
    /// most the callers use), if any are left. Written as two tests rather than a loop over
    /// `per_step`: the loop measured 5–10 % slower on the Winograd products (two alternated
    /// `resnet bench --profile` runs of ResNet-18).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) fn step(&mut self) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        debug_assert!(self.per_step <= 2);
        if self.left > 0 {
            // SAFETY: a prefetch is a hint; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(self.at.cast()) };
            if self.per_step > 1 && self.left > 1 {
                // SAFETY: as above.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(self.at.wrapping_add(16).cast()) };
            }
            self.at = self.at.wrapping_add(16 * self.per_step);
            self.left = self.left.saturating_sub(self.per_step);
        }
    }
}

/// The addend of a conv's fused residual Add.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Residual<'a> {
    /// No residual Add.
    None,
    /// A tensor of the output's layout.
    Tensor(&'a [f32]),
    /// The output buffer holds the addend on entry. The plan hands a conv the buffer of a
    /// residual whose last reader it is: no second buffer, and each output line is read once
    /// (the addend) and written back, where a fresh buffer costs a read of the residual's
    /// line and a read-for-ownership of the output's.
    InOutput,
}

impl<'a> Residual<'a> {
    pub(crate) fn of(r: Option<&'a [f32]>) -> Self {
        r.map_or(Residual::None, Residual::Tensor)
    }

    /// The separate addend tensor, if any.
    pub(crate) fn tensor(self) -> Option<&'a [f32]> {
        match self {
            Residual::Tensor(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn is_none(self) -> bool {
        matches!(self, Residual::None)
    }

    /// Where the addend of the output element at `y + i` lies, at the same offset `i`: the
    /// tensor's base, or `y` itself.
    pub(crate) fn base(self, y: *const f32) -> Option<*const f32> {
        match self {
            Residual::None => None,
            Residual::Tensor(r) => Some(r.as_ptr()),
            Residual::InOutput => Some(y),
        }
    }
}
