//! Scaling analysis: how a task's metrics move across models of increasing size, with trend
//! verdicts that carry their evidence, and the documents where inverse scaling happens; rendered
//! as JSON, markdown, plots (SVG and PNG) and a self-contained HTML report.

pub mod flips;
pub mod html;
pub mod plot;
pub mod report;
pub mod trend;

pub use report::{Axis, FamilyVerdict, FlipDoc, MetricSeries, ModelPoint, ScalingReport, Skipped, TaskScaling};
pub use trend::{Options, Tests, Trend, Verdict, analyse, classify, decide_all, holm};

/// Every file of a report, as (path relative to the output folder, contents): `scaling.json`,
/// `scaling.md`, `report.html`, and under `plots/` each task's figure and the accuracy grid as
/// `.svg` and `.png`.
pub fn report_files(report: &ScalingReport, flips_shown: usize) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    let json = serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?;
    files.push(("scaling.json".to_string(), format!("{json}\n").into_bytes()));
    files.push(("scaling.md".to_string(), format!("# Scaling\n\n{}", report.to_markdown(flips_shown)).into_bytes()));
    let mut figures = Vec::new();
    for task in &report.tasks {
        let fig = plot::task_figure(report, task)?;
        files.push((format!("plots/{}.svg", task.task), fig.svg.clone().into_bytes()));
        files.push((format!("plots/{}.png", task.task), fig.png.clone()));
        figures.push(fig);
    }
    let grid = plot::grid_figure(report, "acc")?;
    if let Some(g) = &grid {
        files.push(("plots/grid_acc.svg".to_string(), g.svg.clone().into_bytes()));
        files.push(("plots/grid_acc.png".to_string(), g.png.clone()));
    }
    files.push(("report.html".to_string(), html::render(report, grid.as_ref(), &figures, flips_shown).into_bytes()));
    Ok(files)
}
