//! The per-epoch metrics log (JSON lines that survive a crash) and the training-curve plots
//! drawn from it (PNG with embedded-font text, SVG).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use resnet::train::plot::PLOT_SIZE;
use resnet::train::{plot_log, read_log, truncate_after, EpochRecord, MetricsError, MetricsLog, PlotError};

fn record(epoch: usize) -> EpochRecord {
    let e = epoch as f64;
    EpochRecord {
        epoch,
        train_loss: 2.3 / e,
        train_top1: 0.1 + 0.08 * e,
        val_top1: Some(0.05 + 0.07 * e),
        val_top5: Some(0.3 + 0.06 * e),
        val_loss: if epoch == 2 { None } else { Some(2.5 / e + 0.1) },
        lr: 0.01 * 0.1f64.powi((epoch / 3) as i32),
        seconds: 60.0 + 0.1 * e,
        images_per_sec: 512.0 / 3.0,
    }
}

fn write_log(path: &Path, epochs: std::ops::RangeInclusive<usize>) -> Vec<EpochRecord> {
    let mut log = MetricsLog::open(path, false).unwrap();
    let records: Vec<EpochRecord> = epochs.map(record).collect();
    for r in &records {
        log.append(r).unwrap();
    }
    records
}

#[test]
fn appended_records_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let records = write_log(&path, 1..=5);
    assert_eq!(read_log(&path).unwrap(), records);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5, "one line per epoch");
    assert!(text.lines().nth(1).unwrap().contains("\"val_loss\":null"), "{text}");

    // Reopening without append starts over; with append continues.
    let mut log = MetricsLog::open(&path, true).unwrap();
    log.append(&record(6)).unwrap();
    assert_eq!(read_log(&path).unwrap().len(), 6);
    MetricsLog::open(&path, false).unwrap();
    assert!(read_log(&path).unwrap().is_empty());
}

#[test]
fn a_cut_off_last_line_is_tolerated_and_repaired_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let records = write_log(&path, 1..=3);
    let full = serde_json::to_string(&record(4)).unwrap();
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&full.as_bytes()[..20]).unwrap();
    assert_eq!(read_log(&path).unwrap(), records, "the crash's partial line is ignored");

    let mut log = MetricsLog::open(&path, true).unwrap();
    log.append(&record(4)).unwrap();
    let after: Vec<usize> = read_log(&path).unwrap().iter().map(|r| r.epoch).collect();
    assert_eq!(after, vec![1, 2, 3, 4], "the next record starts on its own line");
}

#[test]
fn garbage_anywhere_but_a_cut_off_last_line_is_rejected_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let good = serde_json::to_string(&record(1)).unwrap();
    for (text, line) in [
        (format!("{good}\nnot json\n{good}\n"), 2),
        (format!("{good}\n{good}\n{{\"epoch\":3}}\n"), 3), // complete line, missing fields
        (format!("{good}\n{{\"epoch\": 2, \"train_lo\n"), 2), // cut-off line that is not the last
    ] {
        std::fs::write(&path, &text).unwrap();
        match read_log(&path) {
            Err(e @ MetricsError::BadLine { line: l, .. }) => {
                assert_eq!(l, line, "{text}");
                assert!(e.to_string().contains(&format!("metrics.jsonl:{line}:")), "{e}");
            }
            other => panic!("{text}: expected BadLine, got {other:?}"),
        }
    }
    match read_log(&dir.path().join("absent.jsonl")) {
        Err(MetricsError::Missing { .. }) => {}
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[test]
fn truncate_after_drops_the_epochs_a_resume_will_redo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let records = write_log(&path, 1..=6);
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"epoch\":7,").unwrap();
    assert_eq!(truncate_after(&path, 4).unwrap(), 4);
    assert_eq!(read_log(&path).unwrap(), records[..4].to_vec());
    let mut log = MetricsLog::open(&path, true).unwrap();
    log.append(&record(5)).unwrap();
    assert_eq!(read_log(&path).unwrap(), records[..5].to_vec());
    assert_eq!(truncate_after(&path, 0).unwrap(), 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(truncate_after(&path, 10).unwrap(), 0);
}

#[test]
fn png_plot_decodes_at_the_expected_size_with_the_series_colours_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("metrics.jsonl");
    write_log(&log, 1..=6);
    let out = dir.path().join("curves.png");
    plot_log(&log, &out).unwrap();
    let image = image::open(&out).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), PLOT_SIZE);

    let colours: HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    for (name, rgb) in [("train", [31, 119, 180]), ("val", [255, 127, 14]), ("val top-5", [44, 160, 44])] {
        assert!(colours.contains(&rgb), "no {name} series colour {rgb:?} in the plot");
    }
    assert!(colours.len() > 20, "only {} distinct colours", colours.len());
    // Anti-aliased glyph edges are the only mid-grey pixels: without text there are none.
    let grey = image.pixels().filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && (40..200).contains(&p.0[0])).count();
    assert!(grey > 500, "only {grey} anti-aliased grey pixels: is the text drawn?");
}

#[test]
fn a_single_epoch_still_plots() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("metrics.jsonl");
    write_log(&log, 1..=1);
    let out = dir.path().join("one.PNG");
    plot_log(&log, &out).unwrap();
    assert_eq!(image::open(&out).unwrap().to_rgb8().dimensions(), PLOT_SIZE);
}

#[test]
fn svg_plot_has_axis_titles_and_legend() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("metrics.jsonl");
    write_log(&log, 1..=4);
    let out = dir.path().join("curves.svg");
    plot_log(&log, &out).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    for text in [
        "epoch",
        "cross-entropy loss",
        "accuracy (%)",
        "train loss",
        "val loss",
        "train top-1",
        "val top-1",
        "val top-5",
    ] {
        // plotters writes each <text> element's content on a line of its own.
        assert!(svg.lines().any(|line| line.trim() == text), "the SVG lacks the text '{text}'");
    }
}

#[test]
fn empty_missing_and_unknown_format_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = dir.path().join("curves.png");
    match plot_log(&empty, &out) {
        Err(e @ PlotError::Empty { .. }) => assert!(e.to_string().contains("empty.jsonl"), "{e}"),
        other => panic!("expected Empty, got {other:?}"),
    }
    match plot_log(&dir.path().join("absent.jsonl"), &out) {
        Err(PlotError::Log(MetricsError::Missing { .. })) => {}
        other => panic!("expected Log(Missing), got {other:?}"),
    }
    write_log(&empty, 1..=2);
    match plot_log(&empty, &dir.path().join("curves.jpg")) {
        Err(e @ PlotError::Format { .. }) => assert!(e.to_string().contains(".png or .svg"), "{e}"),
        other => panic!("expected Format, got {other:?}"),
    }
    assert!(!out.exists(), "no plot may be written on error");
}
