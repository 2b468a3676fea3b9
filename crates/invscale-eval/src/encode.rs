//! From text requests to token sequences, exactly as the published setups built them
//! (SCORING.md §2): lm-eval's `_encode_pair` with its whitespace moving, its empty-context rule
//! and left truncation; and the prize pipeline's "last tokens of prompt + class", right truncation.

use invscale_tasks::spec::RequestMode;

/// Tokenisation without special tokens (BOS is the caller's decision).
pub trait Encoder {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String>;
}

/// How requests are turned into tokens for one run.
#[derive(Clone, Copy, Debug)]
pub struct EncodeSettings {
    pub mode: RequestMode,
    /// Put before every context (the BOS policy, resolved for the model).
    pub bos: Option<u32>,
    /// lm-eval's `prefix_token_id`: the context of an empty-context request (BOS, or EOS when the
    /// model has none), whatever the BOS policy.
    pub prefix_token: u32,
    /// The longest input the model is given (lm-eval's `max_length`; the prize used 1023).
    pub max_length: usize,
}

/// One request in tokens: the model reads `context` and scores `continuation` after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Never empty.
    pub context: Vec<u32>,
    /// Never empty.
    pub continuation: Vec<u32>,
    /// Tokens dropped to fit `max_length` (from the left in lm-eval mode, the right in prize mode).
    pub truncated: usize,
    /// One token spanned the join of context and continuation, so the continuation had no tokens
    /// of its own (lm-eval crashes here): the last token of the whole text was scored instead.
    pub boundary_fallback: bool,
}

impl Encoded {
    /// The tokens the model runs and scores, one sequence.
    pub fn tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.context.iter().chain(&self.continuation).copied()
    }
}

/// Python's `str.isspace`: Rust's whitespace plus the four ASCII separators `\x1c`..`\x1f`,
/// which `str.rstrip()` also removes.
pub fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

pub fn encode(enc: &dyn Encoder, settings: &EncodeSettings, context: &str, continuation: &str) -> Result<Encoded, String> {
    match settings.mode {
        RequestMode::LmEval => encode_lm_eval(enc, settings, context, continuation),
        RequestMode::Prize => encode_prize(enc, settings, context, continuation),
    }
}

fn with_bos(bos: Option<u32>, tokens: Vec<u32>) -> Vec<u32> {
    match bos {
        Some(b) => std::iter::once(b).chain(tokens).collect(),
        None => tokens,
    }
}

/// lm-eval `TemplateLM.loglikelihood` + `_encode_pair` (causal models) + the left truncation of
/// `_loglikelihood_tokens`.
fn encode_lm_eval(enc: &dyn Encoder, s: &EncodeSettings, context: &str, continuation: &str) -> Result<Encoded, String> {
    let (mut ctx, mut cont, whole) = if context.is_empty() {
        // The continuation alone, after BOS (or EOS); when it already starts with that token,
        // its first token becomes the context.
        let cont = enc.encode(continuation)?;
        let whole: Vec<u32> = std::iter::once(s.prefix_token).chain(cont.iter().copied()).collect();
        match cont.first() {
            Some(&first) if first == s.prefix_token => (vec![first], cont[1..].to_vec(), cont),
            _ => (vec![s.prefix_token], cont, whole),
        }
    } else {
        let kept = context.trim_end_matches(python_isspace);
        let (context, continuation) = (kept, format!("{}{continuation}", &context[kept.len()..]));
        let whole = with_bos(s.bos, enc.encode(&format!("{context}{continuation}"))?);
        let ctx = with_bos(s.bos, enc.encode(context)?);
        let cont = whole.get(ctx.len()..).unwrap_or_default().to_vec();
        (ctx, cont, whole)
    };
    let mut boundary_fallback = false;
    if cont.is_empty() {
        // lm-eval crashes (issues #1053, #1297, #3336); score the whole text's last token.
        let mut whole = whole;
        if whole.len() < 2 {
            // Nothing to condition on: put the prefix token first.
            whole.insert(0, s.prefix_token);
        }
        cont = vec![whole.pop().expect("at least two tokens")];
        ctx = whole;
        boundary_fallback = true;
    }
    // Keep the last `max_length + 1` tokens; the input is all of them but the last.
    let total = ctx.len() + cont.len();
    let mut truncated = 0;
    if total > s.max_length + 1 {
        truncated = total - (s.max_length + 1);
        if truncated >= ctx.len() {
            // The continuation alone is too long: keep one token of it as context.
            let all: Vec<u32> = ctx.iter().chain(&cont).copied().skip(truncated).collect();
            ctx = all[..1].to_vec();
            cont = all[1..].to_vec();
        } else {
            ctx.drain(..truncated);
        }
    }
    Ok(Encoded { context: ctx, continuation: cont, truncated, boundary_fallback })
}

/// The prize pipeline: tokenise `prompt + class` as one string, take its last `len(tok(class))`
/// tokens as the class, and cut the sequence from the right at `max_length` tokens.
fn encode_prize(enc: &dyn Encoder, s: &EncodeSettings, context: &str, continuation: &str) -> Result<Encoded, String> {
    let mut whole = with_bos(s.bos, enc.encode(&format!("{context}{continuation}"))?);
    if whole.is_empty() {
        whole.push(s.prefix_token);
    }
    let mut truncated = 0;
    if whole.len() > s.max_length {
        truncated = whole.len() - s.max_length;
        whole.truncate(s.max_length);
    }
    let class_len = enc.encode(continuation)?.len();
    // At least one token of context, at least one scored.
    let mut boundary_fallback = false;
    let n = if whole.len() < 2 {
        whole.insert(0, s.prefix_token);
        boundary_fallback = true;
        1
    } else if class_len == 0 || class_len >= whole.len() {
        boundary_fallback = true;
        class_len.clamp(1, whole.len() - 1)
    } else {
        class_len
    };
    let cont = whole.split_off(whole.len() - n);
    Ok(Encoded { context: whole, continuation: cont, truncated, boundary_fallback })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy tokenizer: greedy longest match over a fixed vocabulary, one id per byte otherwise.
    struct Toy(Vec<&'static str>);

    impl Encoder for Toy {
        fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
            let mut out = Vec::new();
            let mut rest = text;
            while !rest.is_empty() {
                let best = self.0.iter().enumerate().filter(|(_, w)| rest.starts_with(**w)).max_by_key(|(_, w)| w.len());
                match best {
                    Some((i, w)) => {
                        out.push(1000 + i as u32);
                        rest = &rest[w.len()..];
                    }
                    None => {
                        out.push(u32::from(rest.as_bytes()[0]));
                        rest = &rest[1..];
                    }
                }
            }
            Ok(out)
        }
    }

    fn settings(mode: RequestMode, bos: Option<u32>, max_length: usize) -> EncodeSettings {
        EncodeSettings { mode, bos, prefix_token: 1, max_length }
    }

    #[test]
    fn trailing_whitespace_moves_to_the_continuation() {
        let toy = Toy(vec![" Yes", "A:"]);
        let e = encode(&toy, &settings(RequestMode::LmEval, None, 100), "A: ", "Yes").unwrap();
        // context "A:" (one token), continuation " Yes" (one token) — not "A: " + "Yes".
        assert_eq!(e.context, vec![1001]);
        assert_eq!(e.continuation, vec![1000]);
        assert!(!e.boundary_fallback);
        // Python's isspace includes the ASCII separators that Rust's does not.
        let e = encode(&toy, &settings(RequestMode::LmEval, None, 100), "A:\x1f", "x").unwrap();
        assert_eq!(e.context, vec![1001]);
        assert_eq!(e.continuation, vec![0x1f, u32::from(b'x')]);
    }

    #[test]
    fn continuation_tokens_come_from_the_whole_text() {
        // "ab" is one token: context "xa" + continuation "b" tokenises as x, ab — the continuation
        // is whole[len(ctx):] = [] → the boundary fallback scores the last token of the whole.
        let toy = Toy(vec!["ab"]);
        let e = encode(&toy, &settings(RequestMode::LmEval, Some(7), 100), "xa", "b").unwrap();
        assert_eq!(e.context, vec![7, u32::from(b'x')]);
        assert_eq!(e.continuation, vec![1000]);
        assert!(e.boundary_fallback);
        // Continuation longer than the merge: ctx [x, a] (2 tokens), whole [x, ab, c] → cont [c].
        let e = encode(&toy, &settings(RequestMode::LmEval, None, 100), "xa", "bc").unwrap();
        assert_eq!(e.context, vec![u32::from(b'x'), u32::from(b'a')]);
        assert_eq!(e.continuation, vec![u32::from(b'c')]);
        assert!(!e.boundary_fallback);
    }

    #[test]
    fn empty_context_uses_the_prefix_token() {
        let toy = Toy(vec![]);
        let e = encode(&toy, &settings(RequestMode::LmEval, Some(9), 100), "", "hi").unwrap();
        assert_eq!(e.context, vec![1], "the prefix token, not the BOS policy's token");
        assert_eq!(e.continuation, vec![u32::from(b'h'), u32::from(b'i')]);
        // A continuation that starts with the prefix token: that token is the context.
        let e = encode(&toy, &settings(RequestMode::LmEval, None, 100), "", "\x01hi").unwrap();
        assert_eq!(e.context, vec![1]);
        assert_eq!(e.continuation, vec![u32::from(b'h'), u32::from(b'i')]);
    }

    #[test]
    fn left_truncation_keeps_the_last_max_length_plus_one_tokens() {
        let toy = Toy(vec![]);
        let e = encode(&toy, &settings(RequestMode::LmEval, Some(7), 4), "abcdef", "gh").unwrap();
        // 1 + 6 + 2 = 9 tokens; keep the last 5: d e f | g h.
        assert_eq!(e.truncated, 4);
        assert_eq!(e.context, b"def".iter().map(|&b| u32::from(b)).collect::<Vec<_>>());
        assert_eq!(e.continuation, vec![u32::from(b'g'), u32::from(b'h')]);
    }

    #[test]
    fn prize_mode_takes_the_last_tokens_and_truncates_from_the_right() {
        let toy = Toy(vec!["ab"]);
        // "xa" + "b" → [x, ab]; the class alone is 1 token → the class is [ab].
        let e = encode(&toy, &settings(RequestMode::Prize, None, 100), "xa", "b").unwrap();
        assert_eq!(e.context, vec![u32::from(b'x')]);
        assert_eq!(e.continuation, vec![1000]);
        assert!(!e.boundary_fallback);
        let e = encode(&toy, &settings(RequestMode::Prize, Some(7), 3), "cdef", "g").unwrap();
        assert_eq!(e.truncated, 3);
        assert_eq!(e.context, vec![7, u32::from(b'c')]);
        assert_eq!(e.continuation, vec![u32::from(b'd')], "right truncation, as the pipeline did");
    }
}
