"""Where invscale's GPU time goes, task by task: makes the OPT-1.3B-shaped random checkpoint and
tokenizer as benchmark.py does, runs `invscale run` on each real task with INVSCALE_PROFILE=1
(after a warm-up run) and prints each task's passes and forward time, with the fused attention
kernel and without it (INVSCALE_FUSED_ATTENTION=0: padded groups).

    python3 bench/gpu/profile_tasks.py [SHAPE]   # on the accelerator machine; /tmp/invscale, .gpu/data
"""
import sys, os, subprocess, tempfile, re, collections
from pathlib import Path
sys.path.insert(0, "bench/gpu")
import benchmark as b
tmp = Path(tempfile.mkdtemp())
b.train_tokenizer(Path(".gpu/data"), tmp / "tok")
shape = sys.argv[1] if len(sys.argv) > 1 else "opt-1.3b"
model, _ = b.make_model(shape, tmp, tmp / "tok")
for task, fused in [(t, f) for t in ["neqa", "memo_trap", "hindsight_neglect"] for f in ["1", "0"]]:
    env = dict(os.environ, INVSCALE_PROFILE="1", INVSCALE_FUSED_ATTENTION=fused)
    cmd = ["/tmp/invscale", "run", "--model", str(model), "--tasks", task, "--data-dir", ".gpu/data", "--device", "cuda", "--dtype", "bf16", "--no-cache"]
    subprocess.run(cmd, env=env, capture_output=True)  # warm
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.startswith("profile: pass")]
    fw = [float(re.search(r"forward ([\d.]+) ms", l).group(1)) for l in lines]
    print(shape, task, "fused" if fused == "1" else "padded", len(lines), "passes; forward ms total", round(sum(fw)), "; first:", lines[:2], r.stderr.splitlines()[-1])
