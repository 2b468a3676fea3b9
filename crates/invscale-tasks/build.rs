//! Embeds the repository's declarative task files (`tasks/*.toml`) into the library, so the
//! binary carries the suite; the files stay the single source of truth.

use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let tasks_dir = manifest.join("../../tasks").canonicalize().expect("tasks/ folder at the workspace root");
    println!("cargo:rerun-if-changed={}", tasks_dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&tasks_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = String::from("/// Built-in task files: (file name, contents).\npub static BUILTIN_TASK_FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_str().unwrap();
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", f.display().to_string()));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("builtin_tasks.rs");
    fs::write(dest, out).unwrap();
}
