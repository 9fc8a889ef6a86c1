//! The small-input variants of the builder (Gluon's `thumbnail=True`, other channel lists and
//! input channels) and the `mnist-v1`/`mnist-v2` presets: they build, run on 28×28 digits,
//! have exactly the layers Gluon's ResNetV1/V2 construct, and bad options are typed errors.

use std::collections::BTreeMap;

use resnet_engine::{exec, Graph, Op, Tensor};
use resnet_zoo::arch::{
    build, parameter_counts, recognize, ArchError, ArchSpec, Init, Version, MNIST_CHANNELS, NAMES, SMALL_NAMES,
};

fn mnist(version: Version) -> Graph {
    build(&ArchSpec::mnist(version), Init::Seed(5)).unwrap()
}

fn shape_of(g: &Graph, name: &str) -> Vec<usize> {
    let id = g.value_id(name).unwrap_or_else(|| panic!("no value {name}"));
    g.values[id].initializer.as_ref().unwrap_or_else(|| panic!("{name} is not an initializer")).shape().to_vec()
}

/// Every Conv's weight name and shape, in node order.
fn conv_weights(g: &Graph) -> Vec<(String, Vec<usize>)> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_)))
        .map(|n| {
            let w = &g.values[n.inputs[1].unwrap()];
            (w.name.clone(), w.initializer.as_ref().unwrap().shape().to_vec())
        })
        .collect()
}

/// A batch of two "digits": values in [0, 1] that differ between the images.
fn digits(batch: usize) -> Tensor {
    let n = batch * 28 * 28;
    Tensor::from_f32(vec![batch, 1, 28, 28], (0..n).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect())
}

#[test]
fn small_names_parse_print_and_stay_out_of_the_zoo_list() {
    for name in SMALL_NAMES {
        let spec = ArchSpec::from_name(name).unwrap();
        assert_eq!(spec.name(), name);
        assert_eq!(ArchSpec::from_name(&spec.name()).unwrap(), spec);
        assert!(!NAMES.contains(&name));
    }
    let v1 = ArchSpec::from_name("mnist-v1").unwrap();
    assert_eq!(v1, ArchSpec::mnist(Version::V1));
    assert_eq!((v1.depth, v1.classes, v1.input_size, v1.in_channels), (18, 10, 28, 1));
    assert!(v1.thumbnail);
    assert_eq!(v1.channels, Some([16, 16, 32, 64, 128]));
    assert_eq!(v1.prefix(), "resnetv10_");
    assert_eq!(ArchSpec::mnist(Version::V2).prefix(), "resnetv20_");
    assert_eq!(
        v1.to_string(),
        "mnist-v1 (Gluon ResNetV1, prefix resnetv10_, thumbnail stem, 1 input channel, \
         channels [16, 16, 32, 64, 128], 10 classes, input 28x28)"
    );
    // The CLI's `--classes`/`--input-size` override keeps the name.
    let wide = ArchSpec { classes: 1000, input_size: 224, ..v1.clone() };
    assert_eq!(wide.name(), "mnist-v1");
    // Any other change of layout falls back to the resnet name, with the options in Display.
    let custom = ArchSpec { in_channels: 3, ..v1 };
    assert_eq!(custom.name(), "resnet18-v1");
    assert!(custom.to_string().contains("thumbnail stem, channels [16, 16, 32, 64, 128]"), "{custom}");
    let e = ArchSpec::from_name("mnist-v3").unwrap_err().to_string();
    assert!(e.contains("resnet18-v1") && e.contains("mnist-v1") && e.contains("mnist-v2"), "{e}");
}

#[test]
fn zoo_specs_keep_their_defaults() {
    for name in NAMES {
        let spec = ArchSpec::from_name(name).unwrap();
        assert_eq!((spec.in_channels, spec.thumbnail, spec.channels), (3, false, None), "{name}");
        assert!(!spec.to_string().contains("thumbnail"), "{spec}");
    }
    assert_eq!(ArchSpec::from_name("resnet50-v1").unwrap().stage_channels(), Some([64, 256, 512, 1024, 2048]));
    assert_eq!(ArchSpec::mnist(Version::V2).stage_channels(), Some(MNIST_CHANNELS));
}

#[test]
fn mnist_networks_run_on_a_batch_of_digits() {
    for version in [Version::V1, Version::V2] {
        let g = mnist(version);
        let input = &g.values[g.inputs[0]];
        assert_eq!(input.name, "data");
        let dims: Vec<Option<usize>> = input.fact.shape.as_ref().unwrap().iter().map(|d| d.known()).collect();
        assert_eq!(dims, [None, Some(1), Some(28), Some(28)], "{version:?}");
        let y = exec::run(&g, vec![digits(2)]).unwrap();
        assert_eq!(y[0].shape(), &[2, 10], "{version:?}");
        let v = y[0].as_f32().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{version:?}: {v:?}");
        assert_ne!(v[..10], v[10..], "{version:?}: the two images give the same logits");
        assert_eq!(g.values[g.outputs[0]].name, format!("resnetv{}0_dense0_fwd", version.number()));
        // Reproducible from the seed.
        assert_eq!(exec::run(&mnist(version), vec![digits(2)]).unwrap(), y);
    }
}

#[test]
fn mnist_v1_convs_have_gluons_shapes() {
    let g = mnist(Version::V1);
    let p = "resnetv10_";
    let mut want: Vec<(String, Vec<usize>)> = vec![(format!("{p}conv0_weight"), vec![16, 1, 3, 3])];
    // BasicBlockV1 construction order per block: body conv0, conv1, then the downsample conv2.
    let stages = [(16, 16), (16, 32), (32, 64), (64, 128)];
    for (s, &(cin, c)) in stages.iter().enumerate() {
        let scope = format!("{p}stage{}_", s + 1);
        want.push((format!("{scope}conv0_weight"), vec![c, cin, 3, 3]));
        want.push((format!("{scope}conv1_weight"), vec![c, c, 3, 3]));
        if cin != c {
            want.push((format!("{scope}conv2_weight"), vec![c, cin, 1, 1]));
        }
        let k = if cin != c { 3 } else { 2 };
        want.push((format!("{scope}conv{k}_weight"), vec![c, c, 3, 3]));
        want.push((format!("{scope}conv{}_weight", k + 1), vec![c, c, 3, 3]));
    }
    let mut got = conv_weights(&g);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(shape_of(&g, &format!("{p}dense0_weight")), [10, 128]);
    assert_eq!(shape_of(&g, &format!("{p}dense0_bias")), [10]);
}

#[test]
fn mnist_v2_convs_have_gluons_shapes() {
    let g = mnist(Version::V2);
    let p = "resnetv20_";
    let convs = conv_weights(&g);
    assert_eq!(convs.len(), 20);
    assert_eq!(convs[0], (format!("{p}conv0_weight"), vec![16, 1, 3, 3]));
    let shapes: BTreeMap<String, Vec<usize>> = convs.into_iter().collect();
    // BasicBlockV2: conv0 (3×3, stride on the first block), conv1 (3×3), downsample conv2 (1×1).
    for (s, (cin, c)) in [(16, 16), (16, 32), (32, 64), (64, 128)].into_iter().enumerate() {
        let scope = format!("{p}stage{}_", s + 1);
        assert_eq!(shapes[&format!("{scope}conv0_weight")], [c, cin, 3, 3], "{scope}");
        assert_eq!(shapes[&format!("{scope}conv1_weight")], [c, c, 3, 3], "{scope}");
        let ds = format!("{scope}conv2_weight");
        if cin != c {
            assert_eq!(shapes[&ds], [c, cin, 1, 1], "{scope}");
        } else {
            assert_eq!(shapes[&ds], [c, c, 3, 3], "{scope}: second block's first conv");
        }
    }
    assert_eq!(shape_of(&g, &format!("{p}dense0_weight")), [10, 128]);
}

#[test]
fn thumbnail_stem_is_one_3x3_stride_1_conv_without_max_pool() {
    for version in [Version::V1, Version::V2] {
        let g = mnist(version);
        assert!(!g.nodes.iter().any(|n| matches!(n.op, Op::MaxPool(_))), "{version:?}");
        let conv = g.nodes.iter().find(|n| matches!(n.op, Op::Conv(_))).unwrap();
        let Op::Conv(c) = &conv.op else { unreachable!() };
        assert_eq!(c.window.kernel_shape.as_deref(), Some(&[3, 3][..]), "{version:?}");
        assert_eq!(c.window.strides.as_deref(), Some(&[1, 1][..]), "{version:?}");
        assert_eq!(c.window.pads.as_deref(), Some(&[1, 1, 1, 1][..]), "{version:?}");
        assert_eq!(conv.inputs.len(), 2, "no bias");
        // Gluon's thumbnail stem is the conv alone: the next node is already stage 1.
        let next = g.nodes.iter().find(|n| n.inputs.first() == Some(&conv.outputs[0])).unwrap();
        assert!(next.name.contains("stage1_"), "{version:?}: {} after the stem", next.name);
    }
}

#[test]
fn op_counts_are_the_zoo_resnet18s_less_the_stem_bn_relu_and_max_pool() {
    // ResNet-18 (SPEC §2.4): v1 69 nodes, 20 Conv, 20 BN, 17 Relu, 8 Add; v2 69, 20, 19, 18, 8.
    for (version, nodes, conv, bn, relu, add) in [(Version::V1, 66, 20, 19, 16, 8), (Version::V2, 66, 20, 18, 17, 8)] {
        let g = mnist(version);
        let counts: BTreeMap<&str, usize> = g.op_counts().into_iter().collect();
        assert_eq!(g.nodes.len(), nodes, "{version:?}");
        let get = |t: &str| counts.get(t).copied().unwrap_or(0);
        assert_eq!(
            (get("Conv"), get("BatchNormalization"), get("Relu"), get("Add"), get("MaxPool")),
            (conv, bn, relu, add, 0),
            "{version:?}"
        );
        // Not one of the zoo's ten.
        assert!(recognize(&g).is_none(), "{version:?}");
    }
}

#[test]
fn v2_keeps_its_fixed_input_batchnorm_on_one_channel() {
    let g = mnist(Version::V2);
    let first = &g.nodes[0];
    assert!(matches!(first.op, Op::BatchNormalization(_)), "{}", first.name);
    assert_eq!(first.inputs[0], Some(g.inputs[0]));
    assert_eq!(first.name, "resnetv20_batchnorm0_fwd");
    for suffix in ["gamma", "beta", "running_mean", "running_var"] {
        assert_eq!(shape_of(&g, &format!("resnetv20_batchnorm0_{suffix}")), [1], "{suffix}");
    }
    // The post-activation BN of the head is batchnorm1 (the thumbnail stem has no BN).
    assert_eq!(shape_of(&g, "resnetv20_batchnorm1_gamma"), [128]);
    assert!(g.value_id("resnetv20_batchnorm2_gamma").is_none());
    // Its gamma and beta are fixed (Gluon's scale=False, center=False): 2 of the stored
    // floats are not trainable, besides every BN's running statistics.
    let (stored, trainable) = parameter_counts(&g);
    let running: usize = g.initializers().filter(|(n, _)| n.contains("_running_")).map(|(_, t)| t.len()).sum::<usize>();
    assert_eq!(stored - trainable, running + 2);
}

#[test]
fn mnist_parameter_counts() {
    // Stored = convs + 4 floats per BN channel + dense 128·10 + 10; trainable leaves out the
    // running statistics (and v2's fixed data-BN gamma/beta). v1: stem 16·9 = 144; per stage
    // 9·(c·cin + 3·c²) + c·cin for the projection, 4 (5 with a projection) BNs of c channels.
    // v2: one BN before each conv of cin or c channels, a data BN of 1, a head BN of 128.
    assert_eq!(parameter_counts(&mnist(Version::V1)), (703_514, 701_146));
    assert_eq!(parameter_counts(&mnist(Version::V2)), (702_686, 700_730));
}

#[test]
fn custom_channels_and_input_channels_build_and_are_recognized() {
    // A CIFAR-like 3-channel thumbnail net is not zoo-shaped; a non-thumbnail net with other
    // channels is, and recognize reads its channels and input channels back.
    let spec = ArchSpec {
        classes: 7,
        input_size: 32,
        prefix_counter: Some(3),
        in_channels: 4,
        channels: Some([8, 8, 16, 32, 64]),
        ..ArchSpec::new(Version::V1, 34)
    };
    let g = build(&spec, Init::Zeros).unwrap();
    assert_eq!(recognize(&g), Some(spec.clone()));
    let x = Tensor::from_f32(vec![1, 4, 32, 32], vec![0.5; 4 * 32 * 32]);
    assert_eq!(exec::run(&g, vec![x]).unwrap()[0].shape(), &[1, 7]);
    let bottleneck = ArchSpec { channels: Some([8, 16, 32, 64, 128]), ..ArchSpec::new(Version::V2, 50) };
    let g = build(&bottleneck, Init::Zeros).unwrap();
    assert_eq!(shape_of(&g, "resnetv24_stage1_conv0_weight"), [4, 8, 1, 1]);
    assert_eq!(recognize(&g).unwrap().channels, Some([8, 16, 32, 64, 128]));
    let thumb = ArchSpec { thumbnail: true, input_size: 32, ..ArchSpec::new(Version::V1, 18) };
    let g = build(&thumb, Init::Zeros).unwrap();
    assert_eq!(shape_of(&g, "resnetv15_conv0_weight"), [64, 3, 3, 3]);
    assert!(recognize(&g).is_none());
}

#[test]
fn invalid_small_options_are_typed_errors() {
    let v1 = ArchSpec::mnist(Version::V1);
    let e = build(&ArchSpec { in_channels: 0, ..v1.clone() }, Init::Zeros).unwrap_err();
    assert!(matches!(e, ArchError::InputChannels(0)), "{e:?}");
    assert!(e.to_string().contains("input channels"), "{e}");

    let e = build(&ArchSpec { channels: Some([16, 0, 32, 64, 128]), ..v1.clone() }, Init::Zeros).unwrap_err();
    assert!(matches!(e, ArchError::Channels { depth: 18, channels: [16, 0, 32, 64, 128], .. }), "{e:?}");
    assert!(e.to_string().contains("entry 1 is 0"), "{e}");

    let e = build(&ArchSpec { channels: Some([16, 16, 32, 32, 128]), ..v1.clone() }, Init::Zeros).unwrap_err();
    assert!(matches!(e, ArchError::Channels { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("stage 3 keeps 32 channels") && !msg.contains('\n'), "{msg}");

    let bottleneck = ArchSpec { channels: Some([16, 16, 32, 64, 130]), ..ArchSpec::new(Version::V1, 50) };
    let e = build(&bottleneck, Init::Zeros).unwrap_err();
    assert!(matches!(e, ArchError::Channels { depth: 50, .. }), "{e:?}");
    assert!(e.to_string().contains("130 is not divisible by 4"), "{e}");

    // A depth outside the zoo stays an error with thumbnail too.
    let e = build(&ArchSpec { depth: 20, ..v1 }, Init::Zeros).unwrap_err();
    assert!(matches!(e, ArchError::Invalid(_)), "{e:?}");
}
