/*
 * test_gemm_bf16.c - the real bf16 products: gemm_bf16 against gemm_f32_ref, and linear layers over
 * bf16 and NF4 weights through gemm_bf16 against the emulated fp32 path.
 *
 * Needs oneDNN's bf16 matmul (AVX512-BF16, or AVX512 by emulation). Where it is missing, such as on
 * the AVX2 dev machine, the program prints why and exits 77, which ctest reports as skipped; what
 * runs there instead (the fallback, the bf16 decoders, the descriptors) is test_bf16_dispatch.c.
 *
 * Tolerances. gemm_bf16: the inputs are bf16 values, so the reference (double accumulation of the
 * same values) differs only by fp32 accumulation error: normwise relative 1e-5 as test_gemm.c
 * (K <= 300, entries in [-1, 1]). Linear layers: the emulated path (GEMM_OPENBLAS) multiplies the
 * same bf16 values carried in fp32, so again only the accumulation order differs: normwise 1e-5.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "model/linear.h"
#include "quant/bf16.h"
#include "quant/qweight.h"
#include "rng.h"
#include "testutil.h"

#define GEMM_RTOL 1e-5
#define LINEAR_RTOL 1e-5

static unsigned lcg_state = 4242u;

static float lcg_uniform(void) { /* [-1, 1) */
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (float)((lcg_state >> 8) * (2.0 / 16777216.0) - 1.0);
}

/* n random bf16 values, and the same values as floats for the reference. */
static void rand_bf16(uint16_t *h, float *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h[i] = bf16_from_f32(lcg_uniform());
        f[i] = bf16_to_f32(h[i]);
    }
}

/* One product on buffers whose leading dimensions exceed the logical width by pad; C's padding
 * must come back untouched and with beta == 0 C's logical part starts as NaN (never read). */
static void check_product(int tA, int tB, int M, int N, int K, int pad, float alpha, float beta) {
    const int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    const size_t na = (size_t)(tA ? K : M) * lda, nb = (size_t)(tB ? N : K) * ldb, nc = (size_t)M * ldc;
    uint16_t *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
    float *Af = malloc(na * sizeof *Af), *Bf = malloc(nb * sizeof *Bf);
    float *C = malloc(nc * sizeof *C), *Cref = malloc(nc * sizeof *Cref);
    assert_true(A && B && Af && Bf && C && Cref);
    rand_bf16(A, Af, na);
    rand_bf16(B, Bf, nb);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) C[(size_t)i * ldc + j] = (beta == 0.0f && j < N) ? NAN : lcg_uniform();
    memcpy(Cref, C, nc * sizeof *C);
    gemm_bf16(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    gemm_f32_ref(tA, tB, M, N, K, alpha, Af, lda, Bf, ldb, beta, Cref, ldc);
    char what[200];
    snprintf(what, sizeof what, "gemm_bf16 transA=%d transB=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g",
             tA, tB, M, N, K, lda, ldb, ldc, (double)alpha, (double)beta);
    tu_assert_close(what, C, Cref, nc, GEMM_RTOL);
    free(A);
    free(B);
    free(Af);
    free(Bf);
    free(C);
    free(Cref);
}

static const int shapes[][3] = {
    {1, 1, 1}, {1, 7, 33}, {7, 1, 129}, {33, 129, 7}, {129, 33, 1}, {7, 33, 300}, {129, 129, 129},
};

static void test_gemm_bf16_matches_reference(void **state) {
    (void)state;
    const float alphas[] = {1.0f, -0.75f}, betas[] = {0.0f, 1.0f};
    const int pads[] = {0, 5};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++)
                for (int ia = 0; ia < 2; ia++)
                    for (int ib = 0; ib < 2; ib++)
                        for (int ip = 0; ip < 2; ip++)
                            check_product(tA, tB, shapes[s][0], shapes[s][1], shapes[s][2], pads[ip], alphas[ia],
                                          betas[ib]);
}

/* The cache keys on shape and type, not on pointers: the same shape again on new arrays, and the
 * fp32 product of the same shape in between must not pick the bf16 primitive (or vice versa). */
static void test_gemm_bf16_cache(void **state) {
    (void)state;
    for (int round = 0; round < 3; round++) {
        check_product(0, 1, 33, 65, 47, 3, 1.0f, 1.0f);
        float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4], want[4] = {4, 5, 10, 11};
        gemm_f32(GEMM_ONEDNN, 0, 0, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2); /* [2,3] x [3,2] */
        tu_assert_close("fp32 product between bf16 ones", C, want, 4, 0.0);
    }
}

/* K == 0: C = beta * C; M or N 0: nothing. C is a 2x2 view with ldc 3 (column 2 is padding). */
static void test_gemm_bf16_empty_dims(void **state) {
    (void)state;
    const uint16_t A[1] = {0x3f80}, B[1] = {0x3f80}; /* 1.0 */
    const float kept[6] = {1, 2, 3, 4, 5, 6}, zeroed[6] = {0, 0, 3, 0, 0, 6};
    float C[6];
    memcpy(C, kept, sizeof C);
    gemm_bf16(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 1.0f, C, 3);
    tu_assert_close("K=0 beta=1", C, kept, 6, 0.0);
    gemm_bf16(0, 0, 0, 2, 1, 1.0f, A, 1, B, 2, 0.0f, C, 3);
    gemm_bf16(0, 0, 2, 0, 1, 1.0f, A, 1, B, 1, 0.0f, C, 3);
    tu_assert_close("M=0 or N=0", C, kept, 6, 0.0);
    gemm_bf16(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, C, 3);
    tu_assert_close("K=0 beta=0", C, zeroed, 6, 0.0);
}

enum { N = 5, PAD = 5 };

/* One layer (IN -> OUT, strided x/y/dx/dy, bias) forward and backward, overwrite and accumulate:
 * GEMM_ONEDNN takes gemm_bf16, GEMM_OPENBLAS the emulated path; they must agree. */
static void check_layer(qweight_format fmt, int IN, int OUT) {
    const int LDX = IN + 3, LDY = OUT + PAD;
    rng_state r;
    rng_seed(&r, 11 + (uint64_t)fmt + (uint64_t)IN);
    float *w = tu_randn(&r, (size_t)OUT * IN, 0.0f, 0.05f), *bias = tu_randn(&r, OUT, 0.0f, 0.1f);
    float *x = tu_randn(&r, (size_t)N * LDX, 0.0f, 1.0f), *dy = tu_randn(&r, (size_t)N * LDY, 0.0f, 1.0f);
    qweight q;
    if (fmt == QWEIGHT_NF4) assert_int_equal(qweight_init_nf4(&q, w, OUT, IN, true), PEFT_OK);
    else assert_int_equal(qweight_init_bf16(&q, w, OUT, IN), PEFT_OK);
    param pw = {.name = "w", .ndim = 2, .shape = {OUT, IN}, .numel = (size_t)OUT * IN, .q = &q};
    param pb = {.name = "b", .ndim = 1, .shape = {OUT, 1}, .numel = OUT, .data = bias};
    linear l = {.module = "test", .in = IN, .out = OUT, .in_major = 0, .weight = &pw, .bias = &pb};
    const size_t ny = (size_t)N * LDY, nx = (size_t)N * LDX;
    for (int acc = 0; acc < 2; acc++) {
        float *y = tu_randn(&r, ny, 0.0f, 1.0f), *y32 = malloc(ny * sizeof(float));
        float *dx = tu_randn(&r, nx, 0.0f, 1.0f), *dx32 = malloc(nx * sizeof(float));
        assert_true(y32 && dx32);
        memcpy(y32, y, ny * sizeof(float));
        memcpy(dx32, dx, nx * sizeof(float));
        linear_forward(GEMM_ONEDNN, &l, y, LDY, x, LDX, N, acc);
        linear_forward(GEMM_OPENBLAS, &l, y32, LDY, x, LDX, N, acc);
        linear_backward(GEMM_ONEDNN, &l, dx, LDX, dy, LDY, x, LDX, N, acc);
        linear_backward(GEMM_OPENBLAS, &l, dx32, LDX, dy, LDY, x, LDX, N, acc);
        char what[128];
        snprintf(what, sizeof what, "%s %d->%d forward acc=%d, gemm_bf16 vs emulated", qweight_format_name(fmt), IN,
                 OUT, acc);
        tu_assert_close(what, y, y32, ny, LINEAR_RTOL);
        snprintf(what, sizeof what, "%s %d->%d input gradient acc=%d, gemm_bf16 vs emulated", qweight_format_name(fmt),
                 IN, OUT, acc);
        tu_assert_close(what, dx, dx32, nx, LINEAR_RTOL);
        free(y);
        free(y32);
        free(dx);
        free(dx32);
    }
    qweight_free(&q);
    free(w);
    free(bias);
    free(x);
    free(dy);
}

/* 700 -> 900 and 900 -> 700 take both tilings of both products over several NF4 tiles with a last
 * partial one (test_qlinear.c); a bf16 weight is one product, read in place. */
static void test_linear_bf16_weight(void **state) {
    (void)state;
    check_layer(QWEIGHT_BF16, 700, 900);
    check_layer(QWEIGHT_BF16, 900, 700);
}

static void test_linear_nf4_weight(void **state) {
    (void)state;
    check_layer(QWEIGHT_NF4, 700, 900);
    check_layer(QWEIGHT_NF4, 900, 700);
}

int main(void) {
    gemm_set_threads(2);
    if (!gemm_onednn_bf16_available()) {
        printf("SKIP: test_gemm_bf16: oneDNN has no bf16 matmul on this CPU (needs AVX512-BF16 or AVX512); "
               "test_bf16_dispatch covers the fallback\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_bf16_matches_reference),
        cmocka_unit_test(test_gemm_bf16_cache),
        cmocka_unit_test(test_gemm_bf16_empty_dims),
        cmocka_unit_test(test_linear_bf16_weight),
        cmocka_unit_test(test_linear_nf4_weight),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    linear_scratch_release();
    gemm_release();
    return rc;
}
