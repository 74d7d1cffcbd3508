#!/usr/bin/env bash
# run_tokenizer_bench.sh - tokenizer MB/s of common/tokenizer (bench_tokenizer) beside Hugging Face's
# Rust library (npm `tokenizers`, node binding) and tokenizers.js (npm `@huggingface/tokenizers`)
# on the same text and vocabularies, then `peft prep` end to end on the same text; prints the
# markdown tables recorded in docs/BENCHMARKS.md.
#
#   tests/bench/run_tokenizer_bench.sh [--build DIR] [--mb N] [--tokenizers "gpt2 llama3_style ..."]
#                                      [--c-repeat N] [--c-min-seconds S] [--peer-repeat N]
#                                      [--budget-s S] [--prep-runs N] [--keep]
#
# Needs: a configured CMake build directory (default build/; the script builds bench_tokenizer and
# peft in it), node >= 20 (the peers' packages are installed with `npm ci` in tests/bench if
# missing) and Debian's fortunes (apt-get install -y fortunes fortunes-bofh-excuses).
#
# The text: the prose collections of /usr/share/games/fortunes (the list scripts/tokenizer_fixtures/
# extract_fortunes.js uses), every line that is valid UTF-8, not a "%" separator, not empty and
# free of control characters but TAB, in file order, repeated line by line up to --mb MB
# (default 4). The same lines become JSONL documents {"text": line} for `peft prep`.
#
# Everything runs on one thread: OMP/OpenBLAS at 1, and the peers set RAYON_NUM_THREADS=1,
# TOKENIZERS_PARALLELISM=false and UV_THREADPOOL_SIZE=1. Exit status 1 if any peer's token counts
# or ids disagree with bench_tokenizer's (the table says MISMATCH); timings are never asserted.
set -euo pipefail

args=$*
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$root/build
mb=4
tokenizers="gpt2 llama3_style llama2_style"
c_repeat=5
c_min_seconds=5
prep_runs=5
peer_repeat=3
budget=60
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --build) build=$2; shift 2 ;;
        --mb) mb=$2; shift 2 ;;
        --tokenizers) tokenizers=$2; shift 2 ;;
        --c-repeat) c_repeat=$2; shift 2 ;;
        --c-min-seconds) c_min_seconds=$2; shift 2 ;;
        --prep-runs) prep_runs=$2; shift 2 ;;
        --peer-repeat) peer_repeat=$2; shift 2 ;;
        --budget-s) budget=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_tokenizer_bench: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
    esac
done

fortunes=/usr/share/games/fortunes
fixtures=$root/tests/fixtures/tokenizers
if [ ! -f "$fortunes/fortunes" ] || [ ! -f "$fortunes/bofh-excuses" ]; then
    echo "run_tokenizer_bench: $fortunes missing: apt-get install -y fortunes fortunes-bofh-excuses" >&2
    exit 1
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    echo "run_tokenizer_bench: $build is not a CMake build directory (cmake -S . -B build, or --build DIR)" >&2
    exit 1
fi
cmake --build "$build" --target bench_tokenizer peft -j "$(nproc)" >/dev/null
bench=$build/bin/bench_tokenizer
peft=$build/bin/peft
if [ ! -d "$here/node_modules/tokenizers" ] || [ ! -d "$here/node_modules/@huggingface/tokenizers" ]; then
    (cd "$here" && npm ci --no-audit --no-fund >/dev/null)
fi
peer=(node "$here/tokenizer_peer.js")
# Before the exports below: GNU nproc honours OMP_NUM_THREADS.
machine="nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), AVX-512: $(grep -qm1 avx512f /proc/cpuinfo && echo yes || echo no)"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false UV_THREADPOOL_SIZE=1

work=$(mktemp -d "${TMPDIR:-/tmp}/tokbench.XXXXXX")
if [ "$keep" = 1 ]; then echo "run_tokenizer_bench: keeping $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

FORTUNES=$fortunes MB=$mb OUT=$work node - <<'EOF'
'use strict';
const fs = require('fs');
const path = require('path');
const FILES = [
  'bofh-excuses', 'computers', 'debian', 'definitions', 'education', 'food', 'fortunes', 'goedel',
  'humorists', 'kids', 'knghtbrd', 'law', 'linux', 'literature', 'magic', 'miscellaneous', 'paradoxum',
  'people', 'perl', 'pets', 'platitudes', 'pratchett', 'riddles', 'science', 'songs-poems', 'sports',
  'startrek', 'tao', 'wisdom', 'work', 'zippy',
];
const utf8 = new TextDecoder('utf-8', { fatal: true });
const lines = [];
let invalid = 0;
for (const name of FILES) {
  const buf = fs.readFileSync(path.join(process.env.FORTUNES, name));
  for (let s = 0; s < buf.length;) {
    let e = buf.indexOf(0x0a, s);
    if (e < 0) e = buf.length;
    const raw = buf.subarray(s, e);
    s = e + 1;
    let line;
    try { line = utf8.decode(raw); } catch { invalid++; continue; }
    if (line === '' || line === '%' || /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/u.test(line)) continue;
    lines.push(line);
  }
}
const target = Number(process.env.MB) * 1e6;
const out = [];
let bytes = 0, base = 0;
for (const l of lines) base += Buffer.byteLength(l) + 1;
for (let i = 0; bytes < target; i++) {
  out.push(lines[i % lines.length]);
  bytes += Buffer.byteLength(lines[i % lines.length]) + 1;
}
fs.writeFileSync(path.join(process.env.OUT, 'text.txt'), out.map((l) => l + '\n').join(''));
fs.writeFileSync(path.join(process.env.OUT, 'text.jsonl'), out.map((l) => JSON.stringify({ text: l }) + '\n').join(''));
console.log(`text: ${FILES.length} fortune files, ${lines.length} lines (${(base / 1e6).toFixed(2)} MB; ` +
  `${invalid} invalid UTF-8 lines dropped), repeated to ${out.length} lines, ${(bytes / 1e6).toFixed(2)} MB`);
EOF
text=$work/text.txt
jsonl=$work/text.jsonl

# value KEY LINE: the value of KEY=... in a key=value line.
value() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# load: the 1-minute load average / the share of the last 10 s in which some task waited for a CPU
# (/proc/pressure/cpu, "-" without PSI). Both count every process of the VM, visible or not.
load_now() {
    local psi
    psi=$(sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null || true)
    echo "$(cut -d' ' -f1 /proc/loadavg) / ${psi:-"-"}${psi:+%}"
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "command: tests/bench/run_tokenizer_bench.sh $args"
echo "machine: $machine"
echo "node $(node --version), tokenizers $(node -p "require('$here/node_modules/tokenizers/package.json').version"), @huggingface/tokenizers $(node -p "require('$here/node_modules/@huggingface/tokenizers/package.json').version")"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); CPU pressure: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
echo

status=0
rows=()
for tk in $tokenizers; do
    for mode in lines document; do
        load=$(load_now)
        counts=$work/counts.$tk.$mode
        c=$("$bench" --tokenizer "$fixtures/$tk" --text "$text" --mode "$mode" --repeat "$c_repeat" \
            --min-seconds "$c_min_seconds" --counts-out "$counts")
        echo "$tk $mode: $c" >&2
        cells=()
        for impl in rust js; do
            rc=0
            p=$("${peer[@]}" --impl $impl --tokenizer "$fixtures/$tk" --text "$text" --mode "$mode" \
                --repeat "$peer_repeat" --budget-s "$budget" --counts "$counts") || rc=$?
            echo "$tk $mode: $p" >&2
            if [ $rc -ne 0 ] || [ "$(value check "$p")" != ok ] || [ "$(value tokens "$p")" != "$(value tokens "$c")" ]; then
                echo "run_tokenizer_bench: MISMATCH: $impl on $tk ($mode) disagrees with bench_tokenizer (exit $rc); see above" >&2
                status=1
                cells+=("$(value mb_s "$p") MISMATCH")
            else
                cells+=("$(value mb_s "$p")")
            fi
            [ $impl = rust ] && rust_call=$(value call_us "$p")
        done
        c_mbs=$(value mb_s "$c")
        r_mbs=${cells[0]%% *}
        j_mbs=${cells[1]%% *}
        goal=$(awk -v a="$c_mbs" -v b="$r_mbs" 'BEGIN { print (b > 0 && a / b >= 5) ? "yes" : "no" }')
        rows+=("| $tk | $mode | $(value pieces "$c") | $(value tokens "$c") | $c_mbs | ${cells[0]} | ${cells[1]} | $(ratio "$c_mbs" "$r_mbs") | $(ratio "$c_mbs" "$j_mbs") | $goal | $rust_call | $load |")
    done
done

echo "Tokenizer alone: MB/s = text bytes / 1e6 / fastest pass (C: best of >= $c_repeat passes filling >= $c_min_seconds s; peers: best of up to $peer_repeat within ${budget} s), one thread."
echo "lines: each line encoded on its own; document: 1 MiB runs of whole lines. No special tokens."
echo
echo "| tokenizer | mode | pieces | tokens | C MB/s | Rust (tokenizers) MB/s | tokenizers.js MB/s | C/Rust | C/JS | C/Rust >= 5 | Rust binding us/call (empty) | load / CPU pressure |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|:-:|--:|--:|"
printf '%s\n' "${rows[@]}"
echo

# peft prep end to end: JSONL parse, tokenizer (add_special: BOS where the template has one), EOS
# separators, packing into --seq-len sequences, LMDB writes. Best of --prep-runs; no node peer.
# Each prep run alternates with one lines-mode pass of bench_tokenizer, so that the two figures
# compared in the last columns saw the same neighbours.
echo "peft prep, --seq-len 1024 --val-fraction 0.05, best of $prep_runs, each run alternating with one"
echo "bench_tokenizer lines pass (best of those in the tokenizer column). prep's own MB/s counts JSONL"
echo "bytes (its timer starts after the tokenizer loads); text MB/s = the same seconds over the text's"
echo "bytes; wall = the whole process. There is no node prep peer: neither library has a prep pipeline."
echo
echo "| tokenizer | documents | tokens | extra tokens/doc | prep MB/s (JSONL) | prep text MB/s | wall s | C tokenizer lines MB/s | prep text / tokenizer | load / CPU pressure |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
jsonl_bytes=$(stat -c %s "$jsonl")
text_bytes=$(stat -c %s "$text")
for tk in $tokenizers; do
    load=$(load_now)
    best=""
    best_wall=""
    c_mbs=0
    for ((run = 0; run < prep_runs; run++)); do
        c=$("$bench" --tokenizer "$fixtures/$tk" --text "$text" --mode lines --repeat 1 --min-seconds 0)
        c_mbs=$(awk -v a="$(value mb_s "$c")" -v b="$c_mbs" 'BEGIN { print (a > b) ? a : b }')
        c_tokens=$(value tokens "$c")
        rm -rf "$work/ds"
        t0=$(date +%s%N)
        line=$("$peft" prep --tokenizer "$fixtures/$tk" --input "$jsonl" --out "$work/ds" --seq-len 1024 --val-fraction 0.05)
        wall=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
        echo "$tk prep: $line (wall $wall s)" >&2
        mbs=$(sed -n 's/.*(\([0-9.]*\) MB\/s)$/\1/p' <<<"$line")
        if [ -z "$best" ] || awk -v a="$mbs" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$mbs; best_line=$line; fi
        if [ -z "$best_wall" ] || awk -v a="$wall" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then best_wall=$wall; fi
    done
    docs=$(sed -n 's/.*: \([0-9]*\) documents.*/\1/p' <<<"$best_line")
    toks=$(sed -n 's/.*), \([0-9]*\) tokens,.*/\1/p' <<<"$best_line")
    extra=$(awk -v t="$toks" -v c="$c_tokens" -v d="$docs" 'BEGIN { printf "%.2f", (t - c) / d }')
    text_mbs=$(awk -v m="$best" -v j="$jsonl_bytes" -v t="$text_bytes" 'BEGIN { printf "%.2f", t / 1e6 / (j / 1e6 / m) }')
    echo "| $tk | $docs | $toks | $extra | $best | $text_mbs | $best_wall | $c_mbs | $(ratio "$text_mbs" "$c_mbs") | $load |"
done
rm -rf "$work/ds"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); CPU pressure: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
exit $status
