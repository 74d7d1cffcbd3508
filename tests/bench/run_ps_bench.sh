#!/usr/bin/env bash
# The parameter server's share of a training step: LoRA r=8 on c_attn of the GPT-2-124M shape,
# batch 4 x 256 per worker, 1 server and W = 1, 2, 4 workers under mpirun on this machine (more
# ranks than cores is oversubscription: W workers share the cores, so compute per step grows ~W).
# Prints, per W: worker 0's mean compute, comm (moving bytes) and wait (server update plus slower
# workers) per step from metrics.jsonl, the server's CPU time, and the bytes each worker moves per
# step (push + reply: 2 x 4 bytes x trainable values, plus headers). ps_share = (comm + server CPU
# per step) / step time: what the parameter server adds; the rest of wait is the slowest worker.
#   tests/bench/run_ps_bench.sh [STEPS]      (default 4; the first step is left out of the means)
set -euo pipefail
cd "$(dirname "$0")/../.."
PEFT=build/bin/peft
steps=${1:-4}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/ids.jsonl" <<'PY'
import json, random, sys
r = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(200):
        f.write(json.dumps({"input_ids": [r.randrange(1, 50257) for _ in range(300)]}) + "\n")
PY
$PEFT prep --input "$work/ids.jsonl" --out "$work/data" --seq-len 256 --eos-token-id 0 --val-fraction 0.05 > /dev/null
$PEFT init-model --arch gpt2 --out "$work/gpt2" > /dev/null
echo "uptime: $(uptime)"
printf "%-8s %10s %10s %10s %10s %8s %14s %14s\n" workers step_s compute_s comm_s wait_s ps_share server_cpu_s bytes/step/wkr
for W in 1 2 4; do
  rm -rf "$work/run"
  mpirun -np $((W + 1)) $PEFT train --model "$work/gpt2" --data "$work/data" --out "$work/run" --method lora --r 8 \
    --target-modules c_attn --per-device-train-batch-size 4 --max-steps "$steps" --logging-steps 1 --eval-batches 1 \
    > "$work/log" 2>&1
  python3 - "$work/run/metrics.jsonl" "$work/log" "$W" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]  # leave out the first step
log = open(sys.argv[2]).read()
W = int(sys.argv[3])
trainable = int(re.search(r"trainable params: (\d+)", log).group(1))
cpu = float(re.search(r"server 0 on .*?: \d+ steps, ([0-9.]+) s CPU", log).group(1))
mean = lambda k: sum(r[k] for r in rows) / len(rows)
c, m, w = mean("compute_s"), mean("comm_s"), mean("wait_s")
step = c + m + w
steps = len(rows) + 1
# the server's cost per step: moving the bytes plus its own CPU time (the update); the rest of
# "wait" is waiting for the slowest worker, which is load imbalance, not the parameter server
share = (m + cpu / steps) / step
print(f"{W:<8d} {step:10.3f} {c:10.3f} {m:10.4f} {w:10.3f} {100 * share:7.2f}% {cpu:14.2f} {2 * 4 * trainable:14d}")
PY
done
