"""On the GPU machine: the architectures of issue 21 at real shapes (random weights, a few layers),
invscale's CUDA bf16 against transformers' bf16 on the same checkpoints — argmax agreement.

    python3 bench/gpu/check_architectures.py INVSCALE_BINARY [--shapes qwen3-8b,mixtral-8x7b,...] [--layers N] [--out FILE]

For each shape: the real configuration with `num_hidden_layers` cut (weights random, bf16, made
here on the GPU), a word-level tokenizer over the whole vocabulary (token i is the word `w{i}`, so
any id sequence is a text). transformers (eager attention, as its docs ask for Gemma 2's
soft-capping; bf16) continues a random 32-token prompt greedily for 96 tokens; `invscale logprobs
--device cuda --dtype bf16` then scores the whole sequence, and its `greedy` flag at each continued
token says whether invscale's argmax is transformers' — the issue's agreement (≥ 99%). The noise
floor beside it: transformers' own sdpa attention and its float32 on the same tokens. Also per-token |Δ log-prob| vs
transformers bf16. And the layer split (issue 21): the first sequence scored again with
`--device cuda:0+cuda:0` (two stages on one GPU, the activations copied between the stages'
device handles) must give the single-device numbers exactly. Never read accuracy from these models.

    python3 bench/gpu/check_architectures.py INVSCALE_BINARY --moe-throughput

instead times a mixture (Mixtral-8x7B's layer, 2 of 8 experts) against a dense model of the same
active parameters (the same attention, one MLP twice as wide), both cut to the same layers:
tokens a second of `invscale logprobs` on a long random text, the load taken out by timing a
short text too (rate = Δtokens / Δseconds).
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

SHAPES = {
    "qwen3-8b": ("qwen3", dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                               intermediate_size=12288, vocab_size=151936, max_position_embeddings=40960,
                               rope_theta=1_000_000.0, tie_word_embeddings=False)),
    "olmo2-7b": ("olmo2", dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
                               intermediate_size=11008, vocab_size=100352, max_position_embeddings=4096,
                               rope_theta=500_000.0, tie_word_embeddings=False)),
    "mixtral-8x7b": ("mixtral", dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                                     intermediate_size=14336, num_local_experts=8, num_experts_per_tok=2,
                                     vocab_size=32000, max_position_embeddings=32768, rope_theta=1_000_000.0,
                                     tie_word_embeddings=False)),
    "qwen3-30b-a3b": ("qwen3_moe", dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                                        intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
                                        num_experts_per_tok=8, norm_topk_prob=True, vocab_size=151936,
                                        max_position_embeddings=40960, rope_theta=1_000_000.0,
                                        tie_word_embeddings=False)),
    "gemma2-9b": ("gemma2", dict(hidden_size=3584, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                                 intermediate_size=14336, vocab_size=256000, max_position_embeddings=8192,
                                 query_pre_attn_scalar=256, attn_logit_softcapping=50.0,
                                 final_logit_softcapping=30.0, sliding_window=4096)),
    "phi3-mini": ("phi3", dict(hidden_size=3072, num_attention_heads=32, num_key_value_heads=32,
                               intermediate_size=8192, vocab_size=32064, max_position_embeddings=4096,
                               original_max_position_embeddings=4096, sliding_window=2047,
                               tie_word_embeddings=False)),
}
MOE_LAYERS = 2  # a mixture's layers are large; the others get --layers


def make(name: str, layers: int, root: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    model_type, kw = SHAPES[name]
    n = MOE_LAYERS if model_type in ("mixtral", "qwen3_moe") else layers
    cfg = AutoConfig.for_model(model_type, num_hidden_layers=n, **kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    d = root / name
    model.save_pretrained(d)
    vocab = {f"w{i}": i for i in range(cfg.vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token=None).save_pretrained(d)
    del model
    torch.cuda.empty_cache()
    return d


def argmaxes(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids], device="cuda")).logits[0].float()
    return logits.argmax(-1).tolist(), torch.log_softmax(logits, -1)


def throughput(binary: str, layers: int, out: str | None):
    """Mixtral's mixture against a dense model of its active parameters, tokens a second."""
    _, mixtral = SHAPES["mixtral-8x7b"]
    dense = {k: v for k, v in mixtral.items() if k not in ("num_local_experts", "num_experts_per_tok")}
    dense["intermediate_size"] = 2 * mixtral["intermediate_size"]  # two experts' MLPs as one
    tmp = Path(tempfile.mkdtemp())
    rows = []
    for name, (model_type, kw) in {"mixtral-8x7b (2 of 8 experts)": ("mixtral", mixtral), "dense, same active parameters": ("mistral", dense)}.items():
        cfg = AutoConfig.for_model(model_type, num_hidden_layers=layers, **kw)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        total = sum(p.numel() for p in model.parameters())
        d = tmp / model_type
        model.save_pretrained(d)
        from tokenizers import Tokenizer, models, pre_tokenizers
        tok = Tokenizer(models.WordLevel(vocab={f"w{i}": i for i in range(cfg.vocab_size)}, unk_token="w0"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(d)
        del model
        torch.cuda.empty_cache()
        g = torch.Generator().manual_seed(7)
        timed = {}
        for n in (16, 8192):
            text = " ".join(f"w{i}" for i in torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist())
            best = None
            for _ in range(3):  # the first also warms the driver's kernel cache
                t0 = time.time()
                r = subprocess.run([binary, "logprobs", "--model", str(d), "--device", "cuda", "--dtype", "bf16", "--bos",
                                    "never", "--json", "--text", text], capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"{name}: {r.stderr[-2000:]}")
                best = min(best or 1e9, time.time() - t0)
            timed[n] = best
        rate = (8192 - 16) / max(timed[8192] - timed[16], 1e-6)
        rows.append({"model": name, "layers": layers, "parameters": total, "tokens_per_second": round(rate),
                     "seconds": {str(k): round(v, 3) for k, v in timed.items()}})
        print(json.dumps(rows[-1]), flush=True)
    rows.append({"moe_over_dense": round(rows[0]["tokens_per_second"] / rows[1]["tokens_per_second"], 3)})
    print(json.dumps(rows[-1]))
    if out:
        Path(out).write_text(json.dumps(rows, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--moe-throughput", action="store_true")
    args = ap.parse_args()
    if args.moe_throughput:
        return throughput(args.binary, args.layers, args.out)
    torch.backends.cuda.matmul.allow_tf32 = False
    tmp = Path(tempfile.mkdtemp())
    results = []
    for name in args.shapes.split(","):
        started = time.time()
        d = make(name, args.layers, tmp)
        ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager").cuda().eval()
        sdpa = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
        exact = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).cuda().eval()
        vocab = ref.config.vocab_size
        agree = {"invscale": 0, "transformers sdpa": 0, "transformers float32": 0}
        counted, worst, total = 0, 0.0, 0.0
        error = None
        for p in range(args.prompts):
            g = torch.Generator().manual_seed(100 + p)
            prompt = torch.randint(0, vocab, (32,), generator=g).tolist()
            with torch.no_grad():
                out = ref.generate(torch.tensor([prompt], device="cuda"), max_new_tokens=96, do_sample=False,
                                    min_new_tokens=96, pad_token_id=0)
            ids = out[0].tolist()
            text = " ".join(f"w{i}" for i in ids)
            run = subprocess.run([args.binary, "logprobs", "--model", str(d), "--device", "cuda", "--dtype", "bf16",
                                  "--bos", "never", "--json", "--text", text], capture_output=True, text=True)
            if run.returncode != 0:
                error = run.stderr.strip()[-2000:]
                break
            v = json.loads(run.stdout)
            assert [t["id"] for t in v["tokens"]] == ids, "the word-level tokenizer gives the ids back"
            ours = v["tokens"]
            if p == 0:
                split = subprocess.run([args.binary, "logprobs", "--model", str(d), "--device", "cuda:0+cuda:0", "--dtype",
                                        "bf16", "--bos", "never", "--json", "--text", text], capture_output=True, text=True)
                if split.returncode != 0:
                    error = "split: " + split.stderr.strip()[-2000:]
                    break
                theirs_split = json.loads(split.stdout)["tokens"]
                split_equal = [t["logprob"] for t in theirs_split] == [t["logprob"] for t in ours]
            _, theirs_logp = argmaxes(ref, ids)
            s_best, _ = argmaxes(sdpa, ids)
            x_best, _ = argmaxes(exact, ids)
            for i in range(len(prompt), len(ids)):
                counted += 1
                agree["invscale"] += int(ours[i]["greedy"])
                agree["transformers sdpa"] += int(s_best[i - 1] == ids[i])
                agree["transformers float32"] += int(x_best[i - 1] == ids[i])
            for i in range(1, len(ids)):
                d_lp = abs(ours[i]["logprob"] - theirs_logp[i - 1, ids[i]].item())
                worst, total = max(worst, d_lp), total + d_lp
        row = {"shape": name, "layers": ref.config.num_hidden_layers, "seconds": round(time.time() - started, 1),
               "split_cuda0+cuda0_equal": None if error else split_equal}
        if error:
            row["error"] = error
        else:
            row.update({"continued_tokens": counted,
                        "argmax_agreement": {k: round(v / counted, 4) for k, v in agree.items()},
                        "logprob_abs_diff_vs_transformers_bf16": {"max": round(worst, 4),
                                                                  "mean": round(total / (args.prompts * 127), 5)}})
        print(json.dumps(row), flush=True)
        results.append(row)
        del ref, sdpa, exact
        torch.cuda.empty_cache()
        import shutil
        shutil.rmtree(d)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    ok = all("error" not in r and r["argmax_agreement"]["invscale"] >= 0.99 and r["split_cuda0+cuda0_equal"] for r in results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
