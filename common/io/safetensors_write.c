/*
 * safetensors_write.c - st_writer: collects tensors and writes them as FORMATS.md §1.3 prescribes,
 * byte for byte what the reference serializer (safetensors' prepare()/serialize_to_file) produces:
 * tensors sorted by descending dtype (the enum is in alignment order) then by name, offsets
 * assigned contiguously from 0, a compact header with "__metadata__" first and fields in the order
 * dtype, shape, data_offsets, padded with spaces to a multiple of 8.
 */
#include "io/safetensors.h"

#include "error.h"
#include "io/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* borrowed until st_writer_save() returns */
    size_t nbytes;
} st_wentry;

typedef struct {
    char *key, *value;
} st_wmeta;

struct st_writer {
    st_wentry *e;
    size_t n, cap;
    st_wmeta *meta;
    size_t nmeta, meta_cap;
};

/* A growable byte string for the header. On allocation failure `failed` is set and later appends
 * are ignored, so the builder is checked once at the end. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} st_sbuf;

static void sb_add(st_sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static void sb_str(st_sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_u64(st_sbuf *b, uint64_t v) {
    char tmp[24];
    sb_add(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

/* A JSON string the way serde_json writes it: '"' and '\\' escaped, \b \f \n \r \t short, other
 * control characters as \u00xx (lowercase hex), everything else (UTF-8 included) verbatim. */
static void sb_json_string(st_sbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc) sb_str(b, esc);
        else if (*p < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            sb_add(b, u, sizeof u);
        } else sb_add(b, (const char *)p, 1);
    }
    sb_add(b, "\"", 1);
}

int st_writer_init(st_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? PEFT_OK : err_set(PEFT_ENOMEM, "st_writer_init: out of memory");
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    for (size_t i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->e);
    free(w->meta);
    free(w);
}

static int valid_text(const char *s) { return st_utf8_valid_len(s, strlen(s)) == strlen(s); }

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data) {
    if (!name || !valid_text(name))
        return err_set(PEFT_EUSAGE, "st_writer_add: tensor name '%s' is not valid UTF-8", name ? name : "(null)");
    if (strcmp(name, "__metadata__") == 0)
        return err_set(PEFT_EUSAGE, "st_writer_add: '__metadata__' is reserved, not a tensor name");
    if ((unsigned)dtype >= ST_DTYPE_COUNT)
        return err_set(PEFT_EUSAGE, "st_writer_add: tensor '%s': invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
        return err_set(PEFT_EUSAGE, "st_writer_add: tensor '%s': %d dimensions, expected 0 to %d", name, ndim,
                       ST_MAX_DIMS);
    uint64_t numel = 1, bits;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || shape[i] > (int64_t)1 << 53 ||
            __builtin_mul_overflow(numel, (uint64_t)shape[i], &numel))
            return err_set(PEFT_EUSAGE, "st_writer_add: tensor '%s': shape[%d] = %lld is out of range", name, i,
                           (long long)shape[i]);
    if (__builtin_mul_overflow(numel, (uint64_t)st_dtype_bits(dtype), &bits) || bits % 8)
        return err_set(PEFT_EUSAGE, "st_writer_add: tensor '%s': %llu %s elements are not a whole number of "
                       "bytes", name, (unsigned long long)numel, st_dtype_name(dtype));
    if (bits && !data) return err_set(PEFT_EUSAGE, "st_writer_add: tensor '%s': data is NULL", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return err_set(PEFT_EUSAGE, "st_writer_add: duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        st_wentry *p = realloc(w->e, cap * sizeof *p);
        if (!p) return err_set(PEFT_ENOMEM, "st_writer_add: out of memory");
        w->e = p;
        w->cap = cap;
    }
    st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return err_set(PEFT_ENOMEM, "st_writer_add: out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    if (ndim) memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->data = data;
    e->nbytes = (size_t)(bits / 8);
    w->n++;
    return PEFT_OK;
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value) {
    if (!key || !value || !valid_text(key) || !valid_text(value))
        return err_set(PEFT_EUSAGE, "st_writer_set_metadata: key '%s' and its value must be UTF-8 strings",
                       key ? key : "(null)");
    char *v = strdup(value);
    if (!v) return err_set(PEFT_ENOMEM, "st_writer_set_metadata: out of memory");
    for (size_t i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return PEFT_OK;
        }
    if (w->nmeta == w->meta_cap) {
        size_t cap = w->meta_cap ? 2 * w->meta_cap : 4;
        st_wmeta *p = realloc(w->meta, cap * sizeof *p);
        if (!p) {
            free(v);
            return err_set(PEFT_ENOMEM, "st_writer_set_metadata: out of memory");
        }
        w->meta = p;
        w->meta_cap = cap;
    }
    if (!(w->meta[w->nmeta].key = strdup(key))) {
        free(v);
        return err_set(PEFT_ENOMEM, "st_writer_set_metadata: out of memory");
    }
    w->meta[w->nmeta++].value = v;
    return PEFT_OK;
}

/* Reference order: right.dtype().cmp(&left.dtype()).then(lname.cmp(rname)). */
static int cmp_wentry_ptr(const void *a, const void *b) {
    const st_wentry *x = *(const st_wentry *const *)a, *y = *(const st_wentry *const *)b;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_wmeta(const void *a, const void *b) {
    return strcmp(((const st_wmeta *)a)->key, ((const st_wmeta *)b)->key);
}

/* The header JSON for tensors in `order`, padded with spaces to a multiple of 8. */
static void build_header(st_sbuf *b, st_writer *w, st_wentry *const *order) {
    sb_add(b, "{", 1);
    if (w->nmeta) {
        qsort(w->meta, w->nmeta, sizeof *w->meta, cmp_wmeta); /* deterministic, unlike a HashMap */
        sb_str(b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) sb_add(b, ",", 1);
            sb_json_string(b, w->meta[i].key);
            sb_add(b, ":", 1);
            sb_json_string(b, w->meta[i].value);
        }
        sb_add(b, "}", 1);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_wentry *e = order[i];
        if (i || w->nmeta) sb_add(b, ",", 1);
        sb_json_string(b, e->name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, st_dtype_name(e->dtype));
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d) sb_add(b, ",", 1);
            sb_u64(b, (uint64_t)e->shape[d]);
        }
        sb_str(b, "],\"data_offsets\":[");
        sb_u64(b, offset);
        sb_add(b, ",", 1);
        offset += e->nbytes;
        sb_u64(b, offset);
        sb_str(b, "]}");
    }
    sb_add(b, "}", 1);
    while (!b->failed && b->len % 8) sb_add(b, " ", 1);
}

int st_writer_save(st_writer *w, const char *path) {
    st_wentry **order = malloc((w->n ? w->n : 1) * sizeof *order);
    st_sbuf hdr = {0};
    int rc = PEFT_OK;
    if (!order) {
        rc = err_set(PEFT_ENOMEM, "%s: out of memory", path);
        goto out_free;
    }
    for (size_t i = 0; i < w->n; i++) order[i] = &w->e[i];
    qsort(order, w->n, sizeof *order, cmp_wentry_ptr);
    build_header(&hdr, w, order);
    if (hdr.failed) {
        rc = err_set(PEFT_ENOMEM, "%s: out of memory for the header", path);
        goto out_free;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.len >> (8 * i));
    file_atomic f;
    if ((rc = file_atomic_begin(&f, path))) goto out_free;
    file_atomic_write(&f, len8, 8);
    file_atomic_write(&f, hdr.buf, hdr.len);
    for (size_t i = 0; i < w->n; i++) file_atomic_write(&f, order[i]->data, order[i]->nbytes);
    rc = file_atomic_commit(&f);
out_free:
    free(hdr.buf);
    free(order);
    return rc;
}
