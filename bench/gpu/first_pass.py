"""What the first pass of a GPU run costs against the others: makes a random checkpoint of a real
shape as benchmark.py does, warms the driver's PTX cache with one short run, then runs the three
real tasks several times under each setting (environment variables of the binary) with
INVSCALE_PROFILE=1 and prints, per run, the load and scoring times and the first pass's time.

    python3 bench/gpu/first_pass.py BINARY OUT [--shape opt-1.3b] [--repeats 2]
"""
import argparse, json, os, re, subprocess, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import benchmark as b

# Environment of the binary per setting. (Session 10 compared warm-up variants here with switches
# since removed; bench/gpu/RESULTS.md has the figures.)
SETTINGS = {
    "plain": {},
    "by-kind": {"INVSCALE_PROFILE": "2"},  # the device synchronised around each kind of work
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", default="opt-1.3b")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="which of: " + ", ".join(SETTINGS))
    ap.add_argument("--data-dir", type=Path, default=Path(".gpu/data"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp, model, _ = b.scratch_model(args.data_dir, args.shape)
    cmd = [args.binary, "run", "--model", str(model), "--tasks", ",".join(b.TASKS), "--data-dir", str(args.data_dir),
           "--device", "cuda", "--dtype", "bf16", "--no-cache"]
    subprocess.run(cmd + ["--output-path", str(tmp / "warm"), "--limit", "2"], capture_output=True)
    rows = []
    for r in range(args.repeats):
        for name in args.settings.split(","):
            extra = SETTINGS[name]
            out = tmp / f"{name}-{r}"
            p = subprocess.run(cmd + ["--output-path", str(out)], env={**os.environ, "INVSCALE_PROFILE": "1", **extra},
                               capture_output=True, text=True)
            (args.out / f"{name}-{r}.txt").write_text(p.stderr)
            if p.returncode != 0:
                print(f"{name}: failed\n{p.stderr[-2000:]}")
                continue
            [res] = list(out.glob("**/results_*.json"))
            timing = json.loads(res.read_text())["invscale"]["timing"]
            passes = [sum(float(x) for x in m.groups()) for m in re.finditer(
                r"profile: pass of (?:\d+) tokens .*?masks ([\d.]+) ms, forward ([\d.]+) ms, LM head on \d+ rows ([\d.]+) ms", p.stderr)]
            row = {"setting": name, "repeat": r, "load_s": timing["model_load_seconds"], "scoring_s": timing["scoring_seconds"],
                   "passes": len(passes), "first_pass_ms": passes[0] if passes else None,
                   "pass_ms": sum(passes), "first_tokens": re.search(r"pass of (\d+) tokens", p.stderr).group(1)}
            rows.append(row)
            print(f"{name:20} #{r}: load {row['load_s']:.3f} s, scoring {row['scoring_s']:.3f} s, {len(passes)} passes "
                  f"{row['pass_ms']:.1f} ms, first {row['first_pass_ms']:.1f} ms ({row['first_tokens']} tokens)", flush=True)
    (args.out / "first_pass.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
