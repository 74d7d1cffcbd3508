/*
 * test_gemm.c - both GEMM backends against gemm_f32_ref.
 *
 * Every product runs on buffers whose leading dimensions may exceed the logical width; the
 * padding is random and C's padding must come back untouched, so each comparison covers the whole
 * C buffer. Tolerance: normwise relative 1e-5 (tu_assert_close) with K <= 300 and entries in
 * [-1, 1]; fp32 accumulation error grows like sqrt(K) * 6e-8 relative to the largest |C|.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "testutil.h"

#define GEMM_RTOL 1e-5

static const gemm_backend backends[] = {GEMM_OPENBLAS, GEMM_ONEDNN};

static unsigned lcg_state = 12345u;

static float lcg_uniform(void) { /* [-1, 1) */
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (float)((lcg_state >> 8) * (2.0 / 16777216.0) - 1.0);
}

static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = lcg_uniform();
    return p;
}

/* One problem: A, B, C (and the reference's copy of C) sized for the given leading dims. */
typedef struct {
    int transA, transB, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    float *A; /* [transA ? K : M, lda] */
    float *B; /* [transB ? N : K, ldb] */
    float *C; /* [M, ldc], what the backend writes */
    float *C_ref; /* [M, ldc], what gemm_f32_ref writes */
} problem;

/* pad: extra elements added to each leading dimension (0 = tight). */
static void problem_init(problem *p, int transA, int transB, int M, int N, int K, int pad,
                         float alpha, float beta) {
    *p = (problem){transA, transB, M, N, K, 0, 0, 0, alpha, beta, NULL, NULL, NULL, NULL};
    p->lda = (transA ? M : K) + pad;
    p->ldb = (transB ? K : N) + pad;
    p->ldc = N + pad;
    p->A = rand_buf((size_t)(transA ? K : M) * p->lda);
    p->B = rand_buf((size_t)(transB ? N : K) * p->ldb);
    p->C = rand_buf((size_t)M * p->ldc);
    p->C_ref = malloc((size_t)M * p->ldc * sizeof(float));
    assert_non_null(p->C_ref);
}

/* New random A, B and C, keeping the shape. With beta == 0 C's logical part is NaN: the
 * backends must overwrite it without reading it. */
static void problem_refill(problem *p) {
    size_t na = (size_t)(p->transA ? p->K : p->M) * p->lda;
    size_t nb = (size_t)(p->transB ? p->N : p->K) * p->ldb;
    for (size_t i = 0; i < na; i++) p->A[i] = lcg_uniform();
    for (size_t i = 0; i < nb; i++) p->B[i] = lcg_uniform();
    for (int i = 0; i < p->M; i++)
        for (int j = 0; j < p->ldc; j++)
            p->C[(size_t)i * p->ldc + j] = (p->beta == 0.0f && j < p->N) ? NAN : lcg_uniform();
    memcpy(p->C_ref, p->C, (size_t)p->M * p->ldc * sizeof(float));
}

static void problem_free(problem *p) {
    free(p->A);
    free(p->B);
    free(p->C);
    free(p->C_ref);
}

/* Runs the product on `be` and on the reference and compares the whole C buffer. */
static void problem_check(problem *p, gemm_backend be) {
    gemm_f32(be, p->transA, p->transB, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb,
             p->beta, p->C, p->ldc);
    gemm_f32_ref(p->transA, p->transB, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb,
                 p->beta, p->C_ref, p->ldc);
    char what[256];
    snprintf(what, sizeof what, "%s transA=%d transB=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d "
             "alpha=%g beta=%g", gemm_backend_name(be), p->transA, p->transB, p->M, p->N, p->K,
             p->lda, p->ldb, p->ldc, (double)p->alpha, (double)p->beta);
    tu_assert_close(what, p->C, p->C_ref, (size_t)p->M * p->ldc, GEMM_RTOL);
}

/* Odd sizes, vectors (1) and K up to 300, each tried in every combination below. */
static const int shapes[][3] = {
    {1, 1, 1}, {1, 7, 33}, {7, 1, 129}, {33, 129, 7}, {129, 33, 1}, {7, 33, 300}, {129, 129, 129},
};

static void test_backends_match_reference(void **state) {
    const float alphas[] = {1.0f, -0.75f};
    const float betas[] = {0.0f, 1.0f};
    const int pads[] = {0, 5};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++)
                for (int ia = 0; ia < 2; ia++)
                    for (int ib = 0; ib < 2; ib++)
                        for (int ip = 0; ip < 2; ip++)
                            for (int be = 0; be < 2; be++) {
                                problem p;
                                problem_init(&p, tA, tB, shapes[s][0], shapes[s][1], shapes[s][2],
                                             pads[ip], alphas[ia], betas[ib]);
                                problem_refill(&p);
                                problem_check(&p, backends[be]);
                                problem_free(&p);
                            }
}

/* The oneDNN cache keys on shape, not on pointers: a second call with the same shape must use the
 * new arrays (new allocations and new contents), and the first arrays again after that. */
static void test_same_shape_new_data(void **state) {
    for (int be = 0; be < 2; be++)
        for (int tB = 0; tB < 2; tB++) {
            problem first, second;
            problem_init(&first, 0, tB, 33, 65, 47, 3, 1.0f, 1.0f);
            problem_init(&second, 0, tB, 33, 65, 47, 3, 1.0f, 1.0f);
            problem_refill(&first);
            problem_check(&first, backends[be]);
            problem_refill(&second);
            problem_check(&second, backends[be]);
            problem_refill(&first);
            problem_check(&first, backends[be]);
            problem_free(&first);
            problem_free(&second);
        }
}

/* More shapes than the cache's first allocation, then the earliest again after it has grown. */
static void test_many_shapes(void **state) {
    enum { NSHAPES = 70 };
    problem p[NSHAPES];
    for (int i = 0; i < NSHAPES; i++) {
        problem_init(&p[i], i % 2, (i / 2) % 2, 1 + i, 3 + i % 5, 2 + i % 11, 0, 1.0f, 0.0f);
        problem_refill(&p[i]);
        problem_check(&p[i], GEMM_ONEDNN);
    }
    for (int i = 0; i < NSHAPES; i++) {
        problem_refill(&p[i]);
        problem_check(&p[i], GEMM_ONEDNN);
        problem_free(&p[i]);
    }
}

/* K == 0: C = beta * C, so zeros for beta 0 and untouched for beta 1; M or N 0: nothing. C is a
 * 2x2 view with ldc 3, so column 2 is padding that no call may touch. */
static void test_empty_dims(void **state) {
    for (int be = 0; be < 2; be++) {
        const float A[1] = {1.0f}, B[1] = {1.0f};
        const float kept[6] = {1, 2, 3, 4, 5, 6};
        const float zeroed[6] = {0, 0, 3, 0, 0, 6};
        float C[6];
        memcpy(C, kept, sizeof C);
        gemm_f32(backends[be], 0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 1.0f, C, 3);
        tu_assert_close("K=0 beta=1", C, kept, 6, 0.0);
        gemm_f32(backends[be], 0, 0, 0, 2, 1, 1.0f, A, 1, B, 2, 0.0f, C, 3);
        gemm_f32(backends[be], 0, 0, 2, 0, 1, 1.0f, A, 1, B, 1, 0.0f, C, 3);
        tu_assert_close("M=0 or N=0", C, kept, 6, 0.0);
        gemm_f32(backends[be], 0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, C, 3);
        tu_assert_close("K=0 beta=0", C, zeroed, 6, 0.0);
    }
}

/* Changing the thread count drops cached oneDNN primitives; products must still be right. */
static void test_thread_change(void **state) {
    int before = gemm_get_threads();
    problem p;
    problem_init(&p, 1, 0, 65, 31, 77, 2, 1.0f, 1.0f);
    for (int nthreads = 1; nthreads <= 2; nthreads++) {
        gemm_set_threads(nthreads);
        assert_int_equal(gemm_get_threads(), nthreads);
        for (int be = 0; be < 2; be++) {
            problem_refill(&p);
            problem_check(&p, backends[be]);
        }
    }
    problem_free(&p);
    gemm_set_threads(before);
}

static void test_backend_parse(void **state) {
    gemm_backend be = GEMM_ONEDNN;
    assert_int_equal(gemm_backend_parse("openblas", &be), PEFT_OK);
    assert_int_equal(be, GEMM_OPENBLAS);
    assert_int_equal(gemm_backend_parse("onednn", &be), PEFT_OK);
    assert_int_equal(be, GEMM_ONEDNN);
    assert_string_equal(gemm_backend_name(GEMM_OPENBLAS), "openblas");
    assert_string_equal(gemm_backend_name(GEMM_ONEDNN), "onednn");

    const char *bad[] = {"OpenBLAS", "mkl", "", "onednn ", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        be = GEMM_ONEDNN;
        assert_int_equal(gemm_backend_parse(bad[i], &be), PEFT_EUSAGE);
        assert_int_equal(be, GEMM_ONEDNN); /* unchanged on error */
        assert_non_null(strstr(err_msg(), "--gemm"));
        if (bad[i] && bad[i][0]) assert_non_null(strstr(err_msg(), bad[i]));
    }
}

static int teardown_release(void **state) {
    gemm_release();
    return 0;
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backends_match_reference),
        cmocka_unit_test(test_same_shape_new_data),
        cmocka_unit_test(test_many_shapes),
        cmocka_unit_test(test_empty_dims),
        cmocka_unit_test(test_thread_change),
        cmocka_unit_test(test_backend_parse),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_release);
}
