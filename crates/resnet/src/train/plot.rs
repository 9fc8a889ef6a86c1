//! Training curves from a metrics log: a loss panel (train and validation cross-entropy) beside
//! an accuracy panel (train top-1, validation top-1 and top-5, in %), as PNG or SVG.
//!
//! Text is drawn with plotters' `ab_glyph` backend and a font compiled into the binary (a
//! Latin-1 subset of DejaVu Sans, 17 KB, `crates/resnet/assets/`), so no fontconfig or
//! freetype C library is needed and every machine draws the same pixels. The PNG is encoded
//! by the `image` crate the vision code already uses.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::checkpoint::write_atomically;
use super::metrics::{read_log, EpochRecord, MetricsError};

/// Size of the whole figure in pixels (both panels).
pub const PLOT_SIZE: (u32, u32) = (1200, 480);

/// DejaVu Sans, Latin-1 subset (licence: `crates/resnet/assets/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");

/// The font family every text element asks for; [`FONT`] is registered under it.
const FAMILY: &str = "sans-serif";

/// Series colours: matplotlib's tab10 blue, orange and green.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const VAL_TOP5: RGBColor = RGBColor(44, 160, 44);

/// Why a plot could not be made; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Log(#[from] MetricsError),
    #[error("{}: the log has no epoch records yet", path.display())]
    Empty { path: PathBuf },
    #[error("{}: unknown plot format (the name must end in .png or .svg)", path.display())]
    Format { path: PathBuf },
    #[error("{}: drawing the plot failed: {detail}", path.display())]
    Draw { path: PathBuf, detail: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the embedded plot font could not be loaded")]
    Font,
}

/// Reads the metrics log at `log` and writes its training curves to `out`: PNG when the name
/// ends in `.png`, SVG for `.svg` (case-insensitive), [`PLOT_SIZE`] pixels. The file is
/// replaced atomically.
pub fn plot_log(log: &Path, out: &Path) -> Result<(), PlotError> {
    let extension = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let png = match extension.as_deref() {
        Some("png") => true,
        Some("svg") => false,
        _ => return Err(PlotError::Format { path: out.to_path_buf() }),
    };
    let records = read_log(log)?;
    if records.is_empty() {
        return Err(PlotError::Empty { path: log.to_path_buf() });
    }
    register_font()?;
    let draw_err = |detail: String| PlotError::Draw { path: out.to_path_buf(), detail };
    let (width, height) = PLOT_SIZE;
    let written = if png {
        let mut pixels = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, PLOT_SIZE).into_drawing_area();
            draw(&root, &records).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.to_string()))?;
        }
        write_atomically(out, |file| {
            image::codecs::png::PngEncoder::new(file)
                .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
                .map_err(io::Error::other)
        })
    } else {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
            draw(&root, &records).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.to_string()))?;
        }
        write_atomically(out, |file| file.write_all(svg.as_bytes()))
    };
    written.map_err(|source| PlotError::Io { path: out.to_path_buf(), source })
}

/// Registers [`FONT`] with plotters once per process.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// One line of a panel: its legend label, colour and points.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(i64, f64)>,
}

impl Series {
    fn new(
        records: &[EpochRecord],
        label: &'static str,
        color: RGBColor,
        value: impl Fn(&EpochRecord) -> Option<f64>,
    ) -> Series {
        let points =
            records.iter().filter_map(|r| value(r).filter(|v| v.is_finite()).map(|v| (r.epoch as i64, v))).collect();
        Series { label, color, points }
    }
}

/// One chart of the figure.
struct Panel {
    title: &'static str,
    y_title: &'static str,
    y_range: Range<f64>,
    /// Where the legend goes: loss falls and accuracy rises, so not where the curves are.
    legend: SeriesLabelPosition,
    /// Tick label format of the y axis.
    y_labels: fn(&f64) -> String,
    series: Vec<Series>,
}

/// A tick label with at most three decimals and no trailing zeros (ticks fall at steps such as
/// 0.05, which one decimal would print twice).
fn short_decimal(v: &f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Both panels on `root`; errors as text (they come from the backend).
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, records: &[EpochRecord]) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (loss_area, accuracy_area) = root.split_horizontally(PLOT_SIZE.0 / 2);
    let loss = vec![
        Series::new(records, "train loss", TRAIN, |r| Some(r.train_loss)),
        Series::new(records, "val loss", VAL, |r| r.val_loss),
    ];
    let top = loss.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let loss = Panel {
        title: "Loss",
        y_title: "cross-entropy loss",
        y_range: 0.0..if top > 0.0 { top * 1.1 } else { 1.0 },
        legend: SeriesLabelPosition::UpperRight,
        y_labels: short_decimal,
        series: loss,
    };
    draw_panel(&loss_area, records, &loss)?;

    let percent = |v: Option<f64>| v.map(|v| 100.0 * v);
    let accuracy = Panel {
        title: "Accuracy",
        y_title: "accuracy (%)",
        y_range: 0.0..100.0,
        legend: SeriesLabelPosition::LowerRight,
        y_labels: |v| format!("{v:.0}"),
        series: vec![
            Series::new(records, "train top-1", TRAIN, |r| percent(Some(r.train_top1))),
            Series::new(records, "val top-1", VAL, |r| percent(r.val_top1)),
            Series::new(records, "val top-5", VAL_TOP5, |r| percent(r.val_top5)),
        ],
    };
    draw_panel(&accuracy_area, records, &accuracy)
}

/// One panel on `area`: epochs across, each non-empty series as a line with markers, and a
/// legend.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    records: &[EpochRecord],
    panel: &Panel,
) -> Result<(), String> {
    let first = records.iter().map(|r| r.epoch as i64).min().unwrap_or(0);
    let last = records.iter().map(|r| r.epoch as i64).max().unwrap_or(0);
    // One epoch alone would make an empty range: widen it by one on each side.
    let x_range = if first == last { first - 1..last + 1 } else { first..last };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FAMILY, 24))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, panel.y_range.clone())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(panel.y_title)
        .y_label_formatter(&panel.y_labels)
        .axis_desc_style((FAMILY, 16))
        .label_style((FAMILY, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    for s in panel.series.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)).point_size(3))
            .map_err(|e| e.to_string())?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}
