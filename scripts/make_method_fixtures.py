#!/usr/bin/python3
"""Reference fixtures for every PEFT method (ground truth for the C tests of the methods).

What this script does
---------------------
1. Implements, in float64 PyTorch on top of the GPT-2 / Llama reference of ``make_fixtures.py``, the
   methods as Hugging Face ``peft`` 0.20 and AdapterHub ``adapters`` 1.1.0 compute them
   (../shared/FORMATS.md): LoRA and rsLoRA (§2.2), DoRA (§2.3), IA3 (§2.5), prompt tuning (§2.6),
   prefix tuning with and without the reparameterising MLP (§2.7), the AdapterHub bottleneck
   adapters in decoders (§3.6: Houlsby ``double_seq_bn``, Pfeiffer ``seq_bn``, parallel ``par_bn``,
   Bapna-style ``ln_before``), and our own ``io`` adapter (defined in the README this script writes).
2. Checks the implementation against the golden files written by the real libraries
   (``--golden``, default ``../shared/golden``): every per-position nll and loss of every peft and
   AdapterHub adapter there must agree to 1e-9 relative, and the adapter files must hold exactly
   the keys and shapes this script derives from their configs. It also reproduces the base /
   prompt / prefix fixtures of ``make_fixtures.py`` (``--ref``). One line per check; any failure
   exits non-zero before anything is written.
3. Writes one directory per case under ``--out`` (default ``tests/fixtures/methods``)::

       <case>/case.json            model (a directory of --ref), method and its parameters
       <case>/adapter.safetensors  the trainable tensors (exact key names), F32
       <case>/expected.safetensors batch, logits, loss, gradient of every trainable tensor

   plus ``README.md`` (format, cases, formulas, golden results).

Everything is computed in float64 from the float32 values written to disk; results are cast to F32
(``loss_f64`` keeps the float64 loss). Seeds are fixed and torch runs single-threaded, so two runs
produce byte-identical files.

Run from the repository root:  /usr/bin/python3 scripts/make_method_fixtures.py
"""

import argparse
import json
import math
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as ref  # noqa: E402  (the model reference, safetensors I/O, loss)

torch.set_num_threads(1)  # deterministic reductions: identical files on every run

IGNORE_INDEX = ref.IGNORE_INDEX
ACTS = {"relu": torch.relu, "swish": torch.nn.functional.silu, "silu": torch.nn.functional.silu}
ADAPTER_LN_EPS = 1e-5  # nn.LayerNorm default: AdapterHub's ln_before norm, GPT-2 and Llama alike


# --------------------------------------------------------------------------------------------------
# The linear layers of a model (what peft can target)
# --------------------------------------------------------------------------------------------------

def layer_prefix(arch, i):
    return f"transformer.h.{i}" if arch["kind"] == "gpt2" else f"model.layers.{i}"


def linear_modules(arch):
    """{HF module path: (in_features, out_features)} of every projection, in module order.
    GPT-2's Conv1D stores its weight [in, out]; peft reads in/out from that shape (§2.2)."""
    c, F = arch["hidden"], arch["ffn"]
    mods = {}
    for i in range(arch["layers"]):
        p = layer_prefix(arch, i) + "."
        if arch["kind"] == "gpt2":
            mods.update({p + "attn.c_attn": (c, 3 * c), p + "attn.c_proj": (c, c),
                         p + "mlp.c_fc": (c, F), p + "mlp.c_proj": (F, c)})
        else:
            qd, kd = arch["heads"] * arch["head_dim"], ref.kv_dim(arch)
            mods.update({p + "self_attn.q_proj": (c, qd), p + "self_attn.k_proj": (c, kd),
                         p + "self_attn.v_proj": (c, kd), p + "self_attn.o_proj": (qd, c),
                         p + "mlp.gate_proj": (c, F), p + "mlp.up_proj": (c, F),
                         p + "mlp.down_proj": (F, c)})
    return mods


def peft_targets(module, target_modules, layers_to_transform=None, layers_pattern=None):
    """peft's check_target_module_exists (§2.2): a str is re.fullmatch'ed; a list matches a module
    whose name equals an entry or ends with "." + entry, and only then is layers_to_transform
    applied, the layer index being the first numbered segment (or the one after layers_pattern)."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, module) is not None
    if module in target_modules:
        return True
    if not any(module.endswith("." + t) for t in target_modules):
        return False
    if layers_to_transform is None or layers_to_transform == []:
        return True
    layers = [layers_to_transform] if isinstance(layers_to_transform, int) else layers_to_transform
    pattern = r".*?\.[^.]*\.(\d+)\." if layers_pattern is None else rf".*?\.{layers_pattern}\.(\d+)\."
    m = re.match(pattern, module)
    return m is not None and int(m.group(1)) in layers


def ia3_is_feedforward(module, feedforward_modules):
    """peft's _check_target_module_feedforward (§2.5): fullmatch for a str, else a PLAIN endswith
    (no leading dot, unlike target_modules)."""
    if isinstance(feedforward_modules, str):
        return re.fullmatch(feedforward_modules, module) is not None
    return any(module.endswith(t) for t in feedforward_modules)


# --------------------------------------------------------------------------------------------------
# Forward pass with method hooks (float64)
# --------------------------------------------------------------------------------------------------

def base_linear(x, weight, bias, conv1d):
    """Conv1D (GPT-2): x @ W + b with W [in, out]; nn.Linear: x @ W^T + b with W [out, in]."""
    y = x @ weight if conv1d else x @ weight.t()
    return y if bias is None else y + bias


class Method:
    """The frozen base model: every hook is the identity. A method overrides the hooks it needs and
    reads its trainable tensors from self.P ({key: tensor})."""

    def __init__(self, P=None):
        self.P = {} if P is None else P

    def linear(self, path, x, weight, bias, conv1d):
        return base_linear(x, weight, bias, conv1d)

    def virtual(self):  # [n_virtual, C] rows prepended to the input embeddings (prompt tuning)
        return None

    def prefix(self):  # [n_prefix, L*2*kv_dim] keys/values prepended in every layer
        return None

    def embed_output(self, x):  # the embedding output, before layer 0
        return x

    def attn_residual(self, lp, x, a):  # block input x, attention output a -> stream u
        return x + a

    def mlp_residual(self, lp, u, m):  # stream u, MLP output m -> block output
        return u + m

    def final_hidden(self, h):  # the last layer's output, before the final norm
        return h


def forward(arch, W, input_ids, method):
    """Logits [B, n_virtual + T, V] of GPT2LMHeadModel / LlamaForCausalLM with the method's hooks.
    The same computation as make_fixtures.forward (checked against it), with every projection
    going through method.linear and the residual additions through the method."""
    gpt2 = arch["kind"] == "gpt2"
    emb_key = "transformer.wte.weight" if gpt2 else "model.embed_tokens.weight"
    batch = input_ids.shape[0]
    x = W[emb_key][input_ids]
    virtual = method.virtual()
    if virtual is not None:
        x = torch.cat([virtual.unsqueeze(0).expand(batch, -1, -1), x], dim=1)
    prefix = method.prefix()
    s = x.shape[1]
    n_prefix = 0 if prefix is None else prefix.shape[0]
    positions = torch.arange(n_prefix, n_prefix + s)  # HF: real positions start at the cache length
    H, KV, hd = arch["heads"], arch["kv_heads"], arch["head_dim"]

    def heads(t, n):  # [B, S, n*hd] -> [B, n, S, hd]
        return t.view(batch, s, n, hd).transpose(1, 2)

    def merge(t):  # [B, n, S, hd] -> [B, S, n*hd]
        return t.transpose(1, 2).reshape(batch, s, -1)

    def proj(path, t, conv1d=False):
        return method.linear(path, t, W[path + ".weight"], W.get(path + ".bias"), conv1d)

    def attend(q, k, v, i):
        if prefix is not None:  # prefix keys/values enter the cache as stored (no RoPE)
            pk, pv = ref.split_prefix(arch, prefix, i, batch)
            k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        k = k.repeat_interleave(H // KV, dim=1)  # repeat_kv (identity for GPT-2)
        v = v.repeat_interleave(H // KV, dim=1)
        return merge(ref.causal_attention(q, k, v, n_prefix))

    if gpt2:
        act = ref.GPT2_ACTS[arch["act"]]
        x = method.embed_output(x + W["transformer.wpe.weight"][positions])
        for i in range(arch["layers"]):
            lp = layer_prefix(arch, i)
            p = lp + "."
            h = ref.layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], arch["eps"])
            qkv = proj(p + "attn.c_attn", h, conv1d=True)
            q, k, v = (heads(t, H) for t in qkv.split(arch["hidden"], dim=-1))
            a = proj(p + "attn.c_proj", attend(q, k, v, i), conv1d=True)
            x = method.attn_residual(lp, x, a)
            h = ref.layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], arch["eps"])
            m = proj(p + "mlp.c_proj", act(proj(p + "mlp.c_fc", h, conv1d=True)), conv1d=True)
            x = method.mlp_residual(lp, x, m)
        x = method.final_hidden(x)
        x = ref.layer_norm(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], arch["eps"])
        return x @ W.get("lm_head.weight", W[emb_key]).t()

    freqs = positions.to(torch.float64).unsqueeze(1) * ref.rope_inv_freq(arch).unsqueeze(0)
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x = method.embed_output(x)
    for i in range(arch["layers"]):
        lp = layer_prefix(arch, i)
        p = lp + "."
        h = ref.rms_norm(x, W[p + "input_layernorm.weight"], arch["eps"])
        q = heads(proj(p + "self_attn.q_proj", h), H)
        k = heads(proj(p + "self_attn.k_proj", h), KV)
        v = heads(proj(p + "self_attn.v_proj", h), KV)
        q = q * cos + ref.rotate_half(q) * sin
        k = k * cos + ref.rotate_half(k) * sin
        a = proj(p + "self_attn.o_proj", attend(q, k, v, i))
        x = method.attn_residual(lp, x, a)
        h = ref.rms_norm(x, W[p + "post_attention_layernorm.weight"], arch["eps"])
        g = proj(p + "mlp.gate_proj", h)
        m = proj(p + "mlp.down_proj", torch.nn.functional.silu(g) * proj(p + "mlp.up_proj", h))
        x = method.mlp_residual(lp, x, m)
    x = method.final_hidden(x)
    x = ref.rms_norm(x, W["model.norm.weight"], arch["eps"])
    return x @ W.get("lm_head.weight", W[emb_key]).t()


# --------------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------------

PEFT_PREFIX = "base_model.model."


class LoRA(Method):
    """peft LoRA (§2.2), rsLoRA scaling, lora_bias, and DoRA (§2.3) on the targeted projections:

        LoRA:  y = base(x) + s * (B (A x) + b_B)          s = alpha / r  (alpha / sqrt(r) with rsLoRA)
        DoRA:  y = base(x) + (f - 1) * (W x) + f * s * B (A x),   f = m / ||W + s B A||_row
               = f * (W x + s B A x) + b,  the row norm DETACHED (a constant for autograd)

    W is the [out, in] weight (GPT-2's Conv1D [in, out] transposed). Dropout is 0."""

    def __init__(self, P, targets, r, lora_alpha, use_rslora=False, lora_bias=False,
                 use_dora=False):
        super().__init__(P)
        self.targets = set(targets)
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
        self.lora_bias, self.use_dora = lora_bias, use_dora
        self.frozen_norms = None  # {path: norm} to reuse instead of recomputing (gradient check)
        self.detach_norm = True  # False only to measure how much the detach matters
        self.norms = {}  # the norms of the last forward

    @staticmethod
    def spec(modules, targets, r, lora_bias=False, use_dora=False):
        """{key: shape} of the trainable tensors, module by module."""
        shapes = {}
        for path in targets:
            fin, fout = modules[path]
            k = PEFT_PREFIX + path
            shapes[k + ".lora_A.weight"] = [r, fin]
            shapes[k + ".lora_B.weight"] = [fout, r]
            if lora_bias:
                shapes[k + ".lora_B.bias"] = [fout]
            if use_dora:
                shapes[k + ".lora_magnitude_vector"] = [fout]
        return shapes

    def linear(self, path, x, weight, bias, conv1d):
        y = base_linear(x, weight, bias, conv1d)
        if path not in self.targets:
            return y
        k = PEFT_PREFIX + path
        A, B = self.P[k + ".lora_A.weight"], self.P[k + ".lora_B.weight"]
        lora = (x @ A.t()) @ B.t()  # lora_B(lora_A(x))
        if self.lora_bias:
            lora = lora + self.P[k + ".lora_B.bias"]
        if not self.use_dora:
            return y + lora * self.scaling
        w = weight.t() if conv1d else weight  # transpose(weight, fan_in_fan_out): [out, in]
        if self.frozen_norms is not None:
            norm = self.frozen_norms[path]
        else:
            norm = torch.linalg.norm(w + self.scaling * (B @ A).detach(), dim=1).detach()
            if not self.detach_norm:
                norm = torch.linalg.norm(w + self.scaling * (B @ A), dim=1)
        self.norms[path] = norm
        f = self.P[k + ".lora_magnitude_vector"] / norm  # mag_norm_scale, one per output
        return y + (f - 1) * (x @ w.t()) + f * lora * self.scaling


class IA3(Method):
    """peft IA3 (§2.5): a feed-forward target scales its input, base(x * l) (bias untouched);
    any other target scales its output, base(x) * l (bias included)."""

    def __init__(self, P, targets, feedforward):
        super().__init__(P)
        self.targets, self.feedforward = set(targets), set(feedforward)

    @staticmethod
    def spec(modules, targets, feedforward):
        return {PEFT_PREFIX + p + ".ia3_l": ([1, modules[p][0]] if p in feedforward
                                            else [modules[p][1], 1]) for p in targets}

    def linear(self, path, x, weight, bias, conv1d):
        if path not in self.targets:
            return base_linear(x, weight, bias, conv1d)
        l = self.P[PEFT_PREFIX + path + ".ia3_l"].flatten()
        if path in self.feedforward:
            return base_linear(x * l, weight, bias, conv1d)
        return base_linear(x, weight, bias, conv1d) * l


class Prompt(Method):
    """peft prompt tuning (§2.6): prompt_embeddings [nvt, C] prepended to the input embeddings."""

    def virtual(self):
        return self.P["prompt_embeddings"]


class Prefix(Method):
    """peft prefix tuning (§2.7). Without projection the prefix is prompt_embeddings
    [nvt, L*2*kv_dim]; with projection it is the MLP
        prefix = transform.2(tanh(transform.0(embedding.weight)))   (Linear, Tanh, Linear)
    of the prompt encoder (what save_pretrained exports as prompt_embeddings)."""

    def __init__(self, P, projection):
        super().__init__(P)
        self.projection = projection

    def prefix(self):
        if not self.projection:
            return self.P["prompt_embeddings"]
        return prefix_mlp(self.P)


def prefix_mlp(P):
    e = P["prompt_encoder.embedding.weight"]
    h = torch.tanh(e @ P["prompt_encoder.transform.0.weight"].t() + P["prompt_encoder.transform.0.bias"])
    return h @ P["prompt_encoder.transform.2.weight"].t() + P["prompt_encoder.transform.2.bias"]


def bottleneck(P, key, v, act, scaling=1.0, ln_before=False):
    """AdapterHub's Adapter without its residual (§3.3, §3.6):
    f(v) = scaling * (W_up act(W_down [LN_a](v) + b_down) + b_up)."""
    down = key + "adapter_down.0."
    if ln_before:  # adapter_down = Sequential(LayerNorm, Linear, act)
        v = ref.layer_norm(v, P[key + "adapter_down.0.weight"], P[key + "adapter_down.0.bias"],
                           ADAPTER_LN_EPS)
        down = key + "adapter_down.1."
    z = act(v @ P[down + "weight"].t() + P[down + "bias"])
    return (z @ P[key + "adapter_up.weight"].t() + P[key + "adapter_up.bias"]) * scaling


def bottleneck_spec(key, hidden, d, ln_before=False):
    shapes = {}
    if ln_before:
        shapes[key + "adapter_down.0.weight"] = [hidden]
        shapes[key + "adapter_down.0.bias"] = [hidden]
    down = key + ("adapter_down.1." if ln_before else "adapter_down.0.")
    shapes[down + "weight"] = [d, hidden]
    shapes[down + "bias"] = [d]
    shapes[key + "adapter_up.weight"] = [hidden, d]
    shapes[key + "adapter_up.bias"] = [hidden]
    return shapes


# AdapterHub BnConfig presets and the Bapna-style config, only the fields the decoders use (§3.1,
# §3.6). residual_before_ln=True, original_ln_after=True, ln_after=False, use_gating=False,
# adapter_residual_before_ln=False everywhere.
BN_CONFIGS = {
    "houlsby": dict(preset="double_seq_bn", mh_adapter=True, output_adapter=True,
                    non_linearity="swish", scaling=1.0, is_parallel=False,
                    original_ln_before=False, ln_before=False),
    "pfeiffer": dict(preset="seq_bn", mh_adapter=False, output_adapter=True,
                     non_linearity="relu", scaling=1.0, is_parallel=False,
                     original_ln_before=True, ln_before=False),
    "parallel": dict(preset="par_bn", mh_adapter=False, output_adapter=True,
                     non_linearity="relu", scaling=4.0, is_parallel=True,
                     original_ln_before=False, ln_before=False),
    "bapna": dict(preset=None, mh_adapter=True, output_adapter=False,
                  non_linearity="relu", scaling=1.0, is_parallel=False,
                  original_ln_before=False, ln_before=True),
}


class Bottleneck(Method):
    """AdapterHub bottleneck adapters in GPT-2 / Llama (§3.6). The library calls them with
    layer_norm=None, h the sub-layer output (attention a or MLP m), r its residual input:

        sequential: y = r + h + f(h + r if original_ln_before else h)
        parallel:   y = r + h + f(r)          (r = the un-normalised stream, scaling inside f)

    at the attention site (attention_adapters) if mh_adapter, at the MLP site (output_adapters)
    if output_adapter; without an adapter the site is the plain residual r + h."""

    def __init__(self, P, cfg, adapter_name):
        super().__init__(P)
        self.cfg, self.name = cfg, adapter_name
        self.act = ACTS[cfg["non_linearity"]]

    @staticmethod
    def spec(arch, cfg, d, adapter_name):
        shapes = {}
        for i in range(arch["layers"]):
            for site, on in (("attention_adapters", cfg["mh_adapter"]),
                             ("output_adapters", cfg["output_adapter"])):
                if on:
                    key = f"{layer_prefix(arch, i)}.{site}.adapters.{adapter_name}."
                    shapes.update(bottleneck_spec(key, arch["hidden"], d, cfg["ln_before"]))
        return shapes

    def site(self, lp, site, r, h):
        key = f"{lp}.{site}.adapters.{self.name}."
        c = self.cfg
        f = lambda v: bottleneck(self.P, key, v, self.act, c["scaling"], c["ln_before"])
        if c["is_parallel"]:
            return r + h + f(r)
        return r + h + f(h + r if c["original_ln_before"] else h)

    def attn_residual(self, lp, x, a):
        return self.site(lp, "attention_adapters", x, a) if self.cfg["mh_adapter"] else x + a

    def mlp_residual(self, lp, u, m):
        return self.site(lp, "output_adapters", u, m) if self.cfg["output_adapter"] else u + m


IO_DOWN = "adapter_down"  # the io adapter's down Linear (no Sequential index: our own format)


class IOAdapter(Method):
    """Our io adapter (README): x0 <- x0 + up(act(down(x0))) on the embedding output before
    layer 0 (GPT-2: wte + wpe), h <- h + up(act(down(h))) on the last layer's output before the
    final norm. Keys io_adapters.{input,output}.adapter_{down,up}.{weight,bias}."""

    def __init__(self, P, non_linearity):
        super().__init__(P)
        self.act = ACTS[non_linearity]

    @staticmethod
    def spec(hidden, d):
        shapes = {}
        for where in ("input", "output"):
            k = f"io_adapters.{where}."
            shapes.update({k + IO_DOWN + ".weight": [d, hidden], k + IO_DOWN + ".bias": [d],
                           k + "adapter_up.weight": [hidden, d], k + "adapter_up.bias": [hidden]})
        return shapes

    def io(self, where, x):
        k = f"io_adapters.{where}."
        z = self.act(x @ self.P[k + IO_DOWN + ".weight"].t() + self.P[k + IO_DOWN + ".bias"])
        return x + z @ self.P[k + "adapter_up.weight"].t() + self.P[k + "adapter_up.bias"]

    def embed_output(self, x):
        return self.io("input", x)

    def final_hidden(self, h):
        return self.io("output", h)


def bottleneck_dim(hidden, reduction_factor):
    return max(1, int(hidden // reduction_factor))


# --------------------------------------------------------------------------------------------------
# Golden checks (files written by peft 0.20 / adapters 1.1.0)
# --------------------------------------------------------------------------------------------------

class Failure(Exception):
    pass


def tensors_f64(path):
    t, meta = ref.st_read(path)
    return {k: torch.from_numpy(v).to(torch.float64) for k, v in t.items()}, meta


def check_keys(name, P, spec):
    """The file must hold exactly the keys and shapes derived from its config."""
    got = {k: list(v.shape) for k, v in P.items()}
    if got != spec:
        missing = sorted(set(spec) - set(got))[:3]
        extra = sorted(set(got) - set(spec))[:3]
        wrong = sorted(k for k in set(got) & set(spec) if got[k] != spec[k])[:3]
        raise Failure(f"{name}: keys/shapes differ from the config: missing {missing}, "
                      f"unexpected {extra}, wrong shape {wrong}")


def peft_method_from_config(arch, cfg, P):
    """A Method for a peft adapter_config.json (as save_pretrained wrote it), and its {key: shape}."""
    modules = linear_modules(arch)
    kind = cfg["peft_type"]
    if kind == "LORA":
        if cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("lora_dropout"):
            raise Failure("rank/alpha patterns and dropout are not implemented")
        if cfg.get("bias", "none") != "none" or cfg.get("modules_to_save"):
            raise Failure("bias / modules_to_save are not implemented")
        targets = [p for p in modules if peft_targets(p, cfg["target_modules"],
                                                      cfg.get("layers_to_transform"),
                                                      cfg.get("layers_pattern"))]
        spec = LoRA.spec(modules, targets, cfg["r"], cfg.get("lora_bias", False),
                         cfg.get("use_dora", False))
        return LoRA(P, targets, cfg["r"], cfg["lora_alpha"], cfg.get("use_rslora", False),
                    cfg.get("lora_bias", False), cfg.get("use_dora", False)), spec
    if kind == "IA3":
        targets = [p for p in modules if peft_targets(p, cfg["target_modules"])]
        ff = [p for p in targets if ia3_is_feedforward(p, cfg["feedforward_modules"])]
        return IA3(P, targets, ff), IA3.spec(modules, targets, ff)
    nvt = cfg["num_virtual_tokens"]
    if kind == "PROMPT_TUNING":
        if cfg.get("num_transformer_submodules", 1) != 1:
            raise Failure("seq2seq prompt tuning is not implemented")
        return Prompt(P), {"prompt_embeddings": [nvt, cfg["token_dim"]]}
    if kind == "PREFIX_TUNING":
        if cfg["token_dim"] != ref.kv_dim(arch):
            raise Failure(f"token_dim {cfg['token_dim']} != kv_dim {ref.kv_dim(arch)}")
        # The exported tensor is the prefix itself, with or without prefix_projection.
        return Prefix(P, False), {"prompt_embeddings": [nvt, arch["layers"] * 2 * ref.kv_dim(arch)]}
    raise Failure(f"peft_type {kind} not implemented")


# BnConfig fields our implementation assumes at their default value.
BN_DEFAULTS = dict(residual_before_ln=True, original_ln_after=True, ln_after=False,
                   use_gating=False, adapter_residual_before_ln=False, leave_out=[],
                   phm_layer=False, inv_adapter=None, cross_adapter=False, dropout=0.0,
                   stochastic_depth=0.0)


def adapterhub_method_from_config(arch, full, P):
    cfg, name = full["config"], full["name"]
    for k, v in BN_DEFAULTS.items():
        if cfg.get(k, v) != v:
            raise Failure(f"BnConfig {k}={cfg[k]} is not implemented")
    if full["hidden_size"] != arch["hidden"] or isinstance(cfg["reduction_factor"], dict):
        raise Failure("hidden size / reduction factor mapping")
    bn = {k: cfg[k] for k in ("mh_adapter", "output_adapter", "non_linearity", "scaling",
                              "is_parallel", "original_ln_before", "ln_before")}
    d = bottleneck_dim(arch["hidden"], cfg["reduction_factor"])
    return Bottleneck(P, bn, name), Bottleneck.spec(arch, bn, d, name)


def golden_targets(ids, n_virtual):
    """HF's shifted labels; with prompt tuning the first real token (predicted by the last virtual
    position) is not counted, as in the golden files (tests/fixtures/ref/README.md)."""
    labels = torch.cat([torch.full((1, n_virtual), IGNORE_INDEX), ids], dim=1)
    targets = ref.shift_labels(labels)
    if n_virtual:
        targets[:, n_virtual - 1] = IGNORE_INDEX
    return targets


def run_golden(arch, W, inputs, method):
    nlls, losses = [], []
    v = method.virtual()
    n_virtual = 0 if v is None else v.shape[0]
    for item in inputs:
        ids = torch.tensor([item["input_ids"]])
        targets = golden_targets(ids, n_virtual)
        with torch.no_grad():
            nll, loss = ref.token_nll(forward(arch, W, ids, method), targets)
        nlls.append(nll[0][targets[0] >= 0].tolist())
        losses.append(loss.item())
    return nlls, losses


def golden_checks(golden_dir):
    """One line per golden file; returns [(name, max rel diff)]. Raises Failure if any fails."""
    inputs = ref.read_jsonl(os.path.join(golden_dir, "inputs.jsonl"))
    results, failures = [], []

    def report(name, ok, worst, note=""):
        print(f"[golden] {'OK  ' if ok else 'FAIL'} {name:36s} max rel diff {worst:.3e} {note}".rstrip())
        results.append((name, worst))
        if not ok:
            failures.append(name)

    models = {}
    for model in ("gpt2-tiny", "llama-tiny"):
        models[model] = ref.load_model_dir(os.path.join(golden_dir, model))
        expected = ref.read_jsonl(os.path.join(golden_dir, model, "expected.jsonl"))
        report(f"{model} (base model)", *ref.compare(*run_golden(*models[model], inputs, Method()),
                                                    expected))

    for lib, weights in (("peft", "adapter_model.safetensors"), ("adapterhub", "adapter.safetensors")):
        for name in sorted(os.listdir(os.path.join(golden_dir, lib))):
            d = os.path.join(golden_dir, lib, name)
            model = "gpt2-tiny" if name.startswith("gpt2-tiny-") else "llama-tiny"
            arch, W = models[model]
            with open(os.path.join(d, "adapter_config.json")) as f:
                cfg = json.load(f)
            try:
                P, _ = tensors_f64(os.path.join(d, weights))
                build = peft_method_from_config if lib == "peft" else adapterhub_method_from_config
                method, spec = build(arch, cfg, P)
                check_keys(name, P, spec)
                got = run_golden(arch, W, inputs, method)
            except Failure as e:
                report(f"{lib}/{name}", False, float("inf"), str(e))
                continue
            expected = ref.read_jsonl(os.path.join(d, "expected.jsonl"))
            report(f"{lib}/{name}", *ref.compare(*got, expected))
    if failures:
        raise Failure(", ".join(failures))
    return results


# --------------------------------------------------------------------------------------------------
# Consistency with tests/fixtures/ref (make_fixtures.py)
# --------------------------------------------------------------------------------------------------

def ref_checks(ref_dir):
    """This forward, with the base / prompt / prefix of a ref case, must reproduce that case's
    logits, loss and adapter gradient (same function, so ~1e-15)."""
    results = []
    for case, kind, leaf in (("gpt2", None, None), ("gpt2_prompt", "prompt", "virtual_embeds"),
                             ("gpt2_prefix", "prefix", "prefix"), ("llama_gqa", None, None),
                             ("llama_prompt", "prompt", "virtual_embeds"),
                             ("llama_prefix", "prefix", "prefix")):
        d = os.path.join(ref_dir, case)
        arch, W = ref.load_model_dir(d)
        e, _ = tensors_f64(os.path.join(d, "expected.safetensors"))
        P = {} if leaf is None else {"prompt_embeddings": e[leaf].clone().requires_grad_(True)}
        method = {None: Method, "prompt": Prompt, "prefix": lambda P: Prefix(P, False)}[kind](P)
        logits = forward(arch, W, e["input_ids"].long(), method)
        _, loss = ref.token_nll(logits, e["targets"].long())
        diffs = [abs(loss.item() - e["loss_f64"].item()) / e["loss_f64"].item(),
                 float((logits.detach().float().double() - e["logits"]).abs().max()
                       / e["logits"].abs().max())]
        if leaf is not None:
            loss.backward()
            g = P["prompt_embeddings"].grad.float().double()
            diffs.append(float((g - e["grad." + leaf]).abs().max() / e["grad." + leaf].abs().max()))
        worst = max(diffs)
        # loss in float64 to 1e-12; logits and gradients are stored as F32 (rounding ~6e-8)
        ok = diffs[0] <= 1e-12 and max(diffs[1:]) <= 1e-6
        print(f"[ref]    {'OK  ' if ok else 'FAIL'} {case:36s} loss rel diff {diffs[0]:.1e}, "
              f"F32 logits{'/grad' if leaf else ''} {max(diffs[1:]):.1e}")
        if not ok:
            raise Failure(f"ref case {case} not reproduced")
        results.append((case, worst))
    return results


# --------------------------------------------------------------------------------------------------
# Fixture cases
# --------------------------------------------------------------------------------------------------

GPT2_ALL = ["c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
LLAMA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_DEFAULTS = dict(r=8, lora_alpha=8, lora_dropout=0.0, use_rslora=False, lora_bias=False,
                     layers_to_transform=None)

# case -> (model directory under --ref, method, method parameters). Parameter names are the CLI's.
CASES = {
    "gpt2_lora": ("gpt2", "lora", dict(target_modules=GPT2_ALL, r=4, lora_alpha=8)),
    "gpt2_lora_layers": ("gpt2", "lora", dict(target_modules=["c_attn"], layers_to_transform=[1],
                                               r=2, lora_alpha=4, lora_bias=True)),
    "llama_lora": ("llama_gqa", "lora", dict(target_modules=LLAMA_ALL, r=4, lora_alpha=8)),
    "llama_rslora": ("llama_gqa", "lora", dict(target_modules=["q_proj", "v_proj"], r=4,
                                               lora_alpha=8, use_rslora=True)),
    "gpt2_dora": ("gpt2", "dora", dict(target_modules=["c_attn", "mlp.c_fc"], r=4, lora_alpha=8)),
    "llama_dora": ("llama_gqa", "dora", dict(target_modules=["q_proj", "v_proj", "down_proj"], r=4,
                                             lora_alpha=8)),
    "gpt2_ia3": ("gpt2", "ia3", dict(target_modules=GPT2_ALL, feedforward_modules=["mlp.c_proj"])),
    "llama_ia3": ("llama_gqa", "ia3", dict(target_modules=["k_proj", "v_proj", "down_proj"],
                                           feedforward_modules=["down_proj"])),
    "gpt2_prompt": ("gpt2", "prompt", dict(num_virtual_tokens=3)),
    "llama_prompt": ("llama_gqa", "prompt", dict(num_virtual_tokens=3)),
    "gpt2_prefix": ("gpt2", "prefix", dict(num_virtual_tokens=2, prefix_projection=False)),
    "llama_prefix": ("llama_gqa", "prefix", dict(num_virtual_tokens=2, prefix_projection=False)),
    "gpt2_prefix_proj": ("gpt2", "prefix", dict(num_virtual_tokens=2, prefix_projection=True,
                                                encoder_hidden_size=24)),
    "llama_prefix_proj": ("llama_gqa", "prefix", dict(num_virtual_tokens=2, prefix_projection=True,
                                                      encoder_hidden_size=24)),
    "gpt2_houlsby": ("gpt2", "houlsby", dict(reduction_factor=8)),
    "llama_houlsby": ("llama_gqa", "houlsby", dict(reduction_factor=8)),
    "gpt2_pfeiffer": ("gpt2", "pfeiffer", dict(reduction_factor=8)),
    "llama_pfeiffer": ("llama_gqa", "pfeiffer", dict(reduction_factor=8)),
    "gpt2_parallel": ("gpt2", "parallel", dict(reduction_factor=8)),
    "llama_parallel": ("llama_gqa", "parallel", dict(reduction_factor=8)),
    "gpt2_bapna": ("gpt2", "bapna", dict(reduction_factor=8)),
    "llama_bapna": ("llama_gqa", "bapna", dict(reduction_factor=8)),
    "gpt2_io": ("gpt2", "io", dict(reduction_factor=16, non_linearity="relu")),
    "llama_io": ("llama_gqa", "io", dict(reduction_factor=16, non_linearity="relu")),
}
CASE_SEEDS = {name: 3001 + i for i, name in enumerate(CASES)}
# The ref case whose batch (input_ids, targets) a method case reuses.
REF_BATCH = {("gpt2", "prompt"): "gpt2_prompt", ("gpt2", "prefix"): "gpt2_prefix",
             ("llama_gqa", "prompt"): "llama_prompt", ("llama_gqa", "prefix"): "llama_prefix"}


def resolve_case(arch, method, params):
    """The full case.json parameters, the Method class builder and the {key: shape} spec."""
    modules = linear_modules(arch)
    c = arch["hidden"]
    if method in ("lora", "dora"):
        p = dict(LORA_DEFAULTS, **params)
        targets = [m for m in modules if peft_targets(m, p["target_modules"], p["layers_to_transform"])]
        use_dora = method == "dora"
        p["use_dora"] = use_dora
        p["scaling"] = p["lora_alpha"] / math.sqrt(p["r"]) if p["use_rslora"] else p["lora_alpha"] / p["r"]
        p["fan_in_fan_out"] = arch["kind"] == "gpt2"
        p["modules"] = targets
        spec = LoRA.spec(modules, targets, p["r"], p["lora_bias"], use_dora)
        build = lambda P: LoRA(P, targets, p["r"], p["lora_alpha"], p["use_rslora"], p["lora_bias"],
                               use_dora)
        return p, build, spec
    if method == "ia3":
        p = dict(params)
        targets = [m for m in modules if peft_targets(m, p["target_modules"])]
        ff = [m for m in targets if ia3_is_feedforward(m, p["feedforward_modules"])]
        p["modules"], p["feedforward"] = targets, ff
        p["fan_in_fan_out"] = arch["kind"] == "gpt2"
        return p, lambda P: IA3(P, targets, ff), IA3.spec(modules, targets, ff)
    if method == "prompt":
        p = dict(params, token_dim=c)
        return p, Prompt, {"prompt_embeddings": [p["num_virtual_tokens"], c]}
    if method == "prefix":
        kd, L = ref.kv_dim(arch), arch["layers"]
        p = dict(params, token_dim=kd, num_layers=L, num_attention_heads=arch["kv_heads"])
        p.setdefault("encoder_hidden_size", None)
        nvt = p["num_virtual_tokens"]
        if not p["prefix_projection"]:
            spec = {"prompt_embeddings": [nvt, L * 2 * kd]}
        else:
            e = p["encoder_hidden_size"]
            spec = {"prompt_encoder.embedding.weight": [nvt, kd],
                    "prompt_encoder.transform.0.weight": [e, kd],
                    "prompt_encoder.transform.0.bias": [e],
                    "prompt_encoder.transform.2.weight": [L * 2 * kd, e],
                    "prompt_encoder.transform.2.bias": [L * 2 * kd]}
        return p, lambda P: Prefix(P, p["prefix_projection"]), spec
    if method in BN_CONFIGS:
        bn = dict(BN_CONFIGS[method])
        p = dict(bn, adapter_name="default", **params)
        p.update(residual_before_ln=True, original_ln_after=True, ln_after=False,
                 ln_eps=ADAPTER_LN_EPS if bn["ln_before"] else None)
        d = bottleneck_dim(c, p["reduction_factor"])
        p["bottleneck_dim"] = d
        return p, lambda P: Bottleneck(P, bn, "default"), Bottleneck.spec(arch, bn, d, "default")
    if method == "io":
        p = dict(params)
        d = bottleneck_dim(c, p["reduction_factor"])
        p["bottleneck_dim"] = d
        return p, lambda P: IOAdapter(P, p["non_linearity"]), IOAdapter.spec(c, d)
    raise ValueError(method)


def init_trainable(arch, W, method, params, spec, seed):
    """Random trainable tensors in which every term matters, drawn in spec order from one seeded
    generator, rounded to F32 (see README: LoRA B non-zero, DoRA magnitude off the row norms, IA3
    off 1, adapter up-projections non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    randn = lambda shape: torch.randn(shape, generator=gen, dtype=torch.float64)
    P = {}
    for key, shape in spec.items():
        z = randn(shape)
        if key.endswith(".lora_A.weight"):
            t = z / math.sqrt(shape[1])
        elif key.endswith(".lora_B.weight"):
            t = 0.3 * z / math.sqrt(shape[1])
        elif key.endswith(".lora_B.bias"):
            t = 0.05 * z
        elif key.endswith(".lora_magnitude_vector"):
            t = z  # replaced below, once A and B are known
        elif key.endswith(".ia3_l"):
            t = 1.0 + 0.2 * z
        elif key == "prompt_embeddings":
            t = z / math.sqrt(arch["hidden"]) if method == "prompt" else z
        elif key == "prompt_encoder.embedding.weight":
            t = z
        elif key.startswith("prompt_encoder.transform.") and key.endswith(".weight"):
            t = 1.5 * z / math.sqrt(shape[1])
        elif key.endswith("adapter_down.0.weight") and len(shape) == 1:  # Bapna's LayerNorm gain
            t = 1.0 + 0.1 * z
        elif key.endswith("adapter_down.0.bias") and params.get("ln_before"):  # its bias
            t = 0.05 * z
        elif key.endswith(".bias"):
            t = 0.1 * z
        elif "adapter_down" in key:
            t = z / math.sqrt(shape[1])
        elif "adapter_up" in key:
            t = 0.5 * z / math.sqrt(shape[1])
        else:
            raise ValueError(f"no init rule for {key}")
        P[key] = ref.f32_round(t)
    if method == "dora":  # m = ||W + s B A||_row * (1 + N(0, 0.1)): off the row norms
        for path in params["modules"]:
            k = PEFT_PREFIX + path
            w = W[path + ".weight"].t() if arch["kind"] == "gpt2" else W[path + ".weight"]
            norm = torch.linalg.norm(w + params["scaling"] * (P[k + ".lora_B.weight"]
                                                              @ P[k + ".lora_A.weight"]), dim=1)
            P[k + ".lora_magnitude_vector"] = ref.f32_round(norm * (1.0 + 0.1 * randn(norm.shape)))
    return P


def compute(arch, W, batch, build, P, dtype=torch.float64):
    """Forward + backward: logits, loss, gradients of every trainable tensor (and the method)."""
    leaves = {k: v.to(dtype).clone().requires_grad_(True) for k, v in P.items()}
    Wd = {k: v.to(dtype) for k, v in W.items()}
    method = build(leaves)
    logits = forward(arch, Wd, batch["input_ids"], method)
    _, loss = ref.token_nll(logits, batch["targets"])
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach()}
    for k, t in leaves.items():
        out["grad." + k] = t.grad.detach()
    if isinstance(method, Prefix) and method.projection:
        with torch.no_grad():
            out["prefix_output"] = prefix_mlp(leaves)
    return out, method


def check_gradients(arch, W, batch, build, P, res, method, seed):
    """Every trainable tensor gets a non-zero gradient, and a finite difference of the loss
    along one random unit direction in all trainable tensors agrees with sum(grad * direction).
    DoRA: the row norms are held at their value at P, the function whose gradient autograd gives
    once the norm is detached."""
    for k in P:
        if not res["grad." + k].abs().max() > 0:
            raise Failure(f"gradient of {k} is identically zero")
    frozen = dict(method.norms) if isinstance(method, LoRA) and method.use_dora else None
    gen = torch.Generator().manual_seed(seed)
    direction = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in P.items()}
    norm = math.sqrt(sum(float((d * d).sum()) for d in direction.values()))
    predicted = sum(float((res["grad." + k] * d).sum()) for k, d in direction.items()) / norm

    def loss_at(eps):
        m = build({k: v + eps * direction[k] / norm for k, v in P.items()})
        if frozen is not None:
            m.frozen_norms = frozen
        with torch.no_grad():
            return ref.token_nll(forward(arch, W, batch["input_ids"], m), batch["targets"])[1].item()

    # central differences at h and h/2, Richardson-extrapolated: truncation error O(h^4)
    h = 1e-3
    central = lambda e: (loss_at(e) - loss_at(-e)) / (2 * e)
    numeric = (4 * central(h / 2) - central(h)) / 3
    rel = abs(numeric - predicted) / abs(predicted)
    if rel > 1e-7:
        raise Failure(f"finite difference {numeric} != autograd {predicted}")
    return rel


MAX_DRAWS = 20


def dead_units(P, res):
    """Bottleneck units whose ReLU is off at every position (their down row and up column would get
    exactly zero gradient, so that part of the adapter would not be tested): [(key, row)]."""
    dead = []
    for k in P:
        if re.search(r"adapter_down(\.\d)?\.weight$", k) and P[k].dim() == 2:
            g = res["grad." + k]
            dead += [(k, i) for i in range(g.shape[0]) if not g[i].abs().max() > 0]
    return dead


def load_batch(ref_dir, case, n_virtual):
    """input_ids and targets of a ref case, as long tensors."""
    e, _ = ref.st_read(os.path.join(ref_dir, case, "expected.safetensors"))
    ids = torch.from_numpy(e["input_ids"]).long()
    targets = torch.from_numpy(e["targets"]).long()
    assert targets.shape[1] == ids.shape[1] + n_virtual, (case, targets.shape)
    return {"input_ids": ids, "targets": targets}


def build_case(ref_dir, case):
    model, method, params = CASES[case]
    arch, W = ref.load_model_dir(os.path.join(ref_dir, model))
    full, build, spec = resolve_case(arch, method, params)
    n_virtual = full["num_virtual_tokens"] if method == "prompt" else 0
    n_prefix = full["num_virtual_tokens"] if method == "prefix" else 0
    batch_case = REF_BATCH.get((model, method), model)
    batch = load_batch(ref_dir, batch_case, n_virtual)
    for attempt in range(MAX_DRAWS):
        seed = CASE_SEEDS[case] + 100 * attempt
        P = init_trainable(arch, W, method, full, spec, seed)
        assert {k: list(v.shape) for k, v in P.items()} == spec
        res, m = compute(arch, W, batch, build, P)
        if not dead_units(P, res):
            break
    else:
        raise Failure(f"{case}: dead bottleneck units after {MAX_DRAWS} draws: {dead_units(P, res)}")
    fd = check_gradients(arch, W, batch, build, P, res, m, seed + 50)
    res32, _ = compute(arch, W, batch, build, P, dtype=torch.float32)
    undetached = None
    if method == "dora":  # how far the gradient moves if the norm is (wrongly) not detached
        def build_undetached(P):
            mm = build(P)
            mm.detach_norm = False
            return mm
        res_u, _ = compute(arch, W, batch, build_undetached, P)
        undetached = max(float((res_u[k] - res[k]).abs().max() / res[k].abs().max())
                         for k in res if k.startswith("grad."))
    errs = {k: float((res32[k].double() - v).abs().max() / v.abs().max().clamp(min=1e-300))
            for k, v in res.items()}
    with torch.no_grad():
        base_loss = ref.token_nll(forward(arch, W, batch["input_ids"], Method()),
                                  batch["targets"][:, n_virtual:])[1]  # same predictions counted
    case_json = dict(model=model, method=method, **full)
    info = dict(n_virtual=n_virtual, n_prefix=n_prefix, fd=fd, errs=errs, base_loss=base_loss.item(),
                batch_case=batch_case, seed=seed, undetached=undetached,
                n_params=sum(int(v.numel()) for v in P.values()))
    return case_json, P, batch, res, info


def write_case(out_dir, case, case_json, P, batch, res, info):
    d = os.path.join(out_dir, case)
    os.makedirs(d, exist_ok=True)
    ref.write_json(os.path.join(d, "case.json"), case_json)
    f32 = lambda t: ("F32", t.detach().to(torch.float32).numpy())
    ref.st_write(os.path.join(d, "adapter.safetensors"), {k: f32(v) for k, v in P.items()},
                 {"format": "pt"})
    tensors = {"input_ids": ("I32", batch["input_ids"].to(torch.int32).numpy()),
               "targets": ("I32", batch["targets"].to(torch.int32).numpy()),
               "logits": f32(res["logits"]), "loss": f32(res["loss"]),
               "loss_f64": ("F64", res["loss"].numpy())}
    for k, v in res.items():
        if k.startswith("grad.") or k == "prefix_output":
            tensors[k] = f32(v)
    ref.st_write(os.path.join(d, "expected.safetensors"), tensors,
                 {"peft_fixture": "1", "case": case, "method": case_json["method"],
                  "n_virtual": str(info["n_virtual"]), "n_prefix": str(info["n_prefix"])})
    # read back: the files round-trip exactly
    a, meta = ref.st_read(os.path.join(d, "adapter.safetensors"))
    assert meta == {"format": "pt"} and set(a) == set(P)
    for k, v in a.items():
        assert np.array_equal(v, P[k].to(torch.float32).numpy()), k
    e, _ = ref.st_read(os.path.join(d, "expected.safetensors"))
    assert float(e["loss_f64"]) == res["loss"].item()
    assert {k for k in e if k.startswith("grad.")} == {"grad." + k for k in P}


# --------------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------------

README_TEMPLATE = """\
# PEFT method fixtures (generated: do not edit)

Ground truth for the C tests of every PEFT method: for each case a set of trainable tensors on one
of the tiny models of `tests/fixtures/ref`, with the logits, loss and the gradient of the loss with
respect to every trainable tensor, computed by `scripts/make_method_fixtures.py`: a float64 PyTorch
implementation of Hugging Face `peft` 0.20 and AdapterHub `adapters` 1.1.0, written from
`../shared/FORMATS.md` §2 and §3.6, on top of the model reference of `scripts/make_fixtures.py`.

Regenerate from the repository root (Debian's PyTorch 1.13, numpy; no transformers/peft/adapters):

    /usr/bin/python3 scripts/make_method_fixtures.py   # --out tests/fixtures/methods --ref tests/fixtures/ref --golden ../shared/golden

The script is deterministic (fixed seeds, one thread): a rerun gives byte-identical files. Before
writing anything it checks itself (one line per check; any failure: exit 1, nothing written):

* against every adapter in `../shared/golden/peft` and `../shared/golden/adapterhub`, saved by the
  real libraries: the adapter file must hold exactly the keys and shapes derived from its
  `adapter_config.json`, and every per-position nll and the loss of the four inputs of
  `inputs.jsonl` must agree with `expected.jsonl` to 1e-9 relative (also the two base models);
* against `tests/fixtures/ref` (`gpt2`, `gpt2_prompt`, `gpt2_prefix`, `llama_gqa`, `llama_prompt`,
  `llama_prefix`): this forward reproduces their loss (1e-12) and F32 logits and prompt/prefix
  gradients;
* per case: every trainable tensor has a non-zero gradient, no ReLU unit of a bottleneck is off at
  every position, and a finite difference of the loss along a random direction in all trainable
  tensors (central differences at h = 1e-3 and h/2, Richardson-extrapolated) agrees with the
  gradient to 1e-7 relative (DoRA: with the row norms held fixed, see below).

## Golden check results (max relative difference over all nll values and losses)

| check | max rel diff |
|---|---|
{golden_rows}

## Files of a case `<case>/`

* `case.json`: `{{"model": <directory under tests/fixtures/ref holding config.json and
  model.safetensors>, "method": <the --method name>, ...parameters}}` with the CLI's parameter
  names (see "Cases"); `json.dumps(indent=2, sort_keys=True)` + newline. Besides the parameters
  given it spells out everything derived that the C side must agree on: `modules` (the HF module
  paths that matched `target_modules` and `layers_to_transform`, in module order), `feedforward`
  (IA3), `scaling` (LoRA/DoRA), `fan_in_fan_out` (true on GPT-2's Conv1D), `token_dim`,
  `num_layers`, `num_attention_heads` (prompt/prefix, peft's GQA-adjusted values), and for the
  bottleneck adapters the BnConfig fields used (`mh_adapter`, `output_adapter`, `non_linearity`,
  `scaling`, `is_parallel`, `original_ln_before`, `ln_before`, `residual_before_ln`,
  `original_ln_after`, `ln_after`, `ln_eps`, the AdapterHub `preset`) and `bottleneck_dim`.
* `adapter.safetensors`: the trainable tensors, F32, metadata `{{"format":"pt"}}`, written like the
  reference safetensors writer (same writer as `make_fixtures.py`). Key names are the ones the C code
  registers (below).
* `expected.safetensors`, metadata `{{"peft_fixture":"1","case":<case>,"method":<method>,
  "n_virtual":<k>,"n_prefix":<p>}}`. B = {batch}, T = {seq}, S = n_virtual + T:

| tensor | dtype | shape | meaning |
|---|---|---|---|
| `input_ids` | I32 | [B, T] | real token ids (the batch of the ref case named in the table below) |
| `targets` | I32 | [B, S] | shifted targets, -100 = no loss (tests/fixtures/ref/README.md conventions) |
| `logits` | F32 | [B, S, V] | logits of every position, virtual ones included |
| `loss` | F32 | [] | mean over positions with target >= 0 of -log_softmax(logits)[target] |
| `loss_f64` | F64 | [] | the same in float64 |
| `grad.<key>` | F32 | shape of `<key>` | d loss / d trainable tensor, for every key of `adapter.safetensors` (and nothing else) |
| `prefix_output` | F32 | [n_prefix, L*2*kv_dim] | prefix cases with projection only: the MLP output (what peft exports as `prompt_embeddings`) |

Everything is computed in float64 from exactly the F32 values stored in the files, then cast to F32.
The base weights are frozen (no gradients stored for them).

## Key names

* peft methods, module paths as in HF (`transformer.h.0.attn.c_attn`,
  `model.layers.1.self_attn.q_proj`): `base_model.model.<module>.lora_A.weight` [r, in],
  `.lora_B.weight` [out, r], `.lora_B.bias` [out] (lora_bias), `.lora_magnitude_vector` [out]
  (DoRA), `.ia3_l` [out, 1] or [1, in] (feed-forward). For GPT-2's Conv1D, in/out come from its
  [in, out] weight; the LoRA matrices keep nn.Linear orientation.
* prompt tuning: `prompt_embeddings` [n_virtual, hidden].
* prefix tuning without projection: `prompt_embeddings` [n_prefix, L*2*kv_dim] (kv_dim =
  kv_heads * head_dim). With projection, peft's in-memory names without the adapter name:
  `prompt_encoder.embedding.weight` [n_prefix, kv_dim], `prompt_encoder.transform.0.{{weight,bias}}`
  [encoder_hidden_size, kv_dim], [encoder_hidden_size], `prompt_encoder.transform.2.{{weight,bias}}`
  [L*2*kv_dim, encoder_hidden_size], [L*2*kv_dim].
* AdapterHub adapters (adapter name `default`): GPT-2
  `transformer.h.{{i}}.{{attention_adapters|output_adapters}}.adapters.default.{{adapter_down.0|adapter_up}}.{{weight|bias}}`,
  Llama `model.layers.{{i}}.` with the same suffixes; `adapter_down.0.weight` [d, H], `.bias` [d],
  `adapter_up.weight` [H, d], `.bias` [H]. Bapna (`ln_before`): `adapter_down.0.{{weight,bias}}` is
  the LayerNorm [H] and `adapter_down.1.{{weight,bias}}` the Linear (the `adapter_norm_before.*`
  alias of the same LayerNorm is not stored).
* io adapter: `io_adapters.{{input,output}}.adapter_down.{{weight,bias}}` [d, H], [d],
  `io_adapters.{{input,output}}.adapter_up.{{weight,bias}}` [H, d], [H].

## Formulas implemented (W the frozen [out, in] weight, b its bias, x the layer input)

* **LoRA** (FORMATS.md §2.2): `y = W x + b + s * (B (A x) + b_B)`, s = lora_alpha / r, or
  lora_alpha / sqrt(r) with `use_rslora` (§2.2 "Scaling"); `b_B` (lora_B.bias) only with
  `lora_bias`, scaled by s like the rest of lora_B's output. Targets: a module matches a
  `target_modules` entry when its path equals it or ends with "." + entry; `layers_to_transform`
  then keeps the modules whose first numbered path segment is listed (§2.2 "Target matching").
  Dropout 0 in every case.
* **DoRA** (§2.3): `y = W x + b + (f - 1) * (W x) + f * s * B (A x) = f * (W x + s B A x) + b`,
  f = m / n, n = ||W + s B A|| per output row (L2 over the input dimension; GPT-2: of the
  transposed Conv1D weight). **n is detached, as peft does (DoRA paper §4.3): the gradients treat
  n as a constant**, so m, A and B get gradients only through `f * (...)` and the numerator m,
  never through n. The finite-difference check holds n at its value for the same reason. The bias
  is not rescaled. The detach matters: without it the gradients would differ by up to
  {dora_undetached}
  (max abs diff / max abs of a tensor), far outside the tolerances below. Magnitudes are
  randomised off the row norms: m = n * (1 + N(0, 0.1)).
* **IA3** (§2.5): targets as LoRA; feed-forward modules (a PLAIN `endswith` against
  `feedforward_modules`, no leading dot) scale their input, `y = W (x * l) + b` with
  `ia3_l` [1, in]; the others scale their output including the bias, `y = (W x + b) * l` with
  `ia3_l` [out, 1].
* **Prompt tuning** (§2.6): `prompt_embeddings` rows are prepended to the word embeddings; GPT-2
  positions run 0..S-1. As in the golden files (and tests/fixtures/ref), the prediction of the
  first real token from the last virtual position is not counted: `targets[:, :n_virtual] = -100`.
* **Prefix tuning** (§2.7): each prefix row is `[K_0|V_0|K_1|V_1|...]`, blocks kv_heads x head_dim
  head-major; layer l's keys/values get the n_prefix entries prepended (no RoPE on them, visible to
  every query); the real tokens' positions are n_prefix..n_prefix+T-1. With `prefix_projection`
  the prefix is `transform.2(tanh(transform.0(embedding.weight)))` (nn.Linear = x W^T + b), and
  the gradients flow through the MLP into its parameters.
* **AdapterHub bottleneck adapters in GPT-2/Llama** (§3.6): x the block input, a the attention
  output (after c_proj / o_proj), u the stream after attention, m = MLP(norm_2(u));
  `f(v) = s * (W_up act(W_down v + b_down) + b_up)` (the scaling multiplies b_up too),
  d = int(H // reduction_factor).
  * `houlsby` (AdapterHub `double_seq_bn`): `u = x + a + f1(a)`, `y = u + m + f2(m)`, act SiLU
    ("swish"), s = 1.
  * `pfeiffer` (`seq_bn`): `u = x + a`, `y = u + m + f2(u + m)`, ReLU, s = 1.
  * `parallel` (`par_bn`): `u = x + a`, `y = u + m + f2(u)` with u the un-normalised stream (the
    input of ln_2 / post_attention_layernorm), ReLU, s = 4.
  * `bapna` (BnConfig mh_adapter true, output_adapter false, relu, ln_before true,
    original_ln_before false): `u = x + a + f1(LN_a(a))`, `y = u + m`, LN_a the adapter's own
    LayerNorm (biased variance, eps 1e-5, weight and bias, in Llama too), s = 1.
* **io adapter** (our own format; AdapterHub cannot express it, §3.6 last bullets): two
  bottlenecks with residual, ReLU (case `non_linearity`), d = int(H // reduction_factor)
  (reduction_factor 16 unless a case says otherwise):
  `x0 <- x0 + W_up,in relu(W_down,in x0 + b_down,in) + b_up,in` on the embedding output before
  layer 0 (GPT-2: after `wpe` is added; Llama: the token embeddings), and
  `h <- h + W_up,out relu(W_down,out h + b_down,out) + b_up,out` on the last layer's output, before
  the final norm (`ln_f` / `model.norm`). No scaling.

## Cases

Models (`tests/fixtures/ref`): `gpt2` (hidden 32, 2 layers, 4 heads, FFN 128, tied) and `llama_gqa`
(hidden 32, 2 layers, 4 query / 2 KV heads, head_dim 8, FFN 48, untied). "batch" is the ref case
whose `input_ids`/`targets` the case reuses (prompt cases extend the targets by n_virtual -100s,
exactly as the ref prompt cases do). loss (base) is the frozen model's loss on the same batch
(prompt cases: without the virtual tokens, counting the same predictions).

| case | model | method | parameters | trainable tensors | parameters (count) | batch | seed | loss | loss (base) |
|---|---|---|---|---|---|---|---|---|---|
{case_rows}

Initialisation: F32-rounded, one seeded generator per case, drawn in the key order of the method's
spec; a bottleneck case whose draw leaves a ReLU unit off at every position (which would leave part
of it untested) is redrawn with seed + 100, and "seed" is the one used.

* lora_A ~ N(0, 1/sqrt(in)), lora_B ~ 0.3 N(0, 1/sqrt(r)), lora_B.bias ~ N(0, 0.05);
* DoRA magnitude = row norm of W + s B A, times 1 + N(0, 0.1);
* ia3_l ~ 1 + N(0, 0.2);
* prompt embeddings ~ N(0, 1/sqrt(hidden)); prefix ~ N(0, 1); prefix MLP: embedding N(0, 1),
  weights 1.5 N(0, 1/sqrt(fan_in)), biases N(0, 0.1);
* bottleneck (and io) down ~ N(0, 1/sqrt(H)), up ~ 0.5 N(0, 1/sqrt(d)), biases N(0, 0.1); Bapna
  LayerNorm gain 1 + N(0, 0.1), bias N(0, 0.05).

## Tolerances for fp32 C code

The script also runs every case in float32 PyTorch; the worst error over all cases, as
max|f32 - f64| / max|f64| per tensor, is: logits {err_logits:.1e}, loss {err_loss:.1e}, gradients
{err_grad:.1e}. Use the same tolerances as tests/fixtures/ref/README.md: logits 1e-4 * max|expected|,
loss 1e-5 relative to `loss_f64`, every `grad.*` max|got - expected| <= 1e-4 * max|expected| over
the tensor.

## Notes for tests

* The key slice of a `c_attn` bias gradient is zero up to rounding (about 1e-17 against 0.2 for
  the rest of the tensor): adding a constant to every key shifts all scores of a query equally.
  This holds for `lora_B.bias` rows C..2C-1 of `gpt2_lora_layers` (as for `c_attn.bias` in the ref
  fixtures); compare with the tensor-wide tolerance above, never element-wise relative.
* DoRA's row norms use the current A and B at every step; only their gradient is cut.
* The bottleneck cases store only the trainable tensors of the method, under adapter name
  `default`; an AdapterHub export (adapter name from the run) renames `adapters.default.` and
  writes the Bapna LayerNorm under both `adapter_down.0.*` and `adapter_norm_before.*` if wanted
  (FORMATS.md §3.6: either loads).
* Not covered by a golden file (implemented from FORMATS.md only, exercised here): GPT-2 DoRA
  (Conv1D, transposed weight in the norm), `lora_bias`, `layers_to_transform`, prefix projection,
  `pfeiffer`/`houlsby`/`parallel` on the other model family than their golden file, `bapna`, and
  the `io` adapter (our own format).
"""


def describe_params(method, p):
    if method in ("lora", "dora"):
        s = f"targets {','.join(p['target_modules'])}; r {p['r']}, alpha {p['lora_alpha']}"
        if p["use_rslora"]:
            s += ", rslora"
        if p["lora_bias"]:
            s += ", lora_bias"
        if p["layers_to_transform"] is not None:
            s += f", layers {p['layers_to_transform']}"
        return s + f" (s = {p['scaling']:g})"
    if method == "ia3":
        return f"targets {','.join(p['target_modules'])}; feedforward {','.join(p['feedforward_modules'])}"
    if method == "prompt":
        return f"{p['num_virtual_tokens']} virtual tokens"
    if method == "prefix":
        s = f"{p['num_virtual_tokens']} prefix tokens, kv_dim {p['token_dim']}"
        return s + (f", projection, encoder hidden {p['encoder_hidden_size']}"
                    if p["prefix_projection"] else ", no projection")
    if method in BN_CONFIGS:
        return (f"{p['preset'] or 'BnConfig'}, rf {p['reduction_factor']} (d {p['bottleneck_dim']}), "
                f"{p['non_linearity']}, s {p['scaling']:g}")
    return f"rf {p['reduction_factor']} (d {p['bottleneck_dim']}), {p['non_linearity']}"


def write_readme(out_dir, golden, refs, built, worst):
    golden_rows = [f"| golden `{n}` | {w:.1e} |" for n, w in golden]
    golden_rows += [f"| ref `{n}` (loss, F32 logits, grad) | {w:.1e} |" for n, w in refs]
    rows = []
    for case, (cj, P, batch, res, info) in built.items():
        rows.append(f"| `{case}` | {cj['model']} | {cj['method']} | {describe_params(cj['method'], cj)} | "
                    f"{len(P)} | {info['n_params']} | {info['batch_case']} | {info['seed']} | "
                    f"{res['loss'].item():.6f} | {info['base_loss']:.6f} |")
    text = README_TEMPLATE.format(golden_rows="\n".join(golden_rows), case_rows="\n".join(rows),
                                  batch=ref.BATCH, seq=ref.SEQ, err_logits=worst["logits"],
                                  err_loss=worst["loss"], err_grad=worst["grad.*"],
                                  dora_undetached=", ".join(
                                      f"{info['undetached']:.1e} ({case})"
                                      for case, (_, _, _, _, info) in built.items()
                                      if info["undetached"] is not None))
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


# --------------------------------------------------------------------------------------------------

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "methods"))
    ap.add_argument("--ref", default=os.path.join(root, "tests", "fixtures", "ref"))
    ap.add_argument("--golden", default=os.path.join(root, "..", "shared", "golden"))
    args = ap.parse_args()
    try:
        golden = golden_checks(args.golden)
        refs = ref_checks(args.ref)
        built, worst = {}, {}
        for case in CASES:
            built[case] = build_case(args.ref, case)
            cj, P, batch, res, info = built[case]
            for k, e in info["errs"].items():
                group = "grad.*" if k.startswith("grad.") else k
                worst[group] = max(worst.get(group, 0.0), e)
            if info["undetached"] is not None:
                print(f"[dora]        {case}: gradients without the detach would differ by up to "
                      f"{info['undetached']:.1e} (max abs diff / max abs, per tensor)")
            print(f"[case]   OK   {case:20s} loss {res['loss'].item():.6f} (base "
                  f"{info['base_loss']:.6f})  {len(P):2d} tensors {info['n_params']:5d} params  "
                  f"fin.diff {info['fd']:.0e}  fp32-vs-f64: logits {info['errs']['logits']:.1e} "
                  f"grads {max(v for k, v in info['errs'].items() if k.startswith('grad.')):.1e}")
    except (Failure, AssertionError, OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for case, item in built.items():
        write_case(args.out, case, *item)
    write_readme(args.out, golden, refs, built, worst)
    print(f"[write]  {len(built)} cases and README.md in {os.path.relpath(args.out, root)}; worst "
          f"fp32-vs-f64: " + ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
