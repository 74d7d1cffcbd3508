#include "gemm_ceiling.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "bench_common.h"
#include "error.h"
#include "quant/bf16.h"

static float ceiling_rand(uint32_t *seed) {
    *seed = *seed * 1664525u + 1013904223u;
    return (float)((*seed >> 8) * (2.0 / 16777216.0) - 1.0);
}

/* Cache-line aligned, n elements of elem bytes (4: floats, 2: bf16) of uniform [-1, 1) continuing
 * *seed. Writing every element here keeps first-touch page faults out of the timed calls. */
static void *ceiling_rand_buf(size_t n, size_t elem, uint32_t *seed) {
    size_t bytes = (n * elem + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        float v = ceiling_rand(seed);
        if (elem == sizeof(float)) ((float *)p)[i] = v;
        else ((uint16_t *)p)[i] = bf16_from_f32(v);
    }
    return p;
}

/* One product to time: gemm_bf16 when bf16, else gemm_f32 on be. */
typedef struct {
    gemm_backend be;
    bool bf16;
    int M, N, K, transA, transB, lda, ldb, ldc;
    const void *A, *B;
    float *C;
} ceiling_product;

static void ceiling_run(const ceiling_product *p) {
    if (p->bf16)
        gemm_bf16(p->transA, p->transB, p->M, p->N, p->K, 1.0f, p->A, p->lda, p->B, p->ldb, 0.0f, p->C, p->ldc);
    else
        gemm_f32(p->be, p->transA, p->transB, p->M, p->N, p->K, 1.0f, p->A, p->lda, p->B, p->ldb, 0.0f, p->C,
                 p->ldc);
}

static int ceiling_measure(gemm_backend be, bool bf16, int M, int N, int K, int transA, int transB,
                           double min_seconds, gemm_ceiling_result *out) {
    uint32_t seed = 42u;
    const size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    int rc = PEFT_OK;
    double *times = malloc(GEMM_CEILING_MAX_PRODUCTS * sizeof *times);
    void *A = ceiling_rand_buf((size_t)M * K, elem, &seed);
    void *B = ceiling_rand_buf((size_t)K * N, elem, &seed);
    float *C = ceiling_rand_buf((size_t)M * N, sizeof(float), &seed);
    if (!times || !A || !B || !C) {
        rc = err_set(PEFT_ENOMEM, "gemm_ceiling: cannot allocate buffers for M=%d N=%d K=%d", M,
                     N, K);
        goto out_free;
    }
    const ceiling_product p = {be, bf16, M, N, K, transA, transB, transA ? M : K, transB ? K : N, N, A, B, C};

    double t0 = bench_now();
    ceiling_run(&p);
    double first = bench_now() - t0;
    t0 = bench_now();
    while (bench_now() - t0 < 0.1 * min_seconds) ceiling_run(&p);

    long reps = 0;
    double start = bench_now();
    do {
        t0 = bench_now();
        ceiling_run(&p);
        times[reps++] = bench_now() - t0;
    } while ((bench_now() - start < min_seconds || reps < 3) &&
             reps < GEMM_CEILING_MAX_PRODUCTS);

    qsort(times, (size_t)reps, sizeof *times, bench_cmp_double);
    double flop = 2.0 * M * N * K;
    out->gflops = flop / times[0] / 1e9;
    out->median_gflops = flop / times[reps / 2] / 1e9;
    out->first_call_seconds = first;
    out->products = reps;

out_free:
    free(times);
    free(A);
    free(B);
    free(C);
    return rc;
}

int gemm_ceiling_measure(gemm_backend be, int M, int N, int K, int transA, int transB,
                         double min_seconds, gemm_ceiling_result *out) {
    return ceiling_measure(be, false, M, N, K, transA, transB, min_seconds, out);
}

int gemm_ceiling_measure_bf16(int M, int N, int K, int transA, int transB, double min_seconds,
                              gemm_ceiling_result *out) {
    if (!gemm_onednn_bf16_available())
        return err_set(PEFT_EUNSUPPORTED, "oneDNN has no bf16 matmul on this CPU (needs AVX512-BF16 or AVX512)");
    return ceiling_measure(GEMM_ONEDNN, true, M, N, K, transA, transB, min_seconds, out);
}

double gemm_ceiling_gflops(gemm_backend be, int M, int N, int K, int transA, int transB,
                           double min_seconds) {
    gemm_ceiling_result r;
    if (gemm_ceiling_measure(be, M, N, K, transA, transB, min_seconds, &r) != PEFT_OK) return -1.0;
    return r.gflops;
}

double gemm_ceiling_bf16_gflops(int M, int N, int K, int transA, int transB, double min_seconds) {
    gemm_ceiling_result r;
    if (gemm_ceiling_measure_bf16(M, N, K, transA, transB, min_seconds, &r) != PEFT_OK) return -1.0;
    return r.gflops;
}
