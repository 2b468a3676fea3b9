#!/usr/bin/env python3
"""The server benchmark (issue 20): invscale `run --server` against lm-evaluation-harness's
`--model local-completions` on the same llama-cpp-python server, the same task and documents, in
one run: wall time, requests/s, and the per-sample log-likelihoods compared.

    python3 bench/servers/bench.py [--limit 10] [--task memo_trap] [--concurrency 1] [--out FILE]

Needs: scripts/get-llama-cpp-python.sh (the server), scripts/fetch-models.sh gemma3-270m, a
build of invscale (target/release/invscale, else target/debug/invscale), and a Python with
lm_eval[api] 0.4.13, transformers, gguf and sentencepiece: $LM_EVAL_PYTHON, default
~/.cache/invscale/lmeval-venv/bin/python (python3 -m venv ~/.cache/invscale/lmeval-venv &&
~/.cache/invscale/lmeval-venv/bin/pip install "lm_eval[api]==0.4.13" transformers gguf sentencepiece protobuf).

lm-eval needs a Hugging Face tokenizer; the hub is unreachable here, so transformers converts the
GGUF's own (AutoTokenizer gguf_file=) into a folder first. lm-eval sends text
(tokenized_requests=False: llama-cpp-python's server takes no token ids), as invscale does here.
Both read the same server, but llama-cpp-python reuses the KV-cache prefix of the previous
request and its answers depend on the order of requests (README, *Scoring on an inference
server*); lm-eval orders requests by length, invscale by document, so per-sample agreement is
reported as measured, not asserted.

Each client talks to the server through a timing proxy started here (loopback, one request at a
time as the server takes them), so the figures split each wall time into the server's own time
(the sum of its answers' times) and the client's (everything else: start-up, tokenizing,
building requests, parsing, writing results). With one llama-cpp-python server on a CPU the
server's share bounds any speed-up a client can give.
"""

import argparse
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "reference"))
from lm_eval_reference import write_task  # noqa: E402 (the reference fixtures' task files, the same here)

HOME = Path.home()
MODEL = Path(os.environ.get("INVSCALE_MODELS_DIR", HOME / ".cache/invscale/models")) / "gemma-3-270m.Q4_K_M.gguf"
LLAMA_PYTHON = os.environ.get("INVSCALE_LLAMA_PYTHON", str(HOME / ".cache/invscale/llama-venv/bin/python"))
LM_EVAL_PYTHON = os.environ.get("LM_EVAL_PYTHON", str(HOME / ".cache/invscale/lmeval-venv/bin/python"))
DATA = ROOT.parent / "shared/data/inverse_scaling/official_release"
FILES = {"memo_trap": "memo-trap_classification.jsonl", "neqa": "neqa_classification.jsonl"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [LLAMA_PYTHON, "-m", "llama_cpp.server", "--model", str(MODEL), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited; its log: {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("the server did not answer in 180 s")


class TimingProxy:
    """Forwards every request to the server and adds up how long the server took to answer."""

    def __init__(self, upstream_port: int):
        self.busy_s, self.requests, self.lock = 0.0, 0, threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def forward(self, body=None):
                started = time.perf_counter()
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=900)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                with proxy.lock:
                    proxy.busy_s += time.perf_counter() - started
                    proxy.requests += 1
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.forward()

            def do_POST(self):
                self.forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def lm_eval_task(tmp: Path, short: str) -> str:
    """lm-eval's own task config (its installed `_inverse_scaling_mc_yaml`) over the release file."""
    base = subprocess.check_output([LM_EVAL_PYTHON, "-c", "import lm_eval, pathlib; print(pathlib.Path(lm_eval.__file__).parent)"], text=True).strip()
    name = f"bench_inverse_scaling_{short}"
    write_task(tmp, Path(base) / "tasks/inverse_scaling/_inverse_scaling_mc_yaml", DATA / FILES[short], name)
    return name


def samples(out: Path) -> list:
    files = sorted(out.rglob("samples_*.jsonl"))
    assert files, f"no samples under {out}"
    rows = [json.loads(l) for l in open(files[0], encoding="utf-8")]
    rows.sort(key=lambda s: s["doc_id"])
    return [[float(r[0]) for r in s["filtered_resps"]] for s in rows]


def timed(cmd: list, log: Path, env=None) -> float:
    started = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        sys.exit(f"{cmd[0]} failed ({rc}); its log: {log}")
    return time.perf_counter() - started


def lm_eval_command(url: str, tok: Path, tmp: Path, task: str, limit: int, concurrency: int) -> list:
    return [LM_EVAL_PYTHON, "-m", "lm_eval", "--model", "local-completions", "--model_args",
            f"base_url={url}/v1/completions,tokenizer={tok},num_concurrent={concurrency},"
            "tokenized_requests=False,max_retries=3,timeout=900",
            "--tasks", task, "--include_path", str(tmp), "--limit", str(limit), "--log_samples",
            "--output_path", str(tmp / "lm-eval")]


def figures(wall_s: float, proxy: TimingProxy) -> dict:
    return {"wall_s": round(wall_s, 2), "http_requests": proxy.requests, "server_s": round(proxy.busy_s, 2),
            "client_s": round(wall_s - proxy.busy_s, 2), "requests_per_s": round(proxy.requests / wall_s, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--task", choices=sorted(FILES), default="memo_trap")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench/servers/results/latest.json"))
    args = ap.parse_args()
    invscale = next((p for p in [ROOT / "target/release/invscale", ROOT / "target/debug/invscale"] if p.exists()), None)
    if invscale is None:
        sys.exit("no invscale build: cargo build --release -p invscale-cli")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        port = free_port()
        server = start_server(port, tmp / "server.log")
        try:
            # A tokenizer folder for lm-eval, converted from the GGUF by transformers.
            tok = tmp / "tokenizer"
            subprocess.check_call([LM_EVAL_PYTHON, "-c",
                "import sys; from transformers import AutoTokenizer; "
                "AutoTokenizer.from_pretrained(sys.argv[1], gguf_file=sys.argv[2]).save_pretrained(sys.argv[3])",
                str(MODEL.parent), MODEL.name, str(tok)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ours_proxy = TimingProxy(port)
            inv_s = timed([str(invscale), "run", "--server", ours_proxy.url, "--model", str(MODEL), "--tasks", f"inverse_scaling_{args.task}",
                           "--data-dir", str(DATA), "--limit", str(args.limit), "--log-samples", "--no-cache",
                           "--concurrency", str(args.concurrency), "--output-path", str(tmp / "invscale")], tmp / "invscale.log")
            ours_proxy.stop()
            name = lm_eval_task(tmp, args.task)
            their_proxy = TimingProxy(port)
            lm_s = timed(lm_eval_command(their_proxy.url, tok, tmp, name, args.limit, args.concurrency), tmp / "lm-eval.log",
                         env={**os.environ, "OPENAI_API_KEY": "EMPTY", "HF_HUB_OFFLINE": "1"})
            their_proxy.stop()
            ours, theirs = samples(tmp / "invscale"), samples(tmp / "lm-eval")
        finally:
            server.kill()
        diffs = [abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x, y)]
        same = sum(max(range(len(x)), key=x.__getitem__) == max(range(len(y)), key=y.__getitem__) for x, y in zip(ours, theirs))
        result = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "engine": "llama-cpp-python 0.3.36 server (one model lock: requests answered one at a time), Gemma-3-270M Q4_K_M, CPU",
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
            "cores": os.cpu_count(),
            "task": args.task, "documents": args.limit, "concurrency": args.concurrency,
            "invscale": {"binary": str(invscale.relative_to(ROOT)), **figures(inv_s, ours_proxy)},
            "lm_eval": figures(lm_s, their_proxy),
            "speedup_wall": round(lm_s / inv_s, 3),
            "speedup_client": round((lm_s - their_proxy.busy_s) / max(inv_s - ours_proxy.busy_s, 1e-9), 3),
            "per_sample": {"max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / len(diffs), "within_1e-6": sum(d <= 1e-6 for d in diffs),
                           "of": len(diffs), "same_class": same, "documents": len(ours)},
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
