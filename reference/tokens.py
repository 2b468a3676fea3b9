"""Tokenization fixtures from the reference tokenizers (never from invscale).

For every document of the three real tasks (../shared, read in place) and each real GGUF model,
records how the reference tokenizes `prompt` and `prompt + class` (each class), without special
tokens: the token count and a short hash of the ids (no text, no ids: the fixtures stay small and
hold nothing of the data). invscale's tokenizer test compares against these.

    reference/tokens.py transformers   # AutoTokenizer.from_pretrained(dir, gguf_file=...)
    reference/tokens.py llama.cpp      # llama_cpp.Llama(vocab_only=True).tokenize(add_bos=False, special=True)
    reference/tokens.py transformers --edge   # EDGE_CASES below, with their full ids

`--edge` writes edge-<tool>-<model>.jsonl: hard strings (special tokens inside text, characters
outside the vocabulary, unusual whitespace, scripts, digits) and the ids the tool gives them.

Needs: transformers + gguf + torch (transformers' GGUF reader imports torch), or llama-cpp-python.
Models: scripts/fetch-models.sh (INVSCALE_MODELS_DIR, default ~/.cache/invscale/models).
Writes crates/invscale-models/tests/fixtures/tokens/<tool>-<model>.jsonl
"""
import ast
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("INVSCALE_SHARED_DIR", ROOT.parent / "shared")) / "data/inverse_scaling/official_release"
MODELS = Path(os.environ.get("INVSCALE_MODELS_DIR", Path.home() / ".cache/invscale/models"))
OUT = ROOT / "crates/invscale-models/tests/fixtures/tokens"

TASKS = {
    "neqa": "neqa_classification.jsonl",
    "hindsight_neglect": "hindsight-neglect_classification.jsonl",
    "memo_trap": "memo-trap_classification.jsonl",
}
MODEL_FILES = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": "gemma-3-270m.Q4_K_M.gguf",
    "qwen2.5-0.5b": "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf",
}


def ids_digest(ids):
    """Must match invscale's test: sha256 of the decimal ids joined by ',' — first 16 hex digits."""
    return [len(ids), hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]]


def documents():
    for task, file in TASKS.items():
        with open(DATA / file, encoding="utf-8") as f:
            for doc_id, line in enumerate(f):
                row = json.loads(line)
                yield task, doc_id, row["prompt"], ast.literal_eval(row["classes"])


def transformers_tokenizer(path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return lambda text: tok(text, add_special_tokens=False)["input_ids"], f"transformers {__import__('transformers').__version__}"


def llama_cpp_tokenizer(path):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=True), f"llama-cpp-python {llama_cpp.__version__}"


EDGE_CASES = [
    "", " ", "  ", "   abc", "abc   ", "\t", "\n", "\r\n", "\n\n\n", "a  \t b\n\n c   ",
    "Hello<|endoftext|>world", "<|im_start|>user\nHi there<|im_end|>\n", "<|endoftext|><|endoftext|>",
    "<start_of_turn>user\nHi<end_of_turn>\n", "<bos>x", "<eos>", "<pad> <unk>", "<mask>", "<unused7>",
    "😀👍🏽 emoji", "中文字符和日本語のテキスト", "مرحبا بالعالم", "e\u0301 naïve café Ångström",
    "a\u200bb", "a\u00a0b", "a\u3000b", "\x00\x01\x1f\x7f", "\ue000 private use", "\U0001f9ea",
    "1234567890", "3.14159 and 1,000,000", "I'm, you're, they'll, it's, WE'VE, O'Neil",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "=========== ----------- ...........",
    "def f(x):\n    return x**2  # square\n", "<0x41> is not a byte", "▁already▁has▁markers",
    "    leading four spaces", "trailing newline\n", "Ελληνικά and кириллица",
]


def edge(tool, make):
    for model, file in MODEL_FILES.items():
        encode, version = make(MODELS / file)
        out = OUT / f"edge-{tool}-{model}.jsonl"
        with open(out, "w") as f:
            f.write(json.dumps({"tool": version, "model": file}) + "\n")
            for text in EDGE_CASES:
                f.write(json.dumps({"text": text, "ids": list(encode(text))}, ensure_ascii=True) + "\n")
        print(f"wrote {out}", file=sys.stderr)


def main():
    tool = sys.argv[1]
    make = {"transformers": transformers_tokenizer, "llama.cpp": llama_cpp_tokenizer}[tool]
    OUT.mkdir(parents=True, exist_ok=True)
    if "--edge" in sys.argv:
        return edge(tool, make)
    for model, file in MODEL_FILES.items():
        encode, version = make(MODELS / file)
        out = OUT / f"{tool}-{model}.jsonl"
        with open(out, "w") as f:
            f.write(json.dumps({"tool": version, "model": file, "hash": "sha256(','.join(ids))[:16]"}) + "\n")
            for task, doc_id, prompt, classes in documents():
                row = {
                    "task": task,
                    "doc": doc_id,
                    "prompt": ids_digest(encode(prompt)),
                    "whole": [ids_digest(encode(prompt + c)) for c in classes],
                }
                f.write(json.dumps(row, separators=(",", ":")) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
