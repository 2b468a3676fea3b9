//! A checkpoint's `config.json`: the dimensions and rotary settings the runtime reads.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = invscale_fuzz::scratch_file("config.json", data);
        if let Ok(c) = invscale_models::weights::checkpoint::HfConfig::read(path.parent().unwrap()) {
            let _ = c.model_type();
            let _ = invscale_models::weights::checkpoint::Dims::from_config(&c);
            let _ = c.rope(None, 10000.0);
            let _ = c.text_config();
        }
    });
}
