"""Data parallel on the GPUs of one host: invscale with --device cuda:0,cuda:1 must give exactly
the per-sample log-likelihoods of --device cuda:0 (the same batches, run on two copies of the
model), on the three real tasks and a random-weight model of a real shape; prints both wall times.

    python3 bench/gpu/check_data_parallel.py /tmp/invscale DATA_DIR [SHAPE]   # on a 2-GPU machine
"""
import sys, tempfile
from pathlib import Path
sys.path.insert(0, "bench/gpu")
import benchmark as b

binary, data = sys.argv[1], Path(sys.argv[2])
shape = sys.argv[3] if len(sys.argv) > 3 else "opt-1.3b"
tmp = Path(tempfile.mkdtemp())
b.train_tokenizer(data, tmp / "tok")
model, _ = b.make_model(shape, tmp, tmp / "tok")
b.run_invscale(binary, model, data, tmp / "warm", device="cuda:0,cuda:1")  # PTX JIT, cuBLAS on both (a short run leaves cuda:1 idle)
one = b.run_invscale(binary, model, data, tmp / "one", device="cuda:0")
two = b.run_invscale(binary, model, data, tmp / "two", device="cuda:0,cuda:1")
differ = docs = 0
for _, (_, name) in b.TASKS.items():
    a, c = b.sample_lls(tmp / "one", name), b.sample_lls(tmp / "two", name)
    for doc, lls in a.items():
        docs += 1
        differ += lls != c[doc]
print(f"{shape}: one GPU {one['wall_seconds']:.1f}s (scoring {one['scoring_seconds']:.2f}s), two GPUs "
      f"{two['wall_seconds']:.1f}s (scoring {two['scoring_seconds']:.2f}s); documents whose log-likelihoods "
      f"differ: {differ} of {docs}")
sys.exit(1 if differ else 0)
