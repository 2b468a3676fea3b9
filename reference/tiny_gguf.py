"""GGUF versions of the tiny random checkpoints, written by llama.cpp's own converter (never by
invscale): `convert_hf_to_gguf.py` of the llama.cpp vendored in llama-cpp-python 0.3.36's sdist
(PyPI), in f32, so a GGUF model's log-probs must be transformers' on the same weights.

    reference/tiny_gguf.py [VARIANT ...]     # default: every variant below

Two shims, both about the fixtures rather than the models: the converter identifies a BPE
tokenizer's pre-tokenizer by hashing its output, and the fixtures' tokenizer (trained here,
GPT-2's byte-level pre-tokenizer) is in no table, so it is named `gpt-2`; and configs saved by
transformers 5 no longer carry some legacy keys the converter reads (`n_ctx` for GPT-2,
`rotary_pct` for GPT-NeoX), which are added back from the keys that replaced them.

Needs: torch, transformers, numpy, sentencepiece (the converter's imports), and the sdist:
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36   (sha256 832db069...)
unpacked under $LLAMA_CPP_SRC (default ~/.cache/invscale/llama-src/llama_cpp_python-0.3.36).
Reads crates/invscale-models/tests/fixtures/tiny/<variant>/, writes
crates/invscale-models/tests/fixtures/tiny-gguf/<variant>.gguf.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "crates/invscale-models/tests/fixtures/tiny"
OUT = ROOT / "crates/invscale-models/tests/fixtures/tiny-gguf"
SRC = Path(os.environ.get("LLAMA_CPP_SRC", Path.home() / ".cache/invscale/llama-src/llama_cpp_python-0.3.36")) / "vendor/llama.cpp"
# The variants llama.cpp converts (it has no OPT, and no MoE with dense layers among the sparse
# ones; Gemma 2 as `gemma2-llamacpp`, the query scale its GGUF implies). Not Mistral: a GGUF
# of the `llama` architecture records no sliding window (llama.cpp runs Mistral without one), so
# the tiny model's 16-token window would make it another model than transformers'. Not Gemma 3:
# its GGUF records neither query_pre_attn_scalar nor the layer pattern (llama.cpp assumes
# head_dim and 5 sliding layers of 6), and the tiny model differs in both (real Gemma 3 GGUFs
# are tested against llama.cpp itself).
VARIANTS = ["llama", "llama3-rope", "phi3", "phi3-longrope", "phi3-llamacpp", "gemma2-llamacpp", "qwen2", "qwen3", "olmo2", "mixtral", "qwen3-moe-sparse", "gpt2", "gpt-neox"]

QUANTIZED = ["phi3-llamacpp"]


def main():
    wanted = sys.argv[1:] or VARIANTS
    if not (SRC / "convert_hf_to_gguf.py").is_file():
        sys.exit(f"no llama.cpp converter at {SRC}: see this script's docstring")
    sys.path.insert(0, str(SRC))
    sys.path.insert(0, str(SRC / "gguf-py"))
    import convert_hf_to_gguf as convert
    from conversion.base import ModelBase, TextModel

    TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    # The tiny models share one byte-level BPE (tokenizer.json); the converter's Gemma 2 and Phi-3
    # classes read a SentencePiece tokenizer.model instead, so their vocabulary is written the
    # GPT-2 way here, as for the others. Only the vocabulary: tensors and metadata are theirs.
    from conversion.gemma import Gemma2Model
    from conversion.phi import Phi3MiniModel
    Gemma2Model.set_vocab = Phi3MiniModel.set_vocab = lambda self: self._set_vocab_gpt2()
    load = ModelBase.load_hparams

    def load_hparams(dir_model, is_mistral_format):
        h = load(dir_model, is_mistral_format)
        if "n_positions" in h:
            h.setdefault("n_ctx", h["n_positions"])
        rope = h.get("rope_parameters") or {}
        if h.get("model_type") == "gpt_neox":
            h.setdefault("rotary_pct", rope.get("partial_rotary_factor", h.get("partial_rotary_factor", 1.0)))
        return h

    ModelBase.load_hparams = staticmethod(load_hparams)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        # llama.cpp loads a model whose name says Phi-3 only with Phi-3's own special tokens
        # (<unk> among them), which the tiny vocabulary has not: another name for those.
        named = ["--model-name", "tiny"] if name.startswith("phi3") else []
        sys.argv = ["convert_hf_to_gguf.py", str(TINY / name), "--outtype", "f32", "--outfile", str(OUT / f"{name}.gguf"), *named]
        convert.main()
        # Phi-3's fused matrices kept quantized are split by rows of blocks: a Q8_0 file too.
        if name in QUANTIZED:
            sys.argv = ["convert_hf_to_gguf.py", str(TINY / name), "--outtype", "q8_0", "--outfile", str(OUT / f"{name}.q8_0.gguf"), *named]
            convert.main()
    print(f"wrote {', '.join(wanted)} to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
