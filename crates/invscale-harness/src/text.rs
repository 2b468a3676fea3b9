//! One text scored token by token (`invscale logprobs`): each token's id, text and log-prob
//! given everything before it — the tool to reach for when numbers disagree with another harness.

use std::fmt::Write;

use invscale_models::{BosPolicy, Model, TokenScore};
use serde_json::{Value, json};

use crate::error::HarnessError;

/// A text's tokens (BOS first where the policy says) and the scores of all but the first.
pub struct ScoredText {
    pub ids: Vec<u32>,
    /// Tokens before the text's own (a BOS).
    pub prefix: usize,
    /// `scores[i]` is token `i + 1`'s.
    pub scores: Vec<TokenScore>,
}

impl ScoredText {
    pub fn score(model: &Model, text: &str, bos: BosPolicy) -> Result<ScoredText, HarnessError> {
        let mut ids: Vec<u32> = model.bos_token(bos).into_iter().collect();
        let prefix = ids.len();
        ids.extend(model.tokenizer.encode(text).map_err(|e| HarnessError::BadInput(e.to_string()))?);
        if ids.len() < 2 {
            return Err(HarnessError::BadInput(format!("the text gives {} token(s); at least 2 are needed to score one", ids.len())));
        }
        let scores = model.score(&ids, 1).map_err(|e| HarnessError::Eval(e.into()))?;
        Ok(ScoredText { ids, prefix, scores })
    }

    pub fn total(&self) -> f64 {
        self.scores.iter().map(|s| f64::from(s.logprob)).sum()
    }

    fn at(&self, i: usize) -> Option<TokenScore> {
        i.checked_sub(1).map(|j| self.scores[j])
    }

    pub fn to_json(&self, model: &Model) -> Value {
        let tokens: Vec<_> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let s = self.at(i);
                json!({"pos": i, "id": id, "text": model.tokenizer.token_text(id), "bos": i < self.prefix,
                       "logprob": s.map(|s| s.logprob), "greedy": s.map(|s| s.greedy)})
            })
            .collect();
        json!({"model": model.path, "arch": model.arch, "params": model.params.total, "non_embedding_params": model.params.non_embedding, "precision": format!("{:?}", model.precision).to_lowercase(),
               "tokenizer": model.tokenizer.kind, "tokens": tokens, "sum_logprob": self.total(),
               "peak_memory_bytes": invscale_models::peak_resident_bytes()})
    }

    pub fn to_table(&self, model: &Model) -> String {
        let mut out = format!(
            "{} ({}, {:.0}M parameters, {:?}; tokenizer {})\n",
            model.path.display(),
            model.arch,
            model.params.total as f64 / 1e6,
            model.precision,
            model.tokenizer.kind
        );
        let _ = writeln!(out, "{:>5}  {:>7}  {:>10}  {:6}  TOKEN", "POS", "ID", "LOGPROB", "GREEDY");
        for (i, &id) in self.ids.iter().enumerate() {
            let (lp, greedy) = match self.at(i) {
                Some(s) => (format!("{:.4}", s.logprob), if s.greedy { "yes" } else { "" }),
                None => ("—".to_string(), ""),
            };
            let _ = writeln!(out, "{i:>5}  {id:>7}  {lp:>10}  {greedy:6}  {:?}", model.tokenizer.token_text(id));
        }
        let _ = writeln!(out, "sum of log-probs over {} scored tokens: {:.4}", self.scores.len(), self.total());
        out
    }
}
