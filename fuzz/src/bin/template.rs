//! Templates over a row: `TEMPLATE \0 ROW-JSON`; the value and the rendered text.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        let (template, row) = text.split_once('\0').unwrap_or((text, "{\"question\": \"Why?\", \"a\": [\"x\", \"y\"]}"));
        let Ok(serde_json::Value::Object(row)) = serde_json::from_str::<serde_json::Value>(row) else { return };
        if invscale_tasks::template::check(template).is_ok() {
            let _ = invscale_tasks::template::value(template, &row);
            let _ = invscale_tasks::template::render(template, &row);
        }
    });
}
