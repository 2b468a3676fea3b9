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
