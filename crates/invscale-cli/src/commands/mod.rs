pub mod data;
pub mod logprobs;
pub mod progress;
pub mod run;
pub mod scale;
pub mod tasks;

/// Exit status for bad input: data, task files, arguments (clap also uses 2).
pub const BAD_INPUT: u8 = 2;

/// Shows the end of a long text (prompts end where the model continues), escapes visible.
pub fn tail(text: &str, max_chars: usize) -> String {
    let n = text.chars().count();
    if n <= max_chars {
        format!("{text:?}")
    } else {
        let tail: String = text.chars().skip(n - max_chars).collect();
        format!("…{tail:?} ({n} characters)")
    }
}
