"""One hindsight-neglect pass of invscale on a random-weight model of a real shape, with the
device synchronised around each kind of work (INVSCALE_PROFILE=2): where the forward's time goes.

    python3 bench/gpu/profile_pass.py [SHAPE ...] [--fused-only]   # on the accelerator machine; /tmp/invscale, .gpu/data
"""
import sys, os, subprocess, tempfile
from pathlib import Path
sys.path.insert(0, "bench/gpu")
import benchmark as b

tmp = Path(tempfile.mkdtemp())
b.train_tokenizer(Path(".gpu/data"), tmp / "tok")
shapes = [a for a in sys.argv[1:] if not a.startswith("--")] or ["opt-1.3b"]
for shape in shapes:
    model, _ = b.make_model(shape, tmp, tmp / "tok")
    for fused in ["1"] if "--fused-only" in sys.argv else ["1", "0"]:
        env = dict(os.environ, INVSCALE_PROFILE="2", INVSCALE_FUSED_ATTENTION=fused)
        cmd = ["/tmp/invscale", "run", "--model", str(model), "--tasks", "hindsight_neglect", "--limit", "100",
               "--data-dir", ".gpu/data", "--device", "cuda", "--dtype", "bf16", "--no-cache"]
        subprocess.run(cmd, env=env, capture_output=True)  # warm
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        print(shape, "fused" if fused == "1" else "padded")
        print("\n".join(l for l in r.stderr.splitlines() if l.startswith("profile")))
    subprocess.run(["rm", "-rf", str(model)])
