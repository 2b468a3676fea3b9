//! The self-check before any scoring (shared/docs/SERVERS.md §5): a server is trusted only when
//! (1) it tokenizes as the model's tokenizer does, BOS included; (2) its answers have the shape
//! the parser expects (one null, first; counts matching); (3) the log-prob it echoes for token j
//! equals the one it gives for the next token after tokens < j (what catches answers shifted by
//! a position); (4) its numbers are not degenerate (all 0, all equal). A failure stops the run
//! with what was wrong and what to do; the report goes into the results either way.

use serde_json::{Value, json};

use crate::api::{self, ApiKind};
use crate::report::CheckReport;
use crate::scorer::ServerScorer;
use crate::server::ServerError;

/// Probe texts: ASCII, a leading space, other scripts, digits.
const PROBES: &[&str] = &["The quick brown fox jumps over the lazy dog.", " leading space and  two", "Zürich — naïve café 東京", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"];
/// How far apart two measurements of one log-prob may be (same engine, same weights).
const AGREE: f32 = 1e-3;

/// Runs every check; `Err` only when the server could not be asked at all.
pub fn self_check(s: &ServerScorer) -> Result<CheckReport, ServerError> {
    let mut report = CheckReport::default();
    tokenizer_parity(s, &mut report)?;
    let tok = &s.tokenizer;
    let mut probe: Vec<u32> = tok.bos_token(invscale_models::BosPolicy::Auto).into_iter().collect();
    let body = tok.encode(PROBES[3]).map_err(|e| ServerError::Refused(e.to_string()))?;
    probe.extend(&body);
    // Scored from the second token after any BOS: servers that leave BOS out of their echo null
    // the first token that remains (llama-cpp-python).
    let from = if probe.len() > body.len() { 2 } else { 1 };
    // (2) shape: the parsers check counts, nulls and token identity.
    let echoed = match s.score_sequence(&probe, from) {
        Ok(v) => {
            report.add("shape", true, format!("{} prompt log-probs, the first null, the tokens ours", v.logprobs.len()));
            v
        }
        Err(e) => {
            report.add("shape", false, e.to_string());
            return Ok(report);
        }
    };
    // (4) degenerate.
    let all_zero = echoed.logprobs.iter().all(|&x| x == 0.0);
    let all_equal = echoed.logprobs.windows(2).all(|w| w[0] == w[1]);
    report.add(
        "not degenerate",
        !all_zero && !all_equal && echoed.logprobs.iter().all(|x| x.is_finite() && *x <= 1e-4),
        format!("echoed log-probs {:?}", &echoed.logprobs[..echoed.logprobs.len().min(6)]),
    );
    // (3) echo against generation, at three positions of the digits.
    let mut worst = 0f32;
    let mut shifted = 0;
    let mut compared = 0;
    for j in [probe.len() - 5, probe.len() - 3, probe.len() - 1] {
        if j <= from {
            continue;
        }
        let Some(next) = s.next_token_logprobs(&probe[..j], &[probe[j], *probe.get(j + 1).unwrap_or(&probe[j])])? else {
            report.add("echo = generate", false, "this API gives no next-token log-probs to compare with".to_string());
            return Ok(report);
        };
        let echo = echoed.logprobs[j - from];
        match next[0] {
            Some(generated) => {
                compared += 1;
                worst = worst.max((echo - generated).abs());
                // The echo of token j is a value of the next row (after tokens ≤ j): shifted. The
                // row is read at token j (llama-cpp-python without BOS) or at token j + 1.
                if (echo - generated).abs() > AGREE && j + 1 < probe.len() {
                    let next_row = s.next_token_logprobs(&probe[..j + 1], &[probe[j], probe[j + 1]])?.unwrap_or_default();
                    if next_row.iter().flatten().any(|&after| (echo - after).abs() <= AGREE) {
                        shifted += 1;
                    }
                }
            }
            None => {}
        }
    }
    let ok = compared > 0 && worst <= AGREE;
    let detail = if compared == 0 {
        "the probe's tokens were not among the top next tokens: nothing to compare".to_string()
    } else if shifted > 0 {
        let hint = if s.server.api == ApiKind::OpenAi && !tok.add_bos {
            " (a llama-cpp-python bug for models that add no BOS: serve this model with vLLM or SGLang, or score a model that adds BOS)"
        } else {
            ""
        };
        format!("this server's echoed log-probs are shifted by one position: echo of token j = a value of the next position's distribution{hint}; max |Δ| {worst:.3}")
    } else {
        format!("{compared} positions, max |Δ| {worst:.2e} (≤ {AGREE:e})")
    };
    report.add("echo = generate", ok, detail);
    Ok(report)
}

/// (1) The server's ids for the probes against ours (with BOS where the tokenizer adds it).
fn tokenizer_parity(s: &ServerScorer, report: &mut CheckReport) -> Result<(), ServerError> {
    let tok = &s.tokenizer;
    let mut mismatches = Vec::new();
    let mut asked = 0;
    for text in PROBES {
        let mut ours: Vec<u32> = tok.bos_token(invscale_models::BosPolicy::Auto).into_iter().collect();
        ours.extend(tok.encode(text).map_err(|e| ServerError::Refused(e.to_string()))?);
        let Some(theirs) = s.server_tokenize(text)? else {
            report.add(
                "tokenizer",
                true,
                format!("not asked ({} has no tokenize endpoint); every answer's tokens are checked against ours", s.server.api.name()),
            );
            return Ok(());
        };
        asked += 1;
        if theirs != ours {
            mismatches.push(format!("{text:?}: server {theirs:?}, ours {ours:?}"));
        }
    }
    let detail = if mismatches.is_empty() {
        format!("{asked} probes tokenized alike (BOS {})", if tok.add_bos { "first" } else { "not added" })
    } else {
        format!("the server tokenizes otherwise than the model's tokenizer (another model, or another BOS policy): {}", mismatches.join("; "))
    };
    report.add("tokenizer", mismatches.is_empty(), detail);
    Ok(())
}

impl ServerScorer {
    /// One sequence scored (the self-check's probe), not cached.
    pub(crate) fn score_sequence(&self, tokens: &[u32], from: usize) -> Result<api::Scored, ServerError> {
        self.request_one(tokens, from)
    }

    /// The server's ids for `text` (as it tokenizes a prompt: with its BOS), where it says.
    pub(crate) fn server_tokenize(&self, text: &str) -> Result<Option<Vec<u32>>, ServerError> {
        let c = &self.server.client;
        let ids = |v: &Value, field: &str| v[field].as_array().map(|a| a.iter().filter_map(|x| x.as_u64().map(|i| i as u32)).collect::<Vec<u32>>());
        Ok(match self.server.api {
            ApiKind::OpenAi => match c.post("/extras/tokenize", &json!({"input": text})) {
                Ok(v) => ids(&v, "tokens"),
                Err(e) if matches!(e.status(), Some(404 | 405)) => None,
                Err(e) => return Err(e.into()),
            },
            ApiKind::Vllm => ids(&c.post("/tokenize", &json!({"model": self.server.model, "prompt": text}))?, "tokens"),
            ApiKind::Tgi => c.post("/tokenize", &json!({"inputs": text}))?.as_array().map(|a| a.iter().filter_map(|t| t["id"].as_u64().map(|i| i as u32)).collect()),
            ApiKind::Sglang | ApiKind::LlamaCpp => None,
        })
    }

    /// The log-probs of each of `candidates` as the token after `prefix`, from a generation
    /// request (no echo); `None` for a candidate the server did not list; `Ok(None)`: the API
    /// has no way to ask.
    pub(crate) fn next_token_logprobs(&self, prefix: &[u32], candidates: &[u32]) -> Result<Option<Vec<Option<f32>>>, ServerError> {
        let c = &self.server.client;
        let k = 20;
        Ok(Some(match self.server.api {
            ApiKind::OpenAi => {
                let (text, _, _) = self.as_text(prefix);
                let answer = c.post("/v1/completions", &api::openai::next_token_request(&self.server.model, &text, k))?;
                let names: Vec<String> = candidates.iter().map(|&t| self.tokenizer.token_text(t)).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                api::openai::parse_next(&answer, &refs).map_err(|e| ServerError::Refused(e.to_string()))?
            }
            ApiKind::Vllm => {
                let body = json!({"model": self.server.model, "prompt": prefix, "max_tokens": 1, "temperature": 0, "logprobs": k, "return_tokens_as_token_ids": true});
                let answer = c.post("/v1/completions", &body)?;
                let top = &answer["choices"][0]["logprobs"]["top_logprobs"][0];
                candidates.iter().map(|t| top[format!("token_id:{t}")].as_f64().map(|x| x as f32)).collect()
            }
            ApiKind::Sglang => {
                let body = json!({"input_ids": prefix, "sampling_params": {"max_new_tokens": 1, "temperature": 0}, "return_logprob": true, "top_logprobs_num": k});
                let answer = c.post("/generate", &body)?;
                let top = answer["meta_info"]["output_top_logprobs"][0].as_array().cloned().unwrap_or_default();
                candidates.iter().map(|&t| top.iter().find(|e| e[1].as_u64() == Some(u64::from(t))).and_then(|e| e[0].as_f64()).map(|x| x as f32)).collect()
            }
            ApiKind::Tgi => {
                let (text, _, _) = self.as_text(prefix);
                let body = json!({"inputs": text, "parameters": {"max_new_tokens": 1, "details": true, "top_n_tokens": 5, "do_sample": false}});
                let answer = c.post("/generate", &body)?;
                let top = answer["details"]["top_tokens"][0].as_array().cloned().unwrap_or_default();
                candidates.iter().map(|&t| top.iter().find(|e| e["id"].as_u64() == Some(u64::from(t))).and_then(|e| e["logprob"].as_f64()).map(|x| x as f32)).collect()
            }
            ApiKind::LlamaCpp => return Ok(None),
        }))
    }
}
