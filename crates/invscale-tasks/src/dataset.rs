//! A task's data, loaded and checked: the documents, where they came from, and every problem.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, Diagnostics, Location, Severity};
use crate::docs::{Document, to_documents};
use crate::locate::Origin;
use crate::read::read_rows;
use crate::spec::TaskSpec;

#[derive(Clone, Debug, Serialize)]
pub struct DataFile {
    pub path: PathBuf,
    pub sha256: String,
    pub origin: Origin,
    /// Whether the file is byte-identical to the official release file (when one is known).
    pub official: Option<bool>,
}

#[derive(Debug)]
pub struct Dataset {
    pub spec: TaskSpec,
    pub files: Vec<DataFile>,
    pub docs: Vec<Document>,
    /// Warnings (errors make loading fail).
    pub diagnostics: Vec<Diagnostic>,
}

/// Loading failed: the data has errors. Carries every diagnostic, warnings included.
#[derive(Debug)]
pub struct DataError {
    pub task: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl DataError {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        let n = self.errors().count();
        writeln!(f, "task `{}`: the data has {n} error(s)", self.task)?;
        for d in self.errors().take(SHOWN) {
            writeln!(f, "  {d}")?;
        }
        if n > SHOWN {
            writeln!(f, "  … and {} more (`invscale data validate` lists them all)", n - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for DataError {}

/// The sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Reads, maps and validates every file of a task (several for sharded hub data), in order.
/// Returns the dataset if there were no errors; every problem otherwise.
pub fn load(spec: &TaskSpec, files: &[(PathBuf, Origin)]) -> Result<Dataset, DataError> {
    let (dataset, diagnostics) = check(spec, files);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(DataError { task: spec.name.clone(), diagnostics });
    }
    Ok(Dataset { diagnostics, ..dataset })
}

/// Like [`load`], but always returns what could be read, with every diagnostic
/// (`invscale data validate`).
pub fn check(spec: &TaskSpec, files: &[(PathBuf, Origin)]) -> (Dataset, Vec<Diagnostic>) {
    let mut all = Vec::new();
    let mut docs = Vec::new();
    let mut data_files = Vec::new();
    for (path, origin) in files {
        let mut diags = Diagnostics::new(path);
        let rows = read_rows(path, &mut diags);
        let mut file_docs = to_documents(rows, spec, &mut diags);
        let sha256 = sha256_file(path).unwrap_or_default();
        let official = spec.source.release.as_ref().and_then(|r| {
            let same_name = path.file_name().is_some_and(|n| Some(n) == Path::new(&r.file).file_name());
            r.sha256.as_ref().filter(|_| same_name).map(|want| want == &sha256)
        });
        if official == Some(false) {
            diags.warning(
                Location::File,
                None,
                format!(
                    "differs from the official release file (sha256 {sha256}, official {}): scores may not match published numbers",
                    spec.source.release.as_ref().and_then(|r| r.sha256.as_deref()).unwrap_or("?")
                ),
            );
        }
        for d in &mut file_docs {
            d.id += docs.len();
        }
        docs.extend(file_docs);
        all.extend(diags.items);
        data_files.push(DataFile { path: path.clone(), sha256, origin: origin.clone(), official });
    }
    let no_errors = !all.iter().any(|d| d.severity == Severity::Error);
    if let (Some(want), true, Some((first, _))) = (spec.source.rows, no_errors, files.first())
        && docs.len() != want
    {
        all.push(Diagnostic {
            severity: Severity::Warning,
            file: first.clone(),
            location: Location::File,
            field: None,
            message: format!("{} documents, but the published `{}` has {want}", docs.len(), spec.name),
        });
    }
    (Dataset { spec: spec.clone(), files: data_files, docs, diagnostics: Vec::new() }, all)
}
