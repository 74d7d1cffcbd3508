/*
 * gemm_ceiling.h - what one gemm_f32 backend (or gemm_bf16) sustains at one shape, for benchmarks
 * to compare their own kernels against.
 *
 *     gemm_set_threads(2);
 *     double peak = gemm_ceiling_gflops(GEMM_ONEDNN, 1024, 768, 768, 0, 1, 1.0);
 *     if (gemm_onednn_bf16_available()) peak16 = gemm_ceiling_bf16_gflops(1024, 768, 768, 0, 1, 1.0);
 *
 * The product is C[M,N] = op(A)[M,K] op(B)[K,N] with alpha 1, beta 0 and tight leading
 * dimensions, on buffers of random values in [-1, 1) (rounded to bf16 for gemm_bf16) allocated
 * for the call and freed before it returns. Call gemm_set_threads() first: the thread count in force is the one measured.
 *
 * Every product is timed on its own (bench_now(): CLOCK_MONOTONIC) and the ceiling is the fastest
 * one. The machine is shared (other builds and tests come and go on its 2 cores), so a mean mostly
 * measures the neighbours; the fastest product is what the backend does when it has the cores, and
 * the median is reported beside it to show how typical that was.
 */
#ifndef PEFT_GEMM_CEILING_H
#define PEFT_GEMM_CEILING_H

#include "gemm.h"

typedef struct {
    double gflops;             /* 2*M*N*K / the fastest timed product, / 1e9 */
    double median_gflops;      /* the same for the median timed product */
    double first_call_seconds; /* the very first call: includes oneDNN primitive creation */
    long products;             /* how many were timed */
} gemm_ceiling_result;

/* Times one shape: one first call (timed on its own), warm-up calls for a tenth of min_seconds,
 * then back-to-back products until at least min_seconds and at least three products have run
 * (at most GEMM_CEILING_MAX_PRODUCTS). Returns PEFT_OK, or PEFT_ENOMEM (err_msg() says what)
 * leaving *out unchanged. The first call only pays for primitive creation if nothing in this
 * process has used the shape before: oneDNN keeps its own primitive cache besides gemm's. */
int gemm_ceiling_measure(gemm_backend be, int M, int N, int K, int transA, int transB,
                         double min_seconds, gemm_ceiling_result *out);
#define GEMM_CEILING_MAX_PRODUCTS 4096

/* The same for gemm_bf16 (bf16 A and B, fp32 C). PEFT_EUNSUPPORTED, *out unchanged, where
 * gemm_onednn_bf16_available() is false. */
int gemm_ceiling_measure_bf16(int M, int N, int K, int transA, int transB, double min_seconds,
                              gemm_ceiling_result *out);

/* gemm_ceiling_measure()'s gflops, or -1.0 if the buffers could not be allocated. */
double gemm_ceiling_gflops(gemm_backend be, int M, int N, int K, int transA, int transB,
                           double min_seconds);
/* gemm_ceiling_measure_bf16()'s gflops, or -1.0 on its errors. */
double gemm_ceiling_bf16_gflops(int M, int N, int K, int transA, int transB, double min_seconds);

#endif
