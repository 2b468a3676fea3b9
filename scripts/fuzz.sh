#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of input invscale did not make, with AFL++ through
# cargo-afl (stable toolchain). One command:
#
#   scripts/fuzz.sh [--minutes N] [--jobs J] [--work DIR] [TARGET ...]
#
# Targets (fuzz/src/bin/): pylit data_rows task_toml template lm_eval_yaml gguf tokenizer_json
# hf_config score_cache server_answers; all when none is named. Each runs N minutes (default 10),
# J at a time (default: the CPU count). Seeds come from the real files (../shared, read in place),
# the malformed corpus and the test fixtures, copied into the work folder (default
# target/fuzz-work, outside the repository's tracked files), never into the repository.
# Every input runs under a memory limit (-m 1024 MB: an input that makes invscale allocate
# more counts as a crash) and a time limit (-t 2000 ms: a hang).
#
# At the end: a table per target (executions, corpus, edge coverage, crashes, hangs), also in
# WORK/summary.md and WORK/summary.json; crashes and hangs are in WORK/out/TARGET/default/
# {crashes,hangs}/ — each distinct one becomes a regression case in the malformed corpus.
#
# Needs cargo-afl: `cargo install cargo-afl` (crates.io; it builds AFL++ on install).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
minutes=10
jobs=$(nproc)
work="$root/target/fuzz-work"
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(pylit data_rows task_toml template lm_eval_yaml gguf tokenizer_json hf_config score_cache server_answers)
[[ ${#targets[@]} -eq 0 ]] && targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "error: unknown target $t (known: ${all[*]})" >&2; exit 2; }
done
if ! cargo afl --version >/dev/null 2>&1; then
  echo "error: cargo-afl is missing: cargo install cargo-afl (from crates.io; it builds AFL++)" >&2
  exit 1
fi
shared="$root/../shared/data"
[[ -d "$shared" ]] || { echo "error: ../shared/data is missing: the seeds come from its real files" >&2; exit 1; }

echo "[fuzz] building the targets (AFL-instrumented, release, overflow checks on)"
(cd fuzz && cargo afl build --release --locked 2>&1 | tail -2)

seeds="$work/seeds"
rm -rf "$seeds"
mkdir -p "$seeds"
seed() { # seed TARGET NAME < content
  mkdir -p "$seeds/$1"
  cat > "$seeds/$1/$2"
}
head_of() { head -c "${2:-4096}" "$1"; }
malformed="$root/crates/invscale-tasks/tests/fixtures/malformed"
fixtures="$root/crates/invscale-tasks/tests/fixtures"

# pylit: the classes literals of the release files, and CPython's own cases.
python3 - "$shared/inverse_scaling/official_release" "$fixtures/pylit_cpython.jsonl" "$seeds/pylit" <<'EOF'
import json, os, sys, glob
release, cases, out = sys.argv[1:]
os.makedirs(out, exist_ok=True)
n = 0
for f in sorted(glob.glob(os.path.join(release, "*.jsonl"))):
    with open(f, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= 3:
                break
            c = json.loads(line).get("classes")
            if isinstance(c, str):
                open(os.path.join(out, f"release{n}"), "w", encoding="utf-8").write(c); n += 1
with open(cases, encoding="utf-8") as fh:
    for i, line in enumerate(fh):
        if i >= 40:
            break
        case = json.loads(line)
        text = case["src"]
        open(os.path.join(out, f"cpython{i}"), "w", encoding="utf-8").write(text)
EOF
# data_rows: a format byte (0 jsonl, 1 json, 2 csv, 3 parquet) then the file: heads of the real
# files, the malformed corpus, the parquet fixtures.
i=0
for f in "$shared"/inverse_scaling/official_release/*.jsonl "$shared"/model_written_evals/advanced-ai-risk/human_generated_evals/power-seeking-inclination.jsonl "$malformed"/*.jsonl; do
  { printf '\x00'; head -n 3 "$f"; } | seed data_rows "jsonl$((i++))"
done
for f in "$malformed"/*.json; do { printf '\x01'; cat "$f"; } | seed data_rows "json$((i++))"; done
{ printf '\x01'; head_of "$shared/truthfulqa/mc_task.json" 3000; } | seed data_rows "json$((i++))"
for f in "$shared"/inverse_scaling/original_submissions/*/*.csv "$malformed"/*.csv; do
  { printf '\x02'; head -n 4 "$f"; } | seed data_rows "csv$((i++))"
done
for f in "$fixtures"/*.parquet "$malformed"/*.parquet; do { printf '\x03'; cat "$f"; } | seed data_rows "parquet$((i++))"; done
# task_toml and template: the built-in task files; their templates over a row.
for f in tasks/*.toml; do seed task_toml "$(basename "$f")" < "$f"; done
printf 'Q: {{ question }}\nA:\0{"question": "Why?"}' | seed template t0
printf '{{ [a, b] }}\0{"a": " (A)", "b": " (B)"}' | seed template t1
printf "{%% set p = 'Q: x\\\\nA: y' %%}{{p + '\\\\n\\\\nQ: ' + question + '\\\\nA:'}}\0{\"question\": \"Why?\"}" | seed template t2
printf "{{ split_answers(doc['Correct Answers']) + split_answers(doc['Incorrect Answers']) }}\0{\"Correct Answers\": \"a; b\", \"Incorrect Answers\": \"c\"}" | seed template t3
printf '{{ mc2_targets.labels }}\0{"mc2_targets": {"choices": ["a", "b"], "labels": [1, 0]}}' | seed template t4
# lm_eval_yaml: lm-eval's own files (their includes do not resolve here: the error paths count too).
for f in $(find "$fixtures/lm-eval-yaml" -type f -name "*yaml*"); do seed lm_eval_yaml "$(basename "$f")" < "$f"; done
# gguf: the tiny GGUFs of the tests (real converters' layout, random weights).
for f in "$root"/crates/invscale-models/tests/fixtures/tiny-gguf/{qwen2,phi3-llamacpp.q8_0,gpt2,llama}.gguf; do
  seed gguf "$(basename "$f")" < "$f"
done
# tokenizer_json and hf_config: the tiny checkpoints' files.
for d in "$root"/crates/invscale-models/tests/fixtures/tiny/*/; do
  n=$(basename "$d")
  [[ -f "$d/tokenizer.json" ]] && seed tokenizer_json "$n" < "$d/tokenizer.json"
  [[ -f "$d/config.json" ]] && seed hf_config "$n" < "$d/config.json"
done
# score_cache: entries as a run writes them (`v1 KEY LL GREEDY CHECKSUM`, the checksum the first
# 4 bytes of the line's sha256), one cut short.
python3 - "$seeds/score_cache" <<'EOF'
import hashlib, os, sys
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
def line(key, ll, greedy):
    body = f"v1 {key} {ll} {greedy}"
    return f"{body} {hashlib.sha256(body.encode()).hexdigest()[:8]}\n"
entries = line("0123456789abcdef0123456789abcdef", "-1.25", 1) + line("fedcba9876543210fedcba9876543210", "-inf", 0)
open(os.path.join(out, "ok"), "w").write(entries)
open(os.path.join(out, "cut"), "w").write(entries + line("00112233445566778899aabbccddeeff", "-0.5", 0)[:30])
EOF
# server_answers: each API's documented answer shape.
echo '{"choices":[{"text":"Q: 2+2? A: 4","index":0,"logprobs":{"tokens":["Q",":"," 2","+2","?"," A",":"," 4"],"text_offset":[0,1,2,4,6,7,9,10],"token_logprobs":[null,-1.5,-2.0,-0.5,-0.25,-1.0,-0.125,-0.75],"top_logprobs":[null,{":":-1.5},{" 2":-2.0},{"+2":-0.5},{"?":-0.25},{" A":-1.0},{":":-0.125},{" 4":-0.75}]}}]}' | seed server_answers openai
echo '{"choices":[{"prompt_logprobs":[null,{"2":{"logprob":-1.5,"rank":1}},{"3":{"logprob":-2.0,"rank":2},"9":{"logprob":-0.1,"rank":1}},{"4":{"logprob":-0.5,"rank":1}},{"5":{"logprob":-0.25,"rank":1}},{"6":{"logprob":-1.0,"rank":1}},{"7":{"logprob":-0.125,"rank":1}},{"8":{"logprob":-0.75,"rank":1}}]},{"prompt_logprobs":[null,{"2":{"logprob":-1.5,"rank":1}},{"3":{"logprob":-2.0,"rank":1}},{"4":{"logprob":-0.5,"rank":1}}]}]}' | seed server_answers vllm
echo '[{"text":"x","meta_info":{"prompt_tokens":8,"input_token_logprobs":[[null,5,null],[-1.0,6,null],[-0.125,7,null],[-0.75,8,null]],"input_top_logprobs":[null,[[-1.0,6,null]],[[-0.125,7,null]],[[-0.5,3,null]]]}},{"text":"y","meta_info":{"prompt_tokens":4,"input_token_logprobs":[[-2.0,3,null],[-0.5,4,null]],"input_top_logprobs":[[[-1.0,4,null]],[[-0.5,4,null]]]}}]' | seed server_answers sglang
echo '{"generated_text":" 4","details":{"prefill":[{"id":1,"text":"Q","logprob":null},{"id":2,"text":":","logprob":-1.5},{"id":3,"text":" 2","logprob":-2.0},{"id":4,"text":"+2","logprob":-0.5},{"id":5,"text":"?","logprob":-0.25},{"id":6,"text":" A","logprob":-1.0},{"id":7,"text":":","logprob":-0.125},{"id":8,"text":" 4","logprob":-0.75}],"tokens":[{"id":9,"text":"x","logprob":-0.1,"special":false}]}}' | seed server_answers tgi

mkdir -p "$work/out"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_SKIP_CRASHES=1
echo "[fuzz] ${#targets[@]} target(s), $minutes min each, $jobs at a time; work folder $work"
run_one() {
  local t=$1
  rm -rf "$work/out/$t"
  cargo afl fuzz -i "$seeds/$t" -o "$work/out/$t" -m 1024 -t 2000 -V $((minutes * 60)) "$root/fuzz/target/release/$t" \
    > "$work/out/$t.log" 2>&1 || echo "[fuzz] $t: afl-fuzz exited with $? (see $work/out/$t.log)"
  echo "[fuzz] $t: done"
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [[ $running -ge $jobs ]]; then wait -n; running=$((running - 1)); fi
done
wait

python3 - "$work" "$minutes" "${targets[@]}" <<'EOF'
import json, os, sys
work, minutes, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for t in targets:
    stats = {}
    path = os.path.join(work, "out", t, "default", "fuzzer_stats")
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.partition(":")
            stats[k.strip()] = v.strip()
    rows.append({"target": t, "run_seconds": int(stats.get("run_time", 0) or 0), "execs": int(stats.get("execs_done", 0) or 0),
                 "execs_per_sec": float(stats.get("execs_per_sec", 0) or 0), "corpus": int(stats.get("corpus_count", 0) or 0),
                 "edges_found": int(stats.get("edges_found", 0) or 0), "total_edges": int(stats.get("total_edges", 0) or 0),
                 "bitmap_cvg": stats.get("bitmap_cvg", "?"), "crashes": int(stats.get("saved_crashes", 0) or 0),
                 "hangs": int(stats.get("saved_hangs", 0) or 0)})
json.dump(rows, open(os.path.join(work, "summary.json"), "w"), indent=1)
lines = ["| target | minutes | executions | execs/s | corpus | edges | crashes | hangs |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    lines.append(f"| {r['target']} | {r['run_seconds'] / 60:.1f} | {r['execs']:,} | {r['execs_per_sec']:.0f} | {r['corpus']} | {r['edges_found']} ({r['bitmap_cvg']}) | {r['crashes']} | {r['hangs']} |")
text = "\n".join(lines) + "\n"
open(os.path.join(work, "summary.md"), "w").write(text)
print(text)
bad = [r["target"] for r in rows if r["crashes"] or r["hangs"]]
if bad:
    print("crashes or hangs in: " + ", ".join(bad) + f" (inputs under {work}/out/TARGET/default/)")
    sys.exit(1)
EOF
