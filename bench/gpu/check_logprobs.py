"""On the GPU machine: invscale's CUDA log-probs against transformers on the same checkpoints.

    python3 bench/gpu/check_logprobs.py INVSCALE_BINARY MODEL_DIR [MODEL_DIR ...]
    python3 bench/gpu/check_logprobs.py INVSCALE_BINARY --make opt-1.3b,pythia-1.4b  (random weights, real shapes)

For each model and dtype (float32; bfloat16), runs `invscale logprobs --device cuda --json` on a
few texts and transformers on the same GPU in the same dtype (TF32 off for float32; log-softmax in
float32 on both sides), and prints per-token max/mean |Δ| and whether the argmax token agrees.
Tolerances (issue 5): ≤ 1e-4 in float32, ≤ 2e-2 per token in bfloat16.

In bfloat16 it also prints what separates two correct bf16 runs: transformers' own eager and sdpa
attention against each other, and each bf16 run (invscale's, transformers') against transformers
in float32 (the exact answer): the noise the bf16 tolerance is measured against.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXTS = [
    # Short enough for the tiny test models' 128 positions.
    "Question: If a cat has a body temp that is below average, it isn't in\nA. danger\nB. safe ranges\nAnswer: B",
    "Write a quote that ends in the word \"heavy\": Absence makes the heart grow heavy",
    "Michael has a 91 percent chance of losing 900 dollars. Did Michael make the right decision?\nAnswer: N",
]

SHAPES = {
    # name: (model_type, config kwargs); vocabularies of the real families.
    "opt-1.3b": ("opt", dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, ffn_dim=8192,
                             max_position_embeddings=2048, word_embed_proj_dim=2048, vocab_size=50272)),
    "pythia-1.4b": ("gpt_neox", dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16,
                                     intermediate_size=8192, rotary_pct=0.25, vocab_size=50304,
                                     max_position_embeddings=2048, tie_word_embeddings=False)),
    "llama3-8b": ("llama", dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192,
                                rope_theta=500000.0, tie_word_embeddings=False)),
}


def make(name: str, root: Path) -> Path:
    from transformers import AutoConfig
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    model_type, kw = SHAPES[name]
    cfg = AutoConfig.for_model(model_type, **kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    d = root / name
    model.save_pretrained(d)
    # A byte-level tokenizer that covers the vocabulary's first 256 ids (speed does not depend on it).
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token=None).save_pretrained(d)
    del model
    torch.cuda.empty_cache()
    return d


def invscale_logprobs(binary: str, model: Path, dtype: str, text: str):
    out = subprocess.run([binary, "logprobs", "--model", str(model), "--device", "cuda", "--dtype", dtype,
                          "--bos", "never", "--json", "--text", text], check=True, capture_output=True, text=True)
    v = json.loads(out.stdout)
    return [t["id"] for t in v["tokens"]], [t["logprob"] for t in v["tokens"][1:]], [t["greedy"] for t in v["tokens"][1:]]


def torch_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids], device="cuda")).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [logp[i - 1, ids[i]].item() for i in range(1, len(ids))], logits


def spread(a, b):
    d = [abs(x - y) for x, y in zip(a, b)]
    return max(d), sum(d) / len(d)


def main():
    binary = sys.argv[1]
    args = sys.argv[2:]
    tmp = Path(tempfile.mkdtemp())
    if args and args[0] == "--make":
        dirs = [make(n, tmp) for n in args[1].split(",")]
    else:
        dirs = [Path(a) for a in args]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ok = True
    for d in dirs:
        for dtype, torch_dtype, tol in [("f32", torch.float32, 1e-4), ("bf16", torch.bfloat16, 2e-2)]:
            ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch_dtype).cuda().eval()
            worst, total, n, agree, count = 0.0, 0.0, 0, 0, 0
            noise = {"transformers eager vs sdpa": [], "invscale vs f32": [], "transformers vs f32": []}
            if dtype == "bf16":
                eager = AutoModelForCausalLM.from_pretrained(d, dtype=torch_dtype, attn_implementation="eager").cuda().eval()
                exact = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).cuda().eval()
            for text in TEXTS:
                ids, ours, our_greedy = invscale_logprobs(binary, d, dtype, text)
                theirs, logits = torch_logprobs(ref, ids)
                if dtype == "bf16":
                    truth = torch_logprobs(exact, ids)[0]
                    noise["transformers eager vs sdpa"].append(spread(torch_logprobs(eager, ids)[0], theirs))
                    noise["invscale vs f32"].append(spread(ours, truth))
                    noise["transformers vs f32"].append(spread(theirs, truth))
                for a, b in zip(ours, theirs):
                    worst = max(worst, abs(a - b))
                    total += abs(a - b)
                    n += 1
                best = logits.argmax(-1).tolist()
                for i in range(1, len(ids)):
                    count += 1
                    agree += int(our_greedy[i - 1] == (best[i - 1] == ids[i]))
            line = (f"{d.name} {dtype}: {n} tokens, max |Δ| {worst:.2e}, mean {total / n:.2e} (tolerance {tol:g}); "
                    f"greedy flags agree on {agree}/{count}")
            print(line, flush=True)
            for what, rows in noise.items():
                if rows:
                    print(f"  {what}: max |Δ| {max(r[0] for r in rows):.2e}, mean {sum(r[1] for r in rows) / len(rows):.2e}", flush=True)
            if dtype == "bf16":
                del eager, exact
            ok &= worst <= tol
            del ref
            torch.cuda.empty_cache()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
