/*
 * test_bf16_dispatch.c - the parts of the bf16 product path that run on any CPU: the bf16
 * conversions and decoders it feeds gemm_bf16 with, the oneDNN descriptors it would create, and the
 * fallback where oneDNN has no bf16 matmul (the AVX2 dev machine). The products themselves are
 * test_gemm_bf16.c, which needs the hardware.
 *
 * All comparisons here are bitwise: the decoders must give exactly bf16_from_f32 of the fp32
 * decode, and the fallback must give exactly the emulated path's numbers (the same oneDNN fp32
 * primitive on the same values).
 */
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "gemm.h"
#include "model/linear.h"
#include "quant/bf16.h"
#include "quant/qweight.h"
#include "rng.h"
#include "testutil.h"

#define NO_BF16_REASON "oneDNN has no bf16 matmul on this CPU (needs AVX512-BF16 or AVX512)"

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* bf16_from_f32_rows on a strided matrix large enough for its parallel path, with the values where
 * rounding is delicate, equals bf16_from_f32 element by element and leaves dst's padding alone. */
static void test_from_f32_rows(void **state) {
    (void)state;
    enum { ROWS = 130, COLS = 300, LDS = 307, LDD = 311 };
    const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, /* +-0, +-inf */
        0x7fc00000u, 0x7f800001u, 0xffbfffffu,              /* NaNs, including signalling ones */
        0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, /* ties to even (down, up), near ties */
        0x7f7fffffu, 0x7f7f8000u, 0x00000001u, 0x807fffffu, /* overflow to inf, tie at max, subnormals */
    };
    rng_state r;
    rng_seed(&r, 5);
    float *src = malloc((size_t)ROWS * LDS * sizeof(float));
    uint16_t *dst = malloc((size_t)ROWS * LDD * sizeof(uint16_t));
    assert_true(src && dst);
    for (size_t i = 0; i < (size_t)ROWS * LDS; i++) src[i] = rng_normal(&r) * 3.0f;
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) src[7 * LDS + 11 + i] = f32_from_bits(special[i]);
    for (size_t i = 0; i < (size_t)ROWS * LDD; i++) dst[i] = 0xABCDu;
    bf16_from_f32_rows(dst, LDD, src, LDS, ROWS, COLS);
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < LDD; j++) {
            uint16_t got = dst[(size_t)i * LDD + j];
            uint16_t want = j < COLS ? bf16_from_f32(src[(size_t)i * LDS + j]) : 0xABCDu;
            if (got != want) fail_msg("[%d, %d]: got 0x%04x, want 0x%04x", i, j, got, want);
        }
    /* the scalar rule itself, on the special values: RNE, NaN stays NaN */
    assert_int_equal(bf16_from_f32(f32_from_bits(0x3f808000u)), 0x3f80);
    assert_int_equal(bf16_from_f32(f32_from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(bf16_from_f32(f32_from_bits(0x7f7fffffu)), 0x7f80);
    assert_true(isnan(bf16_to_f32(bf16_from_f32(f32_from_bits(0x7f800001u)))));
    free(src);
    free(dst);
}

/* NF4 tiles decoded to bf16 equal bf16_from_f32 of the fp32 decode, bitwise, for windows crossing
 * quantisation blocks and rows, rows longer than the decoder's 256-value chunk, and a tile large
 * enough for its parallel path; with bf16 compute the fp32 decode (already rounded) widens back
 * exactly. A bf16 weight's tile is a view of its storage. */
static void test_tile_bf16(void **state) {
    (void)state;
    enum { ROWS = 97, COLS = 700 };
    rng_state r;
    rng_seed(&r, 9);
    float *w = tu_randn(&r, (size_t)ROWS * COLS, 0.0f, 0.05f), *t32 = malloc((size_t)ROWS * COLS * sizeof(float));
    uint16_t *t16 = malloc((size_t)ROWS * COLS * sizeof(uint16_t));
    assert_true(t32 && t16);
    const int wins[][4] = {{0, ROWS, 0, COLS}, {0, 1, 0, 1}, {3, 5, 7, 13}, {96, 1, 699, 1}, {10, 40, 1, 699}, {5, 90, 257, 300}};
    for (int compute = 0; compute < 2; compute++) {
        qweight q;
        assert_int_equal(qweight_init_nf4(&q, w, ROWS, COLS, compute), PEFT_OK);
        for (size_t k = 0; k < sizeof wins / sizeof wins[0]; k++) {
            const int r0 = wins[k][0], nr = wins[k][1], c0 = wins[k][2], nc = wins[k][3];
            int ld = -1;
            memset(t16, 0, (size_t)ROWS * COLS * sizeof(uint16_t));
            const uint16_t *t = qweight_tile_bf16(&q, r0, nr, c0, nc, t16, &ld);
            assert_ptr_equal(t, t16);
            assert_int_equal(ld, nc);
            qweight_tile(&q, r0, nr, c0, nc, t32);
            for (size_t i = 0; i < (size_t)nr * nc; i++) {
                if (t16[i] != bf16_from_f32(t32[i]))
                    fail_msg("nf4 window (%d, %d, %d, %d) value %zu: 0x%04x, want 0x%04x", r0, nr, c0, nc, i, t16[i],
                             bf16_from_f32(t32[i]));
                if (compute && bf16_to_f32(t16[i]) != t32[i])
                    fail_msg("nf4 bf16-compute window (%d, %d, %d, %d) value %zu: %.9g, want %.9g", r0, nr, c0, nc, i,
                             (double)bf16_to_f32(t16[i]), (double)t32[i]);
            }
        }
        qweight_free(&q);
    }
    qweight q;
    assert_int_equal(qweight_init_bf16(&q, w, ROWS, COLS), PEFT_OK);
    int ld = -1;
    assert_ptr_equal(qweight_tile_bf16(&q, 3, 5, 7, 13, NULL, &ld), q.bf16 + 3 * COLS + 7);
    assert_int_equal(ld, COLS);
    qweight_free(&q);
    free(w);
    free(t32);
    free(t16);
}

/* The bf16 primitive's descriptors are well formed for every argument combination gemm_bf16
 * accepts: creating it succeeds where oneDNN has a bf16 matmul and is "unimplemented" elsewhere,
 * never "invalid arguments" (a descriptor oneDNN rejects as malformed). */
static void test_bf16_descriptors(void **state) {
    (void)state;
    const int want = gemm_onednn_bf16_available() ? dnnl_success : dnnl_unimplemented;
    const int shapes[][3] = {{1, 1, 1}, {7, 33, 300}, {129, 33, 1}, {1024, 768, 3072}};
    int checked = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++)
                for (int pad = 0; pad <= 5; pad += 5)
                    for (int ab = 0; ab < 4; ab++) {
                        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                        const int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
                        const float alpha = ab & 1 ? -0.75f : 1.0f, beta = ab & 2 ? 1.0f : 0.0f;
                        int st = gemm_onednn_bf16_probe(tA, tB, M, N, K, lda, ldb, ldc, alpha, beta);
                        if (st != want)
                            fail_msg("bf16 matmul transA=%d transB=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d alpha=%g "
                                     "beta=%g: status %d, want %d (invalid_arguments = %d)",
                                     tA, tB, M, N, K, lda, ldb, ldc, (double)alpha, (double)beta, st, want,
                                     dnnl_invalid_arguments);
                        checked++;
                    }
    print_message("  %d bf16 matmul descriptors: all %s\n", checked,
                  want == dnnl_success ? "created" : "unimplemented (well formed; " NO_BF16_REASON ")");
}

/* Without oneDNN's bf16 matmul, gemm_bf16 is a bug: it must abort with the assertion's message
 * rather than compute anything. Run in a child process. */
static void test_gemm_bf16_fatal_without_hardware(void **state) {
    (void)state;
    if (gemm_onednn_bf16_available()) {
        print_message("  skipped: this CPU has oneDNN's bf16 matmul, so gemm_bf16 is legal here\n");
        skip();
    }
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        const uint16_t A[1] = {0x3f80}, B[1] = {0x3f80};
        float C[1] = {0};
        gemm_bf16(0, 0, 1, 1, 1, 1.0f, A, 1, B, 1, 0.0f, C, 1);
        _exit(0); /* not reached if gemm_bf16 aborts as it must */
    }
    close(fds[1]);
    char msg[512] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof msg - 1 && (n = read(fds[0], msg + got, sizeof msg - 1 - got)) > 0) got += (size_t)n;
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("gemm_bf16 without the hardware did not abort (status 0x%x, stderr '%s')", status, msg);
    if (!strstr(msg, "gemm_onednn_bf16_available"))
        fail_msg("the abort does not name the failed check: '%s'", msg);
}

enum { N = 5, PAD = 5 };

/* Where oneDNN has no bf16 matmul, a bf16-compute layer on GEMM_ONEDNN gives exactly the numbers
 * of the emulated path as it was before gemm_bf16 existed: input and weight rounded to bf16 and
 * multiplied by the same oneDNN fp32 primitive. The shapes fit one tile, so that path is one
 * gemm_f32 call with the layer's own arguments and the comparison can be bitwise. */
static void check_fallback(qweight_format fmt, int IN, int OUT) {
    PEFT_ASSERT((size_t)IN * OUT <= LINEAR_TILE_ELEMS);
    const int LDX = IN + 3, LDY = OUT + PAD;
    const size_t nx = (size_t)N * LDX, ny = (size_t)N * LDY;
    rng_state r;
    rng_seed(&r, 21 + (uint64_t)fmt + (uint64_t)IN);
    float *w = tu_randn(&r, (size_t)OUT * IN, 0.0f, 0.05f), *bias = tu_randn(&r, OUT, 0.0f, 0.1f);
    float *x = tu_randn(&r, nx, 0.0f, 1.0f), *dy = tu_randn(&r, ny, 0.0f, 1.0f);
    float *xr = malloc((size_t)N * IN * sizeof(float)), *dyr = malloc((size_t)N * OUT * sizeof(float));
    float *wd = malloc((size_t)OUT * IN * sizeof(float));
    assert_true(xr && dyr && wd);
    qweight q;
    if (fmt == QWEIGHT_NF4) assert_int_equal(qweight_init_nf4(&q, w, OUT, IN, true), PEFT_OK);
    else assert_int_equal(qweight_init_bf16(&q, w, OUT, IN), PEFT_OK);
    qweight_tile(&q, 0, OUT, 0, IN, wd);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < IN; j++) xr[(size_t)i * IN + j] = bf16_round(x[(size_t)i * LDX + j]);
        for (int j = 0; j < OUT; j++) dyr[(size_t)i * OUT + j] = bf16_round(dy[(size_t)i * LDY + j]);
    }
    param pw = {.name = "w", .ndim = 2, .shape = {OUT, IN}, .numel = (size_t)OUT * IN, .q = &q};
    param pb = {.name = "b", .ndim = 1, .shape = {OUT, 1}, .numel = OUT, .data = bias};
    linear l = {.module = "test", .in = IN, .out = OUT, .in_major = 0, .weight = &pw, .bias = &pb};
    for (int acc = 0; acc < 2; acc++) {
        float *y = tu_randn(&r, ny, 0.0f, 1.0f), *yw = malloc(ny * sizeof(float));
        float *dx = tu_randn(&r, nx, 0.0f, 1.0f), *dxw = malloc(nx * sizeof(float));
        assert_true(yw && dxw);
        memcpy(yw, y, ny * sizeof(float));
        memcpy(dxw, dx, nx * sizeof(float));
        linear_forward(GEMM_ONEDNN, &l, y, LDY, x, LDX, N, acc);
        gemm_f32(GEMM_ONEDNN, 0, 1, N, OUT, IN, 1.0f, xr, IN, wd, IN, acc ? 1.0f : 0.0f, yw, LDY);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < OUT; j++) yw[(size_t)i * LDY + j] += bias[j];
        linear_backward(GEMM_ONEDNN, &l, dx, LDX, dy, LDY, x, LDX, N, acc);
        gemm_f32(GEMM_ONEDNN, 0, 0, N, IN, OUT, 1.0f, dyr, OUT, wd, IN, acc ? 1.0f : 0.0f, dxw, LDX);
        if (memcmp(y, yw, ny * sizeof(float)) || memcmp(dx, dxw, nx * sizeof(float))) {
            size_t at;
            double dy_ = tu_max_abs_diff(y, yw, ny, &at), dx_ = tu_max_abs_diff(dx, dxw, nx, &at);
            fail_msg("%s %d->%d acc=%d: the fallback differs from the emulated path (max |diff| forward %.3e, "
                     "input gradient %.3e)",
                     qweight_format_name(fmt), IN, OUT, acc, dy_, dx_);
        }
        free(y);
        free(yw);
        free(dx);
        free(dxw);
    }
    qweight_free(&q);
    free(w);
    free(bias);
    free(x);
    free(dy);
    free(xr);
    free(dyr);
    free(wd);
}

static void test_fallback_is_the_emulated_path(void **state) {
    (void)state;
    if (gemm_onednn_bf16_available()) {
        print_message("  skipped: this CPU has oneDNN's bf16 matmul, so GEMM_ONEDNN takes gemm_bf16 "
                      "(test_gemm_bf16 compares it with the emulated path)\n");
        skip();
    }
    check_fallback(QWEIGHT_BF16, 300, 500);
    check_fallback(QWEIGHT_BF16, 500, 300);
    check_fallback(QWEIGHT_NF4, 300, 500);
    check_fallback(QWEIGHT_NF4, 500, 300);
}

int main(void) {
    gemm_set_threads(2);
    if (!gemm_onednn_bf16_available()) print_message("note: " NO_BF16_REASON "; testing the fallback\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_f32_rows),
        cmocka_unit_test(test_tile_bf16),
        cmocka_unit_test(test_bf16_descriptors),
        cmocka_unit_test(test_gemm_bf16_fatal_without_hardware),
        cmocka_unit_test(test_fallback_is_the_emulated_path),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    linear_scratch_release();
    gemm_release();
    return rc;
}
