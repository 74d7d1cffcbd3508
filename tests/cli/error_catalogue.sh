#!/usr/bin/env bash
# The catalogue of bad inputs (docs/errors.md): for every subcommand, corrupt or mismatched files,
# bad flags and JSON, datasets, adapters, run directories. Each case must end with exactly one line
# on stderr, "peft: ..." containing the case's message, and the documented exit code (2 usage,
# 1 failure); never a crash, a hang or exit 0. Then docs/errors.md must list every case with the
# same exit code and message, and nothing else. Run by ctest (label cli, also under ASan) with
# PEFT_BIN set; python3 only crafts the bad files (/usr/bin/python3 with python3-lmdb for LMDB).
# PEFT_CATALOGUE_DUMP=FILE also writes each case's id and command line there (for editing the doc).
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
FIX=${PEFT_FIXTURES:-tests/fixtures}
DOC=$(cd "$(dirname "$0")/../.." && pwd)/docs/errors.md
PY=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
cases=$work/cases.tsv

# check ID CODE MESSAGE -- command...: one stderr line "peft: ..." containing MESSAGE (a fixed
# string in which W stands for the scratch directory), and exit code CODE
check() {
    local id=$1 code=$2 msg=$3
    shift 4
    local err rc lines
    err=$(timeout 120 "$@" 2>&1 >/dev/null)
    rc=$?
    err=${err//$work/W}
    lines=$(printf '%s' "$err" | grep -c '')
    printf '%s\t%s\t%s\n' "$id" "$code" "$msg" >> "$cases"
    [ -n "${PEFT_CATALOGUE_DUMP:-}" ] && printf '%s\t%s\n' "$id" "$*" >> "$PEFT_CATALOGUE_DUMP"
    if [ "$rc" -ne "$code" ] || [ "$lines" -ne 1 ] || [ "${err#peft: }" = "$err" ] || [[ "$err" != *"$msg"* ]]; then
        echo "FAIL $id: want exit $code and one line containing '$msg'"
        echo "  got exit $rc, $lines line(s): $err"
        failures=$((failures + 1))
    else
        echo "ok $id: exit $rc: $err"
    fi
}

# ---- fixtures: tiny models, datasets, runs and adapters made by peft itself
W=$work
setup() {
    "$PEFT" init-model --arch gpt2 --hidden-size 32 --num-hidden-layers 2 --num-attention-heads 4 --vocab-size 64 \
        --max-position-embeddings 32 --out "$W/base" &&
    "$PEFT" init-model --arch gpt2 --hidden-size 48 --num-hidden-layers 2 --num-attention-heads 4 --vocab-size 64 \
        --max-position-embeddings 32 --out "$W/base48" &&
    "$PEFT" init-model --arch llama --hidden-size 32 --num-hidden-layers 2 --num-attention-heads 4 \
        --intermediate-size 64 --max-position-embeddings 64 --tokenizer "$FIX/tokenizers/llama2_style" --out "$W/llama" &&
    "$PEFT" init-model --arch llama --hidden-size 32 --num-hidden-layers 2 --num-attention-heads 4 \
        --intermediate-size 64 --max-position-embeddings 64 --tokenizer "$FIX/tokenizers/mistral_style" --out "$W/mistral" &&
    python3 - "$W" <<'PY' &&
import json, sys
w = sys.argv[1]
with open(w + "/ids.jsonl", "w") as f:
    for d in range(40):
        f.write(json.dumps({"input_ids": [(3 * d + t) % 60 + 1 for t in range(5 + d % 9)]}) + "\n")
with open(w + "/text.jsonl", "w") as f:
    for d in range(40):
        f.write(json.dumps({"text": "hello world number %d" % d}) + "\n")
PY
    "$PEFT" prep --input "$W/ids.jsonl" --out "$W/data" --seq-len 16 --val-fraction 0.1 --eos-token-id 0 &&
    "$PEFT" prep --tokenizer "$W/llama" --input "$W/text.jsonl" --out "$W/ldata" --seq-len 16 --val-fraction 0.1 &&
    "$PEFT" train --model "$W/base" --data "$W/data" --out "$W/run" --method lora --max-steps 2 --save-steps 1 \
        --per-device-train-batch-size 2 --threads 1 2>/dev/null &&
    "$PEFT" train --model "$W/base" --data "$W/data" --out "$W/runh" --method houlsby --max-steps 1 \
        --per-device-train-batch-size 2 --threads 1 2>/dev/null &&
    "$PEFT" export --run "$W/run" --format peft --out "$W/adapter" &&
    "$PEFT" export --run "$W/runh" --format adapterhub --out "$W/adapterh"
}
setup > "$W/setup.log" || { cat "$W/setup.log"; echo "FAIL: making the fixtures"; exit 1; }
"$PY" -c "import lmdb" 2> /dev/null || { echo "FAIL: /usr/bin/python3 has no lmdb module (apt-get install python3-lmdb)"; exit 1; }
printf '{"input_ids": [1, 2, 3, 4]}\n' > "$W/in.jsonl"
IN=$W/in.jsonl

# copy of the base model with its safetensors rewritten by a python snippet
variant() { # name python-code (gets h: header dict, data: bytes; must set h, data)
    local dir=$W/$1
    cp -r "$W/base" "$dir"
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
# copy of a directory with one JSON file edited by a python snippet on `j`
json_edit() { # src dst file python-code
    cp -r "$1" "$2"
    python3 - "$2/$3" "$4" <<'PY'
import json, sys
path, code = sys.argv[1], sys.argv[2]
j = json.load(open(path))
exec(code)
json.dump(j, open(path, "w"))
PY
}
# copy of a run or dataset with an LMDB file edited by a python snippet on the write txn `t`
lmdb_edit() { # src dst file python-code
    cp -r "$1" "$2"
    "$PY" - "$2/$3" "$4" <<'PY'
import lmdb, sys
env = lmdb.open(sys.argv[1], subdir=False, lock=False)
with env.begin(write=True) as t:
    exec(sys.argv[2])
PY
}
names='sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])'

# ==== model directories (config.json, model.safetensors): eval, inspect
d=$(variant truncated 'data = data[:-10]')
check M01 1 "past the end of the" -- "$PEFT" eval --model "$d" --input "$IN"
d=$W/header_past_end; cp -r "$W/base" "$d"
python3 -c "import struct,sys; f=open(sys.argv[1],'r+b'); f.write(struct.pack('<Q', 10**7))" "$d/model.safetensors"
check M02 1 "header length 10000000 runs past the end of the file" -- "$PEFT" eval --model "$d" --input "$IN"
d=$(variant overlap "ks=$names; h[ks[1]]['data_offsets'][0] -= 4")
check M03 1 "shape of 3072 F32 elements needs 12288 bytes but data_offsets" -- "$PEFT" eval --model "$d" --input "$IN"
d=$(variant gap "ks=$names
for k in ks[1:]: h[k]['data_offsets'] = [o + 4 for o in h[k]['data_offsets']]
data = data + b'\0' * 4")
check M04 1 "gap of 4 bytes between tensor" -- "$PEFT" eval --model "$d" --input "$IN"
d=$(variant unknown_dtype "h['transformer.wte.weight']['dtype'] = 'F13'")
check M05 1 "tensor 'transformer.wte.weight': unknown dtype \"F13\"" -- "$PEFT" eval --model "$d" --input "$IN"
d=$(variant shape_size "h['transformer.ln_f.bias']['shape'] = [31]")
check M06 1 "tensor 'transformer.ln_f.bias': shape of 31 F32 elements needs 124 bytes" -- "$PEFT" eval --model "$d" --input "$IN"
d=$(variant missing_tensor "del h['transformer.h.1.mlp.c_fc.bias']
ks=$names
off = 0
for k in ks:
    b, e = h[k]['data_offsets']; h[k]['data_offsets'] = [off, off + e - b]; off += e - b
data = data[:off]")
check M07 1 "missing tensor 'transformer.h.1.mlp.c_fc.bias'" -- "$PEFT" eval --model "$d" --input "$IN"
d=$W/shape_vs_config; cp -r "$W/base" "$d"
sed -i 's/"n_positions": 32/"n_positions": 48/' "$d/config.json"
check M08 1 "transformer.wpe.weight' has shape [32, 32], config.json implies [48, 32]" -- "$PEFT" eval --model "$d" --input "$IN"
d=$W/wrong_arch; cp -r "$W/base" "$d"
sed -i 's/"model_type": "gpt2"/"model_type": "bert"/' "$d/config.json"
check M09 1 "config.json: model_type 'bert' is not supported" -- "$PEFT" eval --model "$d" --input "$IN"
d=$W/missing_key; cp -r "$W/base" "$d"
sed -i '/"n_embd"/d' "$d/config.json"
check M10 1 "config.json: missing required key 'n_embd'" -- "$PEFT" inspect "$d"
d=$W/bad_json; cp -r "$W/base" "$d"
printf '{"model_type": "gpt2",' > "$d/config.json"
check M11 1 "config.json: invalid JSON near byte" -- "$PEFT" eval --model "$d" --input "$IN"
check M12 1 "W/nonexistent: cannot open: No such file or directory" -- "$PEFT" eval --model "$W/nonexistent" --input "$IN"
mkdir -p "$W/empty" && cp "$W/base/config.json" "$W/empty/"
check M13 1 "no model found: neither model.safetensors.index.json nor model.safetensors exists" -- "$PEFT" inspect "$W/empty"
json_edit "$W/base" "$W/heads" config.json 'j["n_head"] = 5'
check M14 1 "config.json: hidden size 32 is not divisible by 5 heads" -- "$PEFT" eval --model "$W/heads" --input "$IN"
json_edit "$W/base" "$W/huge" config.json 'j["n_embd"] = 3200000'
check M15 1 "config.json: hidden size 3200000 is over the supported maximum 65536" -- "$PEFT" inspect "$W/huge"
cp -r "$W/base" "$W/empty_st"; : > "$W/empty_st/model.safetensors"
check M16 1 "model.safetensors: file is 0 bytes, too short for the 8-byte header length" -- "$PEFT" eval --model "$W/empty_st" --input "$IN"
cp -r "$W/base" "$W/index_escape"
echo '{"weight_map": {"transformer.wte.weight": "../evil.safetensors"}}' > "$W/index_escape/model.safetensors.index.json"
check M17 1 "must be a shard file name in the same directory" -- "$PEFT" eval --model "$W/index_escape" --input "$IN"
cp -r "$W/base" "$W/index_missing"
echo '{"weight_map": {"transformer.wte.weight": "nope.safetensors"}}' > "$W/index_missing/model.safetensors.index.json"
check M18 1 "nope.safetensors: cannot open: No such file or directory (shard named by" -- "$PEFT" eval --model "$W/index_missing" --input "$IN"
cp -r "$W/llama" "$W/badtok"
echo '{"model": {"type": "Unigram", "vocab": []}}' > "$W/badtok/tokenizer.json"
check M19 1 "tokenizer.json: model.type 'Unigram' is not supported (BPE only)" -- "$PEFT" generate --model "$W/badtok" --prompt hi
cp -r "$W/llama" "$W/badtokcfg"; echo '{"bos_token": "<nope>"}' > "$W/badtokcfg/tokenizer_config.json"
check M20 1 "tokenizer_config.json: bos_token '<nope>' is not in the vocabulary" -- "$PEFT" generate --model "$W/badtokcfg" --prompt hi

# ==== flags and --config files (every subcommand)
check F01 2 "unknown command 'trian'" -- "$PEFT" trian
check F02 2 "unknown flag '--modle'" -- "$PEFT" eval --modle "$W/base" --input "$IN"
check F03 2 "train: --max-steps needs a value (N)" -- "$PEFT" train --max-steps
check F04 2 "train: --learning-rate expects a number, got 'nan'" -- "$PEFT" train --model "$W/base" --data "$W/data" --out "$W/r" --learning-rate nan
check F05 2 "--max-new-tokens expects an integer, got 'ten'" -- "$PEFT" generate --model "$W/base" --prompt-ids 1 --max-new-tokens ten
check F06 2 "--gemm" -- "$PEFT" eval --model "$W/base" --input "$IN" --gemm cublas
check F07 2 "init-model: --arch must be gpt2 or llama, got 'bert'" -- "$PEFT" init-model --arch bert --out "$W/x"
printf '{"max_new_tokens": 4, "temprature": 1}\n' > "$W/cfg.json"
check F08 2 "cfg.json: unknown key 'temprature'" -- "$PEFT" generate --model "$W/base" --prompt-ids 1 --config "$W/cfg.json"
printf '{"max_steps": "ten"}\n' > "$W/cfg2.json"
check F09 2 "cfg2.json: key for --max-steps expects an integer, got 'ten'" -- "$PEFT" train --model "$W/base" --data "$W/data" --out "$W/r" --config "$W/cfg2.json"
printf '[1, 2]\n' > "$W/cfg3.json"
check F10 1 "cfg3.json: expected a JSON object at the top level" -- "$PEFT" train --model "$W/base" --data "$W/data" --out "$W/r" --config "$W/cfg3.json"
check F11 1 "nope.json: cannot open: No such file or directory" -- "$PEFT" tokenize --tokenizer "$W/llama" --text hi --config "$W/nope.json"
check F12 2 "inspect: expected one PATH" -- "$PEFT" inspect

# ==== train
T=(--model "$W/base" --data "$W/data" --out "$W/r" --threads 1)
check T01 2 "--method: unknown method 'bogus'" -- "$PEFT" train "${T[@]}" --method bogus
check T02 2 "--r must be positive, got 0" -- "$PEFT" train "${T[@]}" --method lora --r 0
check T03 2 "--target-modules 'q_proj' matches no module of the model (its linear layers: c_attn" -- "$PEFT" train "${T[@]}" --method lora --target-modules q_proj
check T04 2 "--layers-to-transform: layer 7 is out of range (the model has 2 layers)" -- "$PEFT" train "${T[@]}" --method lora --layers-to-transform 7
check T05 2 "--lora-dropout must be in [0, 1), got 1.5" -- "$PEFT" train "${T[@]}" --lora-dropout 1.5
check T06 2 "train: batch size and accumulation steps must be positive" -- "$PEFT" train "${T[@]}" --per-device-train-batch-size 0
check T07 2 "--lr-scheduler-type: unknown schedule 'foo'" -- "$PEFT" train "${T[@]}" --lr-scheduler-type foo
check T08 2 "train: --max-steps must be positive, or -1 to train --num-train-epochs, got -5" -- "$PEFT" train "${T[@]}" --max-steps -5
check T09 2 "train: --warmup-steps must be 0 or positive, got -1" -- "$PEFT" train "${T[@]}" --warmup-steps -1
check T10 2 "train: --adam-beta1 and --adam-beta2 must be in [0, 1)" -- "$PEFT" train "${T[@]}" --adam-beta1 1.5
check T11 2 "train: --save-steps, --eval-steps, --eval-batches and --save-total-limit must be 0 or positive" -- "$PEFT" train "${T[@]}" --save-total-limit -1
check T12 2 "train: 16 tokens per sequence plus the virtual tokens exceed the model's 32 positions" -- "$PEFT" train "${T[@]}" --method prompt --num-virtual-tokens 20
check T13 2 "--non-linearity: expected relu, swish, silu, gelu or gelu_new, got 'tanh'" -- "$PEFT" train "${T[@]}" --method houlsby --non-linearity tanh
check T14 2 "train: W/run already holds a run with 2 checkpoints (--resume to continue it, or a new --out)" -- "$PEFT" train --model "$W/base" --data "$W/data" --out "$W/run" --max-steps 1
check T15 1 "W/nodata/manifest.json: cannot open" -- "$PEFT" train --model "$W/base" --data "$W/nodata" --out "$W/r"
check T16 1 "W/ldata holds token ids up to 1999 but W/base's vocabulary has 64 entries" -- "$PEFT" train --model "$W/base" --data "$W/ldata" --out "$W/r"
check T17 1 "W/ldata was prepared with another tokenizer (fingerprint" -- "$PEFT" train --model "$W/mistral" --data "$W/ldata" --out "$W/r"
check T18 1 "adapter_model.safetensors: key 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight' has shape [8, 32], the model needs [8, 48]" -- "$PEFT" train --model "$W/base48" --data "$W/data" --out "$W/r" --adapter "$W/adapter"
check T19 2 "train: --method dora, but the --adapter W/adapter holds a lora adapter" -- "$PEFT" train "${T[@]}" --method dora --adapter "$W/adapter"
check T20 1 "cannot create directory" -- "$PEFT" train --model "$W/base" --data "$W/data" --out /proc/peft-run --max-steps 1

# ==== distributed training flags and resuming (one process; tests/mpi covers mpirun)
check N01 2 "train: --num-servers must be at least 1" -- "$PEFT" train "${T[@]}" --num-servers 0
check N02 2 "train: --staleness must be 0 (synchronous) or positive" -- "$PEFT" train "${T[@]}" --staleness -1
check N03 2 "train: --comm-timeout must be positive seconds" -- "$PEFT" train "${T[@]}" --comm-timeout 0
check N04 2 "train: --resume: W/r holds no checkpoint" -- "$PEFT" train "${T[@]}" --resume
check N05 1 "run/checkpoints.lmdb step 2 holds other trainable tensors than this run builds" -- "$PEFT" train --model "$W/base48" --data "$W/data" --out "$W/run" --max-steps 3 --resume
check N06 2 "run/checkpoints.lmdb: no checkpoint for step 7; available steps: 1, 2" -- "$PEFT" train --model "$W/base" --data "$W/data" --out "$W/run" --max-steps 3 --resume-from-checkpoint 7

# ==== datasets (prep, and reading them: eval --data, train)
check D01 2 "text.jsonl:1: text input needs a tokenizer" -- "$PEFT" prep --input "$W/text.jsonl" --out "$W/p"
check D02 2 "prep: --seq-len must be at least 2, got 0" -- "$PEFT" prep --input "$W/ids.jsonl" --out "$W/p" --seq-len 0
check D03 2 "prep: --val-fraction must be in [0, 1), got 1.5" -- "$PEFT" prep --input "$W/ids.jsonl" --out "$W/p" --val-fraction 1.5
check D04 2 "W/data: already exists; choose a new --out directory" -- "$PEFT" prep --input "$W/ids.jsonl" --out "$W/data"
printf 'not json\n' > "$W/notjson.jsonl"
check D05 1 "notjson.jsonl:1: not valid JSON" -- "$PEFT" prep --input "$W/notjson.jsonl" --out "$W/p" --eos-token-id 0
printf '\n\n' > "$W/empty.jsonl"
check D06 1 "empty.jsonl: no documents (empty input)" -- "$PEFT" prep --input "$W/empty.jsonl" --out "$W/p" --eos-token-id 0
printf '{"prompt": "a"}\n' > "$W/pc.jsonl"
check D07 1 "pc.jsonl:1: expected strings \"prompt\" and \"completion\"" -- "$PEFT" prep --tokenizer "$W/llama" --input "$W/pc.jsonl" --out "$W/p"
printf '{"messages": [{"role": "user", "content": "hi"}]}\n' > "$W/chat.jsonl"
check D08 2 "the chatml chat template needs the token <|im_start|>" -- "$PEFT" prep --tokenizer "$W/llama" --input "$W/chat.jsonl" --out "$W/p"
printf '{"text": "\xff\xfe"}\n' > "$W/badutf.jsonl"
check D09 1 "badutf.jsonl:1: tokenizer: input is not valid UTF-8 at byte 0 (0xff)" -- "$PEFT" prep --tokenizer "$W/llama" --input "$W/badutf.jsonl" --out "$W/p"
json_edit "$W/data" "$W/dv" manifest.json 'j["version"] = 2'
check D10 1 "manifest.json: dataset version 2, this build reads version 1 (prepare it again)" -- "$PEFT" eval --model "$W/base" --data "$W/dv"
json_edit "$W/data" "$W/dcount" manifest.json 'j["val"]["files"][0]["sequences"] += 1; j["val"]["sequences"] += 1'
check D11 1 "val.lmdb: holds 2 records, manifest.json says 3" -- "$PEFT" eval --model "$W/base" --data "$W/dcount"
cp -r "$W/data" "$W/dshard"; rm "$W/dshard/val.lmdb"
check D12 1 "val.lmdb: missing (manifest.json lists it)" -- "$PEFT" eval --model "$W/base" --data "$W/dshard"
lmdb_edit "$W/data" "$W/drec" val.lmdb 'k, v = next(iter(t.cursor())); t.put(k, v[:-3])'
check D13 1 "val.lmdb: record 0 holds" -- "$PEFT" eval --model "$W/base" --data "$W/drec"
lmdb_edit "$W/data" "$W/drecv" val.lmdb 'k, v = next(iter(t.cursor())); t.put(k, v[:4] + bytes([2]) + v[5:])'
check D14 1 "val.lmdb: record 0 has version 2, this build reads version 1" -- "$PEFT" eval --model "$W/base" --data "$W/drecv"
cp -r "$W/data" "$W/dgarbage"; head -c 20000 /dev/zero | tr '\0' 'x' > "$W/dgarbage/val.lmdb"
check D15 1 "val.lmdb: mdb_env_open" -- "$PEFT" eval --model "$W/base" --data "$W/dgarbage"

# ==== eval and generate inputs
check E01 2 "bad.jsonl:2: text input needs a tokenizer" -- bash -c "printf '{\"input_ids\": [1, 2]}\n{\"text\": \"hello\"}\n' > '$W/bad.jsonl' && '$PEFT' eval --model '$W/base' --input '$W/bad.jsonl'"
printf '{"input_ids": [1, 2, 999]}\n' > "$W/oov.jsonl"
check E02 1 "oov.jsonl:1: input_ids[2] is not a token id in [0, 64)" -- "$PEFT" eval --model "$W/base" --input "$W/oov.jsonl"
python3 -c "import json; print(json.dumps({'input_ids': list(range(1, 60))}))" > "$W/long.jsonl"
check E03 1 "long.jsonl:1: 59 tokens exceed the model's 32 positions" -- "$PEFT" eval --model "$W/base" --input "$W/long.jsonl"
printf '{"input_ids": [1]}\n' > "$W/one.jsonl"
check E04 1 "one.jsonl: nothing to predict (every line has fewer than two tokens)" -- "$PEFT" eval --model "$W/base" --input "$W/one.jsonl"
check E11 1 "W/data: is a directory, not a file" -- "$PEFT" eval --model "$W/base" --input "$W/data"
check K05 1 "W/data: is a directory, not a file" -- "$PEFT" tokenize --tokenizer "$W/llama" --input "$W/data"
check D16 1 "W/data: is a directory, not a file" -- "$PEFT" prep --input "$W/data" --out "$W/p" --eos-token-id 0
check E05 2 "give --model or --run" -- "$PEFT" eval --input "$IN"
check E06 2 "give exactly one of --input and --data" -- "$PEFT" eval --model "$W/base"
check E07 2 "generate: W/base has no tokenizer (tokenizer.json); use --prompt-ids" -- "$PEFT" generate --model "$W/base" --prompt hello
check E08 1 "generate: token id 999 at position 1 is outside the vocabulary [0, 64)" -- "$PEFT" generate --model "$W/base" --prompt-ids 1,999 --max-new-tokens 2
check E09 2 "generate: prompt (1 tokens) plus 100 new tokens exceed the model's n_positions = 32" -- "$PEFT" generate --model "$W/base" --prompt-ids 1 --max-new-tokens 100
check E10 2 "generate: --temperature must be >= 0" -- "$PEFT" generate --model "$W/base" --prompt-ids 1 --temperature -1

# ==== adapters (--adapter of eval, generate, train)
check A01 2 "W/nope: not a directory (--adapter expects an adapter directory)" -- "$PEFT" eval --model "$W/base" --adapter "$W/nope" --input "$IN"
check A02 1 "W/base/adapter_config.json: missing (expected a peft or AdapterHub adapter directory)" -- "$PEFT" eval --model "$W/base" --adapter "$W/base" --input "$IN"
cp -r "$W/adapter" "$W/a_json"; echo '{' > "$W/a_json/adapter_config.json"
check A03 1 "adapter_config.json: invalid JSON near byte" -- "$PEFT" eval --model "$W/base" --adapter "$W/a_json" --input "$IN"
json_edit "$W/adapter" "$W/a_type" adapter_config.json 'j["peft_type"] = "LOHA"'
check A04 1 "adapter_config.json: peft_type 'LOHA' is not supported" -- "$PEFT" eval --model "$W/base" --adapter "$W/a_type" --input "$IN"
cp -r "$W/adapter" "$W/a_nost"; rm "$W/a_nost/adapter_model.safetensors"
check A05 1 "adapter_model.safetensors: missing" -- "$PEFT" eval --model "$W/base" --adapter "$W/a_nost" --input "$IN"
json_edit "$W/adapter" "$W/a_rank" adapter_config.json 'j["r"] = 4'
check A06 1 "has shape [8, 32], the model needs [4, 32]" -- "$PEFT" eval --model "$W/base" --adapter "$W/a_rank" --input "$IN"
check A07 1 "has shape [8, 32], the model needs [8, 48]" -- "$PEFT" eval --model "$W/base48" --adapter "$W/adapter" --input "$IN"
check A08 1 "the model (llama, 2 layers) has no module 'transformer.h.0.attn.c_attn'" -- "$PEFT" generate --model "$W/llama" --adapter "$W/adapter" --prompt hi
check A09 1 "adapter.safetensors: missing key 'model.layers.0.attention_adapters" -- "$PEFT" eval --model "$W/llama" --adapter "$W/adapterh" --input "$IN"
json_edit "$W/adapter" "$W/a_alpha" adapter_config.json 'j["lora_alpha"] = "big"'
check A10 1 "adapter_config.json: key 'lora_alpha' must be a number" -- "$PEFT" eval --model "$W/base" --adapter "$W/a_alpha" --input "$IN"
cp -r "$W/adapter" "$W/a_trunc"; head -c 100 "$W/adapter/adapter_model.safetensors" > "$W/a_trunc/adapter_model.safetensors"
check A11 1 "runs past the end of the file" -- "$PEFT" eval --model "$W/base" --adapter "$W/a_trunc" --input "$IN"
check A12 2 "eval: --adapter goes with --model, not --run" -- "$PEFT" eval --model "$W/base" --adapter "$W/adapter" --run "$W/run" --input "$IN"

# ==== run directories (eval --run, generate --run, export)
check R01 2 "run dir W/nope does not exist or is not a directory" -- "$PEFT" eval --run "$W/nope" --input "$IN"
check R02 2 "W/data: the run dir holds no checkpoints (no checkpoints.lmdb)" -- "$PEFT" export --run "$W/data" --format peft --out "$W/e"
check R03 2 "checkpoints.lmdb: no checkpoint for step 7; available steps: 1, 2" -- "$PEFT" export --run "$W/run" --step 7 --format peft --out "$W/e"
lmdb_edit "$W/run" "$W/rv" checkpoints.lmdb 'for k, v in list(t.cursor()): t.put(k, v[:4] + bytes([2]) + v[5:])'
check R04 1 "checkpoints.lmdb: record latest: format version 2, this build reads version 1" -- "$PEFT" eval --run "$W/rv" --input "$IN"
lmdb_edit "$W/run" "$W/rp" checkpoints.lmdb 'k = b"ckpt/00000000000000000002/params"; t.put(k, t.get(k)[:-4])'
check R05 1 "step 2 record params: holds 8188 bytes, the tensor table needs 2048 floats" -- "$PEFT" eval --run "$W/rp" --input "$IN"
lmdb_edit "$W/run" "$W/rc" checkpoints.lmdb 't.put(b"ckpt/00000000000000000002/config", b"PFTC\x01\x00\x01\x00{not json")'
check R06 1 "checkpoint 2: run configuration is not JSON" -- "$PEFT" generate --run "$W/rc" --prompt-ids 1 --max-new-tokens 1
lmdb_edit "$W/run" "$W/rk" checkpoints.lmdb 't.put(b"ckpt/00000000000000000002/junk", b"PFTC\x01\x00\x01\x00")'
check R07 1 "step 2: unexpected record 'ckpt/00000000000000000002/junk'" -- "$PEFT" export --run "$W/rk" --format peft --out "$W/e"
check R08 1 "W/run: checkpoint 2's tensors do not fit W/base48" -- "$PEFT" eval --run "$W/run" --model "$W/base48" --input "$IN"
mkdir -p "$W/rgarbage" && head -c 5000 /dev/zero | tr '\0' 'x' > "$W/rgarbage/checkpoints.lmdb"
check R09 1 "checkpoints.lmdb: mdb_env_open" -- "$PEFT" eval --run "$W/rgarbage" --input "$IN"

# ==== export
check X01 2 "export: --format must be peft, adapterhub, merged or gguf, got 'onnx'" -- "$PEFT" export --run "$W/run" --format onnx --out "$W/e"
check X02 2 "export: W/adapter already exists; choose a new --out" -- "$PEFT" export --run "$W/run" --format peft --out "$W/adapter"
check X03 1 "export: houlsby adapters are AdapterHub's, not peft's; use --format adapterhub" -- "$PEFT" export --run "$W/runh" --format peft --out "$W/e"
check X04 1 "export: lora is not an AdapterHub bottleneck adapter; use --format peft" -- "$PEFT" export --run "$W/run" --format adapterhub --out "$W/e"
check X05 1 "export: GGUF LoRA adapters are written for llama-family models" -- "$PEFT" export --run "$W/run" --format gguf --out "$W/e"

# ==== tokenize, init-model, inspect, plot
check K01 2 "tokenize: give exactly one of --text and --input" -- "$PEFT" tokenize --tokenizer "$W/llama" --text hi --input "$W/text.jsonl"
check K02 1 "W/base: no tokenizer.json, and no vocab.json + merges.txt" -- "$PEFT" tokenize --tokenizer "$W/base" --text hi
check K03 1 "--text: tokenizer: id 999999 at position 0 is not in the vocabulary (size 2000)" -- "$PEFT" tokenize --tokenizer "$W/llama" --decode --text '{"input_ids": [999999]}'
check K04 1 "--text: input_ids[0] is not a non-negative integer" -- "$PEFT" tokenize --tokenizer "$W/llama" --decode --text '{"input_ids": [1.5]}'
check I01 2 "init-model: hidden size 30 is not divisible by 4 heads" -- "$PEFT" init-model --arch gpt2 --hidden-size 30 --num-attention-heads 4 --out "$W/i"
check I02 2 "init-model: 4 attention heads are not divisible by 3 key/value heads" -- "$PEFT" init-model --arch llama --hidden-size 32 --num-attention-heads 4 --num-key-value-heads 3 --out "$W/i"
check I03 2 "init-model: hidden size 2000000000 is over the supported maximum 65536" -- "$PEFT" init-model --arch gpt2 --hidden-size 2000000000 --out "$W/i"
check I04 2 "init-model: --hidden-size must be positive" -- "$PEFT" init-model --hidden-size -5 --out "$W/i"
check S01 1 "W/nope: no such file or directory" -- "$PEFT" inspect "$W/nope"
check S02 1 "W/data/shard-00000.lmdb: neither a model directory (config.json), a dataset (manifest.json), an adapter (adapter_config.json) nor a run (checkpoints.lmdb)" -- "$PEFT" inspect "$W/data/shard-00000.lmdb"
check P01 1 "W/nope: no such directory" -- "$PEFT" plot "$W/nope"
check P02 1 "W/base/metrics.jsonl: no such file" -- "$PEFT" plot "$W/base"
mkdir -p "$W/badmetrics" && printf 'garbage\n' > "$W/badmetrics/metrics.jsonl"
check P03 1 "metrics.jsonl:1: not valid JSON" -- "$PEFT" plot "$W/badmetrics"

# ==== docs/errors.md lists exactly these cases, with the same exit codes and messages
doc_rows=$work/doc.tsv
# rows "| ID | input | command | exit | `message` |" -> ID, exit, message (backslash-escaped | undone)
sed -n 's/^| \([A-Z][0-9][0-9]\) |.*| \([0-9]\) | `\(.*\)` |$/\1\t\2\t\3/p' "$DOC" | sed 's/\\|/|/g' > "$doc_rows"
ncases=$(grep -c '' "$cases")
if ! diff <(sort "$cases") <(sort "$doc_rows") > "$work/doc.diff"; then
    echo "FAIL: docs/errors.md does not match the catalogue (< test, > doc):"
    cat "$work/doc.diff"
    failures=$((failures + 1))
fi
if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s) in $ncases cases"
    exit 1
fi
echo "all $ncases catalogued bad inputs give their one-line error and exit code; docs/errors.md lists them"
