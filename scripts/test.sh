#!/usr/bin/env bash
# The test suite, exactly as CI runs it (.ci/run calls this). Needs the project's `shared/`
# folder beside the checkout (../shared): the real task data is read there, in place.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -d ../shared/data/inverse_scaling ]]; then
  echo "error: ../shared/data/inverse_scaling is missing: check out the project's shared/ folder beside this repository" >&2
  exit 1
fi
# Tests run offline, always: nothing is downloaded at test time.
export HF_HUB_OFFLINE=1
cargo test --workspace --locked
# The CUDA build compiles too (its kernels with nvcc from ../shared/tools/cuda-toolchain.sh, a
# toolchain from PyPI): its GPU tests need a GPU and run on the accelerator machine (see
# bench/gpu/RESULTS.md); here they and the binary must build. A separate target folder keeps
# the CPU build warm.
(
  eval "$(bash ../shared/tools/cuda-toolchain.sh)"
  CARGO_TARGET_DIR=target/cuda cargo check --release --locked -p invscale-cli -p invscale-models --features cuda --lib --bins --tests
)
