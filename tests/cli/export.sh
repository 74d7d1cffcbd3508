#!/usr/bin/env bash
# peft export / --adapter end to end, on a tiny GPT-2 and a tiny Llama (GQA):
# * every method trains 3 steps and exports to its format (peft: lora with rsLoRA, selective layers,
#   lora_only bias and lora_B bias, bias "all", dora, ia3 (also restricted to one layer), prompt, prefix with
#   and without projection; adapterhub: houlsby, pfeiffer, parallel, bapna; io in peft's own
#   format; gguf for the Llama LoRA);
# * `eval --model M --adapter EXPORT` prints exactly what `eval --run RUN` prints (the same
#   losses, byte for byte; evaluated with OpenBLAS, the backend export computes a projected
#   prefix's MLP output with);
# * scripts/check_export.py, an independent float64 PyTorch application of the exported files
#   with peft's / AdapterHub's documented semantics, agrees with our per-line losses to 1e-5
#   relative, and checks the GGUF file against the peft export (permuted Q/K lora_B, rsLoRA alpha);
# * `--format merged` (full, lora with biases, dora, ia3): `eval --model MERGED` gives the run's
#   losses to 1e-5 relative;
# * `export --step N` writes checkpoint N;
# * `train --adapter EXPORT` continues from the adapter (a 1e-30 learning-rate step keeps its loss);
# * what cannot be exported or loaded fails with one line naming the file, key or method, and the
#   documented exit code.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
CHECK=${PEFT_CHECK_EXPORT:-$(dirname "$0")/../../scripts/check_export.py}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

. "$(dirname "$0")/../lib/rule_task.sh"
rule_jsonl "$work/rule.jsonl" 64 12 29 || exit 1   # a shorter variant of the counting rule
head -4 "$work/rule.jsonl" > "$work/in.jsonl"
"$PEFT" prep --input "$work/rule.jsonl" --out "$work/data" --seq-len 16 --val-fraction 0.1 --eos-token-id 0 \
    > /dev/null || { echo "FAIL: prep"; exit 1; }
"$PEFT" init-model --arch gpt2 --out "$work/gpt2" --hidden-size 32 --num-hidden-layers 2 --num-attention-heads 4 \
    --vocab-size 64 --max-position-embeddings 64 > /dev/null || { echo "FAIL: init-model gpt2"; exit 1; }
"$PEFT" init-model --arch llama --out "$work/llama" --hidden-size 32 --num-hidden-layers 2 --num-attention-heads 4 \
    --num-key-value-heads 2 --intermediate-size 64 --vocab-size 64 --max-position-embeddings 64 > /dev/null \
    || { echo "FAIL: init-model llama"; exit 1; }

train() { # NAME MODEL METHOD [flags...]: a 3-step run in $work/run_NAME
    local name=$1 model=$2 method=$3
    shift 3
    "$PEFT" train --model "$work/$model" --data "$work/data" --out "$work/run_$name" --method "$method" --max-steps 3 \
        --learning-rate 0.02 --per-device-train-batch-size 4 --threads 1 "$@" > "$work/train_$name.log" 2>&1 \
        || { fail "train $name: $(tail -1 "$work/train_$name.log")"; return 1; }
}

# NAME MODEL METHOD FORMAT [train flags...]
cases=(
    "gpt2_lora gpt2 lora peft --target-modules c_attn,mlp.c_proj --layers-to-transform 1 --lora-bias lora_only --lora-b-bias --lora-dropout 0.1"
    "gpt2_lora_all gpt2 lora peft --target-modules c_attn --lora-bias all --save-steps 1"
    "gpt2_dora gpt2 dora peft --target-modules c_attn,mlp.c_fc --r 4"
    "gpt2_ia3 gpt2 ia3 peft"
    "gpt2_prompt gpt2 prompt peft --num-virtual-tokens 3"
    "gpt2_prefix gpt2 prefix peft --num-virtual-tokens 3 --prefix-projection --encoder-hidden-size 16"
    "gpt2_houlsby gpt2 houlsby adapterhub --reduction-factor 8"
    "gpt2_bapna gpt2 bapna adapterhub --reduction-factor 8"
    "gpt2_io gpt2 io adapterhub --reduction-factor 8"
    "llama_lora llama lora peft --target-modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --use-rslora --r 4 --lora-alpha 8"
    "llama_dora llama dora peft"
    "llama_ia3 llama ia3 peft --layers-to-transform 1"
    "llama_prompt llama prompt peft --num-virtual-tokens 4"
    "llama_prefix llama prefix peft --num-virtual-tokens 2"
    "llama_pfeiffer llama pfeiffer adapterhub"
    "llama_parallel llama parallel adapterhub --reduction-factor 4"
    "llama_houlsby llama houlsby adapterhub --non-linearity relu"
    "gpt2_lora_merged gpt2 lora merged --target-modules c_attn,mlp.c_proj --lora-bias all --lora-b-bias"
    "gpt2_dora_merged gpt2 dora merged --target-modules c_attn,mlp.c_fc"
    "llama_ia3_merged llama ia3 merged"
    "llama_full_merged llama full merged"
)
declare -A exports
for c in "${cases[@]}"; do
    read -r name model method format flags <<< "$c"
    # shellcheck disable=SC2086
    train "$name" "$model" "$method" $flags || continue
    out="$work/exp_$name"
    "$PEFT" export --run "$work/run_$name" --format "$format" --out "$out" > /dev/null 2> "$work/export_$name.err" \
        || { fail "export $name: $(cat "$work/export_$name.err")"; continue; }
    "$PEFT" eval --run "$work/run_$name" --input "$work/in.jsonl" --json --threads 1 --gemm openblas > "$work/run_$name.json" \
        || { fail "eval --run $name"; continue; }
    if [ "$format" = merged ]; then
        # folded into the weights: the same model up to the rounding of W + s B A
        "$PEFT" eval --model "$out" --input "$work/in.jsonl" --json --threads 1 --gemm openblas > "$work/merged_$name.json" \
            || { fail "eval merged $name"; continue; }
        python3 - "$work/run_$name.json" "$work/merged_$name.json" <<'PY' || fail "$name: merged model's loss differs from the run's by more than 1e-5"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
sys.exit(0 if [x["tokens"] for x in a] == [y["tokens"] for y in b]
         and max(abs(x["loss"] - y["loss"]) / x["loss"] for x, y in zip(a, b)) <= 1e-5 else 1)
PY
        continue
    fi
    "$PEFT" eval --model "$work/$model" --adapter "$out" --input "$work/in.jsonl" --json --threads 1 \
        --gemm openblas > "$work/adapter_$name.json" 2> "$work/adapter_$name.err" \
        || { fail "eval --adapter $name: $(cat "$work/adapter_$name.err")"; continue; }
    cmp -s "$work/run_$name.json" "$work/adapter_$name.json" \
        || fail "$name: eval --adapter differs from eval --run: $(paste -d' ' "$work/run_$name.json" "$work/adapter_$name.json" | head -2)"
    exports[$model]="${exports[$model]:-} $out"
done
grep -q "note: AdapterHub cannot express io adapters" "$work/export_gpt2_io.err" \
    || fail "io adapter exported with --format adapterhub without the note (stderr: $(cat "$work/export_gpt2_io.err"))"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["format"])' "$work/exp_gpt2_io/adapter_config.json")" = \
    peft-io-adapter ] || fail "io export is not in the peft-io-adapter format"

# --step picks a checkpoint: step 1 of a run saved every step is not its last
if "$PEFT" export --run "$work/run_gpt2_lora_all" --step 1 --format peft --out "$work/step1" > /dev/null; then
    "$PEFT" eval --run "$work/run_gpt2_lora_all" --step 1 --input "$work/in.jsonl" --json --threads 1 --gemm openblas > "$work/step1_run.json"
    "$PEFT" eval --model "$work/gpt2" --adapter "$work/step1" --input "$work/in.jsonl" --json --threads 1 --gemm openblas \
        > "$work/step1_adapter.json"
    cmp -s "$work/step1_run.json" "$work/step1_adapter.json" || fail "export --step 1 differs from eval --run --step 1"
    cmp -s "$work/step1_run.json" "$work/run_gpt2_lora_all.json" && fail "step 1 and step 3 give the same losses"
else
    fail "export --step 1"
fi

# the independent PyTorch application of the exported files
for model in gpt2 llama; do
    # shellcheck disable=SC2086
    /usr/bin/python3 "$CHECK" loss "$work/$model" "$work/in.jsonl" ${exports[$model]} > "$work/check_$model.jsonl" \
        2> "$work/check_$model.err" || { fail "check_export.py loss $model: $(tail -1 "$work/check_$model.err")"; continue; }
    python3 - "$work" "$work/check_$model.jsonl" <<'PY' || fail "PyTorch losses of the $model exports differ from ours"
import json, os, sys
work, bad = sys.argv[1], 0
for line in open(sys.argv[2]):
    ref = json.loads(line)
    name = os.path.basename(ref["adapter"])[len("exp_"):]
    ours = [json.loads(l) for l in open(os.path.join(work, f"adapter_{name}.json"))]
    worst = max(abs(o["loss"] - r) / abs(r) for o, r in zip(ours, ref["loss"]))
    ok = [o["tokens"] for o in ours] == ref["tokens"] and worst <= 1e-5
    print(f"  {name}: PyTorch vs peft max relative loss difference {worst:.2e} {'ok' if ok else 'FAIL (tolerance 1e-5)'}")
    bad += not ok
sys.exit(1 if bad else 0)
PY
done

# GGUF: the llama LoRA (rsLoRA, all seven projections, GQA k_proj) against its peft export
if "$PEFT" export --run "$work/run_llama_lora" --format gguf --out "$work/llama_lora.gguf" > /dev/null; then
    /usr/bin/python3 "$CHECK" gguf "$work/llama_lora.gguf" "$work/exp_llama_lora" "$work/llama" > "$work/gguf.out" 2>&1 \
        || fail "gguf check: $(tail -1 "$work/gguf.out")"
else
    fail "export --format gguf"
fi

# train --adapter continues from the adapter: a negligible step keeps the loss
for name in llama_lora gpt2_houlsby; do
    model=${name%%_*}
    "$PEFT" train --model "$work/$model" --data "$work/data" --out "$work/cont_$name" --adapter "$work/exp_$name" \
        --max-steps 1 --learning-rate 1e-30 --threads 1 > "$work/cont_$name.log" 2>&1 \
        || { fail "train --adapter $name: $(tail -1 "$work/cont_$name.log")"; continue; }
    "$PEFT" eval --run "$work/cont_$name" --input "$work/in.jsonl" --json --threads 1 > "$work/cont_$name.json"
    python3 - "$work/adapter_$name.json" "$work/cont_$name.json" <<'PY' || fail "train --adapter $name did not start from the adapter"
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p)] for p in sys.argv[1:])
sys.exit(0 if len(a) == len(b) and max(abs(x - y) / x for x, y in zip(a, b)) <= 1e-6 else 1)
PY
done

"$PEFT" inspect "$work/exp_llama_lora" | grep -q "method       lora, r 4, alpha 8, scaling 4 (rsLoRA)" \
    || fail "inspect of the rsLoRA export: $("$PEFT" inspect "$work/exp_llama_lora" 2>&1 | head -2)"
"$PEFT" inspect "$work/exp_llama_parallel" | grep -q "method       parallel, reduction factor 4, relu" \
    || fail "inspect of the parallel export"

# expect CODE PATTERN CMD...: exit code CODE and one stderr line matching PATTERN
expect() {
    local code=$1 pattern=$2
    shift 2
    "$@" > /dev/null 2> "$work/err"
    local rc=$?
    [ "$rc" = "$code" ] || fail "$*: exit $rc, want $code ($(cat "$work/err"))"
    [ "$(wc -l < "$work/err")" = 1 ] || fail "$*: stderr is not one line: $(cat "$work/err")"
    grep -qE -- "$pattern" "$work/err" || fail "$*: stderr '$(cat "$work/err")' lacks /$pattern/"
}
expect 1 "adapter_model.safetensors: key 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight': the model \(gpt2, 2 layers\) has no module" \
    "$PEFT" eval --model "$work/gpt2" --adapter "$work/exp_llama_lora" --input "$work/in.jsonl"
cp -r "$work/exp_llama_lora" "$work/bad_r"
sed -i 's/"r": 4/"r": 2/' "$work/bad_r/adapter_config.json"
expect 1 "key '.*lora_A.weight' has shape \[4, 32\], the model needs \[2, 32\]" \
    "$PEFT" eval --model "$work/llama" --adapter "$work/bad_r" --input "$work/in.jsonl"
mkdir "$work/pickle" && cp "$work/exp_llama_dora/adapter_config.json" "$work/pickle/" && touch "$work/pickle/adapter_model.bin"
expect 1 "adapter_model.safetensors: missing .*safe_serialization=True" \
    "$PEFT" eval --model "$work/llama" --adapter "$work/pickle" --input "$work/in.jsonl"
expect 2 "not a directory" "$PEFT" eval --model "$work/llama" --adapter "$work/nope" --input "$work/in.jsonl"
expect 2 "--adapter goes with --model" "$PEFT" eval --run "$work/run_llama_lora" --adapter "$work/exp_llama_lora" --input "$work/in.jsonl"
expect 2 "holds a lora adapter" "$PEFT" train --model "$work/llama" --data "$work/data" --out "$work/x" --method ia3 \
    --adapter "$work/exp_llama_lora"
expect 1 "llama-family" "$PEFT" export --run "$work/run_gpt2_lora" --format gguf --out "$work/g.gguf"
expect 1 "dora cannot be written as GGUF" "$PEFT" export --run "$work/run_llama_dora" --format gguf --out "$work/d.gguf"
expect 1 "use --format adapterhub" "$PEFT" export --run "$work/run_gpt2_houlsby" --format peft --out "$work/h"
expect 1 "use --format peft" "$PEFT" export --run "$work/run_gpt2_lora" --format adapterhub --out "$work/l"
expect 2 "already exists" "$PEFT" export --run "$work/run_gpt2_lora" --format peft --out "$work/exp_gpt2_lora"
expect 2 "--format must be" "$PEFT" export --run "$work/run_gpt2_lora" --format onnx --out "$work/o"
[ -e "$work/h" ] || [ -e "$work/l" ] || [ -e "$work/d.gguf" ] && fail "a refused export left files behind"
# generate --adapter: the same continuation as generate --run
a=$("$PEFT" generate --model "$work/llama" --adapter "$work/exp_llama_prefix" --prompt-ids 1,6,11 --max-new-tokens 5 --json)
b=$("$PEFT" generate --run "$work/run_llama_prefix" --prompt-ids 1,6,11 --max-new-tokens 5 --json)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "generate --adapter '$a' differs from generate --run '$b'"

[ "$failures" = 0 ] && echo "export: all checks passed" || { echo "export: $failures failure(s)"; exit 1; }
