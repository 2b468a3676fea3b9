//! A checkpoint's `tokenizer.json`: building the tokenizer, then encoding with it.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = invscale_fuzz::scratch_file("tokenizer.json", data);
        if let Ok(t) = invscale_tokenizer::Tokenizer::from_tokenizer_json(&path, None, None, false) {
            let _ = t.encode("Hello world, 123 ü");
        }
    });
}
