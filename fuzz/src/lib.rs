//! Shared by the fuzz targets: a scratch file per process on tmpfs, for the parsers that read
//! paths (the GGUF reader maps its file; the task readers choose a format by extension).

use std::path::PathBuf;

/// `input` written to this process's scratch file `name` (in `/dev/shm` when there is one);
/// its path.
pub fn scratch_file(name: &str, input: &[u8]) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = dir.join(format!("invscale-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, input).expect("scratch file");
    path
}
