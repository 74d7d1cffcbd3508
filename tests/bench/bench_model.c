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

#include "bench_common.h"
#include "error.h"
#include "gemm.h"
#include "gemm_ceiling.h"
#include "model/model.h"

static bool all_params(const param *p, void *ctx) { (void)p; (void)ctx; return true; }
static bool no_params(const param *p, void *ctx) { (void)p; (void)ctx; return false; }

static void bench(model_arch arch, gemm_backend be, bool full, int B, int T, int steps) {
    model_config c;
    model *m = bench_model_random("bench_model", arch, be, NULL, &c);
    if (model_set_trainable(m, full ? all_params : no_params, NULL)) bench_die("bench_model", "model_set_trainable");
    model_acts *a;
    if (model_acts_init(m, B, T, 0, &a)) bench_die("bench_model", "activations");
    /* a training step: the head runs fused where it is frozen (PEFT_BENCH_UNFUSED_HEAD: never) */
    if (!getenv("PEFT_BENCH_UNFUSED_HEAD")) model_acts_set_fused_head(a, true);
    int *tokens, *targets;
    bench_batch_random("bench_model", &c, B, T, &tokens, &targets);
    model_batch b = {.B = B, .T = T, .tokens = tokens, .targets = targets};
    double *times = malloc((size_t)(steps + 1) * sizeof *times), fwd_time = 0.0;
    for (int s = 0; s <= steps; s++) {
        double nll;
        int count;
        model_zero_grad(m);
        double t0 = bench_now();
        model_forward(m, a, &b, &nll, &count);
        double t1 = bench_now();
        model_backward(m, a, &b, 1.0f / count, NULL, NULL);
        times[s] = bench_now() - t0;
        if (s > 0) fwd_time += t1 - t0;
    }
    double step = bench_median_after_warmup(times, steps);
    double flops = model_flops_per_step(&c, (long long)B * T, T, full);
    printf("| %s | %s | %s | %d x %d | %.1f | %.3f | %.3f | %.0f | %.0f | %.0f |\n",
           arch == ARCH_GPT2 ? "GPT-2 124M" : "Llama 135M", gemm_backend_name(be), full ? "full" : "frozen", B, T,
           flops / 1e9, fwd_time / steps, step, B * T / step, flops / step / 1e9, bench_peak_rss_mib());
    fflush(stdout);
    free(times);
    free(tokens);
    free(targets);
    model_acts_free(a);
    model_free(m);
}

int main(int argc, char **argv) {
    const char *mode = "all";
    bench_args ba = {.arch = "all", .gemm = "all", .batch = 4, .seq = 256, .steps = 3, .threads = 2};
    int ceilings = 1;
    for (int i = 1; i < argc; i++) {
        if (bench_args_take(&ba, argc, argv, &i)) continue;
        if (i + 1 < argc && !strcmp(argv[i], "--mode")) mode = argv[++i];
        else if (!strcmp(argv[i], "--no-ceilings")) ceilings = 0;
        else {
            fprintf(stderr, "usage: bench_model [--arch gpt2|llama|all|none] [--gemm openblas|onednn|all] "
                            "[--mode frozen|full|all] [--batch B] [--seq T] [--steps N] [--threads N] [--no-ceilings]\n");
            return 2;
        }
    }
    const char *arch = ba.arch, *gemm = ba.gemm;
    const int B = ba.batch, T = ba.seq, steps = ba.steps, threads = ba.threads;
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
