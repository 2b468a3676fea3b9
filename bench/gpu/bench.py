#!/usr/bin/env python3
"""The GPU benchmarks and checks, one entry point (figures in bench/gpu/RESULTS.md):

    python3 bench/gpu/bench.py COMMAND [ARGS...]     # each script's docstring gives its arguments

On the accelerator machine (the CUDA binary carried there, see shared/docs/GPU.md):
  speed            invscale against lm-evaluation-harness (hf) on the same GPU, checkpoints and
                   tasks: end to end, log-likelihood phase, MFU (benchmark.py)
  logprobs         CUDA log-probs against transformers on the same GPU, f32 and bf16 (check_logprobs.py)
  quantized        a GGUF scored quantized and dequantized, GPU and CPU, against llama.cpp (check_quantized.py)
  quantized-speed  --dtype quantized on the GPU: our TF32 product vs candle's kernels vs bf16 (quantized_speed.py)
  data-parallel    --device cuda:0,cuda:1 against one GPU, bit for bit (check_data_parallel.py)
  architectures    issue 21's architectures at real shapes, bf16 argmax agreement with transformers
                   (check_architectures.py)
  profile          one pass of a real shape, time by kind of work (profile_pass.py)
Here, to make what is carried there:
  cut-gguf         a real GGUF cut to its first and last blocks (cut_gguf.py)
  random-gguf      a GGUF of a real shape with random quantized weights, timing only (random_gguf.py)
  llama-cpp-requests  llama.cpp's request log-likelihoods, the quantized check's reference (llama_cpp_requests.py)

The investigations of earlier sessions (first-pass set-up, weight upload, host timelines, the
fused kernel per task) ended in RESULTS.md; their scripts are gone.
"""

import runpy
import sys
from pathlib import Path

COMMANDS = {
    "speed": "benchmark.py",
    "logprobs": "check_logprobs.py",
    "quantized": "check_quantized.py",
    "quantized-speed": "quantized_speed.py",
    "data-parallel": "check_data_parallel.py",
    "architectures": "check_architectures.py",
    "profile": "profile_pass.py",
    "cut-gguf": "cut_gguf.py",
    "random-gguf": "random_gguf.py",
    "llama-cpp-requests": "llama_cpp_requests.py",
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    script = Path(__file__).parent / COMMANDS[sys.argv[1]]
    sys.argv = [str(script)] + sys.argv[2:]
    runpy.run_path(str(script), run_name="__main__")
