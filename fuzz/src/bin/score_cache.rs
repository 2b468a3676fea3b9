//! The score cache's file (`<namespace>.scores`), as a resumed run reads it.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = invscale_fuzz::scratch_file("fuzz.scores", data);
        if let Ok(cache) = invscale_eval::ScoreCache::open(path.parent().unwrap(), "fuzz") {
            let _ = cache.len();
        }
    });
}
