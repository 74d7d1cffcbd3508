#!/usr/bin/env bash
# run_train_bench.sh - the training benchmark table of docs/BENCHMARKS.md in one command:
# GEMM ceilings, one training step per PEFT method on GPT-2-124M and the Llama shape (bench_train),
# the PyTorch peer (torch_peer.py) in fp32 and bf16 autocast in each thread setting, the ratios, and
# KV-cache decoding speed.
#
#   tests/bench/run_train_bench.sh [--build DIR] [--steps N] [--archs "gpt2 llama"]
#       [--methods "lora dora ia3 prompt houlsby full qlora lora-bf16"] [--peer-settings "1:2 2:1 2:2"]
#       [--peer-bf16-settings "2:1"] [--peer-steps N] [--no-peer] [--repeat R]
#
# --repeat R runs every row (ours and each peer setting) R times and keeps the run with the fastest
# median step: on a virtual machine whole runs drift by 10-20% together, so one run per row
# compares a lucky row with an unlucky one.
# qlora is LoRA over an NF4 base (bench_train --quantize nf4), lora-bf16 LoRA over a bf16 base
# (--bf16). A peer setting T:O runs torch with torch.set_num_threads(T) and OPENBLAS_NUM_THREADS=O; the table
# keeps each mode's fastest setting. Every row is its own process (its peak RSS is its own) and
# records the load average at its start: the machine is shared, so compare rows run close together.
# Our rows run with OMP_WAIT_POLICY=PASSIVE, as `peft` does.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build steps=3 archs="gpt2 llama" methods="lora dora ia3 prompt houlsby full"
peer_settings="1:2 2:1 2:2" peer_bf16_settings="2:1" peer_steps=2 peer=1 repeat=1
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --archs) archs=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --peer-settings) peer_settings=$2; shift 2 ;;
    --peer-bf16-settings) peer_bf16_settings=$2; shift 2 ;;
    --peer-steps) peer_steps=$2; shift 2 ;;
    --no-peer) peer=0; shift ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "run_train_bench.sh: unknown option '$1' (--help lists them)" >&2; exit 2 ;;
    esac
done

cmake --build "$build" --target bench_model bench_train -j 2 >/dev/null
export OMP_WAIT_POLICY=PASSIVE
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
load() { cut -d' ' -f1 /proc/loadavg; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

echo "# training benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(load) at the start"
echo
"$build/bin/bench_model" --arch none --threads 2 | sed -n '/^GEMM/,$p' | tee "$out/ceilings"
# the best f32 ceiling over each model's shapes (rows: 768/3072/50257-wide are GPT-2's, 1536/576 Llama's),
# from the f32 table (which ends where bench_model's bf16 part begins), and the best bf16 ceiling
# from the bf16 table when bench_model could measure one (oneDNN's bf16 matmul needs AVX512)
ceil_gpt2=$(awk -F'|' '/^bf16 GEMM/{ exit } / x /{ if ($2 ~ / 768 | 3072 | 50257 /) for (i = 4; i <= 5; i++) if ($i + 0 > m) m = $i + 0 } END { print m }' "$out/ceilings")
ceil_llama=$(awk -F'|' '/^bf16 GEMM/{ exit } / x /{ if ($2 ~ / 1536 | 576 | 50257 /) for (i = 4; i <= 5; i++) if ($i + 0 > m) m = $i + 0 } END { print m }' "$out/ceilings")
bf16_ceil() { # shape pattern -> the best bf16 GFLOP/s, or "not measured"
    awk -F'|' -v pat="$1" '/^bf16 GEMM ceilings/{ b = 1 } b && / x /{ if ($2 ~ pat && $4 + 0 > m) m = $4 + 0 }
        END { if (m > 0) print m; else print "not measured" }' "$out/ceilings"
}
ceil16_gpt2=$(bf16_ceil ' 768 | 3072 | 50257 ') ceil16_llama=$(bf16_ceil ' 1536 | 576 | 50257 ')
echo

for arch in $archs; do
    for m in $methods; do
        l=$(load)
        case "$m" in
        qlora) args=(--method lora --quantize nf4) ;;
        lora-bf16) args=(--method lora --bf16) ;;
        *) args=(--method "$m") ;;
        esac
        line=
        for ((r = 0; r < repeat; r++)); do # keep the run with the fastest median step
            l=$(load)
            run=$("$build/bin/bench_train" --arch "$arch" "${args[@]}" --steps "$steps" --threads 2 | grep '^train ')
            echo "$run label=$m load=$l run=$((r + 1))" >>"$out/all"
            if [ -z "$line" ] || awk -v a="$(field step_s "$run")" -v b="$(field step_s "$line")" 'BEGIN { exit !(a < b) }'; then
                line="$run label=$m load=$l"
            fi
        done
        echo "$line" | tee -a "$out/ours"
    done
    l=$(load)
    line=$("$build/bin/bench_train" --arch "$arch" --generate --threads 2 | grep '^generate ')
    echo "$line arch=$arch load=$l" | tee -a "$out/gen"
    if [ "$peer" = 1 ]; then
        for mode in fp32 bf16; do
            settings=$peer_settings
            [ "$mode" = bf16 ] && settings=$peer_bf16_settings
            for s in $settings; do
                for ((r = 0; r < repeat; r++)); do # best_peer below keeps the fastest line
                    l=$(load)
                    line=$(OPENBLAS_NUM_THREADS=${s#*:} /usr/bin/python3 tests/bench/torch_peer.py --arch "$arch" \
                           --mode "$mode" --threads "${s%:*}" --steps "$peer_steps")
                    echo "$line openblas=${s#*:} load=$l" | tee -a "$out/peer"
                done
            done
        done
    fi
done

echo
echo "| model | method | ours step s | CPU s | tokens/s | GFLOP/step | GFLOP/s | of f32 ceiling | GFLOP/s at 2 CPU-s per s | peak RSS MiB | torch fp32 step s (T:O) | ours/torch fp32 | torch bf16 step s (T:O) | ours/torch bf16 | RSS ours/torch fp32 | load |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
best_peer() { # arch mode -> "step_s threads openblas rss" of the fastest setting
    [ -f "$out/peer" ] || { echo "nan - - nan"; return; }
    grep " arch=$1 mode=$2 " "$out/peer" | while read -r ln; do
        echo "$(field step_s "$ln") $(field threads "$ln") $(field openblas "$ln") $(field peak_rss_mib "$ln")"
    done | sort -g | head -1
}
while read -r ln; do
    arch=$(field arch "$ln") m=$(field label "$ln") st=$(field step_s "$ln") cpu=$(field cpu_s "$ln")
    ceil=$ceil_gpt2; name="GPT-2 124M"
    [ "$arch" = llama ] && { ceil=$ceil_llama; name="Llama 135M"; }
    read -r p32 t32 o32 r32 <<<"$(best_peer "$arch" fp32)"
    read -r p16 t16 o16 _ <<<"$(best_peer "$arch" bf16)"
    awk -v name="$name" -v m="$m" -v st="$st" -v cpu="${cpu:-nan}" -v tps="$(field tokens_per_s "$ln")" -v gf="$(field gflop "$ln")" \
        -v gs="$(field gflops "$ln")" -v ceil="$ceil" -v rss="$(field peak_rss_mib "$ln")" -v p32="${p32:-nan}" \
        -v s32="${t32:--}:${o32:--}" -v p16="${p16:-nan}" -v s16="${t16:--}:${o16:--}" -v r32="${r32:-nan}" \
        -v load="$(field load "$ln")" 'BEGIN {
        r = (m == "lora" && p32 + 0 > 0) ? sprintf("%.2fx", p32 / st) : "-";
        rb = (m == "lora" && p16 + 0 > 0) ? sprintf("%.2fx", p16 / st) : "-";
        rr = (m == "lora" && r32 + 0 > 0) ? sprintf("%.2f", rss / r32) : "-";
        t32 = (m == "lora" && p32 + 0 > 0) ? sprintf("%.2f (%s)", p32, s32) : "-";
        t16 = (m == "lora" && p16 + 0 > 0) ? sprintf("%.2f (%s)", p16, s16) : "-";
        printf "| %s | %s | %.2f | %.2f | %.0f | %.1f | %.0f | %.0f%% | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n",
               name, m, st, cpu, tps, gf, gs, 100 * gs / ceil, (cpu + 0 > 0 ? gf / (cpu / 2) : 0), rss, t32, r, t16, rb, rr, load }'
done <"$out/ours"
echo
echo "CPU s: user + system seconds of the timed step over both threads; GFLOP/s at 2 CPU-s per s = GFLOP / (CPU s / 2),"
echo "what the step would reach if it had both cores to itself and spent no extra time waiting (an estimate)."
echo "Ratios ours/torch are speed-ups (torch step time / ours), LoRA rows only (the peer is LoRA r=8)."
echo "Best f32 GEMM ceiling used: GPT-2 $ceil_gpt2, Llama $ceil_llama GFLOP/s."
echo "Best bf16 GEMM ceiling (gemm_bf16; the one bf16 products approach where oneDNN has them): GPT-2 $ceil16_gpt2, Llama $ceil16_llama GFLOP/s."
echo
echo "| model | generate (KV cache) tokens/s | prompt | new tokens | load |"
echo "|---|--:|--:|--:|--:|"
while read -r ln; do
    echo "| $(field arch "$ln") | $(field tokens_per_s "$ln") | $(field prompt "$ln") | $(field new "$ln") | $(field load "$ln") |"
done <"$out/gen"
if [ -f "$out/peer" ]; then
    echo
    echo "PyTorch peer runs (all settings):"
    echo
    sed 's/^/    /' "$out/peer"
fi
if [ "$repeat" -gt 1 ]; then
    echo
    echo "Our runs (all $repeat of each row; the table keeps the fastest):"
    echo
    sed 's/^/    /' "$out/all"
fi
