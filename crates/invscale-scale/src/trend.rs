//! Trend verdicts with uncertainty: within one model family, is a metric getting worse with size
//! (inverse scaling), better, flat, U-shaped or inverted-U?
//!
//! The evidence is a paired bootstrap over documents: every model answered the same documents,
//! so each resample draws documents once and recomputes every model's mean on them. Two tests
//! run on the same resamples:
//!
//! - **Monotone trend**: Kendall's τ-b between size and the metric's means, on each resample.
//!   Its p-value is twice the share of resamples on the other side of zero (ties count half),
//!   the bootstrap's percentile test; never below 2/(B+1), so a report with many verdicts needs
//!   enough resamples for its adjusted p-values to reach the level (the report says when not).
//! - **U or inverted-U**: the two-lines test (Simonsohn 2018, "Two lines: a valid alternative to
//!   the invalid testing of U-shaped relationships with quadratic regressions"): the break is the
//!   interior model where performance is lowest (a U candidate) or highest (an inverted-U
//!   candidate), shared by both lines; a straight line against ln(size) on each side; a U only
//!   when both slopes are significant with opposite signs (each slope's p-value by the same
//!   percentile test; the curve's p-value is the larger of the two, times the number of
//!   candidates tried, and never below the share of resamples whose own break does not give
//!   the curve: the break is chosen from the data, so its choice is resampled too). A quadratic's sign is never used: it calls a monotone concave curve
//!   U-shaped (Simonsohn's point).
//!
//! The tests of a whole report are adjusted together (Holm's step-down, [`holm`]), and a verdict
//! is decided from its adjusted p-values ([`Tests::decide`]): a curve if its test passes, else a
//! monotone trend if τ's does, else flat. A trend smaller than the checkpoint-to-checkpoint noise
//! of the metric (the noise floor, when known) is never called.

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

    /// The shape in the metric's own direction and in performance terms: "loss rises then
    /// falls — U-shaped scaling: worse, then better".
    pub fn describe(self, metric: &str, higher_is_better: bool) -> String {
        let (up, down) = if higher_is_better { ("rises", "falls") } else { ("falls", "rises") };
        match self {
            Trend::Inverse => format!("{metric} {down} with size — inverse scaling: worse as models grow"),
            Trend::Positive => format!("{metric} {up} with size — normal scaling: better as models grow"),
            Trend::UShaped => format!("{metric} {down} then {up} — U-shaped scaling: worse, then better"),
            Trend::InvertedU => format!("{metric} {up} then {down} — inverted-U scaling: better, then worse"),
            Trend::Flat => format!("{metric}: no trend distinguishable from noise"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub resamples: usize,
    /// Two-sided level of the intervals (0.95); tests are called at 1 − level after adjustment.
    pub level: f64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        // 10,000 resamples: the percentile test's smallest p-value is 2/(B+1) = 0.0002, which
        // Holm's adjustment over a report's tens of tests can still bring under 0.05.
        Options { resamples: 10_000, level: 0.95, seed: 1234 }
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

    /// The significance level the adjusted p-values are compared with.
    pub fn alpha(&self) -> f64 {
        1.0 - self.level
    }

    /// The smallest p-value the percentile test can give with these resamples.
    pub fn p_floor(&self) -> f64 {
        2.0 / (self.resamples as f64 + 1.0)
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

/// A straight line through part of a family's models: its slope per e-fold of size (in the
/// metric's own direction), the bootstrap interval and the slope's p-value.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub from_size: f64,
    pub to_size: f64,
    pub slope: f64,
    pub interval: (f64, f64),
    pub p_value: f64,
}

/// The two-lines test of one candidate shape.
#[derive(Clone, Debug, Serialize)]
pub struct TwoLines {
    /// `u_shaped` or `inverted_u`.
    pub shape: Trend,
    /// The break: the interior model where the candidate's extreme is.
    pub break_size: f64,
    pub below: Line,
    pub above: Line,
    /// The largest of three p-values, times the number of candidates tried (both a U and an
    /// inverted-U can have an interior extreme): each slope's at this break, and the break's
    /// own (twice the share of resamples whose own interior extreme does not give the shape:
    /// the break is chosen from the data, so its choice is resampled too).
    pub p_value: f64,
    /// How many candidates were tried (1 or 2).
    pub candidates: usize,
}

/// What share of the resamples, each read on its own (no significance), shows each shape.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Shares {
    pub inverse: f64,
    pub positive: f64,
    pub u_shaped: f64,
    pub inverted_u: f64,
    pub flat: f64,
}

/// What both tests found on a family's series, in the metric's own direction.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    /// In order of size.
    pub sizes: Vec<f64>,
    /// Per model, in order of size: the metric's mean.
    pub means: Vec<f64>,
    pub tau: f64,
    pub tau_interval: (f64, f64),
    pub p_monotone: f64,
    /// Least-squares slope per e-fold of size, with its interval.
    pub slope: f64,
    pub slope_interval: (f64, f64),
    /// The curve candidate with the smaller p-value (none without an interior extreme).
    pub two_lines: Option<TwoLines>,
    pub shares: Shares,
}

/// A family's series and its two tests, before the report's multiplicity adjustment.
#[derive(Clone, Debug)]
pub struct Tests {
    pub evidence: Evidence,
    pub higher_is_better: bool,
    /// Families pooled with an intercept each: τ counts pairs within a family only, the slope
    /// is fitted with per-family intercepts, and no curve is tested.
    pub pooled: bool,
    pub options: Options,
}

/// A decided verdict: `scaling.json`'s contract is `family`, `task`, `metric` (set by the
/// report), `trend`, `method`, `interval`, `p_value`, `p_adjusted`, and the evidence below.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub trend: Trend,
    /// How the trend was tested, in words.
    pub method: String,
    /// The interval of the statistic that decided (see `interval_of`), at the report's level.
    pub interval: (f64, f64),
    /// `kendall_tau`, or `slope_below_break` / `slope_above_break` (the weaker arm of a curve).
    pub interval_of: &'static str,
    /// The deciding test's raw p-value (flat: the smaller of the two tests').
    pub p_value: f64,
    /// The same after Holm's adjustment across the report's tests.
    pub p_adjusted: f64,
    /// Whether `p_value` is the smallest the resamples can give (more resamples could lower it).
    pub p_at_floor: bool,
    /// The series and both tests' statistics.
    #[serde(flatten)]
    pub found: Evidence,
    /// How far the metric moves along the trend (monotone: smallest to largest model; a curve:
    /// its shorter arm), in the metric's units.
    pub effect: f64,
    /// The metric's checkpoint-to-checkpoint standard deviation, when known; a trend whose
    /// effect is below it is not called.
    pub noise_floor: Option<f64>,
    /// "loss rises then falls — U-shaped scaling: worse, then better".
    pub description: String,
    /// One sentence a reader can check.
    pub evidence: String,
}

/// Kendall's τ-b of `x` against `y` over the pairs `pair_ok` allows (ties in either count 0).
fn kendall_tau_b(x: &[f64], y: &[f64], strata: &[usize]) -> f64 {
    let (mut s, mut nx, mut ny, mut n0) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            if strata[i] != strata[j] {
                continue;
            }
            n0 += 1.0;
            let (dx, dy) = ((x[j] - x[i]).signum_or_zero(), (y[j] - y[i]).signum_or_zero());
            s += dx * dy;
            nx += f64::from(u8::from(dx == 0.0));
            ny += f64::from(u8::from(dy == 0.0));
        }
    }
    let denom = ((n0 - nx) * (n0 - ny)).sqrt();
    if denom > 0.0 { s / denom } else { 0.0 }
}

trait SignumOrZero {
    fn signum_or_zero(self) -> f64;
}
impl SignumOrZero for f64 {
    fn signum_or_zero(self) -> f64 {
        if self > 0.0 {
            1.0
        } else if self < 0.0 {
            -1.0
        } else {
            0.0
        }
    }
}

/// Least-squares slope of `y` on `x` over models `range`, with an intercept per stratum.
fn slope(x: &[f64], y: &[f64], strata: &[usize], range: std::ops::RangeInclusive<usize>) -> f64 {
    let idx: Vec<usize> = range.collect();
    let (mut sxy, mut sxx) = (0.0, 0.0);
    let mut groups: Vec<usize> = idx.iter().map(|&i| strata[i]).collect();
    groups.dedup();
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        let members: Vec<usize> = idx.iter().copied().filter(|&i| strata[i] == g).collect();
        let n = members.len() as f64;
        let (mx, my) = (members.iter().map(|&i| x[i]).sum::<f64>() / n, members.iter().map(|&i| y[i]).sum::<f64>() / n);
        for &i in &members {
            sxy += (x[i] - mx) * (y[i] - my);
            sxx += (x[i] - mx) * (x[i] - mx);
        }
    }
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(v: &[f64], level: f64) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (quantile(&v, tail), quantile(&v, 1.0 - tail))
}

/// The percentile test of "the statistic is 0" against the side of `estimate`: twice the share
/// of resamples on the other side (ties at 0 count half), with the usual +1 so that it is never
/// 0. 1 when the estimate itself is 0.
fn percentile_p(samples: &[f64], estimate: f64) -> f64 {
    if estimate == 0.0 {
        return 1.0;
    }
    let other = samples.iter().filter(|&&s| s * estimate < 0.0).count() as f64;
    let zero = samples.iter().filter(|&&s| s == 0.0).count() as f64;
    (2.0 * (other + 0.5 * zero + 1.0) / (samples.len() as f64 + 1.0)).min(1.0)
}

/// Holm's step-down adjustment of `p` (family-wise error controlled at any level), in `p`'s order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; p.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max((p.len() - rank) as f64 * p[i]).min(1.0);
        adjusted[i] = running;
    }
    adjusted
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

/// The interior model where `perf` is lowest (`convex`) or highest.
fn interior_extreme(perf: &[f64], convex: bool) -> Option<usize> {
    let last = perf.len().checked_sub(1)?;
    let k = (0..perf.len()).min_by(|&a, &b| {
        let o = perf[a].total_cmp(&perf[b]);
        if convex { o } else { o.reverse() }
    })?;
    (k > 0 && k < last).then_some(k)
}

/// Whether `perf`'s own interior lowest (`convex`) or highest point has arms of the curve's
/// signs either side; the weaker arm's slope magnitude if so.
fn own_arms(x: &[f64], perf: &[f64], strata: &[usize], convex: bool) -> Option<f64> {
    let k = interior_extreme(perf, convex)?;
    let last = perf.len() - 1;
    let (below, above) = (slope(x, perf, strata, 0..=k), slope(x, perf, strata, k..=last));
    let ok = if convex { below < 0.0 && above > 0.0 } else { below > 0.0 && above < 0.0 };
    ok.then(|| below.abs().min(above.abs()))
}

/// One resample's shape, read without significance: a curve if its own interior extreme has
/// arms of opposite slopes (the steeper weaker arm wins when both do), else τ's sign.
fn own_shape(x: &[f64], perf: &[f64], strata: &[usize], tau: f64, curves: bool) -> Trend {
    if curves {
        match (own_arms(x, perf, strata, true), own_arms(x, perf, strata, false)) {
            (Some(u), Some(n)) => return if u >= n { Trend::UShaped } else { Trend::InvertedU },
            (Some(_), None) => return Trend::UShaped,
            (None, Some(_)) => return Trend::InvertedU,
            (None, None) => {}
        }
    }
    match tau.signum_or_zero() {
        t if t > 0.0 => Trend::Positive,
        t if t < 0.0 => Trend::Inverse,
        _ => Trend::Flat,
    }
}

/// Runs both tests on one series.
///
/// `sizes[m]`: model m's size (any order: sorted here); `values[m][d]`: the metric on document d
/// for model m (the same documents, in the same order, for every model); `strata[m]`: its family
/// when several are pooled (all equal for one family); `higher_is_better` orients it (loss: false).
pub fn analyse(sizes: &[f64], values: &[Vec<f64>], strata: &[usize], higher_is_better: bool, opts: Options) -> Tests {
    assert_eq!(sizes.len(), values.len());
    assert_eq!(sizes.len(), strata.len());
    assert!(sizes.len() >= 2, "a trend needs at least two model sizes");
    let n_docs = values[0].len();
    assert!(n_docs > 0 && values.iter().all(|v| v.len() == n_docs), "every model must answer the same documents");
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[a].total_cmp(&sizes[b]));
    let x: Vec<f64> = order.iter().map(|&m| sizes[m].ln()).collect();
    let strata: Vec<usize> = order.iter().map(|&m| strata[m]).collect();
    let pooled = strata.iter().any(|&s| s != strata[0]);
    let sign = if higher_is_better { 1.0 } else { -1.0 };
    let mut sums = vec![0.0; order.len()];
    let mut means_of = |docs: &mut dyn Iterator<Item = usize>| -> Vec<f64> {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for d in docs {
            for (k, &m) in order.iter().enumerate() {
                sums[k] += values[m][d];
            }
        }
        sums.iter().map(|s| sign * s / n_docs as f64).collect()
    };
    // Everything below is in performance terms (higher is better) until it is reported.
    let perf = means_of(&mut (0..n_docs));
    let last = perf.len() - 1;
    let tau = kendall_tau_b(&x, &perf, &strata);
    let full_slope = slope(&x, &perf, &strata, 0..=last);
    let curves = !pooled && perf.len() >= 3;
    let candidates: Vec<(bool, usize)> =
        if curves { [true, false].iter().filter_map(|&convex| interior_extreme(&perf, convex).map(|k| (convex, k))).collect() } else { Vec::new() };

    let mut rng = SplitMix64::new(opts.seed);
    let mut taus = Vec::with_capacity(opts.resamples);
    let mut slopes = Vec::with_capacity(opts.resamples);
    let mut arms: Vec<(Vec<f64>, Vec<f64>)> = candidates.iter().map(|_| (Vec::new(), Vec::new())).collect();
    // Per candidate: resamples whose own break (their own interior extreme) does not give it.
    let mut not_own = vec![0usize; candidates.len()];
    let mut shares = Shares::default();
    for _ in 0..opts.resamples {
        let p = means_of(&mut (0..n_docs).map(|_| rng.below(n_docs)));
        let t = kendall_tau_b(&x, &p, &strata);
        taus.push(t);
        slopes.push(slope(&x, &p, &strata, 0..=last));
        for (((convex, k), (below, above)), missing) in candidates.iter().zip(&mut arms).zip(&mut not_own) {
            below.push(slope(&x, &p, &strata, 0..=*k));
            above.push(slope(&x, &p, &strata, *k..=last));
            *missing += usize::from(own_arms(&x, &p, &strata, *convex).is_none());
        }
        *match own_shape(&x, &p, &strata, t, curves) {
            Trend::Inverse => &mut shares.inverse,
            Trend::Positive => &mut shares.positive,
            Trend::UShaped => &mut shares.u_shaped,
            Trend::InvertedU => &mut shares.inverted_u,
            Trend::Flat => &mut shares.flat,
        } += 1.0 / opts.resamples as f64;
    }
    // Reported in the metric's own direction (a loss that rises has a positive slope).
    let own = |(lo, hi): (f64, f64)| if sign > 0.0 { (lo, hi) } else { (-hi, -lo) };
    let sorted_sizes: Vec<f64> = order.iter().map(|&m| sizes[m]).collect();
    let size = |k: usize| sorted_sizes[k];
    let two_lines = candidates
        .iter()
        .zip(&arms)
        .zip(&not_own)
        .map(|((&(convex, k), (below, above)), &missing)| {
            let (b, a) = (slope(&x, &perf, &strata, 0..=k), slope(&x, &perf, &strata, k..=last));
            let right_signs = if convex { b < 0.0 && a > 0.0 } else { b > 0.0 && a < 0.0 };
            let line = |s: f64, samples: &[f64], from: usize, to: usize| Line {
                from_size: size(from),
                to_size: size(to),
                slope: sign * s,
                interval: own(interval(samples, opts.level)),
                p_value: percentile_p(samples, s),
            };
            let (below, above) = (line(b, below, 0, k), line(a, above, k, last));
            let moved = (2.0 * (missing as f64 + 1.0) / (opts.resamples as f64 + 1.0)).min(1.0);
            let p = if right_signs { below.p_value.max(above.p_value).max(moved) } else { 1.0 };
            TwoLines {
                shape: if convex { Trend::UShaped } else { Trend::InvertedU },
                break_size: size(k),
                below,
                above,
                p_value: (p * candidates.len() as f64).min(1.0),
                candidates: candidates.len(),
            }
        })
        .min_by(|a, b| a.p_value.total_cmp(&b.p_value));
    let evidence = Evidence {
        sizes: sorted_sizes.clone(),
        means: perf.iter().map(|p| sign * p).collect(),
        tau: sign * tau,
        tau_interval: own(interval(&taus, opts.level)),
        p_monotone: percentile_p(&taus, tau),
        slope: sign * full_slope,
        slope_interval: own(interval(&slopes, opts.level)),
        two_lines,
        shares,
    };
    Tests { evidence, higher_is_better, pooled, options: opts }
}

impl Tests {
    /// The raw p-values this series contributes to the report's adjustment: τ's, and the
    /// curve's when there was a candidate.
    pub fn p_values(&self) -> Vec<f64> {
        let mut p = vec![self.evidence.p_monotone];
        p.extend(self.evidence.two_lines.as_ref().map(|c| c.p_value));
        p
    }

    pub fn method(&self) -> String {
        let o = &self.options;
        let mut m = format!(
            "paired bootstrap over documents ({} resamples, seed {}): Kendall's tau-b of size against the metric on each resample, p = twice the share on the other side of 0",
            o.resamples, o.seed
        );
        if self.pooled {
            m += "; families pooled with an intercept each (tau over pairs within a family, slope with per-family intercepts); no curve test when pooled";
        } else if self.evidence.sizes.len() >= 3 {
            m += "; U / inverted-U by the two-lines test (Simonsohn 2018): break at the interior extreme, shared by both lines, both slopes significant with opposite signs, the break's choice resampled too";
        } else {
            m += "; two sizes: no curve can be tested";
        }
        m + "; Holm-adjusted across the report's tests"
    }

    /// The verdict, given this series' p-values after the report's adjustment (in
    /// [`Tests::p_values`]'s order) and the metric's noise floor.
    pub fn decide(&self, adjusted: &[f64], noise_floor: Option<f64>) -> Verdict {
        let alpha = self.options.alpha();
        let (adj_mono, adj_curve) = (adjusted[0], adjusted.get(1).copied());
        let first = self.evidence.means[0];
        let last = self.evidence.means[self.evidence.means.len() - 1];
        let curve = self.evidence.two_lines.as_ref().filter(|_| adj_curve.is_some_and(|p| p < alpha));
        let (mut trend, p_value, p_adjusted) = match curve {
            Some(c) => (c.shape, c.p_value, adj_curve.unwrap()),
            None if adj_mono < alpha => (if self.evidence.tau * self.orientation() > 0.0 { Trend::Positive } else { Trend::Inverse }, self.evidence.p_monotone, adj_mono),
            None => match (self.evidence.two_lines.as_ref(), adj_curve) {
                (Some(c), Some(a)) if c.p_value < self.evidence.p_monotone => (Trend::Flat, c.p_value, a),
                _ => (Trend::Flat, self.evidence.p_monotone, adj_mono),
            },
        };
        let effect = match curve {
            Some(c) => {
                let k = self.evidence.sizes.iter().position(|&s| s == c.break_size).unwrap_or(0);
                (first - self.evidence.means[k]).abs().min((last - self.evidence.means[k]).abs())
            }
            None => (last - first).abs(),
        };
        let below_noise = trend != Trend::Flat && noise_floor.is_some_and(|n| effect < n);
        if below_noise {
            trend = Trend::Flat;
        }
        let (interval, interval_of) = match curve.filter(|_| trend != Trend::Flat) {
            Some(c) if c.below.p_value >= c.above.p_value => (c.below.interval, "slope_below_break"),
            Some(c) => (c.above.interval, "slope_above_break"),
            None => (self.evidence.tau_interval, "kendall_tau"),
        };
        let pct = (self.options.level * 100.0).round();
        let p_text = format!("p = {:.4} (Holm-adjusted {:.4})", p_value, p_adjusted);
        let tau_text = format!(
            "Kendall's tau {:+.2}, {pct}% interval [{:+.2}, {:+.2}]; slope {:+.4} per e-fold of size [{:+.4}, {:+.4}]",
            self.evidence.tau, self.evidence.tau_interval.0, self.evidence.tau_interval.1, self.evidence.slope, self.evidence.slope_interval.0, self.evidence.slope_interval.1
        );
        let evidence = match (trend, curve) {
            (Trend::UShaped | Trend::InvertedU, Some(c)) => format!(
                "below ~{}: slope {:+.4} per e-fold [{:+.4}, {:+.4}], p = {:.4}; above: {:+.4} [{:+.4}, {:+.4}], p = {:.4}; curve {p_text}",
                human_params(c.break_size),
                c.below.slope,
                c.below.interval.0,
                c.below.interval.1,
                c.below.p_value,
                c.above.slope,
                c.above.interval.0,
                c.above.interval.1,
                c.above.p_value
            ),
            (Trend::Flat, _) if below_noise => {
                format!("{tau_text}; {p_text}, but the change ({effect:.4}) is below the checkpoint noise ({:.4})", noise_floor.unwrap())
            }
            (Trend::Flat, _) => format!("{tau_text}; {p_text}: not significant at {:.2}", alpha),
            _ => format!("{tau_text}; {p_text}"),
        };
        Verdict {
            trend,
            method: self.method(),
            interval,
            interval_of,
            p_value,
            p_adjusted,
            p_at_floor: p_value <= self.options.p_floor() * 1.000_001 * curve.map_or(1.0, |c| c.candidates as f64),
            found: self.evidence.clone(),
            effect,
            noise_floor,
            description: String::new(),
            evidence,
        }
    }

    /// +1 when higher is better: τ and slopes are stored in the metric's own direction.
    fn orientation(&self) -> f64 {
        if self.higher_is_better { 1.0 } else { -1.0 }
    }
}

/// Decides every series of a report together: Holm's adjustment over all their tests.
pub fn decide_all(tests: &[Tests], noise_floors: &[Option<f64>]) -> Vec<Verdict> {
    let raw: Vec<Vec<f64>> = tests.iter().map(Tests::p_values).collect();
    let flat: Vec<f64> = raw.iter().flatten().copied().collect();
    let adjusted = holm(&flat);
    let mut at = 0;
    tests
        .iter()
        .zip(&raw)
        .zip(noise_floors)
        .map(|((t, r), noise)| {
            let v = t.decide(&adjusted[at..at + r.len()], *noise);
            at += r.len();
            v
        })
        .collect()
}

/// One family's verdict on its own: its tests adjusted among themselves only.
pub fn classify(sizes: &[f64], values: &[Vec<f64>], higher_is_better: bool, opts: Options) -> Verdict {
    let tests = analyse(sizes, values, &vec![0; sizes.len()], higher_is_better, opts);
    decide_all(std::slice::from_ref(&tests), &[None]).remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [f64; 5] = [1.25e8, 3.5e8, 1.3e9, 2.7e9, 6.7e9];

    /// Per-document correctness for models with accuracies `p`: each document has a difficulty
    /// shared by all models (as real documents do), plus noise of its own per model.
    pub(crate) fn accuracy_data(p: &[f64], docs: usize, rng: &mut SplitMix64) -> Vec<Vec<f64>> {
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

    fn opts() -> Options {
        Options { resamples: 2000, ..Options::default() }
    }

    fn verdict(p: &[f64], seed: u64) -> Verdict {
        classify(&SIZES[..p.len()], &accuracy_data(p, 300, &mut SplitMix64::new(seed)), true, opts())
    }

    #[test]
    fn known_trends_are_recognised() {
        assert_eq!(verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1).trend, Trend::Inverse);
        assert_eq!(verdict(&[0.4, 0.5, 0.6, 0.7, 0.8], 2).trend, Trend::Positive);
        assert_eq!(verdict(&[0.75, 0.5, 0.35, 0.5, 0.75], 3).trend, Trend::UShaped);
        assert_eq!(verdict(&[0.35, 0.6, 0.75, 0.6, 0.35], 4).trend, Trend::InvertedU);
        // Two sizes: τ is the sign of the difference, and its percentile test is the paired
        // bootstrap test of that difference.
        assert_eq!(verdict(&[0.8, 0.5], 5).trend, Trend::Inverse);
        let v = verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1);
        assert!(v.found.shares.inverse > 0.95, "{v:?}");
        assert!(v.found.tau < 0.0 && v.interval.1 < 0.0 && v.interval_of == "kendall_tau", "{v:?}");
        assert!(v.found.slope < 0.0 && v.found.slope_interval.1 < 0.0, "{v:?}");
        assert!(v.p_adjusted < 0.05 && v.p_adjusted >= v.p_value, "{v:?}");
        let u = verdict(&[0.75, 0.5, 0.35, 0.5, 0.75], 3);
        let c = u.found.two_lines.as_ref().unwrap();
        assert!(c.below.slope < 0.0 && c.above.slope > 0.0 && c.break_size == SIZES[2], "{u:?}");
        assert!(u.evidence.starts_with("below ~1.3B: slope -"), "{}", u.evidence);
    }

    #[test]
    fn a_monotonic_trend_that_bends_is_not_a_u() {
        // Falls fast, then levels off: a quadratic would turn inside the sizes; two lines do not.
        let v = verdict(&[0.9, 0.6, 0.45, 0.4, 0.38], 6);
        assert_eq!(v.trend, Trend::Inverse, "{v:?}");
    }

    #[test]
    fn loss_is_oriented_lower_is_better() {
        // Loss rising with size is inverse scaling.
        let mut rng = SplitMix64::new(7);
        let values: Vec<Vec<f64>> =
            [0.5, 0.6, 0.7, 0.8, 0.9].iter().map(|&l| (0..300).map(|_| l + 0.3 * (rng.unit() - 0.5)).collect()).collect();
        let v = classify(&SIZES, &values, false, opts());
        assert_eq!(v.trend, Trend::Inverse, "{v:?}");
        assert!(v.found.slope > 0.0 && v.found.tau > 0.0, "reported in the metric's own direction: {v:?}");
        assert_eq!(Trend::UShaped.describe("loss", false), "loss rises then falls — U-shaped scaling: worse, then better");
        assert_eq!(Trend::Inverse.describe("accuracy", true), "accuracy falls with size — inverse scaling: worse as models grow");
    }

    #[test]
    fn a_trend_below_the_noise_floor_is_not_called() {
        let mut rng = SplitMix64::new(11);
        let values = accuracy_data(&[0.62, 0.60, 0.58, 0.56, 0.54], 3000, &mut rng);
        let tests = analyse(&SIZES, &values, &[0; 5], true, opts());
        let called = decide_all(std::slice::from_ref(&tests), &[None]).remove(0);
        assert_eq!(called.trend, Trend::Inverse, "{called:?}");
        let noisy = decide_all(std::slice::from_ref(&tests), &[Some(0.2)]).remove(0);
        assert_eq!(noisy.trend, Trend::Flat, "{noisy:?}");
        assert!(noisy.evidence.contains("below the checkpoint noise"), "{}", noisy.evidence);
    }

    #[test]
    fn holm_matches_its_definition() {
        // Sorted 0.01, 0.02, 0.04, 0.30 → ×4, ×3, ×2, ×1 with running maximum.
        let a = holm(&[0.04, 0.01, 0.30, 0.02]);
        let want = [0.08, 0.04, 0.30, 0.06];
        for (a, w) in a.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{a} vs {w}");
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert_eq!(holm(&[0.01, 0.9]), vec![0.02, 0.9]);
    }

    #[test]
    fn kendall_tau_b_counts_ties_as_scipy_does() {
        // scipy.stats.kendalltau([1,2,3,4,5], [1,3,2,3,5]) = 0.7378647873726218 (tau-b).
        let t = kendall_tau_b(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 3.0, 2.0, 3.0, 5.0], &[0; 5]);
        assert!((t - 0.7378647873726218).abs() < 1e-12, "{t}");
    }

    #[test]
    fn pooling_compares_sizes_within_a_family_only() {
        // Two families, each falling with size, the second a whole level higher: pooled without
        // intercepts they would rise; with one intercept each they fall.
        let mut rng = SplitMix64::new(3);
        let values = accuracy_data(&[0.5, 0.4, 0.3, 0.9, 0.8, 0.7], 400, &mut rng);
        let sizes = [1e8, 3e8, 1e9, 1.1e9, 3.3e9, 1e10];
        let tests = analyse(&sizes, &values, &[0, 0, 0, 1, 1, 1], true, opts());
        assert!(tests.pooled && tests.evidence.two_lines.is_none());
        assert!((tests.evidence.tau + 1.0).abs() < 1e-12 && tests.evidence.slope < 0.0, "{tests:?}");
        assert_eq!(decide_all(&[tests], &[None])[0].trend, Trend::Inverse);
    }

    #[test]
    fn resampling_is_reproducible() {
        let a = verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1);
        let b = verdict(&[0.8, 0.7, 0.6, 0.5, 0.4], 1);
        assert_eq!(a.found.tau_interval, b.found.tau_interval);
        assert_eq!(a.p_value, b.p_value);
    }
}
