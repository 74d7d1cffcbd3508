/*
 * attention.c - causal attention as blocked matrix products per head (see attention.h).
 *
 * Every product of the forward and backward pass is C (+)= A B with B row-major, computed by one
 * register-blocked kernel (mm below: 6 rows x 16 columns of C in twelve 8-float vectors, GCC vector
 * extensions, so AVX2 + FMA under -march=native). Causality is exploited per block of query rows:
 * a block of rows t0..t1 only needs keys 0..P+t1. Keys and values are transposed once per head
 * into a [hd, S16] scratch (S16 = S rounded up to 16, zero padded) so that the score products
 * vectorise over key positions; every other operand read as B (values, keys, queries, output
 * gradients) is first copied into a contiguous [rows, hd] scratch. Read in place, their rows are
 * ld floats apart: GPT-2's 2304 floats (9 KB) map every row onto the same 4 of L1's 64 sets, so
 * the products thrashed L1 and ran at half the speed they reach on Llama's 960-float rows.
 *
 * Threads: the forward pass splits over (b, h); the backward pass over (b, key/value head g),
 * since the query heads sharing g accumulate into the same key/value gradient rows (and over g
 * alone when prefix gradients are wanted: every sequence accumulates into the same prefix rows).
 */
#include "kernels/attention.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "error.h"
#include "kernels/fastmath.h"
#include "kernels/parallel.h"

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

static inline v8 splat8(float x) { return (v8){x, x, x, x, x, x, x, x}; }

enum { MR = 6, NR = 16, TB = 24 /* query rows per block: 4 x MR */ };

/*
 * C[M, N] = A B (acc == 0) or C += A B (acc == 1), where A(i, k) = A[i*rsa + k*csa], B[K, N] has
 * row stride ldb and C row stride ldc. Columns past the last multiple of 16 go through a scalar
 * loop, so B and C are never touched outside [K, N] and [M, N].
 *
 * The block is 6 rows x 16 columns of C: 12 accumulators, the two vectors of B's row and one
 * broadcast make 15 of AVX2's 16 registers, so each B row is loaded once per k and used by 12
 * FMAs (a 4 x 16 block has 8 FMAs for 6 loads and ran at 40 GFLOP/s per core; this one at 73-88).
 * The empty asm keeps b0 and b1 in registers: without it GCC folds the B loads into every FMA as
 * memory operands, 12 loads per k instead of 2.
 */
static void mm(int M, int N, int K, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb, float *C,
               size_t ldc, int acc) {
    const int N16 = N & ~(NR - 1);
    for (int i0 = 0; i0 < M; i0 += MR) {
        const int mr = M - i0 < MR ? M - i0 : MR;
        /* rows past M repeat row i0 and are not stored: the inner loop stays fixed at MR rows */
        const float *a0 = A + (size_t)i0 * rsa, *a1 = mr > 1 ? a0 + rsa : a0, *a2 = mr > 2 ? a0 + 2 * rsa : a0,
                    *a3 = mr > 3 ? a0 + 3 * rsa : a0, *a4 = mr > 4 ? a0 + 4 * rsa : a0, *a5 = mr > 5 ? a0 + 5 * rsa : a0;
        for (int j0 = 0; j0 < N16; j0 += NR) {
            v8 c00 = splat8(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
               c40 = c00, c41 = c00, c50 = c00, c51 = c00;
            const float *b = B + j0;
            for (int k = 0; k < K; k++, b += ldb) {
                v8 b0 = load8(b), b1 = load8(b + 8);
                __asm__("" : "+x"(b0), "+x"(b1));
                const size_t o = (size_t)k * csa;
                v8 x = splat8(a0[o]);
                c00 += x * b0, c01 += x * b1;
                x = splat8(a1[o]);
                c10 += x * b0, c11 += x * b1;
                x = splat8(a2[o]);
                c20 += x * b0, c21 += x * b1;
                x = splat8(a3[o]);
                c30 += x * b0, c31 += x * b1;
                x = splat8(a4[o]);
                c40 += x * b0, c41 += x * b1;
                x = splat8(a5[o]);
                c50 += x * b0, c51 += x * b1;
            }
            const v8 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
            for (int r = 0; r < mr; r++) {
                float *c = C + (size_t)(i0 + r) * ldc + j0;
                if (acc) {
                    store8(c, load8(c) + rows[r][0]);
                    store8(c + 8, load8(c + 8) + rows[r][1]);
                } else {
                    store8(c, rows[r][0]);
                    store8(c + 8, rows[r][1]);
                }
            }
        }
        for (int r = 0; r < mr; r++)
            for (int j = N16; j < N; j++) {
                float s = 0.0f;
                for (int k = 0; k < K; k++) s += A[(size_t)(i0 + r) * rsa + (size_t)k * csa] * B[(size_t)k * ldb + j];
                float *c = C + (size_t)(i0 + r) * ldc + j;
                *c = acc ? *c + s : s;
            }
    }
}

static inline int round16(int n) { return (n + 15) & ~15; }

/* Rows of keys (off = k_off) or values (v_off) of sequence b, head g: j < P from the prefix. */
static inline const float *kv_row(const float *qkv, const float *pre, const attn_shape *s, int off, int b, int j,
                                  int g) {
    if (j < s->P) return pre + (size_t)j * s->p_ld + (size_t)g * s->hd;
    return qkv + ((size_t)b * s->T + (j - s->P)) * s->ld + off + (size_t)g * s->hd;
}

/* dst[hd, S16] = the keys (or values) of (b, g) transposed, zero past S. */
static void transpose_kv(float *dst, const float *qkv, const float *pre, const attn_shape *s, int off, int b, int g) {
    const int S = s->P + s->T, S16 = round16(S), hd = s->hd;
    for (int j = 0; j < S; j++) {
        const float *r = kv_row(qkv, pre, s, off, b, j, g);
        for (int d = 0; d < hd; d++) dst[(size_t)d * S16 + j] = r[d];
    }
    for (int d = 0; d < hd; d++)
        for (int j = S; j < S16; j++) dst[(size_t)d * S16 + j] = 0.0f;
}

/* dst[S, hd] = the keys (or values) of (b, g), rows contiguous (prefix rows first). */
static void pack_kv(float *dst, const float *qkv, const float *pre, const attn_shape *s, int off, int b, int g) {
    const int S = s->P + s->T, hd = s->hd;
    for (int j = 0; j < S; j++) memcpy(dst + (size_t)j * hd, kv_row(qkv, pre, s, off, b, j, g), (size_t)hd * sizeof(float));
}

/* dst[rows, hd] = rows of src (row stride ld), contiguous. */
static void pack_rows(float *dst, const float *src, size_t ld, int rows, int hd) {
    for (int t = 0; t < rows; t++) memcpy(dst + (size_t)t * hd, src + (size_t)t * ld, (size_t)hd * sizeof(float));
}

static int team_size(const attn_shape *s, size_t work) {
    const int cap = s->threads > 0 ? s->threads : 1;
    int nt = omp_get_max_threads();
    if (nt > cap) nt = cap;
    return PEFT_PAR(work) ? nt : 1;
}

/* Per thread: a transposed key/value block [hd, S16], a packed one [S16, hd], packed queries and
 * output gradients [T, hd] each, and the scores [max(T, TB), S16]. */
size_t attention_work_floats(const attn_shape *s) {
    const size_t S16 = (size_t)round16(s->P + s->T), hd = (size_t)s->hd;
    const size_t rows = s->T > TB ? (size_t)s->T : (size_t)TB;
    const size_t per_thread = 2 * hd * S16 + 2 * (size_t)s->T * hd + rows * S16 + 16;
    return per_thread * (size_t)(s->threads > 0 ? s->threads : 1);
}

static size_t per_thread_floats(const attn_shape *s) {
    return attention_work_floats(s) / (size_t)(s->threads > 0 ? s->threads : 1);
}

void attention_forward(float *out, float *probs, float *work, const float *qkv, const float *pk, const float *pv,
                       const attn_shape *s) {
    const int B = s->B, T = s->T, H = s->H, hd = s->hd, P = s->P, S = P + T, S16 = round16(S);
    const int group = H / s->KV, A = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t pt = per_thread_floats(s);
    const int nt = team_size(s, (size_t)B * H * T * S * hd);
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (int bh = 0; bh < B * H; bh++) {
        const int b = bh / H, h = bh % H, g = h / group;
        PEFT_ASSERT(omp_get_thread_num() < (s->threads > 0 ? s->threads : 1));
        float *kt = work + (size_t)omp_get_thread_num() * pt, *vp = kt + (size_t)hd * S16;
        float *q = vp + (size_t)S16 * hd, *sc = q + (size_t)2 * T * hd;
        transpose_kv(kt, qkv, pk, s, s->k_off, b, g);
        pack_kv(vp, qkv, pv, s, s->v_off, b, g);
        pack_rows(q, qkv + (size_t)b * T * s->ld + s->q_off + (size_t)h * hd, s->ld, T, hd);
        float *p = probs + ((size_t)b * H + h) * T * S;
        float *o = out + (size_t)b * T * A + (size_t)h * hd;
        for (int t0 = 0; t0 < T; t0 += TB) {
            const int rows = T - t0 < TB ? T - t0 : TB, n = P + t0 + rows;
            /* scores of rows t0.. against keys 0..n (rounded up to 16: the padding is masked) */
            mm(rows, round16(n) < S16 ? round16(n) : S16, hd, q + (size_t)t0 * hd, hd, 1, kt, S16, sc, S16, 0);
            for (int r = 0; r < rows; r++) {
                const int len = P + t0 + r + 1;
                const float *z = sc + (size_t)r * S16;
                float *pr = p + (size_t)(t0 + r) * S;
                float mx = z[0];
                for (int j = 1; j < len; j++) mx = z[j] > mx ? z[j] : mx;
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int j = 0; j < len; j++) {
                    const float e = fast_expf((z[j] - mx) * scale);
                    pr[j] = e;
                    sum += e;
                }
                const float inv = 1.0f / sum;
#pragma omp simd
                for (int j = 0; j < len; j++) pr[j] *= inv;
                for (int j = len; j < S; j++) pr[j] = 0.0f;
            }
            /* out rows t0.. = probs[rows, 0..n) x values[0..n) (entries past each row's window are 0) */
            mm(rows, hd, n, p + (size_t)t0 * S, S, 1, vp, hd, o + (size_t)t0 * A, A, 0);
        }
    }
}

/* One sequence b and key/value head g: every query head of the group. */
static void backward_bg(float *dqkv, float *dpk, float *dpv, float *work, const float *probs, const float *dout,
                        const float *qkv, const float *pk, const float *pv, const attn_shape *s, int b, int g) {
    const int T = s->T, H = s->H, hd = s->hd, P = s->P, S = P + T, S16 = round16(S), group = H / s->KV, A = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *vt = work, *kp = vt + (size_t)hd * S16, *q = kp + (size_t)S16 * hd, *dy = q + (size_t)T * hd;
    float *ds = dy + (size_t)T * hd;
    transpose_kv(vt, qkv, pv, s, s->v_off, b, g);
    pack_kv(kp, qkv, pk, s, s->k_off, b, g);
    const size_t row0 = (size_t)b * T;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *p = probs + ((size_t)b * H + h) * T * S;
        pack_rows(dy, dout + row0 * A + (size_t)h * hd, A, T, hd);
        pack_rows(q, qkv + row0 * s->ld + s->q_off + (size_t)h * hd, s->ld, T, hd);
        float *dq = dqkv + row0 * s->ld + s->q_off + (size_t)h * hd;
        /* ds = p * (dp - sum_j p dp) * scale with dp = dy V^T, zero past each row's window */
        for (int t0 = 0; t0 < T; t0 += TB) {
            const int rows = T - t0 < TB ? T - t0 : TB, n = P + t0 + rows;
            mm(rows, round16(n) < S16 ? round16(n) : S16, hd, dy + (size_t)t0 * hd, hd, 1, vt, S16,
               ds + (size_t)t0 * S16, S16, 0);
            for (int r = 0; r < rows; r++) {
                const int len = P + t0 + r + 1;
                const float *pr = p + (size_t)(t0 + r) * S;
                float *d = ds + (size_t)(t0 + r) * S16;
                float pdp = 0.0f;
#pragma omp simd reduction(+ : pdp)
                for (int j = 0; j < len; j++) pdp += pr[j] * d[j];
#pragma omp simd
                for (int j = 0; j < len; j++) d[j] = pr[j] * (d[j] - pdp) * scale;
                for (int j = len; j < S16; j++) d[j] = 0.0f;
            }
            /* dq rows t0.. += ds[rows, 0..n) x keys[0..n) */
            mm(rows, hd, n, ds + (size_t)t0 * S16, S16, 1, kp, hd, dq + (size_t)t0 * s->ld, s->ld, 1);
        }
        /* dk_j += sum_t ds[t, j] q_t and dv_j += sum_t p[t, j] dy_t over t >= j - P, in blocks of keys */
        for (int j0 = 0, m; j0 < S; j0 += m) {
            m = S - j0 < TB ? S - j0 : TB;
            const int t0 = j0 > P ? j0 - P : 0;
            float *dk, *dv;
            size_t ld;
            if (j0 < P) { /* a prefix block stops at P, so a block never straddles the two parts */
                m = P - j0 < m ? P - j0 : m;
                dk = dpk ? dpk + (size_t)j0 * s->p_ld + (size_t)g * hd : NULL;
                dv = dpv ? dpv + (size_t)j0 * s->p_ld + (size_t)g * hd : NULL;
                ld = s->p_ld;
            } else {
                float *base = dqkv + (row0 + (size_t)(j0 - P)) * s->ld + (size_t)g * hd;
                dk = base + s->k_off;
                dv = base + s->v_off;
                ld = s->ld;
            }
            if (dk) mm(m, hd, T - t0, ds + (size_t)t0 * S16 + j0, 1, S16, q + (size_t)t0 * hd, hd, dk, ld, 1);
            if (dv) mm(m, hd, T - t0, p + (size_t)t0 * S + j0, 1, S, dy + (size_t)t0 * hd, hd, dv, ld, 1);
        }
    }
}

void attention_backward(float *dqkv, float *dpk, float *dpv, float *work, const float *probs, const float *dout,
                        const float *qkv, const float *pk, const float *pv, const attn_shape *s) {
    const int B = s->B, KV = s->KV;
    const size_t pt = per_thread_floats(s);
    const int nt = team_size(s, (size_t)B * s->H * s->T * (s->P + s->T) * s->hd);
    if (s->P > 0 && (dpk || dpv)) {
        /* every sequence accumulates into the same prefix rows: one thread per key/value head */
#pragma omp parallel for schedule(dynamic) num_threads(nt)
        for (int g = 0; g < KV; g++) {
            float *w = work + (size_t)omp_get_thread_num() * pt;
            for (int b = 0; b < B; b++) backward_bg(dqkv, dpk, dpv, w, probs, dout, qkv, pk, pv, s, b, g);
        }
        return;
    }
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (int bg = 0; bg < B * KV; bg++) {
        float *w = work + (size_t)omp_get_thread_num() * pt;
        backward_bg(dqkv, NULL, NULL, w, probs, dout, qkv, pk, pv, s, bg / KV, bg % KV);
    }
}
