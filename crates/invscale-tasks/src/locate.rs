//! Finding a task's data: an explicit path, the `--data-dir` folders, then the Hugging Face hub
//! (its local cache first; a download unless offline). When nothing is found the error lists
//! every place looked and how to get the data.

use std::fmt;
use std::path::{Path, PathBuf};

use invscale_hub::{Hub, HubConfig, HubError, Repo, RepoKind};
use serde::Serialize;

use crate::read::Format;
use crate::spec::TaskSpec;

/// Where data files may be found.
#[derive(Clone, Debug)]
pub struct DataOptions {
    pub data_dirs: Vec<PathBuf>,
    pub hub: HubConfig,
}

impl DataOptions {
    /// `--data-dir` folders, plus `$INVSCALE_DATA_DIR` (`:`-separated), plus the hub settings
    /// of the environment.
    pub fn from_env(data_dirs: Vec<PathBuf>) -> Self {
        let mut dirs = data_dirs;
        if let Some(v) = std::env::var_os("INVSCALE_DATA_DIR") {
            dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        DataOptions { data_dirs: dirs, hub: HubConfig::from_env() }
    }
}

/// How a data file was found (recorded in results).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Named by the task file or on the command line.
    Path,
    /// Found in a `--data-dir` folder.
    DataDir,
    /// From the hub (its local cache or a download).
    Hub { repo: String, revision: String, commit: String, file: String },
}

#[derive(Debug)]
pub struct NotFound {
    pub task: String,
    pub looked: Vec<String>,
    pub hub: Option<String>,
    pub how_to_get: Vec<String>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "no data for task `{}`", self.task)?;
        if !self.looked.is_empty() {
            writeln!(f, "  looked for:")?;
            for l in &self.looked {
                writeln!(f, "    {l}")?;
            }
        }
        if let Some(h) = &self.hub {
            writeln!(f, "  hub: {}", h.replace('\n', "\n    "))?;
        }
        writeln!(f, "  to get it:")?;
        for h in &self.how_to_get {
            writeln!(f, "    - {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NotFound {}

/// The files to read for `spec`, in order.
pub fn locate(spec: &TaskSpec, opts: &DataOptions) -> Result<Vec<(PathBuf, Origin)>, NotFound> {
    let mut looked = Vec::new();
    if let Some(path) = &spec.source.path {
        if path.is_file() {
            return Ok(vec![(path.clone(), Origin::Path)]);
        }
        return Err(NotFound {
            task: spec.name.clone(),
            looked: vec![format!("{} (named by the task file; not found)", path.display())],
            hub: None,
            how_to_get: vec!["fix `source.path` in the task file, relative to the task file's folder".into()],
        });
    }
    for dir in &opts.data_dirs {
        // The folder itself, then its subfolders (`--data-dir shared/data` holds one folder a
        // source: inverse_scaling/, truthfulqa/, model_written_evals/).
        let mut folders = vec![dir.clone()];
        let mut subfolders: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        subfolders.sort();
        folders.extend(subfolders);
        for folder in &folders {
            for candidate in data_dir_candidates(spec, folder) {
                if candidate.is_file() {
                    return Ok(vec![(candidate, Origin::DataDir)]);
                }
            }
        }
        looked.push(describe_candidates(spec, dir));
    }
    let mut hub_problem = None;
    if let Some(hf) = &spec.source.hf {
        let repo = Repo::new(hf.repo.clone(), RepoKind::Dataset, hf.revision.clone());
        match from_hub(&Hub::new(opts.hub.clone()), &repo, hf.config.as_deref(), &hf.split) {
            Ok(files) => return Ok(files),
            // The advice on getting the data is given once, below.
            Err(e) => hub_problem = Some(e.lines().filter(|l| !l.trim_start().starts_with("to get it")).collect::<Vec<_>>().join("\n")),
        }
    }
    let mut how = Vec::new();
    if let Some(r) = &spec.source.release {
        how.push(format!(
            "put the release file `{}` (`invscale tasks` names each task's source) in a folder and pass it with --data-dir",
            r.file
        ));
    }
    if let Some(hf) = &spec.source.hf {
        if opts.hub.offline {
            how.push(format!(
                "unset HF_HUB_OFFLINE on a machine with network access: invscale downloads {} (split {}) into the hub cache {}",
                hf.repo,
                hf.split,
                opts.hub.cache_dir.display()
            ));
        }
        how.push(format!(
            "or fetch it with Python's hub client: huggingface-cli download --repo-type dataset {}",
            hf.repo
        ));
    }
    Err(NotFound { task: spec.name.clone(), looked, hub: hub_problem, how_to_get: how })
}

/// The file names a task's data may have in a `--data-dir` folder.
pub fn data_dir_candidates(spec: &TaskSpec, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(r) = &spec.source.release {
        out.push(dir.join(&r.file));
        out.push(dir.join("official_release").join(&r.file));
    }
    if let Some(hf) = &spec.source.hf {
        let name = hf.repo.rsplit('/').next().unwrap_or(&hf.repo);
        for ext in Format::EXTENSIONS {
            out.push(dir.join(format!("{name}.{ext}")));
        }
        for ext in Format::EXTENSIONS {
            out.push(dir.join(name).join(format!("{}.{ext}", hf.split)));
        }
        if let Some(config) = &hf.config {
            for ext in Format::EXTENSIONS {
                out.push(dir.join(name).join(config).join(format!("{}.{ext}", hf.split)));
            }
        }
    }
    out
}

/// The candidates of one folder in brace notation: `DIR/{a.jsonl, b.{jsonl,json,csv,parquet}}`.
fn describe_candidates(spec: &TaskSpec, dir: &Path) -> String {
    let exts = format!("{{{}}}", Format::EXTENSIONS.join(","));
    let mut names = Vec::new();
    if let Some(r) = &spec.source.release {
        names.push(r.file.clone());
        names.push(format!("official_release/{}", r.file));
    }
    if let Some(hf) = &spec.source.hf {
        let name = hf.repo.rsplit('/').next().unwrap_or(&hf.repo);
        names.push(format!("{name}.{exts}"));
        names.push(format!("{name}/{}.{exts}", hf.split));
        if let Some(config) = &hf.config {
            names.push(format!("{name}/{config}/{}.{exts}", hf.split));
        }
    }
    format!("in {} and its subfolders: {}", dir.display(), names.join(", "))
}

/// The files of one configuration: those under its folder (`multiple_choice/validation-….parquet`);
/// without a configuration, every file.
fn config_files(files: &[String], config: Option<&str>) -> Vec<String> {
    match config {
        Some(c) => files.iter().filter(|f| f.starts_with(&format!("{c}/"))).cloned().collect(),
        None => files.to_vec(),
    }
}

fn from_hub(hub: &Hub, repo: &Repo, config: Option<&str>, split: &str) -> Result<Vec<(PathBuf, Origin)>, String> {
    let listing = hub.listing(repo).map_err(|e| e.to_string())?;
    let mut chosen = select_split_files(&config_files(&listing.files, config), split);
    let mut source_repo = repo.clone();
    let mut commit = listing.commit.clone();
    if chosen.is_empty() {
        // Script-based datasets have no data files of their own; the hub's parquet conversion
        // of them lives on a branch. (Loading scripts are code and are never run.)
        let converted = Repo::new(repo.id.clone(), RepoKind::Dataset, "refs/convert/parquet");
        match hub.listing(&converted) {
            Ok(l) => {
                chosen = select_split_files(&config_files(&l.files, config), split);
                source_repo = converted;
                commit = l.commit;
            }
            Err(HubError::RepoNotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if chosen.is_empty() {
        let of = config.map_or(String::new(), |c| format!(" in configuration `{c}`"));
        return Err(format!(
            "{repo}: no data file of split `{split}`{of} among {} file(s) ({})",
            listing.files.len(),
            listing.files.join(", ")
        ));
    }
    let mut out = Vec::new();
    for file in chosen {
        let path = hub.file(&source_repo, &commit, &file).map_err(|e| e.to_string())?;
        out.push((
            path,
            Origin::Hub { repo: source_repo.id.clone(), revision: source_repo.revision.clone(), commit: commit.clone(), file },
        ));
    }
    Ok(out)
}

const KNOWN_SPLITS: &[&str] = &["train", "test", "validation", "valid", "val", "dev", "eval"];

fn split_aliases(split: &str) -> &[&str] {
    match split {
        "validation" | "valid" | "val" | "dev" => &["validation", "valid", "val", "dev"],
        "test" | "eval" => &["test", "eval"],
        "train" => &["train"],
        _ => &[],
    }
}

/// The data files of one split, following the `datasets` library's file-name conventions: a
/// file belongs to a split when the split's name appears in its path delimited by
/// `-._ /` or digits (`data/train-00000-of-00001.parquet`, `test.jsonl`, `train/0000.parquet`);
/// when no file names any split, every data file is the `train` split. Of several formats,
/// the one with the most files wins (ties: parquet, jsonl, json, csv).
pub fn select_split_files(files: &[String], split: &str) -> Vec<String> {
    let data: Vec<&String> = files
        .iter()
        .filter(|f| {
            let base = f.rsplit('/').next().unwrap_or(f);
            !base.starts_with('.') && Format::from_path(Path::new(f.as_str())).is_some()
        })
        .collect();
    let tokens = |f: &str| -> Vec<String> {
        f.split(|c: char| "-._ /".contains(c) || c.is_ascii_digit())
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let wanted: Vec<&str> = if split_aliases(split).is_empty() { vec![split] } else { split_aliases(split).to_vec() };
    let any_named = data.iter().any(|f| tokens(f).iter().any(|t| KNOWN_SPLITS.contains(&t.as_str()) || t == split));
    let mut chosen: Vec<&String> = if any_named {
        data.into_iter().filter(|f| tokens(f).iter().any(|t| wanted.contains(&t.as_str()))).collect()
    } else if split == "train" {
        data
    } else {
        Vec::new()
    };
    // One format only.
    let rank = |f: &str| match Format::from_path(Path::new(f)) {
        Some(Format::Parquet) => 0,
        Some(Format::Jsonl) => 1,
        Some(Format::Json) => 2,
        _ => 3,
    };
    let best = (0..4)
        .map(|r| (chosen.iter().filter(|f| rank(f) == r).count(), std::cmp::Reverse(r)))
        .max()
        .map(|(_, std::cmp::Reverse(r))| r);
    if let Some(best) = best {
        chosen.retain(|f| rank(f) == best);
    }
    let mut out: Vec<String> = chosen.into_iter().cloned().collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::select_split_files;

    fn sel(files: &[&str], split: &str) -> Vec<String> {
        select_split_files(&files.iter().map(|s| s.to_string()).collect::<Vec<_>>(), split)
    }

    #[test]
    fn split_files_follow_the_datasets_conventions() {
        let parquet = ["README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", "data/test-00000-of-00001.parquet"];
        assert_eq!(sel(&parquet, "train"), ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]);
        assert_eq!(sel(&parquet, "test"), ["data/test-00000-of-00001.parquet"]);
        assert!(sel(&parquet, "validation").is_empty());
        // No split in any name: everything is `train`.
        assert_eq!(sel(&[".gitattributes", "README.md", "neqa_classification.jsonl"], "train"), ["neqa_classification.jsonl"]);
        assert!(sel(&["neqa_classification.jsonl"], "test").is_empty());
        // Converted-parquet branch layout.
        assert_eq!(sel(&["default/train/0000.parquet", "default/test/0000.parquet"], "test"), ["default/test/0000.parquet"]);
        // The most common format wins.
        assert_eq!(sel(&["train.csv", "train.parquet", "data/train-1.parquet"], "train"), ["data/train-1.parquet", "train.parquet"]);
        // A split name inside a word does not count.
        assert_eq!(sel(&["constrained.jsonl", "test.jsonl"], "test"), ["test.jsonl"]);
        assert_eq!(sel(&["validation.csv", "dev.csv"], "validation"), ["dev.csv", "validation.csv"]);
    }
}
