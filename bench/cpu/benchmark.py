"""The CPU throughput benchmark (issue 7): invscale, lm-evaluation-harness and llama.cpp on the
same model, data and requests, in one invocation on this machine.

For each model and task, each tool runs as its own process, timed from process start to results
written (medians of --repeats runs), with its peak RSS (wait4's ru_maxrss):

  invscale f32        invscale run --dtype f32 (exact; what lm-eval computes)
  invscale quantized  invscale run --dtype quantized (llama.cpp's arithmetic)
  lm-eval             lm_eval --model hf, pretrained=DIR,gguf_file=FILE,dtype=float32,
                      --batch_size 8 (auto's probe runs out of memory here), lm-eval's own inverse_scaling task config over the
                      release files (reference/lm_eval_reference.py's task files)
  llama.cpp           bench/cpu/llama_cpp_scorer.py: llama-cpp-python, each prompt evaluated once
                      and its continuations scored on its KV cache

First, the matrix product on the models' shapes (`cargo bench -p invscale-kernels --bench gemm`,
--repeats runs, each the best of a second per shape): invscale's `cpu::gemm` against PyTorch's
(MKL) on the same threads, GFLOP/s, medians of the runs (`--skip gemm` leaves it out).

Printed per model and task: wall seconds, requested and unique tokens/s (requested = the
tokens lm-eval computes: context + continuation of every request; unique = what invscale
computes after prefix sharing), peak RSS, the ratios to invscale, and both invscale paths'
accuracies and how often the quantized path picks llama.cpp's class.

    $PYTHON bench/cpu/benchmark.py [--models smollm2-135m,gemma3-270m] [--tasks neqa,memo_trap,hindsight_neglect]
                           [--repeats 3] [--limit N] [--skip lm-eval,llama.cpp,"invscale f32"] [--out FILE]

Run it with the Python that has lm_eval (it reads lm-eval's task config). Needs: a release build (cargo build --release -p invscale-cli), the models
(scripts/fetch-models.sh), a Python with lm_eval 0.4.13, transformers, torch, gguf and
llama-cpp-python ($PYTHON, default ~/.cache/invscale/pyref/bin/python; see
reference/lm_eval_check.sh). Output format is stable: one JSON file (--out, default
bench/cpu/results/benchmark.json) and the table printed.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "reference"))
from tokens import DATA, MODELS, MODEL_FILES, TASKS  # noqa: E402
from lm_eval_reference import LM_EVAL_NAMES, write_tasks  # noqa: E402


def run(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS in MiB). Fails loudly with the tool's output."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(out.decode(errors="replace")[-4000:])
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}")
    return secs, usage.ru_maxrss / 1024


def invscale(binary, model, task, dtype, limit, tmp):
    out = tmp / f"invscale-{dtype}"
    cmd = [binary, "run", "--model", MODELS / MODEL_FILES[model], "--tasks", task, "--dtype", dtype,
           "--data-dir", DATA, "--no-cache", "--log-samples", "--output-path", out]
    if limit:
        cmd += ["--limit", str(limit)]
    secs, rss = run(cmd)
    [results] = list(out.glob("**/results_*.json"))
    res = json.loads(results.read_text())
    [name] = res["results"].keys()
    counts = res["invscale"]["tasks"][name]
    [samples] = list(out.glob(f"**/samples_{name}_*.jsonl"))
    preds = {}
    for line in samples.read_text().splitlines():
        s = json.loads(line)
        lls = [float(r[0][0]) if isinstance(r[0], list) else float(r[0]) for r in s["resps"]]
        preds[s["doc_id"]] = max(range(len(lls)), key=lambda i: (lls[i], -i))
    return {"seconds": secs, "rss_mib": rss, "acc": res["results"][name]["acc,none"],
            "tokens_requested": counts["tokens_requested"], "tokens_computed": counts["tokens_computed"],
            "preds": preds}


def lm_eval(python, model, task, limit, tmp, batch_size):
    names = write_tasks(tmp)
    [name] = [n for n in names if n == f"ref_{LM_EVAL_NAMES[task]}"]
    cmd = [python, "-m", "lm_eval", "--model", "hf",
           "--model_args", f"pretrained={MODELS},gguf_file={MODEL_FILES[model]},dtype=float32",
           "--tasks", name, "--include_path", tmp, "--device", "cpu", "--batch_size", batch_size,
           "--output_path", tmp / "lm-eval-out"]
    if limit:
        cmd += ["--limit", str(limit)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    secs, rss = run(cmd, env)
    [results] = list((tmp / "lm-eval-out").glob("**/results_*.json"))
    acc = json.loads(results.read_text())["results"][name]["acc,none"]
    return {"seconds": secs, "rss_mib": rss, "acc": acc}


def llama_cpp(python, model, task, limit, tmp):
    out = tmp / "llama-cpp.json"
    cmd = [python, ROOT / "bench/cpu/llama_cpp_scorer.py", MODELS / MODEL_FILES[model], DATA / TASKS[task], out]
    if limit:
        cmd += ["--limit", str(limit)]
    secs, rss = run(cmd)
    res = json.loads(out.read_text())
    docs = res["docs"]
    acc = sum(d["pred"] == d["target"] for d in docs) / len(docs)
    return {"seconds": secs, "rss_mib": rss, "acc": acc, "preds": {d["doc_id"]: d["pred"] for d in docs},
            "tokens_computed": res["tokens_computed"], "tool": res["tool"]}


def gemm(python, repeats):
    """The product's GFLOP/s per shape, invscale and PyTorch, medians of `repeats` runs."""
    runs = []
    for rep in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "gemm.json"
            env = dict(os.environ, INVSCALE_PYTHON=str(python), INVSCALE_BENCH_JSON=str(out))
            p = subprocess.run(["cargo", "bench", "--quiet", "-p", "invscale-kernels", "--bench", "gemm"], cwd=ROOT,
                               env=env, capture_output=True, text=True)
            if p.returncode != 0 or not out.exists():
                sys.stderr.write(p.stderr[-4000:])
                raise SystemExit("failed: cargo bench -p invscale-kernels --bench gemm")
            runs.append(json.loads(out.read_text()))
        print(f"  gemm run {rep + 1}: " + ", ".join(f"{r['invscale']:.0f}" for r in runs[-1]["gflops"]), file=sys.stderr, flush=True)
    rows = []
    for i, shape in enumerate(runs[0]["gflops"]):
        med = {tool: statistics.median(r["gflops"][i][tool] for r in runs) if shape[tool] is not None else None
               for tool in ("invscale", "candle", "pytorch")}
        rows.append({"shape": shape["shape"], "rows": shape["rows"], "in": shape["in"], "out": shape["out"],
                     "gflops": {k: round(v, 1) if v is not None else None for k, v in med.items()},
                     "runs": {tool: [r["gflops"][i][tool] for r in runs] for tool in ("invscale", "pytorch")},
                     "invscale_over_pytorch": round(med["invscale"] / med["pytorch"], 3) if med["pytorch"] else None})
    return {"threads": runs[0]["threads"], "kernel": runs[0]["kernel"], "repeats": repeats, "rows": rows}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{cpu}, {os.cpu_count()} threads, {mem} GiB, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--tasks", default="neqa,memo_trap,hindsight_neglect")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, help="first N documents per task (smoke runs; written to benchmark-limit<N>.json)")
    ap.add_argument("--skip", default="", help="tools to leave out: lm-eval, llama.cpp, 'invscale f32' (with lm-eval), "
                                               "gemm (the product's GFLOP/s)")
    # lm-eval's `--batch_size auto` probes from the model's full context (8192 tokens for
    # SmolLM2) and was killed for memory on this 24 GiB machine during hindsight-neglect.
    ap.add_argument("--lm-eval-batch-size", default="8", help="lm-eval's --batch_size (default 8; auto runs out of memory on 24 GiB)")
    ap.add_argument("--invscale", default=str(ROOT / "target/release/invscale"))
    ap.add_argument("--python", default=os.environ.get("PYTHON", str(Path.home() / ".cache/invscale/pyref/bin/python")))
    ap.add_argument("--out", help="results file (default bench/cpu/results/benchmark.json, or benchmark-limit<N>.json)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    known = ("invscale f32", "invscale quantized", "lm-eval", "llama.cpp")
    with_gemm = "gemm" not in skip
    skip.discard("gemm")
    if skip - set(known) or "invscale quantized" in skip or ("invscale f32" in skip and "lm-eval" not in skip):
        sys.exit(f"--skip: leave out any of lm-eval, llama.cpp, 'invscale f32' (only with lm-eval: it is compared "
                 f"with the f32 path), not {args.skip!r}")
    tools = [t for t in known if t not in skip]
    product = gemm(args.python, args.repeats) if with_gemm else None
    rows = []
    for model in args.models.split(","):
        for task in args.tasks.split(","):
            runs = {t: [] for t in tools}
            for rep in range(args.repeats):
                for tool in tools:
                    with tempfile.TemporaryDirectory() as tmp:
                        tmp = Path(tmp)
                        if tool.startswith("invscale"):
                            r = invscale(args.invscale, model, task, tool.split()[1], args.limit, tmp)
                        elif tool == "lm-eval":
                            r = lm_eval(args.python, model, task, args.limit, tmp, args.lm_eval_batch_size)
                        else:
                            r = llama_cpp(args.python, model, task, args.limit, tmp)
                    runs[tool].append(r)
                    print(f"  {model} {task} {tool} run {rep + 1}: {r['seconds']:.1f} s, {r['rss_mib']:.0f} MiB",
                          file=sys.stderr, flush=True)
            ours = runs["invscale quantized"][0]  # the paths plan the same passes: same token counts
            requested, unique = ours["tokens_requested"], ours["tokens_computed"]
            row = {"model": model, "model_file": MODEL_FILES[model],
                   "model_mib": round((MODELS / MODEL_FILES[model]).stat().st_size / 2**20, 1),
                   "data_mib": round((DATA / TASKS[task]).stat().st_size / 2**20, 2),
                   "task": task, "documents": len(ours["preds"]),
                   "tokens_requested": requested, "tokens_unique": unique, "tools": {}}
            for tool, rs in runs.items():
                secs = statistics.median(r["seconds"] for r in rs)
                row["tools"][tool] = {
                    "seconds": round(secs, 2), "runs": [round(r["seconds"], 2) for r in rs],
                    "rss_mib": round(max(r["rss_mib"] for r in rs), 1),
                    "requested_tokens_per_s": round(requested / secs, 1),
                    "unique_tokens_per_s": round(unique / secs, 1), "acc": rs[0]["acc"]}
                if "tokens_computed" in rs[0]:
                    row["tools"][tool]["tokens_computed"] = rs[0]["tokens_computed"]
            if "llama.cpp" in runs:
                q, l = runs["invscale quantized"][0]["preds"], runs["llama.cpp"][0]["preds"]
                row["quantized_same_class_as_llama_cpp"] = sum(q[d] == l.get(d) for d in q) / len(q)
            rows.append(row)

    lines = [f"invscale CPU benchmark — {machine()}",
             f"medians of {args.repeats} runs, process start to results written"
             + (f"; --limit {args.limit} (smoke run)" if args.limit else ""), ""]
    if product:
        lines.append(f"the f32 matrix product, GFLOP/s on {product['threads']} threads (kernel {product['kernel']}), "
                     f"medians of {product['repeats']} runs of the best of 1 s:")
        lines.append(f"{'shape':36} {'rows':>5} {'invscale':>9} {'PyTorch':>8} {'ratio':>6}")
        for g in product["rows"]:
            torch_rate, ratio = g["gflops"]["pytorch"], g["invscale_over_pytorch"]
            lines.append(f"{g['shape']:36} {g['rows']:5} {g['gflops']['invscale']:9.0f} "
                         + (f"{torch_rate:8.0f} {ratio:6.2f}" if ratio is not None else f"{'-':>8} {'-':>6}"))
        lines.append("")
    head = f"{'model':14} {'task':18} {'tool':19} {'wall s':>8} {'req tok/s':>10} {'uniq tok/s':>10} {'RSS MiB':>8} {'acc':>6} {'vs invscale':>12}"
    lines.append(head)
    # Each reference tool against the invscale path that computes what it computes.
    base = {"invscale f32": "invscale f32", "lm-eval": "invscale f32",
            "llama.cpp": "invscale quantized", "invscale quantized": "invscale quantized"}
    for row in rows:
        for tool, t in row["tools"].items():
            ours = row["tools"][base[tool]]["seconds"]
            ratio = "" if tool.startswith("invscale") else f"{t['seconds'] / ours:.2f}x slower"
            lines.append(f"{row['model']:14} {row['task']:18} {tool:19} {t['seconds']:8.1f} {t['requested_tokens_per_s']:10.0f} "
                         f"{t['unique_tokens_per_s']:10.0f} {t['rss_mib']:8.0f} {t['acc']:6.3f} {ratio:>12}")
        share = row["tokens_unique"] / row["tokens_requested"]
        extra = f"unique/requested tokens {row['tokens_unique']}/{row['tokens_requested']} = {share:.1%}"
        if "quantized_same_class_as_llama_cpp" in row:
            extra += f"; quantized picks llama.cpp's class on {row['quantized_same_class_as_llama_cpp']:.1%} of documents"
        lines.append(f"{'':14} {'':18} {extra}")
    for model in args.models.split(","):
        mine = [r for r in rows if r["model"] == model]
        for ours, theirs in (("invscale f32", "lm-eval"), ("invscale quantized", "llama.cpp")):
            if theirs in mine[0]["tools"]:
                total = sum(r["tools"][theirs]["seconds"] for r in mine) / sum(r["tools"][ours]["seconds"] for r in mine)
                lines.append(f"{model}: {ours} vs {theirs}, all tasks together: {total:.2f}x faster")
    report = "\n".join(lines)
    print(report)
    out = Path(args.out or ROOT / "bench/cpu/results" / (f"benchmark-limit{args.limit}.json" if args.limit else "benchmark.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "repeats": args.repeats, "limit": args.limit,
                               "date": time.strftime("%Y-%m-%d"), "gemm": product, "rows": rows, "table": lines},
                              indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
