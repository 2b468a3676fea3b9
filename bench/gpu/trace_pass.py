"""Where invscale's wall time goes on the GPU, without synchronising around each piece: the
three real tasks on random-weight models of real shapes, with INVSCALE_PROFILE=1 (each pass's
forward and LM head, the load's parts), the weights read the direct way (pinned buffers, many
threads) and candle's way (INVSCALE_DIRECT_UPLOAD=0); and the host-to-device bandwidth the machine
offers (torch, pageable and pinned), which bounds loading.

    python3 bench/gpu/trace_pass.py OUT_DIR [SHAPE ...] [--upload staged:8,register:16]   # on the accelerator machine; /tmp/invscale, .gpu/data
"""
import glob, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "bench/gpu")
import benchmark as b
import torch

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
uploads = sys.argv[sys.argv.index("--upload") + 1] if "--upload" in sys.argv else ""
shapes = [a for a in sys.argv[2:] if not a.startswith("--") and a != uploads] or ["llama3-8b"]

x = torch.empty(1 << 30, dtype=torch.uint8)
for name, src in [("pageable", x), ("pinned", x.pin_memory())]:
    src.to("cuda"); torch.cuda.synchronize()
    t = time.perf_counter(); src.to("cuda"); torch.cuda.synchronize()
    print(f"host-to-device {name}: {1 / (time.perf_counter() - t):.1f} GiB/s", flush=True)
del x

tmp = Path(tempfile.mkdtemp())
b.train_tokenizer(Path(".gpu/data"), tmp / "tok")
report = {}
for shape in shapes:
    model, params = b.make_model(shape, tmp, tmp / "tok")
    cmd = ["/tmp/invscale", "run", "--model", str(model), "--tasks", ",".join(b.TASKS), "--data-dir", ".gpu/data",
           "--device", "cuda", "--dtype", "bf16", "--no-cache"]
    subprocess.run(cmd + ["--limit", "2"], capture_output=True)  # warm: PTX JIT, page cache
    for way in filter(None, uploads.split(",")):  # the load alone, each way of feeding the bus
        feed, n = way.split(":")
        env = dict(os.environ, INVSCALE_PROFILE="1", INVSCALE_UPLOAD=feed, INVSCALE_UPLOAD_THREADS=n)
        for _ in range(2):
            r = subprocess.run(cmd + ["--limit", "1", "--output-path", str(tmp / f"u{way}")], env=env, capture_output=True, text=True)
            print(shape, way, *[l for l in r.stderr.splitlines() if "upload" in l or "loaded in" in l or "rror" in l], flush=True)
    for run, direct in enumerate(["1", "0", "1"]):
        o = tmp / f"o-{shape}-{run}"
        env = dict(os.environ, INVSCALE_PROFILE="1", INVSCALE_DIRECT_UPLOAD=direct)
        t = time.perf_counter()
        r = subprocess.run(cmd + ["--output-path", str(o)], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode:
            print(r.stderr[-3000:]); sys.exit(1)
        [res] = glob.glob(str(o / "**/results_*.json"), recursive=True)
        timing = json.loads(Path(res).read_text())["invscale"]["timing"]
        fwd = [float(m) for m in re.findall(r"forward ([\d.]+) ms", r.stderr)]
        head = [float(m) for m in re.findall(r"LM head on \d+ rows ([\d.]+) ms", r.stderr)]
        row = {"direct_upload": direct == "1", "wall_s": wall, **timing, "passes": len(fwd), "forward_s": sum(fwd) / 1e3,
               "lm_head_s": sum(head) / 1e3, "load_profile": [l for l in r.stderr.splitlines() if "profile: load" in l]}
        row["scoring_outside_passes_s"] = timing["scoring_seconds"] - row["forward_s"] - row["lm_head_s"]
        row["timeline"] = [l for l in r.stderr.splitlines() if l.startswith("profile: at ")]
        report.setdefault(shape, []).append(row)
        print(shape, json.dumps({k: v for k, v in row.items() if k != "timeline"}), flush=True)
    (out / "trace.json").write_text(json.dumps(report, indent=1))
    shutil.rmtree(model)
