"""Per-token log-prob fixtures from transformers (never from invscale).

For a fixed selection of real documents (45 NeQA, 45 memo-trap, 10 hindsight-neglect: 100 per
model; the hindsight prompts are ~700 tokens, past Gemma 3's 512-token window), runs `prompt + classes[0]` through transformers' model loaded from the GGUF file
(`gguf_file=`, dequantized to float32, exactly what lm-eval's hf backend does with it), with
the tokenizer's default BOS, and records log p(token_i | tokens_<i) for every position i >= 1.
Only task, document id, the BOS flag and the numbers are stored.

    reference/logprobs.py MODEL [MODEL ...]   (smollm2-135m gemma3-270m qwen2.5-0.5b)

Writes crates/invscale-models/tests/fixtures/logprobs/transformers-f32-<model>.jsonl
"""
import sys
import time

from tokens import DATA, MODELS, MODEL_FILES, ROOT, documents  # noqa: E402 (same folder)

OUT = ROOT / "crates/invscale-models/tests/fixtures/logprobs"
SELECTION = {"neqa": range(0, 300, 6), "memo_trap": range(0, 936, 20), "hindsight_neglect": range(0, 315, 31)}
LIMITS = {"neqa": 45, "memo_trap": 45, "hindsight_neglect": 10}


def selected():
    for task, doc_id, prompt, classes in documents():
        if doc_id in SELECTION[task] and list(SELECTION[task]).index(doc_id) < LIMITS[task]:
            yield task, doc_id, prompt, classes


def main():
    import torch  # here, not at the top: llama_cpp_logprobs.py imports this module without torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import transformers

    torch.set_grad_enabled(False)
    OUT.mkdir(parents=True, exist_ok=True)
    for model in sys.argv[1:]:
        file = MODEL_FILES[model]
        t0 = time.time()
        tok = AutoTokenizer.from_pretrained(str(MODELS), gguf_file=file)
        lm = AutoModelForCausalLM.from_pretrained(str(MODELS), gguf_file=file, dtype=torch.float32)
        lm.eval()
        bos = bool(getattr(tok, "add_bos_token", False)) and tok.bos_token_id is not None
        out = OUT / f"transformers-f32-{model}.jsonl"
        n = 0
        with open(out, "w") as f:
            header = {"tool": f"transformers {transformers.__version__}, torch {torch.__version__}", "model": file,
                      "dtype": "float32", "text": "prompt + classes[0]", "bos": bos}
            f.write(__import__("json").dumps(header) + "\n")
            for task, doc_id, prompt, classes in selected():
                ids = tok(prompt + classes[0], add_special_tokens=False)["input_ids"]
                if bos:
                    ids = [tok.bos_token_id] + ids
                x = torch.tensor([ids])
                logp = torch.log_softmax(lm(x).logits[0].float(), dim=-1)
                lp = [round(logp[i - 1, ids[i]].item(), 6) for i in range(1, len(ids))]
                f.write(__import__("json").dumps({"task": task, "doc": doc_id, "n": len(ids), "logprobs": lp}) + "\n")
                n += 1
        print(f"wrote {out}: {n} documents in {time.time() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
