#!/usr/bin/env bash
# Builds the GPU (CUDA) build of invscale on a machine without a GPU or a CUDA toolkit:
# ../shared/tools/cuda-toolchain.sh lays out CUDA 13.0 from PyPI wheels (nvcc 13.0.88 pinned;
# compute capability 90 = H100/H200 unless CUDA_COMPUTE_CAP says otherwise), then cargo builds
# with the `cuda` feature into target/cuda (a separate folder, so CPU builds stay warm).
#
#   scripts/build-cuda.sh            # → target/cuda/release/invscale, and invscale-cuda.xz to carry
#
# With your own CUDA toolkit (nvcc on PATH, CUDA ≥ 12): skip this script and run
#   CUDA_COMPUTE_CAP=90 cargo build --release -p invscale-cli --features cuda
# A cold build takes ~15 min on 2 cores (nvcc compiles candle's kernels once).
set -euo pipefail
cd "$(dirname "$0")/.."
toolchain="${CUDA_TOOLCHAIN_SCRIPT:-../shared/tools/cuda-toolchain.sh}"
[[ -f "$toolchain" ]] || { echo "error: $toolchain not found (the project's shared/ folder beside this checkout)" >&2; exit 1; }
eval "$(bash "$toolchain")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
cargo build --release --locked -p invscale-cli --features cuda
bin="$CARGO_TARGET_DIR/release/invscale"
xz -T0 -9 -c "$bin" > "$CARGO_TARGET_DIR/invscale-cuda.xz"
echo "built $bin ($(du -h "$bin" | cut -f1)); compressed to carry: $CARGO_TARGET_DIR/invscale-cuda.xz ($(du -h "$CARGO_TARGET_DIR/invscale-cuda.xz" | cut -f1))" >&2
