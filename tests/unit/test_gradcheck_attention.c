/*
 * test_gradcheck_attention.c - causal attention (attention.h): the backward against central
 * finite differences (grouped-query heads, a prefix of keys/values, packed and wide qkv rows), its
 * accumulation and the columns it must not touch; the blocked kernels against a direct
 * double-precision evaluation of the definition.
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
#include "kernels/attention.h"
#include "rng.h"
#include "testutil.h"
#include "tu_gradcheck.h"

/* Steps and tolerances. The worst errors seen over 30 random seeds are in brackets; the kernels'
 * rtols leave a margin of 5x or more. With eps 1e-2 the fp32 rounding of the outputs (~6e-8
 * relative, divided by 2 eps) and the O(eps^2) truncation error are both near 1e-5 of the
 * gradient; eps 1e-3 was up to 10x worse. */
#define KERNEL_EPS 1e-2f
#define ATTN_RTOL 5e-4 /* [6.0e-5] */
/* Accumulating into a buffer that holds values rounds once more (or, for in-place sums, in a
 * different order): a few ulps of the larger operand. */
#define ACCUM_RTOL 1e-6

static rng_state rng;

typedef struct {
    attn_shape s;
    size_t nqkv, nprefix, nout;
    float *qkv, *prefix, *pk, *pv, *out, *probs, *R, *work;
} attn_case;

static double attn_loss(void *ctx) {
    attn_case *c = ctx;
    attention_forward(c->out, c->probs, c->work, c->qkv, c->pk, c->pv, &c->s);
    return tu_dot(c->R, c->out, c->nout);
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
    c.qkv = tu_randn(&rng, c.nqkv, 0, 1), c.prefix = tu_randn(&rng, c.nprefix, 0, 1),
    c.R = tu_randn(&rng, c.nout, 0, 1);
    c.pk = P ? c.prefix + 2 * K : NULL, c.pv = P ? c.pk + K : NULL;
    c.out = tu_zeros(c.nout), c.probs = tu_zeros((size_t)s->B * H * s->T * S);
    float *work = tu_zeros(attention_work_floats(s)), *num = tu_zeros(c.nqkv + c.nprefix);
    c.work = work;
    float *dqkv = tu_zeros(c.nqkv), *dprefix = tu_zeros(c.nprefix);
    float *dpk = P ? dprefix + 2 * K : NULL, *dpv = P ? dpk + K : NULL;
    char what[128];

    attn_loss(&c);
    attention_backward(dqkv, dpk, dpv, work, c.probs, c.R, c.qkv, c.pk, c.pv, s);
    tu_numeric_grad(num, c.qkv, NULL, c.nqkv, KERNEL_EPS, attn_loss, &c);
    snprintf(what, sizeof what, "attention dqkv (P=%d%s)", P, wide ? ", wide row" : "");
    tu_check_grad(what, dqkv, num, c.nqkv, ATTN_RTOL);
    if (P) {
        tu_numeric_grad(num, c.prefix, NULL, c.nprefix, KERNEL_EPS, attn_loss, &c);
        snprintf(what, sizeof what, "attention dprefix k,v (P=%d%s)", P, wide ? ", wide row" : "");
        tu_check_grad(what, dprefix, num, c.nprefix, ATTN_RTOL);
    }

    /* into random gradients: q/k/v and the prefix columns accumulate, the rest stays bit for bit */
    attn_loss(&c);
    float *acc = tu_randn(&rng, c.nqkv, 0, 1), *before = tu_copy_of(acc, c.nqkv);
    float *pacc = tu_randn(&rng, c.nprefix, 0, 1), *pbefore = tu_copy_of(pacc, c.nprefix);
    attention_backward(acc, P ? pacc + 2 * K : NULL, P ? pacc + 3 * K : NULL, work, c.probs, c.R, c.qkv, c.pk, c.pv,
                       s);
    tu_check_accumulates("attention dqkv accumulates", acc, before, dqkv, c.nqkv, ACCUM_RTOL);
    tu_check_accumulates("attention dprefix accumulates", pacc, pbefore, dprefix, c.nprefix, ACCUM_RTOL);
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
        tu_check_accumulates("attention dqkv without prefix grads", acc, before, dqkv, c.nqkv, ACCUM_RTOL);
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
    c.qkv = tu_randn(&rng, c.nqkv, 0, 1), c.prefix = tu_randn(&rng, c.nprefix, 0, 1),
    c.R = tu_randn(&rng, c.nout, 0, 1);
    c.pk = c.prefix + 2 * K, c.pv = c.pk + K;
    c.out = tu_zeros(c.nout), c.probs = tu_zeros((size_t)B * H * T * S), c.work = tu_zeros(attention_work_floats(s));
    float *dqkv = tu_zeros(c.nqkv), *dprefix = tu_zeros(c.nprefix);
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

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_packed),
        cmocka_unit_test(test_attention_prefix),
        cmocka_unit_test(test_attention_wide),
        cmocka_unit_test(test_attention_wide_prefix),
        cmocka_unit_test(test_attention_vs_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
