/*
 * bench_train.c - one row of the training benchmark: a whole training step of one PEFT method on
 * the GPT-2-124M or the Llama (SmolLM-135M) shape with random weights, exactly as `peft train`
 * runs it (peft_model_forward, peft_model_backward, global-norm clipping, AdamW), or `peft
 * generate`'s decoding speed with the key/value cache.
 *
 *   bench_train --arch gpt2|llama --method lora|dora|ia3|prompt|houlsby|full [--gemm onednn|openblas]
 *               [--batch 4] [--seq 256] [--steps 3] [--threads 2] [--r 8] [--quantize nf4] [--bf16]
 *   bench_train --arch gpt2|llama --generate [--prompt 16] [--new 128] [--threads 2]
 *
 * The output head runs fused (model_acts_set_fused_head) unless PEFT_BENCH_UNFUSED_HEAD is set.
 * Prints one line of `key=value` pairs (parsed by run_train_bench.sh): the median step seconds
 * after one warm-up step (and its CPU seconds, user + system of all threads), tokens/s (real tokens), the FLOP count of the step and the achieved
 * GFLOP/s, and the process's peak RSS. Run one row per process so that peak RSS is the row's own.
 *
 * FLOPs: model_flops_per_step() of the base model at the step's positions (virtual tokens of
 * prompt tuning included): forward plus activation-only backward for the PEFT methods (their
 * frozen base dominates; the adapters' own products are not counted, under 1% for LoRA r=8),
 * forward plus activation and weight gradients for full fine-tuning. Methods use peft's defaults
 * (LoRA/DoRA r = --r on c_attn for GPT-2, q_proj and v_proj for Llama; 20 virtual tokens; Houlsby
 * reduction 16). --quantize nf4 / --bf16 store the frozen block weights as `peft train` does; the
 * row then also reports the weights' resident bytes per parameter (the compressed block weights
 * alone, and all weights) and whether oneDNN can create a bf16 matmul on this CPU.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "error.h"
#include "gemm.h"
#include "model/generate.h"
#include "model/model.h"
#include "peft/peft.h"
#include "rng.h"
#include "train/optim.h"

static void usage(void) {
    fprintf(stderr, "usage: bench_train --arch gpt2|llama (--method M | --generate) [--gemm onednn|openblas] "
                    "[--batch B] [--seq T] [--steps N] [--threads N] [--r R] [--prompt N] [--new N]\n");
    exit(2);
}

static int bench_generate(model *m, int n_prompt, int n_new) {
    int *prompt = malloc((size_t)n_prompt * sizeof *prompt), *out = malloc((size_t)n_new * sizeof *out), n_out = 0;
    rng_state r;
    rng_seed(&r, 5);
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int)rng_below(&r, (uint32_t)m->cfg.vocab_size);
    gen_options o = {.max_new_tokens = n_new, .temperature = 0.0f, .seed = 1, .stop_token = -1};
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        if (model_generate(m, prompt, n_prompt, &o, out, &n_out)) bench_die("bench_train", "generate");
        double t = bench_now() - t0;
        best = t < best ? t : best;
    }
    printf("generate prompt=%d new=%d seconds=%.4f tokens_per_s=%.1f peak_rss_mib=%.0f\n", n_prompt, n_out, best,
           n_out / best, bench_peak_rss_mib());
    free(prompt);
    free(out);
    return 0;
}

int main(int argc, char **argv) {
    const char *method = NULL;
    bench_args ba = {.arch = NULL, .gemm = "onednn", .batch = 4, .seq = 256, .steps = 3, .threads = 2};
    model_opts mo = {0};
    int r = 8, gen = 0, n_prompt = 16, n_new = 128;
    for (int i = 1; i < argc; i++) {
        const int more = i + 1 < argc;
        if (bench_args_take(&ba, argc, argv, &i)) continue;
        if (more && !strcmp(argv[i], "--method")) method = argv[++i];
        else if (more && !strcmp(argv[i], "--r")) r = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--prompt")) n_prompt = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--new")) n_new = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--quantize") && !strcmp(argv[i + 1], "nf4")) mo.quantize = MODEL_QUANT_NF4, i++;
        else if (!strcmp(argv[i], "--bf16")) mo.bf16 = true;
        else if (!strcmp(argv[i], "--generate")) gen = 1;
        else usage();
    }
    const char *arch = ba.arch;
    const int B = ba.batch, T = ba.seq, steps = ba.steps, threads = ba.threads;
    if (!arch || (!method && !gen) || B <= 0 || T <= 0 || steps <= 0 || threads <= 0 || r <= 0 || n_prompt <= 0 ||
        n_new <= 0)
        usage();
    model_arch a;
    if (!bench_arch_parse(arch, &a)) usage();
    gemm_backend be;
    if (gemm_backend_parse(ba.gemm, &be)) bench_die("bench_train", "--gemm");
    gemm_set_threads(threads);

    model_config c;
    model *m = bench_model_random("bench_train", a, be, &mo, &c);
    model_storage ms;
    model_storage_stats(m, &ms);
    const char *storage = mo.quantize == MODEL_QUANT_NF4 ? (mo.bf16 ? "nf4+bf16" : "nf4") : mo.bf16 ? "bf16" : "fp32";
    printf("storage arch=%s base=%s block_params=%zu block_bytes_per_param=%.4f all_bytes_per_param=%.4f "
           "onednn_bf16_matmul=%s\n",
           arch, storage, ms.compressed_params,
           ms.compressed_params ? (double)ms.compressed_bytes / (double)ms.compressed_params : 4.0,
           (double)(ms.f32_bytes + ms.compressed_bytes) / (double)(ms.f32_params + ms.compressed_params),
           gemm_onednn_bf16_available() ? "available" : "unimplemented");
    if (gen) return bench_generate(m, n_prompt, n_new);

    peft_config pc;
    peft_method pm;
    if (peft_method_parse(method, &pm)) bench_die("bench_train", "--method");
    peft_config_defaults(&pc, pm);
    pc.r = r;
    peft_model *p;
    if (peft_model_create(m, &pc, NULL, &p)) bench_die("bench_train", "peft_model_create");
    if (peft_model_reserve(p, B, T)) bench_die("bench_train", "reserve");
    model_acts *acts;
    if (model_acts_init(m, B, peft_model_positions(p, T), peft_model_prefix_len(p), &acts))
        bench_die("bench_train", "activations");
    if (getenv("PEFT_BENCH_UNFUSED_HEAD") == NULL) model_acts_set_fused_head(acts, true);
    const tensor_table *tt = peft_model_table(p);
    float *params = peft_model_params(p), *grads = peft_model_grads(p);
    float *mom = calloc(tt->total, sizeof *mom), *vel = calloc(tt->total, sizeof *vel);
    double *times = malloc((size_t)(steps + 1) * sizeof *times), *cpu = malloc((size_t)(steps + 1) * sizeof *cpu);
    if (!mom || !vel || !times || !cpu) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }
    int *tokens, *targets;
    bench_batch_random("bench_train", &c, B, T, &tokens, &targets);
    const adamw_hparams h = ADAMW_HPARAMS_DEFAULT;
    peft_model_set_training(p, true);
    double loss = NAN;
    for (int s = 0; s <= steps; s++) {
        double t0 = bench_now(), c0 = bench_cpu_seconds(), nll;
        int count;
        peft_model_zero_grad(p);
        if (peft_model_forward(p, acts, tokens, targets, B, T, &nll, &count)) bench_die("bench_train", "forward");
        peft_model_backward(p, acts, 1.0f / (float)count);
        double sq = grad_sq_norm_range(grads, 0, tt->total, tt);
        grad_scale_range(grads, 0, tt->total, tt, clip_coef(sq, 1.0f));
        adamw_update(params, grads, mom, vel, 0, tt->total, tt, &h, s + 1, 1e-4f);
        times[s] = bench_now() - t0;
        cpu[s] = bench_cpu_seconds() - c0;
        loss = nll / count;
    }
    const double step = bench_median_after_warmup(times, steps), best = times[1];
    const double step_cpu = bench_median_after_warmup(cpu, steps);
    const int positions = peft_model_positions(p, T);
    const double flops = model_flops_per_step(&c, (long long)B * positions, positions, pm == PEFT_FULL);
    long long trainable, total;
    peft_model_counts(p, &trainable, &total);
    printf("train arch=%s method=%s base=%s gemm=%s batch=%d seq=%d positions=%d trainable=%lld steps=%d step_s=%.4f "
           "best_s=%.4f cpu_s=%.4f tokens_per_s=%.1f gflop=%.1f gflops=%.1f peak_rss_mib=%.0f loss=%.4f\n",
           arch, method, storage, gemm_backend_name(be), B, T, positions, trainable, steps, step, best, step_cpu, B * T / step,
           flops / 1e9, flops / step / 1e9, bench_peak_rss_mib(), loss);
    free(cpu);
    free(times);
    free(tokens);
    free(targets);
    free(mom);
    free(vel);
    model_acts_free(acts);
    peft_model_free(p);
    model_free(m);
    gemm_release();
    return 0;
}
