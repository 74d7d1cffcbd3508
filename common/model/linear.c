#include "model/linear.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "kernels/parallel.h"
#include "peft/linear_hook.h"
#include "quant/bf16.h"
#include "quant/qweight.h"

/* Scratch of the compressed path: one weight tile and the input of a call, in fp32 for gemm_f32
 * (tile, in) or in bf16 for gemm_bf16 (tile16, in16). Each is allocated on first use only. */
static struct {
    float *tile;      /* [tile_cap = LINEAR_TILE_ELEMS] */
    float *in;        /* [in_cap] */
    uint16_t *tile16; /* [tile16_cap = LINEAR_TILE_ELEMS] */
    uint16_t *in16;   /* [in16_cap] */
    size_t tile_cap, in_cap, tile16_cap, in16_cap;
} scratch;

void linear_scratch_release(void) {
    free(scratch.tile);
    free(scratch.in);
    free(scratch.tile16);
    free(scratch.in16);
    scratch.tile = scratch.in = NULL;
    scratch.tile16 = scratch.in16 = NULL;
    scratch.tile_cap = scratch.in_cap = scratch.tile16_cap = scratch.in16_cap = 0;
}

/* buf (holding *cap elements of elem bytes, or NULL) if it holds n, else a new buffer of n that
 * replaces it (*cap updated); out of memory is fatal. */
static void *scratch_reserve(void *buf, size_t *cap, size_t n, size_t elem, const char *what) {
    if (buf && n <= *cap) return buf;
    free(buf);
    buf = malloc((n ? n : 1) * elem);
    if (!buf) {
        fprintf(stderr, "peft: out of memory for %zu %s\n", n, what);
        abort();
    }
    *cap = n;
    return buf;
}

static float *tile_scratch(void) {
    return scratch.tile = scratch_reserve(scratch.tile, &scratch.tile_cap, LINEAR_TILE_ELEMS, sizeof(float),
                                          "floats of a weight tile");
}

static uint16_t *tile16_scratch(void) {
    return scratch.tile16 = scratch_reserve(scratch.tile16, &scratch.tile16_cap, LINEAR_TILE_ELEMS,
                                            sizeof(uint16_t), "bf16 values of a weight tile");
}

/* Whether a compressed layer's products are real bf16 products (gemm_bf16): bf16 compute, the
 * oneDNN backend, and a CPU where oneDNN has the bf16 matmul. Otherwise bf16 compute is emulated:
 * inputs and tiles rounded to bf16 but carried in fp32 through gemm_f32 (the same values, so the
 * two differ only in the order of the fp32 accumulation). */
static bool bf16_gemm(gemm_backend be, const qweight *q) {
    return q->bf16_compute && be == GEMM_ONEDNN && gemm_onednn_bf16_available();
}

/* The input (x or dy) of a compressed product as its tiles are multiplied: fp32 (f, possibly
 * rounded to bf16 values) or bf16 (h), with row stride ld. */
typedef struct {
    const float *f;
    const uint16_t *h;
    int ld;
} lin_input;

/* a[N, k] (stride lda) for a product in the compute mode of q: converted to bf16 for gemm_bf16,
 * rounded to bf16 values for emulated bf16 compute, else a itself. Converted inputs are packed
 * [N, k] in the scratch, once per call. */
static lin_input linear_input(bool b16, const qweight *q, const float *a, int lda, int N, int k) {
    const size_t n = (size_t)N * (size_t)k;
    if (b16) {
        uint16_t *h = scratch.in16 = scratch_reserve(scratch.in16, &scratch.in16_cap, n, sizeof(uint16_t), "bf16 inputs");
        bf16_from_f32_rows(h, k, a, lda, N, k);
        return (lin_input){NULL, h, k};
    }
    if (!q->bf16_compute) return (lin_input){a, NULL, lda};
    float *dst = scratch.in = scratch_reserve(scratch.in, &scratch.in_cap, n, sizeof(float), "bf16-rounded inputs");
#pragma omp parallel for if (PEFT_PAR(n))
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++) dst[(size_t)i * k + j] = bf16_round(a[(size_t)i * lda + j]);
    return (lin_input){dst, NULL, k};
}

/* A tile's extent along one dimension: the budget over the other dimension, a multiple of 16;
 * all of it when whole (a bf16 weight under gemm_bf16 is read in place, so nothing is decoded). */
static int tile_extent(int other, int total, bool whole) {
    if (whole) return total;
    int t = LINEAR_TILE_ELEMS / (other > 0 ? other : 1);
    if (t >= 16) t &= ~15;
    if (t < 1) t = 1;
    return t < total ? t : total;
}

/* C[M, Nc] (stride ldc) = op(in + off)[M, K] op(T) + beta C, where T = W[r0 .. r0+nr, c0 .. c0+nc]
 * decoded in the product's dtype (op(T) = T^T when transB) and multiplied by gemm_bf16 or gemm_f32. */
static void tile_product(gemm_backend be, bool b16, const qweight *q, int r0, int nr, int c0, int nc, int transB,
                         int M, int Nc, int K, lin_input in, int off, float beta, float *C, int ldc) {
    if (b16) {
        int ld;
        const uint16_t *T = qweight_tile_bf16(q, r0, nr, c0, nc, q->fmt == QWEIGHT_NF4 ? tile16_scratch() : NULL, &ld);
        gemm_bf16(0, transB, M, Nc, K, 1.0f, in.h + off, in.ld, T, ld, beta, C, ldc);
        return;
    }
    float *T = tile_scratch();
    qweight_tile(q, r0, nr, c0, nc, T);
    gemm_f32(be, 0, transB, M, Nc, K, 1.0f, in.f + off, in.ld, T, nc, beta, C, ldc);
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
    const bool b16 = bf16_gemm(be, q), whole = b16 && q->fmt == QWEIGHT_BF16;
    const lin_input xin = linear_input(b16, q, x, ldx, N, in);
    if (in <= out) {
        const int tr = tile_extent(in, out, whole);
        for (int j0 = 0; j0 < out; j0 += tr) {
            int nr = out - j0 < tr ? out - j0 : tr;
            tile_product(be, b16, q, j0, nr, 0, in, 1, N, nr, in, xin, 0, accumulate ? 1.0f : 0.0f, y + j0, ldy);
        }
        return;
    }
    const int tc = tile_extent(out, in, whole);
    for (int i0 = 0; i0 < in; i0 += tc) {
        int nc = in - i0 < tc ? in - i0 : tc;
        tile_product(be, b16, q, 0, out, i0, nc, 1, N, out, nc, xin, i0, (accumulate || i0 > 0) ? 1.0f : 0.0f, y, ldy);
    }
}

/* dx[N, in] (+)= dy W, by the same rule: tiles of W's columns give dx's columns (K = out) when
 * out <= in; tiles of W's rows split K and accumulate into dx when out > in. */
static void compressed_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy, int N,
                                int accumulate_dx) {
    const qweight *q = l->weight->q;
    const int in = l->in, out = l->out;
    const bool b16 = bf16_gemm(be, q), whole = b16 && q->fmt == QWEIGHT_BF16;
    const lin_input dyin = linear_input(b16, q, dy, lddy, N, out);
    if (out <= in) {
        const int tc = tile_extent(out, in, whole);
        for (int i0 = 0; i0 < in; i0 += tc) {
            int nc = in - i0 < tc ? in - i0 : tc;
            tile_product(be, b16, q, 0, out, i0, nc, 0, N, nc, out, dyin, 0, accumulate_dx ? 1.0f : 0.0f, dx + i0, lddx);
        }
        return;
    }
    const int tr = tile_extent(in, out, whole);
    for (int j0 = 0; j0 < out; j0 += tr) {
        int nr = out - j0 < tr ? out - j0 : tr;
        tile_product(be, b16, q, j0, nr, 0, in, 0, N, in, nr, dyin, j0, (accumulate_dx || j0 > 0) ? 1.0f : 0.0f, dx, lddx);
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
