#!/usr/bin/env bash
# peft train end to end: every method, on a tiny GPT-2 and a tiny Llama, lowers the validation loss
# of a learnable rule well under chance in 60 steps; the run directory (metrics.jsonl) and the
# trainable-parameter line are in their documented format; a second run into the same --out and
# bad method flags are refused with one line and exit code 2.
#
# The data: documents counting through the tokens 1..16 in steps of 5 (x -> (x + 5) mod 16), from a
# random start, EOS 0 between documents, in a vocabulary of 64: chance is ln 64 = 4.16, the
# 17-token unigram 2.83, the rule itself ~0 after the first token of a document.
# The base: `peft init-model` draws Hugging Face's N(0, 0.02), which leaves a tiny network nearly
# inert (each sub-layer adds ~1e-2 of the stream), so the methods that act only through attention
# (prompt, prefix) cannot move the loss in a few dozen steps. Its matrices are scaled by 10 here
# (std 0.2): still random (initial loss ~5, above chance), but active.
# Single-threaded (--threads 1): deterministic, and faster than 2 threads on a busy 2-core machine.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

. "$(dirname "$0")/../lib/rule_task.sh"
rule_task "$work" || exit 1   # rule.jsonl, data/, gpt2/
"$PEFT" init-model --arch llama --out "$work/llama" --hidden-size 64 --num-hidden-layers 2 --num-attention-heads 4 \
    --num-key-value-heads 2 --intermediate-size 128 --vocab-size 64 --max-position-embeddings 64 > /dev/null \
    || { echo "FAIL: init-model llama"; exit 1; }
# every matrix x 10, in place (safetensors: u64 header length, JSON header, raw little-endian data)
python3 - "$work/gpt2/model.safetensors" "$work/llama/model.safetensors" <<'PY' \
    || { echo "FAIL: scaling the bases"; exit 1; }
import array, json, struct, sys
for path in sys.argv[1:]:
    buf = bytearray(open(path, "rb").read())
    n = struct.unpack("<Q", buf[:8])[0]
    for k, v in json.loads(buf[8:8 + n]).items():
        if k == "__metadata__" or len(v["shape"]) != 2:
            continue
        assert v["dtype"] == "F32", v["dtype"]
        a, b = (8 + n + o for o in v["data_offsets"])
        x = array.array("f", bytes(buf[a:b]))
        for i in range(len(x)):
            x[i] *= 10.0
        buf[a:b] = x.tobytes()
    open(path, "wb").write(buf)
PY

# train NAME ARCH [flags]: 60 steps of 8 x 32 tokens into $work/run-NAME; stdout/stderr in NAME.out/.err
train() {
    local name=$1 arch=$2
    shift 2
    "$PEFT" train --model "$work/$arch" --data "$work/data" --out "$work/run-$name" --max-steps 60 \
        --per-device-train-batch-size 8 --logging-steps 10 --threads 1 --seed 1 "$@" \
        > "$work/$name.out" 2> "$work/$name.err"
}
val_loss() { sed -n 's/.*validation loss \([0-9.]*\).*/\1/p' "$work/$1.out"; }

# --- the starting point: one step at a negligible learning rate
for arch in gpt2 llama; do
    train "init-$arch" "$arch" --method lora --learning-rate 1e-9 --max-steps 1 \
        || fail "$arch: initial run: $(cat "$work/init-$arch.err")"
    v=$(val_loss "init-$arch")
    # a random network is no better than chance, ln 64 = 4.16
    [ -n "$v" ] && lt 4.0 "$v" || fail "$arch: initial validation loss '$v', want >= 4.0"
    echo "$arch: initial validation loss $v"
done

# --- every method learns. Learning rates found by trial; thresholds leave >= 0.5 of margin over
# what was seen (gpt2 / llama): full 0.25/0.23, lora 0.90/0.57, dora 0.84/0.58, prefix 1.31/1.02,
# parallel 0.43/0.30, io 1.24/0.60 learn the rule (< 2.0, under the unigram's 2.83); ia3 1.92/1.35,
# prompt 2.52/1.30, houlsby 1.92/0.53, bapna 2.33/0.99, pfeiffer 2.36/0.68 at least clearly beat
# chance (< 3.0).
while read -r method lr max; do
    for arch in gpt2 llama; do
        name=$arch-$method
        if ! train "$name" "$arch" --method "$method" --learning-rate "$lr" --num-virtual-tokens 8; then
            fail "$name: train failed: $(cat "$work/$name.err")"
            continue
        fi
        v=$(val_loss "$name")
        [ -n "$v" ] && lt "$v" "$max" || fail "$name: validation loss '$v', want < $max (lr $lr)"
        echo "$name: validation loss $v (< $max)"
    done
done <<'EOF'
full     1e-2 1.0
lora     3e-2 2.0
dora     3e-2 2.0
ia3      1e-1 3.0
prompt   3e-1 3.0
prefix   1e-1 2.0
houlsby  3e-2 3.0
bapna    1e-1 3.0
pfeiffer 1e-1 3.0
parallel 3e-2 2.0
io       3e-2 2.0
EOF

# --- QLoRA: LoRA over an NF4 base (--method qlora quantises by default) learns the rule like LoRA
# does, and so does LoRA over a bf16 base (--bf16). Seen (gpt2 / llama): lora 0.896/0.569,
# qlora 0.923/0.541, lora --bf16 0.917/0.574 (from 4.2 at the start).
for arch in gpt2 llama; do
    for variant in "qlora" "lora-bf16"; do
        name=$arch-$variant
        case $variant in
        qlora) flags=(--method qlora) ;;
        lora-bf16) flags=(--method lora --bf16) ;;
        esac
        if ! train "$name" "$arch" "${flags[@]}" --learning-rate 3e-2; then
            fail "$name: train failed: $(cat "$work/$name.err")"
            continue
        fi
        v=$(val_loss "$name")
        [ -n "$v" ] && lt "$v" 2.0 || fail "$name: validation loss '$v', want < 2.0"
        echo "$name: validation loss $v (< 2.0; lora: $(val_loss "$arch-lora"))"
    done
    # eval --run rebuilds the base as the run trained it (NF4), unless told otherwise
    ev() { "$PEFT" eval --run "$work/run-$arch-qlora" --data "$work/data" --threads 1 "$@" 2>&1 | sed -n 's/.*loss \([0-9.]*\) .*/\1/p'; }
    d=$(ev); q=$(ev --quantize nf4); n=$(ev --quantize none)
    [ -n "$d" ] && [ "$d" = "$q" ] && [ "$d" != "$n" ] \
        || fail "$arch: eval --run of a qlora run: default '$d', --quantize nf4 '$q', --quantize none '$n'"
done
err=$("$PEFT" train --model "$work/gpt2" --data "$work/data" --out "$work/bad" --method full --quantize nf4 \
    --max-steps 2 --threads 1 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "needs an unquantised base" && [ ! -e "$work/bad" ] \
    || fail "full fine-tuning of an NF4 base: rc $rc: $err"

# --- the trainable-parameter line, as peft prints it. LoRA's defaults (r 8): gpt2 on c_attn
# (64 -> 192): 2 layers x 8 x (64 + 192) = 4096 of 108288 + 4096; llama on q_proj (64 -> 64) and
# v_proj (64 -> 32, 2 kv heads): 2 x 8 x (128 + 96) = 3584 of 78144 + 3584.
grep -qx 'trainable params: 4096 || all params: 112384 || trainable%: 3.6446' "$work/gpt2-lora.out" \
    || fail "gpt2 lora parameter line: $(grep trainable "$work/gpt2-lora.out")"
grep -qx 'trainable params: 3584 || all params: 81728 || trainable%: 4.3853' "$work/llama-lora.out" \
    || fail "llama lora parameter line: $(grep trainable "$work/llama-lora.out")"
grep -qE '^trainable params: ([0-9]+) \|\| all params: \1 \|\| trainable%: 100\.0000$' "$work/gpt2-full.out" \
    || fail "full fine-tuning trains everything: $(grep trainable "$work/gpt2-full.out")"

# --- metrics.jsonl: one JSON object per logged step (10, 20, ..., 60), the last with the validation
# loss that was printed
python3 - "$work/run-gpt2-lora/metrics.jsonl" "$(val_loss gpt2-lora)" <<'PY' || fail "metrics.jsonl (above)"
import json, math, sys
lines = open(sys.argv[1]).read().splitlines()
rows = [json.loads(l) for l in lines]
assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60], [r["step"] for r in rows]
for r in rows:
    for k in ("loss", "learning_rate", "grad_norm", "tokens_per_second"):
        assert isinstance(r.get(k), (int, float)) and math.isfinite(r[k]), (k, r)
    assert r["loss"] > 0 and r["grad_norm"] > 0 and r["tokens_per_second"] > 0 and r["learning_rate"] >= 0, r
lrs = [r["learning_rate"] for r in rows]
assert lrs == sorted(lrs, reverse=True) and lrs[0] < 3e-2, lrs  # linear decay from 3e-2
assert "val_loss" in rows[-1] and abs(rows[-1]["val_loss"] - float(sys.argv[2])) < 1e-4, (rows[-1], sys.argv[2])
assert rows[-1]["loss"] < rows[0]["loss"], "the training loss did not fall"
PY
[ -e "$work/run-gpt2-lora/checkpoints.lmdb" ] || fail "no checkpoints.lmdb in the run directory"

# --- a second run into the same --out is refused, and leaves the first run's files alone
before=$(cksum < "$work/run-gpt2-lora/metrics.jsonl")
err=$("$PEFT" train --model "$work/gpt2" --data "$work/data" --out "$work/run-gpt2-lora" --method lora \
    --max-steps 2 --threads 1 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "already holds a run" && [ "$(echo "$err" | wc -l)" -eq 1 ] \
    || fail "second run into the same --out: rc $rc: $err"
[ "$(cksum < "$work/run-gpt2-lora/metrics.jsonl")" = "$before" ] || fail "the refused run changed metrics.jsonl"

# --- bad method flags: one line naming the flag, exit 2, no run directory
bad() {
    local want=$1
    shift
    rm -rf "$work/bad"
    err=$("$PEFT" train --model "$work/gpt2" --data "$work/data" --out "$work/bad" --max-steps 2 --threads 1 "$@" \
        2>&1 >/dev/null); rc=$?
    [ $rc -eq 2 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && echo "$err" | grep -qF -- "$want" \
        || fail "$*: rc $rc, want 2 and one line with '$want': $err"
    [ ! -e "$work/bad" ] || fail "$*: a refused run left $work/bad behind"
}
bad "--method: unknown method 'lorra'" --method lorra
bad "full, lora, qlora, dora, ia3, prompt, prefix, houlsby, bapna, pfeiffer, parallel, io" --method LoRA
bad "--quantize: expected 'nf4' or 'none', got 'nf8'" --method qlora --quantize nf8
bad "--r must be positive, got 0" --method lora --r 0
bad "--r must be positive, got -4" --method dora --r -4
bad "--r expects an integer, got 'eight'" --method lora --r eight
bad "--target-modules 'q_proj,v_proj' matches no module" --method lora --target-modules q_proj,v_proj
bad "(its linear layers: c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)" --method lora --target-modules q_proj,v_proj
bad "--target-modules 'c_attn' matches no module" --method ia3 --target-modules c_attn --model "$work/llama"

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "train.sh: all checks passed"
