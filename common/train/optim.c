#include "train/optim.h"

#include <math.h>

#include "error.h"

/* Work unit of every parallel loop: a fixed slice of the range, so chunk boundaries (and with them
 * the norm's summation order) depend only on begin, never on the thread count. */
#define OPTIM_CHUNK 4096
/* The norm splits its range into at most this many runs of whole chunks, a partial sum each (on
 * the stack, 2 KiB), however many threads there are. */
#define OPTIM_NORM_BLOCKS 256

/* Index of the first entry whose elements end after pos (t->n if none): entries are sorted by offset. */
static int entry_after(const tensor_table *t, size_t pos) {
    int lo = 0, hi = t->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t->e[mid].offset + t->e[mid].numel <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Walks the tensor elements of [c0, c1): for each entry e overlapping it, [*a, *b) is the overlap
 * (never empty). Usage: for (int k = entry_after(t, c0); span(t, k, c0, c1, &a, &b); k++) */
static bool span(const tensor_table *t, int k, size_t c0, size_t c1, size_t *a, size_t *b) {
    if (k >= t->n || t->e[k].offset >= c1) return false;
    const tt_entry *e = &t->e[k];
    *a = e->offset > c0 ? e->offset : c0;
    *b = e->offset + e->numel < c1 ? e->offset + e->numel : c1;
    return true;
}

static long chunk_count(size_t begin, size_t end) {
    return (long)((end - begin + OPTIM_CHUNK - 1) / OPTIM_CHUNK);
}

static size_t chunk_end(size_t c0, size_t end) {
    return end - c0 < OPTIM_CHUNK ? end : c0 + OPTIM_CHUNK;
}

/* ---- AdamW ----------------------------------------------------------------------------------- */

/* torch's scalars, each formed in double and rounded to float where torch's kernels receive it. */
typedef struct adamw_coefs {
    float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
    float neg_step_size;     /* -lr / (1 - beta1^step) */
    float bias_corr2_sqrt;   /* sqrt(1 - beta2^step) */
    float decay_mul;         /* 1 - lr * weight_decay */
} adamw_coefs;

/* Every product here already feeds an fmaf() or a division, so no -ffp-contract setting can fuse
 * anything torch does not: the rounding is torch's whatever the compiler flags. */
static void adamw_span(float *p, const float *g, float *m, float *v, size_t a, size_t b, bool decay,
                       const adamw_coefs *c) {
    for (size_t i = a; i < b; i++) {
        float pi = decay ? p[i] * c->decay_mul : p[i];
        float mi = fmaf(g[i], c->one_minus_beta1, m[i] * c->beta1);
        float vi = fmaf(c->one_minus_beta2 * g[i], g[i], v[i] * c->beta2);
        float denom = sqrtf(vi) / c->bias_corr2_sqrt + c->eps;
        p[i] = pi + c->neg_step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

void adamw_update(float *params, const float *grads, float *m, float *v, size_t begin, size_t end,
                  const tensor_table *t, const adamw_hparams *h, long step, float lr) {
    PEFT_ASSERT(begin <= end && end <= t->total);
    PEFT_ASSERT(step >= 1);
    double bias_corr1 = 1.0 - pow(h->beta1, (double)step);
    double bias_corr2 = 1.0 - pow(h->beta2, (double)step);
    adamw_coefs c = {
        .beta1 = (float)h->beta1,
        .one_minus_beta1 = (float)(1.0 - h->beta1),
        .beta2 = (float)h->beta2,
        .one_minus_beta2 = (float)(1.0 - h->beta2),
        .eps = (float)h->eps,
        .neg_step_size = (float)-((double)lr / bias_corr1),
        .bias_corr2_sqrt = (float)sqrt(bias_corr2),
        .decay_mul = (float)(1.0 - (double)lr * h->weight_decay),
    };
    bool decay_on = h->weight_decay != 0.0;
    long nchunks = chunk_count(begin, end);
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (long ci = 0; ci < nchunks; ci++) {
        size_t c0 = begin + (size_t)ci * OPTIM_CHUNK, c1 = chunk_end(c0, end), a, b;
        for (int k = entry_after(t, c0); span(t, k, c0, c1, &a, &b); k++)
            adamw_span(params, grads, m, v, a, b, decay_on && t->e[k].decay, &c);
    }
}

/* ---- clipping -------------------------------------------------------------------------------- */

/* Eight running sums in a fixed lane pattern (lets the compiler vectorise), combined in a fixed order. */
static double sq_sum(const float *g, size_t a, size_t b) {
    double lane[8] = {0};
    size_t i = a;
    for (; i + 8 <= b; i += 8)
        for (int j = 0; j < 8; j++) lane[j] += (double)g[i + j] * (double)g[i + j];
    for (int j = 0; i < b; i++, j++) lane[j] += (double)g[i] * (double)g[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

double grad_sq_norm_range(const float *g, size_t begin, size_t end, const tensor_table *t) {
    PEFT_ASSERT(begin <= end && end <= t->total);
    long nchunks = chunk_count(begin, end);
    long nblocks = nchunks < OPTIM_NORM_BLOCKS ? nchunks : OPTIM_NORM_BLOCKS;
    double partial[OPTIM_NORM_BLOCKS];
#pragma omp parallel for schedule(static) if (nblocks > 1)
    for (long j = 0; j < nblocks; j++) {
        double s = 0.0;  /* block j: chunks [j*nchunks/nblocks, (j+1)*nchunks/nblocks), in order */
        for (long ci = j * nchunks / nblocks; ci < (j + 1) * nchunks / nblocks; ci++) {
            size_t c0 = begin + (size_t)ci * OPTIM_CHUNK, c1 = chunk_end(c0, end), a, b;
            for (int k = entry_after(t, c0); span(t, k, c0, c1, &a, &b); k++) s += sq_sum(g, a, b);
        }
        partial[j] = s;
    }
    double total = 0.0;
    for (long j = 0; j < nblocks; j++) total += partial[j];
    return total;
}

float clip_coef(double total_sq_norm, float max_norm) {
    float norm = (float)sqrt(total_sq_norm);
    float coef = (1.0f / (norm + 1e-6f)) * max_norm;
    return coef > 1.0f ? 1.0f : coef;  /* NaN passes through, as torch.clamp lets it */
}

void grad_scale_range(float *g, size_t begin, size_t end, const tensor_table *t, float coef) {
    PEFT_ASSERT(begin <= end && end <= t->total);
    long nchunks = chunk_count(begin, end);
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (long ci = 0; ci < nchunks; ci++) {
        size_t c0 = begin + (size_t)ci * OPTIM_CHUNK, c1 = chunk_end(c0, end), a, b;
        for (int k = entry_after(t, c0); span(t, k, c0, c1, &a, &b); k++)
            for (size_t i = a; i < b; i++) g[i] *= coef;
    }
}

bool grads_finite_range(const float *g, size_t begin, size_t end, const tensor_table *t) {
    PEFT_ASSERT(begin <= end && end <= t->total);
    int bad = 0;
    long nchunks = chunk_count(begin, end);
#pragma omp parallel for schedule(static) reduction(| : bad) if (nchunks > 1)
    for (long ci = 0; ci < nchunks; ci++) {
        size_t c0 = begin + (size_t)ci * OPTIM_CHUNK, c1 = chunk_end(c0, end), a, b;
        for (int k = entry_after(t, c0); span(t, k, c0, c1, &a, &b); k++)
            for (size_t i = a; i < b; i++) bad |= !isfinite(g[i]);
    }
    return !bad;
}
