//! The Python list-literal parser (the prize files' `classes`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = invscale_tasks::pylit::parse_str_list(text);
        }
    });
}
