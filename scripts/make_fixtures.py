#!/usr/bin/python3
"""Reference fixtures (ground truth) for the C tests of `peft`.

What this script does
---------------------
1. Implements, in plain float64 PyTorch, the forward pass of Hugging Face transformers' (4.47)
   ``GPT2LMHeadModel`` and ``LlamaForCausalLM`` (also model types ``mistral`` and ``qwen2``),
   plus peft's prompt tuning (virtual token embeddings prepended to the inputs) and prefix tuning
   (per-layer key/value prefixes), with the loss of HF's causal LM head.
2. Checks that reference against the golden files written by the real libraries
   (``--golden``, default ``../shared/golden``): the base models ``gpt2-tiny`` and ``llama-tiny``
   and the peft adapters ``llama-tiny-prompt``, ``llama-tiny-prefix`` and ``gpt2-tiny-prefix``.
   Every check prints one summary line with its maximum difference; any failure exits non-zero
   before a single fixture is written.
3. Writes one directory per case under ``--out`` (default ``tests/fixtures/ref``)::

       <case>/config.json          as transformers' save_pretrained writes it
       <case>/model.safetensors    HF key names, F32, metadata {"format": "pt"}
       <case>/expected.safetensors inputs, targets, adapter tensors, logits, loss and the
                                   gradient of the loss w.r.t. every input/weight (see README.md)

   plus ``README.md`` describing the format, the cases and the tolerances to use.

Everything is computed in float64 from the float32-rounded parameters that are written to disk, so a
C implementation reading the F32 files computes the same function; results are cast to F32 on write
(``loss_f64`` keeps the float64 loss). Seeds are fixed and torch runs single-threaded, so two runs
produce byte-identical files.

Run from the repository root:  /usr/bin/python3 scripts/make_fixtures.py
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)  # deterministic reductions: identical files on every run

IGNORE_INDEX = -100  # HF's ignore_index for labels

# --------------------------------------------------------------------------------------------------
# safetensors (FORMATS.md section 1)
# --------------------------------------------------------------------------------------------------

# The Rust `Dtype` enum in declaration order (= increasing alignment). The writer sorts tensors by
# this order descending, then by name (FORMATS.md 1.3).
ST_DTYPE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                  "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                  "C64", "F64", "I64", "U64"]
ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
            "I8": "i1", "U8": "u1", "BOOL": "?"}


def st_write(path, tensors, metadata=None):
    """Write {name: (dtype string, np.ndarray)} as safetensors the way the reference writer does:
    order by dtype descending then name, contiguous offsets, compact JSON with __metadata__ first,
    header padded with spaces to a multiple of 8, little-endian row-major data, no trailing bytes."""
    names = sorted(tensors, key=lambda n: (-ST_DTYPE_ORDER.index(tensors[n][0]), n))
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in names:
        dtype, array = tensors[name]
        data = np.ascontiguousarray(array, dtype=ST_NUMPY[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": [int(d) for d in array.shape],
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def st_read(path):
    """Read a safetensors file into ({name: np.ndarray}, metadata), validating the layout rules of
    FORMATS.md 1.2 (entries tile the buffer exactly, sizes match shapes, no trailing bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if n > 100_000_000 or raw[8:9] != b"{":
        raise ValueError(f"{path}: bad safetensors header")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    buf = raw[8 + n:]
    tensors, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, stop = info["data_offsets"]
        dt = np.dtype(ST_NUMPY[info["dtype"]])
        count = int(np.prod(info["shape"], dtype=np.int64))
        if begin != end or stop - begin != count * dt.itemsize:
            raise ValueError(f"{path}: tensor {name} does not tile the buffer")
        tensors[name] = np.frombuffer(buf[begin:stop], dtype=dt).reshape(info["shape"]).copy()
        end = stop
    if end != len(buf):
        raise ValueError(f"{path}: {len(buf) - end} trailing bytes")
    return tensors, metadata


# --------------------------------------------------------------------------------------------------
# Model description (normalised from an HF config.json)
# --------------------------------------------------------------------------------------------------

def arch_from_config(cfg):
    """The few numbers the reference forward needs, read the way transformers reads them.
    (Mistral's sliding window is not implemented: it is irrelevant below 4096 tokens.)"""
    mt = cfg["model_type"]
    if mt == "gpt2":
        c = cfg["n_embd"]
        return dict(kind="gpt2", layers=cfg["n_layer"], hidden=c, heads=cfg["n_head"],
                    kv_heads=cfg["n_head"], head_dim=c // cfg["n_head"], vocab=cfg["vocab_size"],
                    ffn=cfg.get("n_inner") or 4 * c, eps=cfg["layer_norm_epsilon"],
                    max_pos=cfg["n_positions"],
                    act=cfg["activation_function"], tied=cfg.get("tie_word_embeddings", True))
    if mt in ("llama", "mistral", "qwen2"):
        c, h = cfg["hidden_size"], cfg["num_attention_heads"]
        # Only Llama (and Mistral) read "head_dim" from the config in 4.47; Qwen2 uses hidden/heads.
        head_dim = cfg.get("head_dim") if mt != "qwen2" else None
        attn_bias = bool(cfg.get("attention_bias", False))
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError("only hidden_act silu is implemented")
        return dict(kind="llama", model_type=mt, layers=cfg["num_hidden_layers"], hidden=c, heads=h,
                    kv_heads=cfg.get("num_key_value_heads") or h, head_dim=head_dim or c // h,
                    vocab=cfg["vocab_size"], ffn=cfg["intermediate_size"], eps=cfg["rms_norm_eps"],
                    max_pos=cfg["max_position_embeddings"],
                    tied=cfg.get("tie_word_embeddings", False),  # False in all three configs
                    qkv_bias=attn_bias or mt == "qwen2", o_bias=attn_bias and mt != "qwen2",
                    mlp_bias=bool(cfg.get("mlp_bias", False)) and mt == "llama",
                    rope_theta=cfg.get("rope_theta", 10000.0), rope_scaling=cfg.get("rope_scaling"))
    raise ValueError(f"unsupported model_type {mt}")


def kv_dim(arch):
    """Width of one layer's keys (= values): what peft calls token_dim for prefix tuning."""
    return arch["kv_heads"] * arch["head_dim"]


def weight_shapes(arch):
    """{HF key: shape} of every weight in model.safetensors, in the HF module order."""
    c, L, V, F = arch["hidden"], arch["layers"], arch["vocab"], arch["ffn"]
    shapes = {}
    if arch["kind"] == "gpt2":
        shapes["transformer.wte.weight"] = [V, c]
        shapes["transformer.wpe.weight"] = [arch["max_pos"], c]
        for i in range(L):
            p = f"transformer.h.{i}."
            shapes.update({p + "ln_1.weight": [c], p + "ln_1.bias": [c],
                           p + "attn.c_attn.weight": [c, 3 * c], p + "attn.c_attn.bias": [3 * c],
                           p + "attn.c_proj.weight": [c, c], p + "attn.c_proj.bias": [c],
                           p + "ln_2.weight": [c], p + "ln_2.bias": [c],
                           p + "mlp.c_fc.weight": [c, F], p + "mlp.c_fc.bias": [F],
                           p + "mlp.c_proj.weight": [F, c], p + "mlp.c_proj.bias": [c]})
        shapes["transformer.ln_f.weight"] = [c]
        shapes["transformer.ln_f.bias"] = [c]
        if not arch["tied"]:
            shapes["lm_head.weight"] = [V, c]
        return shapes
    qd, kd = arch["heads"] * arch["head_dim"], kv_dim(arch)
    shapes["model.embed_tokens.weight"] = [V, c]
    for i in range(L):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = [c]
        for name, out in (("q_proj", qd), ("k_proj", kd), ("v_proj", kd)):
            shapes[p + f"self_attn.{name}.weight"] = [out, c]
            if arch["qkv_bias"]:
                shapes[p + f"self_attn.{name}.bias"] = [out]
        shapes[p + "self_attn.o_proj.weight"] = [c, qd]
        if arch["o_bias"]:
            shapes[p + "self_attn.o_proj.bias"] = [c]
        shapes[p + "post_attention_layernorm.weight"] = [c]
        for name, shape in (("gate_proj", [F, c]), ("up_proj", [F, c]), ("down_proj", [c, F])):
            shapes[p + f"mlp.{name}.weight"] = shape
            if arch["mlp_bias"]:
                shapes[p + f"mlp.{name}.bias"] = [shape[0]]
    shapes["model.norm.weight"] = [c]
    if not arch["tied"]:
        shapes["lm_head.weight"] = [V, c]
    return shapes


# --------------------------------------------------------------------------------------------------
# Reference forward pass (float64)
# --------------------------------------------------------------------------------------------------

def gelu_new(x):
    """transformers' NewGELUActivation (tanh approximation), same expression order."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


GPT2_ACTS = {"gelu_new": gelu_new,  # tanh approximation
             "gelu": torch.nn.functional.gelu,  # exact erf form
             "gelu_pytorch_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
             "relu": torch.relu}


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance, as torch.nn.LayerNorm
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    """LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight (all in float64 here)."""
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_inv_freq(arch):
    """inv_freq of HF's rotary embedding, with rope_scaling applied (default or llama3)."""
    hd, theta = arch["head_dim"], arch["rope_theta"]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = arch["rope_scaling"]
    rope_type = None if rs is None else rs.get("rope_type", rs.get("type"))
    if rope_type in (None, "default"):
        return inv_freq
    if rope_type != "llama3":
        raise ValueError(f"rope_scaling type {rope_type} not implemented")
    return llama3_inv_freq(inv_freq, rs)


def llama3_inv_freq(inv_freq, rs):
    """transformers' _compute_llama3_parameters (attention_factor is 1.0 for this type)."""
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    # Wavelength thresholds (in tokens) of the two band edges.
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    # Wavelength of every rotary frequency.
    wavelen = 2 * math.pi / inv_freq
    # Low-frequency band (wavelength longer than low_freq_wavelen): slow down by `factor`;
    # everything else is kept for now (the high-frequency band stays unscaled).
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # Medium band: interpolate smoothly between the scaled and unscaled frequency, with the weight
    # going linearly in old_context_len / wavelen from low_freq_factor (0) to high_freq_factor (1).
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    # A frequency is "medium" when high_freq_wavelen <= wavelen <= low_freq_wavelen (both edges
    # inclusive, written as the negation of the strict comparisons, as transformers does).
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def llama3_bands(arch):
    """Which llama3 band each rotary frequency lands in: 'high' (unscaled), 'medium', 'low'."""
    rs = arch["rope_scaling"]
    hd, theta = arch["head_dim"], arch["rope_theta"]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    wavelen = 2 * math.pi / inv
    lo = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    hi = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    return ["high" if w < hi else "low" if w > lo else "medium" for w in wavelen.tolist()]


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def causal_attention(q, k, v, n_prefix):
    """softmax(q k^T / sqrt(hd)) v over [B, H, S, hd] queries and [B, H, n_prefix + S, hd] keys.
    Query i sees every prefix entry and the real keys 0..i."""
    s, total = q.shape[2], k.shape[2]
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    qi = torch.arange(s).unsqueeze(1)
    kj = torch.arange(total).unsqueeze(0)
    allowed = (kj < n_prefix) | (kj - n_prefix <= qi)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def split_prefix(arch, prefix, layer, batch):
    """Layer `layer`'s (key, value) prefixes, [B, kv_heads, n_prefix, head_dim] each, from peft's
    prompt_embeddings row layout [K_0|V_0|K_1|V_1|...] (each block kv_heads x head_dim)."""
    n = prefix.shape[0]
    blocks = prefix.view(n, 2 * arch["layers"], arch["kv_heads"], arch["head_dim"])
    k = blocks[:, 2 * layer].permute(1, 0, 2).unsqueeze(0).expand(batch, -1, -1, -1)
    v = blocks[:, 2 * layer + 1].permute(1, 0, 2).unsqueeze(0).expand(batch, -1, -1, -1)
    return k, v


def forward(arch, W, input_ids, virtual=None, prefix=None, prefix_position_offset=True):
    """Logits [B, n_virtual + T, V] of the causal LM, and the word-embedding lookup of the real
    tokens (HF's inputs_embeds, retained so its gradient can be read after backward).

    virtual: [n_virtual, C] prompt-tuning embeddings prepended to the inputs.
    prefix:  [n_prefix, L*2*kv_dim] prefix-tuning keys/values prepended in every layer.
    prefix_position_offset: real positions start at n_prefix (HF derives them from the cache
    length); False starts them at 0 (only used to verify which convention the golden files use).
    """
    gpt2 = arch["kind"] == "gpt2"
    emb_key = "transformer.wte.weight" if gpt2 else "model.embed_tokens.weight"
    batch = input_ids.shape[0]
    inputs_embeds = W[emb_key][input_ids]
    if inputs_embeds.requires_grad:
        inputs_embeds.retain_grad()
    x = inputs_embeds
    if virtual is not None:
        x = torch.cat([virtual.unsqueeze(0).expand(batch, -1, -1), x], dim=1)
    s = x.shape[1]
    n_prefix = 0 if prefix is None else prefix.shape[0]
    start = n_prefix if prefix_position_offset else 0
    positions = torch.arange(start, start + s)
    H, KV, hd = arch["heads"], arch["kv_heads"], arch["head_dim"]

    def heads(t, n):  # [B, S, n*hd] -> [B, n, S, hd]
        return t.view(batch, s, n, hd).transpose(1, 2)

    def merge(t):  # [B, n, S, hd] -> [B, S, n*hd]
        return t.transpose(1, 2).reshape(batch, s, -1)

    if gpt2:
        act = GPT2_ACTS[arch["act"]]
        x = x + W["transformer.wpe.weight"][positions]
        for i in range(arch["layers"]):
            p = f"transformer.h.{i}."
            h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], arch["eps"])
            qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: x @ W + b
            q, k, v = (heads(t, H) for t in qkv.split(arch["hidden"], dim=-1))
            if prefix is not None:
                pk, pv = split_prefix(arch, prefix, i, batch)
                k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
            a = merge(causal_attention(q, k, v, n_prefix))
            x = x + a @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
            h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], arch["eps"])
            m = act(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
            x = x + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
        x = layer_norm(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], arch["eps"])
        head = W.get("lm_head.weight", W[emb_key])
        return x @ head.t(), inputs_embeds

    def linear(t, key):  # nn.Linear: t @ W^T (+ b)
        y = t @ W[key + ".weight"].t()
        return y + W[key + ".bias"] if key + ".bias" in W else y

    freqs = positions.to(torch.float64).unsqueeze(1) * rope_inv_freq(arch).unsqueeze(0)
    emb = torch.cat([freqs, freqs], dim=-1)  # HF: cat(freqs, freqs), rotate_half convention
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    for i in range(arch["layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], arch["eps"])
        q = heads(linear(h, p + "self_attn.q_proj"), H)
        k = heads(linear(h, p + "self_attn.k_proj"), KV)
        v = heads(linear(h, p + "self_attn.v_proj"), KV)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if prefix is not None:  # prefix keys enter the cache as stored: no RoPE on them
            pk, pv = split_prefix(arch, prefix, i, batch)
            k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        k = k.repeat_interleave(H // KV, dim=1)  # repeat_kv: query head j uses kv head j // (H/KV)
        v = v.repeat_interleave(H // KV, dim=1)
        x = x + linear(merge(causal_attention(q, k, v, n_prefix)), p + "self_attn.o_proj")
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], arch["eps"])
        g = linear(h, p + "mlp.gate_proj")
        m = torch.nn.functional.silu(g) * linear(h, p + "mlp.up_proj")
        x = x + linear(m, p + "mlp.down_proj")
    x = rms_norm(x, W["model.norm.weight"], arch["eps"])
    head = W.get("lm_head.weight", W[emb_key])
    return x @ head.t(), inputs_embeds


def token_nll(logits, targets):
    """Per-position negative log-likelihood [B, S] (0 where target < 0) and the mean over the
    positions with target >= 0 (HF's CrossEntropyLoss with ignore_index=-100, reduction mean)."""
    logp = torch.log_softmax(logits, dim=-1)
    valid = targets >= 0
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
    return nll, nll.sum() / valid.sum()


def shift_labels(labels):
    """HF causal-LM shift: position t predicts labels[t + 1]; the last position predicts nothing."""
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


# --------------------------------------------------------------------------------------------------
# Golden checks (against files written by transformers 4.47 / peft 0.20)
# --------------------------------------------------------------------------------------------------

def load_model_dir(path):
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    arch = arch_from_config(cfg)
    tensors, meta = st_read(os.path.join(path, "model.safetensors"))
    if meta is None or meta.get("format") != "pt":
        raise ValueError(f"{path}: metadata {meta}")
    W = {k: torch.from_numpy(v).to(torch.float64) for k, v in tensors.items()}
    return arch, W


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class GoldenFailure(Exception):
    pass


def compare(got_nll, got_loss, expected, rtol=1e-9):
    """(ok, max relative difference, note) of the per-position nll and loss over all inputs."""
    worst = 0.0
    for g_nll, g_loss, exp in zip(got_nll, got_loss, expected):
        if len(g_nll) != exp["tokens"] or len(exp["nll"]) != exp["tokens"]:
            return False, float("inf"), f"token count {len(g_nll)} != {exp['tokens']}"
        e = np.array(exp["nll"] + [exp["loss"]])
        g = np.array(list(g_nll) + [g_loss])
        worst = max(worst, float(np.max(np.abs(g - e) / np.abs(e))))
    return worst <= rtol, worst, ""


def run_golden(arch, W, inputs, virtual=None, prefix=None, prefix_position_offset=True,
               first_real_from_virtual=True):
    """nll list and loss per input, as the golden expected.jsonl lists them.
    first_real_from_virtual: with prompt tuning, count the prediction of the first real token
    from the last virtual position (what HF's shifted, -100-extended labels do)."""
    nlls, losses = [], []
    n_virtual = 0 if virtual is None else virtual.shape[0]
    for item in inputs:
        ids = torch.tensor([item["input_ids"]])
        labels = torch.cat([torch.full((1, n_virtual), IGNORE_INDEX), ids], dim=1)
        targets = shift_labels(labels)
        if n_virtual and not first_real_from_virtual:
            targets[:, n_virtual - 1] = IGNORE_INDEX
        with torch.no_grad():
            logits, _ = forward(arch, W, ids, virtual, prefix, prefix_position_offset)
            nll, loss = token_nll(logits, targets)
        nlls.append(nll[0][targets[0] >= 0].tolist())
        losses.append(loss.item())
    return nlls, losses


def golden_checks(golden_dir):
    """Run every golden check, printing one summary line each; return the conventions the golden
    files confirmed. Raises GoldenFailure if any check fails."""
    inputs = read_jsonl(os.path.join(golden_dir, "inputs.jsonl"))
    failures = []

    def report(name, ok, worst, note=""):
        status = "OK  " if ok else "FAIL"
        print(f"[golden] {status} {name:48s} max rel diff {worst:.3e} {note}".rstrip())
        if not ok:
            failures.append(name)

    def probe(name, model, expected, variants):
        """Try each convention {value: (label, run_golden kwargs)}; exactly one must match."""
        results = {}
        for value, (label, kwargs) in variants.items():
            results[value] = compare(*run_golden(*model, inputs, **kwargs), expected)
            ok, worst, note = results[value]
            print(f"[golden]      {name}, {label}: {'matches' if ok else 'no match'} "
                  f"({worst:.3e}{', ' + note if note else ''})")
        matched = [v for v, r in results.items() if r[0]]
        worst = results[matched[0]][1] if len(matched) == 1 else min(r[1] for r in results.values())
        report(name, len(matched) == 1, worst)
        return matched[0] if len(matched) == 1 else None

    def adapter(name):
        d = os.path.join(golden_dir, "peft", name)
        with open(os.path.join(d, "adapter_config.json")) as f:
            cfg = json.load(f)
        tensors, _ = st_read(os.path.join(d, "adapter_model.safetensors"))
        emb = torch.from_numpy(tensors["prompt_embeddings"]).to(torch.float64)
        return cfg, emb, read_jsonl(os.path.join(d, "expected.jsonl"))

    models = {}
    for model in ("gpt2-tiny", "llama-tiny"):
        arch, W = load_model_dir(os.path.join(golden_dir, model))
        models[model] = (arch, W)
        expected = read_jsonl(os.path.join(golden_dir, model, "expected.jsonl"))
        report(f"{model} base model", *compare(*run_golden(arch, W, inputs), expected))

    # Prompt tuning: does the loss count the first real token, predicted from the last virtual one?
    cfg, emb, expected = adapter("llama-tiny-prompt")
    assert cfg["peft_type"] == "PROMPT_TUNING" and emb.shape[0] == cfg["num_virtual_tokens"]
    first_real = probe("llama-tiny-prompt", models["llama-tiny"], expected, {
        True: ("loss incl. first real token from last virtual",
               dict(virtual=emb, first_real_from_virtual=True)),
        False: ("loss excl. first real token from last virtual",
                dict(virtual=emb, first_real_from_virtual=False))})
    found = {"prompt_first_real_from_virtual": first_real}

    # Prefix tuning: do the real tokens' positions start at n_prefix or at 0?
    offsets = set()
    for model in ("llama-tiny", "gpt2-tiny"):
        arch = models[model][0]
        cfg, emb, expected = adapter(f"{model}-prefix")
        assert cfg["peft_type"] == "PREFIX_TUNING" and cfg["token_dim"] == kv_dim(arch)
        assert list(emb.shape) == [cfg["num_virtual_tokens"], arch["layers"] * 2 * kv_dim(arch)]
        offsets.add(probe(f"{model}-prefix", models[model], expected, {
            True: ("real positions n_prefix..n_prefix+T-1", dict(prefix=emb)),
            False: ("real positions 0..T-1", dict(prefix=emb, prefix_position_offset=False))}))
    found["prefix_position_offset"] = offsets.pop() if len(offsets) == 1 else None
    if found["prefix_position_offset"] is None and not failures:
        failures.append("prefix position conventions disagree between models")

    if failures:
        raise GoldenFailure(", ".join(failures))
    return found


# --------------------------------------------------------------------------------------------------
# Fixture cases
# --------------------------------------------------------------------------------------------------

TINY = dict(hidden=32, heads=4, layers=2, vocab=96, max_pos=64)
BATCH, SEQ = 2, 7
TRANSFORMERS_VERSION = "4.47.0.dev0"  # what the golden files carry


def gpt2_config():
    """GPT2Config(...).to_json_string(use_diff=True) for the tiny model (golden key set)."""
    return {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0, "bos_token_id": TINY["vocab"] - 1, "embd_pdrop": 0.0,
        "eos_token_id": TINY["vocab"] - 1, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2", "n_embd": TINY["hidden"], "n_head": TINY["heads"], "n_inner": None,
        "n_layer": TINY["layers"], "n_positions": TINY["max_pos"], "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.0, "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": TINY["vocab"],
    }


def llama_config(kv_heads=2, intermediate=48, tied=False, head_dim=None, rope_theta=10000.0,
                 rope_scaling=None, attention_bias=False, mlp_bias=False, rms_norm_eps=1e-05):
    """LlamaConfig(...).to_json_string(use_diff=True): every LlamaConfig key is written;
    tie_word_embeddings is written because it differs from one of the two defaults it is diffed
    against (PretrainedConfig: True, LlamaConfig: False)."""
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": attention_bias,
        "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
        "head_dim": head_dim or TINY["hidden"] // TINY["heads"], "hidden_act": "silu",
        "hidden_size": TINY["hidden"], "initializer_range": 0.02, "intermediate_size": intermediate,
        "max_position_embeddings": TINY["max_pos"], "mlp_bias": mlp_bias, "model_type": "llama",
        "num_attention_heads": TINY["heads"], "num_hidden_layers": TINY["layers"],
        "num_key_value_heads": kv_heads, "pretraining_tp": 1, "rms_norm_eps": rms_norm_eps,
        "rope_scaling": rope_scaling, "rope_theta": rope_theta, "tie_word_embeddings": tied,
        "torch_dtype": "float32", "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "vocab_size": TINY["vocab"],
    }


def qwen2_config(kv_heads=2, intermediate=48, tied=True):
    """Qwen2Config(...).to_json_string(use_diff=True) as of 4.47 (no head_dim / attention_bias
    keys: Qwen2 always has q/k/v biases and head_dim = hidden / heads; no bos/eos defaults)."""
    return {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "hidden_act": "silu",
        "hidden_size": TINY["hidden"], "initializer_range": 0.02, "intermediate_size": intermediate,
        "max_position_embeddings": TINY["max_pos"], "max_window_layers": 28, "model_type": "qwen2",
        "num_attention_heads": TINY["heads"], "num_hidden_layers": TINY["layers"],
        "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": tied,
        "torch_dtype": "float32", "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "use_sliding_window": False, "vocab_size": TINY["vocab"],
    }


# llama3 rope scaling for llama_tied_rope3. With head_dim 12 and theta 500000 the six wavelengths
# 2*pi/inv_freq are 6.28, 55.9, 497, 4.4e3, 4.0e4, 3.5e5 tokens. The brief's
# original_max_position_embeddings 16 would give band edges 16/4 = 4 and 16/1 = 16, and no
# wavelength can be below 2*pi, so the high-frequency band would be empty. With 64 the edges are
# 16 and 64: frequency 0 is high (kept), frequency 1 is medium (interpolated), 2..5 are low (/8).
LLAMA3_SCALING = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                  "original_max_position_embeddings": 64, "rope_type": "llama3"}

# case name -> (model name, config builder, n_virtual, n_prefix). Cases sharing a model name share
# the model directory contents (same config, same weights).
CASES = {
    "gpt2": ("gpt2", gpt2_config, 0, 0),
    "gpt2_prompt": ("gpt2", gpt2_config, 3, 0),
    "gpt2_prefix": ("gpt2", gpt2_config, 0, 2),
    "llama_gqa": ("llama_gqa", llama_config, 0, 0),
    "llama_prompt": ("llama_gqa", llama_config, 3, 0),
    "llama_prefix": ("llama_gqa", llama_config, 0, 2),
    "llama_tied_rope3": ("llama_tied_rope3", lambda: llama_config(
        tied=True, head_dim=12, rope_theta=500000.0, rope_scaling=dict(LLAMA3_SCALING),
        rms_norm_eps=1e-06), 0, 0),
    "qwen2_bias": ("qwen2_bias", qwen2_config, 0, 0),
    "llama_attn_mlp_bias": ("llama_attn_mlp_bias", lambda: llama_config(
        attention_bias=True, mlp_bias=True), 0, 0),
}
MODEL_SEEDS = {"gpt2": 1001, "llama_gqa": 1002, "llama_tied_rope3": 1003, "qwen2_bias": 1004,
               "llama_attn_mlp_bias": 1005}
CASE_SEEDS = {name: 2001 + i for i, name in enumerate(CASES)}
# Real-token labels masked to -100 (besides the structural ones) to exercise the loss mask:
# (batch row, index into input_ids). Label index j is predicted by position n_virtual + j - 1.
EXTRA_MASKED = [(0, 4), (1, 2), (1, 3)]


def f32_round(t):
    """Round to float32 and back: the reference computes with exactly what is written to disk."""
    return t.to(torch.float32).to(torch.float64)


def init_weights(arch, seed):
    """Random weights in which every term matters: matrices ~ N(0, 1/sqrt(fan_in)), embeddings
    ~ N(0, 1)/sqrt(hidden) (logits O(1) through a tied head), norm gains 1 + N(0, 0.1), every bias
    ~ N(0, 0.05). Drawn in the HF key order from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    W = {}
    for key, shape in weight_shapes(arch).items():
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if key.endswith(".bias"):
            w = 0.05 * z
        elif len(shape) == 1:  # ln_* / *_layernorm / norm gains
            w = 1.0 + 0.1 * z
        elif key.endswith(("wte.weight", "wpe.weight", "embed_tokens.weight")):
            w = z / math.sqrt(arch["hidden"])
        else:
            gpt2_conv1d = arch["kind"] == "gpt2" and key != "lm_head.weight"
            fan_in = shape[0] if gpt2_conv1d else shape[1]  # Conv1D [in,out]; Linear [out,in]
            w = z / math.sqrt(fan_in)
        W[key] = f32_round(w)
    return W


def make_case_inputs(arch, seed, n_virtual, n_prefix, first_real_from_virtual):
    """input_ids [B,T], shifted targets [B, n_virtual+T], and the adapter tensors.
    first_real_from_virtual: whether the last virtual position's prediction of the first real token
    counts in the loss (HF's shifted labels: yes; the golden files: no, see golden_checks)."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, arch["vocab"], (BATCH, SEQ), generator=gen)
    labels = input_ids.clone()
    for b, j in EXTRA_MASKED:
        labels[b, j] = IGNORE_INDEX
    labels = torch.cat([torch.full((BATCH, n_virtual), IGNORE_INDEX), labels], dim=1)
    targets = shift_labels(labels)
    if n_virtual and not first_real_from_virtual:
        targets[:, n_virtual - 1] = IGNORE_INDEX
    virtual = prefix = None
    if n_virtual:  # like word embeddings (peft's RANDOM init draws an nn.Embedding, rescaled here)
        virtual = f32_round(torch.randn(n_virtual, arch["hidden"], generator=gen,
                                        dtype=torch.float64) / math.sqrt(arch["hidden"]))
    if n_prefix:  # keys/values are O(1), like the real ones
        prefix = f32_round(torch.randn(n_prefix, arch["layers"] * 2 * kv_dim(arch), generator=gen,
                                       dtype=torch.float64))
    return input_ids, targets, virtual, prefix


def compute_case(arch, W, input_ids, targets, virtual, prefix, dtype=torch.float64):
    """Forward + backward at `dtype`: logits, loss and the gradients of every leaf."""
    params = {k: v.to(dtype).clone().requires_grad_(True) for k, v in W.items()}
    leaves = {}
    if virtual is not None:
        leaves["virtual_embeds"] = virtual.to(dtype).clone().requires_grad_(True)
    if prefix is not None:
        leaves["prefix"] = prefix.to(dtype).clone().requires_grad_(True)
    logits, inputs_embeds = forward(arch, params, input_ids, leaves.get("virtual_embeds"),
                                    leaves.get("prefix"))
    _, loss = token_nll(logits, targets)
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach(),
           "grad.inputs_embeds": inputs_embeds.grad.detach()}
    for name, t in leaves.items():
        out["grad." + name] = t.grad.detach()
    for key, t in params.items():
        out["grad." + key] = t.grad.detach()
    return out


def check_gradients(arch, W, input_ids, targets, virtual, prefix, res, seed):
    """Sanity checks of the float64 gradients: every weight gets a non-zero gradient (every term
    matters), and a central finite difference of the loss along one random direction in all
    parameters at once agrees with sum(grad * direction)."""
    for key in W:
        if not res["grad." + key].abs().max() > 0:
            raise AssertionError(f"gradient of {key} is identically zero")
    gen = torch.Generator().manual_seed(seed)
    leaves = dict(W)
    if virtual is not None:
        leaves["virtual_embeds"] = virtual
    if prefix is not None:
        leaves["prefix"] = prefix
    direction = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in leaves.items()}
    norm = math.sqrt(sum(float((d * d).sum()) for d in direction.values()))
    direction = {k: d / norm for k, d in direction.items()}  # unit step in all parameters
    predicted = sum(float((res["grad." + k] * d).sum()) for k, d in direction.items())

    def loss_at(eps):
        moved = {k: v + eps * direction[k] for k, v in leaves.items()}
        virt, pref = moved.pop("virtual_embeds", None), moved.pop("prefix", None)
        with torch.no_grad():
            logits, _ = forward(arch, moved, input_ids, virt, pref)
            return token_nll(logits, targets)[1].item()

    eps = 1e-4
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    rel = abs(numeric - predicted) / abs(predicted)
    if rel > 1e-6:
        raise AssertionError(f"finite difference {numeric} != autograd {predicted}")
    return rel


def fp32_error(ref, f32):
    """Per tensor: max |f32 - f64| / max |f64| (how far an fp32 implementation naturally lands)."""
    return {k: float((f32[k].double() - ref[k]).abs().max() / ref[k].abs().max().clamp(min=1e-300))
            for k in ref}


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")  # PretrainedConfig.to_json_file


def write_case(out_dir, case, cfg, W, input_ids, targets, virtual, prefix, res, n_virtual, n_prefix):
    d = os.path.join(out_dir, case)
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "config.json"), cfg)
    f32 = lambda t: ("F32", t.detach().to(torch.float32).numpy())
    st_write(os.path.join(d, "model.safetensors"), {k: f32(v) for k, v in W.items()},
             {"format": "pt"})
    tensors = {"input_ids": ("I32", input_ids.to(torch.int32).numpy()),
               "targets": ("I32", targets.to(torch.int32).numpy()),
               "logits": f32(res["logits"]),
               "loss": f32(res["loss"]),
               "loss_f64": ("F64", res["loss"].numpy())}
    if virtual is not None:
        tensors["virtual_embeds"] = f32(virtual)
    if prefix is not None:
        tensors["prefix"] = f32(prefix)
    for k, v in res.items():
        if k.startswith("grad."):
            tensors[k] = f32(v)
    st_write(os.path.join(d, "expected.safetensors"), tensors,
             {"peft_fixture": "1", "case": case, "n_virtual": str(n_virtual),
              "n_prefix": str(n_prefix)})
    return d


def self_check_written(d, W, res):
    """Read the files back and make sure they round-trip (guards the safetensors writer)."""
    model, meta = st_read(os.path.join(d, "model.safetensors"))
    assert meta == {"format": "pt"} and set(model) == set(W)
    for k, v in model.items():
        assert np.array_equal(v, W[k].to(torch.float32).numpy()), k
    exp, meta = st_read(os.path.join(d, "expected.safetensors"))
    assert float(exp["loss_f64"]) == res["loss"].item() and exp["loss"].shape == ()
    assert set(k for k in exp if k.startswith("grad.")) >= {"grad." + k for k in W}


README_TEMPLATE = """\
# Reference fixtures (generated: do not edit)

Ground truth for the C tests: tiny random GPT-2 / Llama / Qwen2 models in Hugging Face format, with the
logits, loss and gradients of a short batch, computed by `scripts/make_fixtures.py` (a float64 PyTorch
re-implementation of transformers 4.47 `GPT2LMHeadModel` / `LlamaForCausalLM` / `Qwen2ForCausalLM` and
of peft's prompt and prefix tuning).

Regenerate from the repository root (Debian's PyTorch 1.13, numpy; no transformers needed):

    /usr/bin/python3 scripts/make_fixtures.py            # --out tests/fixtures/ref --golden ../shared/golden

The script is deterministic (fixed seeds, one thread): a rerun gives byte-identical files. It first
checks the reference against the golden files written by the real libraries
(`../shared/golden`: gpt2-tiny, llama-tiny, peft llama-tiny-prompt, llama-tiny-prefix,
gpt2-tiny-prefix; every per-position nll and loss must agree to 1e-9 relative; they agree to ~1e-15)
and writes nothing if any check fails.

## Files of a case `<case>/`

* `config.json`: as `save_pretrained` writes it (transformers 4.47 key set, `json.dumps(indent=2,
  sort_keys=True)` + newline).
* `model.safetensors`: F32, exact HF key names (GPT-2 `transformer.*`, Conv1D weights stored
  `[in, out]`, no `lm_head.weight` since tied; Llama/Qwen2 `model.*`, nn.Linear weights `[out, in]`,
  `lm_head.weight` only when untied), metadata `{{"format":"pt"}}`, laid out like the reference
  safetensors writer (tensors ordered by dtype descending then name, compact header padded to 8).
* `expected.safetensors`, metadata `{{"peft_fixture":"1","case":"<case>","n_virtual":"<k>","n_prefix":"<p>"}}`
  (k, p are "0" when unused). B = {batch}, T = {seq}, S = n_virtual + T, C = hidden, V = vocab:

| tensor | dtype | shape | meaning |
|---|---|---|---|
| `input_ids` | I32 | [B, T] | real token ids |
| `targets` | I32 | [B, S] | target of each position after HF's shift (position t predicts `targets[t]`); -100 = no loss |
| `virtual_embeds` | F32 | [n_virtual, C] | prompt-tuning embeddings (peft `prompt_embeddings`), prompt cases only |
| `prefix` | F32 | [n_prefix, L*2*kv_dim] | prefix-tuning keys/values (peft `prompt_embeddings`), prefix cases only |
| `logits` | F32 | [B, S, V] | logits of every position, virtual ones included |
| `loss` | F32 | [] | mean over positions with target >= 0 of -log_softmax(logits)[target] |
| `loss_f64` | F64 | [] | the same in float64 |
| `grad.inputs_embeds` | F32 | [B, T, C] | d loss / d word-embedding lookup of the real tokens (HF `inputs_embeds`; for GPT-2 before `wpe` is added) |
| `grad.virtual_embeds` | F32 | [n_virtual, C] | prompt cases only |
| `grad.prefix` | F32 | [n_prefix, L*2*kv_dim] | prefix cases only |
| `grad.<key>` | F32 | shape of `<key>` | for every key of `model.safetensors`; a tied embedding's gradient sums the lookup and the LM head |

Everything is computed in float64 from exactly the F32 values stored in the files, then cast to F32.

## Conventions (confirmed against the golden files)

* Loss mask: besides the structural -100s (last position, virtual positions), the labels at
  (batch row, index into `input_ids`) {masked} are set to -100 too, so the position before
  each of them has no loss.
* Prompt tuning: the `n_virtual` rows are prepended to the input embeddings; positions (GPT-2 `wpe`)
  run 0..S-1. **The golden peft files do not count the prediction of the first real token from the
  last virtual position** (`tokens` = T-1 and the nll list covers real positions only), so here
  `targets[:, n_virtual-1] = -100` as well: only the T-1 predictions made from real positions count.
  (HF's own labels path, `cat(-100 * n_virtual, labels)` then shift, would also count that one.)
  `logits` covers all S positions, so a test may check the other convention itself.
* Prefix tuning: a `prefix` row is `[K_0|V_0|K_1|V_1|...]`, each block kv_heads x head_dim,
  head-major; layer l's keys/values get the n_prefix entries prepended, visible to every query, no
  RoPE applied to them. **The real tokens' positions are n_prefix..n_prefix+T-1** (HF derives them from
  the cache length); the golden files match this and not positions 0..T-1.
* Llama RoPE: HF's rotate_half convention, inv_freq = 1/theta^(2i/head_dim); cos/sin of
  cat(freqs, freqs).

## Cases

All: {layers} layers, hidden {hidden}, {heads} query heads, vocab {vocab}, max positions {max_pos}.
Cases sharing a model name have identical `config.json` and `model.safetensors`.

| case | model | model_type | tied | kv heads | head_dim | FFN | biases | rope | n_virtual | n_prefix |
|---|---|---|---|---|---|---|---|---|---|---|
{case_rows}

`llama_tied_rope3` uses rope_scaling

    {llama3}

Its six rotary wavelengths (2*pi/inv_freq, theta 500000, head_dim 12) are 6.3, 55.9, 497, 4.4e3,
4.0e4 and 3.5e5 tokens against band edges 64/4 = 16 and 64/1 = 64, so the bands per frequency are
{bands}: every branch of the llama3 formula is used.
(`original_max_position_embeddings` is 64, not 16: with 16 the high band would be empty, since no
wavelength can be shorter than 2*pi > 16/4.)

Weights: matrices ~ N(0, 1/sqrt(fan_in)), embeddings (`wte`, `wpe`, `embed_tokens`) ~ N(0, 1/sqrt(hidden))
so a tied head gives O(1) logits, norm gains 1 + N(0, 0.1), every bias ~ N(0, 0.05);
`virtual_embeds` ~ N(0, 1/sqrt(hidden)), `prefix` ~ N(0, 1).

## Tolerances for fp32 C code

The script also runs the same computation in float32 PyTorch; its worst error over all cases,
as max|f32 - f64| / max|f64| per tensor, is: logits {err_logits:.1e}, loss {err_loss:.1e},
gradients {err_grad:.1e}. A C implementation with its own summation order should stay well within:

* `logits`: max|got - expected| <= 1e-4 * max|expected| (logits are O(1), so also atol 1e-4);
* `loss`: |got - loss_f64| <= 1e-5 * loss_f64;
* every `grad.*`: max|got - expected| <= 1e-4 * max|expected| over the tensor (not element-wise
  relative: small entries carry cancellation error);
* reading `model.safetensors` must give the stored F32 values bit-exactly.

For golden-file comparisons `../shared/golden/README.md` suggests ~1e-4 relative for fp32 code.
"""


def write_readme(out_dir, worst, bands):
    rows = []
    for case, (model, make_config, n_virtual, n_prefix) in CASES.items():
        cfg = make_config()
        a = arch_from_config(cfg)
        if a["kind"] == "gpt2":
            biases, rope = "all (Conv1D, LayerNorm)", "learned wpe"
        else:
            biases = ", ".join(n for n, on in (("q/k/v", a["qkv_bias"]), ("o", a["o_bias"]),
                                                 ("gate/up/down", a["mlp_bias"])) if on) or "none"
            rope = f"theta {a['rope_theta']:g}" + (", llama3" if a["rope_scaling"] else "")
        rows.append(f"| `{case}` | {model} | {cfg['model_type']} | {'yes' if a['tied'] else 'no'} | "
                    f"{a['kv_heads']} | {a['head_dim']} | {a['ffn']} | {biases} | {rope} | "
                    f"{n_virtual} | {n_prefix} |")
    text = README_TEMPLATE.format(
        batch=BATCH, seq=SEQ, masked=", ".join(f"({b}, {j})" for b, j in EXTRA_MASKED),
        case_rows="\n".join(rows), llama3=json.dumps(LLAMA3_SCALING, sort_keys=True),
        bands=bands, err_logits=worst["logits"], err_loss=worst["loss"], err_grad=worst["grad.*"],
        **TINY)
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


def generate(out_dir, first_real_from_virtual):
    if first_real_from_virtual:
        raise ValueError("README_TEMPLATE documents the golden convention (first real token not "
                         "counted); update it before generating with the other one")
    os.makedirs(out_dir, exist_ok=True)
    worst, bands = {}, None
    for case, (model, make_config, n_virtual, n_prefix) in CASES.items():
        cfg = make_config()
        arch = arch_from_config(cfg)
        W = init_weights(arch, MODEL_SEEDS[model])
        input_ids, targets, virtual, prefix = make_case_inputs(
            arch, CASE_SEEDS[case], n_virtual, n_prefix, first_real_from_virtual)
        res = compute_case(arch, W, input_ids, targets, virtual, prefix)
        fd = check_gradients(arch, W, input_ids, targets, virtual, prefix, res,
                             CASE_SEEDS[case] + 500)
        res32 = compute_case(arch, W, input_ids, targets, virtual, prefix, dtype=torch.float32)
        errs = fp32_error(res, res32)
        for k, e in errs.items():
            group = k if not k.startswith("grad.") else "grad.*"
            worst[group] = max(worst.get(group, 0.0), e)
        d = write_case(out_dir, case, cfg, W, input_ids, targets, virtual, prefix, res,
                       n_virtual, n_prefix)
        self_check_written(d, W, res)
        extra = ""
        if arch.get("rope_scaling"):
            bands = llama3_bands(arch)
            assert set(bands) == {"high", "medium", "low"}, bands
            extra = f", llama3 bands per frequency: {bands}"
        print(f"[fixture] {case:20s} loss {res['loss'].item():.6f}  "
              f"positions {int((targets >= 0).sum())}  fin.diff {fd:.0e}  fp32-vs-f64: logits "
              f"{errs['logits']:.1e} loss {errs['loss']:.1e} grads "
              f"{max(v for k, v in errs.items() if k.startswith('grad.')):.1e}{extra}")
    write_readme(out_dir, worst, bands)
    print("[fixture] worst fp32-vs-f64 (max abs diff / max abs value) over all cases: "
          + ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items())))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "ref"))
    ap.add_argument("--golden", default=os.path.join(root, "..", "shared", "golden"))
    args = ap.parse_args()
    try:
        found = golden_checks(args.golden)
    except (GoldenFailure, AssertionError, OSError, ValueError) as e:
        print(f"[golden] FAILED: {e}", file=sys.stderr)
        return 1
    print(f"[golden] conventions confirmed: {found}")
    generate(args.out, found["prompt_first_real_from_virtual"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
