//! The verdicts' simulation study: synthetic paired per-document data (7 sizes, 300 documents,
//! 400 replicates per shape), each replicate judged as a one-family report (its tests
//! Holm-adjusted together, called at 0.05). What it must show:
//!
//! - flat data is called a trend in ≤ 5% of replicates (the level holds after adjustment);
//! - a monotone concave rise is called U-shaped or inverted-U in ≤ 5% (the two-lines test does
//!   not see a curve in a bend, as a quadratic's sign does: Simonsohn 2018);
//! - the power for a clear U, inverse and positive trend, printed (and in the README).
//!
//! The data: each document has a difficulty shared by every model (as real documents do) and
//! noise of its own per model; a model with accuracy p gets the documents whose noisy difficulty
//! is below p right. The documents are drawn anew for every replicate.

use invscale_scale::trend::SplitMix64;
use invscale_scale::{Options, Trend, classify};

const SIZES: [f64; 7] = [70e6, 160e6, 410e6, 1.0e9, 1.4e9, 2.8e9, 6.9e9];
const DOCS: usize = 300;
const REPLICATES: usize = 400;

fn accuracy_data(p: &[f64], rng: &mut SplitMix64) -> Vec<Vec<f64>> {
    let difficulty: Vec<f64> = (0..DOCS).map(|_| rng.unit()).collect();
    p.iter().map(|&pm| difficulty.iter().map(|&u| f64::from(u8::from(0.7 * u + 0.3 * rng.unit() < pm))).collect()).collect()
}

/// The share of replicates called each trend, replicates split over two threads.
fn calls(p: &[f64], seed: u64) -> Vec<(Trend, f64)> {
    let opts = Options { resamples: 2000, ..Options::default() };
    let trends: Vec<Trend> = std::thread::scope(|s| {
        let halves: Vec<_> = (0..2u64)
            .map(|half| {
                s.spawn(move || {
                    (0..REPLICATES as u64 / 2)
                        .map(|r| {
                            let mut rng = SplitMix64::new(seed * 1_000_003 + half * 10_007 + r);
                            let values = accuracy_data(p, &mut rng);
                            classify(&SIZES, &values, true, Options { seed: rng.next_u64(), ..opts }).trend
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    [Trend::Inverse, Trend::Positive, Trend::UShaped, Trend::InvertedU, Trend::Flat]
        .iter()
        .map(|&t| (t, trends.iter().filter(|&&c| c == t).count() as f64 / trends.len() as f64))
        .collect()
}

fn share(calls: &[(Trend, f64)], trend: Trend) -> f64 {
    calls.iter().find(|(t, _)| *t == trend).unwrap().1
}

fn show(name: &str, p: &[f64], c: &[(Trend, f64)]) {
    let shares: Vec<String> = c.iter().map(|(t, s)| format!("{} {:.3}", t.label(), s)).collect();
    eprintln!("{name:<28} accuracies {:?}: {}", p.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>(), shares.join(", "));
}

#[test]
fn flat_data_is_called_a_trend_in_at_most_five_percent() {
    let p = [0.6; 7];
    let c = calls(&p, 1);
    show("flat", &p, &c);
    let false_calls = 1.0 - share(&c, Trend::Flat);
    assert!(false_calls <= 0.05, "flat data called a trend in {false_calls:.3} of replicates: {c:?}");
}

#[test]
fn a_monotone_concave_rise_is_not_called_a_curve() {
    // ln-like in the model's rank (and so in ln size): steep, then nearly flat at the top.
    let log_like: Vec<f64> = (0..7).map(|i| 0.45 + 0.30 * (1.0 + i as f64).ln() / 7f64.ln()).collect();
    let saturating: Vec<f64> = (0..7).map(|i| 0.40 + 0.40 * (1.0 - (-(i as f64) / 1.2).exp())).collect();
    for (name, p, seed) in [("concave (log-like)", log_like, 2), ("concave (saturating)", saturating, 3)] {
        let c = calls(&p, seed);
        show(name, &p, &c);
        let curves = share(&c, Trend::UShaped) + share(&c, Trend::InvertedU);
        assert!(curves <= 0.05, "{name}: a monotone rise called a curve in {curves:.3} of replicates: {c:?}");
        assert!(share(&c, Trend::Positive) >= 0.9, "{name}: the rise itself should be found: {c:?}");
    }
}

#[test]
fn power_for_clear_trends() {
    let linear = |a: f64, b: f64| -> Vec<f64> { (0..7).map(|i| a + (b - a) * i as f64 / 6.0).collect() };
    let cases: [(&str, Vec<f64>, Trend); 6] = [
        ("clear U", vec![0.75, 0.6, 0.5, 0.45, 0.5, 0.6, 0.75], Trend::UShaped),
        ("moderate U", vec![0.66, 0.6, 0.55, 0.52, 0.55, 0.6, 0.66], Trend::UShaped),
        ("clear inverse", linear(0.7, 0.5), Trend::Inverse),
        ("moderate inverse", linear(0.65, 0.57), Trend::Inverse),
        ("clear positive", linear(0.5, 0.7), Trend::Positive),
        ("clear inverted-U", vec![0.45, 0.6, 0.7, 0.75, 0.7, 0.6, 0.45], Trend::InvertedU),
    ];
    for (i, (name, p, want)) in cases.iter().enumerate() {
        let c = calls(p, 10 + i as u64);
        show(name, p, &c);
        let power = share(&c, *want);
        eprintln!("  power for {name}: {power:.3}");
        if name.starts_with("clear") {
            assert!(power >= 0.9, "{name}: called {} in only {power:.3} of replicates: {c:?}", want.label());
        }
    }
}
