//! The plan's convolution: panel-wise im2col + `gemm` 0.19, with bias, residual Add and
//! ReLU fused into the epilogue.
//!
//! Layout: X is `[N, C, D, H, W]` (spatial axes lifted to 3-D), W is read as the row-major
//! matrix `[M/group, C/group·kD·kH·kW]` per group, Y is `[N, M, out-plane]`. One *tile* is
//! (image, group, column panel of the out-plane, chunk of the group's filters): the tile's
//! im2col panel `[K, pn]` is unfolded into a per-thread scratch buffer, multiplied with the
//! filters by `gemm` (single-threaded inside the tile), and the epilogue runs on the tile's
//! rows while they are in cache. Pointwise convs (1×1, stride 1, no pads) use X's planes as
//! the panel directly. Tiles run in parallel on the plan's rayon pool. On AVX-512 CPUs the
//! constant-filter 2-D convs run the direct kernels instead ([`DirectConv`]; 1×1 convs its
//! pointwise ones), on AVX2 CPUs too (1×1 convs from
//! [`crate::plan::direct::AVX2_POINTWISE_MIN_FILTERS`] filters), and this path only takes
//! the calls they do not apply to.

use std::cell::RefCell;

use gemm::Parallelism;

use crate::error::OpError;
use crate::ops::conv::{conv_geometry, ConvGeometry};
use crate::ops::padding::{Axis, Window};
use crate::plan::direct::DirectConv;
use crate::plan::kernels::{self, multiversion, OutPtr, Residual};

/// Budget of one im2col panel, in floats: 128 Ki floats = 512 KiB, half of a Zen 4 core's
/// 1 MiB L2, so the panel stays in L2 while `gemm` streams it (the ResNet-50 3×3 layers get
/// panels of 112–224 columns). Whole-matrix im2col of layer 1 (7 MiB) measured slower.
const PANEL_FLOATS: usize = 128 * 1024;

/// Narrowest panel worth a `gemm` call: below this the per-call packing of the filters
/// dominates.
const MIN_PANEL: usize = 32;

thread_local! {
    /// Per-thread im2col scratch; grows to the largest panel once and is then reused, so the
    /// steady state allocates nothing here (`tests/plan_allocations.rs` in the resnet crate).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A convolution with everything known at compile time resolved.
#[derive(Debug, Clone)]
pub struct ConvKernel {
    pub window: Window,
    pub group: usize,
    /// Filters packed as `[M, C/group·k-volume]` row-major (`None`: W is read at run time, or
    /// the direct kernel holds the constant filters: see [`ConvKernel::filters`]).
    pub weights: Option<Vec<f32>>,
    /// W's shape `[M, C/group, k...]` when packed.
    pub w_shape: Option<Vec<usize>>,
    /// Bias `[M]` when constant.
    pub bias: Option<Vec<f32>>,
    pub relu: bool,
    /// The direct kernel of an ungrouped 2-D conv with constant filters ([`DirectConv`]; for
    /// 1×1 convs the pointwise kernels, on AVX2 from 128 filters); calls it does not apply to
    /// run the im2col path.
    pub direct: Option<Box<DirectConv>>,
}

impl ConvKernel {
    /// Packs constant filters `w` of shape `s` `[M, C/group, k...]`: into the direct kernel
    /// when the conv is 2-D and ungrouped, on a CPU that runs it, else a copy in `weights`.
    /// Strided convs (the 7×7/2 stem, 3×3/2 downsampling) run on the direct kernel's phase
    /// grid; 1×1 convs on the pointwise kernels (any stride).
    pub fn with_filters(mut self, w: &[f32], s: &[usize]) -> ConvKernel {
        self.w_shape = Some(s.to_vec());
        if self.group == 1 && s.len() == 4 && s[2] * s[3] > 1 {
            self.direct = DirectConv::new(w, s).map(Box::new);
        } else if self.group == 1 && s.len() == 4 && s[2] * s[3] == 1 {
            self.direct = DirectConv::pointwise(w, s[0], s[1]).map(Box::new);
        }
        // One copy of the filters: the direct kernel's when there is one (ResNet-50: 45 MB
        // less, and no copy made only to be packed and dropped).
        self.weights = self.direct.is_none().then(|| w.to_vec());
        self
    }

    /// The constant filters as `[M, C/group·k-volume]`, wherever they are kept (`None`: W is
    /// read at run time).
    pub fn filters(&self) -> Option<std::borrow::Cow<'_, [f32]>> {
        match (&self.weights, &self.direct) {
            (Some(w), _) => Some(std::borrow::Cow::Borrowed(w)),
            (None, Some(d)) => Some(std::borrow::Cow::Owned(d.unpack())),
            (None, None) => None,
        }
    }

    /// Checks X's and W's shapes (and B's length) and resolves the geometry.
    pub(crate) fn geometry(
        &self,
        xs: &[usize],
        ws: &[usize],
        bias_len: Option<usize>,
    ) -> Result<ConvGeometry, OpError> {
        conv_geometry(&self.window, self.group, xs, ws, bias_len)
    }

    /// For a strided unpadded 1×1 conv the direct kernels take: the geometry of the same conv
    /// on its input subsampled to the output grid ([`subsample`]), which runs the stride-1
    /// kernels: the narrow-plane one on small planes, where the wide kernel's strips fit
    /// badly (49 outputs are a 48-position strip and a 1-position one), and the wide one
    /// with its plain channel-by-channel packing elsewhere, where the wide kernel gathered
    /// the strided positions element by element for every tile (and again for each filter
    /// chunk of a split tile). Single-layer models, one thread, minima of 5 alternated
    /// rounds: 2048 ← 1024 /2 from 14×14 3.10 ms, at stride 1 on 7×7 2.35.
    pub(crate) fn subsampled(&self, g: &ConvGeometry) -> Option<ConvGeometry> {
        let d = self.direct.as_deref()?;
        let [_, ah, aw] = &g.axes;
        if !d.wide_applies(g) || (ah.stride == 1 && aw.stride == 1) {
            return None;
        }
        let mut s = g.clone();
        for a in &mut s.axes[1..] {
            *a = Axis { input: a.output, output: a.output, ..Axis::UNIT };
        }
        Some(s)
    }

    /// Whether [`ConvKernel::run`] takes this call with [`Residual::InOutput`]: one of the
    /// direct kernels applies (the im2col path's `gemm` overwrites its output).
    pub(crate) fn residual_in_output(&self, g: &ConvGeometry) -> bool {
        self.direct.as_deref().is_some_and(|d| d.applies(g) || d.pointwise_applies(g) || d.wide_applies(g))
    }

    /// Computes `y = relu?(conv(x, w) + bias + residual)`; `y` has the output's length (and
    /// holds the residual with [`Residual::InOutput`], for the calls
    /// [`ConvKernel::residual_in_output`] admits). `w` and `bias` are the run-time inputs when
    /// the kernel holds no packed ones.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        g: &ConvGeometry,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        residual: Residual,
        y: &mut [f32],
    ) {
        let bias = self.bias.as_deref().or(bias);
        if let Some(d) = self.direct.as_deref() {
            if d.applies(g) {
                d.run(g, x, bias, residual, self.relu, false, y);
                return;
            }
            if d.pointwise_applies(g) {
                d.run_pointwise(g, x, bias, residual, self.relu, y);
                return;
            }
            if d.wide_applies(g) {
                d.run_wide(g, x, bias, residual, self.relu, y);
                return;
            }
        }
        assert!(!matches!(residual, Residual::InOutput), "the im2col path takes no residual in its output");
        let residual = residual.tensor();
        let w = match (&self.weights, &self.direct) {
            (Some(w), _) => w,
            (None, Some(d)) => d.unpacked(),
            (None, None) => w,
        };
        let (in_plane, p) = (g.input_plane(), g.output_plane());
        let (cg, mg) = (g.c / self.group, g.m / self.group);
        let kg = cg * g.kernel_volume();
        let pointwise = g.is_pointwise();
        if g.n * g.m * p == 0 {
            return;
        }
        // Panel width: the L2 budget, evened out over the panels, a multiple of 8.
        let budget = if pointwise { (PANEL_FLOATS / kg.max(1)).max(256) } else { PANEL_FLOATS / kg.max(1) };
        let pn = budget.max(MIN_PANEL).min(p);
        let threads = kernels::threads();
        let mut panels = p.div_ceil(pn);
        // One image and group in a few panels: as many as make every worker's share equal
        // (64 ← 256 at 56×56 on two threads: 8 panels of 392 positions, not 4 + 3 of 448).
        if g.n * self.group == 1 && (2..4 * threads).contains(&panels) && threads > 1 {
            panels = panels.next_multiple_of(threads);
        }
        let pn = p.div_ceil(panels).next_multiple_of(8).min(p);
        let panels = p.div_ceil(pn);
        let base = g.n * self.group * panels;
        // Too few tiles to share evenly (late layers at batch 1): split the filters too.
        let msplit = kernels::filter_split(base, threads, mg.div_ceil(16));
        let mchunk = mg.div_ceil(msplit);
        let tiles = base * msplit;
        let out = OutPtr(y.as_mut_ptr());
        let geo = (in_plane, p, cg, mg, kg, pn, panels, mchunk, msplit, pointwise);
        let tile = |t: usize| {
            self.tile(g, geo, t, x, w, bias, residual, out);
        };
        kernels::for_each_task(tiles, tile);
    }

    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn tile(
        &self,
        g: &ConvGeometry,
        (in_plane, p, cg, mg, kg, pn, panels, mchunk, msplit, pointwise): (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            bool,
        ),
        t: usize,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        out: OutPtr,
    ) {
        let mi = t % msplit;
        let pi = (t / msplit) % panels;
        let grp = (t / msplit / panels) % self.group;
        let img = t / msplit / panels / self.group;
        let p0 = pi * pn;
        let pw = pn.min(p - p0);
        let m0 = mi * mchunk;
        if m0 >= mg {
            return;
        }
        let mw = mchunk.min(mg - m0);
        let x_g = &x[(img * g.c + grp * cg) * in_plane..][..cg * in_plane];
        let row0 = grp * mg + m0;
        let w_t = &w[row0 * kg..][..mw * kg];
        let y_off = (img * g.m + row0) * p + p0;
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let (rhs, rhs_rs): (*const f32, usize) = if pointwise {
                (x_g[p0..].as_ptr(), p)
            } else {
                if scratch.len() < kg * pw {
                    // At least twice the panel budget at once (every ResNet panel fits), so a
                    // worker that first meets a bigger panel late — tiles go to whichever
                    // thread is free — does not allocate in a steady-state run.
                    scratch.resize((kg * pw).max(2 * PANEL_FLOATS), 0.0);
                }
                im2col_panel(x_g, cg, &g.axes, p0, pw, &mut scratch[..kg * pw]);
                (scratch.as_ptr(), pw)
            };
            if kg > 0 {
                // SAFETY: dst rows `row0..row0+mw` × columns `p0..p0+pw` (row stride p) lie in
                // `y` and belong to this tile only; lhs is `mw × kg` row-major inside `w_t`;
                // rhs is `kg × pw` with row stride `rhs_rs` inside `x_g` or the scratch panel.
                unsafe {
                    gemm::gemm(
                        mw,
                        pw,
                        kg,
                        out.0.add(y_off),
                        1,
                        p as isize,
                        false,
                        w_t.as_ptr(),
                        1,
                        kg as isize,
                        rhs,
                        1,
                        rhs_rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            }
        });
        for r in 0..mw {
            let off = y_off + r * p;
            // SAFETY: row `r` of this tile, `pw` elements, disjoint from every other tile.
            let row = unsafe { std::slice::from_raw_parts_mut(out.0.add(off), pw) };
            if kg == 0 {
                row.fill(0.0);
            }
            let b = bias.map_or(0.0, |b| b[row0 + r]);
            kernels::conv_epilogue_row(row, b, residual.map(|res| &res[off..][..pw]), self.relu);
        }
    }
}

/// Columns `p0..p0+pw` of the im2col matrix of `channels` input planes into `col`
/// (`[channels·k-volume, pw]` row-major): row `(c, kd, kh, kw)`, column `p` = output
/// position `(od, oh, ow)` in row-major order; taps in the padding read 0.
pub fn im2col_panel(x: &[f32], channels: usize, axes: &[Axis; 3], p0: usize, pw: usize, col: &mut [f32]) {
    let [ad, ah, aw] = axes;
    let in_plane = ad.input * ah.input * aw.input;
    let mut rows = col.chunks_exact_mut(pw);
    for c in 0..channels {
        let xc = &x[c * in_plane..][..in_plane];
        for kd in 0..ad.kernel {
            for kh in 0..ah.kernel {
                for kw in 0..aw.kernel {
                    let row = rows.next().expect("im2col panel holds C·kD·kH·kW rows");
                    let (mut j, mut q) = (0, p0);
                    while j < pw {
                        let ow0 = q % aw.output;
                        let t = q / aw.output;
                        let (oh, od) = (t % ah.output, t / ah.output);
                        let len = (aw.output - ow0).min(pw - j);
                        let dst = &mut row[j..j + len];
                        match (ad.input_index(od, kd), ah.input_index(oh, kh)) {
                            (Some(id), Some(ih)) => {
                                fill_segment(dst, &xc[(id * ah.input + ih) * aw.input..][..aw.input], aw, kw, ow0)
                            }
                            _ => dst.fill(0.0),
                        }
                        j += len;
                        q += len;
                    }
                }
            }
        }
    }
}

/// `dst[j] = src[(ow0 + j)·s + kw·d − pad]`, or 0 where that falls outside `src`.
fn fill_segment(dst: &mut [f32], src: &[f32], a: &Axis, kw: usize, ow0: usize) {
    let (s, offset, pad) = (a.stride, kw * a.dilation, a.pad_begin);
    let end = ow0 + dst.len();
    let lo = if offset >= pad { 0 } else { (pad - offset).div_ceil(s) }.clamp(ow0, end);
    let hi = if a.input + pad <= offset { 0 } else { (a.input + pad - offset).div_ceil(s) }.clamp(lo, end);
    dst[..lo - ow0].fill(0.0);
    dst[hi - ow0..].fill(0.0);
    if hi > lo {
        let first = lo * s + offset - pad;
        let valid = &mut dst[lo - ow0..hi - ow0];
        if s == 1 {
            valid.copy_from_slice(&src[first..first + valid.len()]);
        } else {
            for (i, v) in valid.iter_mut().enumerate() {
                *v = src[first + i * s];
            }
        }
    }
}

/// `dst[(i·OH + oh)·OW + ow] = x[(i·H + oh·sH)·W + ow·sW]` for every plane `i` of `x`: the
/// input of a strided 1×1 conv ([`ConvKernel::subsampled`]) on its output grid. Planes in
/// chunks over the plan's threads.
pub(crate) fn subsample(x: &[f32], g: &ConvGeometry, dst: &mut [f32]) {
    let [_, ah, aw] = &g.axes;
    let (in_plane, out_plane) = (ah.input * aw.input, ah.output * aw.output);
    let planes = x.len() / in_plane.max(1);
    assert_eq!(dst.len(), planes * out_plane, "subsampled length");
    if out_plane == 0 {
        return;
    }
    let chunk = 32;
    let out = OutPtr(dst.as_mut_ptr());
    kernels::for_each_task(planes.div_ceil(chunk), |t| {
        let (p0, p1) = (t * chunk, (t * chunk + chunk).min(planes));
        // SAFETY: planes `p0..p1` of `dst` (checked length): this task's only.
        let part = unsafe { std::slice::from_raw_parts_mut(out.at(p0 * out_plane), (p1 - p0) * out_plane) };
        for (src, plane) in x[p0 * in_plane..p1 * in_plane].chunks_exact(in_plane).zip(part.chunks_exact_mut(out_plane))
        {
            for (oh, row) in plane.chunks_exact_mut(aw.output).enumerate() {
                subsample_row(&src[oh * ah.stride * aw.input..], aw.stride, row);
            }
        }
    });
}

multiversion! {
    /// `row[j] = line[j·stride]` for `j < row.len()`. At stride 2 in pairs, which LLVM
    /// vectorizes with shuffles (the element loop it left scalar, with a bounds check each:
    /// Keras ResNet-50's three subsamples ~0.4 % of a one-thread run under `perf`).
    fn subsample_row(line: &[f32], stride: usize, row: &mut [f32]) {
        // At stride 2 the outputs whose pair lies in `line`; the element loop takes the rest.
        let done = if stride == 2 { row.len().min(line.len() / 2) } else { 0 };
        for (o, pair) in row[..done].iter_mut().zip(line.chunks_exact(2)) {
            *o = pair[0];
        }
        for (j, o) in row.iter_mut().enumerate().skip(done) {
            *o = line[j * stride];
        }
    }
}
