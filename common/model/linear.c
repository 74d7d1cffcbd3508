#include "model/linear.h"

#include <stdlib.h>

#include "error.h"
#include "kernels/parallel.h"
#include "peft/linear_hook.h"
#include "quant/bf16.h"
#include "quant/qweight.h"

/* Scratch of the compressed path: one weight tile, and the bf16-rounded input of a call. */
static struct {
    float *tile; /* [LINEAR_TILE_ELEMS] */
    float *in;   /* [in_cap] */
    size_t in_cap;
} scratch;

void linear_scratch_release(void) {
    free(scratch.tile);
    free(scratch.in);
    scratch.tile = scratch.in = NULL;
    scratch.in_cap = 0;
}

static float *tile_scratch(void) {
    if (!scratch.tile && !(scratch.tile = malloc(LINEAR_TILE_ELEMS * sizeof(float)))) {
        fprintf(stderr, "peft: out of memory for a %d-float weight tile\n", LINEAR_TILE_ELEMS);
        abort();
    }
    return scratch.tile;
}

/* a[N, k] (stride lda) rounded to bf16, packed [N, k] in the scratch. */
static const float *bf16_input(const float *a, int lda, int N, int k) {
    size_t n = (size_t)N * (size_t)k;
    if (n > scratch.in_cap) {
        free(scratch.in);
        scratch.in = malloc(n * sizeof(float));
        if (!scratch.in) {
            fprintf(stderr, "peft: out of memory for %zu bf16-rounded inputs\n", n);
            abort();
        }
        scratch.in_cap = n;
    }
    float *dst = scratch.in;
#pragma omp parallel for if (PEFT_PAR(n))
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++) dst[(size_t)i * k + j] = bf16_round(a[(size_t)i * lda + j]);
    return dst;
}

/* A tile's extent along one dimension: the budget over the other dimension, a multiple of 16. */
static int tile_extent(int other, int total) {
    int t = LINEAR_TILE_ELEMS / (other > 0 ? other : 1);
    if (t >= 16) t &= ~15;
    if (t < 1) t = 1;
    return t < total ? t : total;
}

/* y[N, out] (+)= x W^T with W [out, in] compressed. Each tile product must not re-read a large
 * operand once per tile: when in <= out, tiles of W's rows give y's columns (K = in, x re-read per
 * tile is small); when in > out, tiles of W's columns split K and accumulate into y (x read once). */
static void compressed_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                               int accumulate) {
    const qweight *q = l->weight->q;
    const int in = l->in, out = l->out;
    PEFT_ASSERT(q->rows == out && q->cols == in && !l->in_major && (size_t)in <= LINEAR_TILE_ELEMS &&
                (size_t)out <= LINEAR_TILE_ELEMS);
    if (q->bf16_compute) {
        x = bf16_input(x, ldx, N, in);
        ldx = in;
    }
    float *T = tile_scratch();
    if (in <= out) {
        const int tr = tile_extent(in, out);
        for (int j0 = 0; j0 < out; j0 += tr) {
            int nr = out - j0 < tr ? out - j0 : tr;
            qweight_tile(q, j0, nr, 0, in, T);
            gemm_f32(be, 0, 1, N, nr, in, 1.0f, x, ldx, T, in, accumulate ? 1.0f : 0.0f, y + j0, ldy);
        }
        return;
    }
    const int tc = tile_extent(out, in);
    for (int i0 = 0; i0 < in; i0 += tc) {
        int nc = in - i0 < tc ? in - i0 : tc;
        qweight_tile(q, 0, out, i0, nc, T);
        gemm_f32(be, 0, 1, N, out, nc, 1.0f, x + i0, ldx, T, nc, (accumulate || i0 > 0) ? 1.0f : 0.0f, y, ldy);
    }
}

/* dx[N, in] (+)= dy W, by the same rule: tiles of W's columns give dx's columns (K = out) when
 * out <= in; tiles of W's rows split K and accumulate into dx when out > in. */
static void compressed_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy, int N,
                                int accumulate_dx) {
    const qweight *q = l->weight->q;
    const int in = l->in, out = l->out;
    if (q->bf16_compute) {
        dy = bf16_input(dy, lddy, N, out);
        lddy = out;
    }
    float *T = tile_scratch();
    if (out <= in) {
        const int tc = tile_extent(out, in);
        for (int i0 = 0; i0 < in; i0 += tc) {
            int nc = in - i0 < tc ? in - i0 : tc;
            qweight_tile(q, 0, out, i0, nc, T);
            gemm_f32(be, 0, 0, N, nc, out, 1.0f, dy, lddy, T, nc, accumulate_dx ? 1.0f : 0.0f, dx + i0, lddx);
        }
        return;
    }
    const int tr = tile_extent(in, out);
    for (int j0 = 0; j0 < out; j0 += tr) {
        int nr = out - j0 < tr ? out - j0 : tr;
        qweight_tile(q, j0, nr, 0, in, T);
        gemm_f32(be, 0, 0, N, in, nr, 1.0f, dy + j0, lddy, T, in, (accumulate_dx || j0 > 0) ? 1.0f : 0.0f, dx, lddx);
    }
}

void linear_base_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                         int accumulate) {
    const float *W = l->weight->data;
    if (l->weight->q) compressed_forward(be, l, y, ldy, x, ldx, N, accumulate);
    else if (l->in_major) gemm_f32(be, 0, 0, N, l->out, l->in, 1.0f, x, ldx, W, l->out, accumulate ? 1.0f : 0.0f, y, ldy);
    else gemm_f32(be, 0, 1, N, l->out, l->in, 1.0f, x, ldx, W, l->in, accumulate ? 1.0f : 0.0f, y, ldy);
    if (!l->bias) return;
    const float *b = l->bias->data;
    const int out = l->out;
#pragma omp parallel for if (PEFT_PAR((size_t)N * l->out))
    for (int i = 0; i < N; i++) {
        float *row = y + (size_t)i * ldy;
        for (int j = 0; j < out; j++) row[j] += b[j];
    }
}

void linear_base_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                          const float *x, int ldx, int N, int accumulate_dx) {
    const float *W = l->weight->data;
    if (l->weight->q) {
        PEFT_ASSERT(!l->weight->grad);
        if (dx) compressed_backward(be, l, dx, lddx, dy, lddy, N, accumulate_dx);
    } else if (dx) {
        float beta = accumulate_dx ? 1.0f : 0.0f;
        if (l->in_major) gemm_f32(be, 0, 1, N, l->in, l->out, 1.0f, dy, lddy, W, l->out, beta, dx, lddx);
        else gemm_f32(be, 0, 0, N, l->in, l->out, 1.0f, dy, lddy, W, l->in, beta, dx, lddx);
    }
    if (l->weight->grad) {
        if (l->in_major) gemm_f32(be, 1, 0, l->in, l->out, N, 1.0f, x, ldx, dy, lddy, 1.0f, l->weight->grad, l->out);
        else gemm_f32(be, 1, 0, l->out, l->in, N, 1.0f, dy, lddy, x, ldx, 1.0f, l->weight->grad, l->in);
    }
    if (l->bias && l->bias->grad) {
        float *db = l->bias->grad;
        const int out = l->out;
#pragma omp parallel for if (PEFT_PAR((size_t)N * out))
        for (int j = 0; j < out; j++) {
            float s = 0.0f;
            for (int i = 0; i < N; i++) s += dy[(size_t)i * lddy + j];
            db[j] += s;
        }
    }
}

void linear_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                    int accumulate) {
    if (l->hook) linear_hook_forward(be, l, y, ldy, x, ldx, N, accumulate);
    else linear_base_forward(be, l, y, ldy, x, ldx, N, accumulate);
}

void linear_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                     const float *x, int ldx, int N, int accumulate_dx) {
    if (l->hook) linear_hook_backward(be, l, dx, lddx, dy, lddy, x, ldx, N, accumulate_dx);
    else linear_base_backward(be, l, dx, lddx, dy, lddy, x, ldx, N, accumulate_dx);
}
