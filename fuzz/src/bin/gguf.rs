//! A GGUF file's header, metadata and tensor table, then the tokenizer it describes.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = invscale_fuzz::scratch_file("model.gguf", data);
        if let Ok(file) = invscale_models::weights::gguf::GgufFile::open(&path) {
            let _ = invscale_models::load::family_hint(&path);
            let _ = file.architecture();
            if let Ok(tokenizer) = file.tokenizer() {
                let _ = tokenizer.encode("Hello world, 123 ü");
            }
        }
    });
}
