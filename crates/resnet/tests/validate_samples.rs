//! `resnet validate` on the 200 ImageNet sample images (SPEC §5): the top-1/top-5 it reports
//! equal those of the reference pipeline (Pillow + ONNX Runtime) recorded in `labels.tsv`,
//! through class folders, a flat folder + ground-truth file, shards + merge, and 1 or 2
//! threads; an unreadable file is listed and excluded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use resnet_test_support::shared_asset;
use serde_json::Value;

/// One sample's truth and whether the reference got it right.
struct Expected {
    wnid: String,
    label: usize,
    top1_correct: bool,
    top5_correct: bool,
}

struct Samples {
    model: PathBuf,
    images: PathBuf,
    /// By file name.
    expected: HashMap<String, Expected>,
}

fn samples() -> Option<Samples> {
    let model = shared_asset("models/resnet50-v1-keras/model.onnx")?;
    let dir = shared_asset("data/imagenet-samples")?;
    let tsv = std::fs::read_to_string(dir.join("labels.tsv")).unwrap();
    let mut expected = HashMap::new();
    for line in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let label: usize = cols[2].parse().unwrap();
        let top5: Vec<usize> = cols[4].split(',').map(|x| x.parse().unwrap()).collect();
        let e = Expected {
            wnid: cols[1].to_string(),
            label,
            top1_correct: cols[3].parse::<usize>().unwrap() == label,
            top5_correct: top5.contains(&label),
        };
        expected.insert(cols[0].to_string(), e);
    }
    assert_eq!(expected.len(), 200);
    Some(Samples { model, images: dir.join("images"), expected })
}

impl Samples {
    /// (top-1 correct, top-5 correct) of the reference over `files` (all when `None`).
    fn counts<'a>(&self, files: impl Iterator<Item = &'a str>) -> (usize, usize) {
        files.fold((0, 0), |(t1, t5), f| {
            let e = &self.expected[f];
            (t1 + usize::from(e.top1_correct), t5 + usize::from(e.top5_correct))
        })
    }

    /// The samples as `dir/<wnid>/<file>` (hard links, or copies across file systems).
    fn class_folders(&self, dir: &Path) {
        for (file, e) in &self.expected {
            std::fs::create_dir_all(dir.join(&e.wnid)).unwrap();
            link(&self.images.join(file), &dir.join(&e.wnid).join(file));
        }
    }
}

fn link(src: &Path, dst: &Path) {
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).unwrap();
    }
}

fn validate(args: &[&str], model: &Path, data: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .arg("validate")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "validate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `file → (top-5 classes)` of a report's images.
fn predictions(report: &Value) -> Vec<(String, Vec<u64>)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let top5 = i["top5"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
            (i["file"].as_str().unwrap().to_string(), top5)
        })
        .collect()
}

fn base_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap()
}

/// Each image's correctness flags agree with the reference's (not only the totals).
fn assert_images_match_reference(s: &Samples, report: &Value) {
    for img in report["images"].as_array().unwrap() {
        let file = img["file"].as_str().unwrap();
        let e = &s.expected[base_name(file)];
        assert_eq!(img["label"].as_u64().unwrap() as usize, e.label, "{file}: label");
        let top5: Vec<usize> = img["top5"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as usize).collect();
        assert_eq!(top5[0] == e.label, e.top1_correct, "{file}: top-1 differs from the reference's");
        assert_eq!(top5.contains(&e.label), e.top5_correct, "{file}: top-5 differs from the reference's");
    }
}

#[test]
fn class_folders_score_exactly_the_reference_top1_top5_and_shards_merge_to_the_same_totals() {
    let Some(s) = samples() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("val");
    s.class_folders(&data);
    // An unreadable image is listed and excluded; a non-image file is ignored.
    std::fs::write(data.join("n01440764").join("broken.JPEG"), b"not a jpeg at all").unwrap();
    std::fs::write(data.join("n01440764").join("notes.txt"), b"ignored").unwrap();
    // So is a dangling link (it used to be skipped without a word).
    #[cfg(unix)]
    std::os::unix::fs::symlink(tmp.path().join("nowhere.JPEG"), data.join("n01496331").join("gone.JPEG")).unwrap();
    let broken = if cfg!(unix) { 2 } else { 1 };
    let (top1, top5) = s.counts(s.expected.keys().map(String::as_str));
    assert_eq!((top1, top5), (183, 199), "labels.tsv changed?");

    let whole_path = tmp.path().join("whole.json");
    let summary = validate(&["--threads", "2", "--report", whole_path.to_str().unwrap()], &s.model, &data);
    assert_eq!(summary["count"], 200, "{summary}");
    assert_eq!(summary["top1_correct"], top1, "{summary}");
    assert_eq!(summary["top5_correct"], top5, "{summary}");
    assert_eq!(summary["top1"].as_f64().unwrap(), top1 as f64 / 200.0);
    assert_eq!(summary["top5"].as_f64().unwrap(), top5 as f64 / 200.0);
    assert_eq!(summary["classes"], 200);
    assert_eq!(summary["failed"], broken);
    assert_eq!(summary["failed_files"][0]["file"], "n01440764/broken.JPEG");
    assert!(summary["failed_files"][0]["error"].as_str().unwrap().contains("unknown image format"), "{summary}");
    if cfg!(unix) {
        assert_eq!(summary["failed_files"][1]["file"], "n01496331/gone.JPEG", "{summary}");
    }
    assert!(summary["images_per_s"].as_f64().unwrap() > 0.0);
    let whole = read_json(&whole_path);
    assert_eq!(whole["summary"]["top1_correct"], top1);
    assert_images_match_reference(&s, &whole);
    assert_eq!(whole["per_class"].as_array().unwrap().len(), 200);
    let confused: u64 = whole["confused"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(confused, 200 - top1 as u64, "every top-1 miss is one confusion (fewer than 20 pairs here)");

    // The same data in three shards, then merged.
    let mut shard_reports = Vec::new();
    for i in 0..3 {
        let path = tmp.path().join(format!("shard{i}.json"));
        let shard = format!("{i}/3");
        let batch = ["7", "16", "32"][i];
        let part = validate(
            &["--threads", "2", "--batch", batch, "--shard", &shard, "--report", path.to_str().unwrap()],
            &s.model,
            &data,
        );
        assert_eq!(part["shard"], shard.as_str());
        let n = part["count"].as_u64().unwrap() + part["failed"].as_u64().unwrap();
        assert!((66..=68).contains(&n), "shard {shard} has {n} files");
        shard_reports.push(path);
    }
    let merged_path = tmp.path().join("merged.json");
    let out = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["validate", "merge", "--json", "--report", merged_path.to_str().unwrap()])
        .args(shard_reports.iter().rev())
        .output()
        .unwrap();
    assert!(out.status.success(), "merge failed: {}", String::from_utf8_lossy(&out.stderr));
    let merged: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["count", "top1", "top5", "top1_correct", "top5_correct", "failed", "failed_files", "classes"] {
        assert_eq!(merged[key], summary[key], "merged {key} differs from the unsharded run");
    }
    let merged_report = read_json(&merged_path);
    assert_eq!(predictions(&merged_report), predictions(&whole), "per-image top-5 differ");
    assert_eq!(merged_report["per_class"], whole["per_class"]);
    assert_eq!(merged_report["confused"], whole["confused"]);

    // An incomplete set of shards is refused, not silently merged.
    let out = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["validate", "merge"])
        .args(&shard_reports[..2])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing shard report(s) 2/3"), "{err}");
}

#[test]
fn flat_folder_with_the_ground_truth_tsv_scores_the_same() {
    let Some(s) = samples() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let flat = tmp.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    // The format of ILSVRC2012_val_ground_truth.tsv: a comment, then FILE<TAB>WNID<TAB>INDEX.
    let mut gt = String::from("# file\twnid\tindex_in_synset.txt (0-based)\n");
    let mut files: Vec<&String> = s.expected.keys().collect();
    files.sort();
    for file in files {
        let e = &s.expected[file];
        // Mixed-case extensions count as images too.
        let name = file.replace(".JPEG", if e.label % 2 == 0 { ".JPEG" } else { ".jpeg" });
        link(&s.images.join(file), &flat.join(&name));
        gt.push_str(&format!("{name}\t{}\t{}\n", e.wnid, e.label));
    }
    // An image the ground truth does not list is reported, not scored.
    link(&s.images.join("n01440764_tench.JPEG"), &flat.join("unlisted.JPEG"));
    let gt_path = tmp.path().join("ground_truth.tsv");
    std::fs::write(&gt_path, gt).unwrap();

    let report_path = tmp.path().join("flat.json");
    let summary = validate(
        &["--ground-truth", gt_path.to_str().unwrap(), "--threads", "2", "--report", report_path.to_str().unwrap()],
        &s.model,
        &flat,
    );
    let (top1, top5) = s.counts(s.expected.keys().map(String::as_str));
    assert_eq!(summary["count"], 200, "{summary}");
    assert_eq!(
        (summary["top1_correct"].as_u64(), summary["top5_correct"].as_u64()),
        (Some(top1 as u64), Some(top5 as u64))
    );
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["unlabeled"], 1);
    let report = read_json(&report_path);
    assert_eq!(report["unlabeled"][0], "unlisted.JPEG");
    for img in report["images"].as_array().unwrap() {
        let file = img["file"].as_str().unwrap().replace(".jpeg", ".JPEG");
        let e = &s.expected[&file];
        let top5: Vec<usize> = img["top5"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as usize).collect();
        assert_eq!((top5[0] == e.label, top5.contains(&e.label)), (e.top1_correct, e.top5_correct), "{file}");
    }
}

#[test]
fn one_or_two_threads_and_any_batch_size_give_the_same_predictions() {
    let Some(s) = samples() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    s.class_folders(&data);
    let one = tmp.path().join("one.json");
    let two = tmp.path().join("two.json");
    let csv = tmp.path().join("two.csv");
    validate(&["--limit", "50", "--threads", "1", "--batch", "5", "--report", one.to_str().unwrap()], &s.model, &data);
    let summary = validate(
        &["--limit", "50", "--threads", "2", "--batch", "32", "--report", two.to_str().unwrap()],
        &s.model,
        &data,
    );
    let (one, two) = (read_json(&one), read_json(&two));
    assert_eq!(one["summary"]["count"], 50);
    assert_eq!(predictions(&one), predictions(&two));
    assert_eq!(one["summary"]["top1_correct"], two["summary"]["top1_correct"]);
    assert_eq!(one["summary"]["top5_correct"], two["summary"]["top5_correct"]);
    let first50: Vec<String> = predictions(&two).into_iter().map(|(f, _)| f).collect();
    let (top1, top5) = s.counts(first50.iter().map(|f| base_name(f)));
    assert_eq!(
        (summary["top1_correct"].as_u64(), summary["top5_correct"].as_u64()),
        (Some(top1 as u64), Some(top5 as u64))
    );
    assert_images_match_reference(&s, &two);
    // Probabilities agree to float noise.
    for (a, b) in one["images"].as_array().unwrap().iter().zip(two["images"].as_array().unwrap()) {
        let (pa, pb) = (a["probabilities"][0].as_f64().unwrap(), b["probabilities"][0].as_f64().unwrap());
        assert!((pa - pb).abs() < 1e-4, "{}: {pa} vs {pb}", a["file"]);
    }

    // The CSV report: a header and one row per image, the same top-5 as the JSON report.
    validate(&["--limit", "50", "--threads", "2", "--report", csv.to_str().unwrap()], &s.model, &data);
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0][..6], ["file", "label", "wnid", "correct_top1", "correct_top5", "top1"]);
    assert_eq!(rows.len(), 51);
    for (row, (file, top5)) in rows[1..].iter().zip(predictions(&two)) {
        assert_eq!(row[0], file);
        let ours: Vec<u64> = row[5..10].iter().map(|c| c.parse().unwrap()).collect();
        assert_eq!(ours, top5, "{file}");
    }
}
