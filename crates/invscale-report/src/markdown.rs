//! lm-eval's results table (`make_table`, drawn by pytablewriter): same columns, alignment and
//! `%.4f` values, so tables from both tools can be diffed and pasted side by side.

use invscale_eval::Aggregate;
use invscale_tasks::spec::Metric;

use crate::GroupReport;

/// One table line before layout.
pub struct Row {
    pub name: String,
    pub version: String,
    pub metric: Metric,
    pub agg: Aggregate,
}

const HEADERS: [&str; 9] = ["Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"];
const GROUP_HEADERS: [&str; 9] = ["Groups", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"];
/// Right-aligned (numeric) columns.
const RIGHT: [bool; 9] = [false, true, false, true, false, false, true, false, true];

/// Python's `str.center`.
fn center(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if len >= width {
        return s.to_string();
    }
    let pad = width - len;
    let left = pad / 2 + (pad & width & 1);
    format!("{}{s}{}", " ".repeat(left), " ".repeat(pad - left))
}

fn cells(rows: &[Row]) -> Vec<[String; 9]> {
    let mut out = Vec::new();
    let mut last_name = None;
    for r in rows {
        let first = last_name != Some(&r.name);
        last_name = Some(&r.name);
        let arrow = if crate::results::higher_is_better(r.metric) { "↑" } else { "↓" };
        let value = if r.agg.value.is_nan() { "N/A".to_string() } else { format!("{:.4}", r.agg.value) };
        let stderr = r.agg.stderr.map_or("N/A".to_string(), |s| format!("{s:.4}"));
        out.push([
            if first { r.name.clone() } else { String::new() },
            if first { r.version.clone() } else { String::new() },
            "none".into(),
            "0".into(),
            r.metric.as_str().into(),
            arrow.into(),
            value,
            "±".into(),
            stderr,
        ]);
    }
    out
}

/// The table, in pytablewriter's layout (widths at least 3, headers centred).
pub fn table(rows: &[Row]) -> String {
    layout(&HEADERS, rows)
}

fn layout(headers: &[&str; 9], rows: &[Row]) -> String {
    let body = cells(rows);
    let mut widths = [3usize; 9];
    for (i, h) in headers.iter().enumerate() {
        widths[i] = widths[i].max(h.chars().count());
        for row in &body {
            widths[i] = widths[i].max(row[i].chars().count());
        }
    }
    let line = |cells: Vec<String>| format!("|{}|\n", cells.join("|"));
    let mut out = line(headers.iter().zip(widths).map(|(h, w)| center(h, w)).collect());
    out += &line(widths.iter().zip(RIGHT).map(|(&w, right)| if right { format!("{}:", "-".repeat(w - 1)) } else { "-".repeat(w) }).collect());
    for row in &body {
        out += &line(
            row.iter()
                .zip(widths)
                .zip(RIGHT)
                .map(|((c, w), right)| {
                    let pad = " ".repeat(w - c.chars().count());
                    if right { format!("{pad}{c}") } else { format!("{c}{pad}") }
                })
                .collect(),
        );
    }
    out
}

/// The group table lm-eval prints under the tasks' table.
pub fn group_table(groups: &[GroupReport]) -> String {
    let rows: Vec<Row> = groups
        .iter()
        .flat_map(|g| g.metrics.iter().map(|(m, agg)| Row { name: g.name.clone(), version: "N/A".into(), metric: *m, agg: *agg }))
        .collect();
    layout(&GROUP_HEADERS, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_layout_as_lm_eval() {
        // Printed by lm_eval 0.4.13 (`--limit 3` on SmolLM2-135M), first rows.
        let expected = "\
|                   Tasks                    |Version|Filter|n-shot| Metric |   |Value |   |Stderr|
|--------------------------------------------|------:|------|-----:|--------|---|-----:|---|-----:|
|ref_inverse_scaling_hindsight_neglect_10shot|      0|none  |     0|acc     |↑  |0.0000|±  |0.0000|
|                                            |       |none  |     0|acc_norm|↑  |0.0000|±  |0.0000|
|ref_inverse_scaling_neqa                    |      0|none  |     0|acc     |↑  |0.3333|±  |0.3333|
";
        let agg = |value, stderr| Aggregate { value, stderr: Some(stderr), n: 3 };
        let rows = vec![
            Row { name: "ref_inverse_scaling_hindsight_neglect_10shot".into(), version: "0".into(), metric: Metric::Acc, agg: agg(0.0, 0.0) },
            Row { name: "ref_inverse_scaling_hindsight_neglect_10shot".into(), version: "0".into(), metric: Metric::AccNorm, agg: agg(0.0, 0.0) },
            Row { name: "ref_inverse_scaling_neqa".into(), version: "0".into(), metric: Metric::Acc, agg: agg(1.0 / 3.0, 0.33333333333333337) },
        ];
        assert_eq!(table(&rows), expected);
    }

    #[test]
    fn python_center() {
        assert_eq!(center("Tasks", 44).find('T'), Some(19));
        assert_eq!(center("Metric", 8), " Metric ");
        assert_eq!(center("Value", 6), "Value ");
        assert_eq!(center("ab", 5), "  ab ");
    }
}
