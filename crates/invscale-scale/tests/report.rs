//! The report's renderings, inspected as a reader would see them: the plots are rasterised and
//! their pixels examined, the SVGs carry their axis labels as text, and the HTML page is opened
//! in headless Chromium (a real browser, Debian's `chromium`) and its screenshot examined.

use std::path::{Path, PathBuf};
use std::process::Command;

use invscale_scale::plot::{PALETTE, grid_figure, task_figure};
use invscale_scale::trend::SplitMix64;
use invscale_scale::{Axis, FlipDoc, MetricSeries, ModelPoint, Options, ScalingReport, TaskScaling, report_files};

/// Two families (three sizes and one), two tasks: one whose accuracy falls with size on
/// per-document data, one flat.
fn report() -> ScalingReport {
    let models = vec![
        ModelPoint { name: "tiny-125m".into(), family: "Tiny".into(), parameters: 125_000_000, size: 125e6, non_embedding_parameters: 0, scored_by: "in-process (f32)".into(), architecture: "llama".into(), tokenizer: "gpt2".into() },
        ModelPoint { name: "other-300m".into(), family: "Other".into(), parameters: 300_000_000, size: 300e6, non_embedding_parameters: 0, scored_by: "in-process (f32)".into(), architecture: "llama".into(), tokenizer: "gpt2".into() },
        ModelPoint { name: "tiny-1.3b".into(), family: "Tiny".into(), parameters: 1_300_000_000, size: 1.3e9, non_embedding_parameters: 0, scored_by: "in-process (f32)".into(), architecture: "llama".into(), tokenizer: "gpt2".into() },
        ModelPoint { name: "tiny-6.7b".into(), family: "Tiny".into(), parameters: 6_700_000_000, size: 6.7e9, non_embedding_parameters: 0, scored_by: "in-process (f32)".into(), architecture: "llama".into(), tokenizer: "gpt2".into() },
    ];
    let mut rng = SplitMix64::new(7);
    let n = 400;
    let task = |name: &str, p_right: &[f64], rng: &mut SplitMix64| {
        let acc: Vec<Vec<f64>> = p_right.iter().map(|&p| (0..n).map(|_| f64::from(u8::from(rng.unit() < p))).collect()).collect();
        let loss: Vec<Vec<f64>> = acc.iter().map(|a| a.iter().map(|&c| if c == 1.0 { 0.4 } else { 1.1 }).collect()).collect();
        let series = |metric: &str, per_doc: &Vec<Vec<f64>>, higher: bool, chance: f64| {
            let means: Vec<f64> = per_doc.iter().map(|d| d.iter().sum::<f64>() / n as f64).collect();
            let stderrs = per_doc
                .iter()
                .zip(&means)
                .map(|(d, m)| Some((d.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt() / (n as f64).sqrt()))
                .collect();
            MetricSeries::new(metric, higher, means, stderrs, Some(chance), &models, per_doc, Options { resamples: 300, ..Options::default() }, false)
        };
        TaskScaling {
            task: name.into(),
            documents: n,
            metrics: vec![series("acc", &acc, true, 0.5), series("loss", &loss, false, 2f64.ln())],
            flips_total: vec![("Tiny".into(), 1)],
            flips: vec![FlipDoc {
                family: "Tiny".into(),
                doc_id: 3,
                prompt: "Q: Is <b>this</b> & that \"quoted\"?\nA:".into(),
                classes: vec![" Yes".into(), " No".into()],
                gold: 1,
                correct: vec![true, false, false],
                loss_increase: 1.25,
            }],
        }
    };
    let tasks = vec![task("inverse_scaling_falls", &[0.85, 0.75, 0.55, 0.3], &mut rng), task("inverse_scaling_flat", &[0.6; 4], &mut rng)];
    let mut report = ScalingReport {
        command: "invscale scale --models a,b,c,d --tasks falls,flat".into(),
        axis: Axis::Parameters,
        models,
        bootstrap: Options { resamples: 300, ..Options::default() },
        tasks,
        skipped: vec![invscale_scale::Skipped { task: "inverse_scaling_sig_figs".into(), reason: "no data".into() }],
    };
    report.adjust();
    report
}

struct Image {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn decode_png(bytes: &[u8]) -> Image {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "colour image expected, got {:?}", info.color_type);
    let rgb = buf[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    Image { width: info.width, height: info.height, rgb }
}

/// Pixels within a small distance of `color` (anti-aliasing blends the edges).
fn count_near(img: &Image, color: [u8; 3]) -> usize {
    img.rgb.iter().filter(|p| p.iter().zip(color).all(|(a, b)| (i32::from(*a) - i32::from(b)).abs() <= 12)).count()
}

fn non_white_fraction(img: &Image) -> f64 {
    img.rgb.iter().filter(|p| p.iter().any(|&c| c < 235)).count() as f64 / img.rgb.len() as f64
}

fn rgb(c: plotters::style::RGBColor) -> [u8; 3] {
    [c.0, c.1, c.2]
}

#[test]
fn the_falling_task_is_called_inverse_and_the_flat_one_is_not() {
    // Per family: "Tiny" (three sizes) gets a verdict, "Other" (one model) none.
    let r = report();
    let acc = r.tasks[0].metric("acc").unwrap();
    assert_eq!(acc.verdicts.len(), 1, "{:?}", acc.verdicts);
    assert_eq!((acc.verdicts[0].family.as_str(), acc.verdicts[0].verdict.trend), ("Tiny", invscale_scale::Trend::Inverse));
    assert_eq!(acc.verdicts[0].members, vec![0, 2, 3]);
    assert_eq!(r.tasks[1].metric("acc").unwrap().verdicts[0].verdict.trend, invscale_scale::Trend::Flat);
    let summary = acc.summary(&r.models);
    assert!(summary.contains("inverse in 1 of 1 families (Tiny)") && summary.contains("one size only, so no trend: Other"), "{summary}");
    // The report's tests are adjusted together: 2 tasks x 2 metrics x (tau + curve where tried).
    let n = r.tests_adjusted();
    assert!((4..=8).contains(&n), "{n}");
    let v = &acc.verdicts[0].verdict;
    assert!(v.p_adjusted >= v.p_value && v.description.starts_with("accuracy falls with size"), "{v:?}");
}

#[test]
fn task_plot_renders_lines_markers_text_and_axis_labels() {
    let r = report();
    let fig = task_figure(&r, &r.tasks[0]).unwrap();
    // Two panels (accuracy, loss) side by side.
    assert_eq!((fig.width, fig.height), (920, 340));
    let img = decode_png(&fig.png);
    assert_eq!((img.width, img.height), (fig.width, fig.height));
    let ink = non_white_fraction(&img);
    assert!(ink > 0.03 && ink < 0.6, "fraction of non-white pixels {ink}: blank or flooded");
    // One line per family, in its colour; text and axes in dark grey/black.
    for (k, family) in ["Tiny", "Other"].iter().enumerate() {
        let n = count_near(&img, rgb(PALETTE[k]));
        assert!(n > 40, "family {family}: only {n} pixels of its colour");
    }
    assert!(img.rgb.iter().filter(|p| p.iter().all(|&c| c < 60)).count() > 500, "no text or axes drawn");
    // The SVG: text as text, axis descriptions and titles present.
    for needle in ["<svg", "parameters", "accuracy", "loss (nats)", "falls: acc", "Tiny (inverse)", "Other (one size)", "chance", "100M", "1B", "10B"] {
        assert!(fig.svg.contains(needle), "SVG lacks {needle:?}");
    }
}

#[test]
fn grid_has_a_panel_per_task() {
    let r = report();
    let fig = grid_figure(&r, "acc").unwrap().expect("tasks with accuracy");
    assert_eq!((fig.width, fig.height), (920, 340), "two tasks: one row of two");
    assert!(fig.svg.contains("falls") && fig.svg.contains("flat") && fig.svg.contains("Tiny (inverse)"));
    let img = decode_png(&fig.png);
    assert!(non_white_fraction(&img) > 0.03);
    assert!(grid_figure(&r, "brier_score").unwrap().is_none());
}

#[test]
fn report_files_and_their_contents() {
    let r = report();
    let files = report_files(&r, 5).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "scaling.json",
        "scaling.md",
        "report.html",
        "plots/inverse_scaling_falls.svg",
        "plots/inverse_scaling_falls.png",
        "plots/inverse_scaling_flat.png",
        "plots/grid_acc.svg",
        "plots/grid_acc.png",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let json: serde_json::Value = serde_json::from_slice(&files.iter().find(|(n, _)| n == "scaling.json").unwrap().1).unwrap();
    let t = &json["tasks"][0];
    // scaling.json's contract: every verdict an object with at least these fields.
    let verdicts = json["verdicts"].as_array().unwrap();
    for v in verdicts {
        for key in ["family", "task", "metric", "trend", "method", "interval", "p_value", "p_adjusted"] {
            assert!(!v[key].is_null(), "verdict lacks {key}: {v}");
        }
        assert!(["inverse", "positive", "u_shaped", "inverted_u", "flat"].contains(&v["trend"].as_str().unwrap()), "{v}");
    }
    let acc = verdicts.iter().find(|v| v["task"] == "inverse_scaling_falls" && v["metric"] == "acc").unwrap();
    assert_eq!((acc["family"].as_str(), acc["trend"].as_str()), (Some("Tiny"), Some("inverse")));
    assert_eq!(json["multiplicity"]["method"], "holm");
    assert!(t["summary"]["acc"].as_str().unwrap().contains("Other"));
    assert_eq!(t["models"][1]["family"], "Other");
    assert_eq!(t["chance"]["acc"], 0.5);
    assert_eq!(t["flips"][0]["classes"][1], " No");
    let html = String::from_utf8(files.iter().find(|(n, _)| n == "report.html").unwrap().1.clone()).unwrap();
    // Self-contained: nothing fetched, no scripts; the prompt's markup is shown, not obeyed.
    for banned in ["<script", "src=\"http", "href=\"http", "<link"] {
        assert!(!html.contains(banned), "report.html contains {banned}");
    }
    assert!(html.contains("Q: Is &lt;b&gt;this&lt;/b&gt; &amp; that &quot;quoted&quot;?"), "prompt not escaped");
    assert_eq!(html.matches("<svg").count(), 3, "grid + one figure per task, inline");
}

fn chromium() -> PathBuf {
    let candidates = std::env::var_os("INVSCALE_CHROMIUM").map(PathBuf::from).into_iter().chain(
        ["chromium", "chromium-browser", "google-chrome"].iter().filter_map(|name| {
            std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        }),
    );
    candidates.into_iter().next().unwrap_or_else(|| {
        panic!("this test opens the report in headless Chromium: `apt-get install chromium` (CI's .ci/run installs it), or set INVSCALE_CHROMIUM")
    })
}

fn headless(browser: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", browser.display()));
    assert!(out.status.success(), "{} failed: {}", browser.display(), String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let r = report();
    for (name, bytes) in report_files(&r, 5).unwrap() {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let url = format!("file://{}", dir.path().join("report.html").display());
    let profile = dir.path().join("profile");
    // The DOM the browser built: the page parsed whole, its figures inline.
    let dom = String::from_utf8(headless(&browser, &profile, &["--dump-dom", &url]).stdout).unwrap();
    assert!(dom.contains("<h1>Scaling report</h1>") && dom.contains("</html>"), "{dom:.400}");
    assert_eq!(dom.matches("<svg").count(), 3);
    // What a reader sees: the screenshot shows the figures (the families' colours) and text.
    let shot = dir.path().join("shot.png");
    headless(&browser, &profile, &["--window-size=1280,2200", &format!("--screenshot={}", shot.display()), &url]);
    let img = decode_png(&std::fs::read(&shot).unwrap());
    assert_eq!((img.width, img.height), (1280, 2200));
    let ink = non_white_fraction(&img);
    assert!(ink > 0.02, "the page rendered blank (non-white fraction {ink})");
    for (k, family) in ["Tiny", "Other"].iter().enumerate() {
        let n = count_near(&img, rgb(PALETTE[k]));
        assert!(n > 100, "family {family}'s line is not on screen ({n} pixels of its colour)");
    }
    // The verdict badge for inverse scaling (#c0392b) is on screen.
    assert!(count_near(&img, [0xc0, 0x39, 0x2b]) > 50, "no inverse-scaling badge rendered");
}

/// Checkpoints of one size (`@stepN`) give the metric's checkpoint-to-checkpoint noise; the
/// size stands on the line by its latest checkpoint, and a trend smaller than the noise is not
/// called (issue 23).
#[test]
fn checkpoints_of_one_size_set_the_noise_floor() {
    let point = |name: &str, size: f64| ModelPoint {
        name: name.into(),
        family: "P".into(),
        parameters: size as u64,
        size,
        non_embedding_parameters: 0,
        scored_by: "in-process (f32)".into(),
        architecture: "gptneox".into(),
        tokenizer: "gpt2".into(),
    };
    let n = 4000;
    let mut rng = SplitMix64::new(5);
    let difficulty: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
    let mut docs = |p: f64| -> Vec<f64> { difficulty.iter().map(|&u| f64::from(u8::from(0.7 * u + 0.3 * rng.unit() < p))).collect() };
    // Sorted by size as a report is; the 410M size three times, its latest checkpoint listed first.
    let models = vec![
        point("p-160m", 1.6e8),
        point("p-410m@step143000", 4.1e8),
        point("p-410m@step141000", 4.1e8),
        point("p-410m@step142000", 4.1e8),
        point("p-1b", 1.0e9),
    ];
    let per_doc = vec![docs(0.62), docs(0.58), docs(0.46), docs(0.72), docs(0.54)];
    let means: Vec<f64> = per_doc.iter().map(|d| d.iter().sum::<f64>() / n as f64).collect();
    let series = |models: &[ModelPoint], per_doc: &[Vec<f64>]| {
        let values = per_doc.iter().map(|d| d.iter().sum::<f64>() / n as f64).collect();
        let mut r = ScalingReport {
            command: String::new(),
            axis: Axis::Parameters,
            models: models.to_vec(),
            bootstrap: Options { resamples: 1000, ..Options::default() },
            tasks: vec![TaskScaling {
                task: "t".into(),
                documents: n,
                metrics: vec![MetricSeries::new("acc", true, values, vec![None; models.len()], None, models, per_doc, Options { resamples: 1000, ..Options::default() }, false)],
                flips_total: Vec::new(),
                flips: Vec::new(),
            }],
            skipped: Vec::new(),
        };
        r.adjust();
        r.tasks[0].metrics[0].verdicts[0].clone()
    };
    let noisy = series(&models, &per_doc);
    assert_eq!(noisy.members, vec![0, 1, 4], "the latest 410M checkpoint stands for its size");
    // The sample standard deviation of the three 410M checkpoints' means.
    let m = (means[1] + means[2] + means[3]) / 3.0;
    let sd = (((means[1] - m).powi(2) + (means[2] - m).powi(2) + (means[3] - m).powi(2)) / 2.0).sqrt();
    assert!((noisy.noise_floor.unwrap() - sd).abs() < 1e-12, "{:?} vs {sd}", noisy.noise_floor);
    assert_eq!(noisy.verdict.trend, invscale_scale::Trend::Flat, "{:?}", noisy.verdict);
    assert!(noisy.verdict.evidence.contains("below the checkpoint noise"), "{}", noisy.verdict.evidence);
    // Without the other checkpoints the same line (0.62, 0.58, 0.54 on 4000 documents) is a trend.
    let line = [0usize, 1, 4];
    let clean = series(&line.map(|i| models[i].clone()), &line.map(|i| per_doc[i].clone()));
    assert_eq!((clean.noise_floor, clean.verdict.trend), (None, invscale_scale::Trend::Inverse), "{:?}", clean.verdict);
}
