#!/usr/bin/python3
"""Independent check of `peft export`: apply exported files to the base model with the documented
semantics of peft 0.20 / AdapterHub 1.1.0 / llama.cpp, in float64 PyTorch (Debian's python3-torch;
peft, adapters and llama.cpp are not installed), and print what the C program must agree with.

    check_export.py loss MODEL_DIR INPUT.jsonl ADAPTER_DIR...
        Per adapter one JSON line {"adapter": DIR, "loss": [...], "tokens": [...]}, the mean nll and
        the count of predicted tokens of each input line ({"input_ids": [...]}) for base + adapter:
        peft directories (adapter_config.json + adapter_model.safetensors), AdapterHub directories
        (adapter_config.json + adapter.safetensors) and peft's own io-adapter format. The forward
        pass and the methods are scripts/make_method_fixtures.py's (checked there against the golden
        files peft and AdapterHub wrote). Trained base biases (peft bias="lora_only"/"all") replace
        the model's; dropout is off (inference).

    check_export.py gguf GGUF_FILE PEFT_DIR MODEL_DIR
        Parses the GGUF v3 file (FORMATS.md §6) and checks it against the peft export of the same
        run: metadata, tensor names/shapes/types/offsets, lora_a == peft's lora_A, lora_b ==
        peft's lora_B with convert_hf_to_gguf's LlamaModel.permute (numpy reshape/swapaxes) on
        q_proj/k_proj, alpha * sqrt(r) for rsLoRA. Prints "ok ..." or exits 1 with the reason.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as ref  # noqa: E402
import make_method_fixtures as mf  # noqa: E402


def load_method(arch, W, adapter_dir):
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    if "peft_type" in cfg:
        P, meta = mf.tensors_f64(os.path.join(adapter_dir, "adapter_model.safetensors"))
        if meta != {"format": "pt"}:
            raise SystemExit(f"{adapter_dir}: safetensors metadata {meta}, peft writes {{'format': 'pt'}}")
        # trained base biases: bias="lora_only" saves <module>.base_layer.bias, "all" every bias
        for k in list(P):
            if k.endswith(".bias") and ".lora_" not in k:
                name = k[len("base_model.model."):].replace(".base_layer.", ".")
                if name not in W:
                    raise SystemExit(f"{adapter_dir}: bias key {k} names no model tensor")
                W[name] = P.pop(k)
        cfg = dict(cfg, bias="none", lora_dropout=0.0)
        method, spec = mf.peft_method_from_config(arch, cfg, P)
        mf.check_keys(adapter_dir, P, spec)
        return method
    P, meta = mf.tensors_f64(os.path.join(adapter_dir, "adapter.safetensors"))
    if "config" in cfg:
        if meta is not None:
            raise SystemExit(f"{adapter_dir}: AdapterHub writes no safetensors metadata, found {meta}")
        if cfg.get("version") != "adapters.1.1.0":
            raise SystemExit(f"{adapter_dir}: version {cfg.get('version')}")
        return mf.adapterhub_method_from_config(arch, cfg, P)[0]
    if cfg.get("format") == "peft-io-adapter" and cfg.get("version") == 1:
        d = mf.bottleneck_dim(arch["hidden"], cfg["reduction_factor"])
        mf.check_keys(adapter_dir, P, mf.IOAdapter.spec(arch["hidden"], d))
        return mf.IOAdapter(P, cfg["non_linearity"])
    raise SystemExit(f"{adapter_dir}: unknown adapter format")


def cmd_loss(model_dir, input_path, *adapter_dirs):
    inputs = ref.read_jsonl(input_path)
    for adapter_dir in adapter_dirs:
        arch, W = ref.load_model_dir(model_dir)
        method = load_method(arch, W, adapter_dir)
        nlls, losses = mf.run_golden(arch, W, inputs, method)
        print(json.dumps({"adapter": adapter_dir, "loss": losses, "tokens": [len(n) for n in nlls]}))


def read_gguf(path):
    b = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = b[pos:pos + n].decode()
        pos += n
        return s

    if b[:4] != b"GGUF":
        raise SystemExit(f"{path}: magic {b[:4]!r}")
    pos = 4
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    if version != 3:
        raise SystemExit(f"{path}: version {version}")
    kv = {}
    for _ in range(n_kv):
        k, t = string(), take("I")
        if t == 8:
            kv[k] = string()
        elif t == 6:
            kv[k] = take("f")
        else:
            raise SystemExit(f"{path}: key {k} has type {t}; the adapter writer uses string (8) and float32 (6)")
    infos = []
    for _ in range(n_tensors):
        name, nd = string(), take("I")
        ne = [take("Q") for _ in range(nd)]
        infos.append((name, ne, take("I"), take("Q")))
    data = (pos + 31) // 32 * 32
    tensors = {}
    for name, ne, typ, off in infos:
        if typ != 0 or off % 32:
            raise SystemExit(f"{path}: {name} type {typ} offset {off}")
        n = int(np.prod(ne))
        end = data + off + 4 * n
        if end > len(b):
            raise SystemExit(f"{path}: {name} runs past the end of the file")
        tensors[name] = np.frombuffer(b, dtype="<f4", count=n, offset=data + off).reshape(list(reversed(ne)))
    return kv, tensors


GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}


def llama_permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def cmd_gguf(gguf_path, peft_dir, model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        mcfg = json.load(f)
    with open(os.path.join(peft_dir, "adapter_config.json")) as f:
        pcfg = json.load(f)
    P, _ = ref.st_read(os.path.join(peft_dir, "adapter_model.safetensors"))
    kv, T = read_gguf(gguf_path)
    alpha = pcfg["lora_alpha"] * (math.sqrt(pcfg["r"]) if pcfg["use_rslora"] else 1.0)
    want_kv = {"general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora",
               "adapter.lora.alpha": float(np.float32(alpha))}
    if kv != want_kv:
        raise SystemExit(f"{gguf_path}: metadata {kv}, want {want_kv}")
    n_head, n_kv = mcfg["num_attention_heads"], mcfg.get("num_key_value_heads", mcfg["num_attention_heads"])
    want = {}
    for k, v in P.items():
        mod, _, ab = k[len("base_model.model."):].rpartition(".lora_")
        layer, rest = mod[len("model.layers."):].split(".", 1)
        base = f"blk.{layer}.{GGUF_NAMES[rest]}.weight"
        if ab == "A.weight":
            want[base + ".lora_a"] = v
        else:
            if rest == "self_attn.q_proj":
                v = llama_permute(v, n_head, n_head)
            elif rest == "self_attn.k_proj":
                v = llama_permute(v, n_head, n_kv)
            want[base + ".lora_b"] = v
    if set(want) != set(T):
        raise SystemExit(f"{gguf_path}: tensors {sorted(T)[:4]}..., want {sorted(want)[:4]}...")
    for k, v in want.items():
        if T[k].shape != v.shape or not np.array_equal(T[k], v):
            raise SystemExit(f"{gguf_path}: {k} differs from the permuted peft tensor")
    print(f"ok {len(T)} tensors, alpha {kv['adapter.lora.alpha']}")


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "loss":
        torch.set_num_threads(1)
        cmd_loss(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "gguf":
        cmd_gguf(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
