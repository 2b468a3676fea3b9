"""lm-evaluation-harness output folders for `invscale scale`'s stored-results test (issue 23).

Runs lm-eval's own `hf` backend (PyPI lm_eval 0.4.13) on the tiny random checkpoints GPT-2 and
OPT (crates/invscale-models/tests/fixtures/tiny/{gpt2,opt}, float32) on the first 40 NeQA
documents with `--log_samples`, using lm-eval's own `_inverse_scaling_mc_yaml` over the release
file (as reference/lm_eval_reference.py does), and keeps each run's output folder as lm-eval wrote
it -- `results_<time>.json` and `samples_<task>_<time>.jsonl` under `<output>/<model>/` -- with
one change: the text of the documents is taken out of the samples (`doc` emptied, `arguments`
dropped), since the data is never copied into the repository. Everything invscale reads from a
stored run (doc_id, target, filtered_resps, acc, acc_norm, the hashes) is lm-eval's.

    reference/lm_eval_stored_runs.py        (writes crates/invscale-harness/tests/fixtures/lm-eval-runs/)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lm_eval_reference import write_task  # noqa: E402 (same folder)
from tokens import DATA, ROOT, TASKS  # noqa: E402

OUT = ROOT / "crates/invscale-harness/tests/fixtures/lm-eval-runs"
TINY = ROOT / "crates/invscale-models/tests/fixtures/tiny"


def main() -> None:
    import lm_eval

    base = Path(lm_eval.__file__).parent / "tasks/inverse_scaling/_inverse_scaling_mc_yaml"
    if OUT.exists():
        shutil.rmtree(OUT)
    for model in ["gpt2", "opt"]:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            write_task(tmp, base, DATA / TASKS["neqa"], "ref_inverse_scaling_neqa")
            out = tmp / "out"
            cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={TINY / model},dtype=float32",
                   "--tasks", "ref_inverse_scaling_neqa", "--include_path", str(tmp), "--device", "cpu", "--batch_size", "8",
                   "--limit", "40", "--log_samples", "--output_path", str(out)]
            print(" ".join(cmd), file=sys.stderr)
            env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
            subprocess.run(cmd, check=True, env=env)
            dest = OUT / model
            for path in out.rglob("*"):
                if not path.is_file():
                    continue
                target = dest / path.relative_to(out)
                target.parent.mkdir(parents=True, exist_ok=True)
                if path.name.startswith("samples_"):
                    with open(path, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as dst:
                        for line in src:
                            row = json.loads(line)
                            row["doc"] = {}
                            row.pop("arguments", None)
                            dst.write(json.dumps(row, ensure_ascii=False) + "\n")
                else:
                    shutil.copy(path, target)
            print(f"wrote {dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
