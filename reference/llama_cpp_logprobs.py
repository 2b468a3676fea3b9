"""Quantized-path fixtures from llama.cpp (llama-cpp-python, logits_all=True), never from invscale.

Same 100 documents as reference/logprobs.py. For each, with the tokenizer's default BOS:
  * `logprobs`: log p(token_i | tokens_<i) for every position i >= 1 of `prompt + classes[0]`;
  * `class_ll`: each class's log-likelihood as lm-eval requests it (context = prompt, continuation
    = the tokens of `prompt + class` after those of `prompt`), summed over the continuation.
Log-softmax over llama.cpp's logits is computed in float64 here.

    reference/llama_cpp_logprobs.py MODEL [MODEL ...]
Writes crates/invscale-models/tests/fixtures/logprobs/llama.cpp-<model>.jsonl
"""
import json
import sys
import time

import numpy as np
from logprobs import OUT, selected
from tokens import MODELS, MODEL_FILES


def token_logprobs(llm, ids):
    """log p(ids[i] | ids[:i]) for i >= 1 from a `logits_all` llama_cpp.Llama, log-softmax in float64."""
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]


def main():
    import llama_cpp

    OUT.mkdir(parents=True, exist_ok=True)
    for model in sys.argv[1:]:
        t0 = time.time()
        path = MODELS / MODEL_FILES[model]
        llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=4096, n_batch=512, verbose=False)
        bos_default = llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        bos = [llm.token_bos()] if bos_default else []

        def tok(text):
            return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

        out = OUT / f"llama.cpp-{model}.jsonl"
        with open(out, "w") as f:
            f.write(json.dumps({"tool": f"llama-cpp-python {llama_cpp.__version__}", "model": path.name,
                                "bos": bos_default, "text": "prompt + classes[0]"}) + "\n")
            n = 0
            for task, doc_id, prompt, classes in selected():
                ctx = bos + tok(prompt)
                first = bos + tok(prompt + classes[0])
                class_ll = []
                for c in classes:
                    whole = bos + tok(prompt + c)
                    lp = token_logprobs(llm, whole)
                    class_ll.append(round(sum(lp[len(ctx) - 1:]), 6))
                lp = token_logprobs(llm, first)
                f.write(json.dumps({"task": task, "doc": doc_id, "n": len(first),
                                    "logprobs": [round(x, 6) for x in lp], "class_ll": class_ll}) + "\n")
                n += 1
        print(f"wrote {out}: {n} documents in {time.time() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
