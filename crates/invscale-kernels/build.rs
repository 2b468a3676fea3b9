//! With the `cuda` feature: compiles `src/cuda/*.cu` to PTX with nvcc (on PATH, or `$NVCC`), for
//! `CUDA_COMPUTE_CAP` (default 90: H100/H200), loaded at run time by `cuda::ops` and `cuda::attention`.
use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/cuda");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=NVCC");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap: u32 = cap.trim().parse().unwrap_or_else(|_| panic!("CUDA_COMPUTE_CAP={cap:?} is not a number such as 90"));
    // bf16 tensor-core fragments need compute capability 8.0 (the kernels are for Ampere and later).
    let arch = format!("-arch=sm_{}", cap.max(80));
    let nvcc = env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    for name in ["attention", "ops"] {
        let source = format!("src/cuda/{name}.cu");
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", &arch, &source, "-o"])
            .arg(out_dir.join(format!("{name}.ptx")))
            .status()
            .unwrap_or_else(|e| panic!("cannot run {nvcc} to compile {source} ({e}); put CUDA's nvcc on PATH or set NVCC (scripts/build-cuda.sh does)"));
        assert!(status.success(), "{nvcc} failed on {source}");
    }
}
