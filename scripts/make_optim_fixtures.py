#!/usr/bin/python3
"""Reference fixture for the C optimizer (common/train/optim.c, schedule.c): torch.optim.AdamW,
torch.nn.utils.clip_grad_norm_ and transformers' learning-rate schedules.

What this script does
---------------------
Builds a handful of small trainable tensors (LoRA-like weights with weight decay, a norm gain and a
bias without), then runs the loop of Hugging Face's Trainer for STEPS optimizer steps:

    grads = fresh random tensors (some steps above max_grad_norm, some below)
    total_norm = clip_grad_norm_(params, MAX_GRAD_NORM)
    optimizer.step()          # torch.optim.AdamW, two param groups: weight_decay 0.01 / 0.0
    scheduler.step()          # LambdaLR with transformers' get_linear_schedule_with_warmup lambda

and writes every step's inputs and results to ``tests/fixtures/optim/adamw.safetensors`` (format
described in the README.md written beside it). It also tabulates the four schedules ("linear",
"cosine", "constant", "constant_with_warmup") through LambdaLR.

The schedule lambdas are transcribed from transformers 4.47 ``optimization.py`` (transformers is not
installed here). The trajectory's base learning rate and step counts are chosen so that every
learning rate it uses is a dyadic rational (k/8 * 2^-10): the double torch uses and the float the C
API takes are then the same number, and one AdamW step from torch's state can be compared bit for bit.

The C side reproduces torch's CPU kernels exactly only if torch ran its AVX2/AVX512 kernels (they
fuse ``add_(alpha=)`` and ``addcmul_`` into FMAs), so the script refuses to run on a CPU where
torch falls back to its scalar kernels.

Seeds are fixed and torch runs single-threaded: two runs produce byte-identical files.
Run from the repository root:  /usr/bin/python3 scripts/make_optim_fixtures.py
"""

import argparse
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import st_read, st_write  # noqa: E402  (the repository's safetensors writer)

torch.set_num_threads(1)

FORMAT, VERSION = "peft-optim-fixture", "1"
SEED = 4242
STEPS = 10
BETA1, BETA2, EPS, WEIGHT_DECAY = 0.9, 0.999, 1e-8, 0.01
MAX_GRAD_NORM = 1.0
# Trajectory schedule: linear, 4 warmup steps of 12 -> lambdas 0, 1/4, .., 1, 7/8, .., 3/8 (dyadic).
BASE_LR, WARMUP, TOTAL = 2.0 ** -10, 4, 12
# Schedule table: steps 0..TABLE_STEPS-1, past the end of training on purpose.
TABLE_LR, TABLE_WARMUP, TABLE_TOTAL, TABLE_STEPS = 3e-4, 3, 13, 16
# Per-step gradient scale: the global norm is ~17 * scale, so clipping is active on the 0.2 steps.
GRAD_SCALE = [0.2, 0.02, 0.2, 0.2, 0.02, 0.05, 0.2, 0.01, 0.2, 0.03]

# (name, shape, decay, init): init "normal" = N(0, 0.02^2), "zeros" (LoRA B), "ones+" = 1 + N(0, 0.02^2).
TENSORS = [
    ("base_model.model.layers.0.q_proj.lora_A.weight", (4, 24), True, "normal"),
    ("base_model.model.layers.0.q_proj.lora_B.weight", (24, 4), True, "zeros"),
    ("base_model.model.layers.0.norm.weight", (24,), False, "ones+"),
    ("base_model.model.layers.0.mlp.bias", (7,), False, "normal"),
    ("base_model.model.layers.1.fc.weight", (5, 13), True, "normal"),
]


# --------------------------------------------------------------------------------------------------
# transformers 4.47 optimization.py, verbatim in substance (HF's Trainer: get_scheduler(name, ...))
# --------------------------------------------------------------------------------------------------

def lambda_constant(_):
    return 1


def lambda_constant_with_warmup(current_step, *, num_warmup_steps):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1.0, num_warmup_steps))
    return 1.0


def lambda_linear(current_step, *, num_warmup_steps, num_training_steps):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step)
               / float(max(1, num_training_steps - num_warmup_steps)))


def lambda_cosine(current_step, *, num_warmup_steps, num_training_steps, num_cycles=0.5):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def schedule_lambda(name, warmup, total):
    if name == "constant":
        return lambda_constant
    if name == "constant_with_warmup":
        return lambda s: lambda_constant_with_warmup(s, num_warmup_steps=warmup)
    if name == "linear":
        return lambda s: lambda_linear(s, num_warmup_steps=warmup, num_training_steps=total)
    if name == "cosine":
        return lambda s: lambda_cosine(s, num_warmup_steps=warmup, num_training_steps=total)
    raise ValueError(name)


SCHEDULES = ["linear", "cosine", "constant", "constant_with_warmup"]


def schedule_table(name):
    """The lr LambdaLR gives for steps 0..TABLE_STEPS-1 (the lr of the (step+1)-th update)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=TABLE_LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_lambda(name, TABLE_WARMUP, TABLE_TOTAL))
    out = []
    for _ in range(TABLE_STEPS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# The trajectory
# --------------------------------------------------------------------------------------------------

def check_cpu_capability():
    config = torch.__config__.show()
    if "CPU capability usage: AVX2" not in config and "CPU capability usage: AVX512" not in config:
        raise SystemExit("torch is not using its AVX2/AVX512 kernels on this CPU; the fixture would "
                         "not contain the FMA rounding the C code reproduces")


def init_tensor(shape, init, gen):
    if init == "zeros":
        return torch.zeros(shape)
    x = torch.randn(shape, generator=gen) * 0.02
    return x + 1.0 if init == "ones+" else x


def run():
    gen = torch.Generator().manual_seed(SEED)
    params = [torch.nn.Parameter(init_tensor(shape, init, gen)) for _, shape, _, init in TENSORS]
    decay = [p for p, t in zip(params, TENSORS) if t[2]]
    no_decay = [p for p, t in zip(params, TENSORS) if not t[2]]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=BASE_LR, betas=(BETA1, BETA2), eps=EPS)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_lambda("linear", WARMUP, TOTAL))

    rec = {k: {name: [] for name, *_ in TENSORS} for k in ("params", "grads", "clipped", "exp_avg", "exp_avg_sq")}
    lrs, norms, norms64, coefs = [], [], [], []
    for name, p in zip((t[0] for t in TENSORS), params):
        rec["params"][name].append(p.detach().clone())
    for step in range(STEPS):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * GRAD_SCALE[step]
        raw = [p.grad.clone() for p in params]
        norms64.append(torch.cat([g.double().flatten() for g in raw]).norm().item())
        total_norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        norms.append(total_norm.item())
        coefs.append(torch.clamp(MAX_GRAD_NORM / (total_norm + 1e-6), max=1.0).item())
        lr = opt.param_groups[0]["lr"]
        assert lr == opt.param_groups[1]["lr"] and float(np.float32(lr)) == lr, lr
        lrs.append(lr)
        opt.step()
        sched.step()
        for (name, *_), p, g in zip(TENSORS, params, raw):
            st = opt.state[p]
            assert st["step"].item() == step + 1
            rec["grads"][name].append(g)
            rec["clipped"][name].append(p.grad.detach().clone())
            rec["params"][name].append(p.detach().clone())
            rec["exp_avg"][name].append(st["exp_avg"].clone())
            rec["exp_avg_sq"][name].append(st["exp_avg_sq"].clone())
    clipped_steps = sum(c < 1.0 for c in coefs)
    assert 0 < clipped_steps < STEPS, coefs  # both branches of the clip are exercised

    tensors = {}
    for kind, per_name in rec.items():
        for name, seq in per_name.items():
            tensors[f"{kind}.{name}"] = ("F32", torch.stack(seq).numpy())
    tensors["lr"] = ("F64", np.array(lrs, dtype=np.float64))
    tensors["grad_norm"] = ("F32", np.array(norms, dtype=np.float32))
    tensors["grad_norm_f64"] = ("F64", np.array(norms64, dtype=np.float64))
    tensors["clip_coef"] = ("F32", np.array(coefs, dtype=np.float32))
    for name in SCHEDULES:
        tensors[f"lr.{name}"] = ("F64", schedule_table(name))
    metadata = {
        "format": FORMAT, "version": VERSION, "torch_version": torch.__version__,
        "tensors": ",".join(t[0] for t in TENSORS),
        "decay": ",".join("1" if t[2] else "0" for t in TENSORS),
        "steps": STEPS, "beta1": BETA1, "beta2": BETA2, "eps": EPS, "weight_decay": WEIGHT_DECAY,
        "max_grad_norm": MAX_GRAD_NORM, "schedule": "linear", "base_lr": repr(BASE_LR),
        "warmup_steps": WARMUP, "total_steps": TOTAL,
        "table_base_lr": repr(TABLE_LR), "table_warmup_steps": TABLE_WARMUP,
        "table_total_steps": TABLE_TOTAL, "table_steps": TABLE_STEPS,
    }
    return tensors, metadata, clipped_steps


README = """\
# Optimizer fixture (generated: do not edit)

`adamw.safetensors` is written by `scripts/make_optim_fixtures.py` (Debian's PyTorch {torch}, no
transformers needed) and read by `tests/unit/test_optim.c`. Regenerate from the repository root:

    /usr/bin/python3 scripts/make_optim_fixtures.py

Deterministic (fixed seed, one thread): a rerun gives a byte-identical file.

The run: {n} tensors (metadata `tensors`, with `decay` flags), torch.optim.AdamW (betas {b1}/{b2},
eps {eps}, weight_decay {wd} on the decay tensors and 0 on the others, two param groups),
clip_grad_norm_(max_norm {mn}) before every step ({clipped} of {steps} steps are clipped), and
LambdaLR with transformers' `linear` lambda (base lr 2^-10, {warmup} warmup steps of {total}), for
{steps} steps, the way HF's Trainer orders them: clip, optimizer.step(), scheduler.step().

| tensor | dtype | shape | meaning |
|---|---|---|---|
| `params.<name>` | F32 | [{steps}+1, ...] | parameters before step 1 (index 0) and after each step |
| `grads.<name>` | F32 | [{steps}, ...] | the raw gradient of each step (before clipping) |
| `clipped.<name>` | F32 | [{steps}, ...] | the gradient after clip_grad_norm_, as AdamW saw it |
| `exp_avg.<name>`, `exp_avg_sq.<name>` | F32 | [{steps}, ...] | AdamW's moments after each step |
| `lr` | F64 | [{steps}] | the lr of each step (dyadic: exactly a float) |
| `grad_norm` | F32 | [{steps}] | clip_grad_norm_'s total norm (torch accumulates in float) |
| `grad_norm_f64` | F64 | [{steps}] | the same norm computed in float64 from the F32 gradients |
| `clip_coef` | F32 | [{steps}] | min(1, max_norm / (total_norm + 1e-6)) as torch computed it |
| `lr.<schedule>` | F64 | [{tsteps}] | LambdaLR's lr at steps 0..{tlast} for linear, cosine, constant, constant_with_warmup (base lr {tlr}, {twarm} warmup steps of {ttotal}) |

Metadata: `format` = "{fmt}", `version` = "{ver}", the hyperparameters above.
"""


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "optim"))
    args = ap.parse_args()
    check_cpu_capability()
    tensors, metadata, clipped = run()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "adamw.safetensors")
    st_write(path, tensors, metadata)
    back, meta_back = st_read(path)
    assert set(back) == set(tensors) and meta_back["version"] == VERSION
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README.format(torch=torch.__version__, n=len(TENSORS), b1=BETA1, b2=BETA2, eps=EPS,
                              wd=WEIGHT_DECAY, mn=MAX_GRAD_NORM, clipped=clipped, steps=STEPS,
                              warmup=WARMUP, total=TOTAL, tsteps=TABLE_STEPS, tlast=TABLE_STEPS - 1,
                              tlr=TABLE_LR, twarm=TABLE_WARMUP, ttotal=TABLE_TOTAL, fmt=FORMAT, ver=VERSION))
    norms = tensors["grad_norm"][1]
    print(f"[optim] wrote {path}: {len(tensors)} tensors, {STEPS} steps ({clipped} clipped), "
          f"grad norms {norms.min():.3f}..{norms.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
