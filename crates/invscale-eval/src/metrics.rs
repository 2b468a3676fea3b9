//! Per-document metrics and their aggregates (SCORING.md §3), as lm-eval and the prize compute
//! them: argmax ties to the lowest index, lengths in characters (or bytes), stderr of the mean
//! with ddof 1 (lm-eval) or 0 (the prize's plots), group rows weighted by size with a pooled stderr.

use invscale_tasks::DocBody;
use invscale_tasks::spec::Metric;

/// What the model said about one document.
#[derive(Clone, Debug, PartialEq)]
pub enum DocScores {
    /// Log-likelihood of each class (after the prompt); `unconditional` = of each class after
    /// nothing, for `acc_mutual_info`.
    Classification { lls: Vec<f64>, greedy: Vec<bool>, unconditional: Option<Vec<f64>> },
    /// Log-likelihood of the completion.
    SequenceProb { ll: f64 },
    /// Log-probs of the two classes' tokens after `prompt` and after `other_prompt`.
    Logodds { prompt: [f64; 2], other_prompt: [f64; 2] },
}

/// Index of the largest value; ties go to the lowest index (numpy's `argmax`).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

pub fn logsumexp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// One metric's value on one document; `None` when the metric does not apply to the scores
/// (for example `acc_mutual_info` without unconditional scores).
pub fn doc_metric(metric: Metric, body: &DocBody, scores: &DocScores, absolute_logodds: bool) -> Option<f64> {
    let hit = |pred: usize, gold: usize| if pred == gold { 1.0 } else { 0.0 };
    match (body, scores) {
        (DocBody::Classification { classes, answer, true_answers, .. }, DocScores::Classification { lls, unconditional, .. }) => {
            let per = |len: fn(&String) -> usize| -> Vec<f64> {
                lls.iter().zip(classes).map(|(ll, c)| ll / len(c) as f64).collect()
            };
            match metric {
                Metric::Acc => Some(hit(argmax(lls), *answer)),
                Metric::AccNorm => Some(hit(argmax(&per(|c| c.chars().count())), *answer)),
                Metric::AccBytes => Some(hit(argmax(&per(String::len)), *answer)),
                Metric::Loss => Some(logsumexp(lls) - lls[*answer]),
                Metric::Coverage => Some(logsumexp(lls)),
                Metric::BrierScore => {
                    let z = logsumexp(lls);
                    Some(lls.iter().enumerate().map(|(i, ll)| ((ll - z).exp() - hit(i, *answer)).powi(2)).sum())
                }
                Metric::AccMutualInfo => {
                    let uncond = unconditional.as_ref()?;
                    let mi: Vec<f64> = lls.iter().zip(uncond).map(|(c, u)| c - u).collect();
                    Some(hit(argmax(&mi), *answer))
                }
                // lm-eval's `process_results_mc2`: exp(ll) / Σ exp(ll), summed over the true
                // classes (here through logsumexp, so no class's probability underflows to 0/0).
                Metric::Mc2 => {
                    let z = logsumexp(lls);
                    Some(lls.iter().zip(true_answers.as_ref()?).filter(|(_, t)| **t).map(|(ll, _)| (ll - z).exp()).sum())
                }
                Metric::Mc1 => {
                    let best_other = lls.iter().enumerate().filter(|(i, _)| i != answer).map(|(_, ll)| *ll).fold(f64::NEG_INFINITY, f64::max);
                    Some(if lls[*answer] > best_other { 1.0 } else { 0.0 })
                }
                Metric::Perplexity | Metric::Logodds => None,
            }
        }
        (DocBody::SequenceProb { .. }, DocScores::SequenceProb { ll }) => match metric {
            Metric::Loss | Metric::Perplexity => Some(-ll),
            _ => None,
        },
        (DocBody::Logodds { answer, .. }, DocScores::Logodds { prompt, other_prompt }) => match metric {
            Metric::Logodds => {
                // Renormalising over the two classes cancels in the difference.
                let lo = |lp: &[f64; 2]| lp[0] - lp[1];
                let mut d = lo(prompt) - lo(other_prompt);
                if *answer == 1 {
                    d = -d;
                }
                Some(if absolute_logodds { d.abs() } else { d })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether larger values are better (lm-eval's `higher_is_better`).
pub fn higher_is_better(metric: Metric) -> bool {
    !matches!(metric, Metric::Loss | Metric::BrierScore | Metric::Perplexity)
}

/// A metric over a task's documents.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    pub value: f64,
    /// Standard error of the mean; `None` for n ≤ ddof, and for perplexity (not a mean).
    pub stderr: Option<f64>,
    pub n: usize,
}

/// Standard error of the mean: sample standard deviation (`ddof`) over √n.
pub fn mean_stderr(values: &[f64], ddof: usize) -> Option<f64> {
    let n = values.len();
    if n <= ddof {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - ddof) as f64;
    Some((var / n as f64).sqrt())
}

pub fn aggregate(metric: Metric, values: &[f64], ddof: usize) -> Aggregate {
    let n = values.len();
    let mean = if n == 0 { f64::NAN } else { values.iter().sum::<f64>() / n as f64 };
    match metric {
        // lm-eval's `perplexity` aggregation: exp of the mean negative log-likelihood.
        Metric::Perplexity => Aggregate { value: mean.exp(), stderr: None, n },
        _ => Aggregate { value: mean, stderr: mean_stderr(values, ddof), n },
    }
}

/// A group row from its tasks' rows: the mean weighted by size, and lm-eval's pooled stderr
/// (`pooled_sample_stderr`: what the stderr of all documents together would be).
pub fn group(rows: &[Aggregate]) -> Aggregate {
    let n: usize = rows.iter().map(|r| r.n).sum();
    let value = rows.iter().map(|r| r.value * r.n as f64).sum::<f64>() / n as f64;
    let stderr = if rows.iter().all(|r| r.stderr.is_some()) && n > rows.len() {
        let pooled_var = rows.iter().map(|r| (r.n as f64 - 1.0) * r.stderr.unwrap().powi(2) * r.n as f64).sum::<f64>()
            / (n - rows.len()) as f64;
        Some((pooled_var / n as f64).sqrt())
    } else {
        None
    };
    Aggregate { value, stderr, n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classification(classes: &[&str], answer: usize) -> DocBody {
        DocBody::Classification { prompt: "p".into(), classes: classes.iter().map(|c| c.to_string()).collect(), answer, true_answers: None }
    }

    fn scores(lls: &[f64]) -> DocScores {
        DocScores::Classification { lls: lls.to_vec(), greedy: vec![false; lls.len()], unconditional: None }
    }

    fn m(metric: Metric, body: &DocBody, lls: &[f64]) -> f64 {
        doc_metric(metric, body, &scores(lls), false).unwrap()
    }

    #[test]
    fn mc2_is_the_true_classes_share_of_the_probability_by_hand() {
        // Probabilities 0.5, 0.25, 0.125, 0.125; the true classes are the 1st and 3rd (not all first).
        let lls: Vec<f64> = [0.5f64, 0.25, 0.125, 0.125].iter().map(|p| p.ln() - 3.0).collect();
        let body = DocBody::Classification {
            prompt: "p".into(),
            classes: ["a", "b", "c", "d"].iter().map(|c| c.to_string()).collect(),
            answer: 0,
            true_answers: Some(vec![true, false, true, false]),
        };
        assert!((m(Metric::Mc2, &body, &lls) - 0.625).abs() < 1e-12);
        // The original MC1: a tie with a false answer is wrong; lm-eval's acc gives it to gold.
        let tie = classification(&["t", "f"], 0);
        assert_eq!((m(Metric::Mc1, &tie, &[-1.0, -1.0]), m(Metric::Acc, &tie, &[-1.0, -1.0])), (0.0, 1.0));
        assert_eq!(m(Metric::Mc1, &tie, &[-1.0, -1.5]), 1.0);
        // Without labels the metric does not apply.
        assert_eq!(doc_metric(Metric::Mc2, &classification(&["a", "b"], 0), &scores(&[-1.0, -2.0]), false), None);
    }

    #[test]
    fn ties_go_to_the_lowest_index() {
        let body = classification(&[" a", " b", " c"], 1);
        assert_eq!(m(Metric::Acc, &body, &[-2.0, -1.0, -1.0]), 1.0);
        let body = classification(&[" a", " b", " c"], 2);
        assert_eq!(m(Metric::Acc, &body, &[-2.0, -1.0, -1.0]), 0.0);
        // acc_norm ties too: -2/2 == -3/3.
        let body = classification(&[" a", " bb"], 0);
        assert_eq!(m(Metric::AccNorm, &body, &[-2.0, -3.0]), 1.0);
    }

    #[test]
    fn acc_norm_counts_characters_and_acc_bytes_counts_bytes() {
        // " é" is 2 characters, 3 bytes; " xx" is 3 characters, 3 bytes.
        let body = classification(&[" é", " xx"], 0);
        let lls = [-2.2, -3.0];
        // per character: -1.1 vs -1.0 → class 1; per byte: -0.733 vs -1.0 → class 0.
        assert_eq!(m(Metric::Acc, &body, &lls), 1.0);
        assert_eq!(m(Metric::AccNorm, &body, &lls), 0.0);
        assert_eq!(m(Metric::AccBytes, &body, &lls), 1.0);
    }

    #[test]
    fn loss_coverage_and_brier_by_hand() {
        let body = classification(&[" Yes", " No"], 1);
        let lls = [(0.2f64).ln(), (0.6f64).ln()];
        // renormalised: 0.25 / 0.75; loss = -ln 0.75; coverage = ln 0.8.
        assert!((m(Metric::Loss, &body, &lls) - -(0.75f64).ln()).abs() < 1e-12);
        assert!((m(Metric::Coverage, &body, &lls) - (0.8f64).ln()).abs() < 1e-12);
        // (0.25 - 0)² + (0.75 - 1)² = 0.125
        assert!((m(Metric::BrierScore, &body, &lls) - 0.125).abs() < 1e-12);
    }

    #[test]
    fn mutual_info_subtracts_the_unconditional_log_likelihood() {
        let body = classification(&[" a", " b"], 1);
        let s = DocScores::Classification { lls: vec![-1.0, -2.0], greedy: vec![false; 2], unconditional: Some(vec![-0.5, -3.0]) };
        // -0.5 vs +1.0 → class 1, although class 0 has the larger ll.
        assert_eq!(doc_metric(Metric::AccMutualInfo, &body, &s, false), Some(1.0));
        assert_eq!(doc_metric(Metric::AccMutualInfo, &body, &scores(&[-1.0, -2.0]), false), None);
    }

    #[test]
    fn logodds_flip_with_the_answer_and_absolute() {
        let body = |answer| DocBody::Logodds { prompt: "p".into(), other_prompt: "q".into(), classes: vec![" a".into(), " b".into()], answer };
        let s = DocScores::Logodds { prompt: [-1.0, -2.0], other_prompt: [-1.5, -1.0] };
        // lo(prompt) = 1.0, lo(other) = -0.5 → 1.5
        assert_eq!(doc_metric(Metric::Logodds, &body(0), &s, false), Some(1.5));
        assert_eq!(doc_metric(Metric::Logodds, &body(1), &s, false), Some(-1.5));
        assert_eq!(doc_metric(Metric::Logodds, &body(1), &s, true), Some(1.5));
    }

    #[test]
    fn sequence_prob_loss_is_the_negative_log_likelihood() {
        let body = DocBody::SequenceProb { prompt: "p".into(), completion: " c".into() };
        let s = DocScores::SequenceProb { ll: -3.5 };
        assert_eq!(doc_metric(Metric::Loss, &body, &s, false), Some(3.5));
        let agg = aggregate(Metric::Perplexity, &[1.0, 3.0], 1);
        assert!((agg.value - 2f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn stderr_of_reference_results() {
        // REFERENCE_RESULTS.md: hindsight-neglect acc 0.4476 = 141/315, stderr 0.0281 (ddof 1).
        let values: Vec<f64> = (0..315).map(|i| if i < 141 { 1.0 } else { 0.0 }).collect();
        let agg = aggregate(Metric::Acc, &values, 1);
        assert_eq!(format!("{:.4}", agg.value), "0.4476");
        assert_eq!(format!("{:.4}", agg.stderr.unwrap()), "0.0281");
        // NeQA 0.5267 = 158/300 ± 0.0289; quote-repetition 0.9433 = 283/300 ± 0.0134.
        let v = |k: usize, n: usize| (0..n).map(|i| if i < k { 1.0 } else { 0.0 }).collect::<Vec<f64>>();
        assert_eq!(format!("{:.4}", mean_stderr(&v(158, 300), 1).unwrap()), "0.0289");
        assert_eq!(format!("{:.4}", mean_stderr(&v(283, 300), 1).unwrap()), "0.0134");
        // ddof 0 (the prize's plots): sqrt(p(1-p)/n).
        let p: f64 = 141.0 / 315.0;
        assert!((mean_stderr(&values, 0).unwrap() - (p * (1.0 - p) / 315.0).sqrt()).abs() < 1e-15);
        assert_eq!(mean_stderr(&[1.0], 1), None);
    }

    #[test]
    fn group_row_is_the_size_weighted_mean_with_pooled_stderr() {
        // REFERENCE_RESULTS.md run B: the five tasks' acc and sizes give the group's 0.6219.
        let rows = [(0.4476, 315), (0.5267, 300), (0.9433, 300), (0.7200, 900), (0.3762, 412)];
        let aggs: Vec<Aggregate> = rows.iter().map(|&(value, n)| Aggregate { value, stderr: Some(0.01), n }).collect();
        let g = group(&aggs);
        assert_eq!(format!("{:.4}", g.value), "0.6219");
        // lm-eval's pooled formula by hand: n = 2, se = 0.5 and n = 3, se = 1/3:
        // ((2-1)·0.25·2 + (3-1)·(1/9)·3) / (5 - 2) = 7/18; √(7/18 / 5) = 0.278886…
        let g = group(&[Aggregate { value: 1.0, stderr: Some(0.5), n: 2 }, Aggregate { value: 0.0, stderr: Some(1.0 / 3.0), n: 3 }]);
        assert!((g.value - 0.4).abs() < 1e-15);
        assert!((g.stderr.unwrap() - (7.0f64 / 18.0 / 5.0).sqrt()).abs() < 1e-15);
    }
}
