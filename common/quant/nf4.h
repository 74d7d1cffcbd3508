/*
 * nf4.h - bitsandbytes' 4-bit NormalFloat codec with double quantisation (FORMATS.md section 4).
 *
 * A tensor of n floats is read as its flattened row-major sequence and cut into blocks of
 * `blocksize` (64) consecutive values, which may cross row boundaries. Each block keeps its absmax;
 * each value becomes the index of the NF4 code nearest to value/absmax (midpoint rule: a value on
 * a midpoint takes the lower code), two indices per byte, element 2i in the HIGH nibble, an odd
 * count padded with the code of 0.0. With double quantisation the absmax values are stored as
 * 8-bit codes of the dynamic map: offset = mean(absmax) (float32, summed as torch sums), then
 * blocks of 256 of (absmax - offset), each with its own fp32 absmax ("nested absmax").
 *
 *     nf4_tensor t;
 *     if (nf4_quantize(w, n, 64, true, &t)) { ... err_msg() ... }
 *     nf4_dequantize(&t, 0, n, out);         // out[i] = code[q_i] * absmax[block(i)], float32
 *     nf4_free(&t);
 *
 * Dequantisation reproduces bitsandbytes' float32 arithmetic exactly: absmax = dyn[q2] * absmax2
 * + offset (two roundings), value = code[q] * absmax. The rounding rules are those of its
 * pure-PyTorch reference kernels (FORMATS.md 4.3a); tests/unit/test_nf4.c checks every byte, code,
 * nested absmax, offset and dequantised value against scripts/make_quant_fixtures.py.
 *
 * Ownership: nf4_quantize and nf4_alloc allocate the arrays of *t in one block; nf4_free releases
 * them (and is a no-op on a zeroed or already freed tensor). Errors: PEFT_EUSAGE for a bad block
 * size, PEFT_ENOMEM.
 */
#ifndef PEFT_NF4_H
#define PEFT_NF4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The 16 NF4 code values (FORMATS.md 4.1), ascending. */
extern const float nf4_code[16];

typedef struct nf4_tensor {
    size_t n;              /* values */
    int blocksize;         /* 64 unless a loaded file says otherwise */
    size_t nblocks;        /* ceil(n / blocksize) */
    uint8_t *packed;       /* [(n + 1) / 2] two codes per byte, element 2i high */
    bool nested;           /* double quantisation: qabsmax/nested_absmax/offset instead of absmax */
    float *absmax;         /* [nblocks] when !nested, else NULL */
    uint8_t *qabsmax;      /* [nblocks] 8-bit codes of absmax - offset, when nested */
    int nested_blocksize;  /* 256 */
    size_t nnested;        /* ceil(nblocks / nested_blocksize) */
    float *nested_absmax;  /* [nnested] */
    float offset;          /* mean of the absmax values */
    const float *nested_code; /* [256] the 8-bit map: quant_dynamic_map or the loaded copy below */
    float *nested_code_own;   /* [256] a loaded file's nested_quant_map, NULL when built in */
    void *block_;          /* the one allocation behind the arrays */
} nf4_tensor;

/* Allocates the arrays of *t for n values (contents uninitialised; nested_code = the dynamic map;
 * own_nested_code: also room for a loaded 256-entry map in nested_code_own). */
int nf4_alloc(nf4_tensor *t, size_t n, int blocksize, bool nested, int nested_blocksize, bool own_nested_code);
void nf4_free(nf4_tensor *t);

/* Quantises x[n] (blocksize one of 32..4096, a power of two, as bitsandbytes allows). */
int nf4_quantize(const float *x, size_t n, int blocksize, bool double_quant, nf4_tensor *out);

/* First-level absmax of blocks [b0, b1) into dst (dequantising the nested codes if needed). */
void nf4_absmax(const nf4_tensor *t, size_t b0, size_t b1, float *dst);

/* Values [e0, e1) into dst[0 .. e1 - e0). */
void nf4_dequantize(const nf4_tensor *t, size_t e0, size_t e1, float *dst);

/* Bytes held by the tensor's arrays (what it costs resident). */
size_t nf4_bytes(const nf4_tensor *t);

/* The 8-bit blockwise quantiser (bitsandbytes' quantize_blockwise with a 256-entry sorted code):
 * q[n] codes and absmax[ceil(n / blocksize)]. */
void quant_blockwise8(const float *x, size_t n, int blocksize, const float code[256], uint8_t *q, float *absmax);

/* torch's float32 mean of x[n] on one thread (its vectorised cascade sum, then / n). */
float quant_mean_f32(const float *x, size_t n);

#endif
