/*
 * test_gradcheck.c - central finite-difference checks of every backward pass: the kernels of
 * ops.h, rope.h and attention.h, and the whole model (GPT-2 and Llama) through its weights,
 * embeddings and the PEFT extension points (virtual embeddings, prefix keys/values).
 *
 * Method. A kernel y = f(x) is reduced to the scalar L = sum(R * y) for a fixed random R, summed
 * in double; the analytic gradient is backward(dout = R) into zeroed buffers, the numeric one
 * (L(x + eps) - L(x - eps)) / (2 eps) per input entry, dividing by the step actually taken in fp32.
 * Kernels are checked at every entry of every input; the model on its mean loss at a random sample
 * of every parameter, every virtual-embedding entry and a sample of the prefix.
 *
 * Tolerance. check_grad() requires max|analytic - numeric| <= rtol * max|numeric| over one
 * tensor: normwise relative to the tensor's own gradient scale, so small gradients are held to the
 * same standard as large ones, and a numeric gradient that vanishes fails the check (it could not
 * fail otherwise). The rtol of each kernel is set next to its eps with the reason; every check
 * prints the error it saw.
 *
 * Accumulation: every backward is run a second time into buffers that hold random values and must
 * add to them (tolerance 1e-6); columns of a wider buffer that a kernel does not own must come back
 * bit for bit.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "model/acts.h"
#include "model/model.h"
#include "rng.h"
#include "testutil.h"

/* Steps and tolerances. The worst errors seen over 30 random seeds are in brackets; the kernels'
 * rtols leave a margin of 5x or more. With eps 1e-2 the fp32 rounding of the outputs (~6e-8
 * relative, divided by 2 eps) and the O(eps^2) truncation error are both near 1e-5 of the
 * gradient; eps 1e-3 was up to 10x worse. */
#define KERNEL_EPS 1e-2f
#define NORM_RTOL 3e-4 /* [2.8e-5] layernorm and rmsnorm */
#define GELU_RTOL 3e-4 /* [2.6e-5] GELU and SwiGLU */
#define ATTN_RTOL 5e-4 /* [6.0e-5] */
/* xent_forward sums in double from the fp32 logits: no rounding noise, only truncation. */
#define XENT_RTOL 1e-5 /* [1.7e-6] */
/* RoPE is linear: no truncation error, so a large step and a tight tolerance. */
#define ROPE_EPS 1e-1f
#define ROPE_RTOL 1e-5 /* [1.1e-6] */
/* The whole model: a loss of ~4 through ~20 fp32 kernels. A smaller step loses the gradient in
 * fp32 noise, a larger one in truncation error (Llama's embeddings, seen through the first
 * RMSNorm, are the most curved direction: 9e-3 at eps 1e-2). */
#define MODEL_EPS 5e-3f
#define MODEL_RTOL 1e-2 /* [2.2e-3] */
/* Accumulating into a buffer that holds values rounds once more (or, for in-place sums, in a
 * different order): a few ulps of the larger operand. */
#define ACCUM_RTOL 1e-6

static rng_state rng;

static float *zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static float *randn(size_t n, float mean, float std) {
    float *p = zeros(n);
    for (size_t i = 0; i < n; i++) p[i] = mean + std * rng_normal(&rng);
    return p;
}

static float *copy_of(const float *src, size_t n) {
    float *p = zeros(n);
    memcpy(p, src, n * sizeof *p);
    return p;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* num[k] = dL/dx[idx[k]] (idx NULL: dL/dx[k]) by central differences; x is restored exactly. */
static void numeric_grad(float *num, float *x, const size_t *idx, size_t n, float eps, loss_fn loss, void *ctx) {
    for (size_t k = 0; k < n; k++) {
        const size_t i = idx ? idx[k] : k;
        const float x0 = x[i], xp = x0 + eps, xm = x0 - eps;
        x[i] = xp;
        const double lp = loss(ctx);
        x[i] = xm;
        const double lm = loss(ctx);
        x[i] = x0;
        num[k] = (float)((lp - lm) / ((double)xp - (double)xm));
    }
}

/* Fails unless max|ana - num| <= rtol * max|num| (see the top of the file). */
static void check_grad(const char *what, const float *ana, const float *num, size_t n, double rtol) {
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(num[i]));
    if (!(scale > 1e-6)) fail_msg("%s: the numeric gradient vanishes (max %.3g), nothing is checked", what, scale);
    float *a = zeros(n), *w = zeros(n);
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)(ana[i] / scale);
        w[i] = (float)(num[i] / scale);
    }
    char name[256];
    snprintf(name, sizeof name, "%s (analytic vs numeric, both / %.3g)", what, scale);
    double rel = tu_assert_close(name, a, w, n, rtol);
    print_message("  %-46s rel err %.2e (rtol %.0e)\n", what, rel, rtol);
    free(a);
    free(w);
}

/* acc held `before` when the backward ran into it; it must now hold before + fresh, where fresh is
 * what the same backward wrote into zeros. */
static void check_accumulates(const char *what, const float *acc, const float *before, const float *fresh, size_t n) {
    float *want = zeros(n);
    for (size_t i = 0; i < n; i++) want[i] = before[i] + fresh[i];
    tu_assert_close(what, acc, want, n, ACCUM_RTOL);
    free(want);
}

/* ---- layernorm / rmsnorm ----------------------------------------------------------------------- */

typedef struct {
    int N, C;
    float *x, *w, *b, *R, *out, *mean, *rstd;
} norm_case;

static norm_case norm_case_init(int N, int C) {
    const size_t NC = (size_t)N * C;
    return (norm_case){N, C, randn(NC, 0.5f, 1.0f), randn(C, 1.0f, 0.5f), randn(C, 0.0f, 1.0f), randn(NC, 0.0f, 1.0f),
                       zeros(NC), zeros(N), zeros(N)};
}

static void norm_case_free(norm_case *c) {
    free(c->x), free(c->w), free(c->b), free(c->R), free(c->out), free(c->mean), free(c->rstd);
}

static double layernorm_loss(void *ctx) {
    norm_case *c = ctx;
    layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, 1e-5f);
    return dot(c->R, c->out, (size_t)c->N * c->C);
}

static double rmsnorm_loss(void *ctx) {
    norm_case *c = ctx;
    rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
    return dot(c->R, c->out, (size_t)c->N * c->C);
}

static void test_layernorm(void **state) {
    rng_seed(&rng, 1);
    norm_case c = norm_case_init(6, 24);
    const size_t NC = (size_t)c.N * c.C;
    float *dx = zeros(NC), *dw = zeros(c.C), *db = zeros(c.C), *num = zeros(NC);
    layernorm_loss(&c);
    layernorm_backward(dx, dw, db, c.R, c.x, c.w, c.mean, c.rstd, c.N, c.C);
    numeric_grad(num, c.x, NULL, NC, KERNEL_EPS, layernorm_loss, &c);
    check_grad("layernorm dinp", dx, num, NC, NORM_RTOL);
    numeric_grad(num, c.w, NULL, c.C, KERNEL_EPS, layernorm_loss, &c);
    check_grad("layernorm dweight", dw, num, c.C, NORM_RTOL);
    numeric_grad(num, c.b, NULL, c.C, KERNEL_EPS, layernorm_loss, &c);
    check_grad("layernorm dbias", db, num, c.C, NORM_RTOL);

    layernorm_loss(&c); /* mean and rstd of the unperturbed input again */
    float *ax = randn(NC, 0, 1), *aw = randn(c.C, 0, 1), *ab = randn(c.C, 0, 1);
    float *bx = copy_of(ax, NC), *bw = copy_of(aw, c.C), *bb = copy_of(ab, c.C);
    layernorm_backward(ax, aw, ab, c.R, c.x, c.w, c.mean, c.rstd, c.N, c.C);
    check_accumulates("layernorm dinp accumulates", ax, bx, dx, NC);
    check_accumulates("layernorm dweight accumulates", aw, bw, dw, c.C);
    check_accumulates("layernorm dbias accumulates", ab, bb, db, c.C);
    memcpy(ax, bx, NC * sizeof *ax);
    layernorm_backward(ax, NULL, NULL, c.R, c.x, c.w, c.mean, c.rstd, c.N, c.C);
    check_accumulates("layernorm dinp without param grads", ax, bx, dx, NC);
    free(dx), free(dw), free(db), free(num), free(ax), free(aw), free(ab), free(bx), free(bw), free(bb);
    norm_case_free(&c);
}

static void test_rmsnorm(void **state) {
    rng_seed(&rng, 2);
    norm_case c = norm_case_init(6, 24);
    const size_t NC = (size_t)c.N * c.C;
    float *dx = zeros(NC), *dw = zeros(c.C), *num = zeros(NC);
    rmsnorm_loss(&c);
    rmsnorm_backward(dx, dw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    numeric_grad(num, c.x, NULL, NC, KERNEL_EPS, rmsnorm_loss, &c);
    check_grad("rmsnorm dinp", dx, num, NC, NORM_RTOL);
    numeric_grad(num, c.w, NULL, c.C, KERNEL_EPS, rmsnorm_loss, &c);
    check_grad("rmsnorm dweight", dw, num, c.C, NORM_RTOL);

    rmsnorm_loss(&c);
    float *ax = randn(NC, 0, 1), *aw = randn(c.C, 0, 1), *bx = copy_of(ax, NC), *bw = copy_of(aw, c.C);
    rmsnorm_backward(ax, aw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    check_accumulates("rmsnorm dinp accumulates", ax, bx, dx, NC);
    check_accumulates("rmsnorm dweight accumulates", aw, bw, dw, c.C);
    memcpy(ax, bx, NC * sizeof *ax);
    rmsnorm_backward(ax, NULL, c.R, c.x, c.w, c.rstd, c.N, c.C);
    check_accumulates("rmsnorm dinp without param grads", ax, bx, dx, NC);
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
    return dot(c->R, c->out, c->n);
}

static double swiglu_loss(void *ctx) {
    elem_case *c = ctx;
    swiglu_forward(c->out, c->x, c->up, c->n);
    return dot(c->R, c->out, c->n);
}

/* Inputs spread over [-range, range] (both tails and the bend) with a little jitter. */
static elem_case elem_case_init(size_t n, float range) {
    elem_case c = {n, 0, zeros(n), randn(n, 0.0f, 1.0f), randn(n, 0.0f, 1.0f), zeros(n)};
    for (size_t i = 0; i < n; i++) c.x[i] = -range + 2.0f * range * (float)i / (float)(n - 1) + 0.05f * rng_normal(&rng);
    return c;
}

static void elem_case_free(elem_case *c) { free(c->x), free(c->up), free(c->R), free(c->out); }

static void test_gelu(void **state) {
    rng_seed(&rng, 3);
    elem_case c = elem_case_init(64, 4.0f);
    float *dx = zeros(c.n), *num = zeros(c.n), *acc = randn(c.n, 0, 1), *before = copy_of(acc, c.n);
    for (c.tanh_approx = 0; c.tanh_approx <= 1; c.tanh_approx++) {
        memset(dx, 0, c.n * sizeof *dx);
        gelu_backward(dx, c.R, c.x, c.n, c.tanh_approx);
        numeric_grad(num, c.x, NULL, c.n, KERNEL_EPS, gelu_loss, &c);
        check_grad(c.tanh_approx ? "gelu (tanh) dinp" : "gelu (erf) dinp", dx, num, c.n, GELU_RTOL);
        memcpy(acc, before, c.n * sizeof *acc);
        gelu_backward(acc, c.R, c.x, c.n, c.tanh_approx);
        check_accumulates("gelu dinp accumulates", acc, before, dx, c.n);
    }
    free(dx), free(num), free(acc), free(before);
    elem_case_free(&c);
}

static void test_swiglu(void **state) {
    rng_seed(&rng, 4);
    elem_case c = elem_case_init(64, 6.0f);
    float *dg = zeros(c.n), *du = zeros(c.n), *num = zeros(c.n);
    swiglu_backward(dg, du, c.R, c.x, c.up, c.n);
    numeric_grad(num, c.x, NULL, c.n, KERNEL_EPS, swiglu_loss, &c);
    check_grad("swiglu dgate", dg, num, c.n, GELU_RTOL);
    numeric_grad(num, c.up, NULL, c.n, KERNEL_EPS, swiglu_loss, &c);
    check_grad("swiglu dup", du, num, c.n, GELU_RTOL);

    float *ag = randn(c.n, 0, 1), *au = randn(c.n, 0, 1), *bg = copy_of(ag, c.n), *bu = copy_of(au, c.n);
    swiglu_backward(ag, au, c.R, c.x, c.up, c.n);
    check_accumulates("swiglu dgate accumulates", ag, bg, dg, c.n);
    check_accumulates("swiglu dup accumulates", au, bu, du, c.n);
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
    xent_case c = {5, 11, 0, targets, 0.37f, NULL, zeros(5)};
    const size_t NV = (size_t)c.N * c.V;
    c.logits = randn(NV, 0.0f, 2.0f);

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

    float *d = copy_of(c.logits, NV), *num = zeros(NV);
    xent_backward(d, targets, c.scale, c.N, c.V);
    for (int i = 0; i < c.N; i++)
        for (int j = 0; j < c.V && targets[i] < 0; j++)
            if (d[(size_t)i * c.V + j] != 0.0f) fail_msg("xent_backward: row %d has no target but d[%d] = %g", i, j, d[(size_t)i * c.V + j]);
    numeric_grad(num, c.logits, NULL, NV, KERNEL_EPS, xent_loss, &c);
    check_grad("xent dlogits", d, num, NV, XENT_RTOL);
    free(d), free(num), free(c.logits), free(c.nll);
}

/* ---- RoPE ------------------------------------------------------------------------------------- */

static model_config rope_config(int hd, rope_scaling_type scaling, int original_max) {
    model_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = hd;
    c.rope_theta = 10000.0;
    c.rope_scaling = scaling;
    c.rope_factor = 8.0;
    c.rope_low_freq_factor = 1.0;
    c.rope_high_freq_factor = 4.0;
    c.rope_original_max_positions = original_max;
    return c;
}

/* The inverse frequency as transformers computes it (_compute_default_rope_parameters, the linear
 * variant and _compute_llama3_parameters with its torch.where masks). */
static double hf_inv_freq(int i, const model_config *c) {
    const double inv = 1.0 / pow(c->rope_theta, 2.0 * i / c->head_dim);
    if (c->rope_scaling == ROPE_SCALING_LINEAR) return inv / c->rope_factor;
    if (c->rope_scaling != ROPE_SCALING_LLAMA3) return inv;
    const double old = c->rope_original_max_positions, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    const double wavelen = 2.0 * M_PI / inv;
    const double llama = wavelen > old / lo ? inv / c->rope_factor : inv;
    const double smooth = (old / wavelen - lo) / (hi - lo);
    const double smoothed = (1.0 - smooth) * llama / c->rope_factor + smooth * llama;
    const bool medium = !(wavelen < old / hi) && !(wavelen > old / lo);
    return medium ? smoothed : llama;
}

/* Tables against the double-precision formula, and cos^2 + sin^2 = 1. With hd 8 and theta 1e4
 * (wavelengths 6.3, 63, 628, 6283) llama3 with 64 original positions keeps one frequency, smooths
 * one and divides two by the factor; with 16 it smooths one and divides three. */
static void test_rope_table(void **state) {
    enum { NPOS = 40, HD = 8, HALF = HD / 2 };
    const model_config cfgs[] = {rope_config(HD, ROPE_SCALING_NONE, 16), rope_config(HD, ROPE_SCALING_LINEAR, 16),
                                 rope_config(HD, ROPE_SCALING_LLAMA3, 16), rope_config(HD, ROPE_SCALING_LLAMA3, 64)};
    float cos_t[NPOS * HALF], sin_t[NPOS * HALF], want_c[NPOS * HALF], want_s[NPOS * HALF], one[NPOS * HALF];
    float norm[NPOS * HALF];
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        rope_table_init(cos_t, sin_t, NPOS, &cfgs[k]);
        for (int p = 0; p < NPOS; p++)
            for (int i = 0; i < HALF; i++) {
                const double w = hf_inv_freq(i, &cfgs[k]);
                want_c[p * HALF + i] = (float)cos(p * w);
                want_s[p * HALF + i] = (float)sin(p * w);
                norm[p * HALF + i] = (float)((double)cos_t[p * HALF + i] * cos_t[p * HALF + i] +
                                             (double)sin_t[p * HALF + i] * sin_t[p * HALF + i]);
                one[p * HALF + i] = 1.0f;
            }
        /* float rounding of values <= 1 in magnitude: 6e-8; a wrong frequency is off by O(1) */
        tu_assert_close("rope cos table", cos_t, want_c, NPOS * HALF, 1e-6);
        tu_assert_close("rope sin table", sin_t, want_s, NPOS * HALF, 1e-6);
        tu_assert_close("rope cos^2 + sin^2", norm, one, NPOS * HALF, 1e-6);
    }
    /* the unscaled frequencies are the textbook ones: angle(p = 1, i) = theta^(-2i/hd) */
    rope_table_init(cos_t, sin_t, NPOS, &cfgs[0]);
    float angle[HALF], want_angle[HALF];
    for (int i = 0; i < HALF; i++) {
        angle[i] = (float)atan2(sin_t[HALF + i], cos_t[HALF + i]);
        want_angle[i] = (float)pow(1e4, -2.0 * i / HD);
    }
    tu_assert_close("rope angles at position 1 (no scaling)", angle, want_angle, HALF, 1e-6);
}

typedef struct {
    int ld, off, nh, hd, B, T, pos0;
    size_t n;
    const float *cos_t, *sin_t;
    float *x, *y, *R;
} rope_case;

static double rope_loss(void *ctx) {
    rope_case *c = ctx;
    memcpy(c->y, c->x, c->n * sizeof *c->y);
    rope_apply(c->y, c->ld, c->off, c->nh, c->hd, c->B, c->T, c->pos0, c->cos_t, c->sin_t, 0);
    return dot(c->R, c->y, c->n);
}

/* d sum(R * rope(x)) / dx = rope(R, inverse) over the whole buffer: the columns outside the heads
 * are the identity and must keep R. */
static void check_rope(const char *what, const model_config *cfg) {
    rope_case c = {.ld = 2 * 8 + 7, .off = 3, .nh = 2, .hd = 8, .B = 2, .T = 5, .pos0 = 9};
    c.n = (size_t)c.B * c.T * c.ld;
    const int npos = c.pos0 + c.T, half = c.hd / 2;
    float *cos_t = zeros((size_t)npos * half), *sin_t = zeros((size_t)npos * half);
    rope_table_init(cos_t, sin_t, npos, cfg);
    c.cos_t = cos_t, c.sin_t = sin_t;
    c.x = randn(c.n, 0, 1), c.y = zeros(c.n), c.R = randn(c.n, 0, 1);
    float *g = copy_of(c.R, c.n), *num = zeros(c.n);
    rope_apply(g, c.ld, c.off, c.nh, c.hd, c.B, c.T, c.pos0, cos_t, sin_t, 1);
    numeric_grad(num, c.x, NULL, c.n, ROPE_EPS, rope_loss, &c);
    check_grad(what, g, num, c.n, ROPE_RTOL);
    free(cos_t), free(sin_t), free(c.x), free(c.y), free(c.R), free(g), free(num);
}

static void test_rope(void **state) {
    rng_seed(&rng, 6);
    const model_config none = rope_config(8, ROPE_SCALING_NONE, 16), llama3 = rope_config(8, ROPE_SCALING_LLAMA3, 16);
    check_rope("rope inverse = backward (no scaling)", &none);
    check_rope("rope inverse = backward (llama3)", &llama3);
}

/* ---- attention -------------------------------------------------------------------------------- */

typedef struct {
    attn_shape s;
    size_t nqkv, nprefix, nout;
    float *qkv, *prefix, *pk, *pv, *out, *probs, *R, *work;
} attn_case;

static double attn_loss(void *ctx) {
    attn_case *c = ctx;
    attention_forward(c->out, c->probs, c->work, c->qkv, c->pk, c->pv, &c->s);
    return dot(c->R, c->out, c->nout);
}

/* Does column j of a qkv row belong to q, k or v? */
static bool qkv_column_used(const attn_shape *s, int j) {
    const int A = s->H * s->hd, K = s->KV * s->hd;
    return (j >= s->q_off && j < s->q_off + A) || (j >= s->k_off && j < s->k_off + K) ||
           (j >= s->v_off && j < s->v_off + K);
}

/* H = 4 query heads on KV = 2 key/value heads, B = 2, T = 5, hd = 8, P prefix positions. The prefix
 * rows are peft's [K_0|V_0|K_1|V_1] for 2 layers and this is layer 1, so pk/pv sit at an offset in
 * rows of p_ld = 4 K. wide: a [pad 3 | q | pad 2 | k | pad 1 | v | pad 5] row. */
static void check_attention(int P, bool wide) {
    rng_seed(&rng, 7 + P + wide);
    const int H = 4, KV = 2, hd = 8, A = H * hd, K = KV * hd;
    attn_case c = {.s = {.B = 2, .T = 5, .H = H, .KV = KV, .hd = hd, .P = P, .p_ld = 4 * K}};
    attn_shape *s = &c.s;
    if (wide) s->q_off = 3, s->k_off = 3 + A + 2, s->v_off = s->k_off + K + 1, s->ld = s->v_off + K + 5;
    else s->q_off = 0, s->k_off = A, s->v_off = A + K, s->ld = A + 2 * K;
    const int N = s->B * s->T, S = P + s->T;
    c.nqkv = (size_t)N * s->ld, c.nprefix = (size_t)P * s->p_ld, c.nout = (size_t)N * A;
    c.qkv = randn(c.nqkv, 0, 1), c.prefix = randn(c.nprefix, 0, 1), c.R = randn(c.nout, 0, 1);
    c.pk = P ? c.prefix + 2 * K : NULL, c.pv = P ? c.pk + K : NULL;
    c.out = zeros(c.nout), c.probs = zeros((size_t)s->B * H * s->T * S);
    float *work = zeros(attention_work_floats(s)), *num = zeros(c.nqkv + c.nprefix);
    c.work = work;
    float *dqkv = zeros(c.nqkv), *dprefix = zeros(c.nprefix);
    float *dpk = P ? dprefix + 2 * K : NULL, *dpv = P ? dpk + K : NULL;
    char what[128];

    attn_loss(&c);
    attention_backward(dqkv, dpk, dpv, work, c.probs, c.R, c.qkv, c.pk, c.pv, s);
    numeric_grad(num, c.qkv, NULL, c.nqkv, KERNEL_EPS, attn_loss, &c);
    snprintf(what, sizeof what, "attention dqkv (P=%d%s)", P, wide ? ", wide row" : "");
    check_grad(what, dqkv, num, c.nqkv, ATTN_RTOL);
    if (P) {
        numeric_grad(num, c.prefix, NULL, c.nprefix, KERNEL_EPS, attn_loss, &c);
        snprintf(what, sizeof what, "attention dprefix k,v (P=%d%s)", P, wide ? ", wide row" : "");
        check_grad(what, dprefix, num, c.nprefix, ATTN_RTOL);
    }

    /* into random gradients: q/k/v and the prefix columns accumulate, the rest stays bit for bit */
    attn_loss(&c);
    float *acc = randn(c.nqkv, 0, 1), *before = copy_of(acc, c.nqkv);
    float *pacc = randn(c.nprefix, 0, 1), *pbefore = copy_of(pacc, c.nprefix);
    attention_backward(acc, P ? pacc + 2 * K : NULL, P ? pacc + 3 * K : NULL, work, c.probs, c.R, c.qkv, c.pk, c.pv,
                       s);
    check_accumulates("attention dqkv accumulates", acc, before, dqkv, c.nqkv);
    check_accumulates("attention dprefix accumulates", pacc, pbefore, dprefix, c.nprefix);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < s->ld; j++)
            if (!qkv_column_used(s, j) && memcmp(&acc[(size_t)i * s->ld + j], &before[(size_t)i * s->ld + j], sizeof(float)))
                fail_msg("attention_backward wrote unused column %d of row %d", j, i);
    for (int p = 0; p < P; p++)
        for (int j = 0; j < 2 * K; j++) /* layer 0's columns of the prefix row */
            if (memcmp(&pacc[(size_t)p * s->p_ld + j], &pbefore[(size_t)p * s->p_ld + j], sizeof(float)))
                fail_msg("attention_backward wrote column %d of prefix row %d (another layer's)", j, p);
    if (P) { /* frozen prefix: NULL dpk/dpv, the same dqkv */
        memcpy(acc, before, c.nqkv * sizeof *acc);
        attention_backward(acc, NULL, NULL, work, c.probs, c.R, c.qkv, c.pk, c.pv, s);
        check_accumulates("attention dqkv without prefix grads", acc, before, dqkv, c.nqkv);
    }
    free(work), free(num), free(dqkv), free(dprefix), free(acc), free(before), free(pacc), free(pbefore);
    free(c.qkv), free(c.prefix), free(c.R), free(c.out), free(c.probs);
}

static void test_attention_packed(void **state) { check_attention(0, false); }
static void test_attention_prefix(void **state) { check_attention(3, false); }
static void test_attention_wide(void **state) { check_attention(0, true); }
static void test_attention_wide_prefix(void **state) { check_attention(3, true); }

/* The blocked kernels against a direct double-precision evaluation of the definition, at shapes
 * where the 4 x 16 register blocks, the 16-row causal blocks, the prefix/sequence split and the
 * two-thread work slices all come into play (T = 37, P = 5, hd = 32 or 20, 3 query heads per
 * key/value head). */
static double naive_key(const attn_case *c, int b, int j, int g, int d, bool value) {
    const attn_shape *s = &c->s;
    if (j < s->P) return (value ? c->pv : c->pk)[(size_t)j * s->p_ld + (size_t)g * s->hd + d];
    return c->qkv[((size_t)b * s->T + j - s->P) * s->ld + (value ? s->v_off : s->k_off) + (size_t)g * s->hd + d];
}

static void check_attention_vs_naive(int hd) {
    rng_seed(&rng, 40 + hd);
    const int H = 6, KV = 2, A = H * hd, K = KV * hd, P = 5, T = 37, B = 2, S = P + T, N = B * T, group = H / KV;
    attn_case c = {.s = {.B = B, .T = T, .H = H, .KV = KV, .hd = hd, .P = P, .p_ld = 4 * K, .threads = 2}};
    attn_shape *s = &c.s;
    s->q_off = 1, s->k_off = 1 + A + 3, s->v_off = s->k_off + K, s->ld = s->v_off + K + 2;
    c.nqkv = (size_t)N * s->ld, c.nprefix = (size_t)P * s->p_ld, c.nout = (size_t)N * A;
    c.qkv = randn(c.nqkv, 0, 1), c.prefix = randn(c.nprefix, 0, 1), c.R = randn(c.nout, 0, 1);
    c.pk = c.prefix + 2 * K, c.pv = c.pk + K;
    c.out = zeros(c.nout), c.probs = zeros((size_t)B * H * T * S), c.work = zeros(attention_work_floats(s));
    float *dqkv = zeros(c.nqkv), *dprefix = zeros(c.nprefix);
    attention_forward(c.out, c.probs, c.work, c.qkv, c.pk, c.pv, s);
    attention_backward(dqkv, dprefix + 2 * K, dprefix + 3 * K, c.work, c.probs, c.R, c.qkv, c.pk, c.pv, s);

    double *rq = calloc(c.nqkv, sizeof *rq), *rp = calloc(c.nprefix, sizeof *rp), *p = calloc(S, sizeof *p),
           *dp = calloc(S, sizeof *dp);
    double err_out = 0, err_p = 0, err_dq = 0, err_dp = 0, scale = 1.0 / sqrt(hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const int g = h / group, n = P + t + 1;
                const size_t row = (size_t)b * T + t;
                const float *q = c.qkv + row * s->ld + s->q_off + (size_t)h * hd, *dy = c.R + row * A + (size_t)h * hd;
                double mx = -INFINITY, sum = 0, pdp = 0;
                for (int j = 0; j < n; j++) {
                    double z = 0;
                    for (int d = 0; d < hd; d++) z += q[d] * naive_key(&c, b, j, g, d, false);
                    p[j] = z * scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j < n; j++) sum += p[j] = exp(p[j] - mx);
                const float *got_p = c.probs + (((size_t)b * H + h) * T + t) * S;
                for (int j = 0; j < S; j++) {
                    if (j < n) p[j] /= sum;
                    err_p = fmax(err_p, fabs((j < n ? p[j] : 0.0) - got_p[j]));
                }
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j < n; j++) o += p[j] * naive_key(&c, b, j, g, d, true);
                    err_out = fmax(err_out, fabs(o - c.out[row * A + (size_t)h * hd + d]));
                }
                for (int j = 0; j < n; j++) {
                    dp[j] = 0;
                    for (int d = 0; d < hd; d++) dp[j] += dy[d] * naive_key(&c, b, j, g, d, true);
                    pdp += p[j] * dp[j];
                }
                for (int j = 0; j < n; j++) {
                    const double ds = p[j] * (dp[j] - pdp) * scale;
                    double *dk = j < P ? rp + (size_t)j * s->p_ld + 2 * K + (size_t)g * hd
                                       : rq + ((size_t)b * T + j - P) * s->ld + s->k_off + (size_t)g * hd;
                    double *dv = j < P ? rp + (size_t)j * s->p_ld + 3 * K + (size_t)g * hd
                                       : rq + ((size_t)b * T + j - P) * s->ld + s->v_off + (size_t)g * hd;
                    for (int d = 0; d < hd; d++) {
                        rq[row * s->ld + s->q_off + (size_t)h * hd + d] += ds * naive_key(&c, b, j, g, d, false);
                        dk[d] += ds * q[d];
                        dv[d] += p[j] * dy[d];
                    }
                }
            }
    for (size_t i = 0; i < c.nqkv; i++) err_dq = fmax(err_dq, fabs(rq[i] - dqkv[i]));
    for (size_t i = 0; i < c.nprefix; i++) err_dp = fmax(err_dp, fabs(rp[i] - dprefix[i]));
    if (err_out > 1e-5 || err_p > 1e-6 || err_dq > 1e-4 || err_dp > 1e-4)
        fail_msg("attention (hd=%d) differs from the definition: out %.2e probs %.2e dqkv %.2e dprefix %.2e", hd,
                 err_out, err_p, err_dq, err_dp);
    free(rq), free(rp), free(p), free(dp), free(dqkv), free(dprefix);
    free(c.qkv), free(c.prefix), free(c.R), free(c.out), free(c.probs), free(c.work);
}

static void test_attention_vs_naive(void **state) {
    check_attention_vs_naive(32);
    check_attention_vs_naive(20);
}

/* ---- the whole model --------------------------------------------------------------------------- */

enum { MB = 2, MT = 6, NV = 2, NP = 2, TT = NV + MT, MC = 16, SAMPLES = 10 };

typedef struct {
    model *m;
    model_acts *a;
    model_batch b;
    int tokens[MB * MT], targets[MB * TT];
    float *virt, *prefix;
    size_t nprefix;
} model_case;

static double model_loss(void *ctx) {
    model_case *c = ctx;
    double nll;
    int count;
    assert_int_equal(model_forward(c->m, c->a, &c->b, &nll, &count), PEFT_OK);
    return nll / count;
}

static bool train_nothing(const param *p, void *ctx) { return false; }

/* vocab 37, hidden 16, 2 layers, 4 heads (llama: 2 kv heads, intermediate 24). Weights re-drawn at
 * std 0.2 (unit-scale activations for 16 inputs), norm gains 1 + 0.1 N(0,1), biases 0.1 N(0,1): at
 * HF's init (0.02) most gradients are too small for fp32 finite differences to resolve. */
static void model_case_init(model_case *c, model_arch arch, bool tied, rope_scaling_type scaling, bool qkv_bias) {
    model_config cfg;
    config_defaults(arch, &cfg);
    cfg.vocab_size = 37, cfg.hidden_size = MC, cfg.num_layers = 2, cfg.num_heads = 4, cfg.max_positions = 32;
    if (arch == ARCH_LLAMA) {
        cfg.num_kv_heads = 2, cfg.intermediate_size = 24, cfg.tie_word_embeddings = tied, cfg.qkv_bias = qkv_bias;
        cfg.rope_scaling = scaling, cfg.rope_factor = 8, cfg.rope_low_freq_factor = 1, cfg.rope_high_freq_factor = 4;
        cfg.rope_original_max_positions = 16;
    }
    assert_int_equal(config_finish(&cfg, "test"), PEFT_OK);
    memset(c, 0, sizeof *c);
    assert_int_equal(model_init_random(&cfg, 42, GEMM_OPENBLAS, &c->m), PEFT_OK);
    for (int i = 0; i < c->m->nparams; i++) {
        param *p = &c->m->params[i];
        const bool gain = p->ndim == 1 && !strcmp(strrchr(p->name, '.'), ".weight");
        for (size_t j = 0; j < p->numel; j++)
            p->data[j] = p->ndim == 2 ? 0.2f * rng_normal(&rng) : (gain ? 1.0f : 0.0f) + 0.1f * rng_normal(&rng);
    }
    assert_int_equal(model_set_trainable(c->m, NULL, NULL), PEFT_OK);
    assert_int_equal(model_acts_init(c->m, MB, TT, NP, &c->a), PEFT_OK);
    for (int i = 0; i < MB * MT; i++) c->tokens[i] = (int)rng_below(&rng, 37);
    c->tokens[MT + 2] = c->tokens[1]; /* a token occurring twice: its wte row sums two rows' gradients */
    for (int i = 0; i < MB * TT; i++) c->targets[i] = (int)rng_below(&rng, 37);
    c->targets[0] = c->targets[TT + 1] = c->targets[5] = c->targets[2 * TT - 1] = -100;
    const int KVhd = cfg.num_kv_heads * cfg.head_dim;
    c->nprefix = (size_t)NP * cfg.num_layers * 2 * KVhd;
    c->virt = randn((size_t)NV * cfg.hidden_size, 0.0f, 0.5f);
    c->prefix = randn(c->nprefix, 0.0f, 1.0f);
    c->b = (model_batch){.B = MB, .T = MT, .tokens = c->tokens, .targets = c->targets, .virtual_embeds = c->virt,
                         .n_virtual = NV, .prefix = c->prefix, .n_prefix = NP};
}

static void model_case_free(model_case *c) {
    model_acts_free(c->a);
    model_free(c->m);
    free(c->virt), free(c->prefix);
}

/* Entries to probe in a parameter: random ones, except that wte favours rows of tokens that occur
 * (untied, the others have no gradient) and wpe rows of positions that occur. */
static size_t sample_param(const model_case *c, const param *p, size_t *idx) {
    const size_t C = (size_t)c->m->cfg.hidden_size;
    size_t n = p == c->m->wte ? 2 * SAMPLES : SAMPLES;
    if (n > p->numel) n = p->numel;
    for (size_t k = 0; k < n; k++) {
        if (p == c->m->wte && k % 2 == 0) idx[k] = (size_t)c->tokens[rng_below(&rng, MB * MT)] * C + rng_below(&rng, (uint32_t)C);
        else if (p == c->m->wpe) idx[k] = rng_below(&rng, (uint32_t)((NP + TT) * C));
        else idx[k] = rng_below(&rng, (uint32_t)p->numel);
    }
    return n;
}

static void check_model(const char *variant, model_arch arch, bool tied, rope_scaling_type scaling, bool qkv_bias) {
    rng_seed(&rng, 11 + arch + 2 * tied);
    model_case c;
    model_case_init(&c, arch, tied, scaling, qkv_bias);
    model *m = c.m;
    const size_t nvirt = (size_t)NV * m->cfg.hidden_size;
    float *dvirt = zeros(nvirt), *dprefix = zeros(c.nprefix);
    size_t idx[2 * SAMPLES + NV * MC];
    float num[2 * SAMPLES + NV * MC], ana[2 * SAMPLES + NV * MC];
    char what[256];

    double nll;
    int count;
    assert_int_equal(model_forward(m, c.a, &c.b, &nll, &count), PEFT_OK);
    assert_int_equal(count, MB * TT - 4);
    model_backward(m, c.a, &c.b, 1.0f / count, dvirt, dprefix);

    for (int i = 0; i < m->nparams; i++) {
        param *p = &m->params[i];
        const size_t n = sample_param(&c, p, idx);
        for (size_t k = 0; k < n; k++) ana[k] = p->grad[idx[k]];
        numeric_grad(num, p->data, idx, n, MODEL_EPS, model_loss, &c);
        snprintf(what, sizeof what, "%s %s", variant, p->name);
        check_grad(what, ana, num, n, MODEL_RTOL);
    }
    numeric_grad(num, c.virt, NULL, nvirt, MODEL_EPS, model_loss, &c);
    snprintf(what, sizeof what, "%s virtual_embeds", variant);
    check_grad(what, dvirt, num, nvirt, MODEL_RTOL);
    for (size_t k = 0; k < 2 * SAMPLES; k++) idx[k] = rng_below(&rng, (uint32_t)c.nprefix), ana[k] = dprefix[idx[k]];
    numeric_grad(num, c.prefix, idx, 2 * SAMPLES, MODEL_EPS, model_loss, &c);
    snprintf(what, sizeof what, "%s prefix", variant);
    check_grad(what, ana, num, 2 * SAMPLES, MODEL_RTOL);

    /* a second forward/backward adds the same gradients again */
    float *g1 = copy_of(m->grads, m->ngrads), *v1 = copy_of(dvirt, nvirt), *p1 = copy_of(dprefix, c.nprefix);
    assert_int_equal(model_forward(m, c.a, &c.b, &nll, &count), PEFT_OK);
    model_backward(m, c.a, &c.b, 1.0f / count, dvirt, dprefix);
    check_accumulates("model param grads accumulate", m->grads, g1, g1, m->ngrads);
    check_accumulates("model dvirtual accumulates", dvirt, v1, v1, nvirt);
    check_accumulates("model dprefix accumulates", dprefix, p1, p1, c.nprefix);

    /* frozen base (prompt and prefix tuning): the same activation gradients without any weight's */
    assert_int_equal(model_set_trainable(m, train_nothing, NULL), PEFT_OK);
    memset(dvirt, 0, nvirt * sizeof *dvirt);
    memset(dprefix, 0, c.nprefix * sizeof *dprefix);
    assert_int_equal(model_forward(m, c.a, &c.b, &nll, &count), PEFT_OK);
    model_backward(m, c.a, &c.b, 1.0f / count, dvirt, dprefix);
    tu_assert_close("dvirtual with a frozen base", dvirt, v1, nvirt, ACCUM_RTOL);
    tu_assert_close("dprefix with a frozen base", dprefix, p1, c.nprefix, ACCUM_RTOL);
    free(dvirt), free(dprefix), free(g1), free(v1), free(p1);
    model_case_free(&c);
}


/* The fused output head (model_acts_set_fused_head) against the plain one: the same loss, weight
 * gradients and input-embedding gradients, over 1200 rows (two full HEAD_ROWS = 512-row blocks and a partial one,
 * rows without a target among them); model_logits() is NULL after a fused forward; with a
 * trainable head the plain path runs. */
static bool train_first_ln(const param *p, void *ctx) { return !strcmp(p->name, "transformer.h.0.ln_1.weight"); }

static void test_fused_head(void **state) {
    rng_seed(&rng, 77);
    model_config cfg;
    config_defaults(ARCH_GPT2, &cfg);
    cfg.vocab_size = 301, cfg.hidden_size = MC, cfg.num_layers = 2, cfg.num_heads = 4, cfg.max_positions = 64;
    assert_int_equal(config_finish(&cfg, "test"), PEFT_OK);
    model *m;
    assert_int_equal(model_init_random(&cfg, 43, GEMM_OPENBLAS, &m), PEFT_OK);
    for (int i = 0; i < m->nparams; i++)
        for (size_t j = 0; j < m->params[i].numel; j++) m->params[i].data[j] = 0.2f * rng_normal(&rng);
    assert_int_equal(model_set_trainable(m, train_first_ln, NULL), PEFT_OK);
    assert_int_equal((int)m->ngrads, MC); /* the weight-gradient comparison below must compare something */
    enum { FB = 20, FT = 60 };
    _Static_assert(FB * FT > 2 * HEAD_ROWS && FB * FT % HEAD_ROWS, "two full head blocks and a partial one");
    model_acts *a;
    assert_int_equal(model_acts_init(m, FB, FT, 0, &a), PEFT_OK);
    int tokens[FB * FT], targets[FB * FT];
    for (int i = 0; i < FB * FT; i++) tokens[i] = (int)rng_below(&rng, 301), targets[i] = (int)rng_below(&rng, 301);
    for (int i = 0; i < FB * FT; i += 7) targets[i] = -100;
    const model_batch b = {.B = FB, .T = FT, .tokens = tokens, .targets = targets};
    const size_t nemb = (size_t)FB * FT * MC;
    double nll[2];
    int count[2];
    float *grads[2], *demb[2];
    for (int fused = 0; fused < 2; fused++) {
        model_acts_set_fused_head(a, fused);
        memset(m->grads, 0, m->ngrads * sizeof(float));
        assert_int_equal(model_forward(m, a, &b, &nll[fused], &count[fused]), PEFT_OK);
        if ((model_logits(a) == NULL) != fused) fail_msg("model_logits() after a %s forward", fused ? "fused" : "plain");
        model_backward(m, a, &b, 1.0f / count[fused], NULL, NULL);
        grads[fused] = copy_of(m->grads, m->ngrads);
        demb[fused] = copy_of(model_dembed(a), nemb);
    }
    assert_int_equal(count[0], count[1]);
    if (fabs(nll[0] - nll[1]) > 1e-6 * fabs(nll[0])) fail_msg("fused head loss %.9g, plain %.9g", nll[1], nll[0]);
    tu_assert_close("fused head: weight gradients", grads[1], grads[0], m->ngrads, 1e-5);
    tu_assert_close("fused head: input embedding gradients", demb[1], demb[0], nemb, 1e-5);
    /* a trainable (tied) head: the plain path, whatever the setting */
    assert_int_equal(model_set_trainable(m, NULL, NULL), PEFT_OK);
    assert_int_equal(model_forward(m, a, &b, &nll[0], &count[0]), PEFT_OK);
    if (!model_logits(a)) fail_msg("a trainable head took the fused path");
    for (int i = 0; i < 2; i++) free(grads[i]), free(demb[i]);
    model_acts_free(a);
    model_free(m);
}

static void test_model_gpt2(void **state) { check_model("gpt2", ARCH_GPT2, true, ROPE_SCALING_NONE, false); }
static void test_model_llama(void **state) { check_model("llama", ARCH_LLAMA, false, ROPE_SCALING_NONE, false); }
/* tied head (wte gets both gradients), q/k/v biases and llama3 RoPE through the prefix offset */
static void test_model_llama_tied(void **state) {
    check_model("llama tied+bias+llama3", ARCH_LLAMA, true, ROPE_SCALING_LLAMA3, true);
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_xent),
        cmocka_unit_test(test_rope_table),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention_packed),
        cmocka_unit_test(test_attention_prefix),
        cmocka_unit_test(test_attention_wide),
        cmocka_unit_test(test_attention_wide_prefix),
        cmocka_unit_test(test_attention_vs_naive),
        cmocka_unit_test(test_fused_head),
        cmocka_unit_test(test_model_gpt2),
        cmocka_unit_test(test_model_llama),
        cmocka_unit_test(test_model_llama_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
