"""On the GPU machine: the architectures of issue 21 at real shapes (random weights, a few layers),
invscale's CUDA bf16 against transformers' bf16 on the same checkpoints — argmax agreement.

    python3 bench/gpu/check_architectures.py INVSCALE_BINARY [--shapes qwen3-8b,mixtral-8x7b,...] [--layers N] [--out FILE]

For each shape: the real configuration with `num_hidden_layers` cut (weights random, bf16, made
here on the GPU), a word-level tokenizer over the whole vocabulary (token i is the word `w{i}`, so
any id sequence is a text). transformers (eager attention, as its docs ask for Gemma 2's
soft-capping; bf16) continues a random 32-token prompt greedily for 96 tokens; `invscale logprobs
--device cuda --dtype bf16` then scores the whole sequence, and its `greedy` flag at each continued
token says whether invscale's argmax is transformers'. The noise floor beside it: transformers' own
sdpa attention and its float32 on the same tokens; and the agreement only where float32's top two
log-probs are far enough apart for bf16 not to decide (`passes` states the criterion). Also per-token |Δ log-prob| vs
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
MARGINS = (0.05, 0.1, 0.2)  # nats between float32's top two log-probs
GATE_MARGIN = 0.1


def passes(row) -> bool:
    """The criterion (issue 21's "argmax agreement >= 99%", restated; see bench/gpu/RESULTS.md).

    Random weights give nearly flat next-token distributions over 32k-256k tokens, so the top two
    are often closer than bf16's rounding: transformers' own sdpa and float32 agree with its eager
    bf16 on only 93-98% of the positions (measured). So: (1) where float32's top two are more than
    GATE_MARGIN nats apart, invscale bf16 picks transformers' token on >= 99% of the positions, or
    as often as transformers' own sdpa does there, less two binomial standard errors (a mixture's
    router: bf16 rounding moves a token to other experts, so even where float32's top two are
    apart, transformers' sdpa and eager disagree on 4-8% of Mixtral's positions), and (2) overall, invscale agrees with transformers eager bf16 no less than transformers' own other
    implementations do (the lower of sdpa's and float32's), less two binomial standard errors.
    """
    a = row["argmax_agreement"]
    floor = min(v for k, v in a.items() if k != "invscale" and v is not None)
    n = row["continued_tokens"]
    se = (floor * (1 - floor) / n) ** 0.5
    gate = row["argmax_agreement_where_float32_margin_over"][str(GATE_MARGIN)]
    bar = 0.99
    if gate["transformers sdpa"] is not None and gate["transformers sdpa"] < bar:
        p = gate["transformers sdpa"]
        bar = p - 2 * (p * (1 - p) / gate["positions"]) ** 0.5
    row["passes"] = {f"confident_positions_at_least_{bar:.4f}": gate["invscale"] is not None and gate["invscale"] >= bar,
                     "overall_within_transformers_noise_floor": a["invscale"] >= floor - 2 * se}
    return all(row["passes"].values())


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
        try:
            sdpa = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
        except ValueError:  # Gemma 2: transformers has eager attention only (its soft-capping)
            sdpa = None
        exact = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).cuda().eval()
        vocab = ref.config.vocab_size
        agree = {"invscale": 0, "transformers sdpa": 0, "transformers float32": 0}
        # The same, only where float32's top two log-probs are more than MARGIN apart (where bf16's
        # rounding cannot decide the argmax): {threshold: [positions, invscale agreeing]}.
        confident = {t: [0, 0, 0] for t in MARGINS}  # positions, invscale agreeing, transformers sdpa agreeing
        counted, worst, total, s_worst, s_total = 0, 0.0, 0.0, 0.0, 0.0
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
            s_best, s_logp = argmaxes(sdpa, ids) if sdpa is not None else (None, None)
            x_best, x_logp = argmaxes(exact, ids)
            top2 = x_logp.topk(2, dim=-1).values
            margin = (top2[:, 0] - top2[:, 1]).tolist()
            for i in range(len(prompt), len(ids)):
                counted += 1
                agree["invscale"] += int(ours[i]["greedy"])
                agree["transformers sdpa"] += int(s_best is not None and s_best[i - 1] == ids[i])
                agree["transformers float32"] += int(x_best[i - 1] == ids[i])
                for t, c in confident.items():
                    if margin[i - 1] > t:
                        c[0] += 1
                        c[1] += int(ours[i]["greedy"])
                        c[2] += int(s_best is not None and s_best[i - 1] == ids[i])
            for i in range(1, len(ids)):
                d_lp = abs(ours[i]["logprob"] - theirs_logp[i - 1, ids[i]].item())
                worst, total = max(worst, d_lp), total + d_lp
                if s_logp is not None:
                    d_s = abs(s_logp[i - 1, ids[i]].item() - theirs_logp[i - 1, ids[i]].item())
                    s_worst, s_total = max(s_worst, d_s), s_total + d_s
        row = {"shape": name, "layers": ref.config.num_hidden_layers, "seconds": round(time.time() - started, 1),
               "split_cuda0+cuda0_equal": None if error else split_equal}
        if error:
            row["error"] = error
        else:
            row.update({"continued_tokens": counted,
                        "argmax_agreement": {k: round(v / counted, 4) if k != "transformers sdpa" or sdpa is not None else None
                                             for k, v in agree.items()},
                        "argmax_agreement_where_float32_margin_over": {
                            str(t): {"positions": c[0], "invscale": round(c[1] / c[0], 4) if c[0] else None,
                                     "transformers sdpa": round(c[2] / c[0], 4) if c[0] and sdpa is not None else None}
                            for t, c in confident.items()},
                        "logprob_abs_diff_vs_transformers_bf16": {"max": round(worst, 4),
                                                                  "mean": round(total / (args.prompts * 127), 5)},
                        "logprob_abs_diff_transformers_sdpa_vs_eager": None if sdpa is None else
                        {"max": round(s_worst, 4), "mean": round(s_total / (args.prompts * 127), 5)}})
        if not error:
            passes(row)
        print(json.dumps(row), flush=True)
        results.append(row)
        del ref, sdpa, exact
        torch.cuda.empty_cache()
        import shutil
        shutil.rmtree(d)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    ok = all("error" not in r and r["split_cuda0+cuda0_equal"] and all(r["passes"].values()) for r in results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
