/* nf4.c - the NF4 codec and the 8-bit blockwise quantiser of its double quantisation. */
#include "quant/nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant/dynamic_map.h"

const float nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

static bool blocksize_ok(int bs) { return bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0; }

int nf4_alloc(nf4_tensor *t, size_t n, int blocksize, bool nested, int nested_blocksize, bool own_nested_code) {
    memset(t, 0, sizeof *t);
    if (!blocksize_ok(blocksize)) return err_set(PEFT_EUSAGE, "NF4 block size %d is not a power of two in [32, 4096]", blocksize);
    if (nested && !blocksize_ok(nested_blocksize) && nested_blocksize != 16)
        return err_set(PEFT_EUSAGE, "NF4 nested block size %d is not supported", nested_blocksize);
    t->n = n;
    t->blocksize = blocksize;
    t->nblocks = ceil_div(n, (size_t)blocksize);
    t->nested = nested;
    t->nested_blocksize = nested ? nested_blocksize : 0;
    t->nnested = nested ? ceil_div(t->nblocks, (size_t)nested_blocksize) : 0;
    /* floats first (alignment), then bytes */
    size_t nf = nested ? t->nnested + (own_nested_code ? 256 : 0) : t->nblocks;
    size_t nb = (n + 1) / 2 + (nested ? t->nblocks : 0);
    char *p = malloc(nf * sizeof(float) + nb + 1);
    if (!p) return err_set(PEFT_ENOMEM, "out of memory for an NF4 tensor of %zu values", n);
    t->block_ = p;
    float *f = (float *)p;
    uint8_t *b = (uint8_t *)(f + nf);
    t->nested_code = quant_dynamic_map;
    if (nested) {
        t->nested_absmax = f;
        if (own_nested_code) t->nested_code = t->nested_code_own = f + t->nnested;
        t->qabsmax = b;
        b += t->nblocks;
    } else {
        t->absmax = f;
    }
    t->packed = b;
    return PEFT_OK;
}

void nf4_free(nf4_tensor *t) {
    free(t->block_);
    memset(t, 0, sizeof *t);
}

size_t nf4_bytes(const nf4_tensor *t) {
    size_t b = (t->n + 1) / 2;
    if (t->nested) b += t->nblocks + t->nnested * sizeof(float) + (t->nested_code_own ? 256 * sizeof(float) : 0);
    else b += t->nblocks * sizeof(float);
    return b + sizeof *t;
}

/* The number of bounds strictly below v: torch.bucketize(v, bounds, right=False). bounds ascend. */
static int bucketize(float v, const float *bounds, int nb) {
    int lo = 0, hi = nb; /* answer in [lo, hi] */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (bounds[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* absmax of x[0..n) and its clamped reciprocal scale, as the reference kernel computes them. */
static float block_absmax(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > m) m = a;
    }
    return m;
}

static float scale_clamped(float x, float inv) {
    float s = x * inv;
    return s < -1.0f ? -1.0f : s > 1.0f ? 1.0f : s;
}

static float block_inv(float absmax) { return 1.0f / (absmax > 1e-38f ? absmax : 1e-38f); }

void quant_blockwise8(const float *x, size_t n, int blocksize, const float code[256], uint8_t *q, float *absmax) {
    float bounds[255];
    for (int i = 0; i < 255; i++) bounds[i] = (code[i] + code[i + 1]) / 2.0f;
    for (size_t b = 0, e0 = 0; e0 < n; b++, e0 += (size_t)blocksize) {
        size_t len = n - e0 < (size_t)blocksize ? n - e0 : (size_t)blocksize;
        absmax[b] = block_absmax(x + e0, len);
        float inv = block_inv(absmax[b]);
        for (size_t i = 0; i < len; i++) q[e0 + i] = (uint8_t)bucketize(scale_clamped(x[e0 + i], inv), bounds, 255);
    }
}

/* torch 1.13's CPU sum of a contiguous float32 vector on one thread (SumKernel.cpp,
 * vectorized_inner_sum with AVX2's 8-lane vectors): row_sum over the vectors with ilp_factor 4
 * (multi_row_sum's 4-level cascade), the scalar tail, then the lanes in order. */
#define SUM_LANES 8
typedef struct {
    float v[SUM_LANES];
} lanes;

static void lanes_add(lanes *a, const lanes *b) {
    for (int i = 0; i < SUM_LANES; i++) a->v[i] += b->v[i];
}

static void lanes_load(lanes *a, const float *x) { memcpy(a->v, x, sizeof a->v); }

static int ceil_log2(uint64_t x) {
    if (x <= 1) return 0;
    int r = 0;
    x -= 1;
    while (x) {
        r++;
        x >>= 1;
    }
    return r;
}

float quant_mean_f32(const float *x, size_t n) {
    if (n == 0) return NAN;
    float total;
    if (n < SUM_LANES) { /* scalar_inner_sum: row_sum with ilp_factor 4 over single floats */
        float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        size_t i = 0;
        if (n >= 4)
            for (; i < 4; i++) part[i] += x[i];
        for (; i < n; i++) part[0] += x[i];
        total = part[0];
        for (int k = 1; k < 4; k++) total += part[k];
    } else {
        const int64_t vec_size = (int64_t)(n / SUM_LANES);
        enum { ILP = 4, LEVELS = 4 };
        const int64_t size_ilp = vec_size / ILP;
        int level_power = ceil_log2((uint64_t)size_ilp) / LEVELS;
        if (level_power < 4) level_power = 4;
        const int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
        lanes acc[LEVELS][ILP];
        memset(acc, 0, sizeof acc);
        int64_t i = 0;
        lanes t;
        while (i + level_step <= size_ilp) {
            for (int64_t j = 0; j < level_step; j++, i++)
                for (int k = 0; k < ILP; k++) {
                    lanes_load(&t, x + (size_t)(i * ILP + k) * SUM_LANES);
                    lanes_add(&acc[0][k], &t);
                }
            for (int j = 1; j < LEVELS; j++) {
                for (int k = 0; k < ILP; k++) {
                    lanes_add(&acc[j][k], &acc[j - 1][k]);
                    memset(&acc[j - 1][k], 0, sizeof(lanes));
                }
                if ((i & (level_mask << (j * level_power))) != 0) break;
            }
        }
        for (; i < size_ilp; i++)
            for (int k = 0; k < ILP; k++) {
                lanes_load(&t, x + (size_t)(i * ILP + k) * SUM_LANES);
                lanes_add(&acc[0][k], &t);
            }
        for (int j = 1; j < LEVELS; j++)
            for (int k = 0; k < ILP; k++) lanes_add(&acc[0][k], &acc[j][k]);
        lanes part = acc[0][0];
        for (int64_t v = size_ilp * ILP; v < vec_size; v++) {
            lanes_load(&t, x + (size_t)v * SUM_LANES);
            lanes_add(&part, &t);
        }
        for (int k = 1; k < ILP; k++) lanes_add(&part, &acc[0][k]);
        total = 0.0f;
        for (size_t e = (size_t)vec_size * SUM_LANES; e < n; e++) total += x[e];
        for (int k = 0; k < SUM_LANES; k++) total += part.v[k];
    }
    return total / (float)n;
}

int nf4_quantize(const float *x, size_t n, int blocksize, bool double_quant, nf4_tensor *out) {
    PEFT_TRY(nf4_alloc(out, n, blocksize, double_quant, 256, false));
    float bounds[15];
    for (int i = 0; i < 15; i++) bounds[i] = (nf4_code[i] + nf4_code[i + 1]) / 2.0f;
    float *absmax = double_quant ? malloc(out->nblocks * sizeof(float)) : out->absmax;
    if (!absmax) {
        nf4_free(out);
        return err_set(PEFT_ENOMEM, "out of memory quantising %zu values", n);
    }
    const size_t bs = (size_t)blocksize;
    memset(out->packed, 0, (n + 1) / 2);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < out->nblocks; b++) {
        size_t e0 = b * bs, len = n - e0 < bs ? n - e0 : bs;
        absmax[b] = block_absmax(x + e0, len);
        float inv = block_inv(absmax[b]);
        /* blocksize is even, so a block owns whole bytes */
        for (size_t i = 0; i < len; i++) {
            int q = bucketize(scale_clamped(x[e0 + i], inv), bounds, 15);
            size_t e = e0 + i;
            out->packed[e >> 1] |= (uint8_t)((e & 1) ? q : q << 4);
        }
    }
    if (n & 1) out->packed[n >> 1] |= (uint8_t)bucketize(0.0f, bounds, 15); /* the padding value 0.0 */
    if (!double_quant) return PEFT_OK;
    out->offset = quant_mean_f32(absmax, out->nblocks);
    for (size_t b = 0; b < out->nblocks; b++) absmax[b] -= out->offset;
    quant_blockwise8(absmax, out->nblocks, out->nested_blocksize, out->nested_code, out->qabsmax, out->nested_absmax);
    free(absmax);
    return PEFT_OK;
}

void nf4_absmax(const nf4_tensor *t, size_t b0, size_t b1, float *dst) {
    if (!t->nested) {
        memcpy(dst, t->absmax + b0, (b1 - b0) * sizeof(float));
        return;
    }
    for (size_t b = b0; b < b1; b++) {
        float v = t->nested_code[t->qabsmax[b]] * t->nested_absmax[b / (size_t)t->nested_blocksize];
        dst[b - b0] = v + t->offset;
    }
}

void nf4_dequantize(const nf4_tensor *t, size_t e0, size_t e1, float *dst) {
    const size_t bs = (size_t)t->blocksize;
    size_t e = e0;
    while (e < e1) {
        size_t b = e / bs, end = (b + 1) * bs < e1 ? (b + 1) * bs : e1;
        float a;
        nf4_absmax(t, b, b + 1, &a);
        float lut[16];
        for (int i = 0; i < 16; i++) lut[i] = nf4_code[i] * a;
        if (e & 1) {
            *dst++ = lut[t->packed[e >> 1] & 0xF];
            e++;
        }
        for (; e + 1 < end; e += 2) {
            uint8_t byte = t->packed[e >> 1];
            dst[0] = lut[byte >> 4];
            dst[1] = lut[byte & 0xF];
            dst += 2;
        }
        if (e < end) {
            *dst++ = lut[t->packed[e >> 1] >> 4];
            e++;
        }
    }
}
