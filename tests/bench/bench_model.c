/*
 * bench_model.c - tokens/s and achieved GFLOP/s of one training step (forward + backward) of the
 * base transformer, beside the machine's GEMM ceilings measured in the same run (fp32 on both
 * backends, and gemm_bf16's where oneDNN has a bf16 matmul; elsewhere a line says it has none).
 *
 *   build/bin/bench_model [--arch gpt2|llama|all|none] [--gemm openblas|onednn|all] [--mode frozen|full|all]
 *                         [--batch 4] [--seq 256] [--steps 3] [--threads 2] [--no-ceilings]
 *
 * Shapes: GPT-2-124M (12 layers, 768 wide, 12 heads, vocab 50257) and the Llama shape of
 * SmolLM-135M (30 layers, 576 wide, 9 heads with 3 KV heads, FFN 1536, vocab 49152), random
 * weights. Two backward modes: "frozen" computes activation gradients only (what every PEFT method
 * needs through the frozen base), "full" adds every weight gradient (full fine-tuning).
 * FLOPs are counted by model_flops_per_step() (model.h): matmuls 2*N*MACs forward, 2x (frozen) or
 * 3x (full) that for forward+backward, plus causal attention. The step time is the median of
 * --steps timed steps after one warm-up step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "error.h"
#include "gemm.h"
#include "gemm_ceiling.h"
#include "model/model.h"
#include "rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static bool all_params(const param *p, void *ctx) { (void)p; (void)ctx; return true; }
static bool no_params(const param *p, void *ctx) { (void)p; (void)ctx; return false; }

static void bench(model_arch arch, gemm_backend be, bool full, int B, int T, int steps) {
    model_config c;
    config_defaults(arch, &c);
    if (config_finish(&c, "bench")) { fprintf(stderr, "%s\n", err_msg()); exit(1); }
    model *m;
    if (model_init_random(&c, 1, be, &m)) { fprintf(stderr, "%s\n", err_msg()); exit(1); }
    if (model_set_trainable(m, full ? all_params : no_params, NULL)) { fprintf(stderr, "%s\n", err_msg()); exit(1); }
    model_acts *a;
    if (model_acts_init(m, B, T, 0, &a)) { fprintf(stderr, "%s\n", err_msg()); exit(1); }
    /* a training step: the head runs fused where it is frozen (PEFT_BENCH_UNFUSED_HEAD: never) */
    if (!getenv("PEFT_BENCH_UNFUSED_HEAD")) model_acts_set_fused_head(a, true);
    int *tokens = malloc((size_t)B * T * sizeof *tokens), *targets = malloc((size_t)B * T * sizeof *targets);
    rng_state r;
    rng_seed(&r, 3);
    for (int i = 0; i < B * T; i++) tokens[i] = (int)rng_below(&r, (uint32_t)c.vocab_size);
    for (int i = 0; i < B * T; i++) targets[i] = (i + 1) % T ? tokens[i + 1] : -1;
    model_batch b = {.B = B, .T = T, .tokens = tokens, .targets = targets};
    double *times = malloc((size_t)(steps + 1) * sizeof *times), fwd_time = 0.0;
    for (int s = 0; s <= steps; s++) {
        double nll;
        int count;
        model_zero_grad(m);
        double t0 = now();
        model_forward(m, a, &b, &nll, &count);
        double t1 = now();
        model_backward(m, a, &b, 1.0f / count, NULL, NULL);
        times[s] = now() - t0;
        if (s > 0) fwd_time += t1 - t0;
    }
    qsort(times + 1, (size_t)steps, sizeof *times, cmp_double);
    double step = times[1 + steps / 2];
    double flops = model_flops_per_step(&c, (long long)B * T, T, full);
    printf("| %s | %s | %s | %d x %d | %.1f | %.3f | %.3f | %.0f | %.0f | %.0f |\n",
           arch == ARCH_GPT2 ? "GPT-2 124M" : "Llama 135M", gemm_backend_name(be), full ? "full" : "frozen", B, T,
           flops / 1e9, fwd_time / steps, step, B * T / step, flops / step / 1e9, peak_rss_mib());
    fflush(stdout);
    free(times);
    free(tokens);
    free(targets);
    model_acts_free(a);
    model_free(m);
}

int main(int argc, char **argv) {
    const char *arch = "all", *gemm = "all", *mode = "all";
    int B = 4, T = 256, steps = 3, threads = 2, ceilings = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--arch")) arch = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--gemm")) gemm = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--mode")) mode = argv[++i];
        else if (!strcmp(argv[i], "--no-ceilings")) ceilings = 0;
        else if (i + 1 < argc && !strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seq")) T = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_model [--arch gpt2|llama|all|none] [--gemm openblas|onednn|all] "
                            "[--mode frozen|full|all] [--batch B] [--seq T] [--steps N] [--threads N] [--no-ceilings]\n");
            return 2;
        }
    }
    if (B <= 0 || T <= 0 || steps <= 0 || threads <= 0) { fprintf(stderr, "bench_model: sizes must be positive\n"); return 2; }
    gemm_set_threads(threads);
    printf("GEMM ceilings, %d threads, M = %d tokens (GFLOP/s, fastest of repeated products):\n\n", threads, B * T);
    printf("| shape (M x N x K) | op | openblas | onednn |\n|---|---|---|---|\n");
    const struct { int N, K, ta, tb; const char *op; } shapes[] = {
        {768, 768, 0, 1, "x W^T"}, {3072, 768, 0, 1, "x W^T"}, {768, 3072, 0, 0, "dy W"}, {50257, 768, 0, 1, "x W^T"},
        {1536, 576, 0, 1, "x W^T"}, {576, 1536, 0, 0, "dy W"}};
    enum { NSHAPES = sizeof shapes / sizeof shapes[0] };
    double onednn_f32[NSHAPES];
    for (size_t i = 0; ceilings && i < NSHAPES; i++) {
        double ob = gemm_ceiling_gflops(GEMM_OPENBLAS, B * T, shapes[i].N, shapes[i].K, shapes[i].ta, shapes[i].tb, 1.0);
        double od = gemm_ceiling_gflops(GEMM_ONEDNN, B * T, shapes[i].N, shapes[i].K, shapes[i].ta, shapes[i].tb, 1.0);
        onednn_f32[i] = od;
        printf("| %d x %d x %d | %s | %.0f | %.0f |\n", B * T, shapes[i].N, shapes[i].K, shapes[i].op, ob, od);
    }
    /* the bf16 ceilings: gemm_bf16 (bf16 x bf16 -> fp32) at the same shapes, where oneDNN has it */
    if (ceilings && gemm_onednn_bf16_available()) {
        printf("\nbf16 GEMM ceilings (gemm_bf16: oneDNN, bf16 x bf16 -> fp32), %d threads, M = %d tokens:\n\n", threads,
               B * T);
        printf("| shape (M x N x K) | op | onednn bf16 | bf16 / onednn f32 |\n|---|---|---|---|\n");
        for (size_t i = 0; i < NSHAPES; i++) {
            double g = gemm_ceiling_bf16_gflops(B * T, shapes[i].N, shapes[i].K, shapes[i].ta, shapes[i].tb, 1.0);
            printf("| %d x %d x %d | %s | %.0f | %.2fx |\n", B * T, shapes[i].N, shapes[i].K, shapes[i].op, g,
                   g / onednn_f32[i]);
        }
    } else if (ceilings) {
        printf("\nbf16 GEMM ceiling: not measured: oneDNN has no bf16 matmul on this CPU (needs AVX512-BF16 or "
               "AVX512), so --bf16 emulates bf16 products with the fp32 GEMM here.\n");
    }
    if (!strcmp(arch, "none")) { /* the ceilings only */
        gemm_release();
        return 0;
    }
    printf("\nTraining step (forward + backward), median of %d steps:\n\n", steps);
    printf("| model | gemm | backward | batch | GFLOP/step | forward s | step s | tokens/s | GFLOP/s | peak RSS MiB |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int ai = 0; ai < 2; ai++) {
        model_arch a = ai == 0 ? ARCH_GPT2 : ARCH_LLAMA;
        if (strcmp(arch, "all") && strcmp(arch, ai == 0 ? "gpt2" : "llama")) continue;
        for (int be = 0; be < 2; be++) {
            if (strcmp(gemm, "all") && strcmp(gemm, gemm_backend_name((gemm_backend)be))) continue;
            for (int full = 0; full < 2; full++)
                if (!strcmp(mode, "all") || !strcmp(mode, full ? "full" : "frozen")) bench(a, (gemm_backend)be, full, B, T, steps);
        }
    }
    gemm_release();
    return 0;
}
