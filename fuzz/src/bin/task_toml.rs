//! A task file (TOML): parsing, checks, templates compiled, `each` expanded.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data)
            && let Ok(spec) = invscale_tasks::TaskSpec::from_toml(text, std::path::Path::new("fuzz.toml"))
        {
            let _ = spec.expand();
        }
    });
}
