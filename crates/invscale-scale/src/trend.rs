//! Trend verdicts with uncertainty: is a metric getting worse with size (inverse scaling),
//! better, flat, U-shaped or inverted-U?
//!
//! The evidence is a paired bootstrap over documents: every model answered the same documents,
//! so each resample draws documents once and recomputes every model's mean on them. From each
//! resample: the slope of performance against ln(parameters) (least squares), and with ≥ 3 sizes
//! the curvature (quadratic coefficient) and its vertex. A trend is called only when its interval
//! excludes zero; a curved trend only when the curvature's interval excludes zero *and* the
//! vertex lies inside the range of sizes (otherwise it is a monotonic trend that bends).
//! Everything else is "flat / inconclusive": differences inside the noise are never a trend.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// Performance falls with size.
    Inverse,
    /// Performance rises with size (normal scaling).
    Positive,
    /// Performance falls, then rises.
    UShaped,
    /// Performance rises, then falls.
    InvertedU,
    /// No trend distinguishable from noise at the chosen level.
    Flat,
}

impl Trend {
    pub fn label(self) -> &'static str {
        match self {
            Trend::Inverse => "inverse",
            Trend::Positive => "positive",
            Trend::UShaped => "U-shaped",
            Trend::InvertedU => "inverted-U",
            Trend::Flat => "flat / inconclusive",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub trend: Trend,
    /// For a trend: the fraction of bootstrap resamples that, on their own, show it. For flat:
    /// how evenly the resamples' slopes split between up and down (1 = perfectly even).
    pub confidence: f64,
    /// Per model, in order of size: the metric's mean.
    pub means: Vec<f64>,
    /// Change of the metric per e-fold of parameters (in the metric's own direction), with its
    /// bootstrap interval.
    pub slope: f64,
    pub slope_interval: (f64, f64),
    /// Quadratic coefficient against ln(parameters) (≥ 3 sizes), its interval, and where the
    /// fitted curve turns (parameters).
    pub curvature: Option<f64>,
    pub curvature_interval: Option<(f64, f64)>,
    pub vertex_params: Option<f64>,
    /// One sentence a reader can check.
    pub evidence: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub resamples: usize,
    /// Two-sided level of the intervals (0.95).
    pub level: f64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { resamples: 2000, level: 0.95, seed: 1234 }
    }
}

impl Options {
    /// Whether the intervals these options give mean anything; `Err` names the flag at fault.
    pub fn check(&self) -> Result<(), String> {
        if !(0.5..1.0).contains(&self.level) {
            return Err(format!("--level {} must be in [0.5, 1)", self.level));
        }
        if self.resamples < 100 {
            return Err(format!("--resamples {}: at least 100 are needed for a 95% interval", self.resamples));
        }
        Ok(())
    }
}

/// A small, fast, well-mixed generator (SplitMix64): resamples are reproducible from the seed.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Least-squares polynomial fit of degree 1 or 2; returns coefficients low to high.
fn polyfit(x: &[f64], y: &[f64], degree: usize) -> Option<Vec<f64>> {
    let n = degree + 1;
    // Normal equations, solved by Gaussian elimination with partial pivoting (n ≤ 3).
    let mut a = vec![vec![0.0; n + 1]; n];
    for (&xi, &yi) in x.iter().zip(y) {
        let powers: Vec<f64> = (0..2 * n).map(|k| xi.powi(k as i32)).collect();
        for r in 0..n {
            for c in 0..n {
                a[r][c] += powers[r + c];
            }
            a[r][n] += yi * powers[r];
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        for r in 0..n {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in col..=n {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
    }
    Some((0..n).map(|i| a[i][n] / a[i][i]).collect())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(mut v: Vec<f64>, level: f64) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (quantile(&v, tail), quantile(&v, 1.0 - tail))
}

/// The trend one set of means shows, judged on its own (for the confidence count).
fn shape(x: &[f64], perf: &[f64]) -> (f64, Option<(f64, f64)>) {
    let slope = polyfit(x, perf, 1).map_or(0.0, |c| c[1]);
    let curve = (x.len() >= 3).then(|| polyfit(x, perf, 2)).flatten().map(|c| (c[2], -c[1] / (2.0 * c[2])));
    (slope, curve)
}

/// `1.3B`, `350M`: sizes as papers write them.
pub fn human_params(p: f64) -> String {
    match p {
        p if p >= 1e12 => format!("{:.1}T", p / 1e12),
        p if p >= 1e9 => format!("{:.1}B", p / 1e9),
        p if p >= 1e6 => format!("{:.0}M", p / 1e6),
        p => format!("{p:.0}"),
    }
}

/// Classifies the trend of a metric across models.
///
/// `params[m]`: model m's size (ascending or not: sorted here); `values[m][d]`: the metric on
/// document d for model m (the same documents, in the same order, for every model);
/// `higher_is_better` orients it (loss: false).
pub fn classify(params: &[f64], values: &[Vec<f64>], higher_is_better: bool, opts: Options) -> Verdict {
    assert_eq!(params.len(), values.len());
    assert!(params.len() >= 2, "a trend needs at least two model sizes");
    let n_docs = values[0].len();
    assert!(values.iter().all(|v| v.len() == n_docs), "every model must answer the same documents");
    let mut order: Vec<usize> = (0..params.len()).collect();
    order.sort_by(|&a, &b| params[a].total_cmp(&params[b]));
    let x: Vec<f64> = order.iter().map(|&m| params[m].ln()).collect();
    let sign = if higher_is_better { 1.0 } else { -1.0 };
    let means_of = |idx: &mut dyn Iterator<Item = usize>| -> Vec<f64> {
        let mut sums = vec![0.0; order.len()];
        let mut n = 0usize;
        for d in idx {
            for (k, &m) in order.iter().enumerate() {
                sums[k] += values[m][d];
            }
            n += 1;
        }
        sums.iter().map(|s| s / n as f64).collect()
    };
    let means = means_of(&mut (0..n_docs));
    let perf: Vec<f64> = means.iter().map(|m| sign * m).collect();
    let (slope, curve) = shape(&x, &perf);

    let mut rng = SplitMix64::new(opts.seed);
    let mut slopes = Vec::with_capacity(opts.resamples);
    let mut curvatures = Vec::with_capacity(opts.resamples);
    let mut shapes = Vec::with_capacity(opts.resamples);
    let mut resampled_perf = Vec::with_capacity(opts.resamples);
    for _ in 0..opts.resamples {
        let m = means_of(&mut (0..n_docs).map(|_| rng.below(n_docs)));
        let p: Vec<f64> = m.iter().map(|v| sign * v).collect();
        let s = shape(&x, &p);
        resampled_perf.push(p);
        slopes.push(s.0);
        if let Some((c, _)) = s.1 {
            curvatures.push(c);
        }
        shapes.push(s);
    }
    let slope_interval = interval(slopes, opts.level);
    let curvature_interval = (!curvatures.is_empty()).then(|| interval(curvatures, opts.level));
    let (x_min, x_max) = (x[0], x[x.len() - 1]);
    let inside = |v: f64| v > x_min && v < x_max;

    // A curve is a U (or inverted U) only if both arms are real: the interior extreme is below
    // (above) both the smallest and the largest model, each difference outside the noise.
    let arms_real = |convex: bool| -> bool {
        let last = perf.len() - 1;
        let interior = 1..last;
        let k = if convex {
            interior.min_by(|&a, &b| perf[a].total_cmp(&perf[b]))
        } else {
            interior.max_by(|&a, &b| perf[a].total_cmp(&perf[b]))
        };
        let Some(k) = k else { return false };
        let dir = if convex { 1.0 } else { -1.0 };
        [0, last].iter().all(|&end| {
            let diffs: Vec<f64> = resampled_perf.iter().map(|p| dir * (p[end] - p[k])).collect();
            interval(diffs, opts.level).0 > 0.0
        })
    };
    let judge = |slope_sig: bool, slope: f64, curve: Option<(f64, f64)>, curve_sig: bool| -> Trend {
        match curve {
            Some((c, vertex)) if curve_sig && inside(vertex) && arms_real(c > 0.0) => {
                if c > 0.0 { Trend::UShaped } else { Trend::InvertedU }
            }
            _ if slope_sig => {
                if slope > 0.0 { Trend::Positive } else { Trend::Inverse }
            }
            _ => Trend::Flat,
        }
    };
    let excludes_zero = |(lo, hi): (f64, f64)| lo > 0.0 || hi < 0.0;
    let trend = judge(excludes_zero(slope_interval), slope, curve, curvature_interval.is_some_and(excludes_zero));
    // Each resample's own shape, read without intervals: does it point the same way?
    let agreeing = shapes
        .iter()
        .filter(|(s, c)| {
            let curved = c.filter(|(_, v)| inside(*v)).map(|(c, _)| if c > 0.0 { Trend::UShaped } else { Trend::InvertedU });
            let own = match trend {
                Trend::UShaped | Trend::InvertedU => curved,
                Trend::Flat => Some(Trend::Flat),
                _ => Some(if *s > 0.0 { Trend::Positive } else { Trend::Inverse }),
            };
            own == Some(trend) || trend == Trend::Flat
        })
        .count();
    let confidence = if trend == Trend::Flat {
        // How often the slope's sign flips: near 0.5 when there is nothing there.
        let pos = shapes.iter().filter(|(s, _)| *s > 0.0).count() as f64 / shapes.len() as f64;
        1.0 - (pos - 0.5).abs() * 2.0
    } else {
        agreeing as f64 / shapes.len() as f64
    };
    let pct = (opts.level * 100.0).round();
    // Reported in the metric's own direction (a loss that rises has a positive slope).
    let own = |(lo, hi): (f64, f64)| if sign > 0.0 { (lo, hi) } else { (-hi, -lo) };
    let (slope_own, slope_interval_own) = (sign * slope, own(slope_interval));
    let curvature_own = curve.map(|c| sign * c.0);
    let curvature_interval_own = curvature_interval.map(own);
    let evidence = match trend {
        Trend::UShaped | Trend::InvertedU => format!(
            "curvature {:+.4} per ln(params)², {pct}% interval [{:+.4}, {:+.4}], turning at ~{} parameters, inside the sizes run",
            curvature_own.unwrap(),
            curvature_interval_own.unwrap().0,
            curvature_interval_own.unwrap().1,
            human_params(curve.unwrap().1.exp())
        ),
        _ => format!(
            "slope {slope_own:+.4} per e-fold of parameters, {pct}% interval [{:+.4}, {:+.4}]{}",
            slope_interval_own.0,
            slope_interval_own.1,
            if trend == Trend::Flat { ": includes zero" } else { "" }
        ),
    };
    Verdict {
        trend,
        confidence,
        means,
        slope: slope_own,
        slope_interval: slope_interval_own,
        curvature: curvature_own,
        curvature_interval: curvature_interval_own,
        vertex_params: curve.map(|c| c.1.exp()).filter(|v| v.is_finite()),
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [f64; 5] = [1.25e8, 3.5e8, 1.3e9, 2.7e9, 6.7e9];

    /// Per-document correctness for models with accuracies `p`: each document has a difficulty
    /// shared by all models (as real documents do), plus noise of its own per model.
    fn accuracy_data(p: &[f64], docs: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = SplitMix64::new(seed);
        let difficulty: Vec<f64> = (0..docs).map(|_| rng.unit()).collect();
        p.iter()
            .map(|&pm| {
                difficulty
                    .iter()
                    .map(|&u| {
                        let noisy = 0.7 * u + 0.3 * rng.unit();
                        if noisy < pm { 1.0 } else { 0.0 }
                    })
                    .collect()
            })
            .collect()
    }

    fn verdict(p: &[f64], seed: u64) -> Verdict {
        classify(&SIZES[..p.len()], &accuracy_data(p, 300, seed), true, Options::default())
    }

    #[test]
    fn known_trends_are_recognised() {
        assert_eq!(verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1).trend, Trend::Inverse);
        assert_eq!(verdict(&[0.4, 0.5, 0.6, 0.7, 0.8], 2).trend, Trend::Positive);
        assert_eq!(verdict(&[0.75, 0.5, 0.35, 0.5, 0.75], 3).trend, Trend::UShaped);
        assert_eq!(verdict(&[0.35, 0.6, 0.75, 0.6, 0.35], 4).trend, Trend::InvertedU);
        // Two sizes: a slope only.
        assert_eq!(verdict(&[0.8, 0.5], 5).trend, Trend::Inverse);
        let v = verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1);
        assert!(v.confidence > 0.95, "{v:?}");
        assert!(v.slope < 0.0 && v.slope_interval.1 < 0.0, "{v:?}");
        assert!(v.evidence.starts_with("slope -"), "{}", v.evidence);
    }

    #[test]
    fn a_monotonic_trend_that_bends_is_not_a_u() {
        // Falls fast, then levels off: curved, but the vertex is outside the sizes → inverse.
        let v = verdict(&[0.9, 0.6, 0.45, 0.4, 0.38], 6);
        assert_eq!(v.trend, Trend::Inverse, "{v:?}");
    }

    #[test]
    fn loss_is_oriented_lower_is_better() {
        // Loss rising with size is inverse scaling.
        let mut rng = SplitMix64::new(7);
        let values: Vec<Vec<f64>> =
            [0.5, 0.6, 0.7, 0.8, 0.9].iter().map(|&l| (0..300).map(|_| l + 0.3 * (rng.unit() - 0.5)).collect()).collect();
        let v = classify(&SIZES, &values, false, Options::default());
        assert_eq!(v.trend, Trend::Inverse, "{v:?}");
        assert!(v.slope > 0.0, "the slope is reported in the metric's own direction: {v:?}");
    }

    #[test]
    fn pure_noise_is_never_called_a_trend() {
        // The same accuracy for every size, twenty different draws: all must come out flat (a
        // U needs a significant curvature and two significant arms, which noise rarely gives).
        let mut called = Vec::new();
        for seed in 100..120 {
            let v = verdict(&[0.6; 5], seed);
            if v.trend != Trend::Flat {
                called.push((seed, v.trend));
            }
        }
        assert!(called.is_empty(), "noise called a trend: {called:?}");
        eprintln!("noise: {} of 20 draws called a trend: {called:?}", called.len());
        // A real but tiny difference (1 point over 300 documents) is inside the noise too.
        assert_eq!(verdict(&[0.60, 0.60, 0.595, 0.59, 0.59], 9).trend, Trend::Flat);
    }

    #[test]
    fn polyfit_recovers_known_coefficients() {
        let x = [0.0, 1.0, 2.0, 3.0];
        let y: Vec<f64> = x.iter().map(|x| 1.0 - 2.0 * x + 0.5 * x * x).collect();
        let c = polyfit(&x, &y, 2).unwrap();
        assert!((c[0] - 1.0).abs() < 1e-9 && (c[1] + 2.0).abs() < 1e-9 && (c[2] - 0.5).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn resampling_is_reproducible() {
        let a = verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1);
        let b = verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1);
        assert_eq!(a.slope_interval, b.slope_interval);
        assert_eq!(a.confidence, b.confidence);
    }
}
