"""A GGUF of a real shape with random quantized weights, for timing the quantized GPU path (never
for accuracy): the tokenizer and every other metadata entry come from SOURCE (a llama-architecture
GGUF, e.g. the cut SmolLM2 of cut_gguf.py), the dimensions from --shape, the blocks' matrices are
random bytes of the chosen format (scales set so weights have a std of ~0.02), norms are ones,
and the token embedding (also the LM head) is Q8_0.

    python3 bench/gpu/random_gguf.py SOURCE.gguf OUT.gguf [--shape llama3-8b] [--layers 8] [--type q4_0|q8_0]   # needs `gguf`

Random bytes instead of quantizing random floats: an 8B-shaped file is written in seconds.
"""
import argparse

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

SHAPES = {  # hidden, feed-forward, heads, key-value heads
    "llama3-8b": (4096, 14336, 32, 8),
    "llama3-70b": (8192, 28672, 64, 8),
}

ap = argparse.ArgumentParser()
ap.add_argument("source")
ap.add_argument("out")
ap.add_argument("--shape", default="llama3-8b", choices=sorted(SHAPES))
ap.add_argument("--layers", type=int, default=8)
ap.add_argument("--type", default="q4_0", choices=["q4_0", "q8_0"])
args = ap.parse_args()
hidden, ffn, heads, kv_heads = SHAPES[args.shape]
head_dim = hidden // heads
rng = np.random.default_rng(0)


def random_blocks(rows: int, cols: int, qtype) -> np.ndarray:
    """Rows of random blocks of 32 values: an f16 scale, then the quantized values."""
    blocks = cols // 32
    if qtype == Q.Q4_0:  # (q - 8) · d, q uniform in 0..15 (std 4.6)
        scale, payload = 0.02 / 4.6, rng.integers(0, 256, size=(rows, blocks, 16), dtype=np.uint8)
    else:  # q · d, q uniform in -127..127 (std 73)
        scale, payload = 0.02 / 73, rng.integers(-127, 128, size=(rows, blocks, 32), dtype=np.int8).view(np.uint8)
    d = np.full((rows, blocks, 1), scale, dtype=np.float16).view(np.uint8).reshape(rows, blocks, 2)
    return np.concatenate([d, payload], axis=2).reshape(rows, -1)


r = gguf.GGUFReader(args.source)
arch = r.fields["general.architecture"].contents()
assert arch == "llama", f"{args.source}: a llama-architecture GGUF is needed for its tokenizer, not {arch}"
vocab = len(r.fields["tokenizer.ggml.tokens"].contents())
dims = {"block_count": args.layers, "embedding_length": hidden, "feed_forward_length": ffn,
        "attention.head_count": heads, "attention.head_count_kv": kv_heads, "rope.dimension_count": head_dim}
w = gguf.GGUFWriter(args.out, arch)
for key, field in r.fields.items():
    if key.startswith("GGUF.") or key in ("general.architecture", "general.name"):
        continue
    kind = field.types[0]
    short = key.removeprefix(f"{arch}.")
    if short in dims:
        w.add_key_value(key, dims[short], kind)
    elif kind == gguf.GGUFValueType.ARRAY:
        w.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
    else:
        w.add_key_value(key, field.contents(), kind)
for short, value in dims.items():  # entries the source may lack
    if f"{arch}.{short}" not in r.fields:
        w.add_key_value(f"{arch}.{short}", value, gguf.GGUFValueType.UINT32)
w.add_key_value("general.name", f"random {args.shape} shape, {args.layers} layers, {args.type} (invscale timing only)",
                gguf.GGUFValueType.STRING)

qtype = Q[args.type.upper()]
w.add_tensor("token_embd.weight", random_blocks(vocab, hidden, Q.Q8_0), raw_dtype=Q.Q8_0)
for i in range(args.layers):
    for name, rows, cols in [("attn_q", hidden, hidden), ("attn_k", kv_heads * head_dim, hidden),
                             ("attn_v", kv_heads * head_dim, hidden), ("attn_output", hidden, hidden),
                             ("ffn_gate", ffn, hidden), ("ffn_up", ffn, hidden), ("ffn_down", hidden, ffn)]:
        w.add_tensor(f"blk.{i}.{name}.weight", random_blocks(rows, cols, qtype), raw_dtype=qtype)
    for norm in ["attn_norm", "ffn_norm"]:
        w.add_tensor(f"blk.{i}.{norm}.weight", np.ones(hidden, dtype=np.float32))
w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"wrote {args.out}")
