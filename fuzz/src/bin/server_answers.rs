//! What servers answer (JSON), through each API's parser: OpenAI-style completions with echo
//! and logprobs, vLLM's prompt_logprobs, TGI's details, SGLang's input_token_logprobs.
use invscale_servers::api::{openai, sglang, tgi, vllm};

fn main() {
    let texts: Vec<String> = ["Q", ":", " 2", "+2", "?", " A", ":", " 4"].iter().map(|s| s.to_string()).collect();
    let tokens: Vec<u32> = (1..9).collect();
    let prompts: Vec<&[u32]> = vec![&tokens[..], &tokens[..4]];
    afl::fuzz!(|data: &[u8]| {
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) else { return };
        let _ = openai::parse(&answer, &texts, 5, false);
        let _ = openai::parse_next(&answer, &[" 4", " 5"]);
        let _ = vllm::parse(&answer, &prompts, &[5, 2]);
        let _ = sglang::parse(&answer, &prompts, &[5, 2]);
        let _ = tgi::parse(&answer, &tokens, 5);
    });
}
