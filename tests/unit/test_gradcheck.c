/*
 * test_gradcheck.c - central finite-difference checks of the backward passes of ops.h's kernels:
 * layernorm, rmsnorm, GELU (erf and tanh), SwiGLU and cross-entropy.
 *
 * Method. A kernel y = f(x) is reduced to the scalar L = sum(R * y) for a fixed random R, summed
 * in double; the analytic gradient is backward(dout = R) into zeroed buffers, the numeric one
 * (L(x + eps) - L(x - eps)) / (2 eps) per input entry, dividing by the step actually taken in fp32
 * (tu_gradcheck.h). Kernels are checked at every entry of every input.
 *
 * Tolerance. tu_check_grad() requires max|analytic - numeric| <= rtol * max|numeric| over one
 * tensor: normwise relative to the tensor's own gradient scale, so small gradients are held to the
 * same standard as large ones, and a numeric gradient that vanishes fails the check (it could not
 * fail otherwise). The rtol of each kernel is set next to its eps with the reason; every check
 * prints the error it saw.
 *
 * Accumulation: every backward is run a second time into buffers that hold random values and must
 * add to them (tolerance 1e-6); columns of a wider buffer that a kernel does not own must come back
 * bit for bit.
 *
 * The finite-difference checks: test_gradcheck.c (the kernels of ops.h), test_gradcheck_rope.c,
 * test_gradcheck_attention.c, test_gradcheck_model.c (the whole model).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "kernels/ops.h"
#include "rng.h"
#include "testutil.h"
#include "tu_gradcheck.h"

/* Steps and tolerances. The worst errors seen over 30 random seeds are in brackets; the kernels'
 * rtols leave a margin of 5x or more. With eps 1e-2 the fp32 rounding of the outputs (~6e-8
 * relative, divided by 2 eps) and the O(eps^2) truncation error are both near 1e-5 of the
 * gradient; eps 1e-3 was up to 10x worse. */
#define KERNEL_EPS 1e-2f
#define NORM_RTOL 3e-4 /* [2.8e-5] layernorm and rmsnorm */
#define GELU_RTOL 3e-4 /* [2.6e-5] GELU and SwiGLU */
/* xent_forward sums in double from the fp32 logits: no rounding noise, only truncation. */
#define XENT_RTOL 1e-5 /* [1.7e-6] */
/* Accumulating into a buffer that holds values rounds once more (or, for in-place sums, in a
 * different order): a few ulps of the larger operand. */
#define ACCUM_RTOL 1e-6

static rng_state rng;

/* ---- layernorm / rmsnorm ----------------------------------------------------------------------- */

typedef struct {
    int N, C;
    float *x, *w, *b, *R, *out, *mean, *rstd;
} norm_case;

static norm_case norm_case_init(int N, int C) {
    const size_t NC = (size_t)N * C;
    return (norm_case){N, C, tu_randn(&rng, NC, 0.5f, 1.0f), tu_randn(&rng, C, 1.0f, 0.5f),
                       tu_randn(&rng, C, 0.0f, 1.0f), tu_randn(&rng, NC, 0.0f, 1.0f), tu_zeros(NC), tu_zeros(N),
                       tu_zeros(N)};
}

static void norm_case_free(norm_case *c) {
    free(c->x), free(c->w), free(c->b), free(c->R), free(c->out), free(c->mean), free(c->rstd);
}

static double layernorm_loss(void *ctx) {
    norm_case *c = ctx;
    layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, 1e-5f);
    return tu_dot(c->R, c->out, (size_t)c->N * c->C);
}

static double rmsnorm_loss(void *ctx) {
    norm_case *c = ctx;
    rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
    return tu_dot(c->R, c->out, (size_t)c->N * c->C);
}

static void test_layernorm(void **state) {
    rng_seed(&rng, 1);
    norm_case c = norm_case_init(6, 24);
    const size_t NC = (size_t)c.N * c.C;
    float *dx = tu_zeros(NC), *dw = tu_zeros(c.C), *db = tu_zeros(c.C), *num = tu_zeros(NC);
    layernorm_loss(&c);
    layernorm_backward(dx, dw, db, c.R, c.x, c.w, c.mean, c.rstd, c.N, c.C);
    tu_numeric_grad(num, c.x, NULL, NC, KERNEL_EPS, layernorm_loss, &c);
    tu_check_grad("layernorm dinp", dx, num, NC, NORM_RTOL);
    tu_numeric_grad(num, c.w, NULL, c.C, KERNEL_EPS, layernorm_loss, &c);
    tu_check_grad("layernorm dweight", dw, num, c.C, NORM_RTOL);
    tu_numeric_grad(num, c.b, NULL, c.C, KERNEL_EPS, layernorm_loss, &c);
    tu_check_grad("layernorm dbias", db, num, c.C, NORM_RTOL);

    layernorm_loss(&c); /* mean and rstd of the unperturbed input again */
    float *ax = tu_randn(&rng, NC, 0, 1), *aw = tu_randn(&rng, c.C, 0, 1), *ab = tu_randn(&rng, c.C, 0, 1);
    float *bx = tu_copy_of(ax, NC), *bw = tu_copy_of(aw, c.C), *bb = tu_copy_of(ab, c.C);
    layernorm_backward(ax, aw, ab, c.R, c.x, c.w, c.mean, c.rstd, c.N, c.C);
    tu_check_accumulates("layernorm dinp accumulates", ax, bx, dx, NC, ACCUM_RTOL);
    tu_check_accumulates("layernorm dweight accumulates", aw, bw, dw, c.C, ACCUM_RTOL);
    tu_check_accumulates("layernorm dbias accumulates", ab, bb, db, c.C, ACCUM_RTOL);
    memcpy(ax, bx, NC * sizeof *ax);
    layernorm_backward(ax, NULL, NULL, c.R, c.x, c.w, c.mean, c.rstd, c.N, c.C);
    tu_check_accumulates("layernorm dinp without param grads", ax, bx, dx, NC, ACCUM_RTOL);
    free(dx), free(dw), free(db), free(num), free(ax), free(aw), free(ab), free(bx), free(bw), free(bb);
    norm_case_free(&c);
}

static void test_rmsnorm(void **state) {
    rng_seed(&rng, 2);
    norm_case c = norm_case_init(6, 24);
    const size_t NC = (size_t)c.N * c.C;
    float *dx = tu_zeros(NC), *dw = tu_zeros(c.C), *num = tu_zeros(NC);
    rmsnorm_loss(&c);
    rmsnorm_backward(dx, dw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    tu_numeric_grad(num, c.x, NULL, NC, KERNEL_EPS, rmsnorm_loss, &c);
    tu_check_grad("rmsnorm dinp", dx, num, NC, NORM_RTOL);
    tu_numeric_grad(num, c.w, NULL, c.C, KERNEL_EPS, rmsnorm_loss, &c);
    tu_check_grad("rmsnorm dweight", dw, num, c.C, NORM_RTOL);

    rmsnorm_loss(&c);
    float *ax = tu_randn(&rng, NC, 0, 1), *aw = tu_randn(&rng, c.C, 0, 1), *bx = tu_copy_of(ax, NC),
          *bw = tu_copy_of(aw, c.C);
    rmsnorm_backward(ax, aw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    tu_check_accumulates("rmsnorm dinp accumulates", ax, bx, dx, NC, ACCUM_RTOL);
    tu_check_accumulates("rmsnorm dweight accumulates", aw, bw, dw, c.C, ACCUM_RTOL);
    memcpy(ax, bx, NC * sizeof *ax);
    rmsnorm_backward(ax, NULL, c.R, c.x, c.w, c.rstd, c.N, c.C);
    tu_check_accumulates("rmsnorm dinp without param grads", ax, bx, dx, NC, ACCUM_RTOL);
    free(dx), free(dw), free(num), free(ax), free(aw), free(bx), free(bw);
    norm_case_free(&c);
}

/* ---- elementwise: GELU, SwiGLU ------------------------------------------------------------------ */

typedef struct {
    size_t n;
    int tanh_approx;
    float *x, *up, *R, *out;
} elem_case;

static double gelu_loss(void *ctx) {
    elem_case *c = ctx;
    gelu_forward(c->out, c->x, c->n, c->tanh_approx);
    return tu_dot(c->R, c->out, c->n);
}

static double swiglu_loss(void *ctx) {
    elem_case *c = ctx;
    swiglu_forward(c->out, c->x, c->up, c->n);
    return tu_dot(c->R, c->out, c->n);
}

/* Inputs spread over [-range, range] (both tails and the bend) with a little jitter. */
static elem_case elem_case_init(size_t n, float range) {
    elem_case c = {n, 0, tu_zeros(n), tu_randn(&rng, n, 0.0f, 1.0f), tu_randn(&rng, n, 0.0f, 1.0f), tu_zeros(n)};
    for (size_t i = 0; i < n; i++)
        c.x[i] = -range + 2.0f * range * (float)i / (float)(n - 1) + 0.05f * rng_normal(&rng);
    return c;
}

static void elem_case_free(elem_case *c) { free(c->x), free(c->up), free(c->R), free(c->out); }

static void test_gelu(void **state) {
    rng_seed(&rng, 3);
    elem_case c = elem_case_init(64, 4.0f);
    float *dx = tu_zeros(c.n), *num = tu_zeros(c.n), *acc = tu_randn(&rng, c.n, 0, 1), *before = tu_copy_of(acc, c.n);
    for (c.tanh_approx = 0; c.tanh_approx <= 1; c.tanh_approx++) {
        memset(dx, 0, c.n * sizeof *dx);
        gelu_backward(dx, c.R, c.x, c.n, c.tanh_approx);
        tu_numeric_grad(num, c.x, NULL, c.n, KERNEL_EPS, gelu_loss, &c);
        tu_check_grad(c.tanh_approx ? "gelu (tanh) dinp" : "gelu (erf) dinp", dx, num, c.n, GELU_RTOL);
        memcpy(acc, before, c.n * sizeof *acc);
        gelu_backward(acc, c.R, c.x, c.n, c.tanh_approx);
        tu_check_accumulates("gelu dinp accumulates", acc, before, dx, c.n, ACCUM_RTOL);
    }
    free(dx), free(num), free(acc), free(before);
    elem_case_free(&c);
}

static void test_swiglu(void **state) {
    rng_seed(&rng, 4);
    elem_case c = elem_case_init(64, 6.0f);
    float *dg = tu_zeros(c.n), *du = tu_zeros(c.n), *num = tu_zeros(c.n);
    swiglu_backward(dg, du, c.R, c.x, c.up, c.n);
    tu_numeric_grad(num, c.x, NULL, c.n, KERNEL_EPS, swiglu_loss, &c);
    tu_check_grad("swiglu dgate", dg, num, c.n, GELU_RTOL);
    tu_numeric_grad(num, c.up, NULL, c.n, KERNEL_EPS, swiglu_loss, &c);
    tu_check_grad("swiglu dup", du, num, c.n, GELU_RTOL);

    float *ag = tu_randn(&rng, c.n, 0, 1), *au = tu_randn(&rng, c.n, 0, 1), *bg = tu_copy_of(ag, c.n),
          *bu = tu_copy_of(au, c.n);
    swiglu_backward(ag, au, c.R, c.x, c.up, c.n);
    tu_check_accumulates("swiglu dgate accumulates", ag, bg, dg, c.n, ACCUM_RTOL);
    tu_check_accumulates("swiglu dup accumulates", au, bu, du, c.n, ACCUM_RTOL);
    free(dg), free(du), free(num), free(ag), free(au), free(bg), free(bu);
    elem_case_free(&c);
}

/* ---- cross-entropy ----------------------------------------------------------------------------- */

typedef struct {
    int N, V, count;
    const int *targets;
    float scale;
    float *logits, *nll;
} xent_case;

static double xent_loss(void *ctx) {
    xent_case *c = ctx;
    return c->scale * xent_forward(c->nll, c->logits, c->targets, c->N, c->V, &c->count);
}

/* L = scale * sum nll; rows 1 and 4 have no target (-1 and -100 both mean "no loss"). */
static void test_xent(void **state) {
    rng_seed(&rng, 5);
    static const int targets[] = {3, -1, 0, 10, -100};
    xent_case c = {5, 11, 0, targets, 0.37f, NULL, tu_zeros(5)};
    const size_t NV = (size_t)c.N * c.V;
    c.logits = tu_randn(&rng, NV, 0.0f, 2.0f);

    double total = xent_loss(&c) / c.scale, want_total = 0.0;
    assert_int_equal(c.count, 3);
    float want_nll[5] = {0};
    for (int i = 0; i < c.N; i++) {
        if (targets[i] < 0) continue;
        double s = 0.0;
        for (int j = 0; j < c.V; j++) s += exp((double)c.logits[(size_t)i * c.V + j]);
        want_nll[i] = (float)(log(s) - c.logits[(size_t)i * c.V + targets[i]]);
        want_total += want_nll[i];
    }
    /* nll in double from the same fp32 logits: only the final rounding to float differs */
    tu_assert_close("xent nll (rows without target are 0)", c.nll, want_nll, 5, 1e-6);
    if (!(fabs(total - want_total) <= 1e-6 * fmax(1.0, fabs(want_total))))
        fail_msg("xent_forward returned %.9g, the rows' nll sum to %.9g (rtol 1e-6)", total, want_total);

    float *d = tu_copy_of(c.logits, NV), *num = tu_zeros(NV);
    xent_backward(d, targets, c.scale, c.N, c.V);
    for (int i = 0; i < c.N; i++)
        for (int j = 0; j < c.V && targets[i] < 0; j++)
            if (d[(size_t)i * c.V + j] != 0.0f) fail_msg("xent_backward: row %d has no target but d[%d] = %g", i, j, d[(size_t)i * c.V + j]);
    tu_numeric_grad(num, c.logits, NULL, NV, KERNEL_EPS, xent_loss, &c);
    tu_check_grad("xent dlogits", d, num, NV, XENT_RTOL);
    free(d), free(num), free(c.logits), free(c.nll);
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_xent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
