#!/usr/bin/python3
"""Fixtures for the NF4 / double-quantisation codec (common/quant/) and the bnb-4bit loader.

bitsandbytes is not installed here, so this script carries a reference implementation of its
algorithm written from FORMATS.md section 4 (itself taken from bitsandbytes' functional.py and the
pure-PyTorch kernels in backends/default/ops.py):

* NF4 code table: the 16 hard-coded values of get_4bit_type("nf4") (section 4.1).
* quantize_4bit: blocks of 64 consecutive elements of the flattened row-major tensor, absmax per
  block (fp32), scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1), code index = bucketize(scaled,
  midpoints of consecutive codes) with right=False (a value on a midpoint takes the lower code),
  element 2i in the high nibble, an odd count padded with the value 0.0 (section 4.2, 4.3a).
* double quantisation: offset = absmax.mean() (torch's float32 mean), absmax - offset quantised
  blockwise (blocksize 256, own fp32 absmax per block) with create_dynamic_map(signed=True)
  (section 4.3, 4.3a).
* dequantisation: code[q] * absmax[block] in float32; nested absmax = dyn[q2] * absmax2[blk] + offset.

bitsandbytes' pure-PyTorch CPU kernel chooses codes with argmin(|scaled - code|) instead of the
midpoint rule; the two agree except for values within rounding of a midpoint. The script counts
such disagreements on every case and prints them (expected 0 on random data; the tie cases below
are constructed on purpose and follow the midpoint rule of the spec and the CUDA kernel).

Outputs (run from the repository root, deterministic, one thread):
  tests/fixtures/quant/nf4_cases.safetensors  inputs and expected codec outputs per case
  tests/fixtures/quant/{gpt2,llama}_bnb4/      tiny models in the bnb-4bit layout (section 4.4),
                                               made from tests/fixtures/ref/{gpt2,llama_gqa}, with
                                               expected.safetensors: logits of the dequantised model
  tests/fixtures/quant/gpt2_bnb4_fp4/          one layer claiming fp4 (the loader must refuse it)
  common/quant/dynamic_map.h                   the 8-bit dynamic map as C hex-float literals

    /usr/bin/python3 scripts/make_quant_fixtures.py
"""

import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import forward, load_model_dir, st_read, st_write  # noqa: E402

torch.set_num_threads(1)  # torch's float32 sum is then one cascade over the whole tensor

NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=torch.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes.functional.create_dynamic_map, as FORMATS.md 4.3a describes it."""
    data = []
    non_sign_bits = total_bits - (1 if signed else 1)
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch.linspace(0.1, 1, additional_items + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


DYNAMIC = create_dynamic_map()


def blockwise_scale(x, blocksize):
    """absmax per block and clamp(x * (1 / max(absmax, 1e-38)), -1, 1), float32."""
    n = x.numel()
    nblocks = (n + blocksize - 1) // blocksize
    absmax = torch.zeros(nblocks, dtype=torch.float32)
    scaled = torch.empty(n, dtype=torch.float32)
    for b in range(nblocks):
        blk = x[b * blocksize:(b + 1) * blocksize]
        absmax[b] = blk.abs().max()
        inv = torch.tensor(1.0, dtype=torch.float32) / torch.clamp(absmax[b], min=1e-38)
        scaled[b * blocksize:(b + 1) * blocksize] = torch.clamp(blk * inv, -1, 1)
    return absmax, scaled


def choose_codes(scaled, code):
    """Midpoint rule of FORMATS.md 4.3a, plus the count of disagreements with argmin(|d|)."""
    bounds = (code[:-1] + code[1:]) / 2
    q = torch.bucketize(scaled, bounds, right=False)
    q_argmin = torch.argmin(torch.abs(scaled.view(-1, 1) - code.view(1, -1)), dim=1)
    return q.to(torch.uint8), int((q != q_argmin).sum())


def quantize_blockwise(x, code, blocksize):
    absmax, scaled = blockwise_scale(x, blocksize)
    q, diff = choose_codes(scaled, code)
    return q, absmax, diff


def quantize_nf4(w, blocksize=64, nested=True):
    x = w.reshape(-1).to(torch.float32)
    absmax, scaled = blockwise_scale(x, blocksize)
    if scaled.numel() % 2:
        scaled = torch.cat([scaled, torch.zeros(1, dtype=torch.float32)])
    q, diff = choose_codes(scaled, NF4_CODE)
    packed = (q[0::2] << 4) | q[1::2]
    out = {"packed": packed, "absmax": absmax, "diff": diff}
    if nested:
        offset = absmax.mean()
        qabs, absmax2, diff2 = quantize_blockwise(absmax - offset, DYNAMIC, 256)
        out.update(qabsmax=qabs, nested_absmax=absmax2, offset=offset, diff2=diff2)
    return out


def dequantize_absmax(qabs, absmax2, offset, blocksize=256):
    vals = DYNAMIC[qabs.long()]
    out = torch.empty_like(vals)
    for b in range(absmax2.numel()):
        out[b * blocksize:(b + 1) * blocksize] = vals[b * blocksize:(b + 1) * blocksize] * absmax2[b]
    return out + offset


def dequantize_nf4(packed, absmax, n, blocksize=64):
    q = torch.empty(packed.numel() * 2, dtype=torch.long)
    q[0::2] = (packed >> 4).long()
    q[1::2] = (packed & 0xF).long()
    vals = NF4_CODE[q[:n]]
    out = torch.empty(n, dtype=torch.float32)
    for b in range(absmax.numel()):
        out[b * blocksize:(b + 1) * blocksize] = vals[b * blocksize:(b + 1) * blocksize] * absmax[b]
    return out


def nf4_cases():
    gen = torch.Generator().manual_seed(8)
    cases = {}
    cases["even"] = torch.randn(48, 40, generator=gen) * 0.05                  # 30 full blocks
    cases["odd"] = torch.randn(7, 37, generator=gen)                           # 259: partial block, pad
    big = torch.randn(300, 96, generator=gen) * 0.02                           # 450 blocks: 2 nested
    big[3, :] = 0.0                                                            # part of an all-zero block
    big[10:12, :] = torch.randn(2, 96, generator=gen) * 3.0                    # outliers
    cases["big"] = big
    ties = torch.randn(4, 64, generator=gen) * 0.3
    ties[:, 0] = 1.0                                                           # absmax 1: scaled == x
    mids = ((NF4_CODE[:-1] + NF4_CODE[1:]) / 2)
    ties[:, 1:16] = mids.view(1, -1)                                           # exactly on midpoints
    ties[:, 16:31] = torch.nextafter(mids, torch.full_like(mids, 2.0)).view(1, -1)
    ties[:, 31:46] = torch.nextafter(mids, torch.full_like(mids, -2.0)).view(1, -1)
    cases["ties"] = ties
    cases["wide"] = torch.randn(32, 2048, generator=gen) * 0.02                # 1024 blocks, 4 nested
    return cases


def write_nf4_cases(out_dir):
    tensors = {}
    for name, w in nf4_cases().items():
        w = w.to(torch.float32).contiguous()
        r = quantize_nf4(w)
        n = w.numel()
        absmax_dq = dequantize_absmax(r["qabsmax"], r["nested_absmax"], r["offset"])
        tensors[f"{name}.x"] = ("F32", w.numpy())
        tensors[f"{name}.packed"] = ("U8", r["packed"].numpy())
        tensors[f"{name}.absmax"] = ("F32", r["absmax"].numpy())
        tensors[f"{name}.qabsmax"] = ("U8", r["qabsmax"].numpy())
        tensors[f"{name}.nested_absmax"] = ("F32", r["nested_absmax"].numpy())
        tensors[f"{name}.offset"] = ("F32", r["offset"].reshape(1).numpy())
        tensors[f"{name}.absmax_dq"] = ("F32", absmax_dq.numpy())
        tensors[f"{name}.dequant"] = ("F32", dequantize_nf4(r["packed"], absmax_dq, n).numpy())
        tensors[f"{name}.dequant_plain"] = ("F32", dequantize_nf4(r["packed"], r["absmax"], n).numpy())
        print(f"nf4 case {name}: {n} values, {r['absmax'].numel()} blocks, offset {r['offset'].item():.9g}, "
              f"argmin disagreements {r['diff']} (4-bit) {r['diff2']} (8-bit)")
    tensors["nf4_code"] = ("F32", NF4_CODE.numpy())
    tensors["dynamic_map"] = ("F32", DYNAMIC.numpy())
    st_write(os.path.join(out_dir, "nf4_cases.safetensors"), tensors, {"peft_fixture": "nf4"})


def write_dynamic_map_header(path):
    lines = ["/* dynamic_map.h - bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,",
             " * total_bits=8): the 256 sorted float32 codes of the 8-bit blockwise quantiser used for",
             " * NF4's double quantisation (FORMATS.md 4.3a). Generated by scripts/make_quant_fixtures.py",
             " * from the PyTorch reference; do not edit. test_nf4 checks it against the fixture. */",
             "#ifndef PEFT_DYNAMIC_MAP_H", "#define PEFT_DYNAMIC_MAP_H", "",
             "static const float quant_dynamic_map[256] = {"]
    vals = [float(v).hex() + "f" for v in DYNAMIC.tolist()]
    for i in range(0, 256, 4):
        lines.append("    " + ", ".join(vals[i:i + 4]) + ",")
    lines += ["};", "", "#endif", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def quantised_linears(arch, W):
    """Names of the block linear weights bitsandbytes quantises (not embeddings, norms, lm_head)."""
    out = []
    for k, v in W.items():
        if v.dim() != 2 or not k.endswith(".weight"):
            continue
        if ".h." in k or ".layers." in k:
            out.append(k)
    return sorted(out)


def write_bnb_dir(src, dst, fp4_layer=None):
    arch, W = load_model_dir(src)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["quantization_config"] = {
        "quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False,
        "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "float32", "bnb_4bit_quant_storage": "uint8"}
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    gpt2 = arch["kind"] == "gpt2"
    tensors = {}
    Wdq = {}
    for k, v in W.items():
        Wdq[k] = v
        tensors[k] = ("F32", v.to(torch.float32).numpy())
    for k in quantised_linears(arch, W):
        w = W[k].to(torch.float32)
        if gpt2:  # transformers transposes Conv1D weights to nn.Linear's [out, in] before quantising
            w = w.t().contiguous()
        r = quantize_nf4(w)
        absmax_dq = dequantize_absmax(r["qabsmax"], r["nested_absmax"], r["offset"])
        dq = dequantize_nf4(r["packed"], absmax_dq, w.numel()).reshape(w.shape)
        Wdq[k] = (dq.t() if gpt2 else dq).to(torch.float64)
        qtype = "fp4" if k == fp4_layer else "nf4"
        state = {"quant_type": qtype, "blocksize": 64, "dtype": "float32", "shape": list(w.shape),
                 "nested_blocksize": 256, "nested_dtype": "float32",
                 "nested_offset": r["offset"].item()}
        blob = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)
        tensors[k] = ("U8", r["packed"].reshape(-1, 1).numpy())
        tensors[k + ".absmax"] = ("U8", r["qabsmax"].numpy())
        tensors[k + ".quant_map"] = ("F32", NF4_CODE.numpy())
        tensors[k + ".nested_absmax"] = ("F32", r["nested_absmax"].numpy())
        tensors[k + ".nested_quant_map"] = ("F32", DYNAMIC.numpy())
        tensors[k + ".quant_state.bitsandbytes__" + qtype] = ("U8", blob)
    st_write(os.path.join(dst, "model.safetensors"), tensors, {"format": "pt"})
    if fp4_layer:
        return
    gen = torch.Generator().manual_seed(88)
    ids = torch.randint(0, arch["vocab"], (2, 7), generator=gen)
    logits, _ = forward(arch, Wdq, ids)
    st_write(os.path.join(dst, "expected.safetensors"),
             {"input_ids": ("I64", ids.numpy()), "logits": ("F32", logits.to(torch.float32).numpy())},
             {"peft_fixture": "bnb4"})
    print(f"bnb-4bit {dst}: {len(quantised_linears(arch, W))} quantised linears")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "tests", "fixtures", "quant")
    os.makedirs(out, exist_ok=True)
    write_nf4_cases(out)
    write_dynamic_map_header(os.path.join(root, "common", "quant", "dynamic_map.h"))
    ref = os.path.join(root, "tests", "fixtures", "ref")
    write_bnb_dir(os.path.join(ref, "gpt2"), os.path.join(out, "gpt2_bnb4"))
    write_bnb_dir(os.path.join(ref, "llama_gqa"), os.path.join(out, "llama_bnb4"))
    fp4 = os.path.join(out, "gpt2_bnb4_fp4")
    shutil.rmtree(fp4, ignore_errors=True)
    write_bnb_dir(os.path.join(ref, "gpt2"), fp4, fp4_layer="transformer.h.1.mlp.c_fc.weight")


if __name__ == "__main__":
    main()
