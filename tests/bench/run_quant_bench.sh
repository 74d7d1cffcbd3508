#!/usr/bin/env bash
# The frozen-base storage benchmark of docs/BENCHMARKS.md ("Quantised bases"): one bench_train row
# per (model, base storage), each in its own process so that its peak RSS is its own, LoRA r 8,
# batch 4 x 256, 2 threads. Prints the load average before each row; the step-time ratios are only
# meaningful when it is low (compare rows measured under the same load).
#   tests/bench/run_quant_bench.sh [--steps N] [--arch gpt2|llama] [--gemm onednn|openblas]
set -eu
# as peft itself runs (it restarts with this): idle OpenMP threads sleep instead of spinning, so the
# CPU seconds bench_train reports are work, not waiting
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
BIN=${BENCH_BIN:-build/bin/bench_train}
steps=2 archs="gpt2 llama" gemm=onednn
while [ $# -gt 0 ]; do
    case $1 in
    --steps) steps=$2; shift 2 ;;
    --arch) archs=$2; shift 2 ;;
    --gemm) gemm=$2; shift 2 ;;
    *) echo "usage: $0 [--steps N] [--arch gpt2|llama] [--gemm onednn|openblas]" >&2; exit 2 ;;
    esac
done
for arch in $archs; do
    # fp32 compute: fp32 base vs NF4; bf16 compute: bf16 base vs NF4 with bf16 products
    for base in "" "--quantize nf4" "--bf16" "--quantize nf4 --bf16"; do
        echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
        # shellcheck disable=SC2086
        "$BIN" --arch "$arch" --method lora --gemm "$gemm" --steps "$steps" --threads 2 $base
    done
done
