#!/usr/bin/python3
"""Every PEFT method on the quickstart task, with the same budget, as a Markdown table.

The task is the quickstart's fine-tuning: the small GPT-2-style model that scripts/quickstart.sh
pretrains on Debian's fortunes (BASE/model-base), fine-tuned on the BOFH excuses (BASE/data-bofh).
If BASE has no such model, scripts/quickstart.sh --no-install builds it first (about 10 minutes).
Each method trains the same number of steps with the same batch, seed, warmup and schedule; the
learning rate is the one usual for the method (stated in the table). For each run the table gives
the trainable parameters (count and percent of the base model's), the validation loss at the end
(the whole validation split), the time per step and the peak memory (maximum resident set size from
/usr/bin/time -v). Time per step is given twice: wall seconds (the run's, one final evaluation
included, over its steps), which depend on what else the machine runs, and CPU seconds (user +
system from /usr/bin/time), which depend on it much less; the load average is printed beside them.

    scripts/results_table.py [--base quickstart-out] [--out results-out] [--steps 100]
                             [--methods full,lora,...] [--threads N] [--jobs N] [--peft BIN]

Writes OUT/results.md (the table) and OUT/run-METHOD/ (checkpoints, metrics.jsonl, metrics.png);
runs at nice 10.
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEFT = os.path.join(ROOT, "build", "bin", "peft")
LORA_TARGETS = "c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj"  # the quickstart's LoRA: every linear layer

# method -> (peft train flags, learning rate)
METHODS = {
    "full": (["--method", "full"], 1e-3),
    "lora": (["--method", "lora", "--target-modules", LORA_TARGETS, "--r", "16", "--lora-alpha", "32"], 3e-3),
    "rslora": (["--method", "lora", "--target-modules", LORA_TARGETS, "--r", "16", "--lora-alpha", "32",
                "--use-rslora"], 3e-3),
    "dora": (["--method", "dora", "--target-modules", LORA_TARGETS, "--r", "16", "--lora-alpha", "32"], 3e-3),
    "qlora": (["--target-modules", LORA_TARGETS, "--r", "16", "--lora-alpha", "32"], 3e-3),  # flags completed below
    "ia3": (["--method", "ia3"], 1e-2),
    "prompt": (["--method", "prompt"], 1e-2),
    "prefix": (["--method", "prefix"], 1e-2),
    "houlsby": (["--method", "houlsby"], 3e-3),
    "pfeiffer": (["--method", "pfeiffer"], 3e-3),
    "parallel": (["--method", "parallel"], 3e-3),
    "bapna": (["--method", "bapna"], 3e-3),
    "io": (["--method", "io"], 3e-3),
}
ORDER = ["full", "lora", "rslora", "dora", "qlora", "ia3", "prompt", "prefix", "houlsby", "pfeiffer", "parallel",
         "bapna", "io"]


def die(msg):
    sys.exit("results_table.py: " + msg)


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        die("%s failed (exit %d):\n%s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r


def load():
    return os.getloadavg()[0]


def qlora_flags(help_text):
    """How this build spells QLoRA, or None when it has none."""
    methods = re.search(r"--method M\s+(\S+)", help_text)
    if methods and "qlora" in methods.group(1).split("|"):
        return ["--method", "qlora"]
    if "--quantize" in help_text:
        return ["--method", "lora", "--quantize", "nf4"]
    return None


def train(name, flags, lr, a, base, out):
    run_dir = os.path.join(out, "run-" + name)
    timing = os.path.join(out, name + ".time")
    cmd = ["/usr/bin/time", "-v", "-o", timing, PEFT, "train", "--model", os.path.join(base, "model-base"),
           "--data", os.path.join(base, "data-bofh"), "--out", run_dir] + flags + [
           "--learning-rate", "%g" % lr, "--max-steps", str(a.steps), "--per-device-train-batch-size", "16",
           "--warmup-steps", str(max(1, a.steps // 10)), "--lr-scheduler-type", "linear", "--seed", "1",
           "--logging-steps", "10", "--save-steps", str(a.steps), "--threads", str(a.threads)]
    load_before = load()
    r = run(cmd)
    text = r.stdout + r.stderr
    m = re.search(r"trainable params: (\d+) \|\| all params: (\d+) \|\| trainable%: ([0-9.]+)", text)
    d = re.search(r"done: (\d+) steps \((\d+) skipped\) in ([0-9.]+) s", text)
    v = re.search(r"validation loss ([0-9.]+|nan|inf)", text)
    tv = open(timing).read()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv)
    cpu = [re.search(r"%s time \(seconds\): ([0-9.]+)" % k, tv) for k in ("User", "System")]
    if not (m and d and v and rss and all(cpu)):
        die("cannot read the results of %s from its output:\n%s" % (name, text))
    subprocess.run([PEFT, "plot", run_dir], stdout=subprocess.DEVNULL)
    steps = int(d.group(1)) + int(d.group(2))
    return {"name": name, "trainable": int(m.group(1)), "total": int(m.group(2)), "lr": lr,
            "val": float(v.group(1)), "skipped": int(d.group(2)), "step_s": float(d.group(3)) / steps,
            "cpu_s": sum(float(c.group(1)) for c in cpu) / steps,
            "rss_mib": int(rss.group(1)) / 1024.0, "load": (load_before + load()) / 2}


def main():
    global PEFT
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default=os.path.join(ROOT, "quickstart-out"),
                   help="the quickstart's output (model-base/, data-bofh/); built if missing")
    p.add_argument("--out", default=os.path.join(ROOT, "results-out"))
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of every method (16 x 64 tokens each)")
    p.add_argument("--methods", default=None, help="comma-separated subset (default: all this build has)")
    p.add_argument("--threads", type=int, default=1, help="compute threads of each run")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    p.add_argument("--peft", default=PEFT, help="the peft binary")
    a = p.parse_args()
    PEFT = os.path.abspath(a.peft)
    os.nice(10)
    if not os.access(PEFT, os.X_OK):
        die("%s not found: run scripts/build.sh first" % PEFT)
    if not os.access("/usr/bin/time", os.X_OK):
        die("/usr/bin/time not found (Debian package 'time', see scripts/install-deps.sh)")
    help_text = run([PEFT, "train", "--help"]).stdout
    ql = qlora_flags(help_text)
    if ql:
        METHODS["qlora"] = (ql + METHODS["qlora"][0], METHODS["qlora"][1])
    names = a.methods.split(",") if a.methods else [n for n in ORDER if n != "qlora" or ql]
    for n in names:
        if n not in METHODS or (n == "qlora" and not ql):
            die("unknown method or not in this build: %s" % n)
    base = os.path.abspath(a.base)
    if not (os.path.isdir(os.path.join(base, "model-base")) and os.path.isdir(os.path.join(base, "data-bofh"))):
        print("== no %s/model-base: running the quickstart to build it" % base, flush=True)
        subprocess.run([os.path.join(ROOT, "scripts", "quickstart.sh"), "--no-install"], check=True,
                       env=dict(os.environ, OUT=base), cwd=ROOT)
    out = os.path.abspath(a.out)
    if os.path.exists(out):
        die("%s already exists; remove it or choose --out" % out)
    os.makedirs(out)

    base_eval = run([PEFT, "eval", "--model", os.path.join(base, "model-base"),
                     "--data", os.path.join(base, "data-bofh"), "--threads", str(a.threads)])
    m = re.search(r"loss ([0-9.]+)", base_eval.stdout)
    base_val = float(m.group(1)) if m else float("nan")
    t0 = time.time()

    def one(n):
        flags, lr = METHODS[n]
        print("== %s (lr %g, %d steps) started" % (n, lr, a.steps), flush=True)
        r = train(n, flags, lr, a, base, out)
        print("== %s: %d trainable (%.2f%%), validation loss %.4f, %.2f s/step (%.2f CPU s), %.0f MiB, load %.1f"
              % (n, r["trainable"], 100.0 * r["trainable"] / r["total"], r["val"], r["step_s"], r["cpu_s"],
                 r["rss_mib"], r["load"]), flush=True)
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        rows = list(pool.map(one, names))

    lines = ["| method | trainable | % | learning rate | validation loss | s/step (wall) | CPU s/step | peak RSS (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             "| none (the base model) | 0 | 0 | | %.3f | | | |" % base_val]
    for r in rows:
        lines.append("| `%s` | %s | %.2f | %g | %.3f%s | %.2f | %.2f | %.0f |" % (
            r["name"], format(r["trainable"], ","), 100.0 * r["trainable"] / r["total"], r["lr"], r["val"],
            " (%d skipped)" % r["skipped"] if r["skipped"] else "", r["step_s"], r["cpu_s"], r["rss_mib"]))
    loads = [r["load"] for r in rows]
    lines.append("")
    lines.append("%d steps of 16 x 64 tokens per method, %d thread(s) each, %d run(s) at a time, load average "
                 "%.1f-%.1f on %d cores, %.0f min in all." % (a.steps, a.threads, a.jobs, min(loads), max(loads),
                                                              os.cpu_count(), (time.time() - t0) / 60))
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
