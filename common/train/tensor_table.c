#include "train/tensor_table.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

#define TT_ALIGN 16

int tt_add(tensor_table *t, const char *name, int ndim, const int64_t *shape, bool decay, int *index) {
    if (strlen(name) >= TT_NAME_MAX) return err_set(PEFT_EUSAGE, "tensor name too long: %s", name);
    if (ndim < 1 || ndim > TT_MAX_DIMS) return err_set(PEFT_EUSAGE, "tensor %s: %d dimensions", name, ndim);
    if (tt_find(t, name)) return err_set(PEFT_EUSAGE, "tensor %s registered twice", name);
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        tt_entry *ne = realloc(t->e, (size_t)cap * sizeof *ne);
        if (!ne) return err_set(PEFT_ENOMEM, "out of memory");
        t->e = ne;
        t->cap = cap;
    }
    tt_entry *e = &t->e[t->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return err_set(PEFT_EUSAGE, "tensor %s: dimension %d is %lld", name, i, (long long)shape[i]);
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    e->offset = t->total;
    e->decay = decay;
    t->total += (e->numel + TT_ALIGN - 1) / TT_ALIGN * TT_ALIGN;
    if (index) *index = t->n;
    t->n++;
    return PEFT_OK;
}

const tt_entry *tt_find(const tensor_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].name, name)) return &t->e[i];
    return NULL;
}

void tt_free(tensor_table *t) {
    free(t->e);
    memset(t, 0, sizeof *t);
}

size_t tt_numel(const tensor_table *t) {
    size_t n = 0;
    for (int i = 0; i < t->n; i++) n += t->e[i].numel;
    return n;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t tt_hash(const tensor_table *t) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        h = fnv(h, e->name, strlen(e->name) + 1);
        for (int d = 0; d < e->ndim; d++) {
            uint64_t s = (uint64_t)e->shape[d];
            h = fnv(h, &s, sizeof s);
        }
        uint64_t o = e->offset;
        h = fnv(h, &o, sizeof o);
    }
    return h;
}

/* record: u16 name length, name bytes, u8 ndim, u8 decay, ndim x u64 shape */
static void put(uint8_t **p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) *(*p)++ = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t **p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)*(*p)++ << (8 * i);
    return v;
}

int tt_serialize(const tensor_table *t, uint8_t **buf, size_t *len) {
    size_t n = 12;
    for (int i = 0; i < t->n; i++) n += 4 + strlen(t->e[i].name) + 8 * (size_t)t->e[i].ndim;
    uint8_t *b = malloc(n), *p = b;
    if (!b) return err_set(PEFT_ENOMEM, "out of memory");
    memcpy(p, "PFTT", 4);
    p += 4;
    put(&p, 1, 4);
    put(&p, (uint64_t)t->n, 4);
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        size_t nl = strlen(e->name);
        put(&p, nl, 2);
        memcpy(p, e->name, nl);
        p += nl;
        put(&p, (uint64_t)e->ndim, 1);
        put(&p, e->decay, 1);
        for (int d = 0; d < e->ndim; d++) put(&p, (uint64_t)e->shape[d], 8);
    }
    *buf = b;
    *len = n;
    return PEFT_OK;
}

int tt_deserialize(const uint8_t *buf, size_t len, const char *where, tensor_table *out) {
    memset(out, 0, sizeof *out);
    const uint8_t *p = buf, *end = buf + len;
    if (len < 12 || memcmp(p, "PFTT", 4) != 0) return err_set(PEFT_EFORMAT, "%s: not a tensor table", where);
    p += 4;
    uint64_t version = get(&p, 4), count = get(&p, 4);
    if (version != 1) return err_set(PEFT_EFORMAT, "%s: tensor table version %llu, expected 1", where, (unsigned long long)version);
    char name[TT_NAME_MAX];
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 4) goto out_short;
        size_t nl = get(&p, 2);
        if (nl == 0 || nl >= TT_NAME_MAX || (size_t)(end - p) < nl + 2) goto out_short;
        memcpy(name, p, nl);
        name[nl] = '\0';
        p += nl;
        int ndim = (int)get(&p, 1);
        bool decay = get(&p, 1) != 0;
        if (ndim < 1 || ndim > TT_MAX_DIMS || (size_t)(end - p) < 8 * (size_t)ndim) goto out_short;
        int64_t shape[TT_MAX_DIMS];
        for (int d = 0; d < ndim; d++) {
            uint64_t s = get(&p, 8);
            if (s == 0 || s > (1ull << 40)) {
                tt_free(out);
                return err_set(PEFT_EFORMAT, "%s: tensor %s has an impossible dimension", where, name);
            }
            shape[d] = (int64_t)s;
        }
        int rc = tt_add(out, name, ndim, shape, decay, NULL);
        if (rc) {
            tt_free(out);
            return err_set(PEFT_EFORMAT, "%s: bad tensor entry %s", where, name);
        }
    }
    if (p != end) goto out_short;
    return PEFT_OK;
out_short:
    tt_free(out);
    return err_set(PEFT_EFORMAT, "%s: truncated or malformed tensor table", where);
}
