"""A real GGUF cut to its first and last layers, small enough to carry to the accelerator machine (64 MiB
in all there, the CUDA binary included): the quantized GPU path is checked on it against llama.cpp
(bench/gpu/llama_cpp_requests.py here, bench/gpu/check_quantized.py there). Real weights keep the
activations realistic, where a random network amplifies every rounding (bench/gpu/tiny_gguf.py).

    python3 bench/gpu/cut_gguf.py SOURCE.gguf OUT.gguf [--first 2] [--last 6] [--embedding q4_1]   # needs `gguf`

Every metadata entry is copied (the block count set to FIRST + LAST), and the tensors of the first
FIRST and the last LAST blocks (renumbered) and the rest byte for byte: the residual stream keeps
the scale the final norm and LM head expect, so log-probs stay those of a language model; the token embedding (also the LM head when the file
has no `output.weight`) is re-quantized to the given format (`keep`: as it is).
"""
import argparse

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ap = argparse.ArgumentParser()
ap.add_argument("source")
ap.add_argument("out")
ap.add_argument("--first", type=int, default=2, help="blocks kept from the start")
ap.add_argument("--last", type=int, default=6, help="blocks kept from the end (renumbered to follow the first)")
ap.add_argument("--embedding", default="q4_1", choices=["keep", "q4_0", "q4_1", "q8_0"])
args = ap.parse_args()

r = gguf.GGUFReader(args.source)
arch = r.fields["general.architecture"].contents()
blocks = r.fields[f"{arch}.block_count"].contents()
kept = list(range(args.first)) + list(range(blocks - args.last, blocks))  # new index -> old
layers = len(kept)
w = gguf.GGUFWriter(args.out, arch)
for key, field in r.fields.items():
    if key.startswith("GGUF.") or key in ("general.architecture", "general.name"):
        continue  # the writer writes the first two itself; the name is set below
    kind = field.types[0]
    if key == f"{arch}.block_count":
        w.add_key_value(key, layers, kind)
    elif kind == gguf.GGUFValueType.ARRAY:
        w.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
    else:
        w.add_key_value(key, field.contents(), kind)
w.add_key_value("general.name", f"{r.fields['general.name'].contents()}, blocks {args.first} first and {args.last} last of {blocks} (invscale test cut)",
                gguf.GGUFValueType.STRING)

by_name = {t.name: t for t in r.tensors}
order = [t.name for t in r.tensors if not t.name.startswith("blk.")]
order[1:1] = [f"blk.{new}.{t.name.split('.', 2)[2]}" for new, old in enumerate(kept) for t in r.tensors
              if t.name.startswith(f"blk.{old}.")]
for name in order:
    if name.startswith("blk."):
        new, rest = name.split(".", 2)[1:]
        t = by_name[f"blk.{kept[int(new)]}.{rest}"]
    else:
        t = by_name[name]
    shape = [int(x) for x in reversed(t.shape)]  # the reader's shape is ggml's (innermost first)
    if name == "token_embd.weight" and args.embedding != "keep":
        qtype = Q[args.embedding.upper()]
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    else:
        w.add_tensor(name, t.data, raw_dtype=t.tensor_type)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"wrote {args.out}")
