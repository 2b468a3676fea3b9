"""Where the wall time of a GPU run goes between the passes: makes a random checkpoint of a real
shape and the tokenizer as benchmark.py does, runs `invscale run` (after a warm-up) on the real
tasks or the suite with INVSCALE_PROFILE=1, and prints per task the host time before its first
pass (tokenising, the prefix tree, batching) and the time in passes, against the run's wall and
scoring times. The raw timelines go to OUT/.

    python3 bench/gpu/timeline.py BINARY OUT [--shape pythia-1.4b] [--workload real|suite]
"""
import argparse, json, os, re, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import benchmark as b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", default="pythia-1.4b")
    ap.add_argument("--workload", choices=["real", "suite"], default="real")
    ap.add_argument("--data-dir", type=Path, default=Path(".gpu/data"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp, model, _ = b.scratch_model(args.data_dir, args.shape)
    if args.workload == "suite":
        from synthetic import write_suite

        tasks = [str(p) for p in write_suite(args.data_dir, tmp / "suite")]
    else:
        tasks = list(b.TASKS)
    cmd = [args.binary, "run", "--model", str(model), "--tasks", ",".join(tasks), "--data-dir", str(args.data_dir),
           "--device", "cuda", "--dtype", "bf16", "--no-cache", "--log-samples"]
    env = dict(os.environ, INVSCALE_PROFILE="1")
    subprocess.run(cmd + ["--output-path", str(tmp / "warm"), "--limit", "2"], env=env, capture_output=True)
    t = time.perf_counter()
    p = subprocess.run(cmd + ["--output-path", str(tmp / "run")], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    (args.out / f"timeline-{args.workload}-{args.shape}.txt").write_text(p.stderr)
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    [results] = list((tmp / "run").glob("**/results_*.json"))
    timing = json.loads(results.read_text())["invscale"]["timing"]
    # Per task: from "preparing" to "batches planned" is host work (on a GPU it runs beside the
    # passes of the task before); the passes before a task's "done" line are its own.
    tasks, passes = {}, []
    for line in p.stderr.splitlines():
        if m := re.match(r"profile: at ([\d.]+) ms: task (\S+): preparing", line):
            tasks[m.group(2)] = {"start": float(m.group(1)), "prep_ms": 0.0, "passes": 0, "pass_ms": 0.0}
        elif m := re.match(r"profile: at ([\d.]+) ms: task (\S+): \d+ batches planned", line):
            tasks[m.group(2)]["prep_ms"] = float(m.group(1)) - tasks[m.group(2)]["start"]
        elif m := re.match(r"profile: pass .*masks ([\d.]+) ms, forward ([\d.]+) ms, LM head on \d+ rows ([\d.]+) ms", line):
            passes.append(sum(float(x) for x in m.groups()))
        elif (m := re.match(r"(\S+): done in", line)) and m.group(1) in tasks:
            tasks[m.group(1)]["passes"] += len(passes)
            tasks[m.group(1)]["pass_ms"] += sum(passes)
            passes = []
    print(f"{args.shape} {args.workload}: wall {wall:.2f} s, load {timing['model_load_seconds']:.2f} s, "
          f"scoring {timing['scoring_seconds']:.2f} s")
    prep = sum(t["prep_ms"] for t in tasks.values())
    passes = sum(t["pass_ms"] for t in tasks.values())
    for name, t in tasks.items():
        print(f"  {name:60} prep {t['prep_ms']:8.1f} ms  {t['passes']:5} passes {t['pass_ms']:9.1f} ms")
    print(f"  all tasks: planning {prep / 1e3:.2f} s (beside the passes, except the first task's), "
          f"passes {passes / 1e3:.2f} s, scoring phase {timing['scoring_seconds']:.2f} s")

if __name__ == "__main__":
    main()
