//! TGI's `POST /generate` with `decoder_input_details: true` (text input, one a request): the
//! answer's `details.prefill` lists every input token `{id, text, logprob}` (the first null),
//! BOS included where the tokenizer adds it. Prefill has no top-n, so is_greedy is not known
//! (reported as such). Since TGI v3 the prefill is an empty list unless the launcher was given
//! `--enable-prefill-logprobs`: refused with that advice.

use serde_json::{Value, json};

use super::{BadAnswer, Scored, bad, number};

pub fn request(text: &str) -> Value {
    json!({
        "inputs": text,
        "parameters": {"max_new_tokens": 1, "details": true, "decoder_input_details": true, "do_sample": false},
    })
}

pub fn parse(answer: &Value, tokens: &[u32], from: usize) -> Result<Scored, BadAnswer> {
    let prefill = answer["details"]["prefill"].as_array().ok_or_else(|| bad("no `details.prefill` in the answer"))?;
    if prefill.is_empty() {
        return Err(bad("the prefill is empty: start TGI with --enable-prefill-logprobs (TGI ≥ 3 leaves prompt log-probs out otherwise)"));
    }
    let ids: Vec<u64> = prefill.iter().map(|p| p["id"].as_u64().unwrap_or(u64::MAX)).collect();
    if ids.len() != tokens.len() || ids.iter().zip(tokens).any(|(a, b)| *a != u64::from(*b)) {
        return Err(bad(format!("the server's {} input tokens are not our {} (its tokenizer or BOS differs)", ids.len(), tokens.len())));
    }
    let mut scored = Scored { logprobs: Vec::new(), greedy: Vec::new() };
    for (j, p) in prefill.iter().enumerate().skip(from) {
        scored.logprobs.push(number(&p["logprob"]).ok_or_else(|| bad(format!("input token {j} has no log-prob")))?);
        scored.greedy.push(None);
    }
    Ok(scored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TGI's `/generate` answer with `decoder_input_details` (router/src/lib.rs `PrefillToken`):
    /// BOS first with a null (NaN) log-prob.
    fn answer() -> Value {
        serde_json::from_str(
            r#"{"generated_text":" 5","details":{"finish_reason":"length","generated_tokens":1,
                "prefill":[{"id":1,"text":"<s>","logprob":null},{"id":29896,"text":"1","logprob":-4.5},
                           {"id":29892,"text":",","logprob":-0.75},{"id":29871,"text":" ","logprob":-1.0}],
                "tokens":[{"id":29945,"text":"5","logprob":-0.1,"special":false}]}}"#,
        )
        .unwrap()
    }

    #[test]
    fn prefill_is_read_by_id_and_has_no_greedy() {
        let got = parse(&answer(), &[1, 29896, 29892, 29871], 2).unwrap();
        assert_eq!(got, Scored { logprobs: vec![-0.75, -1.0], greedy: vec![None, None] });
    }

    #[test]
    fn an_empty_prefill_says_how_to_start_tgi() {
        let mut a = answer();
        a["details"]["prefill"] = serde_json::json!([]);
        assert!(parse(&a, &[1, 2], 1).unwrap_err().0.contains("--enable-prefill-logprobs"));
        // Without BOS on our side: its tokens are not ours.
        assert!(parse(&answer(), &[29896, 29892, 29871], 1).unwrap_err().0.contains("not our 3"));
    }
}
