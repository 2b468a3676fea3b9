"""Scores a task's requests with llama.cpp (llama-cpp-python), as a careful user would.

Each document's context (the prompt) is evaluated once, with logits for its last token only;
every continuation is then evaluated token by token on top of that prompt's KV cache
(`n_tokens` reset to the context, which makes `eval` drop what came after it) — llama.cpp's
prompt reuse, and no LM head over the prompt. Requests are split as lm-eval splits them:
context = tokens of the prompt, continuation = the tokens of prompt + class after those of the
prompt. Log-softmax in float64 over llama.cpp's logits.

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

    # logits_all=False: llama.cpp computes the LM head only for the last token of each eval, as
    # a careful user would have it (the prompt's positions need no logits).
    llm = llama_cpp.Llama(model_path=args.model, logits_all=False, n_ctx=4096, n_batch=512,
                          n_threads=args.threads, verbose=False)
    bos = [llm.token_bos()] if llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true" else []

    def tok(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def last_logits():
        # The logits of the last token evaluated (the only row llama.cpp computed), as float64.
        return np.array(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)), dtype=np.float64)

    def logprob(logits, token):
        top = logits.max()
        return float(logits[token] - top - np.log(np.exp(logits - top).sum()))

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
            ctx_logits = last_logits()
            lls = []
            for c in classes:
                whole = bos + tok(row["prompt"] + c)
                # lm-eval's split: the continuation is whole[len(ctx):]. Where the class merges
                # with the prompt's last token, evaluation resumes before the first difference.
                keep = 0
                while keep < min(len(ctx), len(whole)) and ctx[keep] == whole[keep]:
                    keep += 1
                if keep == len(ctx):
                    llm.n_tokens = len(ctx)  # on the prompt's KV cache
                    logits, pos = ctx_logits, len(ctx)
                else:
                    start = max(keep - 1, 0)
                    llm.n_tokens = start
                    llm.eval([whole[start]])
                    computed += 1
                    logits, pos = last_logits(), start + 1
                ll = 0.0
                while True:  # logits predict whole[pos]
                    if pos >= len(ctx):
                        ll += logprob(logits, whole[pos])
                    if pos == len(whole) - 1:
                        break
                    llm.eval([whole[pos]])
                    computed += 1
                    logits, pos = last_logits(), pos + 1
                lls.append(ll)
            docs.append({"doc_id": doc_id, "ll": lls, "pred": int(np.argmax(lls)),
                         "target": int(row["answer_index"])})
    with open(args.out, "w") as f:
        json.dump({"tool": f"llama-cpp-python {llama_cpp.__version__}", "docs": docs,
                   "tokens_computed": computed}, f)


if __name__ == "__main__":
    main()
