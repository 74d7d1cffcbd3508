/* dataset_write.c - building a dataset directory (dataset.h): records into per-shard LMDB
 * environments under DIR.partial-PID, then the manifest, then one rename. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "data/dataset.h"
#include "data/dataset_impl.h"
#include "error.h"
#include "io/file.h"
#include "io/json.h"
#include "io/lmdb_check.h"

#define COMMIT_EVERY 4096

typedef struct shard_writer {
    char path[4200];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint64_t pending;
    uint64_t sequences, tokens, loss_tokens;
} shard_writer;

struct dataset_writer {
    char dir[4096], partial[4200];
    dataset_info info;
    shard_writer *shards; /* [num_shards + 1], the last is val.lmdb */
    uint8_t *buf;         /* one encoded record */
};

static int shard_open(shard_writer *s, const char *path) {
    int rc = PEFT_OK;
    snprintf(s->path, sizeof s->path, "%s", path);
    LMDB_CHECK(mdb_env_create(&s->env), path, rc, out);
    LMDB_CHECK(mdb_env_set_mapsize(s->env, DATASET_MAP_SIZE), path, rc, out);
    /* NOLOCK: the shard is this process's alone until prep renames the finished dataset into place,
     * and LMDB's lock file, written through a map, would turn a full disk into a SIGBUS */
    LMDB_CHECK(mdb_env_open(s->env, path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOLOCK, 0644), path, rc, out);
    LMDB_CHECK(mdb_txn_begin(s->env, NULL, 0, &s->txn), path, rc, out);
    LMDB_CHECK(mdb_dbi_open(s->txn, NULL, 0, &s->dbi), path, rc, out);
out:
    return rc;
}

static int shard_commit(shard_writer *s, bool reopen) {
    int rc = PEFT_OK;
    MDB_txn *txn = s->txn;
    s->txn = NULL;
    LMDB_CHECK(mdb_txn_commit(txn), s->path, rc, out);
    s->pending = 0;
    if (reopen) LMDB_CHECK(mdb_txn_begin(s->env, NULL, 0, &s->txn), s->path, rc, out);
out:
    return rc;
}

static void shard_close(shard_writer *s) {
    if (s->txn) mdb_txn_abort(s->txn);
    if (s->env) mdb_env_close(s->env);
    s->txn = NULL;
    s->env = NULL;
}

void dataset_writer_abort(dataset_writer *w) {
    if (!w) return;
    for (int i = 0; w->shards && i <= w->info.num_shards; i++) shard_close(&w->shards[i]);
    if (w->partial[0]) {
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->partial);
        if (system(cmd) != 0) fprintf(stderr, "peft: warning: could not remove %s\n", w->partial);
    }
    free(w->shards);
    free(w->buf);
    free(w);
}

int dataset_writer_open(const char *dir, const dataset_info *info, dataset_writer **out) {
    *out = NULL;
    if (info->seq_len <= 0 || info->num_shards <= 0 || info->num_shards > 99999)
        return err_set(PEFT_EUSAGE, "%s: seq_len and the shard count (1..99999) must be positive", dir);
    if (file_exists(dir)) return err_set(PEFT_EUSAGE, "%s: already exists; choose a new --out directory", dir);
    dataset_writer *w = calloc(1, sizeof *w);
    if (!w) return err_set(PEFT_ENOMEM, "out of memory");
    int rc = PEFT_OK;
    w->info = *info;
    memset(w->info.sequences, 0, sizeof w->info.sequences);
    memset(w->info.tokens, 0, sizeof w->info.tokens);
    memset(w->info.loss_tokens, 0, sizeof w->info.loss_tokens);
    memset(w->info.documents, 0, sizeof w->info.documents);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    snprintf(w->partial, sizeof w->partial, "%s.partial-%d", dir, (int)getpid());
    w->shards = calloc((size_t)info->num_shards + 1, sizeof *w->shards);
    w->buf = malloc(DATASET_RECORD_HEADER + (size_t)info->seq_len * 5);
    if (!w->shards || !w->buf) {
        rc = err_set(PEFT_ENOMEM, "out of memory");
        goto out_fail;
    }
    if ((rc = file_mkdirs(w->partial))) {
        w->partial[0] = '\0';
        goto out_fail;
    }
    char path[4300];
    for (int i = 0; i <= info->num_shards; i++) {
        dataset_file_name(path, sizeof path, w->partial, i < info->num_shards ? DATASET_TRAIN : DATASET_VAL, i);
        if ((rc = shard_open(&w->shards[i], path))) goto out_fail;
    }
    *out = w;
    return PEFT_OK;
out_fail:
    dataset_writer_abort(w);
    return rc;
}

int dataset_writer_add(dataset_writer *w, dataset_split split, const int32_t *ids, const uint8_t *mask, int n) {
    if (n <= 0 || n > w->info.seq_len)
        return err_set(PEFT_EUSAGE, "%s: a record of %d tokens does not fit seq_len %d", w->dir, n, w->info.seq_len);
    const uint64_t index = w->info.sequences[split];
    shard_writer *s = split == DATASET_VAL ? &w->shards[w->info.num_shards] : &w->shards[index % w->info.num_shards];
    uint32_t loss = 0;
    for (int i = 0; i < n; i++) loss += mask[i] != 0;
    size_t len = dataset_record_encode(w->buf, ids, mask, n, loss);
    uint8_t key[8];
    dataset_key_encode(key, index);
    MDB_val k = {sizeof key, key}, v = {len, w->buf};
    int rc = PEFT_OK;
    LMDB_CHECK(mdb_put(s->txn, s->dbi, &k, &v, MDB_APPEND), s->path, rc, out);
    w->info.sequences[split]++;
    w->info.tokens[split] += (uint64_t)n;
    w->info.loss_tokens[split] += loss;
    s->sequences++;
    s->tokens += (uint64_t)n;
    s->loss_tokens += loss;
    if (++s->pending >= COMMIT_EVERY) rc = shard_commit(s, true);
out:
    return rc;
}

const dataset_info *dataset_writer_info(const dataset_writer *w) { return &w->info; }

void dataset_writer_set_vocab_size(dataset_writer *w, int vocab_size) { w->info.vocab_size = vocab_size; }

void dataset_writer_count_documents(dataset_writer *w, dataset_split split, uint64_t n) { w->info.documents[split] += n; }

static cJSON *file_entry(const shard_writer *s) {
    cJSON *o = cJSON_CreateObject();
    const char *base = strrchr(s->path, '/');
    cJSON_AddStringToObject(o, "file", base ? base + 1 : s->path);
    cJSON_AddNumberToObject(o, "sequences", (double)s->sequences);
    cJSON_AddNumberToObject(o, "tokens", (double)s->tokens);
    cJSON_AddNumberToObject(o, "loss_tokens", (double)s->loss_tokens);
    return o;
}

static int write_manifest(const dataset_writer *w) {
    const dataset_info *in = &w->info;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", DATASET_FORMAT);
    cJSON_AddNumberToObject(o, "version", DATASET_VERSION);
    cJSON_AddNumberToObject(o, "seq_len", in->seq_len);
    cJSON_AddBoolToObject(o, "packed", in->packed);
    cJSON_AddNumberToObject(o, "seed", (double)in->seed);
    cJSON *tok = cJSON_AddObjectToObject(o, "tokenizer");
    cJSON_AddStringToObject(tok, "fingerprint", in->tokenizer_fingerprint);
    cJSON_AddNumberToObject(tok, "vocab_size", in->vocab_size);
    cJSON_AddNumberToObject(tok, "eos_token_id", in->eos_token_id);
    const char *split_names[2] = {"train", "val"};
    for (int sp = 0; sp < 2; sp++) {
        cJSON *s = cJSON_AddObjectToObject(o, split_names[sp]);
        cJSON_AddNumberToObject(s, "documents", (double)in->documents[sp]);
        cJSON_AddNumberToObject(s, "sequences", (double)in->sequences[sp]);
        cJSON_AddNumberToObject(s, "tokens", (double)in->tokens[sp]);
        cJSON_AddNumberToObject(s, "loss_tokens", (double)in->loss_tokens[sp]);
        cJSON *files = cJSON_AddArrayToObject(s, "files");
        if (sp == DATASET_TRAIN)
            for (int i = 0; i < in->num_shards; i++) cJSON_AddItemToArray(files, file_entry(&w->shards[i]));
        else cJSON_AddItemToArray(files, file_entry(&w->shards[in->num_shards]));
    }
    char *text = json_print_pretty(o, false);
    cJSON_Delete(o);
    if (!text) return err_set(PEFT_ENOMEM, "out of memory writing the manifest");
    char path[4300];
    snprintf(path, sizeof path, "%s/manifest.json", w->partial);
    int rc = file_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int dataset_writer_finish(dataset_writer *w) {
    int rc = PEFT_OK;
    for (int i = 0; i <= w->info.num_shards && rc == PEFT_OK; i++) {
        shard_writer *s = &w->shards[i];
        if ((rc = shard_commit(s, false))) break;
        LMDB_CHECK(mdb_env_sync(s->env, 1), s->path, rc, out);
    }
    if (rc == PEFT_OK) rc = write_manifest(w);
    if (rc == PEFT_OK && rename(w->partial, w->dir) != 0)
        rc = err_set(PEFT_EIO, "%s: cannot rename %s into place: %s", w->dir, w->partial, strerror(errno));
out:
    if (rc == PEFT_OK) w->partial[0] = '\0'; /* nothing left to remove */
    dataset_writer_abort(w);
    return rc;
}
