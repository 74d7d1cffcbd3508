/*
 * gemm.c - backend selection, threads, the OpenBLAS path and the naive reference.
 * The oneDNN paths (fp32 and bf16) live in gemm_onednn.c.
 */
#include "gemm.h"

#include <cblas.h>
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include "error.h"

int gemm_backend_parse(const char *s, gemm_backend *out) {
    if (s && strcmp(s, "openblas") == 0) {
        *out = GEMM_OPENBLAS;
        return PEFT_OK;
    }
    if (s && strcmp(s, "onednn") == 0) {
        *out = GEMM_ONEDNN;
        return PEFT_OK;
    }
    return err_set(PEFT_EUSAGE, "--gemm: expected 'openblas' or 'onednn', got '%s'",
                   s ? s : "(none)");
}

const char *gemm_backend_name(gemm_backend be) {
    switch (be) {
    case GEMM_OPENBLAS: return "openblas";
    case GEMM_ONEDNN: return "onednn";
    }
    return "unknown";
}

/* bench_gemm on the 2-core dev machine (AVX2, 2 threads; table in docs/BENCHMARKS.md): oneDNN's
 * matmul is ahead of OpenBLAS's sgemm at 12 of the 16 GPT-2 training shapes, 1.04x geometric
 * mean, never more than 7% behind. A small margin: re-run bench_gemm on new hardware. */
gemm_backend gemm_backend_default(void) { return GEMM_ONEDNN; }

/* 0 until gemm_set_threads() runs; until then OpenMP's own default is in force. */
static int gemm_threads;

void gemm_set_threads(int nthreads) {
    PEFT_ASSERT(nthreads > 0);
    /* oneDNN sizes a primitive's work split and scratchpad for the thread count in force when
     * the primitive is created; ours, cached under the old count, must be rebuilt. */
    if (gemm_threads != 0 && gemm_threads != nthreads) gemm_release();
    gemm_threads = nthreads;
    openblas_set_num_threads(nthreads);
    omp_set_num_threads(nthreads);
}

int gemm_get_threads(void) { return gemm_threads ? gemm_threads : omp_get_max_threads(); }

/* The argument checks and empty cases gemm_f32 and gemm_bf16 share: returns whether a product
 * remains for a backend to compute. */
static bool gemm_prologue(int transA, int transB, int M, int N, int K, int lda, int ldb, float beta,
                          float *C, int ldc) {
    PEFT_ASSERT(M >= 0 && N >= 0 && K >= 0);
    PEFT_ASSERT(lda >= (transA ? M : K) && lda >= 1);
    PEFT_ASSERT(ldb >= (transB ? K : N) && ldb >= 1);
    PEFT_ASSERT(ldc >= N && ldc >= 1);
    PEFT_ASSERT(beta == 0.0f || beta == 1.0f);
    if (M == 0 || N == 0) return false;
    if (K == 0) {
        /* alpha * (empty sum) adds nothing; no backend needs to see this case. */
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
        return false;
    }
    return true;
}

void gemm_f32(gemm_backend be, int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (!gemm_prologue(transA, transB, M, N, K, lda, ldb, beta, C, ldc)) return;
    switch (be) {
    case GEMM_OPENBLAS:
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                    ldc);
        return;
    case GEMM_ONEDNN:
        gemm_onednn_f32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    PEFT_ASSERT(!"unknown gemm backend");
}

void gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A, int lda,
               const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    PEFT_ASSERT(gemm_onednn_bf16_available());
    if (!gemm_prologue(transA, transB, M, N, K, lda, ldb, beta, C, ldc)) return;
    gemm_onednn_bf16(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_f32_ref(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                double a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            /* beta == 0 must not read C: it may hold garbage, even NaN. */
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
    }
}
