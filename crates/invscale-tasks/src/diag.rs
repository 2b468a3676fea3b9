//! Diagnostics: every problem found in a data file, with the file, the line and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// Where in a file: text formats have lines; parquet has rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    File,
    Line(usize),
    Row(usize),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub location: Location,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line: error: field `answer_index`: message` — the form editors and CI logs link.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match self.location {
            Location::File => {}
            Location::Line(n) => write!(f, ":{n}")?,
            Location::Row(n) => write!(f, ": row {n}")?,
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub struct Diagnostics {
    file: PathBuf,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &Path) -> Self {
        Diagnostics { file: file.to_path_buf(), items: Vec::new() }
    }
    pub fn file(&self) -> &Path {
        &self.file
    }
    pub fn error(&mut self, location: Location, field: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, location, field, message.into());
    }
    pub fn warning(&mut self, location: Location, field: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Warning, location, field, message.into());
    }
    fn push(&mut self, severity: Severity, location: Location, field: Option<&str>, message: String) {
        self.items.push(Diagnostic {
            severity,
            file: self.file.clone(),
            location,
            field: field.map(str::to_string),
            message,
        });
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }
}
