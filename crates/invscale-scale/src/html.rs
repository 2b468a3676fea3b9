//! The scaling report as one HTML file: plots (inline SVG), tables, verdicts with their evidence,
//! and the documents that flip. No scripts, no external resources: it opens offline, and can be
//! mailed or attached to a paper's supplement as it is.

use crate::plot::{Figure, metric_label};
use crate::report::{ScalingReport, TaskScaling};
use crate::trend::Trend;

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; margin: 2rem auto; max-width: 1400px; padding: 0 1rem; color: #1d1d1f; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.4rem 0.8rem; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
code, pre { font-family: 'DejaVu Sans Mono', ui-monospace, monospace; font-size: 0.85rem; }
pre { background: #f6f6f6; padding: 0.6rem; white-space: pre-wrap; word-break: break-word; max-height: 14rem; overflow: auto; }
table { border-collapse: collapse; margin: 0.8rem 0; } th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
.trend { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 0.7rem; font-size: 0.85rem; font-weight: 600; color: #fff; }
.inverse { background: #c0392b; } .positive { background: #27864a; } .u_shaped { background: #b9770e; }
.inverted_u { background: #7d3c98; } .flat { background: #7f8c8d; }
.evidence { color: #444; } .note { color: #555; font-size: 0.9rem; }
.right { color: #27864a; font-weight: 600; } .wrong { color: #c0392b; font-weight: 600; }
ol.flips > li { margin-bottom: 1rem; } .gold { font-weight: 700; text-decoration: underline; }
";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn trend_class(t: Trend) -> &'static str {
    match t {
        Trend::Inverse => "inverse",
        Trend::Positive => "positive",
        Trend::UShaped => "u_shaped",
        Trend::InvertedU => "inverted_u",
        Trend::Flat => "flat",
    }
}

fn badge(t: Trend) -> String {
    format!("<span class=\"trend {}\">{}</span>", trend_class(t), escape(t.label()))
}

/// The SVG of a figure, ready to sit inline (plotters writes a standalone document).
fn inline_svg(figure: &Figure, label: &str) -> String {
    let body = figure.svg.trim_start_matches(|c| c != '<');
    let body = body.strip_prefix("<?xml").map_or(body, |rest| rest.split_once("?>").map_or(rest, |(_, b)| b.trim_start()));
    let body = body.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{}\" ", escape(label)), 1);
    format!("<figure>{body}</figure>")
}

/// `figures[t]` is task t's figure; `grid` the overview of every task's accuracy.
pub fn render(report: &ScalingReport, grid: Option<&Figure>, figures: &[Figure], flips_shown: usize) -> String {
    let mut h = String::new();
    h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    h += "<title>invscale scaling report</title>\n<style>";
    h += STYLE;
    h += "</style>\n</head>\n<body>\n<h1>Scaling report</h1>\n";
    h += &format!("<p class=\"note\">Made by <code>{}</code></p>\n", escape(&report.command));

    h += "<h2 id=\"models\">Models</h2>\n<table><tr><th>model</th><th>family</th><th>parameters</th>";
    if report.axis != crate::report::Axis::Parameters {
        h += &format!("<th>{}</th>", escape(report.axis.label()));
    }
    h += "</tr>\n";
    for m in &report.models {
        h += &format!("<tr><td>{}</td><td>{}</td><td>{}</td>", escape(&m.name), escape(&m.family), crate::trend::human_params(m.parameters as f64));
        if report.axis != crate::report::Axis::Parameters {
            h += &format!("<td>{}</td>", report.axis.format(m.size));
        }
        h += "</tr>\n";
    }
    h += "</table>\n";

    for w in report.warnings() {
        h += &format!("<p class=\"warning\">warning: {}</p>\n", escape(&w));
    }
    h += "<h2 id=\"verdicts\">Verdicts</h2>\n<table><tr><th>task</th><th>metric</th><th>family</th><th>trend</th><th>p (Holm-adjusted)</th><th>evidence</th></tr>\n";
    for (t, s, v) in report.verdict_rows() {
        let d = &v.verdict;
        h += &format!(
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{:.4} ({:.4})</td><td class=\"evidence\">{}</td></tr>\n",
            escape(&t.task),
            escape(t.short_name()),
            escape(&s.metric),
            escape(&v.family),
            badge(d.trend),
            d.p_value,
            d.p_adjusted,
            escape(&d.description)
        );
    }
    h += "</table>\n";
    h += &format!(
        "<p class=\"note\">Verdicts are per family: models of different families are never one trend. Each comes from a paired \
bootstrap over documents ({} resamples, {:.0}% intervals): a monotone trend by Kendall's tau of size against the metric on each \
resample, a U or inverted-U by the two-lines test (Simonsohn 2018: both slopes either side of the interior extreme significant, \
with opposite signs). The report's {} tests are Holm-adjusted together and called at {:.2}; everything else is flat / \
inconclusive. A family with one size gets no trend.</p>\n",
        report.bootstrap.resamples,
        report.bootstrap.level * 100.0,
        report.tests_adjusted(),
        report.bootstrap.alpha()
    );
    if let Some(g) = grid {
        h += "<h2 id=\"overview\">Accuracy on every task</h2>\n";
        h += &inline_svg(g, "accuracy against size, every task");
    }
    for (t, fig) in report.tasks.iter().zip(figures) {
        h += &task_section(report, t, fig, flips_shown);
    }
    if !report.skipped.is_empty() {
        h += "<h2 id=\"skipped\">Skipped</h2>\n<ul>\n";
        for s in &report.skipped {
            h += &format!("<li><code>{}</code>: {}</li>\n", escape(&s.task), escape(&s.reason));
        }
        h += "</ul>\n";
    }
    h += "</body>\n</html>\n";
    h
}

fn task_section(report: &ScalingReport, t: &TaskScaling, fig: &Figure, flips_shown: usize) -> String {
    let mut h = format!("<section id=\"{}\">\n<h2>{} <small>({} documents)</small></h2>\n", escape(&t.task), escape(&t.task), t.documents);
    h += &inline_svg(fig, &format!("{} against size", t.task));
    h += "<table><tr><th>model</th>";
    for s in &t.metrics {
        h += &format!("<th>{}</th>", escape(metric_label(&s.metric)));
    }
    h += "</tr>\n";
    for (i, m) in report.models.iter().enumerate() {
        h += &format!("<tr><td>{}</td>", escape(&m.name));
        for s in &t.metrics {
            h += &format!("<td>{:.4} ± {:.4}</td>", s.values[i], s.stderrs[i].unwrap_or(f64::NAN));
        }
        h += "</tr>\n";
    }
    if t.metrics.iter().any(|s| s.chance.is_some()) {
        h += "<tr><td><em>chance</em></td>";
        for s in &t.metrics {
            h += &s.chance.map_or("<td></td>".to_string(), |c| format!("<td>{c:.4}</td>"));
        }
        h += "</tr>\n";
    }
    h += "</table>\n<ul>\n";
    for s in &t.metrics {
        h += &format!("<li><strong>{}</strong>: {}<ul>\n", escape(&s.metric), escape(&s.summary(&report.models)));
        for v in &s.verdicts {
            let d = &v.verdict;
            h += &format!(
                "<li>{}: {} {} — <span class=\"evidence\">{}</span></li>\n",
                escape(&v.family),
                badge(d.trend),
                escape(&d.description),
                escape(&d.evidence)
            );
        }
        h += "</ul></li>\n";
    }
    h += "</ul>\n";
    for (family, n) in &t.flips_total {
        h += &format!("<h3>{}: right at its smallest model and wrong at its largest: {} document(s)</h3>\n", escape(family), n);
    }
    if !t.flips.is_empty() {
        h += "<p class=\"note\">Ranked by how far the largest model moved away from the gold answer (rise in its loss).</p>\n<ol class=\"flips\">\n";
        for f in t.flips.iter().take(flips_shown) {
            h += &format!("<li>doc {} — loss +{:.2} nats; ", f.doc_id, f.loss_increase);
            let members = report.families().into_iter().find(|(fam, _)| *fam == f.family).map_or(Vec::new(), |(_, m)| m);
            h += &format!("{}: ", escape(&f.family));
            for (m, ok) in members.iter().map(|&i| &report.models[i]).zip(&f.correct) {
                h += &format!(
                    "{} <span class=\"{}\">{}</span> ",
                    escape(&m.name),
                    if *ok { "right" } else { "wrong" },
                    if *ok { "✓" } else { "✗" }
                );
            }
            h += "<br>classes: ";
            let classes: Vec<String> = f
                .classes
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let text = escape(&format!("{c:?}"));
                    if i == f.gold { format!("<code class=\"gold\">{text}</code> (gold)") } else { format!("<code>{text}</code>") }
                })
                .collect();
            h += &classes.join(", ");
            h += &format!("<pre>{}</pre></li>\n", escape(&f.prompt));
        }
        h += "</ol>\n";
    }
    h += "</section>\n";
    h
}
