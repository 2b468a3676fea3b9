//! Plots like the paper's: a metric against model size (log x), one line per family, ±1 standard
//! error bars, chance level dashed. A task's figure shows accuracy and loss side by side; the
//! grid shows one metric for every task. Each figure is drawn once per backend: SVG (text as
//! text, for the HTML report and papers) and PNG (for READMEs and chat), both with the same
//! embedded font, so they look the same on every machine.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub use crate::report::metric_label;
use crate::report::{Axis, MetricSeries, ModelPoint, ScalingReport, TaskScaling};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Family colours (matplotlib's tab10, which readers of the paper's plots know).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

const PANEL: (u32, u32) = (460, 340);

/// A rendered figure.
pub struct Figure {
    pub svg: String,
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// One panel: a metric of a task.
struct Panel<'a> {
    title: String,
    series: &'a MetricSeries,
    legend: bool,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("the embedded DejaVuSans.ttf does not parse");
        }
    });
}

/// A family's legend entry: its name and its verdict on this metric, or that it has one size
/// (a line is drawn per family only: two families are never joined).
fn family_label(family: &str, s: &MetricSeries) -> String {
    match s.verdicts.iter().find(|v| v.family == family) {
        Some(v) => format!("{family} ({})", v.verdict.trend.label()),
        None => format!("{family} (one size)"),
    }
}

/// The families' verdicts for a panel's title (the legend, on the first panel only, gives them too):
/// ` (Qwen2.5: inverse)`.
fn verdicts_note(s: &MetricSeries) -> String {
    let named: Vec<String> = s.verdicts.iter().map(|v| format!("{}: {}", v.family, v.verdict.trend.label())).collect();
    if named.is_empty() { String::new() } else { format!(" ({})", named.join("; ")) }
}

/// A task's figure: accuracy and loss (the paper's two views), or whatever metrics it has.
pub fn task_figure(report: &ScalingReport, task: &TaskScaling) -> Result<Figure, String> {
    let mut chosen: Vec<&MetricSeries> = ["acc", "loss"].iter().filter_map(|m| task.metric(m)).collect();
    if chosen.is_empty() {
        chosen = task.metrics.iter().take(2).collect();
    }
    let panels: Vec<Panel> = chosen
        .iter()
        .enumerate()
        .map(|(i, s)| Panel { title: format!("{}: {}{}", task.short_name(), s.metric, verdicts_note(s)), series: s, legend: i == 0 })
        .collect();
    render(&report.models, report.axis, &report.families(), &panels, panels.len().max(1))
}

/// Every task's `metric` in a grid (three to a row), as the paper's overview figure.
pub fn grid_figure(report: &ScalingReport, metric: &str) -> Result<Option<Figure>, String> {
    let panels: Vec<Panel> = report
        .tasks
        .iter()
        .filter_map(|t| t.metric(metric).map(|s| (t, s)))
        .enumerate()
        .map(|(i, (t, s))| Panel { title: format!("{}{}", t.short_name(), verdicts_note(s)), series: s, legend: i == 0 })
        .collect();
    if panels.is_empty() {
        return Ok(None);
    }
    render(&report.models, report.axis, &report.families(), &panels, panels.len().min(3)).map(Some)
}

fn render(models: &[ModelPoint], axis: Axis, families: &[(&str, Vec<usize>)], panels: &[Panel], cols: usize) -> Result<Figure, String> {
    register_font();
    let rows = panels.len().div_ceil(cols).max(1);
    let (width, height) = (PANEL.0 * cols as u32, PANEL.1 * rows as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        draw(&root, models, axis, families, panels, (rows, cols)).map_err(|e| format!("drawing the SVG: {e}"))?;
        root.present().map_err(|e| format!("drawing the SVG: {e}"))?;
    }
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&root, models, axis, families, panels, (rows, cols)).map_err(|e| format!("drawing the PNG: {e}"))?;
        root.present().map_err(|e| format!("drawing the PNG: {e}"))?;
    }
    Ok(Figure { svg, png: encode_png(&rgb, width, height)?, width, height })
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| format!("encoding the PNG: {e}"))?;
    writer.write_image_data(rgb).map_err(|e| format!("encoding the PNG: {e}"))?;
    writer.finish().map_err(|e| format!("encoding the PNG: {e}"))?;
    Ok(out)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    models: &[ModelPoint],
    axis: Axis,
    families: &[(&str, Vec<usize>)],
    panels: &[Panel],
    (rows, cols): (usize, usize),
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, cols));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, models, axis, families, panel)?;
    }
    Ok(())
}

/// Where the legend hides the least: the corner whose box (40% of the width, 35% of the height)
/// holds the fewest points and error-bar ends.
fn emptiest_corner(models: &[ModelPoint], s: &MetricSeries, (lx0, lx1): (f64, f64), (y0, y1): (f64, f64)) -> SeriesLabelPosition {
    let mut marks = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let fx = (m.size.ln() - lx0) / (lx1 - lx0);
        let v = s.values[i];
        let e = s.stderrs[i].unwrap_or(0.0);
        for y in [v - e, v, v + e] {
            marks.push((fx, (y - y0) / (y1 - y0)));
        }
    }
    if let Some(c) = s.chance {
        // The dashed line crosses the whole panel: it counts at both sides.
        marks.extend([(0.1, (c - y0) / (y1 - y0)), (0.9, (c - y0) / (y1 - y0))]);
    }
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let inside = |&(fx, fy): &(f64, f64), right: bool, upper: bool| {
        (if right { fx > 0.6 } else { fx < 0.4 }) && (if upper { fy > 0.65 } else { fy < 0.35 })
    };
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (pos, right, upper) in corners {
        let n = marks.iter().filter(|m| inside(m, right, upper)).count();
        if n < best.0 {
            best = (n, pos);
        }
    }
    best.1
}

/// The y range: accuracies on [0, 1] as in the paper; anything else fitted to its values, error
/// bars and chance level.
fn y_range(s: &MetricSeries) -> (f64, f64) {
    if s.metric.starts_with("acc") {
        return (0.0, 1.0);
    }
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (v, e) in s.values.iter().zip(&s.stderrs) {
        let e = e.unwrap_or(0.0);
        lo = lo.min(v - e);
        hi = hi.max(v + e);
    }
    if let Some(c) = s.chance {
        lo = lo.min(c);
        hi = hi.max(c);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if s.metric == "loss" {
        lo = lo.min(0.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (lo - if lo == 0.0 { 0.0 } else { pad }, hi + pad)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    models: &[ModelPoint],
    axis: Axis,
    families: &[(&str, Vec<usize>)],
    panel: &Panel,
) -> DrawResult<DB> {
    let s = panel.series;
    let (xmin, xmax) = models.iter().fold((f64::INFINITY, 0f64), |(lo, hi), m| (lo.min(m.size), hi.max(m.size)));
    // Half an e-fold of room on either side so the end points' markers and bars show.
    let (x0, x1) = (xmin / 1.6, xmax * 1.6);
    let (y0, y1) = y_range(s);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(38)
        .y_label_area_size(52)
        .build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(axis.label())
        .y_desc(metric_label(&s.metric))
        .x_label_formatter(&|x| axis.format(*x))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .x_labels(6)
        .y_labels(6)
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 11))
        .axis_desc_style(("sans-serif", 12))
        .draw()?;
    if let Some(c) = s.chance {
        chart
            .draw_series(DashedLineSeries::new(vec![(x0, c), (x1, c)], 6, 4, RGBColor(90, 90, 90).stroke_width(1)))?
            .label("chance")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(90, 90, 90).stroke_width(1)));
    }
    for (k, (family, members)) in families.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<(f64, f64)> = members.iter().map(|&i| (models[i].size, s.values[i])).filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(family_label(family, s))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(members.iter().filter_map(|&i| {
            let (v, e) = (s.values[i], s.stderrs[i]?);
            (v.is_finite() && e.is_finite()).then(|| ErrorBar::new_vertical(models[i].size, v - e, v, v + e, color.stroke_width(1), 8))
        }))?;
    }
    if panel.legend {
        chart
            .configure_series_labels()
            .position(emptiest_corner(models, s, (x0.ln(), x1.ln()), (y0, y1)))
            .label_font(("sans-serif", 11))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
    }
    Ok(())
}
