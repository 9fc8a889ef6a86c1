//! Metrics and reports (SPEC §5.3): top-1/top-5 over all scored images, per-class accuracy,
//! the most confused pairs, the failed files; written as JSON or CSV, and merged from shards.
//!
//! A report keeps every image's top-5, so merging shard reports recomputes all metrics from
//! the images themselves: the totals are exactly those of an unsharded run.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use resnet_vision::Labels;

use super::pipeline::{Failure, ImageResult};
use super::Error;

/// How many (true class, predicted class) pairs a report lists.
pub const CONFUSED_PAIRS: usize = 20;

/// The headline numbers; `resnet validate --json` prints this with the failed files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Fraction of scored images whose most probable class is the label.
    pub top1: f64,
    /// Fraction of scored images whose label is among the five most probable classes.
    pub top5: f64,
    /// Images scored.
    pub count: usize,
    /// Images that could not be read or decoded (not in `count`).
    pub failed: usize,
    pub top1_correct: usize,
    pub top5_correct: usize,
    /// Scored images per second of wall time (for a merge: the sum over the shards, i.e.
    /// their throughput when they run side by side).
    pub images_per_s: f64,
    /// Wall time of the run (for a merge: the longest shard).
    pub seconds: f64,
    /// 1 (center crop) or 10 (ten-crop).
    pub crops: usize,
    /// Distinct classes among the scored images.
    pub classes: usize,
    /// Images in a flat folder that the ground-truth file does not mention (not scored).
    pub unlabeled: usize,
    /// `I/N` for one shard; `None` for a whole run or a merge of all shards.
    pub shard: Option<String>,
    /// The model file or name.
    pub model: String,
    /// The dataset folder.
    pub data: String,
    /// Crops per model run and threads (not part of a merge's identity).
    pub batch: usize,
    pub threads: usize,
}

/// Accuracy on one class.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassAccuracy {
    pub index: usize,
    pub wnid: Option<String>,
    pub name: String,
    pub count: usize,
    pub top1: f64,
    pub top5: f64,
}

/// A (true class, predicted top-1 class) pair and how often it occurred.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Confusion {
    pub label: usize,
    pub label_name: String,
    pub predicted: usize,
    pub predicted_name: String,
    pub count: usize,
}

/// A whole validation report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub summary: Summary,
    /// Sorted by file.
    pub failed: Vec<Failure>,
    /// Images of a flat folder without ground truth, sorted.
    pub unlabeled: Vec<String>,
    /// Classes in index order.
    pub per_class: Vec<ClassAccuracy>,
    /// The most frequent top-1 mistakes, most frequent first.
    pub confused: Vec<Confusion>,
    /// Every scored image, sorted by file.
    pub images: Vec<ImageResult>,
}

/// What a run was, for the summary.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub model: String,
    pub data: String,
    pub crops: usize,
    pub batch: usize,
    pub threads: usize,
    pub shard: Option<String>,
    pub seconds: f64,
}

impl Report {
    /// Computes the metrics of scored `images` (any order; sorted here).
    pub fn new(
        mut images: Vec<ImageResult>,
        mut failed: Vec<Failure>,
        mut unlabeled: Vec<String>,
        labels: &Labels,
        info: RunInfo,
    ) -> Report {
        images.sort_by(|a, b| a.file.cmp(&b.file));
        failed.sort_by(|a, b| a.file.cmp(&b.file));
        unlabeled.sort();
        let count = images.len();
        let top1_correct = images.iter().filter(|r| r.top1_correct()).count();
        let top5_correct = images.iter().filter(|r| r.top5_correct()).count();
        let ratio = |n: usize| if count == 0 { 0.0 } else { n as f64 / count as f64 };
        let name = |i: usize| labels.get(i).map(|l| l.name.clone()).unwrap_or_else(|| format!("class {i}"));

        let mut classes: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new();
        let mut pairs: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for r in &images {
            let c = classes.entry(r.label).or_default();
            c.0 += 1;
            c.1 += usize::from(r.top1_correct());
            c.2 += usize::from(r.top5_correct());
            if let Some(&p) = r.top5.first() {
                if p != r.label {
                    *pairs.entry((r.label, p)).or_default() += 1;
                }
            }
        }
        let per_class = classes
            .iter()
            .map(|(&index, &(n, t1, t5))| ClassAccuracy {
                index,
                wnid: labels.get(index).and_then(|l| l.wnid.clone()),
                name: name(index),
                count: n,
                top1: t1 as f64 / n as f64,
                top5: t5 as f64 / n as f64,
            })
            .collect();
        let mut confused: Vec<((usize, usize), usize)> = pairs.into_iter().collect();
        // Most frequent first; ties in (label, predicted) order (the BTreeMap's, kept by the stable sort).
        confused.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let confused = confused
            .into_iter()
            .take(CONFUSED_PAIRS)
            .map(|((label, predicted), n)| Confusion {
                label,
                label_name: name(label),
                predicted,
                predicted_name: name(predicted),
                count: n,
            })
            .collect();
        let summary = Summary {
            top1: ratio(top1_correct),
            top5: ratio(top5_correct),
            count,
            failed: failed.len(),
            top1_correct,
            top5_correct,
            images_per_s: if info.seconds > 0.0 { count as f64 / info.seconds } else { 0.0 },
            seconds: info.seconds,
            crops: info.crops,
            classes: classes.len(),
            unlabeled: unlabeled.len(),
            shard: info.shard,
            model: info.model,
            data: info.data,
            batch: info.batch,
            threads: info.threads,
        };
        Report { summary, failed, unlabeled, per_class, confused, images }
    }

    /// The summary and the failed files as one JSON object (`resnet validate --json`).
    /// Fields in the order of [`Summary`] (`top1`, `top5`, `count`, `failed`, …), then `failed_files`.
    pub fn summary_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            summary: &'a Summary,
            failed_files: &'a [Failure],
        }
        serde_json::to_string(&Line { summary: &self.summary, failed_files: &self.failed })
            .expect("plain data serializes")
    }

    /// Writes the report: CSV (one row per image, failed images with their error) when the
    /// file name ends in `.csv`, JSON otherwise. Written to a temporary name and renamed, so
    /// an interrupted write never leaves half a report.
    pub fn write(&self, path: &Path, labels: &Labels) -> Result<(), Error> {
        let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let text = if is_csv {
            self.to_csv(labels)
        } else {
            serde_json::to_string_pretty(self).expect("plain data serializes") + "\n"
        };
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// One row per image: `file,label,wnid,correct_top1,correct_top5,top1..top5,p1..p5,error`.
    pub fn to_csv(&self, labels: &Labels) -> String {
        let wnid = |i: usize| labels.get(i).and_then(|l| l.wnid.clone()).unwrap_or_default();
        let mut out =
            String::from("file,label,wnid,correct_top1,correct_top5,top1,top2,top3,top4,top5,p1,p2,p3,p4,p5,error\n");
        for r in &self.images {
            let mut row = vec![
                csv_field(&r.file),
                r.label.to_string(),
                wnid(r.label),
                u8::from(r.top1_correct()).to_string(),
                u8::from(r.top5_correct()).to_string(),
            ];
            row.extend((0..5).map(|i| r.top5.get(i).map(|c| c.to_string()).unwrap_or_default()));
            row.extend((0..5).map(|i| r.probabilities.get(i).map(|p| p.to_string()).unwrap_or_default()));
            row.push(String::new());
            out.push_str(&row.join(","));
            out.push('\n');
        }
        for f in &self.failed {
            out.push_str(&format!("{},,,,,,,,,,,,,,,{}\n", csv_field(&f.file), csv_field(&f.error)));
        }
        out
    }

    /// Reads a JSON report written by [`Report::write`].
    pub fn read(path: &Path) -> Result<Report, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|e| Error::BadReport { path: path.to_path_buf(), detail: e.to_string() })
    }

    /// Combines shard reports (`--shard I/N` runs over the same data) into one report whose
    /// metrics are computed from all their images. Refuses reports of different models, data
    /// or crop counts, an image in two reports, and an incomplete or repeated set of shards.
    pub fn merge(reports: &[(String, Report)], labels: &Labels) -> Result<Report, Error> {
        let Some((first_name, first)) = reports.first() else {
            return Err(Error::Merge("no reports to merge".into()));
        };
        let s0 = &first.summary;
        let mut shard_count = None;
        let mut shards_seen = HashSet::new();
        for (name, r) in reports {
            let s = &r.summary;
            for (what, a, b) in [("model", &s0.model, &s.model), ("data", &s0.data, &s.data)] {
                if a != b {
                    return Err(Error::Merge(format!("{first_name} and {name} differ in {what}: '{a}' vs '{b}'")));
                }
            }
            if s.crops != s0.crops {
                return Err(Error::Merge(format!("{first_name} used {} crops, {name} {}", s0.crops, s.crops)));
            }
            let Some(shard) = &s.shard else {
                return Err(Error::Merge(format!("{name} is not a shard report (run with --shard I/N)")));
            };
            let parsed: super::Shard = shard.parse().map_err(|e| Error::Merge(format!("{name}: {e}")))?;
            if *shard_count.get_or_insert(parsed.count) != parsed.count {
                return Err(Error::Merge(format!(
                    "{name} is shard {shard}, but {first_name} is {}",
                    s0.shard.as_deref().unwrap_or("?")
                )));
            }
            if !shards_seen.insert(parsed.index) {
                return Err(Error::Merge(format!("shard {shard} is given twice (again in {name})")));
            }
        }
        let n = shard_count.unwrap_or(1);
        let missing: Vec<String> = (0..n).filter(|i| !shards_seen.contains(i)).map(|i| format!("{i}/{n}")).collect();
        if !missing.is_empty() {
            return Err(Error::Merge(format!("missing shard report(s) {}", missing.join(", "))));
        }
        let mut seen_files = HashSet::new();
        let (mut images, mut failed, mut unlabeled) = (Vec::new(), Vec::new(), Vec::new());
        for (name, r) in reports {
            for file in r.images.iter().map(|i| &i.file).chain(r.failed.iter().map(|f| &f.file)) {
                if !seen_files.insert(file.clone()) {
                    return Err(Error::Merge(format!("'{file}' appears in two reports (again in {name})")));
                }
            }
            images.extend(r.images.iter().cloned());
            failed.extend(r.failed.iter().cloned());
            unlabeled.extend(r.unlabeled.iter().cloned());
        }
        let seconds = reports.iter().map(|(_, r)| r.summary.seconds).fold(0.0, f64::max);
        let info = RunInfo {
            model: s0.model.clone(),
            data: s0.data.clone(),
            crops: s0.crops,
            batch: s0.batch,
            threads: s0.threads,
            shard: None,
            seconds,
        };
        let mut merged = Report::new(images, failed, unlabeled, labels, info);
        merged.summary.images_per_s = reports.iter().map(|(_, r)| r.summary.images_per_s).sum();
        Ok(merged)
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(file: &str, label: usize, top5: [usize; 5]) -> ImageResult {
        ImageResult { file: file.into(), label, top5: top5.to_vec(), probabilities: vec![0.5, 0.2, 0.1, 0.1, 0.1] }
    }

    fn info(shard: Option<&str>) -> RunInfo {
        RunInfo {
            model: "m".into(),
            data: "d".into(),
            crops: 1,
            batch: 8,
            threads: 2,
            shard: shard.map(String::from),
            seconds: 2.0,
        }
    }

    #[test]
    fn metrics_count_top1_top5_per_class_and_confusions() {
        let labels = Labels::imagenet();
        let images = vec![
            img("b", 1, [1, 2, 3, 4, 5]),
            img("a", 0, [3, 0, 4, 5, 6]),
            img("c", 0, [3, 4, 5, 6, 7]),
            img("d", 2, [2, 0, 1, 3, 4]),
        ];
        let r =
            Report::new(images, vec![Failure { file: "e".into(), error: "bad".into() }], vec![], &labels, info(None));
        assert_eq!((r.summary.count, r.summary.top1_correct, r.summary.top5_correct, r.summary.failed), (4, 2, 3, 1));
        assert_eq!((r.summary.top1, r.summary.top5), (0.5, 0.75));
        assert_eq!(r.summary.images_per_s, 2.0);
        assert_eq!(r.images[0].file, "a");
        assert_eq!(r.per_class.len(), 3);
        assert_eq!(
            (r.per_class[0].index, r.per_class[0].count, r.per_class[0].top1, r.per_class[0].top5),
            (0, 2, 0.0, 0.5)
        );
        assert_eq!(r.per_class[0].wnid.as_deref(), Some("n01440764"));
        assert_eq!((r.confused[0].label, r.confused[0].predicted, r.confused[0].count), (0, 3, 2));
        assert_eq!(r.confused.len(), 1);
        let csv = r.to_csv(&labels);
        assert_eq!(csv.lines().count(), 1 + 4 + 1);
        assert!(csv.lines().nth(1).unwrap().starts_with("a,0,n01440764,0,1,3,0,4,5,6,0.5,"));
        assert!(csv.ends_with("e,,,,,,,,,,,,,,,bad\n"));
    }

    #[test]
    fn merge_recomputes_from_images_and_refuses_incomplete_or_overlapping_shards() {
        let labels = Labels::imagenet();
        let all = vec![img("a", 0, [0, 1, 2, 3, 4]), img("b", 1, [0, 1, 2, 3, 4]), img("c", 2, [5, 6, 7, 8, 9])];
        let whole = Report::new(all.clone(), vec![], vec![], &labels, info(None));
        let s0 = Report::new(vec![all[0].clone(), all[2].clone()], vec![], vec![], &labels, info(Some("0/2")));
        let s1 = Report::new(vec![all[1].clone()], vec![], vec![], &labels, info(Some("1/2")));
        let merged = Report::merge(&[("s1".into(), s1.clone()), ("s0".into(), s0.clone())], &labels).unwrap();
        assert_eq!(merged.images, whole.images);
        assert_eq!(merged.per_class, whole.per_class);
        assert_eq!(merged.confused, whole.confused);
        assert_eq!(
            (merged.summary.top1, merged.summary.top5, merged.summary.count),
            (whole.summary.top1, whole.summary.top5, 3)
        );
        assert_eq!(merged.summary.shard, None);

        let missing = Report::merge(&[("s0".into(), s0.clone())], &labels).unwrap_err().to_string();
        assert!(missing.contains("missing shard report(s) 1/2"), "{missing}");
        let twice =
            Report::merge(&[("s0".into(), s0.clone()), ("x".into(), s0.clone())], &labels).unwrap_err().to_string();
        assert!(twice.contains("shard 0/2 is given twice"), "{twice}");
        let mut other = s1.clone();
        other.summary.model = "other".into();
        let differ = Report::merge(&[("s0".into(), s0), ("s1".into(), other)], &labels).unwrap_err().to_string();
        assert!(differ.contains("differ in model"), "{differ}");
        let unsharded = Report::merge(&[("w".into(), whole)], &labels).unwrap_err().to_string();
        assert!(unsharded.contains("not a shard report"), "{unsharded}");
    }

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
