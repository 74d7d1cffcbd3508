/*
 * safetensors.c - the reader: st_open and its validation, lookups, fp32 conversion. The
 * model-directory loader (st_model) is in safetensors_model.c, the writer in safetensors_write.c.
 *
 * st_open() trusts nothing in the file: every length is checked against the mapping before it is
 * used, the header text is checked byte by byte (UTF-8, no raw control characters) before cJSON
 * sees it, and everything cJSON is lenient about (duplicate keys, numbers as doubles) is checked
 * here.
 */
#include "io/safetensors.h"

#include "error.h"
#include "io/file.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53: larger doubles are not exact integers */

typedef struct {
    const char *key, *value;
} st_kv;

struct st_file {
    char *path;
    const unsigned char *map; /* the whole file, read-only */
    size_t map_size;
    int mapped;               /* map came from mmap (st_open), not from the caller (st_open_memory) */
    st_tensor *tensors;       /* [n], in data-offset order */
    const st_tensor **by_name; /* [n], sorted by strcmp of name */
    size_t n;
    st_kv *meta;              /* [nmeta], sorted by key */
    size_t nmeta;
    char *strings;            /* arena holding every name, key and value above */
};

/* ---- dtypes ------------------------------------------------------------------------------- */

/* In st_dtype (enum) order. */
static const char *const st_dtype_names[] = {
    "BOOL", "F4",  "F6_E2M3", "F6_E3M2", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
    "I16",  "U16", "F16",     "BF16",    "I32", "U32", "F32",     "C64",     "F64",     "I64",         "U64"};
static const unsigned char st_dtype_bitsizes[] = {8,  4,  6,  6,  8,  8,  8,  8,  8,  8,  8,
                                                  16, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64};
_Static_assert(sizeof st_dtype_names / sizeof *st_dtype_names == ST_DTYPE_COUNT, "one name per dtype");
_Static_assert(sizeof st_dtype_bitsizes == ST_DTYPE_COUNT, "one size per dtype");

const char *st_dtype_name(st_dtype dtype) {
    return (unsigned)dtype < ST_DTYPE_COUNT ? st_dtype_names[dtype] : "?";
}

int st_dtype_bits(st_dtype dtype) { return (unsigned)dtype < ST_DTYPE_COUNT ? st_dtype_bitsizes[dtype] : 0; }

int st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, st_dtype_names[i]) == 0) {
            *out = (st_dtype)i;
            return PEFT_OK;
        }
    return -1;
}

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- text checks -------------------------------------------------------------------------- */

size_t st_utf8_valid_len(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c < 0x80) len = 1;
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            else if (c == 0xED) hi = 0x9F; /* UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
        } else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            unsigned b = s[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
        }
        i += len;
    }
    return n;
}

/* UTF-8, and no raw control characters: JSON forbids them inside strings and allows only
 * space/tab/LF/CR between tokens, while cJSON skips any byte <= 0x20 and would stop at a NUL. */
static int header_check_text(const char *path, const char *h, size_t n) {
    size_t bad = st_utf8_valid_len(h, n);
    if (bad != n)
        return err_set(PEFT_EFORMAT, "%s: header is not valid UTF-8 (bad byte 0x%02x at header byte %zu)",
                       path, (unsigned char)h[bad], bad);
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') in_string = 1;
        if (c < 0x20 && (in_string || (c != ' ' && c != '\t' && c != '\n' && c != '\r')))
            return err_set(PEFT_EFORMAT, "%s: header has a raw control character 0x%02x at header byte %zu",
                           path, c, i);
    }
    return PEFT_OK;
}

/* A JSON number that is a non-negative integer exactly representable as a double. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_JSON_INT) || (double)(uint64_t)d != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* ---- st_open -------------------------------------------------------------------------------- */

typedef struct {
    st_tensor t;
    uint64_t begin, end;
} st_entry;

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->t.name, ((const st_entry *)b)->t.name);
}

static int cmp_entry_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

static int cmp_tensor_ptr_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_key_tensor_ptr(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const st_tensor *const *)elem)->name);
}

static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const st_kv *)a)->key, ((const st_kv *)b)->key);
}

static char *arena_put(char **cursor, const char *s) {
    size_t len = strlen(s) + 1;
    char *dst = memcpy(*cursor, s, len);
    *cursor += len;
    return dst;
}

/* One tensor entry: fields present and well-typed, known dtype, and a byte size (from shape and
 * dtype) that equals the span of data_offsets. */
static int parse_entry(const char *path, const cJSON *item, st_entry *e) {
    const char *name = e->t.name;
    if (!cJSON_IsObject(item))
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': expected an object with dtype, shape and data_offsets",
                       path, name);
    const cJSON *dt = NULL, *sh = NULL, *off = NULL, *field;
    cJSON_ArrayForEach(field, item) {
        const cJSON **slot = strcmp(field->string, "dtype") == 0          ? &dt
                             : strcmp(field->string, "shape") == 0        ? &sh
                             : strcmp(field->string, "data_offsets") == 0 ? &off
                                                                          : NULL;
        if (!slot) continue; /* unknown fields are ignored, as the reference parser does */
        if (*slot) return err_set(PEFT_EFORMAT, "%s: tensor '%s': duplicate field \"%s\"", path, name, field->string);
        *slot = field;
    }
    const char *missing = !dt ? "dtype" : !sh ? "shape" : !off ? "data_offsets" : NULL;
    if (missing) return err_set(PEFT_EFORMAT, "%s: tensor '%s': missing field \"%s\"", path, name, missing);

    if (!cJSON_IsString(dt))
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': dtype must be a string", path, name);
    if (st_dtype_parse(dt->valuestring, &e->t.dtype) != PEFT_OK)
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': unknown dtype \"%s\"", path, name, dt->valuestring);

    if (!cJSON_IsArray(sh))
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': shape must be an array of integers", path, name);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > ST_MAX_DIMS)
        return err_set(PEFT_EUNSUPPORTED, "%s: tensor '%s': %d dimensions, at most %d are supported", path,
                       name, ndim, ST_MAX_DIMS);
    e->t.ndim = ndim;
    uint64_t numel = 1, dim;
    int d = 0;
    cJSON_ArrayForEach(field, sh) {
        if (!json_u64(field, &dim))
            return err_set(PEFT_EFORMAT, "%s: tensor '%s': shape[%d] is not an integer in [0, 2^53]", path,
                           name, d);
        if (__builtin_mul_overflow(numel, dim, &numel))
            return err_set(PEFT_EFORMAT, "%s: tensor '%s': shape overflows 64 bits", path, name);
        e->t.shape[d++] = (int64_t)dim;
    }

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': data_offsets must be an array [begin, end]", path, name);
    for (int i = 0; i < 2; i++)
        if (!json_u64(cJSON_GetArrayItem(off, i), i ? &e->end : &e->begin))
            return err_set(PEFT_EFORMAT, "%s: tensor '%s': data_offsets[%d] is not an integer in [0, 2^53]",
                           path, name, i);
    if (e->end < e->begin)
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path,
                       name, (unsigned long long)e->begin, (unsigned long long)e->end);

    uint64_t bits;
    if (__builtin_mul_overflow(numel, (uint64_t)st_dtype_bits(e->t.dtype), &bits))
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': byte size overflows 64 bits", path, name);
    if (bits % 8)
        return err_set(PEFT_EFORMAT, "%s: tensor '%s': %llu elements of %s are not a whole number of bytes",
                       path, name, (unsigned long long)numel, dt->valuestring);
    if (e->end - e->begin != bits / 8)
        return err_set(PEFT_EFORMAT,
                       "%s: tensor '%s': shape of %llu %s elements needs %llu bytes but data_offsets "
                       "[%llu, %llu] span %llu",
                       path, name, (unsigned long long)numel, dt->valuestring, (unsigned long long)(bits / 8),
                       (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin));
    e->t.nbytes = (size_t)(bits / 8);
    return PEFT_OK;
}

/* Sorted by offset, the entries must tile [0, dsize) exactly. */
static int check_tiling(const char *path, const st_entry *e, size_t n, uint64_t dsize) {
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin > pos && i == 0)
            return err_set(PEFT_EFORMAT, "%s: tensor '%s' begins at data offset %llu; the data must begin at 0",
                           path, e[i].t.name, (unsigned long long)e[i].begin);
        if (e[i].begin > pos)
            return err_set(PEFT_EFORMAT, "%s: gap of %llu bytes between tensor '%s' (ends at %llu) and tensor '%s'",
                           path, (unsigned long long)(e[i].begin - pos), e[i - 1].t.name,
                           (unsigned long long)pos, e[i].t.name);
        if (e[i].begin < pos)
            return err_set(PEFT_EFORMAT, "%s: tensor '%s' [%llu, %llu) overlaps tensor '%s', which ends at %llu",
                           path, e[i].t.name, (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                           e[i - 1].t.name, (unsigned long long)pos);
        pos = e[i].end;
    }
    if (pos > dsize)
        return err_set(PEFT_EFORMAT, "%s: tensor '%s' ends at data offset %llu, past the end of the %llu-byte "
                       "data buffer (truncated file?)", path, e[n - 1].t.name, (unsigned long long)pos,
                       (unsigned long long)dsize);
    if (pos < dsize)
        return err_set(PEFT_EFORMAT, "%s: %llu trailing bytes after the last tensor (data buffer %llu bytes, "
                       "tensors cover %llu)", path, (unsigned long long)(dsize - pos),
                       (unsigned long long)dsize, (unsigned long long)pos);
    return PEFT_OK;
}

static int parse_metadata(st_file *f, const cJSON *meta, char **cursor) {
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        st_kv *m = &f->meta[f->nmeta++];
        m->key = arena_put(cursor, kv->string);
        m->value = arena_put(cursor, kv->valuestring);
    }
    qsort(f->meta, f->nmeta, sizeof *f->meta, cmp_kv);
    for (size_t i = 1; i < f->nmeta; i++)
        if (strcmp(f->meta[i - 1].key, f->meta[i].key) == 0)
            return err_set(PEFT_EFORMAT, "%s: duplicate __metadata__ key \"%s\"", f->path, f->meta[i].key);
    return PEFT_OK;
}

/* Builds f's tables from the parsed header. Pass 1 counts and sizes; pass 2 fills. */
static int load_header(st_file *f, const cJSON *root, const unsigned char *data, uint64_t dsize) {
    const char *path = f->path;
    size_t nt = 0, nm = 0, bytes = 0;
    const cJSON *meta = NULL, *it;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") != 0) {
            nt++;
            bytes += strlen(it->string) + 1;
            continue;
        }
        if (meta) return err_set(PEFT_EFORMAT, "%s: duplicate key \"__metadata__\"", path);
        meta = it;
        if (cJSON_IsNull(it)) continue; /* the reference reads it as an Option */
        if (!cJSON_IsObject(it))
            return err_set(PEFT_EFORMAT, "%s: __metadata__ must be an object of string values", path);
        const cJSON *kv;
        cJSON_ArrayForEach(kv, it) {
            if (!cJSON_IsString(kv))
                return err_set(PEFT_EFORMAT, "%s: __metadata__ key \"%s\": value must be a string", path,
                               kv->string);
            nm++;
            bytes += strlen(kv->string) + strlen(kv->valuestring) + 2;
        }
    }

    f->tensors = calloc(nt ? nt : 1, sizeof *f->tensors);
    f->by_name = calloc(nt ? nt : 1, sizeof *f->by_name);
    f->meta = calloc(nm ? nm : 1, sizeof *f->meta);
    f->strings = malloc(bytes ? bytes : 1);
    st_entry *e = calloc(nt ? nt : 1, sizeof *e);
    int rc = PEFT_OK;
    if (!f->tensors || !f->by_name || !f->meta || !f->strings || !e) {
        rc = err_set(PEFT_ENOMEM, "%s: out of memory for %zu tensor entries", path, nt);
        goto out_free_entries;
    }
    char *cursor = f->strings;
    if (meta && !cJSON_IsNull(meta) && (rc = parse_metadata(f, meta, &cursor)) != PEFT_OK)
        goto out_free_entries;

    size_t i = 0;
    cJSON_ArrayForEach(it, root) {
        if (it == meta) continue;
        e[i].t.name = arena_put(&cursor, it->string);
        if ((rc = parse_entry(path, it, &e[i])) != PEFT_OK) goto out_free_entries;
        i++;
    }
    qsort(e, nt, sizeof *e, cmp_entry_name);
    for (i = 1; i < nt; i++)
        if (strcmp(e[i - 1].t.name, e[i].t.name) == 0) {
            rc = err_set(PEFT_EFORMAT, "%s: duplicate tensor name '%s'", path, e[i].t.name);
            goto out_free_entries;
        }
    qsort(e, nt, sizeof *e, cmp_entry_offset);
    if ((rc = check_tiling(path, e, nt, dsize)) != PEFT_OK) goto out_free_entries;

    for (i = 0; i < nt; i++) {
        f->tensors[i] = e[i].t;
        f->tensors[i].data = data + e[i].begin;
        f->by_name[i] = &f->tensors[i];
    }
    f->n = nt;
    qsort(f->by_name, nt, sizeof *f->by_name, cmp_tensor_ptr_name);
out_free_entries:
    free(e);
    return rc;
}

static int parse_file(st_file *f) {
    const char *path = f->path;
    if (f->map_size < 8)
        return err_set(PEFT_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", path,
                       f->map_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->map[i];
    size_t avail = f->map_size - 8;
    if (n > ST_MAX_HEADER_SIZE)
        return err_set(PEFT_EFORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                       (unsigned long long)n, ST_MAX_HEADER_SIZE);
    if (n > avail)
        return err_set(PEFT_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes follow "
                       "the length field)", path, (unsigned long long)n, avail);
    const char *hdr = (const char *)f->map + 8;
    if (n == 0 || hdr[0] != '{')
        return err_set(PEFT_EFORMAT, "%s: header does not start with '{'", path);
    PEFT_TRY(header_check_text(path, hdr, (size_t)n));

    char *text = malloc((size_t)n + 1); /* cJSON wants a NUL; the check above excluded NULs */
    if (!text) return err_set(PEFT_ENOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)n);
    memcpy(text, hdr, (size_t)n);
    text[n] = '\0';
    const char *end = NULL;
    int rc = PEFT_OK;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    if (!root) {
        rc = err_set(PEFT_EFORMAT, "%s: header is not valid JSON (error near header byte %zu)", path,
                     end ? (size_t)(end - text) : (size_t)0);
        goto out_free_text;
    }
    for (; *end; end++)
        if (!strchr(" \t\r\n", *end)) {
            rc = err_set(PEFT_EFORMAT, "%s: header has content after its JSON object at header byte %zu", path,
                         (size_t)(end - text));
            goto out_delete_json;
        }
    if (!cJSON_IsObject(root)) {
        rc = err_set(PEFT_EFORMAT, "%s: header is not a JSON object", path);
        goto out_delete_json;
    }
    rc = load_header(f, root, f->map + 8 + n, avail - n);
out_delete_json:
    cJSON_Delete(root);
out_free_text:
    free(text);
    return rc;
}

static int st_new(const char *path, st_file **out) {
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return err_set(PEFT_ENOMEM, "%s: out of memory", path);
    }
    *out = f;
    return PEFT_OK;
}

int st_open(const char *path, st_file **out) {
    *out = NULL;
    st_file *f = NULL;
    PEFT_TRY(st_new(path, &f));
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = err_set(PEFT_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto out_close_file;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = err_set(PEFT_EIO, "%s: not a readable regular file", path);
        goto out_close_fd;
    }
    if (sb.st_size < 8) {
        rc = err_set(PEFT_EFORMAT, "%s: file is %lld bytes, too short for the 8-byte header length", path,
                     (long long)sb.st_size);
        goto out_close_fd;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = err_set(PEFT_EIO, "%s: cannot mmap: %s", path, strerror(errno));
        goto out_close_fd;
    }
    f->map = map;
    f->map_size = (size_t)sb.st_size;
    f->mapped = 1;
    close(fd);
    if ((rc = parse_file(f)) != PEFT_OK) goto out_close_file;
    *out = f;
    return PEFT_OK;
out_close_fd:
    close(fd);
out_close_file:
    st_close(f);
    return rc;
}

int st_open_memory(const char *name, const void *data, size_t len, st_file **out) {
    *out = NULL;
    st_file *f = NULL;
    PEFT_TRY(st_new(name, &f));
    f->map = data;
    f->map_size = len;
    int rc = parse_file(f);
    if (rc != PEFT_OK) {
        st_close(f);
        return rc;
    }
    *out = f;
    return PEFT_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->map, f->map_size);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->strings);
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }
size_t st_count(const st_file *f) { return f->n; }
const st_tensor *st_at(const st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const st_tensor *st_find(const st_file *f, const char *name) {
    const st_tensor **p = bsearch(name, f->by_name, f->n, sizeof *f->by_name, cmp_key_tensor_ptr);
    return p ? *p : NULL;
}

const char *st_metadata(const st_file *f, const char *key) {
    st_kv k = {key, NULL};
    const st_kv *m = bsearch(&k, f->meta, f->nmeta, sizeof *f->meta, cmp_kv);
    return m ? m->value : NULL;
}

/* ---- fp32 conversion ---------------------------------------------------------------------- */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f; /* zero or subnormal, exact */
        return sign ? -v : v;
    }
    if (exp == 31) bits = sign | 0x7F800000u | mant << 13; /* inf, nan (payload kept) */
    else bits = sign | (exp + 112) << 23 | mant << 13;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int st_read_f32(const st_tensor *t, float *dst, size_t n) {
    if ((uint64_t)st_numel(t) != n)
        return err_set(PEFT_EMISMATCH, "tensor '%s': has %lld elements but %zu were requested", t->name,
                       (long long)st_numel(t), n);
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(dst, p, n * sizeof(float));
        return PEFT_OK;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            if (t->dtype == ST_F16) dst[i] = half_to_float(h);
            else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&dst[i], &bits, sizeof bits);
            }
        }
        return PEFT_OK;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, sizeof d);
            dst[i] = (float)d;
        }
        return PEFT_OK;
    default:
        return err_set(PEFT_EUNSUPPORTED, "tensor '%s': cannot convert dtype %s to F32", t->name,
                       st_dtype_name(t->dtype));
    }
}
