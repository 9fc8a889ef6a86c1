//! `resnet prep imagenet-val` on a fake validation set (sample images renamed
//! `ILSVRC2012_val_XXXXXXXX.JPEG`, a matching ground-truth file, some files missing, one
//! extra): the right `val/<wnid>/` tree, missing and extra files reported, inputs untouched,
//! a second run a no-op; `--copy` finishes an interrupted run; `resnet validate` reads the tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use resnet_test_support::shared_asset;
use serde_json::Value;

const MISSING: [usize; 3] = [4, 9, 15];
const TOTAL: usize = 20;

struct FakeVal {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    images: PathBuf,
    ground_truth: PathBuf,
    /// `file → wnid` of the images that exist.
    present: BTreeMap<String, String>,
}

fn fake_val_set() -> Option<FakeVal> {
    let samples = shared_asset("data/imagenet-samples")?;
    let tsv = std::fs::read_to_string(samples.join("labels.tsv")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let images = root.join("val_flat");
    std::fs::create_dir(&images).unwrap();
    let mut gt = String::from("# file\twnid\tindex_in_synset.txt (0-based)\n");
    let mut present = BTreeMap::new();
    for (k, line) in tsv.lines().skip(1).take(TOTAL).enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        let name = format!("ILSVRC2012_val_{:08}.JPEG", k + 1);
        gt.push_str(&format!("{name}\t{}\t{}\n", cols[1], cols[2]));
        if !MISSING.contains(&(k + 1)) {
            std::fs::copy(samples.join("images").join(cols[0]), images.join(&name)).unwrap();
            present.insert(name, cols[1].to_string());
        }
    }
    std::fs::write(images.join("ILSVRC2012_val_00099999.JPEG"), b"not in the ground truth").unwrap();
    let ground_truth = root.join("ILSVRC2012_val_ground_truth.tsv");
    std::fs::write(&ground_truth, gt).unwrap();
    Some(FakeVal { _tmp: tmp, root, images, ground_truth, present })
}

/// Every file under `dir` (relative path → bytes and modification time).
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                let meta = std::fs::metadata(&path).unwrap();
                out.insert(rel, (std::fs::read(&path).unwrap(), meta.modified().unwrap()));
            }
        }
    }
    out
}

fn prep(v: &FakeVal, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["prep", "imagenet-val", "--images"])
        .arg(&v.images)
        .arg("--ground-truth")
        .arg(&v.ground_truth)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn prep_builds_the_class_tree_reports_missing_and_extra_and_never_touches_inputs() {
    let Some(v) = fake_val_set() else { return };
    let inputs_before = snapshot(&v.images);
    let gt_before = std::fs::read(&v.ground_truth).unwrap();
    let out = v.root.join("imagenet");

    let first = prep(&v, &out, &["--json"]);
    assert_eq!(first.status.code(), Some(1), "missing files give exit code 1");
    let r = json(&first);
    assert_eq!(r["created"], TOTAL - MISSING.len());
    assert_eq!(r["already_present"], 0);
    let missing: Vec<String> = MISSING.iter().map(|k| format!("ILSVRC2012_val_{k:08}.JPEG")).collect();
    assert_eq!(r["missing"], serde_json::json!(missing));
    assert_eq!(r["unexpected"], serde_json::json!(["ILSVRC2012_val_00099999.JPEG"]));
    assert_eq!(r["per_class"].as_object().unwrap().len(), TOTAL - MISSING.len());
    assert!(r["per_class"].as_object().unwrap().values().all(|n| n == 1));

    // The tree: exactly val/<wnid>/<file> for each present image, the same bytes.
    let tree = snapshot(&out);
    let expected: Vec<String> = v.present.iter().map(|(f, w)| format!("val/{w}/{f}")).collect();
    assert_eq!(tree.keys().cloned().collect::<Vec<_>>(), expected);
    for (f, w) in &v.present {
        assert_eq!(tree[&format!("val/{w}/{f}")].0, inputs_before[f].0, "{f}");
    }
    assert_eq!(snapshot(&v.images), inputs_before, "inputs changed");
    assert_eq!(std::fs::read(&v.ground_truth).unwrap(), gt_before);

    // Again: nothing to do.
    let second = prep(&v, &out, &[]);
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(text.contains("0 created, 17 already present (hard links)"), "{text}");
    assert!(text.contains("3 missing"), "{text}");
    assert!(text.contains("1 unexpected"), "{text}");
    assert!(text.contains("classes: 17 (17 with 1 image)"), "{text}");
    assert_eq!(snapshot(&out), tree, "the second run changed the tree");
    assert_eq!(snapshot(&v.images), inputs_before, "inputs changed");

    // `resnet validate` reads OUT (it descends into OUT/val) and scores all 17.
    let model = shared_asset("models/resnet50-v1-keras/model.onnx").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["validate", "--json", "--threads", "2", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary = json(&run);
    assert_eq!((summary["count"].as_u64(), summary["classes"].as_u64()), (Some(17), Some(17)));
}

#[test]
fn prep_copy_finishes_an_interrupted_run_and_is_then_a_no_op() {
    let Some(v) = fake_val_set() else { return };
    let inputs_before = snapshot(&v.images);
    let out = v.root.join("copied");
    assert_eq!(prep(&v, &out, &["--copy"]).status.code(), Some(1));
    let complete = snapshot(&out);
    assert_eq!(complete.len(), 17);

    // Interrupt: two images not yet copied, one half-written temporary file left behind.
    let (f1, w1) = v.present.iter().next().unwrap();
    let (f2, w2) = v.present.iter().nth(5).unwrap();
    std::fs::remove_file(out.join("val").join(w1).join(f1)).unwrap();
    std::fs::remove_file(out.join("val").join(w2).join(f2)).unwrap();
    std::fs::write(out.join("val").join(w1).join(format!(".{f1}.partial")), b"half").unwrap();

    let rerun = json(&prep(&v, &out, &["--copy", "--json"]));
    assert_eq!((rerun["created"].as_u64(), rerun["already_present"].as_u64()), (Some(2), Some(15)));
    assert_eq!(
        snapshot(&out).into_iter().map(|(k, (b, _))| (k, b)).collect::<Vec<_>>(),
        complete.iter().map(|(k, (b, _))| (k.clone(), b.clone())).collect::<Vec<_>>()
    );
    let again = json(&prep(&v, &out, &["--copy", "--json"]));
    assert_eq!((again["created"].as_u64(), again["already_present"].as_u64()), (Some(0), Some(17)));
    assert_eq!(snapshot(&v.images), inputs_before, "inputs changed");
}

#[test]
fn prep_refuses_a_ground_truth_it_cannot_read() {
    let Some(v) = fake_val_set() else { return };
    std::fs::write(&v.ground_truth, "ILSVRC2012_val_00000001.JPEG n99999999\n").unwrap();
    let out = prep(&v, &v.root.join("x"), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ILSVRC2012_val_ground_truth.tsv:1: 'n99999999' is not one of the labels' WordNet ids"),
        "{err}"
    );
    assert!(!v.root.join("x").exists(), "nothing is created for a bad ground truth");
}
