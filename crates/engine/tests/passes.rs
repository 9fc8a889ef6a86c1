//! The optimization passes, each alone on a small hand-built graph, then all of them on the
//! real ResNet-50: the optimized graph must compute what the original computes (reference
//! executor on both) and have the expected op counts.

use resnet_test_support as common;

use resnet_engine::fact::Fact;
use resnet_engine::ops::{self, AttrValue, Attrs};
use resnet_engine::passes::{self, PassOptions};
use resnet_engine::testdata::{self, Tolerance};
use resnet_engine::{exec, onnx, DType, Graph, Op, Tensor, ValueId};

const OPSET: i64 = 13;

// ---- a tiny graph builder ----------------------------------------------------------------

/// Deterministic numbers in `[lo, hi)` (a 64-bit LCG; the engine has no rand dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((self.0 >> 40) as f32 / (1u64 << 24) as f32)
    }

    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape.to_vec(), (0..n).map(|_| self.next(lo, hi)).collect())
    }
}

fn ints(name: &str, v: &[i64]) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Ints(v.to_vec()))
}

fn int(name: &str, v: i64) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Int(v))
}

fn op(onnx_type: &str, attrs: Vec<(String, AttrValue)>) -> Op {
    ops::parse(onnx_type, &Attrs::new(attrs), OPSET).expect("known op").expect("valid attributes")
}

fn graph() -> Graph {
    Graph { name: "test".into(), opset: OPSET, ir_version: 8, ..Graph::default() }
}

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
    let id = g.add_value(name, Fact::known(DType::F32, shape));
    g.inputs.push(id);
    id
}

/// Adds a node with fresh output values named after it; returns the first output.
fn node(g: &mut Graph, name: &str, op: Op, inputs: &[Option<ValueId>]) -> ValueId {
    let out = g.add_value(format!("{name}_out"), Fact::unknown());
    g.nodes.push(resnet_engine::Node { name: name.into(), op, inputs: inputs.to_vec(), outputs: vec![Some(out)] });
    out
}

fn finish(mut g: Graph, outputs: &[ValueId]) -> Graph {
    g.outputs = outputs.to_vec();
    g.sort_topologically().unwrap();
    g.infer_facts().unwrap();
    g
}

fn op_count(g: &Graph, onnx_type: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.onnx_type() == onnx_type).count()
}

fn op_types(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.onnx_type()).collect()
}

/// Largest |a − b| over the largest |b|, across all outputs.
fn rel_err_of_max(got: &[Tensor], want: &[Tensor]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut err, mut max) = (0f64, 0f64);
    for (a, b) in got.iter().zip(want) {
        assert_eq!(a.shape(), b.shape());
        for (&x, &y) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
            err = err.max((x as f64 - y as f64).abs());
            max = max.max((y as f64).abs());
        }
    }
    err / max.max(f64::MIN_POSITIVE)
}

/// Runs both graphs on the same inputs and checks they agree within `rel` of the max.
fn assert_same_outputs(original: &Graph, optimized: &Graph, inputs: Vec<Tensor>, rel: f64) {
    let want = exec::run(original, inputs.clone()).unwrap();
    let got = exec::run(optimized, inputs).unwrap();
    let err = rel_err_of_max(&got, &want);
    assert!(err <= rel, "optimized graph differs: {err:.3e} of max > {rel:.0e}");
}

// ---- fold_batchnorm_into_conv ------------------------------------------------------------

struct ConvCase {
    bias: bool,
    kernel: usize,
    stride: usize,
    pad: usize,
    group: usize,
}

/// `x → Conv → BatchNormalization → y` with random weights and statistics.
fn conv_bn_graph(c: &ConvCase, rng: &mut Rng) -> Graph {
    let (n, cin, m, hw) = (2, 4, 6, 9);
    let mut g = graph();
    let x = input(&mut g, "x", &[n, cin, hw, hw]);
    let w = g.add_initializer("w", rng.tensor(&[m, cin / c.group, c.kernel, c.kernel], -1.0, 1.0));
    let b = c.bias.then(|| g.add_initializer("b", rng.tensor(&[m], -1.0, 1.0)));
    let p = c.pad as i64;
    let conv = op(
        "Conv",
        vec![ints("strides", &[c.stride as i64; 2]), ints("pads", &[p, p, p, p]), int("group", c.group as i64)],
    );
    let y = node(&mut g, "conv", conv, &[Some(x), Some(w), b]);
    let stats: Vec<Option<ValueId>> =
        [("gamma", 0.5, 2.0), ("beta", -1.0, 1.0), ("mean", -1.0, 1.0), ("var", 0.1, 3.0)]
            .into_iter()
            .map(|(name, lo, hi)| Some(g.add_initializer(name, rng.tensor(&[m], lo, hi))))
            .collect();
    let mut bn_inputs = vec![Some(y)];
    bn_inputs.extend(stats);
    let z = node(&mut g, "bn", op("BatchNormalization", vec![]), &bn_inputs);
    finish(g, &[z])
}

#[test]
fn conv_then_batchnorm_folds_to_one_conv_with_the_same_outputs() {
    let cases = [
        ConvCase { bias: false, kernel: 1, stride: 1, pad: 0, group: 1 },
        ConvCase { bias: true, kernel: 1, stride: 1, pad: 0, group: 1 },
        ConvCase { bias: false, kernel: 3, stride: 1, pad: 1, group: 1 },
        ConvCase { bias: true, kernel: 3, stride: 2, pad: 1, group: 1 },
        ConvCase { bias: true, kernel: 3, stride: 1, pad: 1, group: 2 },
        ConvCase { bias: false, kernel: 7, stride: 2, pad: 3, group: 1 },
        ConvCase { bias: true, kernel: 1, stride: 2, pad: 0, group: 2 },
    ];
    let mut rng = Rng(7);
    for (i, case) in cases.iter().enumerate() {
        let original = conv_bn_graph(case, &mut rng);
        let mut folded = original.clone();
        assert!(passes::fold_batchnorm_into_conv(&mut folded).unwrap(), "case {i} did not fold");
        assert_eq!(op_types(&folded), ["Conv"], "case {i}");
        // The conv now writes the BN's output value: the graph output keeps its name.
        assert_eq!(folded.values[folded.outputs[0]].name, "bn_out");
        let x = rng.tensor(&[2, 4, 9, 9], -2.0, 2.0);
        assert_same_outputs(&original, &folded, vec![x.clone()], 1e-5);
        // And through the whole pipeline, which also drops the old weights.
        let optimized = passes::optimize(original.clone(), &PassOptions::default()).unwrap();
        assert_eq!(op_types(&optimized), ["Conv"], "case {i}");
        assert_eq!(optimized.initializers().count(), 2, "case {i}: only W' and B' stay");
        assert_same_outputs(&original, &optimized, vec![x], 1e-5);
    }
}

#[test]
fn batchnorm_before_a_padded_conv_is_not_folded() {
    // v2's input BN: folding it into the zero-padded conv after it would be wrong at the
    // borders, so the pass only folds a BN into the conv that produces its input.
    let mut rng = Rng(11);
    let mut g = graph();
    let x = input(&mut g, "data", &[1, 3, 8, 8]);
    let stats: Vec<Option<ValueId>> = ["gamma", "beta", "mean", "var"]
        .into_iter()
        .map(|name| Some(g.add_initializer(name, rng.tensor(&[3], 0.5, 1.5))))
        .collect();
    let mut bn_inputs = vec![Some(x)];
    bn_inputs.extend(stats);
    let y = node(&mut g, "bn", op("BatchNormalization", vec![]), &bn_inputs);
    let w = g.add_initializer("w", rng.tensor(&[4, 3, 7, 7], -1.0, 1.0));
    let conv = op("Conv", vec![ints("strides", &[2, 2]), ints("pads", &[3, 3, 3, 3])]);
    let z = node(&mut g, "conv", conv, &[Some(y), Some(w), None]);
    let mut g = finish(g, &[z]);
    assert!(!passes::fold_batchnorm_into_conv(&mut g).unwrap());
    assert_eq!(op_types(&g), ["BatchNormalization", "Conv"]);
}

#[test]
fn batchnorm_is_not_folded_when_the_conv_output_is_used_elsewhere_or_weights_are_runtime() {
    let mut rng = Rng(3);
    let case = ConvCase { bias: true, kernel: 3, stride: 1, pad: 1, group: 1 };

    // The conv output is also a graph output: someone sees the un-normalized values.
    let mut g = conv_bn_graph(&case, &mut rng);
    let conv_out = g.value_id("conv_out").unwrap();
    g.outputs.push(conv_out);
    assert!(!passes::fold_batchnorm_into_conv(&mut g).unwrap());

    // The conv output feeds a second node.
    let mut g = conv_bn_graph(&case, &mut rng);
    let conv_out = g.value_id("conv_out").unwrap();
    let r = node(&mut g, "relu", op("Relu", vec![]), &[Some(conv_out)]);
    g.outputs.push(r);
    assert!(!passes::fold_batchnorm_into_conv(&mut g).unwrap());

    // The statistics are runtime inputs (as in the ONNX node tests).
    let mut g = conv_bn_graph(&case, &mut rng);
    let mean = g.value_id("mean").unwrap();
    g.values[mean].initializer = None;
    g.values[mean].fact.value = None;
    g.inputs.push(mean);
    assert!(!passes::fold_batchnorm_into_conv(&mut g).unwrap());
}

// ---- eliminate_identity_like -------------------------------------------------------------

#[test]
fn identity_and_dropout_are_removed_and_consumers_rewired() {
    let mut g = graph();
    let x = input(&mut g, "x", &[2, 5]);
    let a = node(&mut g, "relu1", op("Relu", vec![]), &[Some(x)]);
    let b = node(&mut g, "id", op("Identity", vec![]), &[Some(a)]);
    let c = node(&mut g, "drop", op("Dropout", vec![]), &[Some(b)]);
    let d = node(&mut g, "relu2", op("Relu", vec![]), &[Some(c)]);
    let original = finish(g, &[d]);
    let mut g = original.clone();
    assert!(passes::eliminate_identity_like(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Relu", "Relu"]);
    assert_eq!(g.nodes[1].inputs, [Some(a)]);
    let x = Rng(5).tensor(&[2, 5], -1.0, 1.0);
    assert_same_outputs(&original, &g, vec![x], 0.0);
}

#[test]
fn identity_before_a_graph_output_keeps_the_output_name() {
    let mut g = graph();
    let x = input(&mut g, "x", &[3]);
    let a = node(&mut g, "relu", op("Relu", vec![]), &[Some(x)]);
    let y = node(&mut g, "id", op("Identity", vec![]), &[Some(a)]);
    let mut g = finish(g, &[y]);
    assert!(passes::eliminate_identity_like(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Relu"]);
    assert_eq!(g.values[g.outputs[0]].name, "id_out");
    assert_eq!(g.nodes[0].outputs, [Some(y)]);
}

#[test]
fn identity_from_a_graph_input_to_a_graph_output_is_kept() {
    let mut g = graph();
    let x = input(&mut g, "x", &[3]);
    let y = node(&mut g, "id", op("Identity", vec![]), &[Some(x)]);
    let mut g = finish(g, &[y]);
    assert!(!passes::eliminate_identity_like(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Identity"]);
}

#[test]
fn flatten_and_reshape_are_removed_only_when_they_keep_the_shape() {
    let mut g = graph();
    let x = input(&mut g, "x", &[2, 8, 1, 1]);
    let flat4 = node(&mut g, "flatten4d", op("Flatten", vec![]), &[Some(x)]);
    let flat2 = node(&mut g, "flatten2d", op("Flatten", vec![]), &[Some(flat4)]);
    let same = g.add_initializer("same", Tensor::from_i64(vec![2], vec![0, -1]));
    let r1 = node(&mut g, "reshape_same", op("Reshape", vec![]), &[Some(flat2), Some(same)]);
    let other = g.add_initializer("other", Tensor::from_i64(vec![2], vec![4, 4]));
    let r2 = node(&mut g, "reshape_other", op("Reshape", vec![]), &[Some(r1), Some(other)]);
    let out = node(&mut g, "relu", op("Relu", vec![]), &[Some(r2)]);
    let original = finish(g, &[out]);
    let mut g = original.clone();
    assert!(passes::eliminate_identity_like(&mut g).unwrap());
    // The rank-changing Flatten and the shape-changing Reshape stay.
    assert_eq!(op_types(&g), ["Flatten", "Reshape", "Relu"]);
    let x = Rng(9).tensor(&[2, 8, 1, 1], -1.0, 1.0);
    assert_same_outputs(&original, &g, vec![x], 0.0);
}

#[test]
fn reshape_with_a_symbolic_batch_is_removed_when_inference_proves_the_shape() {
    let mut g = graph();
    let x = g.add_value("x", Fact::new(DType::F32, vec![resnet_engine::Dim::Sym("N".into()), 2048.into()]));
    g.inputs.push(x);
    let target = g.add_initializer("target", Tensor::from_i64(vec![2], vec![-1, 2048]));
    let y = node(&mut g, "reshape", op("Reshape", vec![]), &[Some(x), Some(target)]);
    let z = node(&mut g, "relu", op("Relu", vec![]), &[Some(y)]);
    let mut g = finish(g, &[z]);
    assert!(passes::eliminate_identity_like(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Relu"]);
}

// ---- fold_constants ----------------------------------------------------------------------

#[test]
fn static_shape_chain_folds_into_a_constant_reshape_target() {
    // Shape → Gather(0) → Unsqueeze → Concat(·, [-1]) → Reshape: PyTorch's flatten idiom.
    let mut g = graph();
    let x = input(&mut g, "x", &[2, 3, 4, 5]);
    let shape = node(&mut g, "shape", op("Shape", vec![]), &[Some(x)]);
    let zero = g.add_initializer("zero", Tensor::from_i64(vec![], vec![0]));
    let batch = node(&mut g, "gather", op("Gather", vec![int("axis", 0)]), &[Some(shape), Some(zero)]);
    let axes = g.add_initializer("axes", Tensor::from_i64(vec![1], vec![0]));
    let batch1 = node(&mut g, "unsqueeze", op("Unsqueeze", vec![]), &[Some(batch), Some(axes)]);
    let minus_one = g.add_initializer("minus_one", Tensor::from_i64(vec![1], vec![-1]));
    let target = node(&mut g, "concat", op("Concat", vec![int("axis", 0)]), &[Some(batch1), Some(minus_one)]);
    let y = node(&mut g, "reshape", op("Reshape", vec![]), &[Some(x), Some(target)]);
    let original = finish(g, &[y]);

    let mut g = original.clone();
    assert!(passes::fold_constants(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Reshape"]);
    let t = g.values[g.nodes[0].inputs[1].unwrap()].initializer.clone().expect("the target is an initializer");
    assert_eq!(t.as_i64().unwrap(), [2, -1]);
    let x = Rng(1).tensor(&[2, 3, 4, 5], -1.0, 1.0);
    assert_same_outputs(&original, &g, vec![x.clone()], 0.0);

    // The folded intermediates are dead; remove_dead_values drops them.
    assert!(passes::remove_dead_values(&mut g).unwrap());
    let names: Vec<&str> = g.initializers().map(|(n, _)| n).collect();
    assert_eq!(names, ["concat_out"]);
    assert_same_outputs(&original, &g, vec![x], 0.0);
}

#[test]
fn constant_nodes_and_all_constant_arithmetic_fold_even_without_inferred_values() {
    // Built without shape inference: folding must evaluate the nodes itself.
    let mut g = graph();
    let x = input(&mut g, "x", &[4]);
    let c = op("Constant", vec![("value".into(), AttrValue::Tensor(Tensor::from_f32(vec![4], vec![1., 2., 3., 4.])))]);
    let k = node(&mut g, "const", c, &[]);
    let two = g.add_initializer("two", Tensor::from_f32(vec![1], vec![2.0]));
    let k2 = node(&mut g, "mul", op("Mul", vec![]), &[Some(k), Some(two)]);
    let y = node(&mut g, "add", op("Add", vec![]), &[Some(x), Some(k2)]);
    g.outputs = vec![y];
    assert!(passes::fold_constants(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Add"]);
    let k2 = g.values[g.nodes[0].inputs[1].unwrap()].initializer.clone().unwrap();
    assert_eq!(k2.as_f32().unwrap(), [2., 4., 6., 8.]);
    let out = exec::run(&g, vec![Tensor::from_f32(vec![4], vec![1.0; 4])]).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), [3., 5., 7., 9.]);
}

#[test]
fn nodes_reading_runtime_inputs_are_not_folded() {
    let mut g = graph();
    let x = input(&mut g, "x", &[4]);
    let y = node(&mut g, "relu", op("Relu", vec![]), &[Some(x)]);
    let mut g = finish(g, &[y]);
    assert!(!passes::fold_constants(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Relu"]);
}

// ---- remove_dead_values ------------------------------------------------------------------

#[test]
fn dead_nodes_and_unused_initializers_are_dropped_but_graph_inputs_stay() {
    let mut g = graph();
    let x = input(&mut g, "x", &[3]);
    let unused_input = input(&mut g, "unused", &[3]);
    let _orphan = g.add_initializer("orphan", Tensor::from_f32(vec![1], vec![1.0]));
    let live = node(&mut g, "live", op("Relu", vec![]), &[Some(x)]);
    let dead = node(&mut g, "dead", op("Relu", vec![]), &[Some(live)]);
    let _dead2 = node(&mut g, "dead2", op("Relu", vec![]), &[Some(dead)]);
    let original = finish(g, &[live]);
    let mut g = original.clone();
    assert!(passes::remove_dead_values(&mut g).unwrap());
    assert_eq!(op_types(&g), ["Relu"]);
    assert_eq!(g.initializers().count(), 0);
    let names: Vec<&str> = g.inputs.iter().map(|&i| g.values[i].name.as_str()).collect();
    assert_eq!(names, ["x", "unused"]);
    assert_eq!(g.values[g.outputs[0]].name, "live_out");
    assert!(!passes::remove_dead_values(&mut g).unwrap(), "a second run finds nothing");
    let _ = unused_input;
    let inputs = vec![Tensor::from_f32(vec![3], vec![-1., 0., 1.]), Tensor::from_f32(vec![3], vec![0.; 3])];
    assert_same_outputs(&original, &g, inputs, 0.0);
}

// ---- the pass list -----------------------------------------------------------------------

#[test]
fn passes_are_listed_once_each_and_skippable_by_name() {
    let names: Vec<&str> = passes::PASSES.iter().map(|p| p.name).collect();
    assert_eq!(names, ["fold_constants", "eliminate_identity_like", "fold_batchnorm_into_conv", "remove_dead_values"]);
    assert!(passes::find_pass("fold_batchnorm_into_conv").is_some());
    assert!(passes::find_pass("opt3").is_none());

    let case = ConvCase { bias: true, kernel: 3, stride: 1, pad: 1, group: 1 };
    let g = conv_bn_graph(&case, &mut Rng(2));
    let opts = PassOptions { skip: vec!["fold_batchnorm_into_conv".into()] };
    let kept = passes::optimize(g.clone(), &opts).unwrap();
    assert_eq!(op_types(&kept), ["Conv", "BatchNormalization"]);
    let untouched = passes::optimize(g, &PassOptions::none()).unwrap();
    assert_eq!(op_types(&untouched), ["Conv", "BatchNormalization"]);
}

// ---- whole models ------------------------------------------------------------------------

const RESNET50: &str = "models/resnet50-v1-keras/model.onnx";

#[test]
fn real_resnet50_folds_every_batchnorm_but_the_input_one_and_still_matches_its_test_data() {
    let Some(path) = common::shared_asset(RESNET50) else { return };
    let original = onnx::load_model(&path).unwrap();
    assert_eq!(op_count(&original, "BatchNormalization"), 54);
    let optimized = passes::optimize(original.clone(), &PassOptions::default()).unwrap();
    // The one BN left is the input normalisation on `data`, ahead of the padded 7×7 conv.
    assert_eq!(op_count(&optimized, "BatchNormalization"), 1);
    let bn = optimized.nodes.iter().find(|n| n.op.onnx_type() == "BatchNormalization").unwrap();
    assert_eq!(bn.inputs[0], Some(optimized.inputs[0]));
    assert_eq!(op_count(&optimized, "Conv"), 53);
    assert_eq!(optimized.nodes.len(), original.nodes.len() - 53);
    assert!(optimized.parameter_count() < original.parameter_count(), "the BN statistics are gone");

    let dir = path.parent().unwrap();
    for set in testdata::data_sets(dir).unwrap() {
        let report =
            testdata::run_data_set(&optimized, &set, Tolerance::Elementwise { rtol: 1e-3, atol: 1e-5 }).unwrap();
        assert!(report.passed, "{}: {:?}", set.display(), report.outputs);
        let inputs: Vec<Tensor> = testdata::read_numbered(&set, "input").unwrap().into_iter().map(|(_, t)| t).collect();
        assert_same_outputs(&original, &optimized, inputs, 1e-4);
    }
}
