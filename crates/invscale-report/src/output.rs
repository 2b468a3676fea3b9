//! Where files go, as lm-eval puts them with `--output_path`: a path ending in `.json` names the
//! results file (`<stem>_<date>.json`, samples beside it); anything else is a folder that gets
//! `<model_name_sanitized>/results_<date>.json` and `samples_<task>_<date>.jsonl`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::sanitize_model_name;

pub struct OutputPaths {
    pub results: PathBuf,
    pub samples_dir: PathBuf,
    pub date_id: String,
}

impl OutputPaths {
    /// `date_id` is lm-eval's `datetime.now().isoformat()` with `:` replaced by `-`.
    pub fn new(output_path: &Path, model: &str, date_id: &str) -> OutputPaths {
        if output_path.extension().is_some_and(|e| e == "json") {
            let stem = output_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let dir = output_path.parent().map(Path::to_path_buf).unwrap_or_default();
            OutputPaths { results: dir.join(format!("{stem}_{date_id}.json")), samples_dir: dir, date_id: date_id.into() }
        } else {
            let dir = output_path.join(sanitize_model_name(model));
            OutputPaths { results: dir.join(format!("results_{date_id}.json")), samples_dir: dir, date_id: date_id.into() }
        }
    }

    pub fn samples(&self, task: &str) -> PathBuf {
        self.samples_dir.join(format!("samples_{task}_{}.jsonl", self.date_id))
    }
}

/// lm-eval's `date_id` (`datetime.now().isoformat()` with `-` for `:`), in UTC:
/// `2026-11-22T17-36-55.123456`.
pub fn date_id(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Writes a file whole or not at all: a temporary file beside it, synced, then renamed.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!(
        "{}.partial",
        path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_lm_eval_makes_them() {
        let p = OutputPaths::new(Path::new("out"), "EleutherAI/pythia-70m", "2026-11-22T17-36-55.123456");
        assert_eq!(p.results, Path::new("out/EleutherAI__pythia-70m/results_2026-11-22T17-36-55.123456.json"));
        assert_eq!(p.samples("neqa"), Path::new("out/EleutherAI__pythia-70m/samples_neqa_2026-11-22T17-36-55.123456.jsonl"));
        let p = OutputPaths::new(Path::new("runs/r.json"), "m", "D");
        assert_eq!(p.results, Path::new("runs/r_D.json"));
        assert_eq!(p.samples("t"), Path::new("runs/samples_t_D.jsonl"));
    }

    #[test]
    fn date_ids() {
        use std::time::{Duration, UNIX_EPOCH};
        // date -u -d @1795369015.5 → 2026-11-22 17:36:55 UTC
        assert_eq!(date_id(UNIX_EPOCH + Duration::from_micros(1_795_369_015_500_000)), "2026-11-22T17-36-55.500000");
        assert_eq!(date_id(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00-00-00.000000");
    }

    #[test]
    fn atomic_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/results.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(fs::read_dir(dir.path().join("a")).unwrap().count(), 1);
    }
}
