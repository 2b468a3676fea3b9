//! SGLang's native `POST /generate` with `input_ids` (a batch), `return_logprob`,
//! `logprob_start_len` = the context's length − 1 (its radix cache then shares each context
//! across its continuations) and `top_logprobs_num: 1`. Each answer's `meta_info` has
//! `input_token_logprobs` `[[logprob, id, text], ...]` from the start position on (what the
//! start position's entry holds differs between versions) and `input_top_logprobs`; so entries
//! are aligned from the end, by token id, and the count is checked (a partial answer after a
//! cache hit has been reported).

use serde_json::{Value, json};

use super::{BadAnswer, Scored, bad, number};

/// The request for `prompts`, each scored from `from[i]` (≥ 1).
pub fn request(prompts: &[&[u32]], from: &[usize]) -> Value {
    let starts: Vec<usize> = from.iter().map(|f| f.saturating_sub(1)).collect();
    json!({
        "input_ids": prompts,
        "sampling_params": {"max_new_tokens": 1, "temperature": 0},
        "return_logprob": true,
        "logprob_start_len": starts,
        "top_logprobs_num": 1,
    })
}

pub fn parse(answer: &Value, prompts: &[&[u32]], from: &[usize]) -> Result<Vec<Scored>, BadAnswer> {
    // One prompt may come back as an object, several as a list.
    let answers: Vec<&Value> = match answer {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) if prompts.len() == 1 => vec![answer],
        _ => return Err(bad("the answer is neither a list nor an object")),
    };
    if answers.len() != prompts.len() {
        return Err(bad(format!("{} answers for {} prompts", answers.len(), prompts.len())));
    }
    let mut out = Vec::with_capacity(prompts.len());
    for ((a, tokens), &from) in answers.into_iter().zip(prompts).zip(from) {
        let meta = &a["meta_info"];
        let entries = meta["input_token_logprobs"].as_array().ok_or_else(|| bad("no `meta_info.input_token_logprobs`: was return_logprob honoured?"))?;
        let tops = meta["input_top_logprobs"].as_array();
        let want = tokens.len() - from;
        if entries.len() < want {
            return Err(bad(format!(
                "{} input log-probs for the {want} tokens asked (cached_tokens {}): a partial answer",
                entries.len(),
                meta["cached_tokens"]
            )));
        }
        let first = entries.len() - want;
        let mut scored = Scored { logprobs: Vec::new(), greedy: Vec::new() };
        for (k, (entry, &token)) in entries[first..].iter().zip(&tokens[from..]).enumerate() {
            let j = from + k;
            let id = entry[1].as_u64().ok_or_else(|| bad(format!("position {j}: no token id")))?;
            if id != u64::from(token) {
                return Err(bad(format!("position {j}: the server's token is {id}, ours {token}")));
            }
            let lp = number(&entry[0]).ok_or_else(|| bad(format!("position {j}: no log-prob (null inside the continuation)")))?;
            let greedy = tops.and_then(|t| t.get(first + k)).and_then(|t| t[0][1].as_u64()).map(|top| top == id);
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

    /// SGLang's native answer for a batch of two with `logprob_start_len` = context − 1 and
    /// `top_logprobs_num: 1` (io_struct.py / tokenizer_manager meta_info): entries from the start
    /// position, `[logprob, id, text]`, the start position's own entry null in this version.
    fn answer() -> Value {
        serde_json::from_str(
            r#"[
              {"text":"x","meta_info":{"prompt_tokens":5,"cached_tokens":0,
                "input_token_logprobs":[[null,7,null],[-1.25,8,null],[-0.75,9,null]],
                "input_top_logprobs":[null,[[-1.25,8,null]],[[-0.5,3,null]]]}},
              {"text":"y","meta_info":{"prompt_tokens":4,"cached_tokens":3,
                "input_token_logprobs":[[-2.0,7,null],[-0.25,6,null]],
                "input_top_logprobs":[[[-1.0,4,null]],[[-0.25,6,null]]]}}
            ]"#,
        )
        .unwrap()
    }

    #[test]
    fn entries_align_from_the_end_by_token_id() {
        let (a, b): (&[u32], &[u32]) = (&[5, 6, 7, 8, 9], &[5, 6, 7, 6]);
        let got = parse(&answer(), &[a, b], &[3, 3]).unwrap();
        assert_eq!(got[0], Scored { logprobs: vec![-1.25, -0.75], greedy: vec![Some(true), Some(false)] });
        assert_eq!(got[1], Scored { logprobs: vec![-0.25], greedy: vec![Some(true)] });
    }

    #[test]
    fn partial_or_misaligned_answers_are_refused() {
        let (a, b): (&[u32], &[u32]) = (&[5, 6, 7, 8, 9], &[5, 6, 7, 6]);
        // Scoring from position 1 needs 4 entries; a cache hit left 3 (the reported partial answer).
        let e = parse(&answer(), &[a, b], &[1, 3]).unwrap_err();
        assert!(e.0.contains("partial answer"), "{e}");
        let mut wrong = answer();
        wrong[0]["meta_info"]["input_token_logprobs"][2][1] = serde_json::json!(10);
        assert!(parse(&wrong, &[a, b], &[3, 3]).unwrap_err().0.contains("the server's token is 10, ours 9"));
        let mut null = answer();
        null[0]["meta_info"]["input_token_logprobs"][1][0] = Value::Null;
        assert!(parse(&null, &[a, b], &[3, 3]).unwrap_err().0.contains("null inside the continuation"));
    }
}
