/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader (common/io/safetensors.c).
 *
 * Input: the bytes of a .safetensors file. st_open_memory() runs every check st_open() runs; on
 * success the target asserts what every loader relies on (each tensor's data lies inside the
 * input, names resolve to their own entry, the tensors tile the data without overlap) and converts
 * every F32/F16/BF16/F64 tensor to fp32 as the model loader does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

#define FUZZ_MAX_CONVERT (1 << 16) /* floats converted per tensor: enough to touch every byte path */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f;
    if (st_open_memory("fuzz.safetensors", data, size, &f)) return 0;
    const uint8_t *end = data + size, *prev_end = NULL;
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        const uint8_t *p = t->data;
        if (p < data || t->nbytes > (size_t)(end - p)) abort();      /* data outside the file */
        if (prev_end && p != prev_end) abort();                       /* gap or overlap accepted */
        prev_end = p + t->nbytes;
        if (st_find(f, t->name) != t) abort();
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) abort();
        int64_t n = st_numel(t);
        if (n < 0 || (uint64_t)n * (uint64_t)st_dtype_bits(t->dtype) / 8 != t->nbytes) abort();
        if (n > FUZZ_MAX_CONVERT) continue;
        float *dst = malloc(((size_t)n ? (size_t)n : 1) * sizeof *dst);
        if (!dst) abort();
        int rc = st_read_f32(t, dst, (size_t)n);
        int convertible = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64;
        if ((rc == 0) != convertible) abort();
        free(dst);
    }
    (void)st_metadata(f, "format");
    st_close(f);
    return 0;
}
