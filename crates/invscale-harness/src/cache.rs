//! Where a model's finished requests are kept between runs: a score cache per model file's
//! fingerprint and precision, under `--cache-dir`, `$INVSCALE_CACHE_DIR` or
//! `~/.cache/invscale/scores`.

use std::path::{Path, PathBuf};

use invscale_eval::{ScoreCache, fingerprint};

use crate::error::HarnessError;
use crate::models::{Backend, LoadedModel};
use crate::observer::Observer;

/// Whether and where finished requests are kept.
#[derive(Clone, Debug, Default)]
pub struct CacheOptions {
    /// `None`: `$INVSCALE_CACHE_DIR`, else `~/.cache/invscale/scores`.
    pub dir: Option<PathBuf>,
    /// Keep nothing between runs (`--no-cache`).
    pub disabled: bool,
}

impl CacheOptions {
    /// The folder the caches go in.
    pub fn folder(&self) -> Option<PathBuf> {
        if let Some(d) = &self.dir {
            return Some(d.clone());
        }
        if let Some(d) = std::env::var_os("INVSCALE_CACHE_DIR") {
            return Some(PathBuf::from(d));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/invscale/scores"))
    }
}

/// The model's fingerprint and its score cache; damaged entries are reported as warnings (and
/// will be recomputed). A local model is known by its file and precision; a served one by the
/// model file whose tokenizer builds the requests and what the server says of the model (its
/// address left out, so a server restarted elsewhere resumes), its every answer kept in a second
/// cache as it comes.
pub fn open(model: &LoadedModel, options: &CacheOptions, observer: &mut dyn Observer) -> Result<(String, ScoreCache), HarnessError> {
    let path = &model.info.path;
    let (identity, namespace) = match &model.backend {
        Backend::Local(_) => (model.info.dtype.to_string(), model.info.arch.clone()),
        Backend::Server(s) => (format!("server {}", s.server.about), "server".to_string()),
    };
    let fingerprint = fingerprint(path, &identity).map_err(|e| HarnessError::Io(format!("{}: {e}", path.display())))?;
    let cache = if options.disabled {
        ScoreCache::disabled()
    } else {
        let dir = options.folder().ok_or_else(|| HarnessError::Io("no cache folder: set --cache-dir or $HOME".into()))?;
        if let Backend::Server(s) = &model.backend {
            let answers = open_in(&dir, &format!("{namespace}-{fingerprint}-answers"))?;
            for p in &answers.problems {
                observer.warning(&format!("server answers: {p}"));
            }
            observer.note(&format!("server answers: {} answered sequences on record", answers.len()));
            s.keep_answers_in(answers);
        }
        open_in(&dir, &format!("{namespace}-{fingerprint}"))?
    };
    for p in &cache.problems {
        observer.warning(&format!("score cache: {p}"));
    }
    if let Some(p) = cache.path() {
        observer.note(&format!("score cache: {} ({} finished requests on record)", p.display(), cache.len()));
    }
    Ok((fingerprint, cache))
}

fn open_in(dir: &Path, name: &str) -> Result<ScoreCache, HarnessError> {
    ScoreCache::open(dir, name).map_err(|e| HarnessError::Io(format!("score cache in {}: {e}", dir.display())))
}
