//! Reading and writing one repository's folder in the hub cache, exactly as huggingface_hub does.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::{HubError, Result, io_err};
use crate::repo::{Repo, RepoListing, is_commit_hash};

/// One repository's folder in the cache (`{cache}/datasets--org--name`).
#[derive(Clone, Debug)]
pub struct CacheRepo {
    pub root: PathBuf,
}

impl CacheRepo {
    pub fn new(cache_dir: &Path, repo: &Repo) -> Self {
        CacheRepo { root: cache_dir.join(repo.cache_folder_name()) }
    }

    /// The commit a revision resolves to locally: the revision itself when it is a commit
    /// hash, else the content of `refs/{revision}`.
    pub fn resolve_commit(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return self.root.join("snapshots").join(revision).is_dir().then(|| revision.to_string());
        }
        let commit = fs::read_to_string(self.root.join("refs").join(revision)).ok()?;
        let commit = commit.trim().to_string();
        is_commit_hash(&commit).then_some(commit)
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// The cached path of `file` at `commit`, if it is there and its blob exists.
    pub fn file(&self, commit: &str, file: &str) -> Option<PathBuf> {
        let path = self.snapshot_dir(commit).join(file);
        // A dangling symlink (blob deleted by a cache clean-up) is not a cached file.
        fs::metadata(&path).ok().filter(|m| m.is_file()).map(|_| path)
    }

    /// Every file of the snapshot (what was downloaded of that commit), as a listing.
    pub fn listing(&self, commit: &str) -> Result<RepoListing> {
        let dir = self.snapshot_dir(commit);
        let mut files = Vec::new();
        walk(&dir, &dir, &mut files)?;
        files.sort();
        Ok(RepoListing { commit: commit.to_string(), files })
    }

    /// Records that `revision` now points at `commit` (`refs/{revision}`), as huggingface_hub does.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.root.join("refs").join(revision);
        if fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
            return Ok(());
        }
        fs::create_dir_all(path.parent().expect("refs path has a parent")).map_err(io_err(&path))?;
        fs::write(&path, commit).map_err(io_err(&path))
    }

    /// Streams `content` into `blobs/{etag}` (through a `.incomplete` file, renamed when
    /// complete, so an interrupted download never looks finished) and links
    /// `snapshots/{commit}/{file}` to it.
    pub fn store(
        &self,
        commit: &str,
        file: &str,
        etag: &str,
        content: &mut dyn std::io::Read,
    ) -> Result<PathBuf> {
        check_relative(file).map_err(|message| HubError::Protocol { url: file.to_string(), message })?;
        let blobs = self.root.join("blobs");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let blob = blobs.join(etag);
        if !blob.is_file() {
            let partial = blobs.join(format!("{etag}.incomplete"));
            let mut out = fs::File::create(&partial).map_err(io_err(&partial))?;
            std::io::copy(content, &mut out).map_err(io_err(&partial))?;
            out.flush().map_err(io_err(&partial))?;
            out.sync_all().map_err(io_err(&partial))?;
            fs::rename(&partial, &blob).map_err(io_err(&blob))?;
        }
        let link = self.snapshot_dir(commit).join(file);
        let parent = link.parent().expect("snapshot path has a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        // Relative target, like huggingface_hub: the cache folder can be moved as a whole.
        let depth = Path::new(file).components().count() + 1; // + the commit folder
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        let _ = fs::remove_file(&link);
        link_or_copy(&target, &blob, &link)?;
        Ok(link)
    }
}

#[cfg(unix)]
fn link_or_copy(relative_target: &Path, _blob: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(relative_target, link).map_err(io_err(link))
}

#[cfg(not(unix))]
fn link_or_copy(_relative_target: &Path, blob: &Path, link: &Path) -> Result<()> {
    // huggingface_hub also falls back to copies where symlinks are unavailable.
    fs::copy(blob, link).map(|_| ()).map_err(io_err(link))
}

/// A repository file path must stay inside the snapshot folder.
fn check_relative(file: &str) -> Result<(), String> {
    let ok = !file.is_empty()
        && Path::new(file).components().all(|c| matches!(c, Component::Normal(_)));
    if ok { Ok(()) } else { Err(format!("refusing unsafe repository path `{file}`")) }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = fs::metadata(&path); // follows the snapshot's symlinks
        match meta {
            Ok(m) if m.is_dir() => walk(root, &path, out)?,
            Ok(m) if m.is_file() => {
                let rel = path.strip_prefix(root).expect("walk stays under root");
                let rel: Vec<String> =
                    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.push(rel.join("/"));
            }
            _ => {} // dangling link: the blob is gone, the file is not cached
        }
    }
    Ok(())
}
