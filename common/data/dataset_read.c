/* dataset_read.c - opening a dataset read-only and reading records (dataset.h), plus the record
 * encoding both sides share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data/dataset.h"
#include "data/dataset_impl.h"
#include "error.h"
#include "io/file.h"
#include "io/json.h"
#include "io/lmdb_check.h"

void dataset_file_name(char *buf, size_t cap, const char *dir, dataset_split split, int shard) {
    if (split == DATASET_VAL) snprintf(buf, cap, "%s/val.lmdb", dir);
    else snprintf(buf, cap, "%s/shard-%05d.lmdb", dir, shard);
}

void dataset_key_encode(uint8_t key[8], uint64_t index) {
    for (int i = 0; i < 8; i++) key[i] = (uint8_t)(index >> (56 - 8 * i));
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t dataset_record_encode(uint8_t *buf, const int32_t *ids, const uint8_t *mask, int n, uint32_t loss_tokens) {
    memcpy(buf, DATASET_RECORD_MAGIC, 4);
    buf[4] = DATASET_RECORD_VERSION;
    buf[5] = 0;
    buf[6] = buf[7] = 0;
    put_u32(buf + 8, (uint32_t)n);
    put_u32(buf + 12, loss_tokens);
    uint8_t *p = buf + DATASET_RECORD_HEADER;
    for (int i = 0; i < n; i++) put_u32(p + 4 * (size_t)i, (uint32_t)ids[i]);
    for (int i = 0; i < n; i++) p[4 * (size_t)n + i] = mask[i] ? 1 : 0;
    return DATASET_RECORD_HEADER + 5 * (size_t)n;
}

int dataset_record_decode(const uint8_t *buf, size_t len, int seq_len, int32_t *ids, uint8_t *mask, int *n,
                          const char *where, uint64_t index) {
    if (len < DATASET_RECORD_HEADER || memcmp(buf, DATASET_RECORD_MAGIC, 4) != 0)
        return err_set(PEFT_EFORMAT, "%s: record %llu is not a peft dataset record", where, (unsigned long long)index);
    unsigned version = buf[4] | (unsigned)buf[5] << 8;
    if (version != DATASET_RECORD_VERSION)
        return err_set(PEFT_EFORMAT, "%s: record %llu has version %u, this build reads version %d", where,
                       (unsigned long long)index, version, DATASET_RECORD_VERSION);
    uint32_t count = get_u32(buf + 8), loss = get_u32(buf + 12);
    if (count == 0 || count > (uint32_t)seq_len || len != DATASET_RECORD_HEADER + 5 * (size_t)count)
        return err_set(PEFT_EFORMAT, "%s: record %llu holds %u tokens in %zu bytes (seq_len %d)", where,
                       (unsigned long long)index, count, len, seq_len);
    const uint8_t *p = buf + DATASET_RECORD_HEADER;
    uint32_t ones = 0;
    for (uint32_t i = 0; i < count; i++) {
        ids[i] = (int32_t)get_u32(p + 4 * (size_t)i);
        mask[i] = p[4 * (size_t)count + i];
        if (ids[i] < 0 || mask[i] > 1)
            return err_set(PEFT_EFORMAT, "%s: record %llu has a bad token id or mask at position %u", where,
                           (unsigned long long)index, i);
        ones += mask[i];
    }
    if (ones != loss)
        return err_set(PEFT_EFORMAT, "%s: record %llu counts %u loss tokens but its mask has %u", where,
                       (unsigned long long)index, loss, ones);
    *n = (int)count;
    return PEFT_OK;
}

typedef struct shard_reader {
    char path[4200];
    MDB_env *env;
    MDB_txn *txn; /* one long read transaction: the data never changes */
    MDB_dbi dbi;
    uint64_t sequences;
} shard_reader;

struct dataset {
    char dir[4096];
    dataset_info info;
    shard_reader *shards; /* [num_shards + 1], the last is val.lmdb */
};

static int shard_open(shard_reader *s, const char *path) {
    int rc = PEFT_OK;
    snprintf(s->path, sizeof s->path, "%s", path);
    if (!file_exists(path)) return err_set(PEFT_EIO, "%s: missing (manifest.json lists it)", path);
    LMDB_CHECK(mdb_env_create(&s->env), path, rc, out);
    /* a read-only map needs only the file's committed pages: LMDB raises a smaller mapsize to
     * them, so readers do not reserve DATASET_MAP_SIZE of address space per shard (valgrind and
     * `ulimit -v` refuse that) */
    LMDB_CHECK(mdb_env_set_mapsize(s->env, 1), path, rc, out);
    LMDB_CHECK(mdb_env_open(s->env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0644), path, rc, out);
    LMDB_CHECK(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->txn), path, rc, out);
    LMDB_CHECK(mdb_dbi_open(s->txn, NULL, 0, &s->dbi), path, rc, out);
    MDB_stat st;
    LMDB_CHECK(mdb_stat(s->txn, s->dbi, &st), path, rc, out);
    if (st.ms_entries != s->sequences)
        rc = err_set(PEFT_EFORMAT, "%s: holds %zu records, manifest.json says %llu", path, st.ms_entries,
                     (unsigned long long)s->sequences);
out:
    return rc;
}

void dataset_close(dataset *d) {
    if (!d) return;
    for (int i = 0; d->shards && i <= d->info.num_shards; i++) {
        if (d->shards[i].txn) mdb_txn_abort(d->shards[i].txn);
        if (d->shards[i].env) mdb_env_close(d->shards[i].env);
    }
    free(d->shards);
    free(d);
}

static int get_u64(const cJSON *o, const char *key, const char *file, uint64_t *out) {
    double v = 0;
    PEFT_TRY(json_get_double_req(o, key, file, &v));
    if (!(v >= 0 && v < 0x1p64) || v != (double)(uint64_t)v) return err_set(PEFT_EFORMAT, "%s: '%s' must be a non-negative integer", file, key);
    *out = (uint64_t)v;
    return PEFT_OK;
}

static int parse_split(const cJSON *root, const char *name, dataset_split sp, const char *file, dataset *d) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsObject(s)) return err_set(PEFT_EFORMAT, "%s: missing object '%s'", file, name);
    dataset_info *in = &d->info;
    PEFT_TRY(get_u64(s, "documents", file, &in->documents[sp]));
    PEFT_TRY(get_u64(s, "sequences", file, &in->sequences[sp]));
    PEFT_TRY(get_u64(s, "tokens", file, &in->tokens[sp]));
    PEFT_TRY(get_u64(s, "loss_tokens", file, &in->loss_tokens[sp]));
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(s, "files");
    int want = sp == DATASET_TRAIN ? in->num_shards : 1;
    if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) != want)
        return err_set(PEFT_EFORMAT, "%s: '%s.files' must list %d file(s)", file, name, want);
    uint64_t total = 0;
    for (int i = 0; i < want; i++) {
        shard_reader *r = &d->shards[sp == DATASET_TRAIN ? i : in->num_shards];
        PEFT_TRY(get_u64(cJSON_GetArrayItem(files, i), "sequences", file, &r->sequences));
        total += r->sequences;
        /* round-robin placement: shard i holds ceil((N - i) / S) records */
        uint64_t expect = sp == DATASET_VAL ? in->sequences[sp]
                                            : (in->sequences[sp] + (uint64_t)(in->num_shards - 1 - i)) / in->num_shards;
        if (r->sequences != expect)
            return err_set(PEFT_EFORMAT, "%s: %s file %d has %llu sequences, expected %llu", file, name, i,
                           (unsigned long long)r->sequences, (unsigned long long)expect);
    }
    if (total != in->sequences[sp]) return err_set(PEFT_EFORMAT, "%s: '%s' sequence counts do not add up", file, name);
    return PEFT_OK;
}

static int parse_manifest(const cJSON *root, const char *file, dataset *d) {
    const char *format = NULL, *fp = "";
    int version = 0, rc;
    dataset_info *in = &d->info;
    if ((rc = json_get_string_req(root, "format", file, &format))) goto out;
    if (strcmp(format, DATASET_FORMAT) != 0) {
        rc = err_set(PEFT_EFORMAT, "%s: format '%s' is not a peft dataset", file, format);
        goto out;
    }
    if ((rc = json_get_int_req(root, "version", file, &version))) goto out;
    if (version != DATASET_VERSION) {
        rc = err_set(PEFT_EFORMAT, "%s: dataset version %d, this build reads version %d (prepare it again)", file,
                     version, DATASET_VERSION);
        goto out;
    }
    if ((rc = json_get_int_req(root, "seq_len", file, &in->seq_len))) goto out;
    if ((rc = json_get_bool_opt(root, "packed", file, &in->packed))) goto out;
    if ((rc = get_u64(root, "seed", file, &in->seed))) goto out;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "tokenizer");
    in->eos_token_id = -1;
    if (cJSON_IsObject(tok)) {
        if ((rc = json_get_string_opt(tok, "fingerprint", file, &fp))) goto out;
        if ((rc = json_get_int_opt(tok, "vocab_size", file, &in->vocab_size))) goto out;
        if ((rc = json_get_int_opt(tok, "eos_token_id", file, &in->eos_token_id))) goto out;
    }
    snprintf(in->tokenizer_fingerprint, sizeof in->tokenizer_fingerprint, "%s", fp);
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(root, "train");
    const cJSON *files = train ? cJSON_GetObjectItemCaseSensitive(train, "files") : NULL;
    in->num_shards = cJSON_IsArray(files) ? cJSON_GetArraySize(files) : 0;
    if (in->seq_len <= 0 || in->num_shards <= 0) {
        rc = err_set(PEFT_EFORMAT, "%s: needs a positive seq_len and at least one training shard", file);
        goto out;
    }
    d->shards = calloc((size_t)in->num_shards + 1, sizeof *d->shards);
    if (!d->shards) {
        rc = err_set(PEFT_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = parse_split(root, "train", DATASET_TRAIN, file, d))) goto out;
    rc = parse_split(root, "val", DATASET_VAL, file, d);
out:
    return rc;
}

static int load_manifest(const char *dir, dataset *d) {
    char file[4200];
    snprintf(file, sizeof file, "%s/manifest.json", dir);
    cJSON *root;
    PEFT_TRY(json_load_file(file, &root));
    int rc = parse_manifest(root, file, d);
    cJSON_Delete(root);
    return rc;
}

int dataset_manifest_parse(const char *file, const char *text, size_t len, dataset_info *out) {
    cJSON *root;
    PEFT_TRY(json_parse_buffer(file, text, len, &root));
    dataset *d = calloc(1, sizeof *d);
    int rc = d ? parse_manifest(root, file, d) : err_set(PEFT_ENOMEM, "out of memory");
    if (rc == PEFT_OK) *out = d->info;
    dataset_close(d);
    cJSON_Delete(root);
    return rc;
}

int dataset_open(const char *dir, dataset **out) {
    *out = NULL;
    dataset *d = calloc(1, sizeof *d);
    if (!d) return err_set(PEFT_ENOMEM, "out of memory");
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    int rc = load_manifest(dir, d);
    char path[4300];
    for (int i = 0; rc == PEFT_OK && i <= d->info.num_shards; i++) {
        dataset_file_name(path, sizeof path, dir, i < d->info.num_shards ? DATASET_TRAIN : DATASET_VAL, i);
        rc = shard_open(&d->shards[i], path);
    }
    if (rc) {
        dataset_close(d);
        return rc;
    }
    *out = d;
    return PEFT_OK;
}

const dataset_info *dataset_get_info(const dataset *d) { return &d->info; }

int dataset_read(dataset *d, dataset_split split, uint64_t index, int32_t *ids, uint8_t *mask, int *n) {
    if (index >= d->info.sequences[split])
        return err_set(PEFT_EUSAGE, "%s: record %llu is past the %llu sequences of the split", d->dir,
                       (unsigned long long)index, (unsigned long long)d->info.sequences[split]);
    shard_reader *s = split == DATASET_VAL ? &d->shards[d->info.num_shards] : &d->shards[index % d->info.num_shards];
    uint8_t key[8];
    dataset_key_encode(key, index);
    MDB_val k = {sizeof key, key}, v;
    int rc = mdb_get(s->txn, s->dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return err_set(PEFT_EFORMAT, "%s: record %llu is missing", s->path, (unsigned long long)index);
    if (rc) return err_set(PEFT_EIO, "%s: mdb_get failed: %s", s->path, mdb_strerror(rc));
    return dataset_record_decode(v.mv_data, v.mv_size, d->info.seq_len, ids, mask, n, s->path, index);
}
