//! The data readers (JSONL, JSON, CSV, parquet; the first byte picks the format) and the mapping
//! of rows to documents with a classification task's columns.
use invscale_tasks::diag::Diagnostics;

fn main() {
    let spec = invscale_tasks::Registry::builtin().task("neqa").unwrap().clone();
    afl::fuzz!(|data: &[u8]| {
        let Some((&which, body)) = data.split_first() else { return };
        let ext = ["jsonl", "json", "csv", "parquet"][usize::from(which) % 4];
        let path = invscale_fuzz::scratch_file(&format!("data.{ext}"), body);
        let mut diags = Diagnostics::new(&path);
        let rows = invscale_tasks::read::read_rows(&path, &mut diags);
        let docs = invscale_tasks::docs::to_documents(rows, &spec, &mut diags);
        for d in &docs {
            let _ = d.requests(&spec.scoring.delimiter);
        }
    });
}
