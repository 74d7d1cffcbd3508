/*
 * safetensors_model.c - a model directory as one st_model: model.safetensors, or the shards named
 * by model.safetensors.index.json (FORMATS.md §1.7), each opened once and validated by st_open.
 * Uses only the public st_* API.
 */
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "io/file.h"
#include "io/json.h"

#define ST_INDEX_FILE "model.safetensors.index.json"
#define ST_SINGLE_FILE "model.safetensors"

static int cmp_tensor_ptr_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_key_tensor_ptr(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const st_tensor *const *)elem)->name);
}

struct st_model {
    st_file **files;           /* [nfiles], each shard opened once */
    size_t nfiles;
    const st_tensor **by_name; /* [n], sorted by name; point into files[] */
    size_t n;
};


static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Opens every distinct shard named by the index once, then resolves every weight_map entry. */
static int model_open_index(st_model *m, const char *dir, const char *idx) {
    cJSON *root;
    PEFT_TRY(json_load_file(idx, &root));
    int rc = PEFT_OK;
    const char **pairs = NULL, **shards = NULL; /* pairs: [2n] name, shard */
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *it;
    if (!cJSON_IsObject(wm)) {
        rc = err_set(PEFT_EFORMAT, "%s: expected a \"weight_map\" object of tensor name -> shard file", idx);
        goto out_free;
    }
    size_t n = (size_t)cJSON_GetArraySize(wm), i = 0;
    pairs = calloc(2 * n + 1, sizeof *pairs);
    shards = calloc(n + 1, sizeof *shards);
    m->by_name = calloc(n + 1, sizeof *m->by_name);
    m->files = calloc(n + 1, sizeof *m->files);
    if (!pairs || !shards || !m->by_name || !m->files) {
        rc = err_set(PEFT_ENOMEM, "%s: out of memory for %zu entries", idx, n);
        goto out_free;
    }
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strchr(it->valuestring, '/')) {
            rc = err_set(PEFT_EFORMAT, "%s: weight_map[\"%s\"] must be a shard file name in the same directory",
                         idx, it->string);
            goto out_free;
        }
        pairs[2 * i] = it->string;
        pairs[2 * i + 1] = shards[i] = it->valuestring;
        i++;
    }
    qsort(pairs, n, 2 * sizeof *pairs, cmp_str_ptr);
    for (i = 1; i < n; i++)
        if (strcmp(pairs[2 * i - 2], pairs[2 * i]) == 0) {
            rc = err_set(PEFT_EFORMAT, "%s: duplicate weight_map entry '%s'", idx, pairs[2 * i]);
            goto out_free;
        }
    qsort(shards, n, sizeof *shards, cmp_str_ptr);
    size_t ns = 0;
    for (i = 0; i < n; i++)
        if (ns == 0 || strcmp(shards[ns - 1], shards[i]) != 0) shards[ns++] = shards[i];
    for (i = 0; i < ns; i++) {
        char p[4096];
        if ((rc = file_join(p, sizeof p, dir, shards[i])) == PEFT_OK) rc = st_open(p, &m->files[i]);
        if (rc != PEFT_OK) {
            char msg[768];
            snprintf(msg, sizeof msg, "%s", err_msg());
            rc = err_set(rc, "%s (shard named by %s)", msg, idx);
            goto out_free;
        }
        m->nfiles++;
    }
    for (i = 0; i < n; i++) {
        const char **s = bsearch(&pairs[2 * i + 1], shards, ns, sizeof *shards, cmp_str_ptr);
        st_file *f = m->files[s - shards];
        if (!(m->by_name[i] = st_find(f, pairs[2 * i]))) {
            rc = err_set(PEFT_EFORMAT, "%s: weight_map puts tensor '%s' in %s, which has no such tensor", idx,
                         pairs[2 * i], st_path(f));
            goto out_free;
        }
    }
    m->n = n;
out_free:
    free(pairs);
    free(shards);
    cJSON_Delete(root);
    return rc;
}

int st_model_open(const char *dir, st_model **out) {
    *out = NULL;
    char idx[4096], single[4096];
    PEFT_TRY(file_join(idx, sizeof idx, dir, ST_INDEX_FILE));
    PEFT_TRY(file_join(single, sizeof single, dir, ST_SINGLE_FILE));
    st_model *m = calloc(1, sizeof *m);
    int rc = PEFT_OK;
    if (!m) {
        rc = err_set(PEFT_ENOMEM, "%s: out of memory", dir);
    } else if (file_exists(idx)) {
        rc = model_open_index(m, dir, idx);
    } else if (!file_exists(single)) {
        rc = err_set(PEFT_EIO, "%s: no model found: neither %s nor %s exists", dir, ST_INDEX_FILE, ST_SINGLE_FILE);
    } else if (!(m->files = calloc(1, sizeof *m->files))) {
        rc = err_set(PEFT_ENOMEM, "%s: out of memory", dir);
    } else if ((rc = st_open(single, &m->files[0])) == PEFT_OK) {
        m->nfiles = 1;
        m->n = st_count(m->files[0]);
        if (!(m->by_name = malloc((m->n ? m->n : 1) * sizeof *m->by_name))) {
            rc = err_set(PEFT_ENOMEM, "%s: out of memory", dir);
        } else {
            for (size_t i = 0; i < m->n; i++) m->by_name[i] = st_at(m->files[0], i);
            qsort(m->by_name, m->n, sizeof *m->by_name, cmp_tensor_ptr_name);
        }
    }
    if (rc != PEFT_OK) {
        st_model_close(m);
        return rc;
    }
    *out = m;
    return PEFT_OK;
}

void st_model_close(st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nfiles; i++) st_close(m->files[i]);
    free(m->files);
    free(m->by_name);
    free(m);
}

const st_tensor *st_model_find(const st_model *m, const char *name) {
    const st_tensor **p = bsearch(name, m->by_name, m->n, sizeof *m->by_name, cmp_key_tensor_ptr);
    return p ? *p : NULL;
}

const char *st_model_file_of(const st_model *m, const st_tensor *t) {
    for (size_t i = 0; t && t->name && i < m->nfiles; i++)
        if (st_find(m->files[i], t->name) == t) return st_path(m->files[i]);
    return NULL;
}

size_t st_model_count(const st_model *m) { return m->n; }
const st_tensor *st_model_at(const st_model *m, size_t i) { return i < m->n ? m->by_name[i] : NULL; }
