//! What `--model` names: a `.gguf` file, a local folder, or a hub id (`org/name`, optionally
//! `@revision`), fetched into the hub cache with the same code as the datasets.

use std::path::{Path, PathBuf};

use invscale_hub::{Hub, Repo, RepoKind};

use crate::error::{ModelError, Result};

/// Where a model's files are, once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// One GGUF file (weights, config and tokenizer inside).
    Gguf(PathBuf),
    /// A Hugging Face checkpoint folder: `config.json`, `tokenizer.json`, safetensors.
    Checkpoint(PathBuf),
}

impl ModelSource {
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::Checkpoint(p) => p,
        }
    }
}

fn is_gguf(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".gguf")
}

/// What of a model is needed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needed {
    /// Everything to run it in-process.
    Weights,
    /// Its tokenizer (and config) only: the model runs on a server. A checkpoint's weights are
    /// then not fetched (a 400B model's tokenizer is a few megabytes), and a folder holding just
    /// a `tokenizer.json` will do.
    Tokenizer,
}

/// Resolves `reference` to run it here. `gguf_file` picks one file where a folder or repository
/// holds several (lm-eval's `gguf_file=` model argument).
pub fn resolve(reference: &str, gguf_file: Option<&str>, hub: &Hub) -> Result<ModelSource> {
    resolve_for(reference, gguf_file, hub, Needed::Weights)
}

/// Resolves `reference` for what is `needed` of it.
pub fn resolve_for(reference: &str, gguf_file: Option<&str>, hub: &Hub, needed: Needed) -> Result<ModelSource> {
    let path = Path::new(reference);
    if path.is_file() {
        return if is_gguf(reference) {
            Ok(ModelSource::Gguf(path.to_path_buf()))
        } else {
            Err(ModelError::unsupported(path, "a model file must be a .gguf; for a Hugging Face checkpoint, name its folder"))
        };
    }
    if path.is_dir() {
        return from_folder(path, gguf_file, needed);
    }
    let looks_like_hub_id = reference.split('@').next().is_some_and(|id| {
        let parts: Vec<&str> = id.split('/').collect();
        (1..=2).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
    });
    if !looks_like_hub_id || reference.starts_with('.') || reference.starts_with('/') {
        return Err(ModelError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
    }
    let (id, revision) = reference.split_once('@').unwrap_or((reference, "main"));
    from_hub(hub, &Repo::new(id, RepoKind::Model, revision), gguf_file, needed)
}

fn from_folder(dir: &Path, gguf_file: Option<&str>, needed: Needed) -> Result<ModelSource> {
    if let Some(f) = gguf_file {
        let p = dir.join(f);
        return if p.is_file() { Ok(ModelSource::Gguf(p)) } else { Err(ModelError::io(&p, std::io::ErrorKind::NotFound.into())) };
    }
    if dir.join("config.json").is_file() || (needed == Needed::Tokenizer && dir.join("tokenizer.json").is_file()) {
        return Ok(ModelSource::Checkpoint(dir.to_path_buf()));
    }
    let mut ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_gguf))
        .collect();
    ggufs.sort();
    match ggufs.len() {
        1 => Ok(ModelSource::Gguf(ggufs.remove(0))),
        0 if needed == Needed::Tokenizer => Err(ModelError::corrupt(dir, "no tokenizer here: neither a tokenizer.json nor a .gguf file")),
        0 => Err(ModelError::corrupt(dir, "no model here: neither a config.json (Hugging Face checkpoint) nor a .gguf file")),
        _ => Err(ModelError::unsupported(dir, format!("several .gguf files; pick one with --gguf-file: {}", names(&ggufs)))),
    }
}

fn names(paths: &[PathBuf]) -> String {
    paths.iter().filter_map(|p| p.file_name()?.to_str()).collect::<Vec<_>>().join(", ")
}

fn from_hub(hub: &Hub, repo: &Repo, gguf_file: Option<&str>, needed: Needed) -> Result<ModelSource> {
    let hub_err = |e: invscale_hub::HubError| ModelError::Hub(e.to_string());
    let listing = hub.listing(repo).map_err(hub_err)?;
    let ggufs: Vec<&String> = listing.files.iter().filter(|f| is_gguf(f)).collect();
    let has = |name: &str| listing.files.iter().any(|f| f == name);
    let chosen = match gguf_file {
        Some(f) => Some(f.to_string()),
        None if has("config.json") || (needed == Needed::Tokenizer && has("tokenizer.json")) => None,
        None if ggufs.len() == 1 => Some(ggufs[0].clone()),
        None if ggufs.is_empty() => {
            return Err(ModelError::Hub(format!("{repo}: neither a config.json nor a .gguf file in the repository")));
        }
        None => {
            let list: Vec<&str> = ggufs.iter().map(|s| s.as_str()).collect();
            return Err(ModelError::Hub(format!("{repo}: several .gguf files; pick one with --gguf-file: {}", list.join(", "))));
        }
    };
    if let Some(file) = chosen {
        return Ok(ModelSource::Gguf(hub.file(repo, &listing.commit, &file).map_err(hub_err)?));
    }
    // A checkpoint: its config, tokenizer files and, to run it here, its weights (sharded or not).
    let wanted = |f: &str| {
        matches!(f, "config.json" | "tokenizer.json" | "tokenizer_config.json" | "special_tokens_map.json" | "generation_config.json")
            || (needed == Needed::Weights && ((f.ends_with(".safetensors") && !f.contains('/')) || f == "model.safetensors.index.json"))
    };
    let mut dir = None;
    for f in listing.files.iter().filter(|f| wanted(f)) {
        let p = hub.file(repo, &listing.commit, f).map_err(hub_err)?;
        dir = p.parent().map(Path::to_path_buf);
    }
    Ok(ModelSource::Checkpoint(dir.expect("config.json or tokenizer.json is among the files")))
}
