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
# The shape of the code: no import circle, no file over 900 lines, the CLI a thin shell.
python3 scripts/check-house.py
# `cargo test --workspace`, one test binary at a time, each timed (the log ends with the table).
python3 scripts/run-tests.py
# The CUDA build compiles too: our Rust code with `--features cuda` and our kernels
# (crates/invscale-kernels/src/cuda/*.cu) with nvcc from ../shared/tools/cuda-toolchain.sh (a
# toolchain from PyPI). Its GPU tests need a GPU and run on the accelerator machine (see
# bench/gpu/RESULTS.md); here they and the binary must build. candle's own CUDA kernels are not
# compiled by this check (scripts/nvcc-for-check.sh: a check links nothing, and they took ~15 of
# CI's minutes); scripts/build-cuda.sh, which makes every binary that runs, compiles them. The
# check has a target folder of its own (target/cuda-check): its empty candle kernels must never
# reach target/cuda, where a real build would link them (undefined launch_mmq_* symbols).
(
  eval "$(bash ../shared/tools/cuda-toolchain.sh)"
  stub="$PWD/target/cuda-check/nvcc-for-check"
  mkdir -p "$stub/bin"
  cp scripts/nvcc-for-check.sh "$stub/bin/nvcc"
  ln -sfn "$CUDA_HOME/include" "$stub/include"
  ln -sfn "$CUDA_HOME/lib64" "$stub/lib64"
  started=$SECONDS
  NVCC_REAL="$CUDA_HOME/bin/nvcc" NVCC="$stub/bin/nvcc" CARGO_TARGET_DIR=target/cuda-check \
    cargo check --release --locked -p invscale-cli -p invscale-models -p invscale-kernels --features cuda --lib --bins --tests
  echo "test.sh: the CUDA check took $((SECONDS - started)) s"
)
