"""llama.cpp's log-probs (llama-cpp-python, logits_all=True; never invscale's) on the tiny GGUF files
kept quantized, for the quantized path's test: the token ids of the tiny fixture's rows
(crates/invscale-models/tests/fixtures/tiny/logprobs.jsonl) of each variant, log-softmax in
float64.

    ~/.cache/invscale/llama-venv/bin/python reference/tiny_llama_cpp.py [phi3-llamacpp]

Reads crates/invscale-models/tests/fixtures/tiny-gguf/<variant>.q8_0.gguf (reference/tiny_gguf.py);
writes crates/invscale-models/tests/fixtures/tiny-gguf/llama_cpp.jsonl.
"""
import json
import sys

from llama_cpp_logprobs import token_logprobs
from tokens import ROOT

TINY = ROOT / "crates/invscale-models/tests/fixtures/tiny"
GGUF = ROOT / "crates/invscale-models/tests/fixtures/tiny-gguf"


def main():
    import llama_cpp

    variants = sys.argv[1:] or ["phi3-llamacpp"]
    rows = [json.loads(l) for l in (TINY / "logprobs.jsonl").read_text().splitlines()[1:]]
    out = [json.dumps({"tool": f"llama-cpp-python {llama_cpp.__version__}", "file": "<variant>.q8_0.gguf"})]
    for name in variants:
        llm = llama_cpp.Llama(model_path=str(GGUF / f"{name}.q8_0.gguf"), logits_all=True, n_ctx=128, verbose=False)
        for r in rows:
            if r["model"] == name:
                out.append(json.dumps({"model": name, "task": r["task"], "doc": r["doc"], "ids": r["ids"],
                                       "logprobs": token_logprobs(llm, r["ids"])}))
    (GGUF / "llama_cpp.jsonl").write_text("\n".join(out) + "\n")
    print(f"wrote {len(out) - 1} rows to {GGUF / 'llama_cpp.jsonl'}", file=sys.stderr)


if __name__ == "__main__":
    main()
