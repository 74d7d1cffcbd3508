#!/usr/bin/python3
"""The PyTorch peer of bench_train: one LoRA training step in plain PyTorch.

    OPENBLAS_NUM_THREADS=2 tests/bench/torch_peer.py --arch gpt2 --mode fp32 --threads 1

The same architecture and sizes as bench_train (GPT-2-124M, or SmolLM-135M's Llama shape: 30 layers,
576 wide, 9 heads on 3 key/value heads, SwiGLU 1536, tied 49152-token head), random weights, LoRA
r=8, alpha 8, no dropout on peft's default modules (c_attn; q_proj and v_proj), AdamW (lr 1e-4) on
the LoRA tensors with global-norm clipping at 1, a batch of --batch x --seq random tokens, the
mean next-token cross-entropy. Attention is the eager form Hugging Face's models of torch 1.13's
time use (scores, causal mask, softmax, weighted values).

--mode fp32: everything in float32. --mode bf16: the frozen base stored in bfloat16 and the step
run under torch.autocast("cpu", bfloat16), LoRA tensors and AdamW in float32 (what Hugging Face's
Trainer --bf16 does on a model loaded in bfloat16).

Prints one line of key=value pairs: median step seconds after one warm-up step (and the CPU
seconds of that step, all threads: note that torch's OpenMP threads spin while they wait, which
counts as CPU time), tokens/s, the
step's FLOPs (the formula of model_flops_per_step() in common/model/model.c) and GFLOP/s, peak RSS.
"""
import argparse
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraLinear(nn.Module):
    def __init__(self, fin, fout, bias, r):
        super().__init__()
        self.base = nn.Linear(fin, fout, bias=bias)
        self.base.weight.requires_grad_(False)
        if bias:
            self.base.bias.requires_grad_(False)
        self.r = r
        if r:
            self.lora_A = nn.Parameter(torch.empty(r, fin))
            self.lora_B = nn.Parameter(torch.zeros(fout, r))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        y = self.base(x)
        if self.r:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B)  # scaling alpha / r = 1
        return y


def frozen(fin, fout, bias):
    return LoraLinear(fin, fout, bias, 0)


def causal_attention(q, k, v):
    """q [B,H,T,hd], k/v [B,H,T,hd]."""
    T = q.shape[2]
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    s = s.masked_fill(mask, torch.finfo(s.dtype).min)
    return torch.matmul(F.softmax(s, dim=-1).to(v.dtype), v)


class GPT2Block(nn.Module):
    def __init__(self, C, H, r):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = LoraLinear(C, 3 * C, True, r)
        self.attn_proj = frozen(C, C, True)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = frozen(C, 4 * C, True)
        self.mlp_proj = frozen(4 * C, C, True)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        a = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class RMSNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope(x, cos, sin):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class LlamaBlock(nn.Module):
    def __init__(self, C, H, KV, I, r):
        super().__init__()
        self.H, self.KV, self.hd = H, KV, C // H
        self.input_layernorm = RMSNorm(C)
        self.q_proj = LoraLinear(C, H * self.hd, False, r)
        self.k_proj = frozen(C, KV * self.hd, False)
        self.v_proj = LoraLinear(C, KV * self.hd, False, r)
        self.o_proj = frozen(H * self.hd, C, False)
        self.post_attention_layernorm = RMSNorm(C)
        self.gate_proj = frozen(C, I, False)
        self.up_proj = frozen(C, I, False)
        self.down_proj = frozen(I, C, False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.H // self.KV
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, arch, r):
        super().__init__()
        self.arch = arch
        if arch == "gpt2":
            self.V, C, L, H = 50257, 768, 12, 12
            self.wte = nn.Embedding(self.V, C)
            self.wpe = nn.Embedding(1024, C)
            self.blocks = nn.ModuleList(GPT2Block(C, H, r) for _ in range(L))
            self.ln_f = nn.LayerNorm(C)
        else:
            self.V, C, L, H, KV, I = 49152, 576, 30, 9, 3, 1536
            self.wte = nn.Embedding(self.V, C)
            self.blocks = nn.ModuleList(LlamaBlock(C, H, KV, I, r) for _ in range(L))
            self.ln_f = RMSNorm(C)
            hd = C // H
            inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
            f = torch.outer(torch.arange(2048).float(), inv)
            emb = torch.cat((f, f), dim=-1)
            self.register_buffer("cos", emb.cos(), persistent=False)
            self.register_buffer("sin", emb.sin(), persistent=False)
        with torch.no_grad():
            for n, p in self.named_parameters():
                if "lora_" not in n:
                    p.requires_grad_(False)
                    if p.dim() == 2:
                        p.normal_(0.0, 0.02)  # GPT-2's initialisation, as model_init_random

    def forward(self, tokens):
        B, T = tokens.shape
        x = self.wte(tokens)
        if self.arch == "gpt2":
            x = x + self.wpe(torch.arange(T))
            for b in self.blocks:
                x = b(x)
        else:
            cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
            for b in self.blocks:
                x = b(x, cos, sin)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head


def flops_per_step(arch, ntokens, seq):
    if arch == "gpt2":
        C, I, V, L, H, hd, KVd, mlp = 768, 3072, 50257, 12, 12, 64, 768, 2
    else:
        C, I, V, L, H, hd, KVd, mlp = 576, 1536, 49152, 30, 9, 64, 192, 3
    Q = H * hd
    per_layer = C * (Q + 2 * KVd) + Q * C + mlp * C * I
    matmul = L * per_layer + C * V
    attn = L * H * hd * seq
    return 2.0 * ntokens * (matmul + attn) + 2.0 * ntokens * (matmul + 2.0 * attn)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=["gpt2", "llama"], required=True)
    ap.add_argument("--mode", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--r", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Model(a.arch, a.r)
    if a.mode == "bf16":
        for n, p in model.named_parameters():
            if "lora_" not in n:
                p.data = p.data.to(torch.bfloat16)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, model.V, (a.batch, a.seq), generator=g)
    targets = torch.cat((tokens[:, 1:], torch.full((a.batch, 1), -100)), dim=1)
    times, cpus, loss = [], [], float("nan")
    for _ in range(a.steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.mode == "bf16"):
            logits = model(tokens)
            l = F.cross_entropy(logits.float().view(-1, model.V), targets.reshape(-1), ignore_index=-100)
        l.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        loss = l.item()
    timed = sorted(times[1:])
    step = timed[len(timed) // 2]
    cpu = sorted(cpus[1:])[len(timed) // 2]
    flops = flops_per_step(a.arch, a.batch * a.seq, a.seq)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"torch arch={a.arch} mode={a.mode} threads={a.threads} batch={a.batch} seq={a.seq} steps={a.steps} "
          f"step_s={step:.4f} best_s={timed[0]:.4f} cpu_s={cpu:.4f} tokens_per_s={a.batch * a.seq / step:.1f} gflop={flops / 1e9:.1f} "
          f"gflops={flops / step / 1e9:.1f} peak_rss_mib={rss:.0f} loss={loss:.4f}")


if __name__ == "__main__":
    main()
