//! OpenAI-compatible `/v1/completions` with `echo: true, logprobs: 1, max_tokens: 1` and a text
//! prompt: llama-cpp-python's server (which rejects token ids and takes one prompt a request),
//! hosted APIs that echo prompt log-probs. The answer's `choices[0].logprobs` has `tokens`
//! (strings), `token_logprobs` (the first null) and `top_logprobs` (string → log-prob, the top-1
//! and the token itself), the generated token last. Servers that drop BOS from `tokens`
//! (llama-cpp-python) are recognised by the count. The tokens' texts must be ours, one by one:
//! a server that tokenizes the text otherwise is an error, never realigned by text offsets.

use serde_json::{Value, json};

use super::{BadAnswer, Scored, bad, number};

/// The request for one prompt's text.
pub fn request(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "prompt": text,
        "echo": true,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": 1,
    })
}

/// A generation request after `text` (no echo) with the top `k` log-probs of the next token:
/// the self-check's other measurement of the same log-probs.
pub fn next_token_request(model: &str, text: &str, k: usize) -> Value {
    json!({
        "model": model,
        "prompt": text,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": k,
    })
}

/// The scores of `tokens[from..]` from the answer to [`request`]; `texts[i]` is the text of
/// `tokens[i]` as decoded alone; `bos` whether `tokens[0]` is a BOS the server may leave out of
/// its echo.
pub fn parse(answer: &Value, texts: &[String], from: usize, bos: bool) -> Result<Scored, BadAnswer> {
    let lp = &answer["choices"][0]["logprobs"];
    let tokens: Vec<&str> = lp["tokens"].as_array().ok_or_else(|| bad("no `logprobs.tokens` in the answer: does the server echo prompt log-probs?"))?
        .iter()
        .map(|t| t.as_str().unwrap_or(""))
        .collect();
    let values = lp["token_logprobs"].as_array().ok_or_else(|| bad("no `logprobs.token_logprobs` in the answer"))?;
    let tops = lp["top_logprobs"].as_array();
    if values.len() != tokens.len() {
        return Err(bad(format!("{} log-probs for {} tokens", values.len(), tokens.len())));
    }
    // The echo covers the prompt (without a leading BOS, on some servers) and the generated token.
    let skipped = match tokens.len() {
        n if n == texts.len() + 1 => 0,
        n if bos && n == texts.len() => 1,
        // llama-cpp-python 0.3.36 for a model that adds no BOS: the generated token is missing
        // and every echoed value is the next row's (SERVERS.md §1; its PR #1471).
        n if n == texts.len() => {
            return Err(bad(format!(
                "{n} echoed tokens for a prompt of {n} tokens, the generated one missing: this server's echoed log-probs are \
                 shifted by one position (a llama-cpp-python bug for models that add no BOS); serve this model with vLLM or \
                 SGLang, or score a model that adds BOS"
            )));
        }
        n => return Err(bad(format!("{n} echoed tokens for a prompt of {} tokens (+1 generated): the server tokenized the text otherwise", texts.len()))),
    };
    for (j, text) in texts.iter().enumerate().skip(skipped) {
        let echoed = tokens[j - skipped];
        if echoed != text {
            return Err(bad(format!("echoed token {j} is {echoed:?}, ours {text:?}: the server's tokenizer differs from the model's")));
        }
    }
    if from <= skipped {
        return Err(bad("nothing before the first scored token"));
    }
    let mut scored = Scored { logprobs: Vec::new(), greedy: Vec::new() };
    for j in from..texts.len() {
        let at = j - skipped;
        let v = number(&values[at]).ok_or_else(|| bad(format!("token {j} has no log-prob (null inside the prompt)")))?;
        let greedy = tops.and_then(|t| t.get(at)).and_then(Value::as_object).map(|top| {
            // lm-eval's rule: the token's log-prob is the largest of the top log-probs.
            top.values().filter_map(Value::as_f64).all(|x| x as f32 <= v)
        });
        scored.logprobs.push(v);
        scored.greedy.push(greedy);
    }
    Ok(scored)
}

/// The next token's log-prob for each text in `candidates` (the strings of the tokens asked
/// about), from the answer to [`next_token_request`]: `None` for a candidate not among the top.
pub fn parse_next(answer: &Value, candidates: &[&str]) -> Result<Vec<Option<f32>>, BadAnswer> {
    let top = answer["choices"][0]["logprobs"]["top_logprobs"][0]
        .as_object()
        .ok_or_else(|| bad("no `top_logprobs` for the generated token"))?;
    Ok(candidates.iter().map(|c| top.get(*c).and_then(number)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    /// An echo answer as llama-cpp-python 0.3.36 gives it for a model that adds BOS (llama.py
    /// `_create_completion`): BOS left out of `tokens`, the first remaining log-prob null, the
    /// generated token last; `top_logprobs` string-keyed with the token itself among them.
    fn answer() -> Value {
        serde_json::from_str(
            r#"{"choices":[{"text":"Hello world!","index":0,"logprobs":{
                "tokens":["Hello"," world","!"],
                "text_offset":[0,5,11],
                "token_logprobs":[null,-2.5,-0.125],
                "top_logprobs":[null,{" world":-2.5,",":-0.5},{"!":-0.125}]}}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn echo_with_bos_left_out_is_aligned_by_count_and_token_text() {
        // Ours: BOS, "Hello", " world" (the generated "!" is not ours).
        let got = parse(&answer(), &texts(&["<bos>", "Hello", " world"]), 2, true).unwrap();
        assert_eq!(got, Scored { logprobs: vec![-2.5], greedy: vec![Some(false)] });
    }

    #[test]
    fn other_tokens_or_counts_are_refused() {
        assert!(parse(&answer(), &texts(&["<bos>", "Hello", " World"]), 2, true).unwrap_err().0.contains("tokenizer differs"));
        assert!(parse(&answer(), &texts(&["Hello", " world", "!", "?"]), 2, false).unwrap_err().0.contains("tokenized the text otherwise"));
        assert!(parse(&answer(), &texts(&["Hello", " world", "!"]), 2, false).unwrap_err().0.contains("shifted by one position"));
        let mut null = answer();
        null["choices"][0]["logprobs"]["token_logprobs"][1] = Value::Null;
        assert!(parse(&null, &texts(&["<bos>", "Hello", " world"]), 2, true).unwrap_err().0.contains("null inside the prompt"));
    }
}
