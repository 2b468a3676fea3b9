"""The GPU benchmark (issue 5): invscale against lm-evaluation-harness on the same GPU, the same
checkpoints and the same tasks, in one run.

    python3 bench/gpu/benchmark.py INVSCALE_BINARY DATA_DIR OUT_DIR [--shapes opt-1.3b,pythia-1.4b,llama3-8b]
        [--workload real|suite]

`--workload suite`: the suite-sized synthetic workload of `synthetic.py` (the three real tasks and
eight stand-ins of random words with the other tasks' row counts and prompt lengths, ~29.5k
documents; speed only, never accuracy) instead of the three real tasks.

DATA_DIR holds the prize release files of the three real tasks (the project's shared/ data).
For each shape it builds a model of the real configuration with random weights (MODELS.md §3:
speed does not depend on the weights; never read accuracy from these) in bfloat16, with a
byte-level BPE tokenizer trained here on the tasks' own text (50k merges at most, so sequences
have realistic token counts), then runs

* lm-eval 0.4.13: `lm_eval --model hf --model_args pretrained=DIR,dtype=bfloat16
  --batch_size auto --device cuda:0` on lm-eval's own inverse_scaling task configuration over the
  release files, timed end to end (process start to results written, samples logged); inside it, the
  log-likelihood phase (`HFLM._loglikelihood_tokens`) and its batch-size probe are timed, and the
  tokens it pushes through the model (padded batches, `_model_call`) counted;
* invscale: `invscale run --device cuda --dtype bf16` on the same tasks and files, timed end to
  end; its results file gives its scoring time and the tokens it computed (unique) and was asked.

One warm-up run of each tool comes first (CUDA's PTX JIT, Python's bytecode), and is not counted.
It prints a table and writes OUT_DIR/benchmark.json. MFU = 2 × parameters × unique tokens /
time / 800 TFLOP/s (dense bf16 on an H100/H200, as measured there).
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

import torch

sys.path.insert(0, str(Path(__file__).parent))
from check_logprobs import SHAPES  # noqa: E402 (the real shapes, one place)

PEAK_FLOPS = 800e12
TASKS = {  # invscale name -> (release file, lm-eval task name)
    "neqa": ("neqa_classification.jsonl", "inverse_scaling_neqa"),
    "memo_trap": ("memo-trap_classification.jsonl", "inverse_scaling_memo_trap"),
    "hindsight_neglect": ("hindsight-neglect_classification.jsonl", "inverse_scaling_hindsight_neglect_10shot"),
}

LM_EVAL_TIMED = r"""
import json, sys, time
import torch
import lm_eval.models.huggingface as hf
from lm_eval.__main__ import cli_evaluate
stats = {"ll_seconds": 0.0, "probe_seconds": 0.0, "model_call_tokens": 0, "model_calls": 0}
probing = [False]
orig_ll, orig_probe, orig_call = hf.HFLM._loglikelihood_tokens, hf.HFLM._detect_batch_size, hf.HFLM._model_call
def ll(self, *a, **k):
    torch.cuda.synchronize(); t = time.perf_counter()
    out = orig_ll(self, *a, **k)
    torch.cuda.synchronize(); stats["ll_seconds"] += time.perf_counter() - t
    return out
def probe(self, *a, **k):
    probing[0] = True; t = time.perf_counter()
    try:
        return orig_probe(self, *a, **k)
    finally:
        torch.cuda.synchronize(); stats["probe_seconds"] += time.perf_counter() - t; probing[0] = False
def call(self, inps, *a, **k):
    if not probing[0]:
        stats["model_call_tokens"] += inps.numel(); stats["model_calls"] += 1
    return orig_call(self, inps, *a, **k)
hf.HFLM._loglikelihood_tokens, hf.HFLM._detect_batch_size, hf.HFLM._model_call = ll, probe, call
stats_path = sys.argv.pop(1)
try:
    cli_evaluate()
finally:
    json.dump(stats, open(stats_path, "w"))
"""


def release_rows(data_dir: Path, file: str):
    with open(data_dir / file, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            row["classes"] = ast.literal_eval(row["classes"]) if isinstance(row["classes"], str) else row["classes"]
            yield row


def train_tokenizer(data_dir: Path, out: Path):
    """A byte-level BPE trained on the tasks' text: realistic token counts without the Hub."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r["prompt"] + c for _, (file, _) in TASKS.items() for r in release_rows(data_dir, file) for c in r["classes"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # An end-of-text token as GPT-2's (lm-eval uses it as the prefix of empty contexts); no BOS
    # is added by default, so both tools run without one.
    trainer = trainers.BpeTrainer(
        vocab_size=50000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"], show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|endoftext|>").save_pretrained(out)


def make_model(name: str, root: Path, tokenizer_dir: Path) -> tuple[Path, int]:
    from transformers import AutoConfig, AutoModelForCausalLM

    d = root / name
    model_type, kw = SHAPES[name]
    cfg = AutoConfig.for_model(model_type, **kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(d)
    for f in tokenizer_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    del model
    torch.cuda.empty_cache()
    return d, params


def scratch_model(data_dir: Path, shape: str) -> tuple[Path, Path, int]:
    """A scratch folder, and in it a random checkpoint of `shape` with the tasks' tokenizer: (folder,
    checkpoint, parameters). For the scripts beside this one that run a single shape."""
    tmp = Path(tempfile.mkdtemp())
    train_tokenizer(data_dir, tmp / "tok")
    model, params = make_model(shape, tmp / "models", tmp / "tok")
    return tmp, model, params


def lm_eval_tasks(data_dir: Path, tmp: Path) -> list[str]:
    return lm_eval_file_tasks([(data_dir / file, lm_name) for file, lm_name in TASKS.values()], tmp)


def lm_eval_file_tasks(files: list[tuple[Path, str]], tmp: Path) -> list[str]:
    """lm-eval task files (`bench_NAME`, on lm-eval's own inverse_scaling configuration) over
    release-format data files."""
    import lm_eval

    base = Path(lm_eval.__file__).parent / "tasks/inverse_scaling/_inverse_scaling_mc_yaml"
    names = []
    for path, lm_name in files:
        data = tmp / f"{lm_name}.jsonl"
        with open(data, "w", encoding="utf-8") as dst:
            for row in release_rows(path.parent, path.name):
                dst.write(json.dumps(row, ensure_ascii=False) + "\n")
        name = f"bench_{lm_name}"
        (tmp / f"{name}.yaml").write_text(
            f"include: {base}\ntask: {name}\ntag: []\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    train: {data}\n"
        )
        names.append(name)
    return names


def run_lm_eval(model: Path, tasks: list[str], include: Path, out: Path, limit: int | None = None) -> dict:
    stats_path = out.with_suffix(".stats.json")
    cmd = [sys.executable, "-c", LM_EVAL_TIMED, str(stats_path), "--model", "hf",
           "--model_args", f"pretrained={model},dtype=bfloat16", "--tasks", ",".join(tasks),
           "--include_path", str(include), "--device", "cuda:0", "--batch_size", "auto", "--output_path", str(out),
           "--log_samples"]
    if limit:
        cmd += ["--limit", str(limit)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"lm-eval failed:\n{p.stderr[-4000:]}")
    stats = json.loads(stats_path.read_text())
    return {"wall_seconds": wall, **stats}


def run_invscale(binary: str, model: Path, data_dir: Path, out: Path, limit: int | None = None, device: str = "cuda",
                 tasks: list[str] | None = None) -> dict:
    cmd = [binary, "run", "--model", str(model), "--tasks", ",".join(tasks or TASKS), "--data-dir", str(data_dir),
           "--device", device, "--dtype", "bf16", "--no-cache", "--output-path", str(out), "--log-samples"]
    if limit:
        cmd += ["--limit", str(limit)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"invscale failed:\n{p.stderr[-4000:]}")
    [results] = glob.glob(str(out / "**/results_*.json"), recursive=True)
    r = json.loads(Path(results).read_text())["invscale"]
    tasks = r["tasks"].values()
    return {
        "wall_seconds": wall,
        "load_seconds": r["timing"]["model_load_seconds"],
        "scoring_seconds": r["timing"]["scoring_seconds"],
        "tokens_computed": sum(t["tokens_computed"] for t in tasks),
        "tokens_requested": sum(t["tokens_requested"] for t in tasks),
        "stderr_tail": p.stderr[-600:],
    }


def sample_lls(out: Path, task: str) -> dict[int, list[float]]:
    """doc_id -> each choice's log-likelihood, from either tool's samples file (lm-eval's layout)."""
    [path] = glob.glob(str(out / f"**/samples_*{task}_*.jsonl"), recursive=True)
    lls = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            lls[s["doc_id"]] = [float(r[0][0]) for r in s["resps"]]
    return lls


def compare_samples(inv_out: Path, lm_out: Path, names: list[tuple[str, str]] | None = None) -> dict:
    """Per document: does each tool pick the same class; how far apart are the log-likelihoods.
    `names`: (invscale's task name, lm-eval's), the real tasks' by default."""
    docs = same = 0
    deltas = []
    for inv_name, lm_name in names or [(lm, "bench_" + lm) for _, lm in TASKS.values()]:
        a, b = sample_lls(inv_out, inv_name), sample_lls(lm_out, lm_name)
        for doc_id, la in a.items():
            lb = b[doc_id]
            docs += 1
            same += la.index(max(la)) == lb.index(max(lb))
            for x, y in zip(la, lb):
                deltas.append(abs(x - y))
    deltas.sort()
    return {
        "documents": docs,
        "same_argmax": same,
        "max_abs_delta_ll": deltas[-1] if deltas else 0.0,
        "median_abs_delta_ll": deltas[len(deltas) // 2] if deltas else 0.0,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--shapes", default="opt-1.3b,pythia-1.4b,llama3-8b")
    ap.add_argument("--workload", choices=["real", "suite"], default="real")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    tok_dir = tmp / "tokenizer"
    train_tokenizer(args.data_dir, tok_dir)
    include = tmp / "tasks"
    include.mkdir()
    if args.workload == "suite":
        from synthetic import write_suite

        files = write_suite(args.data_dir, tmp / "suite")
        stems = [p.stem.replace("-", "_") for p in files]
        inv_tasks = [str(p) for p in files]
        lm_tasks = lm_eval_file_tasks(list(zip(files, stems)), include)
        names = [(stem, "bench_" + stem) for stem in stems]
    else:
        inv_tasks, lm_tasks, names = list(TASKS), lm_eval_tasks(args.data_dir, include), None
    device = torch.cuda.get_device_name(0)
    report = {"device": device, "torch": torch.__version__, "workload": args.workload, "shapes": {}}
    print(f"device: {device}; torch {torch.__version__}", flush=True)
    warmed = False
    for name in args.shapes.split(","):
        model, params = make_model(name, tmp / "models", tok_dir)
        if not warmed:  # PTX JIT (invscale), bytecode and CUDA init (lm-eval): not counted
            run_invscale(args.binary, model, args.data_dir, tmp / "warm-inv", limit=2, tasks=inv_tasks)
            run_lm_eval(model, lm_tasks, include, tmp / "warm-lm", limit=2)
            warmed = True
        inv = run_invscale(args.binary, model, args.data_dir, tmp / f"inv-{name}", tasks=inv_tasks)
        # invscale's figures first, in case lm-eval does not finish within the device's time.
        print(f"{name}: invscale end to end {inv['wall_seconds']:.1f}s, scoring {inv['scoring_seconds']:.2f}s, "
              f"{inv['tokens_computed']} unique tokens", flush=True)
        report["shapes"][name] = {"parameters": params, "invscale": inv}
        (args.out_dir / "benchmark.json").write_text(json.dumps(report, indent=2))
        lm = run_lm_eval(model, lm_tasks, include, tmp / f"lm-{name}")
        lm_phase = lm["ll_seconds"] - lm["probe_seconds"]
        agreement = compare_samples(tmp / f"inv-{name}", tmp / f"lm-{name}", names)
        row = {
            "parameters": params,
            "invscale": inv,
            "lm_eval": lm,
            "end_to_end_ratio": lm["wall_seconds"] / inv["wall_seconds"],
            "loglikelihood_phase_ratio": lm_phase / inv["scoring_seconds"],
            "invscale_unique_tokens_per_s": inv["tokens_computed"] / inv["scoring_seconds"],
            "invscale_mfu": 2 * params * inv["tokens_computed"] / inv["scoring_seconds"] / PEAK_FLOPS,
            "lm_eval_mfu_on_unique_tokens": 2 * params * inv["tokens_computed"] / lm_phase / PEAK_FLOPS,
            "lm_eval_mfu_on_its_tokens": 2 * params * lm["model_call_tokens"] / lm_phase / PEAK_FLOPS,
            "agreement_bf16": agreement,
        }
        report["shapes"][name] = row
        print(
            f"{name} ({params / 1e9:.2f}B): end to end invscale {inv['wall_seconds']:.1f}s, lm-eval {lm['wall_seconds']:.1f}s "
            f"({row['end_to_end_ratio']:.2f}x); log-likelihood phase invscale {inv['scoring_seconds']:.2f}s, lm-eval "
            f"{lm_phase:.2f}s after a {lm['probe_seconds']:.1f}s probe ({row['loglikelihood_phase_ratio']:.2f}x); tokens: "
            f"invscale {inv['tokens_computed']} unique of {inv['tokens_requested']} requested, lm-eval {lm['model_call_tokens']} "
            f"through the model (padded); invscale {row['invscale_unique_tokens_per_s']:.0f} unique tokens/s, MFU "
            f"{row['invscale_mfu']:.1%}; lm-eval MFU {row['lm_eval_mfu_on_its_tokens']:.1%} on its tokens; bf16 "
            f"agreement: same argmax on {agreement['same_argmax']}/{agreement['documents']} documents, |Δ ll| median "
            f"{agreement['median_abs_delta_ll']:.3f}, max {agreement['max_abs_delta_ll']:.3f}",
            flush=True,
        )
        (args.out_dir / "benchmark.json").write_text(json.dumps(report, indent=2))
        import shutil
        shutil.rmtree(model)


if __name__ == "__main__":
    main()
