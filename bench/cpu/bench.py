#!/usr/bin/env python3
"""The CPU benchmarks, one entry point (figures in bench/cpu/RESULTS.md):

    python3 bench/cpu/bench.py COMMAND [ARGS...]     # each script's docstring gives its arguments

  speed            invscale (f32, quantized), lm-evaluation-harness and llama.cpp on the same
                   model, data and requests, each its own process: wall time, tokens/s, peak RSS,
                   ratios, medians of --repeats (benchmark.py)
  llama-cpp        one task's requests scored by llama.cpp with prompt reuse, as `speed` runs it
                   (llama_cpp_scorer.py)

Run with the reference Python (`~/.cache/invscale/pyref/bin/python`: lm-eval, llama-cpp-python).
The forward-pass micro-benchmark is `cargo bench -p invscale-models --bench forward`.
"""

import runpy
import sys
from pathlib import Path

COMMANDS = {"speed": "benchmark.py", "llama-cpp": "llama_cpp_scorer.py"}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    script = Path(__file__).parent / COMMANDS[sys.argv[1]]
    sys.argv = [str(script)] + sys.argv[2:]
    runpy.run_path(str(script), run_name="__main__")
