#!/usr/bin/env bash
# The reference check: lm-evaluation-harness and invscale on the same model and the three real
# tasks, compared per sample.
#
#   reference/lm_eval_check.sh smollm2-135m|gemma3-270m [--keep-fixture]
#   reference/lm_eval_check.sh smollm2-135m --literature [--keep-fixture]
#
# (--literature: truthfulqa_mc1/mc2, redefine and one advanced_ai_risk set, each with lm-eval's
# own YAML; ~60 min of lm-eval on 2 cores.)
#
# 1. runs lm-eval (PyPI lm_eval, `hf` backend, gguf_file=, dtype float32) through
#    reference/lm_eval_reference.py, which keeps its per-sample log-likelihoods, hashes and metrics
#    (no text) in crates/invscale-eval/tests/fixtures/lm-eval/<model>.json;
# 2. runs invscale's parity test on every document of the three tasks against that file
#    (|Δ ll| ≤ 1e-3 per request, identical acc/acc_norm per document, identical means and
#    stderrs to the 4th decimal, and the opposite BOS policy shown to differ).
#
# Needs a Python with lm_eval, transformers, gguf and torch: $PYTHON, default
# ~/.cache/invscale/pyref/bin/python (python3 -m venv ~/.cache/invscale/pyref &&
# ~/.cache/invscale/pyref/bin/pip install lm_eval transformers gguf torch sentencepiece protobuf).
# On 2 CPU cores lm-eval takes ~25 min (SmolLM2) to ~60 min (Gemma 3) for the three tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: reference/lm_eval_check.sh smollm2-135m|gemma3-270m [--literature] [--keep-fixture]}"
shift
set_args=()
keep=
for arg in "$@"; do
  case "$arg" in
    --literature) set_args=(--set literature) ;;
    --keep-fixture) keep=1 ;;
    *) echo "error: unknown option $arg" >&2; exit 2 ;;
  esac
done
case "$model${set_args[*]:+-literature}" in
  smollm2-135m) test=smollm2_matches_lm_eval_per_sample ;;
  gemma3-270m) test=gemma3_matches_lm_eval_per_sample ;;
  smollm2-135m-literature) test=smollm2_matches_lm_eval_on_the_literature_tasks ;;
  *) echo "error: no reference check for $model ${set_args[*]} (smollm2-135m, gemma3-270m; --literature: smollm2-135m)" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-$HOME/.cache/invscale/pyref/bin/python}"
if [[ -z "$keep" ]]; then
  (cd reference && "$PYTHON" lm_eval_reference.py "$model" "${set_args[@]}")
fi
HF_HUB_OFFLINE=1 INVSCALE_PARITY_FULL=1 cargo test --release --locked -p invscale-eval --test engine -- --exact "lm_eval_parity::$test" --nocapture
