"""A small Llama-2-style SentencePiece GGUF and the ids the references give it (never invscale).

Gemma 3 is the only SentencePiece model among the real test models, and its file orders merges by
vocabulary position; a Llama-2-style file orders them by its scores (ties included) and puts a
`▁` before the text's first word. This trains a 400-piece SentencePiece BPE model (byte
fallback, one user-defined symbol) on the repository's README, writes it as a GGUF vocabulary the
way llama.cpp's converter does (tokens, scores, types; llama keys, no tensors), and records how
transformers (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`) and llama.cpp (`vocab_only`,
`special=True`) tokenize reference/tokens.py's EDGE_CASES and some README lines.

    ~/.cache/invscale/pyref/bin/python reference/spm_gguf.py

Writes crates/invscale-models/tests/fixtures/tokens/llama-spm.gguf and
edge-{transformers,llama.cpp}-llama-spm.jsonl.
"""
import json
import sys
import tempfile
from pathlib import Path

import gguf
import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/invscale-models/tests/fixtures/tokens"
sys.path.insert(0, str(ROOT / "reference"))
from tokens import EDGE_CASES  # noqa: E402


def main():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [l for l in text.splitlines() if l.strip()]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "corpus.txt").write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp / "corpus.txt"), model_prefix=str(tmp / "sp"), vocab_size=400, model_type="bpe",
        byte_fallback=True, user_defined_symbols=["<sep>"], character_coverage=1.0, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(tmp / "sp.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # llama.cpp's types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte.
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
                     else 4 if tokens[-1] == "<sep>" else 1)
    path = OUT / "llama-spm.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    texts = EDGE_CASES + lines[:40]

    from transformers import AutoTokenizer
    import transformers
    tok = AutoTokenizer.from_pretrained(str(OUT), gguf_file=path.name)
    write("transformers", f"transformers {transformers.__version__}", texts, lambda t: tok(t, add_special_tokens=False)["input_ids"])

    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    write("llama.cpp", f"llama-cpp-python {llama_cpp.__version__}", texts,
          lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=True))


def write(tool, version, texts, encode):
    out = OUT / f"edge-{tool}-llama-spm.jsonl"
    with open(out, "w") as f:
        f.write(json.dumps({"tool": version, "model": "llama-spm.gguf"}) + "\n")
        for text in texts:
            f.write(json.dumps({"text": text, "ids": list(encode(text))}, ensure_ascii=True) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
