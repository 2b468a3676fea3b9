"""A suite-sized workload for the GPU benchmark (issue 5), clearly synthetic: the eight
`inverse_scaling_mc` tasks whose data is not here are stood in for by random-word documents with
the row counts of the real tasks and their mean prompt lengths (from the release files' sizes,
shared/data/inverse_scaling/PROVENANCE.md), spread as the three real tasks' prompt lengths spread
about their means; the three real tasks join them as they are. ~29.5k documents in all, as the
full suite. The words come from the real tasks' text (so the benchmark's tokenizer, trained there,
splits them as it splits real prompts); no two synthetic prompts share a template, so prefix
sharing finds less here than in real few-shot tasks (a conservative workload for invscale).
Never read accuracy from it.

    python3 bench/gpu/synthetic.py DATA_DIR OUT_DIR     # writes the files, prints the suite
"""
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import TASKS, release_rows  # noqa: E402

# lm-eval task -> (rows, release file bytes / rows): PROVENANCE.md's table. redefine_math and
# quote_repetition take the sizes of their release versions (redefine, resisting-correction);
# winobias (not in the release) is short sentences: 100 characters assumed.
MISSING = {
    "into_the_unknown": (1824, 1_012_764 / 1824),
    "modus_tollens": (1236, 426_022 / 1236),
    "pattern_matching_suppression": (1428, 338_768 / 1428),
    "repetitive_algebra": (1000, 740_039 / 1000),
    "sig_figs": (20897, 15_047_173 / 20897),
    "redefine_math": (900, 202_277 / 1244),
    "quote_repetition": (300, 3_572_356 / 7344),
    "winobias_antistereotype": (412, 180.0),
}
# A release row's bytes besides its prompt (keys, classes, numbers).
ROW_OVERHEAD = 80


def write_suite(data_dir: Path, out: Path, seed: int = 0) -> list[Path]:
    """The suite's data files (release format), real tasks first; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    real = {short: list(release_rows(data_dir, file)) for short, (file, _) in TASKS.items()}
    words = sorted({w for rows in real.values() for r in rows for w in r["prompt"].split()})
    # How prompt lengths spread about their task's mean, pooled over the real tasks.
    spread = []
    for rows in real.values():
        mean = sum(len(r["prompt"]) for r in rows) / len(rows)
        spread += [len(r["prompt"]) / mean for r in rows]
    paths = []
    for short, rows in real.items():
        paths.append(write(out / f"{short.replace('_', '-')}_classification.jsonl", rows))
    for name, (count, row_bytes) in MISSING.items():
        mean = max(row_bytes - ROW_OVERHEAD, 20.0)
        rows = []
        for _ in range(count):
            chars = max(8, int(mean * rng.choice(spread)))
            text = []
            while sum(len(w) + 1 for w in text) < chars:
                text.append(rng.choice(words))
            classes = [" " + w for w in rng.sample(words, 2)]
            rows.append({"prompt": " ".join(text) + "\nAnswer:", "classes": classes, "answer_index": rng.randrange(2)})
        paths.append(write(out / f"synthetic-{name.replace('_', '-')}_classification.jsonl", rows))
    return paths


def write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"prompt": r["prompt"], "classes": str(list(r["classes"])), "answer_index": r["answer_index"]}) + "\n")
    return path


if __name__ == "__main__":
    paths = write_suite(Path(sys.argv[1]), Path(sys.argv[2]))
    total = 0
    for p in paths:
        rows = [json.loads(line) for line in open(p, encoding="utf-8")]
        total += len(rows)
        print(f"{p.name}: {len(rows)} documents, mean prompt {sum(len(r['prompt']) for r in rows) / len(rows):.0f} characters")
    print(f"{total} documents")
