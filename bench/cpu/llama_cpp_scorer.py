"""Scores a task's requests with llama.cpp (llama-cpp-python), as a careful user would.

Each document's context (the prompt) is evaluated once; every continuation is then evaluated
on top of that prompt's KV cache (`n_tokens` reset to the context, which makes `eval` drop what
came after it) — llama.cpp's prompt reuse. Requests are split as lm-eval splits them: context =
tokens of the prompt, continuation = the tokens of prompt + class after those of the prompt.
Log-softmax in float64 over llama.cpp's logits.

    llama_cpp_scorer.py MODEL.gguf TASK_FILE.jsonl OUT.json [--limit N] [--threads N]

Writes {"tool", "docs": [{"doc_id", "ll": [...], "pred", "target"}], "tokens_computed"}.
"""
import argparse
import ast
import json

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(model_path=args.model, logits_all=True, n_ctx=4096, n_batch=512,
                          n_threads=args.threads, verbose=False)
    bos = [llm.token_bos()] if llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true" else []

    def tok(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def logprobs(first, ids):
        # log p(ids[i] | ...) for i in first..len(ids), from the logits llama.cpp kept.
        logits = np.asarray(llm.scores[first - 1: len(ids) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return [float(logp[i - first, ids[i]]) for i in range(first, len(ids))]

    docs, computed = [], 0
    with open(args.data, encoding="utf-8") as f:
        for doc_id, line in enumerate(f):
            if args.limit is not None and doc_id >= args.limit:
                break
            row = json.loads(line)
            classes = row["classes"]
            if isinstance(classes, str):
                classes = ast.literal_eval(classes)
            ctx = bos + tok(row["prompt"])
            llm.reset()
            llm.eval(ctx)
            computed += len(ctx)
            lls = []
            for c in classes:
                whole = bos + tok(row["prompt"] + c)
                # lm-eval's split: the continuation is what follows the prompt's tokens; where the
                # class merges with the prompt's last token, the shared prefix is shorter.
                keep = 0
                while keep < min(len(ctx), len(whole)) and ctx[keep] == whole[keep]:
                    keep += 1
                keep = min(keep, len(ctx))
                llm.n_tokens = keep
                llm.eval(whole[keep:])
                computed += len(whole) - keep
                lls.append(sum(logprobs(len(ctx), whole)))
            docs.append({"doc_id": doc_id, "ll": lls, "pred": int(np.argmax(lls)),
                         "target": int(row["answer_index"])})
    with open(args.out, "w") as f:
        json.dump({"tool": f"llama-cpp-python {llama_cpp.__version__}", "docs": docs,
                   "tokens_computed": computed}, f)


if __name__ == "__main__":
    main()
