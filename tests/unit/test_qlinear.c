/*
 * test_qlinear.c - linear layers over compressed weights (NF4, bf16) against the naive product with
 * the fully dequantised weight, on both GEMM backends.
 *
 * Shapes (700 -> 900 and 900 -> 700) are chosen so that both tilings of both products (output
 * columns, or the reduced dimension with accumulation) take several tiles with a last partial one,
 * with strided inputs/outputs and both overwrite and accumulate. The reference dequantises the whole weight (only the test does that)
 * and runs gemm_f32_ref in double; in bf16 compute the reference rounds the input and the weight
 * to bf16 first. Tolerance RTOL normwise: only the summation order differs.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "model/linear.h"
#include "quant/bf16.h"
#include "quant/qweight.h"
#include "rng.h"

#define RTOL 1e-5

enum { N = 5, PAD = 5 };

/* in < out and in > out take the two tilings of each product (linear.h) */
static void check_shape(gemm_backend be, qweight_format fmt, bool bf16_compute, const int IN, const int OUT) {
    const int LDX = IN + 3, LDY = OUT + PAD;
    rng_state r;
    rng_seed(&r, 7 + (uint64_t)fmt * 2 + bf16_compute + (uint64_t)IN);
    float *w = tu_randn(&r, (size_t)OUT * IN, 0.0f, 0.05f), *bias = tu_randn(&r, OUT, 0.0f, 0.1f);
    float *x = tu_randn(&r, (size_t)N * LDX, 0.0f, 1.0f), *dy = tu_randn(&r, (size_t)N * LDY, 0.0f, 1.0f);
    qweight q;
    if (fmt == QWEIGHT_NF4) assert_int_equal(qweight_init_nf4(&q, w, OUT, IN, bf16_compute), PEFT_OK);
    else assert_int_equal(qweight_init_bf16(&q, w, OUT, IN), PEFT_OK);
    /* the reference weight: the whole matrix decoded (test only) */
    float *wd = malloc((size_t)OUT * IN * sizeof(float));
    assert_non_null(wd);
    qweight_tile(&q, 0, OUT, 0, IN, wd);
    if (fmt == QWEIGHT_NF4) { /* decoding really is NF4: at most 16 distinct values per block */
        size_t where;
        assert_true(tu_max_abs_diff(wd, w, (size_t)OUT * IN, &where) > 1e-3);
    }
    const bool round_in = fmt == QWEIGHT_BF16 || bf16_compute;
    float *xr = malloc((size_t)N * LDX * sizeof(float)), *dyr = malloc((size_t)N * LDY * sizeof(float));
    assert_true(xr && dyr);
    for (size_t i = 0; i < (size_t)N * LDX; i++) xr[i] = round_in ? bf16_round(x[i]) : x[i];
    for (size_t i = 0; i < (size_t)N * LDY; i++) dyr[i] = round_in ? bf16_round(dy[i]) : dy[i];

    param pw = {.name = "w", .ndim = 2, .shape = {OUT, IN}, .numel = (size_t)OUT * IN, .q = &q};
    param pb = {.name = "b", .ndim = 1, .shape = {OUT, 1}, .numel = OUT, .data = bias};
    linear l = {.module = "test", .in = IN, .out = OUT, .in_major = 0, .weight = &pw, .bias = &pb};

    for (int acc = 0; acc < 2; acc++) {
        float *y = tu_randn(&r, (size_t)N * LDY, 0.0f, 1.0f), *yref = malloc((size_t)N * LDY * sizeof(float));
        assert_non_null(yref);
        memcpy(yref, y, (size_t)N * LDY * sizeof(float));
        linear_forward(be, &l, y, LDY, x, LDX, N, acc);
        gemm_f32_ref(0, 1, N, OUT, IN, 1.0f, xr, LDX, wd, IN, acc ? 1.0f : 0.0f, yref, LDY);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < OUT; j++) yref[(size_t)i * LDY + j] += bias[j];
        char what[128];
        snprintf(what, sizeof what, "%s %s%s %d->%d forward acc=%d", gemm_backend_name(be), qweight_format_name(fmt),
                 bf16_compute ? " bf16-compute" : "", IN, OUT, acc);
        tu_assert_close(what, y, yref, (size_t)N * LDY, RTOL);

        float *dx = tu_randn(&r, (size_t)N * LDX, 0.0f, 1.0f), *dxref = malloc((size_t)N * LDX * sizeof(float));
        assert_non_null(dxref);
        memcpy(dxref, dx, (size_t)N * LDX * sizeof(float));
        linear_backward(be, &l, dx, LDX, dy, LDY, x, LDX, N, acc);
        gemm_f32_ref(0, 0, N, IN, OUT, 1.0f, dyr, LDY, wd, IN, acc ? 1.0f : 0.0f, dxref, LDX);
        snprintf(what, sizeof what, "%s %s%s %d->%d input gradient acc=%d", gemm_backend_name(be), qweight_format_name(fmt),
                 bf16_compute ? " bf16-compute" : "", IN, OUT, acc);
        tu_assert_close(what, dx, dxref, (size_t)N * LDX, RTOL);
        free(y);
        free(yref);
        free(dx);
        free(dxref);
    }
    qweight_free(&q);
    free(w);
    free(bias);
    free(x);
    free(dy);
    free(wd);
    free(xr);
    free(dyr);
}

static void check(gemm_backend be, qweight_format fmt, bool bf16_compute) {
    check_shape(be, fmt, bf16_compute, 700, 900);
    check_shape(be, fmt, bf16_compute, 900, 700);
}

static void test_nf4(void **state) {
    (void)state;
    check(GEMM_OPENBLAS, QWEIGHT_NF4, false);
    check(GEMM_ONEDNN, QWEIGHT_NF4, false);
}

static void test_nf4_bf16_compute(void **state) {
    (void)state;
    check(GEMM_OPENBLAS, QWEIGHT_NF4, true);
    check(GEMM_ONEDNN, QWEIGHT_NF4, true);
}

static void test_bf16(void **state) {
    (void)state;
    check(GEMM_OPENBLAS, QWEIGHT_BF16, true);
    check(GEMM_ONEDNN, QWEIGHT_BF16, true);
}

/* Tiles are sub-blocks of the decoded matrix: any (r0, c0) window equals the full decode's. */
static void test_tile_windows(void **state) {
    (void)state;
    rng_state r;
    rng_seed(&r, 3);
    const int rows = 37, cols = 50; /* 1850 values: blocks of 64 cross rows, odd offsets */
    float *w = tu_randn(&r, (size_t)rows * cols, 0.0f, 1.0f), *full = malloc((size_t)rows * cols * sizeof(float)),
          *win = malloc((size_t)rows * cols * sizeof(float));
    assert_true(full && win);
    qweight q;
    assert_int_equal(qweight_init_nf4(&q, w, rows, cols, false), PEFT_OK);
    qweight_tile(&q, 0, rows, 0, cols, full);
    const int wins[][4] = {{0, 1, 0, 1}, {3, 5, 7, 13}, {36, 1, 49, 1}, {10, 20, 1, 49}};
    for (size_t k = 0; k < sizeof wins / sizeof wins[0]; k++) {
        const int r0 = wins[k][0], nr = wins[k][1], c0 = wins[k][2], nc = wins[k][3];
        qweight_tile(&q, r0, nr, c0, nc, win);
        for (int i = 0; i < nr; i++)
            if (memcmp(win + (size_t)i * nc, full + (size_t)(r0 + i) * cols + c0, (size_t)nc * sizeof(float)))
                fail_msg("window (%d, %d, %d, %d) row %d differs from the full decode", r0, nr, c0, nc, i);
    }
    qweight_free(&q);
    free(w);
    free(full);
    free(win);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nf4),
        cmocka_unit_test(test_nf4_bf16_compute),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_tile_windows),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    linear_scratch_release();
    gemm_release();
    return rc;
}
