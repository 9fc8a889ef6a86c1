//! `resnet prep imagenet-train` on a small fake ILSVRC2012_img_train.tar (per-class tars of
//! sample images inside, plus things that do not belong): the right `train/<wnid>/` tree from
//! the outer tar and from a folder of per-class tars, unexpected entries reported, the inputs
//! untouched, a second run a no-op, an interrupted run finished.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use resnet_test_support::shared_asset;
use serde_json::Value;

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn prep(input: &Path, out: &Path) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["prep", "imagenet-train", "--json", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Relative path → bytes of every file under `dir`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn train_tars_become_class_folders_and_reruns_change_nothing() {
    let Some(images) = shared_asset("data/imagenet-samples/images") else { return };
    let tench = std::fs::read(images.join("n01440764_tench.JPEG")).unwrap();
    let ray = std::fs::read(images.join("n01496331_electric_ray.JPEG")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tench_tar = tar_of(&[("n01440764_10026.JPEG", &tench), ("n01440764_10027.JPEG", &ray)]);
    let goldfish_tar = tar_of(&[("n01443537_1.JPEG", &ray), ("README.txt", b"not an image")]);
    let outer = tar_of(&[("n01440764.tar", &tench_tar), ("n01443537.tar", &goldfish_tar), ("notes.txt", b"x")]);
    let outer_path = tmp.path().join("ILSVRC2012_img_train.tar");
    std::fs::write(&outer_path, &outer).unwrap();

    let out = tmp.path().join("imagenet");
    let r = prep(&outer_path, &out);
    assert_eq!((r["created"].as_u64(), r["already_present"].as_u64()), (Some(3), Some(0)));
    assert_eq!(r["unexpected"], serde_json::json!(["n01443537.tar/README.txt", "notes.txt"]));
    assert_eq!(r["per_class"], serde_json::json!({"n01440764": 2, "n01443537": 1}));
    let expected: BTreeMap<String, Vec<u8>> = [
        ("train/n01440764/n01440764_10026.JPEG", tench.clone()),
        ("train/n01440764/n01440764_10027.JPEG", ray.clone()),
        ("train/n01443537/n01443537_1.JPEG", ray.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(tree(&out), expected);
    assert_eq!(std::fs::read(&outer_path).unwrap(), outer, "the input changed");

    let again = prep(&outer_path, &out);
    assert_eq!((again["created"].as_u64(), again["already_present"].as_u64()), (Some(0), Some(3)));
    assert_eq!(tree(&out), expected);

    // Interrupted: one image missing and a half-written temporary file; a rerun finishes it.
    std::fs::remove_file(out.join("train/n01440764/n01440764_10027.JPEG")).unwrap();
    std::fs::write(out.join("train/n01440764/.n01440764_10027.JPEG.partial"), b"half").unwrap();
    let resumed = prep(&outer_path, &out);
    assert_eq!((resumed["created"].as_u64(), resumed["already_present"].as_u64()), (Some(1), Some(2)));
    assert_eq!(tree(&out), expected);

    // The same from a folder of per-class tars (the outer tar already unpacked).
    let tars = tmp.path().join("train_tars");
    std::fs::create_dir(&tars).unwrap();
    std::fs::write(tars.join("n01440764.tar"), &tench_tar).unwrap();
    std::fs::write(tars.join("n01443537.tar"), &goldfish_tar).unwrap();
    let out2 = tmp.path().join("from_folder");
    let r = prep(&tars, &out2);
    assert_eq!(r["created"], 3);
    assert_eq!(tree(&out2), expected);
}

#[test]
fn a_corrupt_archive_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("train.tar");
    std::fs::write(&bad, vec![7u8; 1000]).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["prep", "imagenet-train", "--input"])
        .arg(&bad)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: ") && err.contains("train.tar: cannot read it as a tar archive"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
