#!/usr/bin/env bash
# A Python with llama-cpp-python 0.3.36 and its OpenAI-compatible server: the real engine the
# server tests (crates/invscale-cli/tests/cli/server.rs) and bench/servers run against.
#
# PyPI ships 0.3.36 as a source distribution only, and its default build compiles for the
# machine's own CPU (GGML_NATIVE), which segfaulted in eval on an AMX/AVX-512 Xeon here. So it is
# built portable (AVX2/FMA/F16C, no AVX-512, no AMX): the same wheel runs on every kind of CPU
# this project meets. The build takes ~8 minutes on 2 cores, so the wheel is kept under
# ~/.cache/invscale/wheels and reused; the virtual environment is made from it in seconds.
#
# Usage: scripts/get-llama-cpp-python.sh        prints the Python to use (also on stderr's log)
# Where: $INVSCALE_LLAMA_VENV, default ~/.cache/invscale/llama-venv
#        $INVSCALE_WHEELS_DIR, default ~/.cache/invscale/wheels
# The tests find the Python as $INVSCALE_LLAMA_PYTHON, default ~/.cache/invscale/llama-venv/bin/python.
set -euo pipefail

VERSION=0.3.36
VENV="${INVSCALE_LLAMA_VENV:-$HOME/.cache/invscale/llama-venv}"
WHEELS="${INVSCALE_WHEELS_DIR:-$HOME/.cache/invscale/wheels}"
PYTHON="${PYTHON:-python3}"
log() { printf '[get-llama-cpp-python] %s\n' "$*" >&2; }

# Already set up: the venv imports the right version and its server.
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "
import llama_cpp, llama_cpp.server.app, sys
sys.exit(0 if llama_cpp.__version__ == '$VERSION' else 1)" 2>/dev/null; then
  log "present: $VENV (llama-cpp-python $VERSION)"
  echo "$VENV/bin/python"
  exit 0
fi

mkdir -p "$WHEELS"
wheel="$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)"
if [[ -z "$wheel" ]]; then
  # --no-cache-dir: pip's own wheel cache is keyed by the sdist alone, not by CMAKE_ARGS, so it
  # could hand back a native build made earlier on this machine.
  log "building llama-cpp-python $VERSION from PyPI's sdist, portable (about 8 minutes on 2 cores)"
  started=$SECONDS
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-cache-dir --no-deps --no-binary llama-cpp-python \
    -w "$WHEELS" "llama-cpp-python==$VERSION" >&2
  wheel="$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl | head -1)"
  log "built $wheel in $((SECONDS - started)) s"
else
  log "wheel cached: $wheel"
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${wheel}[server]" >&2
"$VENV/bin/python" -c "import llama_cpp, llama_cpp.server.app; print('llama-cpp-python', llama_cpp.__version__)" >&2
log "ready: $VENV"
echo "$VENV/bin/python"
