/*
 * test_gradcheck_rope.c - RoPE (rope.h): its cos/sin tables against transformers' inverse
 * frequencies (none, linear and llama3 scaling) and its backward (the inverse rotation) against
 * central finite differences, including the columns outside the heads.
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
#include "kernels/rope.h"
#include "model/config.h"
#include "rng.h"
#include "testutil.h"
#include "tu_gradcheck.h"

/* RoPE is linear: no truncation error, so a large step and a tight tolerance. */
#define ROPE_EPS 1e-1f
#define ROPE_RTOL 1e-5 /* [1.1e-6] */

static rng_state rng;

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
    return tu_dot(c->R, c->y, c->n);
}

/* d sum(R * rope(x)) / dx = rope(R, inverse) over the whole buffer: the columns outside the heads
 * are the identity and must keep R. */
static void check_rope(const char *what, const model_config *cfg) {
    rope_case c = {.ld = 2 * 8 + 7, .off = 3, .nh = 2, .hd = 8, .B = 2, .T = 5, .pos0 = 9};
    c.n = (size_t)c.B * c.T * c.ld;
    const int npos = c.pos0 + c.T, half = c.hd / 2;
    float *cos_t = tu_zeros((size_t)npos * half), *sin_t = tu_zeros((size_t)npos * half);
    rope_table_init(cos_t, sin_t, npos, cfg);
    c.cos_t = cos_t, c.sin_t = sin_t;
    c.x = tu_randn(&rng, c.n, 0, 1), c.y = tu_zeros(c.n), c.R = tu_randn(&rng, c.n, 0, 1);
    float *g = tu_copy_of(c.R, c.n), *num = tu_zeros(c.n);
    rope_apply(g, c.ld, c.off, c.nh, c.hd, c.B, c.T, c.pos0, cos_t, sin_t, 1);
    tu_numeric_grad(num, c.x, NULL, c.n, ROPE_EPS, rope_loss, &c);
    tu_check_grad(what, g, num, c.n, ROPE_RTOL);
    free(cos_t), free(sin_t), free(c.x), free(c.y), free(c.R), free(g), free(num);
}

static void test_rope(void **state) {
    rng_seed(&rng, 6);
    const model_config none = rope_config(8, ROPE_SCALING_NONE, 16), llama3 = rope_config(8, ROPE_SCALING_LLAMA3, 16);
    check_rope("rope inverse = backward (no scaling)", &none);
    check_rope("rope inverse = backward (llama3)", &llama3);
}
int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope_table),
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
