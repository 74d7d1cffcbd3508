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
#include <sys/resource.h>
#include <time.h>

#include "error.h"
#include "gemm.h"
#include "model/generate.h"
#include "model/model.h"
#include "peft/peft.h"
#include "rng.h"
#include "train/optim.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* user + system CPU seconds of the process: less sensitive than wall time to other jobs on the cores */
static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static void die(const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what, err_msg());
    exit(1);
}

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
        double t0 = now();
        if (model_generate(m, prompt, n_prompt, &o, out, &n_out)) die("generate");
        double t = now() - t0;
        best = t < best ? t : best;
    }
    printf("generate prompt=%d new=%d seconds=%.4f tokens_per_s=%.1f peak_rss_mib=%.0f\n", n_prompt, n_out, best,
           n_out / best, peak_rss_mib());
    free(prompt);
    free(out);
    return 0;
}

int main(int argc, char **argv) {
    const char *arch = NULL, *method = NULL, *gemm = "onednn";
    model_opts mo = {0};
    int B = 4, T = 256, steps = 3, threads = 2, r = 8, gen = 0, n_prompt = 16, n_new = 128;
    for (int i = 1; i < argc; i++) {
        const int more = i + 1 < argc;
        if (more && !strcmp(argv[i], "--arch")) arch = argv[++i];
        else if (more && !strcmp(argv[i], "--method")) method = argv[++i];
        else if (more && !strcmp(argv[i], "--gemm")) gemm = argv[++i];
        else if (more && !strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--seq")) T = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--r")) r = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--prompt")) n_prompt = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--new")) n_new = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--quantize") && !strcmp(argv[i + 1], "nf4")) mo.quantize = MODEL_QUANT_NF4, i++;
        else if (!strcmp(argv[i], "--bf16")) mo.bf16 = true;
        else if (!strcmp(argv[i], "--generate")) gen = 1;
        else usage();
    }
    if (!arch || (!method && !gen) || B <= 0 || T <= 0 || steps <= 0 || threads <= 0 || r <= 0 || n_prompt <= 0 ||
        n_new <= 0)
        usage();
    model_arch a;
    if (!strcmp(arch, "gpt2")) a = ARCH_GPT2;
    else if (!strcmp(arch, "llama")) a = ARCH_LLAMA;
    else usage();
    gemm_backend be;
    if (gemm_backend_parse(gemm, &be)) die("--gemm");
    gemm_set_threads(threads);

    model_config c;
    config_defaults(a, &c);
    if (config_finish(&c, "bench")) die("config");
    model *m;
    if (model_init_random_with(&c, 1, be, &mo, &m)) die("model");
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
    if (peft_method_parse(method, &pm)) die("--method");
    peft_config_defaults(&pc, pm);
    pc.r = r;
    peft_model *p;
    if (peft_model_create(m, &pc, NULL, &p)) die("peft_model_create");
    if (peft_model_reserve(p, B, T)) die("reserve");
    model_acts *acts;
    if (model_acts_init(m, B, peft_model_positions(p, T), peft_model_prefix_len(p), &acts)) die("activations");
    if (getenv("PEFT_BENCH_UNFUSED_HEAD") == NULL) model_acts_set_fused_head(acts, true);
    const tensor_table *tt = peft_model_table(p);
    float *params = peft_model_params(p), *grads = peft_model_grads(p);
    float *mom = calloc(tt->total, sizeof *mom), *vel = calloc(tt->total, sizeof *vel);
    int *tokens = malloc((size_t)B * T * sizeof *tokens), *targets = malloc((size_t)B * T * sizeof *targets);
    double *times = malloc((size_t)(steps + 1) * sizeof *times), *cpu = malloc((size_t)(steps + 1) * sizeof *cpu);
    if (!mom || !vel || !tokens || !targets || !times || !cpu) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }
    rng_state rs;
    rng_seed(&rs, 3);
    for (int i = 0; i < B * T; i++) tokens[i] = (int)rng_below(&rs, (uint32_t)c.vocab_size);
    for (int i = 0; i < B * T; i++) targets[i] = (i + 1) % T ? tokens[i + 1] : -1;
    const adamw_hparams h = ADAMW_HPARAMS_DEFAULT;
    peft_model_set_training(p, true);
    double loss = NAN;
    for (int s = 0; s <= steps; s++) {
        double t0 = now(), c0 = cpu_now(), nll;
        int count;
        peft_model_zero_grad(p);
        if (peft_model_forward(p, acts, tokens, targets, B, T, &nll, &count)) die("forward");
        peft_model_backward(p, acts, 1.0f / (float)count);
        double sq = grad_sq_norm_range(grads, 0, tt->total, tt);
        grad_scale_range(grads, 0, tt->total, tt, clip_coef(sq, 1.0f));
        adamw_update(params, grads, mom, vel, 0, tt->total, tt, &h, s + 1, 1e-4f);
        times[s] = now() - t0;
        cpu[s] = cpu_now() - c0;
        loss = nll / count;
    }
    qsort(times + 1, (size_t)steps, sizeof *times, cmp_double);
    qsort(cpu + 1, (size_t)steps, sizeof *cpu, cmp_double);
    const double step = times[1 + steps / 2], best = times[1], step_cpu = cpu[1 + steps / 2];
    const int positions = peft_model_positions(p, T);
    const double flops = model_flops_per_step(&c, (long long)B * positions, positions, pm == PEFT_FULL);
    long long trainable, total;
    peft_model_counts(p, &trainable, &total);
    printf("train arch=%s method=%s base=%s gemm=%s batch=%d seq=%d positions=%d trainable=%lld steps=%d step_s=%.4f "
           "best_s=%.4f cpu_s=%.4f tokens_per_s=%.1f gflop=%.1f gflops=%.1f peak_rss_mib=%.0f loss=%.4f\n",
           arch, method, storage, gemm_backend_name(be), B, T, positions, trainable, steps, step, best, step_cpu, B * T / step,
           flops / 1e9, flops / step / 1e9, peak_rss_mib(), loss);
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
