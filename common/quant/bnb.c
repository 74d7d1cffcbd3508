/* bnb.c - bnb-4bit checkpoints: find a quantised weight's tensors, check them, copy them. */
#include "quant/bnb.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"

static const st_tensor *find_suffix(const st_model *st, const char *name, const char *suffix) {
    char key[320];
    snprintf(key, sizeof key, "%s%s", name, suffix);
    return st_model_find(st, key);
}

/* The quant-state tensor of NAME and its type ("nf4", "fp4", ...) from the key's suffix. */
static const st_tensor *find_state(const st_model *st, const char *name, const char **qtype) {
    static const char *types[] = {"nf4", "fp4"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char suffix[64];
        snprintf(suffix, sizeof suffix, ".quant_state.bitsandbytes__%s", types[i]);
        const st_tensor *t = find_suffix(st, name, suffix);
        if (t) {
            *qtype = types[i];
            return t;
        }
    }
    return NULL;
}

bool bnb_has_state(const st_model *st, const char *name) {
    const char *qt;
    return find_state(st, name, &qt) != NULL;
}

/* A required companion tensor NAME+suffix of dtype dt and n elements. */
static int need(const st_model *st, const char *file, const char *name, const char *suffix, st_dtype dt, size_t n,
                const st_tensor **out) {
    const st_tensor *t = find_suffix(st, name, suffix);
    if (!t) return err_set(PEFT_EFORMAT, "%s: '%s' is bnb-4bit quantised but '%s%s' is missing", file, name, name, suffix);
    if (t->dtype != dt)
        return err_set(PEFT_EFORMAT, "%s: '%s%s' has dtype %s, expected %s", file, name, suffix, st_dtype_name(t->dtype),
                       st_dtype_name(dt));
    if ((size_t)st_numel(t) != n)
        return err_set(PEFT_EFORMAT, "%s: '%s%s' has %lld elements, expected %zu", file, name, suffix,
                       (long long)st_numel(t), n);
    *out = t;
    return PEFT_OK;
}

/* An integer member of the quant state, or -1 if absent / not an integer. */
static long json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > 1e15)
        return -1;
    return (long)v->valuedouble;
}

static int load_parsed(const st_model *st, const char *file, const char *name, const cJSON *js, int rows, int cols,
                       bool bf16_compute, qweight *q) {
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(js, "quant_type");
    if (!cJSON_IsString(qt)) return err_set(PEFT_EFORMAT, "%s: quant state of '%s' has no \"quant_type\"", file, name);
    if (strcmp(qt->valuestring, "nf4"))
        return err_set(PEFT_EUNSUPPORTED, "%s: '%s' is quantised as %s; only nf4 is supported", file, name,
                       qt->valuestring);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(js, "shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
        cJSON_GetArrayItem(shape, 0)->valuedouble != rows || cJSON_GetArrayItem(shape, 1)->valuedouble != cols)
        return err_set(PEFT_EFORMAT, "%s: quant state of '%s' has a \"shape\" other than [%d, %d] (the layer's [out, in])",
                       file, name, rows, cols);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(js, "dtype");
    if (!cJSON_IsString(dtype) || (strcmp(dtype->valuestring, "float32") && strcmp(dtype->valuestring, "bfloat16") &&
                                   strcmp(dtype->valuestring, "float16")))
        return err_set(PEFT_EUNSUPPORTED, "%s: quant state of '%s' has a \"dtype\" other than float32, bfloat16, float16",
                       file, name);
    long bs = json_int(js, "blocksize");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(js, "nested_offset");
    const bool nested = off != NULL;
    long nbs = nested ? json_int(js, "nested_blocksize") : 0;
    if (nested && (!cJSON_IsNumber(off) || !isfinite(off->valuedouble)))
        return err_set(PEFT_EFORMAT, "%s: quant state of '%s' has a non-numeric \"nested_offset\"", file, name);
    if (nested) {
        const cJSON *nd = cJSON_GetObjectItemCaseSensitive(js, "nested_dtype");
        if (nd && (!cJSON_IsString(nd) || strcmp(nd->valuestring, "float32")))
            return err_set(PEFT_EUNSUPPORTED, "%s: quant state of '%s' has a \"nested_dtype\" other than float32", file,
                           name);
    }
    if (bs <= 0 || bs > 4096 || (nested && (nbs <= 0 || nbs > 4096)))
        return err_set(PEFT_EFORMAT, "%s: quant state of '%s' has a bad \"blocksize\" or \"nested_blocksize\"", file, name);

    memset(q, 0, sizeof *q);
    q->fmt = QWEIGHT_NF4;
    q->rows = rows;
    q->cols = cols;
    q->bf16_compute = bf16_compute;
    const size_t n = (size_t)rows * (size_t)cols;
    nf4_tensor *t = &q->nf4;
    int rc = nf4_alloc(t, n, (int)bs, nested, (int)nbs, true);
    if (rc) return err_set(rc, "%s: '%s': %s", file, name, err_msg());

    const st_tensor *w, *absmax, *qmap, *nabs, *nmap;
    if ((rc = need(st, file, name, "", ST_U8, (n + 1) / 2, &w))) goto out_free;
    if ((rc = need(st, file, name, ".quant_map", ST_F32, 16, &qmap))) goto out_free;
    if (memcmp(qmap->data, nf4_code, sizeof nf4_code)) {
        rc = err_set(PEFT_EUNSUPPORTED, "%s: '%s.quant_map' is not bitsandbytes' NF4 table", file, name);
        goto out_free;
    }
    memcpy(t->packed, w->data, (n + 1) / 2);
    if (!nested) {
        if ((rc = need(st, file, name, ".absmax", ST_F32, t->nblocks, &absmax))) goto out_free;
        memcpy(t->absmax, absmax->data, t->nblocks * sizeof(float));
        return PEFT_OK;
    }
    if ((rc = need(st, file, name, ".absmax", ST_U8, t->nblocks, &absmax))) goto out_free;
    if ((rc = need(st, file, name, ".nested_absmax", ST_F32, t->nnested, &nabs))) goto out_free;
    if ((rc = need(st, file, name, ".nested_quant_map", ST_F32, 256, &nmap))) goto out_free;
    memcpy(t->qabsmax, absmax->data, t->nblocks);
    memcpy(t->nested_absmax, nabs->data, t->nnested * sizeof(float));
    memcpy(t->nested_code_own, nmap->data, 256 * sizeof(float));
    t->offset = (float)off->valuedouble;
    return PEFT_OK;
out_free:
    qweight_free(q);
    return rc;
}

int bnb_load_weight(const st_model *st, const char *name, int rows, int cols, bool bf16_compute, qweight *q) {
    const char *qtype;
    const st_tensor *state = find_state(st, name, &qtype);
    PEFT_ASSERT(state);
    const char *file = st_model_file_of(st, state);
    if (strcmp(qtype, "nf4"))
        return err_set(PEFT_EUNSUPPORTED, "%s: '%s' is quantised as %s; only nf4 is supported", file, name, qtype);
    if (state->dtype != ST_U8 || state->ndim != 1)
        return err_set(PEFT_EFORMAT, "%s: '%s.quant_state.bitsandbytes__nf4' is not a 1-D U8 tensor of JSON", file, name);
    cJSON *js = cJSON_ParseWithLength(state->data, state->nbytes);
    if (!cJSON_IsObject(js)) {
        cJSON_Delete(js);
        return err_set(PEFT_EFORMAT, "%s: '%s.quant_state.bitsandbytes__nf4' is not a JSON object", file, name);
    }
    int rc = load_parsed(st, file, name, js, rows, cols, bf16_compute, q);
    cJSON_Delete(js);
    return rc;
}
