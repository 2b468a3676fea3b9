#!/usr/bin/env bash
# nvcc for `cargo check --features cuda` (scripts/test.sh): our kernels (crates/invscale-kernels/
# src/cuda/*.cu) go to the real nvcc ($NVCC_REAL), so the check compiles them for real; candle's
# own kernels (the candle-kernels crate: its PTX and its MoE/MMQ static library) get empty
# outputs instead. A check links nothing and runs nothing: those outputs would only be thrown
# away, and they cost ~15 minutes of nvcc on 2 cores (most of CI's CUDA step). candle's kernels
# are compiled for real by every build that runs (scripts/build-cuda.sh), with the same pinned
# nvcc and candle version (Cargo.lock). Never use this wrapper to build a binary.
set -euo pipefail
real="${NVCC_REAL:?set NVCC_REAL to the real nvcc}"
candle=0
for a in "$@"; do
  [[ "$a" == *candle-kernels-* ]] && candle=1
done
if [[ $candle == 0 ]]; then
  exec "$real" "$@"
fi
out="" outdir="" mode="" src=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -o) out="${args[i + 1]}" ;;
    --output-directory) outdir="${args[i + 1]}" ;;
    --ptx) mode=ptx ;;
    -c) mode=object ;;
    --lib) mode=lib ;;
    *.cu) src="${args[i]}" ;;
  esac
done
case "$mode" in
  ptx)
    name="$(basename "${src%.cu}").ptx"
    : > "${out:-$outdir/$name}"
    ;;
  object)
    cc -c -x c /dev/null -o "$out"
    ;;
  lib)
    rm -f "$out"
    objs=()
    for a in "$@"; do [[ "$a" == *.o ]] && objs+=("$a"); done
    ar rcs "$out" "${objs[@]}"
    ;;
  *)
    exec "$real" "$@"
    ;;
esac
