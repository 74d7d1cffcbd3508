/*
 * gemm.h - the one matrix-product interface every layer goes through.
 *
 * Row-major single-precision GEMM with two backends behind it:
 *   GEMM_OPENBLAS: cblas_sgemm from OpenBLAS,
 *   GEMM_ONEDNN:   oneDNN's matmul primitive (fp32), primitives cached by shape.
 * The model code never names a backend; it passes the one chosen by `--gemm`.
 * Beside it, gemm_bf16: the same product with bf16 A and B (fp32 accumulation and C), oneDNN only
 * and only where oneDNN implements it (gemm_onednn_bf16_available()).
 *
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
 *   op(X) = X if trans == 0, X^T if trans == 1; lda/ldb/ldc are row strides in elements.
 *
 * beta must be 0 or 1 (overwrite or accumulate); that is all the model needs and what oneDNN's
 * sum post-op expresses. A backend failure (which for oneDNN means our bug or no memory) is fatal.
 *
 * Threads: gemm_set_threads() sets OpenBLAS's and OpenMP's (oneDNN's) pool sizes once, from the
 * main thread, before any product runs. Never call gemm_f32 from inside an OpenMP parallel region.
 */
#ifndef PEFT_GEMM_H
#define PEFT_GEMM_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { GEMM_OPENBLAS = 0, GEMM_ONEDNN = 1 } gemm_backend;

/* "openblas" | "onednn" -> backend; PEFT_EUSAGE with a message naming `--gemm` otherwise. */
int gemm_backend_parse(const char *s, gemm_backend *out);
const char *gemm_backend_name(gemm_backend be);
/* The backend the benchmark measured faster on this machine (docs/BENCHMARKS.md). */
gemm_backend gemm_backend_default(void);

void gemm_set_threads(int nthreads);
int gemm_get_threads(void);

void gemm_f32(gemm_backend be, int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* The naive triple loop: the reference the tests compare both backends against. */
void gemm_f32_ref(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

/* Whether oneDNN can create a bf16 x bf16 -> fp32 matmul here (asked once, then remembered).
 * oneDNN 2.6 needs AVX512-BF16 (or AVX512 for its emulation) and reports "unimplemented" on AVX2
 * machines such as the Zen 3 dev machine; there `--bf16` decodes bf16 tiles to fp32 and multiplies
 * with the fp32 GEMM instead (see common/model/linear.h). */
bool gemm_onednn_bf16_available(void);

/* C[M,N] (fp32) = alpha * op(A) op(B) + beta * C with A and B in bf16 (uint16_t bit patterns, as
 * common/quant/bf16.h makes them), products accumulated in fp32 by oneDNN's matmul. Arguments,
 * strides, transposes, the beta 0/1 rule and the empty cases exactly as gemm_f32. Calling it when
 * gemm_onednn_bf16_available() is false is a bug and fatal: callers check first. */
void gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A, int lda,
               const uint16_t *B, int ldb, float beta, float *C, int ldc);

/* Releases cached oneDNN primitives (optional, for leak checkers). */
void gemm_release(void);

/* The GEMM_ONEDNN backend behind gemm_f32 and gemm_bf16 (gemm_onednn.c). Call those, which check
 * the arguments and handle the empty cases (M, N or K zero) before they get here. */
void gemm_onednn_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc);
void gemm_onednn_bf16(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A,
                      int lda, const uint16_t *B, int ldb, float beta, float *C, int ldc);

/* The dnnl_status_t (as an int) of creating the bf16 primitive gemm_bf16 would use for these
 * arguments, without caching or running it: dnnl_success where available, dnnl_unimplemented where
 * oneDNN has no implementation; anything else means a malformed descriptor (the tests check). */
int gemm_onednn_bf16_probe(int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc,
                           float alpha, float beta);

#endif
