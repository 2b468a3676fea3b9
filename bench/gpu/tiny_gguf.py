"""A tiny random-weight llama GGUF with a real tokenizer, small enough to carry to the accelerator
machine: the quantized GPU path (`--device cuda --dtype quantized`) is checked there against the
CPU's quantized path (which `tests/quantized_real.rs` checks against llama.cpp) on the same file.

    python3 bench/gpu/tiny_gguf.py SOURCE.gguf OUT.gguf     # here (needs the `gguf` package)

SOURCE gives the tokenizer and its metadata (SmolLM2-135M's GGUF: MODELS.md §1); the network is
2 layers of width 128 (4 heads of 32, 2 KV heads, FFN 256) with random weights, its matrices in
Q4_0, Q4_1, Q5_0 and Q8_0 (the formats of the real files), the embedding in Q8_0, norms in F32.
Never read accuracy from it.
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

src, out = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(src)
vocab = len(r.fields["tokenizer.ggml.tokens"].data)
hidden, layers, ff, heads, kv_heads = 128, 2, 256, 4, 2
head_dim = hidden // heads
w = gguf.GGUFWriter(out, "llama")
w.add_name("invscale tiny random llama (tokenizer of %s)" % src.rsplit("/", 1)[-1])
w.add_block_count(layers)
w.add_context_length(8192)
w.add_embedding_length(hidden)
w.add_feed_forward_length(ff)
w.add_head_count(heads)
w.add_head_count_kv(kv_heads)
w.add_rope_freq_base(100000.0)
w.add_rope_dimension_count(head_dim)
w.add_layer_norm_rms_eps(1e-5)
w.add_vocab_size(vocab)
for key, field in r.fields.items():  # the tokenizer, as the source has it
    if not key.startswith("tokenizer.") or key == "tokenizer.chat_template":
        continue
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        w.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
    else:
        w.add_key_value(key, field.contents(), kind)

rng = np.random.default_rng(0)
def matrix(name, rows, cols, qtype):
    data = (rng.standard_normal((rows, cols)) / np.sqrt(cols) * 2).astype(np.float32)
    w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

w.add_tensor("token_embd.weight", gguf.quants.quantize(rng.standard_normal((vocab, hidden)).astype(np.float32), Q.Q8_0),
             raw_dtype=Q.Q8_0)
formats = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q8_0]
for i in range(layers):
    f = lambda j: formats[(i * 7 + j) % len(formats)]
    w.add_tensor(f"blk.{i}.attn_norm.weight", (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
    w.add_tensor(f"blk.{i}.ffn_norm.weight", (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
    matrix(f"blk.{i}.attn_q.weight", hidden, hidden, f(0))
    matrix(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden, f(1))
    matrix(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden, f(2))
    matrix(f"blk.{i}.attn_output.weight", hidden, hidden, f(3))
    matrix(f"blk.{i}.ffn_gate.weight", ff, hidden, f(4))
    matrix(f"blk.{i}.ffn_up.weight", ff, hidden, f(5))
    matrix(f"blk.{i}.ffn_down.weight", hidden, ff, f(6))
w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"wrote {out}")
