#include "gemm_ceiling.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "error.h"

double gemm_ceiling_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Cache-line aligned, n floats of uniform [-1, 1) continuing *seed. Writing every element here
 * keeps first-touch page faults out of the timed calls. */
static float *ceiling_rand_buf(size_t n, uint32_t *seed) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 8) * (2.0 / 16777216.0) - 1.0);
    }
    return p;
}

static int ceiling_cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int gemm_ceiling_measure(gemm_backend be, int M, int N, int K, int transA, int transB,
                         double min_seconds, gemm_ceiling_result *out) {
    uint32_t seed = 42u;
    int lda = transA ? M : K, ldb = transB ? K : N, ldc = N;
    int rc = PEFT_OK;
    double *times = malloc(GEMM_CEILING_MAX_PRODUCTS * sizeof *times);
    float *A = ceiling_rand_buf((size_t)M * K, &seed);
    float *B = ceiling_rand_buf((size_t)K * N, &seed);
    float *C = ceiling_rand_buf((size_t)M * N, &seed);
    if (!times || !A || !B || !C) {
        rc = err_set(PEFT_ENOMEM, "gemm_ceiling: cannot allocate buffers for M=%d N=%d K=%d", M,
                     N, K);
        goto out_free;
    }

    double t0 = gemm_ceiling_now();
    gemm_f32(be, transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    double first = gemm_ceiling_now() - t0;
    t0 = gemm_ceiling_now();
    while (gemm_ceiling_now() - t0 < 0.1 * min_seconds)
        gemm_f32(be, transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);

    long reps = 0;
    double start = gemm_ceiling_now();
    do {
        t0 = gemm_ceiling_now();
        gemm_f32(be, transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
        times[reps++] = gemm_ceiling_now() - t0;
    } while ((gemm_ceiling_now() - start < min_seconds || reps < 3) &&
             reps < GEMM_CEILING_MAX_PRODUCTS);

    qsort(times, (size_t)reps, sizeof *times, ceiling_cmp_double);
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

double gemm_ceiling_gflops(gemm_backend be, int M, int N, int K, int transA, int transB,
                           double min_seconds) {
    gemm_ceiling_result r;
    if (gemm_ceiling_measure(be, M, N, K, transA, transB, min_seconds, &r) != PEFT_OK) return -1.0;
    return r.gflops;
}
