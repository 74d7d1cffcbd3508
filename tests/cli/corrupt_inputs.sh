#!/usr/bin/env bash
# Corrupt and mismatched inputs: each must end with exactly one line on stderr, "peft: ...",
# naming the file (or flag) and the problem, and the documented exit code (1 failure, 2 usage);
# never a crash. Run by ctest (label cli) with PEFT_BIN set; python3 only crafts the bad files.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# expect CODE PATTERN -- command...: the exit code, and an extended regex the one stderr line must match
expect() {
    local code=$1 pattern=$2
    shift 3
    local err out rc
    err=$("$@" 2>&1 >/dev/null)
    rc=$?
    local lines
    lines=$(printf '%s' "$err" | grep -c '')
    if [ "$rc" -ne "$code" ] || [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -Eq "^peft: .*($pattern)"; then
        echo "FAIL: $*"
        echo "  want exit $code and one line matching /$pattern/"
        echo "  got exit $rc, $lines line(s): $err"
        failures=$((failures + 1))
    else
        echo "ok: exit $rc: $err"
    fi
}

base=$work/base
"$PEFT" init-model --arch gpt2 --hidden-size 32 --num-hidden-layers 2 --num-attention-heads 4 \
    --vocab-size 64 --max-position-embeddings 32 --out "$base" >/dev/null || { echo "init-model failed"; exit 1; }
printf '{"input_ids": [1, 2, 3, 4]}\n' > "$work/in.jsonl"

# copy of the base model with its safetensors rewritten by a python snippet
variant() { # name python-code (gets h: header dict, data: bytes; must set h, data)
    local dir=$work/$1
    cp -r "$base" "$dir"
    python3 - "$dir/model.safetensors" "$2" <<'PY'
import json, struct, sys
path, code = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
exec(code)
hb = json.dumps(h, separators=(",", ":")).encode()
hb += b" " * (-len(hb) % 8)
open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
PY
    echo "$dir"
}
names='sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])'

d=$(variant truncated 'data = data[:-10]')
expect 1 "truncated|incomplete|length|size" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$work/header_past_end; cp -r "$base" "$d"
python3 -c "import struct,sys; f=open(sys.argv[1],'r+b'); f.write(struct.pack('<Q', 10**7))" "$d/model.safetensors"
expect 1 "header" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$(variant overlap "ks=$names; h[ks[1]]['data_offsets'][0] -= 4")
expect 1 "overlap|gap|offset|size" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$(variant gap "ks=$names
for k in ks[1:]: h[k]['data_offsets'] = [o + 4 for o in h[k]['data_offsets']]
data = data + b'\0' * 4")
expect 1 "gap|offset|hole" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$(variant unknown_dtype "h['transformer.wte.weight']['dtype'] = 'F13'")
expect 1 "F13" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$(variant shape_size "h['transformer.ln_f.bias']['shape'] = [31]")
expect 1 "ln_f.bias" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$(variant missing_tensor "del h['transformer.h.1.mlp.c_fc.bias']
ks=$names
off = 0
for k in ks:
    b, e = h[k]['data_offsets']; h[k]['data_offsets'] = [off, off + e - b]; off += e - b
data = data[:off]")
expect 1 "missing tensor 'transformer.h.1.mlp.c_fc.bias'" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$work/shape_vs_config; cp -r "$base" "$d"
sed -i 's/"n_positions": 32/"n_positions": 48/' "$d/config.json"
expect 1 "transformer.wpe.weight' has shape \[32, 32\], config.json implies \[48, 32\]" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$work/wrong_arch; cp -r "$base" "$d"
sed -i 's/"model_type": "gpt2"/"model_type": "bert"/' "$d/config.json"
expect 1 "config.json: model_type 'bert' is not supported" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

d=$work/missing_key; cp -r "$base" "$d"
sed -i '/"n_embd"/d' "$d/config.json"
expect 1 "config.json: missing required key 'n_embd'" -- "$PEFT" inspect "$d"

d=$work/bad_json; cp -r "$base" "$d"
printf '{"model_type": "gpt2",' > "$d/config.json"
expect 1 "config.json: invalid JSON" -- "$PEFT" eval --model "$d" --input "$work/in.jsonl"

expect 1 "nonexistent" -- "$PEFT" eval --model "$work/nonexistent" --input "$work/in.jsonl"
expect 1 "no model found" -- bash -c "mkdir -p '$work/empty' && cp '$base/config.json' '$work/empty/' && '$PEFT' inspect '$work/empty'"

printf '{"input_ids": [1, 2]}\n{"text": "hello"}\n' > "$work/bad.jsonl"
expect 2 "bad.jsonl:2: text input needs a tokenizer" -- "$PEFT" eval --model "$base" --input "$work/bad.jsonl"
printf '{"input_ids": [1, 2, 999]}\n' > "$work/oov.jsonl"
expect 1 "oov.jsonl:1: input_ids\[2\] is not a token id in \[0, 64\)" -- "$PEFT" eval --model "$base" --input "$work/oov.jsonl"

expect 2 "unknown flag '--modle'" -- "$PEFT" eval --modle "$base" --input "$work/in.jsonl"
expect 2 "give --model or --run" -- "$PEFT" eval --input "$work/in.jsonl"
expect 2 "give exactly one of --input and --data" -- "$PEFT" eval --model "$base"
expect 2 "--max-new-tokens expects an integer, got 'ten'" -- "$PEFT" generate --model "$base" --prompt-ids 1 --max-new-tokens ten
expect 2 "--gemm must be openblas or onednn|--gemm" -- "$PEFT" eval --model "$base" --input "$work/in.jsonl" --gemm cublas
expect 2 "unknown command 'trian'" -- "$PEFT" trian
expect 2 "--arch must be gpt2 or llama" -- "$PEFT" init-model --arch bert --out "$work/x"
printf '{"max_new_tokens": 4, "temprature": 1}\n' > "$work/cfg.json"
expect 2 "cfg.json: unknown key 'temprature'" -- "$PEFT" generate --model "$base" --prompt-ids 1 --config "$work/cfg.json"

if [ "$failures" -ne 0 ]; then
    echo "$failures case(s) failed"
    exit 1
fi
echo "all corrupt-input cases give their one-line error"
