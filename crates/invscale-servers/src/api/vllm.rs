//! vLLM (V1): `POST /v1/completions` with token-id prompts, `echo`, `prompt_logprobs: 1`,
//! `max_tokens: 1`, `return_token_ids`. The answer's `choices[i].prompt_logprobs[j]` maps token
//! ids (as strings) to `{logprob, rank}` for prompt position j (entry 0: null); the prompt's own
//! token is among them with its rank (1: the argmax), the top-1 beside it; `prompt_token_ids`
//! says which tokens the server ran (they must be ours). Token-id prompts are run as sent: no
//! BOS is added.

use serde_json::{Value, json};

use super::{BadAnswer, Scored, bad, number};

/// The request for `prompts` (each the whole sequence, BOS included when the run puts one).
pub fn request(model: &str, prompts: &[&[u32]]) -> Value {
    json!({
        "model": model,
        "prompt": prompts,
        "echo": true,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": 1,
        "prompt_logprobs": 1,
        "return_token_ids": true,
    })
}

/// The scores of `tokens[from..]` for each prompt, from the answer to [`request`].
pub fn parse(answer: &Value, prompts: &[&[u32]], from: &[usize]) -> Result<Vec<Scored>, BadAnswer> {
    let choices = answer["choices"].as_array().ok_or_else(|| bad("no `choices` in the answer"))?;
    if choices.len() != prompts.len() {
        return Err(bad(format!("{} choices for {} prompts", choices.len(), prompts.len())));
    }
    let mut by_index: Vec<Option<&Value>> = vec![None; prompts.len()];
    for (i, c) in choices.iter().enumerate() {
        let at = c["index"].as_u64().map_or(i, |x| x as usize);
        let slot = by_index.get_mut(at).ok_or_else(|| bad(format!("choice index {at} out of range")))?;
        *slot = Some(c);
    }
    let mut out = Vec::with_capacity(prompts.len());
    for ((choice, tokens), &from) in by_index.into_iter().zip(prompts).zip(from) {
        let choice = choice.ok_or_else(|| bad("a prompt has no choice"))?;
        if let Some(ids) = choice["prompt_token_ids"].as_array() {
            let ids: Vec<u64> = ids.iter().filter_map(Value::as_u64).collect();
            if ids.len() != tokens.len() || ids.iter().zip(tokens.iter()).any(|(a, b)| *a != u64::from(*b)) {
                return Err(bad(format!("the server ran other tokens than sent ({} ids back for {})", ids.len(), tokens.len())));
            }
        }
        let entries = choice["prompt_logprobs"].as_array().ok_or_else(|| bad("no `prompt_logprobs`: is this vLLM ≥ 0.6 (V1)?"))?;
        if entries.len() != tokens.len() {
            return Err(bad(format!("{} prompt log-prob entries for {} prompt tokens", entries.len(), tokens.len())));
        }
        if !entries[0].is_null() {
            return Err(bad("the first prompt position has a log-prob (it has nothing before it): the entries are shifted"));
        }
        let mut scored = Scored { logprobs: Vec::new(), greedy: Vec::new() };
        for (j, (entry, &token)) in entries.iter().zip(tokens.iter()).enumerate().skip(from) {
            let map = entry.as_object().ok_or_else(|| bad(format!("position {j}: no log-probs (null inside the prompt)")))?;
            let own = map.get(&token.to_string()).ok_or_else(|| bad(format!("position {j}: token {token} missing from its entry")))?;
            let lp = number(&own["logprob"]).ok_or_else(|| bad(format!("position {j}: log-prob is not a number")))?;
            let greedy = own["rank"].as_u64().map(|r| r == 1);
            scored.logprobs.push(lp);
            scored.greedy.push(greedy);
        }
        out.push(scored);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vLLM V1's answer to an echo request with `prompt_logprobs: 1` and `return_token_ids`, in
    /// its documented shape (protocol.py `CompletionResponseChoice`): entry 0 null, each entry
    /// the prompt token (with its rank) and the top-1 when they differ; string-keyed ids.
    fn answer() -> Value {
        serde_json::from_str(
            r#"{"id":"cmpl-1","object":"text_completion","model":"m","choices":[
              {"index":0,"text":"Hi there.","logprobs":null,"finish_reason":"length",
               "prompt_token_ids":[1,450,4996,17354],
               "prompt_logprobs":[null,
                 {"450":{"logprob":-3.25,"rank":2,"decoded_token":" The"},"306":{"logprob":-1.5,"rank":1,"decoded_token":" I"}},
                 {"4996":{"logprob":-0.5,"rank":1,"decoded_token":" quick"}},
                 {"17354":{"logprob":-9999.0,"rank":30000,"decoded_token":" brown"},"29889":{"logprob":-0.1,"rank":1,"decoded_token":"."}}]},
              {"index":1,"text":"","logprobs":null,"finish_reason":"length",
               "prompt_token_ids":[1,450],
               "prompt_logprobs":[null,{"450":{"logprob":-3.25,"rank":2,"decoded_token":" The"},"306":{"logprob":-1.5,"rank":1,"decoded_token":" I"}}]}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn prompt_logprobs_are_read_by_token_id_with_rank_one_as_greedy() {
        let (a, b): (&[u32], &[u32]) = (&[1, 450, 4996, 17354], &[1, 450]);
        let got = parse(&answer(), &[a, b], &[2, 1]).unwrap();
        assert_eq!(got[0], Scored { logprobs: vec![-0.5, -9999.0], greedy: vec![Some(true), Some(false)] });
        assert_eq!(got[1], Scored { logprobs: vec![-3.25], greedy: vec![Some(false)] });
    }

    #[test]
    fn answers_that_do_not_fit_are_refused() {
        let (a, b): (&[u32], &[u32]) = (&[1, 450, 4996, 17354], &[1, 450]);
        // Other tokens than sent (a BOS added, a different tokenizer).
        let e = parse(&answer(), &[&[1, 450, 4996, 17355], b], &[2, 1]).unwrap_err();
        assert!(e.0.contains("other tokens than sent"), "{e}");
        // An entry for position 0: shifted.
        let mut shifted = answer();
        shifted["choices"][1]["prompt_logprobs"][0] = serde_json::json!({"1": {"logprob": -0.1, "rank": 1}});
        assert!(parse(&shifted, &[a, b], &[2, 1]).unwrap_err().0.contains("shifted"));
        // A null inside the prompt.
        let mut holed = answer();
        holed["choices"][0]["prompt_logprobs"][2] = Value::Null;
        assert!(parse(&holed, &[a, b], &[2, 1]).unwrap_err().0.contains("null inside the prompt"));
        // Fewer entries than tokens.
        let mut short = answer();
        short["choices"][0]["prompt_logprobs"].as_array_mut().unwrap().pop();
        assert!(parse(&short, &[a, b], &[2, 1]).unwrap_err().0.contains("3 prompt log-prob entries for 4"));
        // One choice for two prompts.
        let mut one = answer();
        one["choices"].as_array_mut().unwrap().pop();
        assert!(parse(&one, &[a, b], &[2, 1]).unwrap_err().0.contains("1 choices for 2 prompts"));
    }
}
