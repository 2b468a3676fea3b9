//! The on-disk score cache that makes runs resumable: every finished request's log-likelihood is
//! appended (and synced) as soon as its document is done, keyed by the exact tokens scored, in a
//! file per model fingerprint and precision. A rerun after Ctrl-C, `kill -9` or power loss reads
//! it back and recomputes nothing that finished.
//!
//! Each line carries a checksum: a line that is cut short or altered is reported and recomputed,
//! never trusted.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::encode::Encoded;

/// Bumped whenever the numbers a request produces could change (model code, scoring), so old
/// entries are never mixed with new ones.
pub const ENGINE_VERSION: &str = "invscale-scores-v1";

const FORMAT: &str = "v1";

/// The identity of one request: a hash of the tokens of its context and continuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestKey([u8; 16]);

impl RequestKey {
    pub fn of(e: &Encoded) -> RequestKey {
        RequestKey::new(&e.context, &e.continuation)
    }

    /// The key of `continuation` scored after `context`.
    pub fn new(context: &[u32], continuation: &[u32]) -> RequestKey {
        let mut h = Sha256::new();
        h.update((context.len() as u64).to_le_bytes());
        for t in context.iter().chain(continuation) {
            h.update(t.to_le_bytes());
        }
        RequestKey(h.finalize()[..16].try_into().expect("16 bytes"))
    }
    fn hex(&self) -> String {
        hex(&self.0)
    }
    fn parse(s: &str) -> Option<RequestKey> {
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(RequestKey(out))
    }
}

/// A finished request's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub ll: f64,
    pub greedy: bool,
}

pub struct ScoreCache {
    path: Option<PathBuf>,
    file: Option<File>,
    entries: HashMap<RequestKey, Score>,
    /// Problems found when reading the file (each line left out and to be recomputed).
    pub problems: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn checksum(body: &str) -> String {
    hex(&Sha256::digest(body.as_bytes())[..4])
}

fn line_for(key: &RequestKey, score: &Score) -> String {
    // `{:?}` of an f64 is the shortest text that reads back as the same number.
    let body = format!("{FORMAT} {} {:?} {}", key.hex(), score.ll, u8::from(score.greedy));
    let sum = checksum(&body);
    format!("{body} {sum}\n")
}

fn parse_line(line: &str) -> Result<(RequestKey, Score), &'static str> {
    let (body, sum) = line.rsplit_once(' ').ok_or("no checksum")?;
    if checksum(body) != sum {
        return Err("checksum mismatch");
    }
    let mut fields = body.split(' ');
    if fields.next() != Some(FORMAT) {
        return Err("unknown format");
    }
    let key = fields.next().and_then(RequestKey::parse).ok_or("bad key")?;
    let ll: f64 = fields.next().and_then(|s| s.parse().ok()).ok_or("bad log-likelihood")?;
    let greedy = match fields.next() {
        Some("0") => false,
        Some("1") => true,
        _ => return Err("bad greedy flag"),
    };
    if fields.next().is_some() || !ll.is_finite() && ll != f64::NEG_INFINITY {
        return Err("bad entry");
    }
    Ok((key, Score { ll, greedy }))
}

impl ScoreCache {
    /// A cache that keeps nothing (`--no-cache`).
    pub fn disabled() -> ScoreCache {
        ScoreCache { path: None, file: None, entries: HashMap::new(), problems: Vec::new() }
    }

    /// Opens (or creates) `dir/<namespace>.scores` and reads every valid entry.
    pub fn open(dir: &Path, namespace: &str) -> io::Result<ScoreCache> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{namespace}.scores"));
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut entries = HashMap::new();
        let mut problems = Vec::new();
        // A last line without its newline was cut short by an interrupted write: drop it, so the
        // next entry starts on a line of its own.
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            problems.push(format!(
                "{}: the last entry was cut short (an interrupted write); it will be recomputed",
                path.display()
            ));
            file.set_len(complete as u64)?;
            file.seek(SeekFrom::End(0))?;
        }
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match std::str::from_utf8(line).map_err(|_| "not UTF-8").and_then(parse_line) {
                Ok((key, score)) => {
                    entries.insert(key, score);
                }
                Err(why) => problems.push(format!(
                    "{}:{}: corrupt entry ({why}); not trusted, it will be recomputed",
                    path.display(),
                    i + 1
                )),
            }
        }
        Ok(ScoreCache { path: Some(path), file: Some(file), entries, problems })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &RequestKey) -> Option<Score> {
        self.entries.get(key).copied()
    }

    /// Records finished requests: one write, then a sync, so they survive a crash.
    pub fn put_all(&mut self, items: &[(RequestKey, Score)]) -> io::Result<()> {
        let text: String = items.iter().map(|(k, s)| line_for(k, s)).collect();
        if let Some(file) = &mut self.file {
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
        }
        self.entries.extend(items.iter().copied());
        Ok(())
    }
}

/// What identifies a model's numbers: each file's size and its first and last MiB (cheap on
/// multi-GB files, and any re-quantisation or different checkpoint changes them), with the
/// precision and the engine version. A checkpoint folder counts its config, tokenizer and weights.
pub fn fingerprint(path: &Path, precision: &str) -> io::Result<String> {
    let mut h = Sha256::new();
    h.update(ENGINE_VERSION.as_bytes());
    h.update(precision.as_bytes());
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n == "config.json" || n == "tokenizer.json" || n == "tokenizer_config.json" || n.ends_with(".safetensors")
                })
            })
            .collect();
        files.sort();
        for f in files {
            h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
            hash_ends(&f, &mut h)?;
        }
    } else {
        hash_ends(path, &mut h)?;
    }
    Ok(hex(&h.finalize()[..12]))
}

fn hash_ends(path: &Path, h: &mut Sha256) -> io::Result<()> {
    const SPAN: u64 = 1 << 20;
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    h.update(size.to_le_bytes());
    let mut buf = vec![0u8; SPAN.min(size) as usize];
    file.read_exact(&mut buf)?;
    h.update(&buf);
    file.seek(SeekFrom::Start(size.saturating_sub(SPAN)))?;
    file.read_exact(&mut buf)?;
    h.update(&buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ctx: &[u32], cont: &[u32]) -> Encoded {
        Encoded { context: ctx.to_vec(), continuation: cont.to_vec(), truncated: 0, boundary_fallback: false }
    }

    #[test]
    fn entries_survive_reopening_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let a = RequestKey::of(&enc(&[1, 2], &[3]));
        let b = RequestKey::of(&enc(&[1], &[2, 3]));
        assert_ne!(a, b, "the split point is part of the key");
        let mut cache = ScoreCache::open(dir.path(), "m").unwrap();
        let sa = Score { ll: -1.234_567_890_123_456_7, greedy: true };
        let sb = Score { ll: f64::NEG_INFINITY, greedy: false };
        cache.put_all(&[(a, sa), (b, sb)]).unwrap();
        let cache = ScoreCache::open(dir.path(), "m").unwrap();
        assert_eq!(cache.get(&a), Some(sa));
        assert_eq!(cache.get(&b), Some(sb));
        assert!(cache.problems.is_empty(), "{:?}", cache.problems);
    }

    #[test]
    fn cut_short_and_altered_entries_are_reported_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<RequestKey> = (0..3).map(|i| RequestKey::of(&enc(&[i], &[9]))).collect();
        let mut cache = ScoreCache::open(dir.path(), "m").unwrap();
        for (i, k) in keys.iter().enumerate() {
            cache.put_all(&[(*k, Score { ll: -(i as f64) - 0.5, greedy: false })]).unwrap();
        }
        let path = cache.path().unwrap().to_path_buf();
        drop(cache);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Line 2: one digit of the log-likelihood changed. Line 3: cut in the middle.
        let altered = lines[1].replacen("-1.5", "-1.6", 1);
        assert_ne!(altered, lines[1]);
        std::fs::write(&path, format!("{}\n{altered}\n{}", lines[0], &lines[2][..20])).unwrap();
        let mut cache = ScoreCache::open(dir.path(), "m").unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&keys[0]).is_some());
        assert_eq!(cache.problems.len(), 2, "{:?}", cache.problems);
        assert!(cache.problems[0].contains("cut short"), "{}", cache.problems[0]);
        assert!(cache.problems[1].contains(":2: corrupt entry (checksum mismatch)"), "{}", cache.problems[1]);
        // Appending after the cut-short line starts a clean line.
        cache.put_all(&[(keys[2], Score { ll: -2.5, greedy: true })]).unwrap();
        let cache = ScoreCache::open(dir.path(), "m").unwrap();
        assert_eq!(cache.get(&keys[2]), Some(Score { ll: -2.5, greedy: true }));
        assert_eq!(cache.problems.len(), 1, "only the altered line remains bad: {:?}", cache.problems);
    }
}
