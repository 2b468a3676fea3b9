"""llama.cpp's log-likelihood of every request of the first N documents of the three real tasks, for
a GGUF file: the reference bench/gpu/check_quantized.py holds the quantized GPU path to (on the
accelerator machine, where llama.cpp is not installed). Run here, where llama-cpp-python is:

    python3 bench/gpu/llama_cpp_requests.py MODEL.gguf OUT.json [--limit 100]

As reference/llama_cpp_logprobs.py: with the tokenizer's default BOS, each class's log-likelihood
as lm-eval requests it (context = prompt, continuation = the tokens of `prompt + class` after those
of `prompt`), from llama.cpp's logits (`logits_all=True`) with the log-softmax in float64.
Never from invscale.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
from llama_cpp_logprobs import token_logprobs  # noqa: E402 (the fixtures' arithmetic)
from tokens import documents  # noqa: E402 (the real tasks' files, read in place)


def main():
    import llama_cpp

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out", type=Path)
    ap.add_argument("--limit", type=int, default=100)
    args = ap.parse_args()
    t0 = time.time()
    llm = llama_cpp.Llama(model_path=args.model, logits_all=True, n_ctx=4096, n_batch=512, verbose=False)
    bos = [llm.token_bos()] if llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true" else []

    def tok(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def loglikelihood(ctx, whole):
        return sum(token_logprobs(llm, whole)[len(ctx) - 1:]), len(whole) - len(ctx)

    rows = []
    for task, doc_id, prompt, classes in documents():
        if doc_id >= args.limit:
            continue
        ctx = bos + tok(prompt)
        scored = [loglikelihood(ctx, bos + tok(prompt + c)) for c in classes]
        rows.append({"task": task, "doc": doc_id, "class_ll": [round(ll, 6) for ll, _ in scored],
                     "tokens": [n for _, n in scored]})
    args.out.write_text(json.dumps({"tool": f"llama-cpp-python {llama_cpp.__version__}", "model": Path(args.model).name,
                                    "limit": args.limit, "rows": rows}))
    print(f"wrote {args.out}: {len(rows)} documents in {time.time() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
