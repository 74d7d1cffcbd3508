/*
 * test_optim.c - AdamW, gradient clipping and learning-rate schedules (train/optim.h,
 * train/schedule.h) against torch (tests/fixtures/optim/adamw.safetensors, written by
 * scripts/make_optim_fixtures.py with torch.optim.AdamW, clip_grad_norm_ and LambdaLR).
 *
 * Tolerances:
 *  - one AdamW step from torch's own state and clipped gradients: bit-identical (0 ulp). optim.c
 *    performs torch's float32 operations in torch's order, with FMAs where torch's AVX2 kernels
 *    fuse, and the fixture's learning rates are exactly representable as floats;
 *  - the whole pipeline from raw gradients (our norm, clip, schedule, AdamW) over 10 steps: every
 *    tensor of params, exp_avg, exp_avg_sq and the clipped gradients within 1e-6 of its largest
 *    |value| (observed: <= 2e-7). The only source of difference is the norm, which torch
 *    accumulates in float and we in double (observed 7e-8 apart);
 *  - the norm against a float64 norm of the same gradients: 1e-12 relative;
 *  - schedules: 1 float ulp (2^-23 relative) of base * lambda; 2^-22 against torch's LambdaLR,
 *    which starts from the double base lr rather than its float; exactly 0 where the lambda is 0;
 *  - range splits, padding, thread counts: bitwise.
 */
#include "testutil.h"

#include "error.h"
#include "io/safetensors.h"
#include "rng.h"
#include "train/optim.h"
#include "train/schedule.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAD_VALUE 777.0f  /* what padding holds in params and moments: must survive every update */

/* ---- helpers ------------------------------------------------------------------------------ */

static float *alloc_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static void fill(float *x, size_t n, float value) {
    for (size_t i = 0; i < n; i++) x[i] = value;
}

/* Random normal values in the tensors, `pad` in the padding. */
static void fill_random(float *x, const tensor_table *t, rng_state *r, float scale, float pad) {
    fill(x, t->total, pad);
    for (int k = 0; k < t->n; k++)
        for (size_t i = 0; i < t->e[k].numel; i++) x[t->e[k].offset + i] = scale * rng_normal(r);
}

/* Fails unless got and want (n floats) have the same bits, printing the first difference. */
static void assert_bits_equal(const char *what, const float *got, const float *want, size_t n) {
    if (!memcmp(got, want, n * sizeof(float))) return;
    size_t at = 0;
    while (!memcmp(&got[at], &want[at], sizeof(float))) at++;
    size_t where;
    double diff = tu_max_abs_diff(got, want, n, &where);
    fail_msg("%s: not bit-identical: first difference at [%zu] got %.9g want %.9g; max |diff| %.3e at [%zu]",
             what, at, got[at], want[at], diff, where);
}

/* max|got - want| <= rtol * max|want|: stricter than tu_assert_close's max(1, max|want|) for
 * tensors far below 1 (LoRA weights, moments). */
static double assert_close_rel_max(const char *what, const float *got, const float *want, size_t n, double rtol) {
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    size_t at;
    double diff = tu_max_abs_diff(got, want, n, &at);
    double rel = scale > 0.0 ? diff / scale : diff;
    if (!(rel <= rtol))
        fail_msg("%s: max |diff| %.3e at [%zu] (got %.9g want %.9g) is %.3e of max |want| %.3e > %.1e", what, diff,
                 at, got[at], want[at], rel, scale, rtol);
    return rel;
}

static void assert_rel(const char *what, double got, double want, double rtol) {
    double rel = want != 0.0 ? fabs(got - want) / fabs(want) : fabs(got);
    if (!(rel <= rtol)) fail_msg("%s: got %.17g want %.17g (relative difference %.3e > %.1e)", what, got, want, rel, rtol);
}

/* A table with tensors of awkward sizes: several chunks of the optimizer's loops, padding between. */
static void synthetic_table(tensor_table *t, const size_t *sizes, int n) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d.weight", i);
        assert_int_equal(tt_add(t, name, 1, (int64_t[]){(int64_t)sizes[i]}, i % 2 == 0, NULL), PEFT_OK);
    }
}

static const size_t SYNTH_SIZES[] = {5000, 3, 9001, 17, 4096, 1};
#define SYNTH_COUNT ((int)(sizeof SYNTH_SIZES / sizeof SYNTH_SIZES[0]))

/* ---- the torch fixture -------------------------------------------------------------------- */

typedef struct fixture {
    st_file *f;
    tensor_table t;
    int steps;
    adamw_hparams h;
    float max_norm, base_lr;
    long warmup, total_steps;
    /* Flat buffers of t's layout, one per step; padding PAD_VALUE (NaN in the gradients). */
    float *params;            /* [steps + 1][t.total]: before step 1, then after each step */
    float *grads, *clipped;   /* [steps][t.total] */
    float *m, *v;             /* [steps][t.total]: after each step */
    double *lr, *norm_f64;    /* [steps] */
    float *norm, *coef;       /* [steps] */
} fixture;

static const char *meta(const fixture *fx, const char *key) {
    const char *s = st_metadata(fx->f, key);
    if (!s) fail_msg("%s: metadata key '%s' missing", st_path(fx->f), key);
    return s;
}

static const st_tensor *find(const fixture *fx, const char *name, st_dtype dtype, int64_t rows) {
    const st_tensor *t = st_find(fx->f, name);
    if (!t) fail_msg("%s: tensor %s missing", st_path(fx->f), name);
    if (t->dtype != dtype || t->ndim < 1 || t->shape[0] != rows)
        fail_msg("%s: tensor %s is %s with %lld rows, expected %s with %lld", st_path(fx->f), name,
                 st_dtype_name(t->dtype), t->ndim ? (long long)t->shape[0] : 0LL, st_dtype_name(dtype), (long long)rows);
    return t;
}

static void read_f64(const fixture *fx, const char *name, double *dst, int n) {
    const st_tensor *t = find(fx, name, ST_F64, n);
    assert_int_equal(t->nbytes, (size_t)n * sizeof(double));
    memcpy(dst, t->data, t->nbytes);  /* little-endian file, little-endian host */
}

static void read_f32(const fixture *fx, const char *name, float *dst, int n) {
    assert_int_equal(st_read_f32(find(fx, name, ST_F32, n), dst, (size_t)n), PEFT_OK);
}

/* "<kind>.<tensor>" [rows, ...] for every tensor, scattered into rows flat buffers. */
static float *read_series(const fixture *fx, const char *kind, int rows, float pad) {
    float *flat = alloc_floats((size_t)rows * fx->t.total);
    fill(flat, (size_t)rows * fx->t.total, pad);
    for (int k = 0; k < fx->t.n; k++) {
        const tt_entry *e = &fx->t.e[k];
        char name[TT_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s.%s", kind, e->name);
        const st_tensor *st = find(fx, name, ST_F32, rows);
        assert_int_equal(st_numel(st), (int64_t)((size_t)rows * e->numel));
        float *tmp = alloc_floats((size_t)rows * e->numel);
        assert_int_equal(st_read_f32(st, tmp, (size_t)rows * e->numel), PEFT_OK);
        for (int s = 0; s < rows; s++)
            memcpy(flat + (size_t)s * fx->t.total + e->offset, tmp + (size_t)s * e->numel, e->numel * sizeof(float));
        free(tmp);
    }
    return flat;
}

static void fixture_load(fixture *fx) {
    memset(fx, 0, sizeof *fx);
    const char *path = tu_fixture_path("optim/adamw.safetensors");
    if (st_open(path, &fx->f)) fail_msg("%s", err_msg());
    if (strcmp(meta(fx, "format"), "peft-optim-fixture") || strcmp(meta(fx, "version"), "1"))
        fail_msg("%s: format %s version %s, expected peft-optim-fixture version 1", path, meta(fx, "format"),
                 meta(fx, "version"));
    fx->steps = atoi(meta(fx, "steps"));
    assert_true(fx->steps > 0);
    fx->h = (adamw_hparams){.beta1 = strtod(meta(fx, "beta1"), NULL), .beta2 = strtod(meta(fx, "beta2"), NULL),
                            .eps = strtod(meta(fx, "eps"), NULL), .weight_decay = strtod(meta(fx, "weight_decay"), NULL)};
    fx->max_norm = strtof(meta(fx, "max_grad_norm"), NULL);
    fx->base_lr = strtof(meta(fx, "base_lr"), NULL);
    fx->warmup = atol(meta(fx, "warmup_steps"));
    fx->total_steps = atol(meta(fx, "total_steps"));
    assert_string_equal(meta(fx, "schedule"), "linear");

    /* The table: names from "tensors", flags from "decay", shapes from params.<name> minus its step axis. */
    char names[4096], flags[256];
    snprintf(names, sizeof names, "%s", meta(fx, "tensors"));
    snprintf(flags, sizeof flags, "%s", meta(fx, "decay"));
    char *save_n, *save_d, *d = strtok_r(flags, ",", &save_d);
    for (char *n = strtok_r(names, ",", &save_n); n; n = strtok_r(NULL, ",", &save_n), d = strtok_r(NULL, ",", &save_d)) {
        if (!d) fail_msg("%s: fewer decay flags than tensors", path);
        char key[TT_NAME_MAX + 32];
        snprintf(key, sizeof key, "params.%s", n);
        const st_tensor *st = find(fx, key, ST_F32, fx->steps + 1);
        assert_int_equal(tt_add(&fx->t, n, st->ndim - 1, st->shape + 1, !strcmp(d, "1"), NULL), PEFT_OK);
    }
    assert_true(fx->t.n >= 2);

    fx->params = read_series(fx, "params", fx->steps + 1, PAD_VALUE);
    fx->grads = read_series(fx, "grads", fx->steps, NAN);
    fx->clipped = read_series(fx, "clipped", fx->steps, NAN);
    fx->m = read_series(fx, "exp_avg", fx->steps, PAD_VALUE);
    fx->v = read_series(fx, "exp_avg_sq", fx->steps, PAD_VALUE);
    fx->lr = calloc((size_t)fx->steps, sizeof(double));
    fx->norm_f64 = calloc((size_t)fx->steps, sizeof(double));
    fx->norm = alloc_floats((size_t)fx->steps);
    fx->coef = alloc_floats((size_t)fx->steps);
    assert_true(fx->lr && fx->norm_f64);
    read_f64(fx, "lr", fx->lr, fx->steps);
    read_f64(fx, "grad_norm_f64", fx->norm_f64, fx->steps);
    read_f32(fx, "grad_norm", fx->norm, fx->steps);
    read_f32(fx, "clip_coef", fx->coef, fx->steps);
}

static void fixture_free(fixture *fx) {
    free(fx->params);
    free(fx->grads);
    free(fx->clipped);
    free(fx->m);
    free(fx->v);
    free(fx->lr);
    free(fx->norm_f64);
    free(fx->norm);
    free(fx->coef);
    tt_free(&fx->t);
    st_close(fx->f);
}

/* Compares step s tensor by tensor (a failure names it): bitwise if rtol is 0, else
 * assert_close_rel_max, tracking the worst relative error in *worst. */
static void compare_entries(const fixture *fx, const char *kind, int s, const float *got, const float *want,
                            double rtol, double *worst) {
    for (int k = 0; k < fx->t.n; k++) {
        const tt_entry *e = &fx->t.e[k];
        char what[TT_NAME_MAX + 64];
        snprintf(what, sizeof what, "step %d %s %s", s + 1, kind, e->name);
        if (rtol == 0.0) {
            assert_bits_equal(what, got + e->offset, want + e->offset, e->numel);
        } else {
            double rel = assert_close_rel_max(what, got + e->offset, want + e->offset, e->numel, rtol);
            if (rel > *worst) *worst = rel;
        }
    }
}

/* ---- AdamW against torch ------------------------------------------------------------------ */

/* Each step alone, from torch's state and clipped gradients: bit-identical. */
static void test_adamw_step_bitwise(void **state) {
    (void)state;
    fixture fx;
    fixture_load(&fx);
    size_t n = fx.t.total;
    float *p = alloc_floats(n), *m = alloc_floats(n), *v = alloc_floats(n);
    for (int s = 0; s < fx.steps; s++) {
        memcpy(p, fx.params + (size_t)s * n, n * sizeof(float));
        if (s == 0) {
            fill(m, n, 0.0f);
            fill(v, n, 0.0f);
        } else {
            memcpy(m, fx.m + (size_t)(s - 1) * n, n * sizeof(float));
            memcpy(v, fx.v + (size_t)(s - 1) * n, n * sizeof(float));
        }
        float lr = (float)fx.lr[s];
        assert_true((double)lr == fx.lr[s]);  /* the fixture's promise: see make_optim_fixtures.py */
        adamw_update(p, fx.clipped + (size_t)s * n, m, v, 0, n, &fx.t, &fx.h, s + 1, lr);
        compare_entries(&fx, "params", s, p, fx.params + (size_t)(s + 1) * n, 0.0, NULL);
        compare_entries(&fx, "exp_avg", s, m, fx.m + (size_t)s * n, 0.0, NULL);
        compare_entries(&fx, "exp_avg_sq", s, v, fx.v + (size_t)s * n, 0.0, NULL);
    }
    free(p);
    free(m);
    free(v);
    fixture_free(&fx);
}

/* The trainer's whole step from raw gradients: norm, clip coefficient, scaling, schedule, AdamW. */
static void test_adamw_trajectory(void **state) {
    (void)state;
    fixture fx;
    fixture_load(&fx);
    size_t n = fx.t.total;
    float *p = alloc_floats(n), *g = alloc_floats(n), *m = alloc_floats(n), *v = alloc_floats(n);
    memcpy(p, fx.params, n * sizeof(float));
    fill(m, n, PAD_VALUE);  /* the moments' padding too must stay as it is */
    fill(v, n, PAD_VALUE);
    for (int k = 0; k < fx.t.n; k++) {
        fill(m + fx.t.e[k].offset, fx.t.e[k].numel, 0.0f);
        fill(v + fx.t.e[k].offset, fx.t.e[k].numel, 0.0f);
    }
    double worst_p = 0, worst_m = 0, worst_v = 0, worst_g = 0, worst_norm = 0;
    int clipped = 0;
    for (int s = 0; s < fx.steps; s++) {
        char what[64];
        memcpy(g, fx.grads + (size_t)s * n, n * sizeof(float));  /* NaN padding: must not be read */
        assert_true(grads_finite_range(g, 0, n, &fx.t));
        double sq = grad_sq_norm_range(g, 0, n, &fx.t);
        snprintf(what, sizeof what, "step %d norm vs float64", s + 1);
        assert_rel(what, sqrt(sq), fx.norm_f64[s], 1e-12);
        snprintf(what, sizeof what, "step %d norm vs torch's float norm", s + 1);
        assert_rel(what, sqrt(sq), fx.norm[s], 1e-6);
        worst_norm = fmax(worst_norm, fabs(sqrt(sq) - fx.norm[s]) / fx.norm[s]);
        float coef = clip_coef(sq, fx.max_norm);
        snprintf(what, sizeof what, "step %d clip coefficient", s + 1);
        assert_rel(what, coef, fx.coef[s], 1e-6);
        clipped += coef < 1.0f;
        grad_scale_range(g, 0, n, &fx.t, coef);
        compare_entries(&fx, "clipped grads", s, g, fx.clipped + (size_t)s * n, 1e-6, &worst_g);

        float lr = schedule_lr(LR_SCHEDULE_LINEAR, fx.base_lr, s, fx.warmup, fx.total_steps);
        if ((double)lr != fx.lr[s]) fail_msg("step %d: schedule_lr %.9g, torch's LambdaLR %.17g", s + 1, lr, fx.lr[s]);
        adamw_update(p, g, m, v, 0, n, &fx.t, &fx.h, s + 1, lr);
        compare_entries(&fx, "params", s, p, fx.params + (size_t)(s + 1) * n, 1e-6, &worst_p);
        compare_entries(&fx, "exp_avg", s, m, fx.m + (size_t)s * n, 1e-6, &worst_m);
        compare_entries(&fx, "exp_avg_sq", s, v, fx.v + (size_t)s * n, 1e-6, &worst_v);
    }
    assert_true(clipped > 0 && clipped < fx.steps);  /* both sides of the clip were exercised */
    for (size_t i = 0; i < n; i++)  /* the gradients' padding is NaN, their elements finite */
        if (isnan(fx.grads[i]) && (p[i] != PAD_VALUE || m[i] != PAD_VALUE || v[i] != PAD_VALUE))
            fail_msg("padding [%zu] changed: params %g exp_avg %g exp_avg_sq %g", i, p[i], m[i], v[i]);
    print_message("torch trajectory, %d steps (%d clipped): worst relative error params %.2e, exp_avg %.2e, "
                  "exp_avg_sq %.2e, clipped grads %.2e, norm vs torch's float norm %.2e\n",
                  fx.steps, clipped, worst_p, worst_m, worst_v, worst_g, worst_norm);
    free(p);
    free(g);
    free(m);
    free(v);
    fixture_free(&fx);
}

/* ---- ranges, padding, decay flags ----------------------------------------------------------- */

typedef struct opt_state {
    float *p, *g, *m, *v;
} opt_state;

static void state_init(opt_state *s, const tensor_table *t, uint64_t seed) {
    rng_state r;
    rng_seed(&r, seed);
    s->p = alloc_floats(t->total);
    s->g = alloc_floats(t->total);
    s->m = alloc_floats(t->total);
    s->v = alloc_floats(t->total);
    fill_random(s->p, t, &r, 0.5f, PAD_VALUE);
    fill_random(s->g, t, &r, 0.1f, NAN);
    fill_random(s->m, t, &r, 0.01f, PAD_VALUE);
    fill_random(s->v, t, &r, 0.001f, PAD_VALUE);
    for (size_t i = 0; i < t->total; i++) s->v[i] = fabsf(s->v[i]);  /* a second moment is >= 0 */
}

static void state_copy(opt_state *dst, const opt_state *src, size_t n) {
    dst->p = alloc_floats(n);
    dst->g = alloc_floats(n);
    dst->m = alloc_floats(n);
    dst->v = alloc_floats(n);
    memcpy(dst->p, src->p, n * sizeof(float));
    memcpy(dst->g, src->g, n * sizeof(float));
    memcpy(dst->m, src->m, n * sizeof(float));
    memcpy(dst->v, src->v, n * sizeof(float));
}

static void state_free(opt_state *s) {
    free(s->p);
    free(s->g);
    free(s->m);
    free(s->v);
}

static void assert_state_equal(const char *what, const opt_state *a, const opt_state *b, size_t n) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s: params", what);
    assert_bits_equal(buf, a->p, b->p, n);
    snprintf(buf, sizeof buf, "%s: grads", what);
    assert_bits_equal(buf, a->g, b->g, n);
    snprintf(buf, sizeof buf, "%s: exp_avg", what);
    assert_bits_equal(buf, a->m, b->m, n);
    snprintf(buf, sizeof buf, "%s: exp_avg_sq", what);
    assert_bits_equal(buf, a->v, b->v, n);
}

/* Updating [0,k) then [k,n) (and [0,k),[k,j),[j,n)) is bit-identical to updating [0,n). */
static void test_ranges_compose(void **state) {
    (void)state;
    tensor_table t;
    synthetic_table(&t, SYNTH_SIZES, SYNTH_COUNT);
    size_t n = t.total, e2 = t.e[2].offset;
    size_t cuts[] = {0, 1, 4095, 4096, 4097, 5000, 5005, e2, e2 + 1, e2 + 4500, t.e[3].offset - 1, n - 1, n};
    adamw_hparams h = ADAMW_HPARAMS_DEFAULT;
    h.weight_decay = 0.1;
    opt_state base, whole;
    state_init(&base, &t, 11);
    state_copy(&whole, &base, n);
    adamw_update(whole.p, whole.g, whole.m, whole.v, 0, n, &t, &h, 3, 1e-3f);
    grad_scale_range(whole.g, 0, n, &t, 0.37f);
    double sq_whole = grad_sq_norm_range(base.g, 0, n, &t);
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        for (size_t j = i; j < sizeof cuts / sizeof cuts[0]; j++) {
            size_t k = cuts[i], l = cuts[j];
            opt_state split;
            state_copy(&split, &base, n);
            adamw_update(split.p, split.g, split.m, split.v, 0, k, &t, &h, 3, 1e-3f);
            adamw_update(split.p, split.g, split.m, split.v, k, l, &t, &h, 3, 1e-3f);
            adamw_update(split.p, split.g, split.m, split.v, l, n, &t, &h, 3, 1e-3f);
            grad_scale_range(split.g, l, n, &t, 0.37f);
            grad_scale_range(split.g, 0, k, &t, 0.37f);
            grad_scale_range(split.g, k, l, &t, 0.37f);
            char what[96];
            snprintf(what, sizeof what, "ranges [0,%zu) [%zu,%zu) [%zu,%zu)", k, k, l, l, n);
            assert_state_equal(what, &split, &whole, n);
            double sq = grad_sq_norm_range(base.g, 0, k, &t) + grad_sq_norm_range(base.g, k, l, &t) +
                        grad_sq_norm_range(base.g, l, n, &t);
            assert_rel(what, sq, sq_whole, 1e-14);
            assert_true(grads_finite_range(base.g, 0, k, &t) && grads_finite_range(base.g, k, l, &t));
            state_free(&split);
        }
    state_free(&base);
    state_free(&whole);
    tt_free(&t);
}

static bool bits_same(float a, float b) {
    return !memcmp(&a, &b, sizeof a);
}

/* Nothing outside the tensors' elements in [begin, end) changes, not padding, not the rest of the
 * buffers; every element inside ends as an update of the whole buffer leaves it. */
static void test_padding_and_outside_untouched(void **state) {
    (void)state;
    tensor_table t;
    synthetic_table(&t, SYNTH_SIZES, SYNTH_COUNT);
    size_t n = t.total;
    adamw_hparams h = ADAMW_HPARAMS_DEFAULT;
    h.weight_decay = 0.1;
    opt_state before, whole;
    state_init(&before, &t, 12);
    state_copy(&whole, &before, n);
    adamw_update(whole.p, whole.g, whole.m, whole.v, 0, n, &t, &h, 1, 1e-2f);
    grad_scale_range(whole.g, 0, n, &t, 0.5f);
    struct { size_t begin, end; } ranges[] = {{0, n}, {3, 7}, {4990, t.e[2].offset + 20}, {t.e[3].offset, n - 1}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        size_t b = ranges[r].begin, e = ranges[r].end;
        opt_state after;
        state_copy(&after, &before, n);
        adamw_update(after.p, after.g, after.m, after.v, b, e, &t, &h, 1, 1e-2f);
        grad_scale_range(after.g, b, e, &t, 0.5f);
        for (size_t i = 0, k = 0; i < n; i++) {
            while (k < (size_t)t.n && t.e[k].offset + t.e[k].numel <= i) k++;
            bool element = k < (size_t)t.n && i >= t.e[k].offset, inside = element && i >= b && i < e;
            const opt_state *want = inside ? &whole : &before;
            if (!bits_same(after.p[i], want->p[i]) || !bits_same(after.g[i], want->g[i]) ||
                !bits_same(after.m[i], want->m[i]) || !bits_same(after.v[i], want->v[i]))
                fail_msg("range [%zu,%zu): element %zu (%s) is p %g g %g m %g v %g, want %g %g %g %g", b, e, i,
                         inside ? "updated" : element ? "outside the range" : "padding", after.p[i], after.g[i],
                         after.m[i], after.v[i], want->p[i], want->g[i], want->m[i], want->v[i]);
        }
        state_free(&after);
    }
    state_free(&before);
    state_free(&whole);
    tt_free(&t);
}

/* Weight decay: with zero gradients and moments the update is exactly p *= 1 - lr*wd on decay
 * tensors and nothing on the others (HF's no-decay group: biases, norm gains). */
static void test_weight_decay_flag(void **state) {
    (void)state;
    tensor_table t;
    synthetic_table(&t, SYNTH_SIZES, SYNTH_COUNT);  /* even-indexed tensors decay */
    size_t n = t.total;
    rng_state r;
    rng_seed(&r, 13);
    float *p = alloc_floats(n), *p0 = alloc_floats(n), *g = alloc_floats(n), *m = alloc_floats(n), *v = alloc_floats(n);
    fill_random(p0, &t, &r, 1.0f, PAD_VALUE);
    for (int wd_on = 0; wd_on < 2; wd_on++) {
        adamw_hparams h = ADAMW_HPARAMS_DEFAULT;
        h.weight_decay = wd_on ? 0.1 : 0.0;
        memcpy(p, p0, n * sizeof(float));
        fill(g, n, 0.0f);
        fill(m, n, 0.0f);
        fill(v, n, 0.0f);
        adamw_update(p, g, m, v, 0, n, &t, &h, 1, 0.5f);
        float mul = (float)(1.0 - 0.5 * h.weight_decay);
        for (int k = 0; k < t.n; k++)
            for (size_t i = t.e[k].offset; i < t.e[k].offset + t.e[k].numel; i++) {
                float want = t.e[k].decay && wd_on ? p0[i] * mul : p0[i];
                if (p[i] != want || m[i] != 0.0f || v[i] != 0.0f)
                    fail_msg("weight_decay %g, tensor %s (decay %d) [%zu]: p %.9g want %.9g, m %g, v %g", h.weight_decay,
                             t.e[k].name, t.e[k].decay, i, p[i], want, m[i], v[i]);
            }
    }
    free(p);
    free(p0);
    free(g);
    free(m);
    free(v);
    tt_free(&t);
}

/* ---- norm, clip, finiteness ----------------------------------------------------------------- */

static void test_sq_norm_threads(void **state) {
    (void)state;
    const size_t sizes[] = {300001, 5, 700000, 123457, 64, 77777};
    tensor_table t;
    synthetic_table(&t, sizes, (int)(sizeof sizes / sizeof sizes[0]));
    rng_state r;
    rng_seed(&r, 14);
    float *g = alloc_floats(t.total);
    fill_random(g, &t, &r, 1.0f, NAN);
    for (int k = 0; k < t.n; k++)  /* magnitudes over 12 decades: the summation order shows */
        for (size_t i = t.e[k].offset; i < t.e[k].offset + t.e[k].numel; i++) g[i] *= powf(10.0f, 6.0f * (rng_uniform(&r) - 0.5f));
    long double ref = 0.0L;
    for (int k = 0; k < t.n; k++)
        for (size_t i = t.e[k].offset; i < t.e[k].offset + t.e[k].numel; i++) ref += (long double)g[i] * g[i];

    int saved = omp_get_max_threads();
    size_t sub_b = 12345, sub_e = t.total - 999;
    omp_set_num_threads(1);
    double one = grad_sq_norm_range(g, 0, t.total, &t), one_sub = grad_sq_norm_range(g, sub_b, sub_e, &t);
    for (int threads = 2; threads <= 4; threads++) {
        omp_set_num_threads(threads);
        double many = grad_sq_norm_range(g, 0, t.total, &t), many_sub = grad_sq_norm_range(g, sub_b, sub_e, &t);
        if (memcmp(&one, &many, sizeof one) || memcmp(&one_sub, &many_sub, sizeof one))
            fail_msg("squared norm depends on the thread count: 1 thread %.17g / %.17g, %d threads %.17g / %.17g "
                     "(differences %.3e / %.3e)", one, one_sub, threads, many, many_sub, many - one, many_sub - one_sub);
    }
    omp_set_num_threads(saved);
    assert_rel("squared norm vs long double sum", one, (double)ref, 1e-12);
    free(g);
    tt_free(&t);
}

static void test_clip_coef(void **state) {
    (void)state;
    struct { double sq; float max_norm, want; } exact[] = {
        {4.0, 1.0f, (1.0f / (2.0f + 1e-6f)) * 1.0f},   /* torch: reciprocal of (norm + 1e-6), times max_norm */
        {100.0, 5.0f, (1.0f / (10.0f + 1e-6f)) * 5.0f},
        {1.0, 1.0f, 1.0f / (1.0f + 1e-6f)},            /* norm == max_norm still scales by 1/(1+1e-6) */
        {0.25, 1.0f, 1.0f},                            /* below max_norm: clamped to 1 */
        {0.0, 1.0f, 1.0f},
        {INFINITY, 1.0f, 0.0f},
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        float got = clip_coef(exact[i].sq, exact[i].max_norm);
        if (got != exact[i].want)
            fail_msg("clip_coef(%g, %g) = %.9g, want %.9g", exact[i].sq, exact[i].max_norm, got, exact[i].want);
    }
    assert_rel("clip_coef(4, 1) vs 1/(2+1e-6)", clip_coef(4.0, 1.0f), 1.0 / (2.0 + 1e-6), 1.2e-7);
    assert_true(clip_coef(1.0, 1.0f) < 1.0f);
    assert_true(isnan(clip_coef(NAN, 1.0f)));
}

static void test_grads_finite(void **state) {
    (void)state;
    tensor_table t;
    synthetic_table(&t, SYNTH_SIZES, SYNTH_COUNT);
    size_t n = t.total, at = t.e[2].offset + 4321;
    rng_state r;
    rng_seed(&r, 15);
    float *g = alloc_floats(n);
    fill_random(g, &t, &r, 1.0f, NAN);  /* NaN padding is not a gradient */
    assert_true(grads_finite_range(g, 0, n, &t));
    assert_true(isfinite(grad_sq_norm_range(g, 0, n, &t)));
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        float keep = g[at];
        g[at] = bad[b];
        if (grads_finite_range(g, 0, n, &t) || grads_finite_range(g, at, at + 1, &t) || grads_finite_range(g, 100, at + 1, &t))
            fail_msg("%g at [%zu] not detected", bad[b], at);
        if (!grads_finite_range(g, 0, at, &t) || !grads_finite_range(g, at + 1, n, &t))
            fail_msg("%g at [%zu] reported for a range without it", bad[b], at);
        assert_false(isfinite(grad_sq_norm_range(g, 0, n, &t)));
        g[at] = keep;
    }
    assert_true(grads_finite_range(g, 5, 5, &t));  /* an empty range */
    free(g);
    tt_free(&t);
}

/* ---- schedules ---------------------------------------------------------------------------- */

static void check_lr(lr_schedule_type type, float base, long step, long warmup, long total, double lambda) {
    float got = schedule_lr(type, base, step, warmup, total);
    double want = (double)base * lambda;
    bool ok = want == 0.0 ? got == 0.0f : fabs(got - want) <= 0x1p-23 * fabs(want);
    if (!ok)
        fail_msg("schedule %s step %ld (warmup %ld, total %ld): got %.9g want %.9g (lambda %.17g), tolerance 1 ulp",
                 schedule_name(type), step, warmup, total, got, want, lambda);
}

static void test_schedule_closed_form(void **state) {
    (void)state;
    const float base = 1e-3f;
    const long W = 10, T = 110;  /* 100 decay steps */
    const double pi = M_PI;
    struct { lr_schedule_type type; long step; double lambda; } cases[] = {
        {LR_SCHEDULE_LINEAR, 0, 0.0},  /* HF: the first update of a warmup has lr 0 */
        {LR_SCHEDULE_LINEAR, 1, 0.1},
        {LR_SCHEDULE_LINEAR, 9, 0.9},  /* last warmup step */
        {LR_SCHEDULE_LINEAR, 10, 1.0}, /* first step after warmup: the peak */
        {LR_SCHEDULE_LINEAR, 11, 0.99},
        {LR_SCHEDULE_LINEAR, 60, 0.5},
        {LR_SCHEDULE_LINEAR, 109, 0.01}, /* the last update */
        {LR_SCHEDULE_LINEAR, 110, 0.0},
        {LR_SCHEDULE_LINEAR, 500, 0.0},  /* clamped at 0 past the end */
        {LR_SCHEDULE_COSINE, 0, 0.0},
        {LR_SCHEDULE_COSINE, 5, 0.5},
        {LR_SCHEDULE_COSINE, 9, 0.9},
        {LR_SCHEDULE_COSINE, 10, 1.0},
        {LR_SCHEDULE_COSINE, 35, 0.5 * (1.0 + cos(pi / 4))},
        {LR_SCHEDULE_COSINE, 60, 0.5 * (1.0 + cos(pi / 2))},
        {LR_SCHEDULE_COSINE, 85, 0.5 * (1.0 + cos(3 * pi / 4))},
        {LR_SCHEDULE_COSINE, 109, 0.5 * (1.0 + cos(pi * 0.99))},
        {LR_SCHEDULE_COSINE, 110, 0.0},
        {LR_SCHEDULE_COSINE, 130, 0.5 * (1.0 + cos(pi * 1.2))},  /* transformers' lambda rises again */
        {LR_SCHEDULE_CONSTANT, 0, 1.0},
        {LR_SCHEDULE_CONSTANT, 9, 1.0},
        {LR_SCHEDULE_CONSTANT, 100000, 1.0},
        {LR_SCHEDULE_CONSTANT_WITH_WARMUP, 0, 0.0},
        {LR_SCHEDULE_CONSTANT_WITH_WARMUP, 5, 0.5},
        {LR_SCHEDULE_CONSTANT_WITH_WARMUP, 9, 0.9},
        {LR_SCHEDULE_CONSTANT_WITH_WARMUP, 10, 1.0},
        {LR_SCHEDULE_CONSTANT_WITH_WARMUP, 100000, 1.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_lr(cases[i].type, base, cases[i].step, W, T, cases[i].lambda);

    /* No warmup: the first update already has the full lr. */
    for (int type = 0; type < 4; type++) check_lr((lr_schedule_type)type, base, 0, 0, T, 1.0);
    check_lr(LR_SCHEDULE_LINEAR, base, 50, 0, 100, 0.5);
    /* One warmup step: lr 0, then the peak. */
    check_lr(LR_SCHEDULE_LINEAR, base, 0, 1, 11, 0.0);
    check_lr(LR_SCHEDULE_LINEAR, base, 1, 1, 11, 1.0);
    check_lr(LR_SCHEDULE_CONSTANT_WITH_WARMUP, base, 1, 1, 0, 1.0);
    /* Warmup covering the whole run: transformers' max(1, total - warmup) guard, no division by 0. */
    check_lr(LR_SCHEDULE_LINEAR, base, 10, 10, 10, 0.0);
    check_lr(LR_SCHEDULE_COSINE, base, 10, 10, 10, 1.0);
}

/* The four schedules against torch's LambdaLR driven by transformers' lambdas (fixture table). */
static void test_schedule_vs_torch(void **state) {
    (void)state;
    fixture fx;
    fixture_load(&fx);
    float base = strtof(meta(&fx, "table_base_lr"), NULL);
    long warmup = atol(meta(&fx, "table_warmup_steps")), total = atol(meta(&fx, "table_total_steps"));
    int steps = atoi(meta(&fx, "table_steps"));
    assert_true(steps > total);
    double *want = calloc((size_t)steps, sizeof(double));
    assert_non_null(want);
    for (int type = 0; type < 4; type++) {
        char name[64];
        snprintf(name, sizeof name, "lr.%s", schedule_name((lr_schedule_type)type));
        read_f64(&fx, name, want, steps);
        for (int s = 0; s < steps; s++) {
            float got = schedule_lr((lr_schedule_type)type, base, s, warmup, total);
            bool ok = want[s] == 0.0 ? got == 0.0f : fabs(got - want[s]) <= 0x1p-22 * want[s];
            if (!ok)
                fail_msg("%s step %d: schedule_lr %.9g, torch LambdaLR %.17g (tolerance 2^-22 relative)", name, s, got,
                         want[s]);
        }
    }
    free(want);
    fixture_free(&fx);
}

static void test_schedule_parse(void **state) {
    (void)state;
    for (int type = 0; type < 4; type++) {
        lr_schedule_type got = (lr_schedule_type)-1;
        assert_int_equal(schedule_parse(schedule_name((lr_schedule_type)type), &got), PEFT_OK);
        assert_int_equal(got, type);
    }
    assert_string_equal(schedule_name(LR_SCHEDULE_CONSTANT_WITH_WARMUP), "constant_with_warmup");
    const char *unknown[] = {"cosine_with_restarts", "Linear", "", "linear "};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        lr_schedule_type got = LR_SCHEDULE_COSINE;
        int rc = schedule_parse(unknown[i], &got);
        const char *msg = err_msg();
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", unknown[i]);
        if (rc != PEFT_EUSAGE || !strstr(msg, "--lr-scheduler-type") || !strstr(msg, quoted) ||
            !strstr(msg, "linear, cosine, constant or constant_with_warmup"))
            fail_msg("schedule_parse(\"%s\"): status %d, message \"%s\"", unknown[i], rc, msg);
        assert_int_equal(got, LR_SCHEDULE_COSINE);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_step_bitwise),
        cmocka_unit_test(test_adamw_trajectory),
        cmocka_unit_test(test_ranges_compose),
        cmocka_unit_test(test_padding_and_outside_untouched),
        cmocka_unit_test(test_weight_decay_flag),
        cmocka_unit_test(test_sq_norm_threads),
        cmocka_unit_test(test_clip_coef),
        cmocka_unit_test(test_grads_finite),
        cmocka_unit_test(test_schedule_closed_form),
        cmocka_unit_test(test_schedule_vs_torch),
        cmocka_unit_test(test_schedule_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
