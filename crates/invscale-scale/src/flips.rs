//! Where inverse scaling happens: the documents the smallest model gets right and the largest
//! gets wrong, ranked by how much the largest model moved away from the answer.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flip {
    /// Index of the document (in the task's order).
    pub doc: usize,
    /// Per model, in order of size: whether it was right.
    pub correct: Vec<bool>,
    /// How far the gold class's loss rose from the smallest to the largest model (nats); 0 when
    /// no loss is known.
    pub loss_increase: f64,
}

/// `correct[m][d]`, `loss[m][d]` (optional), models in order of size. Ranked by loss increase,
/// then by how many models in between were already wrong (a clean right-to-wrong first).
pub fn right_to_wrong(correct: &[Vec<bool>], loss: Option<&[Vec<f64>]>) -> Vec<Flip> {
    let (first, last) = (0, correct.len() - 1);
    let mut flips: Vec<Flip> = (0..correct[0].len())
        .filter(|&d| correct[first][d] && !correct[last][d])
        .map(|d| Flip {
            doc: d,
            correct: correct.iter().map(|m| m[d]).collect(),
            loss_increase: loss.map_or(0.0, |l| l[last][d] - l[first][d]),
        })
        .collect();
    flips.sort_by(|a, b| {
        b.loss_increase
            .total_cmp(&a.loss_increase)
            .then_with(|| a.correct.iter().filter(|c| !**c).count().cmp(&b.correct.iter().filter(|c| !**c).count()))
            .then(a.doc.cmp(&b.doc))
    });
    flips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_right_to_wrong_documents_ranked_by_loss() {
        let correct = vec![vec![true, true, false, true], vec![true, false, false, true], vec![false, false, true, true]];
        let loss = vec![vec![0.1, 0.2, 0.9, 0.1], vec![0.3, 0.8, 0.9, 0.1], vec![0.9, 1.5, 0.2, 0.1]];
        let flips = right_to_wrong(&correct, Some(&loss));
        // doc 0 (0.1 → 0.9) and doc 1 (0.2 → 1.5); doc 2 went wrong → right, doc 3 stayed right.
        assert_eq!(flips.iter().map(|f| f.doc).collect::<Vec<_>>(), vec![1, 0]);
        assert!((flips[0].loss_increase - 1.3).abs() < 1e-12);
        assert_eq!(flips[1].correct, vec![true, true, false]);
    }
}
