"""Tiny random models of every supported architecture, and transformers' log-probs on them
(never invscale's).

For each architecture variant, builds a model from a small config with random weights
(`AutoModelForCausalLM.from_config` after `torch.manual_seed`), saves it in the Hub's layout
(`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`), and records the
per-token log-probs transformers computes (float32, and in bfloat16 and float16 with the
log-softmax in float32) on prompts from the real data, tokenised
with a small byte-level BPE trained here with the `tokenizers` package.

    reference/tiny_models.py                  # every variant, the tokenizer trained anew
    reference/tiny_models.py --only qwen3,olmo2   # these variants only, added or replaced

Writes crates/invscale-models/tests/fixtures/tiny/<variant>/ and
crates/invscale-models/tests/fixtures/tiny/logprobs.jsonl. With --only, the other variants'
folders and rows stay as they are, the tokenizer is the one they were made with (read back from
`llama/tokenizer.json`), and the new rows name their transformers and torch versions.
Needs: torch, transformers >= 5.20, tokenizers.
"""
import json
import shutil
import sys

import torch
from tokens import DATA, ROOT, documents  # noqa: E402 (same folder)

OUT = ROOT / "crates/invscale-models/tests/fixtures/tiny"
VOCAB = 320
MAX_TOKENS = 96
SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<pad>"]


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [p + "".join(c) for _, _, p, c in documents()]
    tok.train_from_iterator(texts, trainer)
    return tok


def variants():
    from transformers import (GPT2Config, GPTNeoXConfig, Gemma2Config, Gemma3Config, Gemma3TextConfig, SiglipVisionConfig, LlamaConfig, MistralConfig, MixtralConfig,
                              Olmo2Config, Olmo3Config, OPTConfig, Phi3Config, Qwen2Config, Qwen3Config, Qwen3MoeConfig,
                              SmolLM3Config)

    common = dict(vocab_size=VOCAB)

    def longrope(max_positions, original):
        return Phi3Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          intermediate_size=64, max_position_embeddings=max_positions,
                          original_max_position_embeddings=original, partial_rotary_factor=0.5, bos_token_id=1,
                          eos_token_id=2, pad_token_id=3, tie_word_embeddings=False,
                          rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                           "short_factor": [1.0, 1.5, 2.0, 3.0], "long_factor": [1.0, 2.0, 4.0, 8.0]},
                          **common)

    return {
        # GPT-2: learned positions, Conv1D weights, tied head, no BOS by default.
        "gpt2": (GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=0, eos_token_id=0, **common), False),
        # OPT-125m style: pre-norm, positions offset by 2, BOS (</s>) first.
        "opt": (OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                          max_position_embeddings=128, word_embed_proj_dim=32, do_layer_norm_before=True,
                          pad_token_id=3, bos_token_id=2, eos_token_id=2, **common), True),
        # OPT-350m style: post-norm, project_in/project_out (word_embed_proj_dim != hidden_size).
        "opt-350m": (OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                               max_position_embeddings=128, word_embed_proj_dim=16, do_layer_norm_before=False,
                               pad_token_id=3, bos_token_id=2, eos_token_id=2, **common), True),
        # Pythia: parallel residual, partial rotary (rotary_pct 0.25), untied head.
        "gpt-neox": (GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                   rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=128,
                                   bos_token_id=0, eos_token_id=0, tie_word_embeddings=False, **common), False),
        "gpt-neox-sequential": (GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                              intermediate_size=64, rotary_pct=0.5, use_parallel_residual=False,
                                              max_position_embeddings=128, bos_token_id=0, eos_token_id=0,
                                              tie_word_embeddings=False, **common), False),
        # Llama: grouped-query attention, untied head, BOS first.
        "llama": (LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              intermediate_size=64, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                              tie_word_embeddings=False, **common), True),
        # Qwen2: biases on q/k/v, tied head, GQA.
        "qwen2": (Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              intermediate_size=64, max_position_embeddings=128, bos_token_id=0, eos_token_id=0,
                              tie_word_embeddings=True, **common), False),
        # Gemma 3: scaled embeddings, (1 + w) norms, q/k norms, sliding-window layers (window 16,
        # shorter than the prompts) and a global one, query_pre_attn_scalar != head_dim.
        "gemma3": (Gemma3TextConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                    head_dim=8, intermediate_size=64, max_position_embeddings=128, sliding_window=16,
                                    layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                    query_pre_attn_scalar=16, bos_token_id=1, eos_token_id=2, pad_token_id=3,
                                    **common), True),
        # Gemma 3's multimodal checkpoints (4B-27B): the same kind of language model inside
        # `language_model.model.*`, its config nested in `text_config`, beside a vision tower
        # (tiny here) that a text run leaves alone.
        "gemma3-multimodal": (Gemma3Config(
            text_config=Gemma3TextConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                         head_dim=8, intermediate_size=64, max_position_embeddings=128, sliding_window=16,
                                         layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                         query_pre_attn_scalar=16, bos_token_id=1, eos_token_id=2, pad_token_id=3,
                                         **common).to_dict(),
            vision_config=SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             image_size=28, patch_size=14).to_dict(),
            mm_tokens_per_image=4, image_token_index=5, boi_token_index=6, eoi_token_index=7), True),
        # Gemma 2: attention scores and final logits soft-capped (caps low enough to bite on these
        # widened weights), every other layer sliding (window 16), query_pre_attn_scalar.
        "gemma2": (Gemma2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                head_dim=8, intermediate_size=64, max_position_embeddings=128, sliding_window=16,
                                attn_logit_softcapping=5.0, final_logit_softcapping=10.0, query_pre_attn_scalar=16,
                                bos_token_id=1, eos_token_id=2, pad_token_id=3, **common), True),
        # Qwen3: RMSNorm on each head's queries and keys, head_dim != hidden / heads, no biases,
        # untied head.
        "qwen3": (Qwen3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              head_dim=16, intermediate_size=64, max_position_embeddings=128, bos_token_id=0,
                              eos_token_id=0, tie_word_embeddings=False, rope_theta=1_000_000.0, **common), False),
        # OLMo 2: norms after attention and the MLP, q/k norms over all heads, untied head.
        "olmo2": (Olmo2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              intermediate_size=64, max_position_embeddings=128, bos_token_id=0, eos_token_id=0,
                              pad_token_id=3, tie_word_embeddings=False, **common), False),
        # OLMo 3: OLMo 2 with sliding-window layers (window 16, shorter than the prompts) by
        # layer_types, and a full-attention one.
        "olmo3": (Olmo3Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                              intermediate_size=64, max_position_embeddings=128, sliding_window=16,
                              layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                              bos_token_id=0, eos_token_id=0, pad_token_id=3, tie_word_embeddings=False, **common), False),
        # SmolLM3: a NoPE layer (no rotary) between rotary ones, tied head.
        "smollm3": (SmolLM3Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                  intermediate_size=64, max_position_embeddings=128, no_rope_layers=[1, 0, 1],
                                  use_sliding_window=False, bos_token_id=0, eos_token_id=0, pad_token_id=3,
                                  tie_word_embeddings=True, **common), False),
        # Phi-3: fused qkv_proj and gate_up_proj, partial rotary, a sliding window (16, shorter than
        # the prompts) on every layer, BOS first.
        "phi3": (Phi3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=64, max_position_embeddings=128, original_max_position_embeddings=128,
                            sliding_window=16, partial_rotary_factor=0.5, bos_token_id=1, eos_token_id=2,
                            pad_token_id=3, tie_word_embeddings=False, **common), True),
        # Mistral: Llama with a sliding window (16) on every layer.
        "mistral": (MistralConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  intermediate_size=64, max_position_embeddings=128, sliding_window=16,
                                  bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, **common), True),
        # Mixtral: 4 experts, top 2 (weights rescaled to sum to 1), BOS first.
        "mixtral": (MixtralConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
                                  max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                                  tie_word_embeddings=False, **common), True),
        # Qwen3-MoE: q/k norms, 4 experts, top 2 without rescaling (norm_topk_prob false), the
        # second layer a dense MLP (mlp_only_layers).
        "qwen3-moe": (Qwen3MoeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                     head_dim=8, intermediate_size=64, moe_intermediate_size=24, num_experts=4,
                                     num_experts_per_tok=2, norm_topk_prob=False, mlp_only_layers=[1],
                                     max_position_embeddings=128, bos_token_id=0, eos_token_id=0,
                                     tie_word_embeddings=False, **common), False),
        # Qwen3-MoE as released (every layer sparse, top-k rescaled), the shape llama.cpp converts.
        "qwen3-moe-sparse": (Qwen3MoeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, head_dim=8, intermediate_size=64,
                                            moe_intermediate_size=24, num_experts=4, num_experts_per_tok=2,
                                            norm_topk_prob=True, max_position_embeddings=128, bos_token_id=0,
                                            eos_token_id=0, tie_word_embeddings=False, **common), False),
        # Long-context rotary scalings (transformers' modeling_rope_utils), each with a pretraining
        # length shorter than the prompts so the scaling matters. Llama 3.1's: head_dim 16 puts
        # frequencies in all three bands (kept, divided, smoothed) of original length 32.
        "llama3-rope": (LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    intermediate_size=64, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                                    tie_word_embeddings=False,
                                    rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 32}, **common), True),
        # YaRN (OLMo 3's and Qwen3's long-context setting): factor 4 over 32 positions.
        "qwen3-yarn": (Qwen3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   head_dim=16, intermediate_size=64, max_position_embeddings=128, bos_token_id=0,
                                   eos_token_id=0, tie_word_embeddings=False,
                                   rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                    "original_max_position_embeddings": 32}, **common), False),
        # LongRoPE (Phi-3-128k, Phi-3.5, Phi-4-mini): the prompts pass the 64 pretraining positions, so
        # transformers takes the long factors; the attention factor from 256 / 64.
        "phi3-longrope": (longrope(max_positions=256, original=64), True),
        # ... and within 128 pretraining positions, the short factors.
        "phi3-longrope-short": (longrope(max_positions=512, original=128), True),
        # Phi-3 without its sliding window, for the quantized path against llama.cpp: llama.cpp's Phi-3
        # with the tiny model's window of 16 differs from transformers from position 3 on (mean
        # |Δ| ~1 nat in f32), without it within 1e-2.
        "phi3-llamacpp": (Phi3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                     intermediate_size=64, max_position_embeddings=128, original_max_position_embeddings=128,
                                     sliding_window=None, partial_rotary_factor=0.5, bos_token_id=1, eos_token_id=2,
                                     pad_token_id=3, tie_word_embeddings=False, **common), True),
        # Gemma 2 as its GGUF can be: query_pre_attn_scalar = head_dim, which llama.cpp assumes (the
        # file does not record it) for every size but 27B.
        "gemma2-llamacpp": (Gemma2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                         head_dim=8, intermediate_size=64, max_position_embeddings=128, sliding_window=16,
                                         attn_logit_softcapping=5.0, final_logit_softcapping=10.0, query_pre_attn_scalar=8,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=3, **common), True),
    }


def selected_prompts():
    want = {("neqa", 0), ("neqa", 123), ("memo_trap", 5), ("memo_trap", 700), ("hindsight_neglect", 0)}
    for task, doc_id, prompt, classes in documents():
        if (task, doc_id) in want:
            yield task, doc_id, prompt + classes[0]


def main():
    import argparse

    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated variants to add or replace, the rest kept")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tool = f"transformers {__import__('transformers').__version__}, torch {torch.__version__}"
    everything = variants()
    if args.only:
        only = args.only.split(",")
        unknown = [v for v in only if v not in everything]
        if unknown:
            sys.exit(f"unknown variants {unknown}: one of {', '.join(everything)}")
        tok = Tokenizer.from_file(str(OUT / "llama" / "tokenizer.json"))
        lines = (OUT / "logprobs.jsonl").read_text().splitlines()
        header, kept = lines[0], [l for l in lines[1:] if json.loads(l)["model"] not in only]
    else:
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        tok = train_tokenizer()
        only = list(everything)
        header = json.dumps({"tool": tool, "dtype": "float32", "text": "prompt + classes[0], first {MAX_TOKENS} tokens"})
        kept = []
    rows = []
    for i, (name, (config, bos)) in enumerate(everything.items()):
        if name not in only:
            continue
        torch.manual_seed(1000 + i)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        # Random weights are tiny by default; widen them so the log-probs are far from uniform.
        for p in model.parameters():
            p.mul_(12.0 if p.dim() > 1 else 1.0)
        d = OUT / name
        if d.exists():
            shutil.rmtree(d)
        model.save_pretrained(d, safe_serialization=True)
        ids_of = getattr(config, "text_config", config)  # a multimodal config's token ids are its language model's
        bos_token = "<s>" if ids_of.bos_token_id == 1 else ("</s>" if ids_of.bos_token_id == 2 else "<|endoftext|>")
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos_token, eos_token=SPECIALS[ids_of.eos_token_id],
                                       pad_token="<pad>")
        fast.add_bos_token = bos
        fast.save_pretrained(d)
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg["add_bos_token"] = bos
        (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        # The same weights loaded in half precision, as `from_pretrained(dtype=...)` would.
        half = {dt: AutoModelForCausalLM.from_pretrained(d, dtype=dt, attn_implementation="eager").eval()
                for dt in (torch.bfloat16, torch.float16)}
        for task, doc_id, text in selected_prompts():
            ids = tok.encode(text, add_special_tokens=False).ids
            if bos:
                ids = [ids_of.bos_token_id] + ids
            ids = ids[:MAX_TOKENS]
            row = {"model": name, "task": task, "doc": doc_id, "ids": ids}
            if args.only:
                row["tool"] = tool
            for key, m in [("logprobs", model), ("logprobs_bf16", half[torch.bfloat16]), ("logprobs_f16", half[torch.float16])]:
                logp = torch.log_softmax(m(torch.tensor([ids])).logits[0].float(), dim=-1)
                row[key] = [round(logp[j - 1, ids[j]].item(), 7) for j in range(1, len(ids))]
            rows.append(json.dumps(row))
    with open(OUT / "logprobs.jsonl", "w") as f:
        f.write("\n".join([header] + kept + rows) + "\n")
    print(f"wrote {OUT}: {len(rows)} rows of {', '.join(only)}", file=sys.stderr)


if __name__ == "__main__":
    main()
