//! `resnet18-v1` and `resnet18-v2` from the zoo builder (24×24 input, 5 classes) under
//! `engine::train` in f64: a seeded sample of parameter entries from every parameter, plus
//! every BN gamma of the first block, against central finite differences; and f32 vs f64
//! programs on the same weights give the same loss.

use resnet_engine::train::{ParamRole, TrainOptions, TrainProgram};
use resnet_zoo::arch::{build, ArchSpec, Init, Version};

const CLASSES: usize = 5;
const SHAPE: [usize; 4] = [3, 3, 24, 24];
/// The f32/f64 comparison wants a better-conditioned last BatchNorm (more than three values
/// per channel, or batch statistics amplify f32 rounding).
const BIG_SHAPE: [usize; 4] = [4, 3, 64, 64];

/// splitmix64: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn graph(version: Version, size: usize) -> resnet_engine::Graph {
    let spec = ArchSpec { classes: CLASSES, input_size: size, ..ArchSpec::new(version, 18) };
    build(&spec, Init::Seed(3)).expect("the zoo builds resnet18")
}

/// The zoo initialises gamma 1 and beta 0; random ones exercise their gradients better.
fn perturb_bn(p: &mut TrainProgram<f64>, rng: &mut Rng) {
    for q in p.params_mut() {
        match q.role {
            ParamRole::Gamma => q.value.iter_mut().for_each(|v| *v = rng.uniform(0.5, 1.5)),
            ParamRole::Beta => q.value.iter_mut().for_each(|v| *v = rng.uniform(-0.2, 0.2)),
            _ => {}
        }
    }
}

fn check(version: Version, seed: u64) {
    let g = graph(version, SHAPE[2]);
    let mut p = TrainProgram::<f64>::new(&g, TrainOptions::default()).unwrap();
    let mut rng = Rng(seed);
    perturb_bn(&mut p, &mut rng);
    let x: Vec<f64> = (0..SHAPE.iter().product()).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let labels: Vec<usize> = (0..SHAPE[0]).map(|_| rng.below(CLASSES)).collect();
    p.step(&x, SHAPE, &labels).unwrap();
    p.set_step_count(0);

    // 100 entries spread round-robin over every parameter, and all of the first block's
    // gammas.
    let count = p.params().len();
    let mut entries: Vec<(usize, usize)> =
        (0..100).map(|j| (j % count, rng.below(p.params()[j % count].value.len()))).collect();
    let first_block: Vec<usize> = p
        .params()
        .iter()
        .enumerate()
        .filter(|(_, q)| q.role == ParamRole::Gamma && q.name.contains("stage1_"))
        .map(|(i, _)| i)
        .take(2)
        .collect();
    assert_eq!(first_block.len(), 2, "the first block has two BatchNorms");
    for &pi in &first_block {
        entries.extend((0..p.params()[pi].value.len()).map(|i| (pi, i)));
    }

    let h = 1e-6;
    let mut worst = (0.0f64, String::new());
    for &(pi, i) in &entries {
        let analytic = p.params()[pi].grad[i];
        let orig = p.params()[pi].value[i];
        p.params_mut()[pi].value[i] = orig + h;
        let lp = p.loss(&x, SHAPE, &labels).unwrap();
        p.params_mut()[pi].value[i] = orig - h;
        let lm = p.loss(&x, SHAPE, &labels).unwrap();
        p.params_mut()[pi].value[i] = orig;
        let numeric = (lp - lm) / (2.0 * h);
        let err = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-2);
        if err > worst.0 {
            worst = (err, format!("{}[{i}]: analytic {analytic:e}, numeric {numeric:e}", p.params()[pi].name));
        }
    }
    assert!(worst.0 < 1e-5, "{:?}: relative error {:e} at {}", version, worst.0, worst.1);
    assert!(entries.len() > 200);
}

#[test]
fn resnet18_v1_gradients_match_finite_differences() {
    check(Version::V1, 1);
}

#[test]
fn resnet18_v2_gradients_match_finite_differences() {
    check(Version::V2, 2);
}

#[test]
fn f32_and_f64_programs_give_the_same_loss_on_the_same_weights() {
    for version in [Version::V1, Version::V2] {
        let g = graph(version, BIG_SHAPE[2]);
        let mut rng = Rng(9);
        let x: Vec<f64> = (0..BIG_SHAPE.iter().product()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let labels: Vec<usize> = (0..BIG_SHAPE[0]).map(|_| rng.below(CLASSES)).collect();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let l64 = TrainProgram::<f64>::new(&g, TrainOptions::default()).unwrap().loss(&x, BIG_SHAPE, &labels).unwrap();
        let l32 =
            TrainProgram::<f32>::new(&g, TrainOptions::default()).unwrap().loss(&x32, BIG_SHAPE, &labels).unwrap();
        assert!((l32 - l64).abs() <= 1e-5 * l64.abs(), "{version:?}: f32 {l32} vs f64 {l64}");
    }
}
