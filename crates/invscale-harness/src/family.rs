//! A model family: the models of a trend, from `--models A,B,C` or a family file (TOML), each
//! with what its size is on the trend's axis.
//!
//! ```toml
//! name = "Pythia"            # the line's label for models that name none
//! [[model]]
//! path = "EleutherAI/pythia-160m"
//! train_tokens = 300e9       # for --x train-tokens
//! [[model]]
//! path = "Qwen/Qwen3-235B-A22B"  # the tokenizer; the weights are on the server
//! server = "http://gpu-node:8000"
//! params = 235e9
//! [[model]]
//! results = "runs/pythia-1b"    # a finished run's output folder (invscale or lm_eval): no rerun
//! params = 1.01e9
//! ```

use std::path::Path;

use invscale_models::Precision;
use invscale_scale::Axis;
use invscale_servers::{ApiKind, ServerOptions};

use crate::models::{ModelRequest, Placement};

/// One `[[model]]` of a family file, or one of `--models`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// A `.gguf`, a folder or a hub id (empty for a stored run).
    #[serde(default)]
    pub path: String,
    /// A finished run's output folder instead of a model: `invscale run --output-path DIR
    /// --log-samples` or `lm_eval --output_path DIR --log_samples`, read without a rerun.
    pub results: Option<String>,
    pub label: Option<String>,
    /// One line per family in the plots.
    pub family: Option<String>,
    /// Parameters, when the weights should not be counted.
    pub params: Option<f64>,
    pub train_tokens: Option<f64>,
    pub train_flops: Option<f64>,
    /// The training step of a checkpoint, for `--x step` (else read from `@stepN`).
    pub step: Option<f64>,
    /// Scored on this server (`run --server`'s URL) instead of in-process; `path` then gives the
    /// tokenizer and names the model in the cache.
    pub server: Option<String>,
    /// The model's name on the server (default: its only one).
    pub served_model: Option<String>,
    /// The server's API (default: found from its endpoints).
    #[serde(default, deserialize_with = "api_kind")]
    pub server_api: Option<ApiKind>,
}

/// `server_api = "vllm"`: one of `run --server-api`'s names.
fn api_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ApiKind>, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(d)?;
    if name == "auto" {
        return Ok(None);
    }
    ApiKind::parse(&name).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("unknown server_api `{name}`: one of auto, {}", ApiKind::NAMES.join(", ")))
    })
}

impl Member {
    pub fn new(path: &str) -> Member {
        Member {
            path: path.into(),
            results: None,
            label: None,
            family: None,
            params: None,
            train_tokens: None,
            train_flops: None,
            step: None,
            server: None,
            served_model: None,
            server_api: None,
        }
    }

    /// How this member is scored: in-process at `precision` on `devices`, or on its server with
    /// `tuning`'s concurrency, timeout, retries and self-check.
    pub fn request(&self, precision: Precision, devices: &Placement, tuning: &ServerOptions) -> ModelRequest {
        let server = self.server.as_ref().map(|url| ServerOptions {
            url: url.clone(),
            api: self.server_api,
            served_model: self.served_model.clone(),
            ..tuning.clone()
        });
        ModelRequest { reference: self.path.clone(), gguf_file: None, precision, devices: devices.clone(), server }
    }

    /// The member's size on `axis` (parameters: `params`, else the count from the weights).
    pub fn size(&self, axis: Axis, counted_params: u64) -> f64 {
        match axis {
            Axis::Parameters => self.params.unwrap_or(counted_params as f64),
            Axis::TrainingTokens => self.train_tokens.unwrap_or(f64::NAN),
            Axis::TrainingFlops => self.train_flops.unwrap_or(f64::NAN),
            Axis::TrainingStep => self.step.or_else(|| invscale_scale::report::step_of(&self.path).map(|s| s as f64)).unwrap_or(f64::NAN),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyFile {
    name: Option<String>,
    model: Vec<Member>,
}

/// A family file's members; errors name the file and line.
pub fn read(path: &Path) -> Result<Vec<Member>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: FamilyFile = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        format!("{}{}: {}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), e.message())
    })?;
    let name = file.name;
    let base = path.parent().unwrap_or(Path::new(""));
    let members: Vec<Member> = file
        .model
        .into_iter()
        .map(|m| Member {
            path: if m.path.is_empty() { String::new() } else { member_path(base, &m.path) },
            results: m.results.as_deref().map(|r| member_path(base, r)),
            family: m.family.or_else(|| name.clone()),
            ..m
        })
        .collect();
    if let Some((i, m)) = members.iter().enumerate().find(|(_, m)| m.path.is_empty() == m.results.is_none()) {
        let what = if m.path.is_empty() { "neither `path` nor `results`" } else { "both `path` and `results`" };
        return Err(format!("{}: [[model]] number {}: {what}; give one (a model to run, or a finished run's folder)", path.display(), i + 1));
    }
    Ok(members)
}

/// A family file's `path`: `~/` is the home folder, a relative path that exists beside the
/// family file is taken from there, anything else (a hub id) as written.
fn member_path(base: &Path, path: &str) -> String {
    if let (Some(rest), Some(home)) = (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        return Path::new(&home).join(rest).display().to_string();
    }
    let beside = base.join(path);
    if Path::new(path).is_relative() && beside.exists() { beside.display().to_string() } else { path.to_string() }
}

/// Whether the members make a trend on `axis`: at least two, each with its size.
pub fn check(members: &[Member], axis: Axis) -> Result<(), String> {
    if members.len() < 2 {
        return Err("a trend needs at least two models (--models A,B or a family file)".into());
    }
    let missing = members.iter().find(|m| match axis {
        Axis::Parameters => false,
        Axis::TrainingTokens => m.train_tokens.is_none(),
        Axis::TrainingFlops => m.train_flops.is_none(),
        Axis::TrainingStep => m.size(axis, 0).is_nan(),
    });
    if let Some(m) = missing {
        let field = match axis {
            Axis::TrainingStep => "a step (`@stepN` in its name, or `step` in the family file)",
            _ => "`train_tokens`/`train_flops` in the family file",
        };
        return Err(format!("--x needs {field} for every model; `{}` has none", m.path));
    }
    // Only a GGUF's tensors can be counted without the weights (which are on the server).
    let uncounted = members.iter().find(|m| {
        axis == Axis::Parameters && m.server.is_some() && m.params.is_none() && !m.path.to_ascii_lowercase().ends_with(".gguf")
    });
    if let Some(m) = uncounted {
        return Err(format!(
            "`{}` is scored on a server, so its parameters cannot be counted here (its weights are there): give `params` in the family file",
            m.path
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_step_comes_from_the_revision_or_the_file() {
        let at = Member::new("EleutherAI/pythia-410m@step143000");
        assert_eq!(at.size(Axis::TrainingStep, 0), 143000.0);
        let given = Member { step: Some(5.0), ..Member::new("some/model") };
        assert_eq!(given.size(Axis::TrainingStep, 0), 5.0);
        let neither = [Member::new("a/b@main"), Member::new("a/b@step1")];
        let e = check(&neither, Axis::TrainingStep).unwrap_err();
        assert!(e.contains("a step (`@stepN`") && e.contains("a/b@main"), "{e}");
        assert!(check(&[Member::new("a/b@step1"), Member::new("a/b@step2")], Axis::TrainingStep).is_ok());
    }
}
