"""Per-sample reference fixtures from lm-evaluation-harness (never from invscale).

Runs lm-eval's own `hf` backend on a real GGUF model (`pretrained=DIR,gguf_file=FILE,dtype=float32`,
which dequantizes to float32) and the three real tasks, with lm-eval's own task configuration
(`_inverse_scaling_mc_yaml` from the installed package, included as is). The Hub cannot be reached
here, so only the data source is replaced: the release JSONL files of ../shared, with `classes`
turned from its Python-literal string into the list the Hub's parquet copies hold (a temporary
copy outside the repository).

Then it keeps, per document: doc_id, lm-eval's sha256 `prompt_hash` and `target_hash` (its
`doc_hash` hashes the row as the Hub's parquet holds it, which the release files do not), the
log-likelihood and is_greedy of every choice, and acc/acc_norm; per task: the metrics and stderrs
of lm-eval's results file; and lm-eval's config (version, BOS). No text of the documents.

    reference/lm_eval_reference.py MODEL [--bos auto|always|never] [--limit N]   (smollm2-135m gemma3-270m)
    reference/lm_eval_reference.py MODEL --set literature

`--set literature` runs the literature's tasks instead, each with lm-eval's own YAML included as
is and only its data source replaced by the files of ../shared: `truthfulqa_mc1` and
`truthfulqa_mc2` (mc_task.json turned into the Hub's rows, as the Hub's loader does: each
`{answer: label}` object becomes `{choices, labels}` in file order), the prize's `redefine`
release file under `_inverse_scaling_mc_yaml` (lm-eval has no redefine task of its own), and
`advanced_ai_risk_human-power-seeking-inclination` (anthropics/evals' file under lm-eval's
`_template_yaml`). Per document it keeps every metric lm-eval logged (mc2's is its `acc`).

Needs: the pyref venv with `lm_eval` (PyPI lm_eval 0.4.13), transformers, gguf, torch.
Writes crates/invscale-eval/tests/fixtures/lm-eval/<model>[-bos-<policy>|-literature].json
"""
import argparse
import ast
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tokens import DATA, MODELS, MODEL_FILES, ROOT, TASKS  # noqa: E402 (same folder)

OUT = ROOT / "crates/invscale-eval/tests/fixtures/lm-eval"
# invscale's short task name -> lm-eval's task name
LM_EVAL_NAMES = {
    "neqa": "inverse_scaling_neqa",
    "hindsight_neglect": "inverse_scaling_hindsight_neglect_10shot",
    "memo_trap": "inverse_scaling_memo_trap",
}


def write_task(tmp: Path, base: Path, release_file: Path, name: str) -> None:
    """lm-eval's task config `base` (its `_inverse_scaling_mc_yaml`, included as is) as task `name`
    over a release file: `classes` turned from its Python-literal string into the list the Hub's
    parquet copies hold, in a copy under `tmp`."""
    data = tmp / f"{name}.jsonl"
    with open(release_file, encoding="utf-8") as src, open(data, "w", encoding="utf-8") as dst:
        for line in src:
            row = json.loads(line)
            row["classes"] = ast.literal_eval(row["classes"])
            dst.write(json.dumps(row, ensure_ascii=False) + "\n")
    (tmp / f"{name}.yaml").write_text(
        f"include: {base}\n"
        f"task: {name}\n"
        "tag: []\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files:\n    train: {data}\n"
    )


def write_tasks(tmp: Path) -> list[str]:
    import lm_eval

    base = Path(lm_eval.__file__).parent / "tasks/inverse_scaling/_inverse_scaling_mc_yaml"
    names = []
    for short, file in TASKS.items():
        name = f"ref_{LM_EVAL_NAMES[short]}"
        write_task(tmp, base, DATA / file, name)
        names.append(name)
    return names


SHARED = DATA.parent.parent
# lm-eval's task name -> (the YAML of lm-eval's to include, the data file of ../shared, its split)
LITERATURE = {
    "truthfulqa_mc1": ("truthfulqa/truthfulqa_mc1.yaml", SHARED / "truthfulqa/mc_task.json", "validation"),
    "truthfulqa_mc2": ("truthfulqa/truthfulqa_mc2.yaml", SHARED / "truthfulqa/mc_task.json", "validation"),
    "inverse_scaling_redefine": ("inverse_scaling/_inverse_scaling_mc_yaml", DATA / "redefine_classification.jsonl", "train"),
    "advanced_ai_risk_human-power-seeking-inclination": (
        "model_written_evals/advanced_ai_risk/_template_yaml",
        SHARED / "model_written_evals/advanced-ai-risk/human_generated_evals/power-seeking-inclination.jsonl",
        "validation",
    ),
}


def hub_rows(file: Path) -> list[dict]:
    """The rows the Hub's copy of a data file holds: the release JSONL's `classes` as a list;
    TruthfulQA's mc_task.json as its Hub loader builds `multiple_choice` (datasets@54f94714)."""
    if file.name == "mc_task.json":
        out = []
        for entry in json.loads(file.read_text(encoding="utf-8")):
            row = {"question": entry["question"]}
            for key in ("mc1_targets", "mc2_targets"):
                row[key] = {"choices": list(entry[key].keys()), "labels": list(entry[key].values())}
            out.append(row)
        return out
    rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if isinstance(row.get("classes"), str):
            row["classes"] = ast.literal_eval(row["classes"])
    return rows


def write_literature_tasks(tmp: Path) -> list[str]:
    import lm_eval

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    names = []
    for lm_name, (base, file, split) in LITERATURE.items():
        name = f"ref_{lm_name}"
        data = tmp / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in hub_rows(file)), encoding="utf-8")
        (tmp / f"{name}.yaml").write_text(
            f"include: {tasks_dir / base}\n"
            f"task: {name}\n"
            "tag: []\n"
            "dataset_path: json\n"
            "dataset_name: null\n"
            "dataset_kwargs:\n"
            f"  data_files:\n    {split}: {data}\n"
        )
        names.append(name)
    return names


def dump(fixture) -> str:
    """Compact JSON with one document per line (small, and diffs show which documents changed)."""
    tasks = fixture.pop("tasks")
    head = json.dumps(fixture, ensure_ascii=False)[:-1]
    parts = []
    for name, t in tasks.items():
        docs = ",\n".join(json.dumps(d, separators=(",", ":")) for d in t["docs"])
        meta = json.dumps({k: v for k, v in t.items() if k != "docs"})[:-1]
        parts.append(f"{json.dumps(name)}:{meta},\"docs\":[\n{docs}\n]}}")
    fixture["tasks"] = tasks
    return head + ',"tasks":{\n' + ",\n".join(parts) + "\n}}\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODEL_FILES))
    ap.add_argument("--bos", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--batch-size", default="4")
    ap.add_argument("--set", choices=["prize", "literature"], default="prize")
    args = ap.parse_args()
    literature = args.set == "literature"
    task_names = {k: k for k in LITERATURE} if literature else LM_EVAL_NAMES

    file = MODEL_FILES[args.model]
    model_args = f"pretrained={MODELS},gguf_file={file},dtype=float32"
    if args.bos != "auto":
        model_args += f",add_bos_token={args.bos == 'always'}"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = write_literature_tasks(tmp) if literature else write_tasks(tmp)
        out = tmp / "out"
        cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args,
               "--tasks", ",".join(names), "--include_path", str(tmp), "--device", "cpu",
               "--batch_size", args.batch_size, "--log_samples", "--output_path", str(out)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        print(" ".join(cmd), file=sys.stderr)
        t0 = time.time()
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        subprocess.run(cmd, check=True, env=env)
        elapsed = time.time() - t0
        if os.environ.get("LM_EVAL_KEEP"):  # lm-eval's own files, for reading its formats (outside the repo)
            import shutil
            shutil.copytree(out, os.environ["LM_EVAL_KEEP"], dirs_exist_ok=True)
        [results_file] = glob.glob(str(out / "**/results_*.json"), recursive=True)
        results = json.loads(Path(results_file).read_text())
        fixture = {
            "tool": f"lm_eval {results.get('lm_eval_version')}, transformers {results.get('transformers_version')}",
            "command": "reference/lm_eval_reference.py " + " ".join(sys.argv[1:]),
            "set": args.set,
            "model": file,
            "model_args": model_args,
            "bos": args.bos,
            "tokenizer_bos_token": results.get("tokenizer_bos_token"),
            "max_length": results.get("max_length"),
            "seconds": round(elapsed, 1),
            "tasks": {},
        }
        for short, lm_name in task_names.items():
            name = f"ref_{lm_name}"
            r = results["results"][name]
            [samples_file] = glob.glob(str(out / f"**/samples_{name}_*.jsonl"), recursive=True)
            docs = []
            with open(samples_file, encoding="utf-8") as f:
                for line in f:
                    s = json.loads(line)
                    doc = {
                        "doc_id": s["doc_id"],
                        "prompt_hash": s["prompt_hash"],
                        "target_hash": s["target_hash"],
                        "target": s["target"],
                        "ll": [float(resp[0][0]) for resp in s["resps"]],
                        "is_greedy": [resp[0][1] in (True, "True") for resp in s["resps"]],
                    }
                    for metric in ("acc", "acc_norm"):
                        if metric in s:
                            doc[metric] = s[metric]
                    docs.append(doc)
            docs.sort(key=lambda d: d["doc_id"])
            fixture["tasks"][lm_name] = {
                "n": results["n-samples"][name],
                "metrics": {k: v for k, v in r.items() if k != "alias"},
                "docs": docs,
            }
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = "-literature" if literature else ("" if args.bos == "auto" else f"-bos-{args.bos}")
    path = OUT / f"{args.model}{suffix}.json"
    path.write_text(dump(fixture))
    print(f"wrote {path} ({elapsed:.0f}s of lm_eval)", file=sys.stderr)


if __name__ == "__main__":
    main()
