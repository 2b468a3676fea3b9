//! What the self-check found: each check with its outcome and what it saw (recorded in the
//! results whether it passed or not).

/// One check's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckLine {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub skipped: bool,
    pub lines: Vec<CheckLine>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.lines.iter().all(|l| l.ok)
    }
    pub(crate) fn add(&mut self, check: &'static str, ok: bool, detail: impl Into<String>) {
        self.lines.push(CheckLine { check, ok, detail: detail.into() });
    }
    /// What the log says of the check: each line, indented.
    pub fn summary(&self) -> String {
        if self.skipped {
            return "self-check skipped (--skip-server-check): the results say so".to_string();
        }
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        let lines: Vec<String> = self.lines.iter().map(|l| format!("  {} {}: {}", if l.ok { "ok  " } else { "FAIL" }, l.check, l.detail)).collect();
        format!("self-check {verdict}:\n{}", lines.join("\n"))
    }
    /// The failures, one a line, for the error message.
    pub fn failures(&self) -> String {
        self.lines.iter().filter(|l| !l.ok).map(|l| format!("{}: {}", l.check, l.detail)).collect::<Vec<_>>().join("\n")
    }
}
