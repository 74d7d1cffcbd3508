/* checkpoint.c - the checkpoint store (layout and contracts in checkpoint.h): record encoding,
 * saving with pruning in one write transaction, listing, and loading with every record checked. */
#include "store/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <lmdb.h>

#include "error.h"
#include "io/file.h"
#include "io/lmdb_check.h"

#define CKPT_MAGIC "PFTC"
#define CKPT_HEADER 8
#define CKPT_KEY_PREFIX "ckpt/"
#define CKPT_KEY_PREFIX_LEN (sizeof CKPT_KEY_PREFIX - 1)
#define CKPT_STEP_DIGITS 20
/* "ckpt/<20 digits>/": the part of a key shared by all records of one step */
#define CKPT_STEP_PREFIX_LEN (CKPT_KEY_PREFIX_LEN + CKPT_STEP_DIGITS + 1)
#define CKPT_LATEST_KEY "latest"
#define CKPT_KEY_MAX 64
#define CKPT_PATH_MAX 4200
/* Map sizing (see map_size_for): per-record allowance for page rounding and tree pages, a fixed
 * headroom for the free list and pruning, and the rounding unit. */
#define CKPT_RECORD_SLACK ((size_t)16 << 10)
#define CKPT_MAP_HEADROOM ((size_t)32 << 20)
#define CKPT_MAP_ROUND ((size_t)1 << 20)
/* How many steps a "no such step" message lists before eliding the middle. */
#define CKPT_LIST_SHOWN 6

/* Field ids, stored in every value's header; FIELD_LATEST is the "latest" key, not a step field. */
enum ckpt_field { FIELD_CONFIG = 1, FIELD_TENSORS, FIELD_PARAMS, FIELD_ADAM_M, FIELD_ADAM_V, FIELD_STATE,
                  FIELD_LATEST, FIELD_COUNT };

static const char *const field_name[FIELD_COUNT] = {
    [FIELD_CONFIG] = "config", [FIELD_TENSORS] = "tensors", [FIELD_PARAMS] = "params",
    [FIELD_ADAM_M] = "adam_m", [FIELD_ADAM_V] = "adam_v",   [FIELD_STATE] = "state",
    [FIELD_LATEST] = "latest",
};

/* ---- encoding ---------------------------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void floats_to_le(uint8_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        put_le(dst + 4 * i, u, 4);
    }
}

static void floats_from_le(float *dst, const uint8_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)get_le(src + 4 * i, 4);
        memcpy(&dst[i], &u, sizeof u);
    }
}

static void step_prefix(char key[CKPT_KEY_MAX], int64_t step) {
    snprintf(key, CKPT_KEY_MAX, CKPT_KEY_PREFIX "%020lld/", (long long)step);
}

static void field_key(char key[CKPT_KEY_MAX], int64_t step, int field) {
    snprintf(key, CKPT_KEY_MAX, CKPT_KEY_PREFIX "%020lld/%s", (long long)step, field_name[field]);
}

static bool key_is_latest(const MDB_val *k) {
    return k->mv_size == sizeof CKPT_LATEST_KEY - 1 && !memcmp(k->mv_data, CKPT_LATEST_KEY, k->mv_size);
}

/* Splits "ckpt/<step>/<field>" into its step and per-step field id; false for any other key. */
static bool key_parse(const MDB_val *k, int64_t *step, int *field) {
    const char *s = k->mv_data;
    if (k->mv_size <= CKPT_STEP_PREFIX_LEN || memcmp(s, CKPT_KEY_PREFIX, CKPT_KEY_PREFIX_LEN) != 0 ||
        s[CKPT_STEP_PREFIX_LEN - 1] != '/')
        return false;
    /* an int64 step has at most 19 digits, so the first of the 20 is always '0' and the rest fit */
    if (s[CKPT_KEY_PREFIX_LEN] != '0') return false;
    uint64_t v = 0;
    for (size_t i = CKPT_KEY_PREFIX_LEN + 1; i < CKPT_KEY_PREFIX_LEN + CKPT_STEP_DIGITS; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX) return false;
    size_t flen = k->mv_size - CKPT_STEP_PREFIX_LEN;
    for (int f = FIELD_CONFIG; f < FIELD_LATEST; f++) {
        if (strlen(field_name[f]) == flen && !memcmp(s + CKPT_STEP_PREFIX_LEN, field_name[f], flen)) {
            *step = (int64_t)v;
            *field = f;
            return true;
        }
    }
    return false;
}

/* A key fit for a one-line message: non-printable bytes as '?', long keys cut with "...". */
static const char *key_text(char buf[CKPT_KEY_MAX], const MDB_val *k) {
    size_t room = CKPT_KEY_MAX - 4, n = k->mv_size < room ? k->mv_size : room;
    const unsigned char *s = k->mv_data;
    for (size_t i = 0; i < n; i++) buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    strcpy(buf + n, n < k->mv_size ? "..." : "");
    return buf;
}

/* "step 500 record params" or "record latest" (step < 0), for messages. */
static void record_text(char buf[CKPT_KEY_MAX], int64_t step, int field) {
    if (step < 0) snprintf(buf, CKPT_KEY_MAX, "record %s", field_name[field]);
    else snprintf(buf, CKPT_KEY_MAX, "step %lld record %s", (long long)step, field_name[field]);
}

static void header_put(uint8_t *p, int field) {
    memcpy(p, CKPT_MAGIC, 4);
    put_le(p + 4, CKPT_VERSION, 2);
    put_le(p + 6, (uint64_t)field, 2);
}

/* Checks the header of the value of `field` (of `step`, or "latest" when step < 0); *payload and
 * *len receive what follows it. */
static int header_check(const char *path, int64_t step, int field, const MDB_val *v, const uint8_t **payload,
                        size_t *len) {
    char what[CKPT_KEY_MAX];
    const uint8_t *p = v->mv_data;
    record_text(what, step, field);
    if (v->mv_size < CKPT_HEADER)
        return err_set(PEFT_EFORMAT, "%s: %s: %zu bytes, shorter than its %d-byte header", path, what, v->mv_size,
                       CKPT_HEADER);
    if (memcmp(p, CKPT_MAGIC, 4) != 0)
        return err_set(PEFT_EFORMAT, "%s: %s: does not start with the magic \"%s\"", path, what, CKPT_MAGIC);
    unsigned version = (unsigned)get_le(p + 4, 2), id = (unsigned)get_le(p + 6, 2);
    if (version != CKPT_VERSION)
        return err_set(PEFT_EFORMAT, "%s: %s: format version %u, this build reads version %d", path, what, version,
                       CKPT_VERSION);
    if (id != (unsigned)field)
        return err_set(PEFT_EFORMAT, "%s: %s: header says field %u, expected %d", path, what, id, field);
    *payload = p + CKPT_HEADER;
    *len = v->mv_size - CKPT_HEADER;
    return PEFT_OK;
}

static int store_path(const char *run_dir, char *path, size_t cap) {
    if (!file_is_dir(run_dir))
        return err_set(PEFT_EUSAGE, "run dir %s does not exist or is not a directory", run_dir);
    return file_join(path, cap, run_dir, CKPT_FILE_NAME);
}

/* The distinct steps in the store, ascending, malloc'd (NULL when there are none). Every key must
 * belong to the layout. */
static int steps_read(MDB_txn *txn, MDB_dbi dbi, const char *path, int64_t **steps, int *n) {
    *steps = NULL;
    *n = 0;
    int rc = PEFT_OK, count = 0, cap = 0, mrc;
    int64_t *list = NULL;
    MDB_cursor *cur;
    MDB_val k, v;
    LMDB_CHECK(mdb_cursor_open(txn, dbi, &cur), path, rc, out);
    for (MDB_cursor_op op = MDB_FIRST; (mrc = mdb_cursor_get(cur, &k, &v, op)) == MDB_SUCCESS; op = MDB_NEXT) {
        int64_t step;
        int field;
        char text[CKPT_KEY_MAX];
        if (key_is_latest(&k)) continue;
        if (!key_parse(&k, &step, &field)) {
            rc = err_set(PEFT_EFORMAT, "%s: unexpected record '%s' (not part of the checkpoint layout)", path,
                         key_text(text, &k));
            goto out_close_cursor;
        }
        if (count && list[count - 1] == step) continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *grown = realloc(list, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = err_set(PEFT_ENOMEM, "out of memory");
                goto out_close_cursor;
            }
            list = grown;
        }
        list[count++] = step;
    }
    if (mrc != MDB_NOTFOUND) rc = err_set(PEFT_EIO, "%s: mdb_cursor_get failed: %s", path, mdb_strerror(mrc));
out_close_cursor:
    mdb_cursor_close(cur);
out:
    if (rc) {
        free(list);
        return rc;
    }
    *steps = list;
    *n = count;
    return PEFT_OK;
}

/* ---- saving ------------------------------------------------------------------------------------ */

/* One write transaction. The helpers below return LMDB codes and keep the last one in lmdb_rc, so
 * ckpt_save can tell a full map (grow and retry) from a failed write (report). */
typedef struct writer {
    const char *path;
    MDB_txn *txn;
    MDB_dbi dbi;
    int lmdb_rc;
} writer;

/* Reserves `key`'s value (header + len bytes) and writes the header; the caller fills *payload at
 * once (before the next update, as MDB_RESERVE requires). */
static int record_reserve(writer *w, const char *key, int field, size_t len, uint8_t **payload) {
    MDB_val k = {strlen(key), (void *)key}, v = {CKPT_HEADER + len, NULL};
    w->lmdb_rc = mdb_put(w->txn, w->dbi, &k, &v, MDB_RESERVE);
    if (w->lmdb_rc != MDB_SUCCESS) return w->lmdb_rc;
    header_put(v.mv_data, field);
    *payload = (uint8_t *)v.mv_data + CKPT_HEADER;
    return MDB_SUCCESS;
}

static int record_put_bytes(writer *w, int64_t step, int field, const void *data, size_t len) {
    char key[CKPT_KEY_MAX];
    uint8_t *p;
    field_key(key, step, field);
    if (record_reserve(w, key, field, len, &p) == MDB_SUCCESS && len) memcpy(p, data, len);
    return w->lmdb_rc;
}

static int record_put_floats(writer *w, int64_t step, int field, const float *x, size_t n) {
    char key[CKPT_KEY_MAX];
    uint8_t *p;
    field_key(key, step, field);
    if (record_reserve(w, key, field, n * sizeof(float), &p) == MDB_SUCCESS) floats_to_le(p, x, n);
    return w->lmdb_rc;
}

static int record_put_latest(writer *w, int64_t step) {
    uint8_t *p;
    if (record_reserve(w, CKPT_LATEST_KEY, FIELD_LATEST, 8, &p) == MDB_SUCCESS) put_le(p, (uint64_t)step, 8);
    return w->lmdb_rc;
}

/* Deletes every record of `step` (none is fine). */
static int step_delete(writer *w, int64_t step) {
    char prefix[CKPT_KEY_MAX];
    MDB_cursor *cur;
    step_prefix(prefix, step);
    if ((w->lmdb_rc = mdb_cursor_open(w->txn, w->dbi, &cur)) != MDB_SUCCESS) return w->lmdb_rc;
    for (;;) {
        /* seek again after each delete rather than rely on the cursor's position after it */
        MDB_val k = {CKPT_STEP_PREFIX_LEN, prefix}, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        bool past = rc == MDB_SUCCESS &&
                    (k.mv_size < CKPT_STEP_PREFIX_LEN || memcmp(k.mv_data, prefix, CKPT_STEP_PREFIX_LEN) != 0);
        if (rc == MDB_NOTFOUND || past) {
            w->lmdb_rc = MDB_SUCCESS;
            break;
        }
        if (rc == MDB_SUCCESS) rc = mdb_cursor_del(cur, 0);
        if ((w->lmdb_rc = rc) != MDB_SUCCESS) break;
    }
    mdb_cursor_close(cur);
    return w->lmdb_rc;
}

/* Deletes the lowest-numbered steps other than `keep` until at most `limit` remain. */
static int steps_prune(writer *w, int64_t keep, int limit) {
    int64_t *steps;
    int n, rc = PEFT_OK;
    PEFT_TRY(steps_read(w->txn, w->dbi, w->path, &steps, &n));
    int excess = n - limit;
    for (int i = 0; i < n && excess > 0; i++) {
        if (steps[i] == keep) continue;
        LMDB_CHECK(step_delete(w, steps[i]), w->path, rc, out_free);
        excess--;
    }
out_free:
    free(steps);
    return rc;
}

static int txn_commit(writer *w) {
    MDB_txn *txn = w->txn;
    w->txn = NULL; /* mdb_txn_commit frees the transaction whether it succeeds or not */
    return w->lmdb_rc = mdb_txn_commit(txn);
}

/* Writes the whole checkpoint in one transaction; on any failure aborts it, so the store is as
 * it was. */
static int txn_write(writer *w, MDB_env *env, const ckpt_data *c, int limit, const uint8_t *table, size_t table_len) {
    int rc = PEFT_OK;
    size_t total = c->table->total;
    w->txn = NULL;
    w->lmdb_rc = MDB_SUCCESS;
    LMDB_CHECK(mdb_txn_begin(env, NULL, 0, &w->txn), w->path, rc, out_abort);
    LMDB_CHECK(mdb_dbi_open(w->txn, NULL, 0, &w->dbi), w->path, rc, out_abort);
    LMDB_CHECK(step_delete(w, c->step), w->path, rc, out_abort);
    LMDB_CHECK(record_put_bytes(w, c->step, FIELD_CONFIG, c->config_json, strlen(c->config_json)), w->path, rc,
               out_abort);
    LMDB_CHECK(record_put_bytes(w, c->step, FIELD_TENSORS, table, table_len), w->path, rc, out_abort);
    LMDB_CHECK(record_put_floats(w, c->step, FIELD_PARAMS, c->params, total), w->path, rc, out_abort);
    if (c->adam_m) LMDB_CHECK(record_put_floats(w, c->step, FIELD_ADAM_M, c->adam_m, total), w->path, rc, out_abort);
    if (c->adam_v) LMDB_CHECK(record_put_floats(w, c->step, FIELD_ADAM_V, c->adam_v, total), w->path, rc, out_abort);
    LMDB_CHECK(record_put_bytes(w, c->step, FIELD_STATE, c->state, c->state_len), w->path, rc, out_abort);
    LMDB_CHECK(record_put_latest(w, c->step), w->path, rc, out_abort);
    if (limit > 0 && (rc = steps_prune(w, c->step, limit)) != PEFT_OK) goto out_abort;
    if (txn_commit(w) != MDB_SUCCESS) {
        /* a failed write at commit is most often a full disk: say so, with what is free */
        struct statvfs fs;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", w->path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        unsigned long long free_bytes = statvfs(slash ? dir : ".", &fs) == 0 ? (unsigned long long)fs.f_bavail * fs.f_frsize : 0;
        return err_set(PEFT_EIO, "%s: writing checkpoint %lld failed: %s (%llu bytes free on its filesystem; it needs "
                       "about %zu more; the previous checkpoints are intact)", w->path, (long long)c->step,
                       mdb_strerror(w->lmdb_rc), free_bytes, 3 * total * sizeof(float));
    }
    return PEFT_OK;
out_abort:
    if (w->txn) mdb_txn_abort(w->txn);
    w->txn = NULL;
    return rc;
}

/* The map for one save: what the file holds now, plus this checkpoint (its pages cannot reuse the
 * ones it replaces or prunes, which are freed only when the transaction commits), plus headroom;
 * rounded up to CKPT_MAP_ROUND. */
static size_t map_size_for(const char *path, size_t need) {
    struct stat st;
    size_t used = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
    size_t want = used + need + need / 4 + CKPT_MAP_HEADROOM;
    return (want + CKPT_MAP_ROUND - 1) / CKPT_MAP_ROUND * CKPT_MAP_ROUND;
}

/* LMDB creates its lock file sparse and writes to it through a memory map: on a full disk that
 * write is a SIGBUS, not an error. Allocating the file's blocks first turns it into ENOSPC here.
 * (A larger lock file only gives LMDB more reader slots.) */
static int lock_file_reserve(const char *path) {
    char lock[4200];
    snprintf(lock, sizeof lock, "%s-lock", path);
    if (file_exists(lock)) return PEFT_OK;
    int fd = open(lock, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return err_set(PEFT_EIO, "%s: cannot create: %s", lock, strerror(errno));
    int e = posix_fallocate(fd, 0, 16384);
    close(fd);
    if (e != 0) {
        unlink(lock);
        return err_set(PEFT_EIO, "%s: cannot allocate the lock file: %s (is the disk full?)", lock, strerror(e));
    }
    return PEFT_OK;
}

int ckpt_save(const char *run_dir, const ckpt_data *c, int save_total_limit) {
    PEFT_ASSERT(c && c->config_json && c->table && (c->params || c->table->total == 0) &&
                (c->state || c->state_len == 0));
    if (c->step < 0) return err_set(PEFT_EUSAGE, "%s: checkpoint step %lld is negative", run_dir, (long long)c->step);
    if (save_total_limit < 0)
        return err_set(PEFT_EUSAGE, "--save-total-limit must be 0 (keep all) or positive, got %d", save_total_limit);
    char path[CKPT_PATH_MAX];
    PEFT_TRY(store_path(run_dir, path, sizeof path));
    uint8_t *table;
    size_t table_len;
    PEFT_TRY(tt_serialize(c->table, &table, &table_len));

    int arrays = 1 + (c->adam_m != NULL) + (c->adam_v != NULL), rc = PEFT_OK;
    size_t need = strlen(c->config_json) + table_len + (size_t)arrays * c->table->total * sizeof(float) +
                  c->state_len + FIELD_COUNT * (CKPT_HEADER + CKPT_RECORD_SLACK);
    size_t mapsize = map_size_for(path, need);
    MDB_env *env;
    writer w = {.path = path};
    int dead;
    if ((rc = lock_file_reserve(path)) != PEFT_OK) goto out_free;
    LMDB_CHECK(mdb_env_create(&env), path, rc, out_free);
    LMDB_CHECK(mdb_env_set_mapsize(env, mapsize), path, rc, out_close_env);
    LMDB_CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), path, rc, out_close_env);
    /* free the reader slots of crashed processes so their snapshots stop pinning pages */
    LMDB_CHECK(mdb_reader_check(env, &dead), path, rc, out_close_env);
    rc = txn_write(&w, env, c, save_total_limit, table, table_len);
    if (rc != PEFT_OK && w.lmdb_rc == MDB_MAP_FULL) {
        /* the estimate fell short: no transaction is open, so the map may grow; write it all again */
        LMDB_CHECK(mdb_env_set_mapsize(env, 2 * mapsize), path, rc, out_close_env);
        rc = txn_write(&w, env, c, save_total_limit, table, table_len);
    }
out_close_env:
    mdb_env_close(env);
out_free:
    free(table);
    return rc;
}

/* ---- reading ----------------------------------------------------------------------------------- */

typedef struct reader {
    char path[CKPT_PATH_MAX];
    MDB_env *env;
    MDB_txn *txn; /* read-only, for the whole call */
    MDB_dbi dbi;
} reader;

static void reader_close(reader *r) {
    if (r->txn) mdb_txn_abort(r->txn);
    if (r->env) mdb_env_close(r->env);
    r->txn = NULL;
    r->env = NULL;
}

/* Opens the store read-only inside one read transaction. *exists is false (and nothing is open)
 * when run_dir has no checkpoints.lmdb. */
static int reader_open(reader *r, const char *run_dir, bool *exists) {
    int rc = PEFT_OK;
    memset(r, 0, sizeof *r);
    *exists = false;
    PEFT_TRY(store_path(run_dir, r->path, sizeof r->path));
    if (!file_exists(r->path)) return PEFT_OK;
    *exists = true;
    LMDB_CHECK(mdb_env_create(&r->env), r->path, rc, out_close);
    LMDB_CHECK(mdb_env_open(r->env, r->path, MDB_NOSUBDIR | MDB_RDONLY, 0644), r->path, rc, out_close);
    /* a writer may have grown the map since the open: adopt its size and begin again */
    if (mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->txn) == MDB_MAP_RESIZED)
        LMDB_CHECK(mdb_env_set_mapsize(r->env, 0), r->path, rc, out_close);
    if (!r->txn) LMDB_CHECK(mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->txn), r->path, rc, out_close);
    LMDB_CHECK(mdb_dbi_open(r->txn, NULL, 0, &r->dbi), r->path, rc, out_close);
    return PEFT_OK;
out_close:
    reader_close(r);
    return rc;
}

int ckpt_list(const char *run_dir, int64_t **steps, int *n) {
    reader r;
    bool exists;
    *steps = NULL;
    *n = 0;
    PEFT_TRY(reader_open(&r, run_dir, &exists));
    if (!exists) return PEFT_OK;
    int rc = steps_read(r.txn, r.dbi, r.path, steps, n);
    reader_close(&r);
    return rc;
}

/* "10, 20, 30" or "10, ..., 70, 80, 90, 100, 110 (11 in all)"; at most CKPT_LIST_SHOWN steps,
 * each at most 20 characters, so `cap` >= 256 always holds it. */
static void steps_text(char *buf, size_t cap, const int64_t *steps, int n) {
    PEFT_ASSERT(cap >= 256);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (n > CKPT_LIST_SHOWN && i == 1) {
            used += (size_t)snprintf(buf + used, cap - used, ", ...");
            i = n - (CKPT_LIST_SHOWN - 1);
        }
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)steps[i]);
    }
    if (n > CKPT_LIST_SHOWN) snprintf(buf + used, cap - used, " (%d in all)", n);
}

/* The error for a step with no records: PEFT_EUSAGE naming what exists, or for an empty store
 * saying so. step < 0 means the "latest" record itself is missing, a format error when steps exist. */
static int step_missing(const reader *r, int64_t step) {
    int64_t *steps;
    int n, rc;
    char list[256];
    PEFT_TRY(steps_read(r->txn, r->dbi, r->path, &steps, &n));
    if (n == 0) return err_set(PEFT_EUSAGE, "%s: the run dir holds no checkpoints yet", r->path);
    steps_text(list, sizeof list, steps, n);
    if (step < 0)
        rc = err_set(PEFT_EFORMAT, "%s: record latest is missing although steps %s are stored", r->path, list);
    else
        rc = err_set(PEFT_EUSAGE, "%s: no checkpoint for step %lld; available steps: %s", r->path, (long long)step,
                     list);
    free(steps);
    return rc;
}

static int latest_decode(const char *path, const MDB_val *v, int64_t *step) {
    const uint8_t *p;
    size_t len;
    PEFT_TRY(header_check(path, -1, FIELD_LATEST, v, &p, &len));
    if (len != 8)
        return err_set(PEFT_EFORMAT, "%s: record latest: holds %zu bytes after its header, expected 8", path, len);
    uint64_t s = get_le(p, 8);
    if (s > (uint64_t)INT64_MAX)
        return err_set(PEFT_EFORMAT, "%s: record latest: step %llu is out of range", path, (unsigned long long)s);
    *step = (int64_t)s;
    return PEFT_OK;
}

static int latest_read(const reader *r, int64_t *step) {
    MDB_val k = {sizeof CKPT_LATEST_KEY - 1, (void *)CKPT_LATEST_KEY}, v;
    int mrc = mdb_get(r->txn, r->dbi, &k, &v);
    if (mrc == MDB_NOTFOUND) return step_missing(r, -1);
    if (mrc != MDB_SUCCESS) return err_set(PEFT_EIO, "%s: mdb_get(latest) failed: %s", r->path, mdb_strerror(mrc));
    return latest_decode(r->path, &v, step);
}

/* Collects the records of `step`: rec[field] and have[field] for fields 1..FIELD_STATE; *any is
 * false when the step has none. */
static int step_records(const reader *r, int64_t step, MDB_val rec[FIELD_LATEST], bool have[FIELD_LATEST],
                        bool *any) {
    char prefix[CKPT_KEY_MAX], text[CKPT_KEY_MAX];
    MDB_cursor *cur;
    int rc = PEFT_OK, mrc;
    *any = false;
    step_prefix(prefix, step);
    LMDB_CHECK(mdb_cursor_open(r->txn, r->dbi, &cur), r->path, rc, out);
    MDB_val k = {CKPT_STEP_PREFIX_LEN, prefix}, v;
    for (MDB_cursor_op op = MDB_SET_RANGE; (mrc = mdb_cursor_get(cur, &k, &v, op)) == MDB_SUCCESS; op = MDB_NEXT) {
        int64_t s;
        int field;
        if (k.mv_size < CKPT_STEP_PREFIX_LEN || memcmp(k.mv_data, prefix, CKPT_STEP_PREFIX_LEN) != 0) break;
        if (!key_parse(&k, &s, &field)) {
            rc = err_set(PEFT_EFORMAT, "%s: step %lld: unexpected record '%s'", r->path, (long long)step,
                         key_text(text, &k));
            goto out_close_cursor;
        }
        rec[field] = v;
        have[field] = true;
        *any = true;
    }
    if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = err_set(PEFT_EIO, "%s: mdb_cursor_get failed: %s", r->path, mdb_strerror(mrc));
out_close_cursor:
    mdb_cursor_close(cur);
out:
    return rc;
}

/* Copies a float record of `total` floats out of the map. */
static int floats_load(const char *path, int64_t step, int field, const MDB_val *v, size_t total, float **out) {
    const uint8_t *p;
    size_t len;
    PEFT_TRY(header_check(path, step, field, v, &p, &len));
    if (len % sizeof(float) != 0 || len / sizeof(float) != total)
        return err_set(PEFT_EFORMAT, "%s: step %lld record %s: holds %zu bytes, the tensor table needs %zu floats",
                       path, (long long)step, field_name[field], len, total);
    float *x = malloc((total ? total : 1) * sizeof *x);
    if (!x) return err_set(PEFT_ENOMEM, "out of memory loading %zu floats", total);
    floats_from_le(x, p, total);
    *out = x;
    return PEFT_OK;
}

/* Copies `len` bytes out of the map, NUL-terminated (so also fit for the config string). */
static int bytes_copy(const uint8_t *p, size_t len, char **out) {
    char *b = malloc(len + 1);
    if (!b) return err_set(PEFT_ENOMEM, "out of memory");
    memcpy(b, p, len);
    b[len] = '\0';
    *out = b;
    return PEFT_OK;
}

/* Checks and copies the records of `step` (rec[field] where have[field]) into *out. */
static int step_decode(const char *path, int64_t step, const MDB_val rec[FIELD_LATEST],
                       const bool have[FIELD_LATEST], ckpt_loaded *out) {
    const uint8_t *p;
    size_t len;
    char where[CKPT_PATH_MAX + CKPT_KEY_MAX];
    const int required[] = {FIELD_CONFIG, FIELD_TENSORS, FIELD_PARAMS, FIELD_STATE};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (!have[required[i]])
            return err_set(PEFT_EFORMAT, "%s: step %lld: record %s is missing", path, (long long)step,
                           field_name[required[i]]);

    PEFT_TRY(header_check(path, step, FIELD_TENSORS, &rec[FIELD_TENSORS], &p, &len));
    snprintf(where, sizeof where, "%s: step %lld record tensors", path, (long long)step);
    PEFT_TRY(tt_deserialize(p, len, where, &out->table));
    size_t total = out->table.total;

    PEFT_TRY(header_check(path, step, FIELD_CONFIG, &rec[FIELD_CONFIG], &p, &len));
    if (memchr(p, '\0', len))
        return err_set(PEFT_EFORMAT, "%s: step %lld record config: contains a NUL byte", path, (long long)step);
    PEFT_TRY(bytes_copy(p, len, &out->config_json));

    PEFT_TRY(floats_load(path, step, FIELD_PARAMS, &rec[FIELD_PARAMS], total, &out->params));
    if (have[FIELD_ADAM_M]) PEFT_TRY(floats_load(path, step, FIELD_ADAM_M, &rec[FIELD_ADAM_M], total, &out->adam_m));
    if (have[FIELD_ADAM_V]) PEFT_TRY(floats_load(path, step, FIELD_ADAM_V, &rec[FIELD_ADAM_V], total, &out->adam_v));

    PEFT_TRY(header_check(path, step, FIELD_STATE, &rec[FIELD_STATE], &p, &len));
    if (len) {
        char *state = NULL;
        PEFT_TRY(bytes_copy(p, len, &state));
        out->state = state;
        out->state_len = len;
    }
    out->step = step;
    return PEFT_OK;
}

static int step_load(const reader *r, int64_t step, bool from_latest, ckpt_loaded *out) {
    MDB_val rec[FIELD_LATEST] = {{0}};
    bool have[FIELD_LATEST] = {false}, any;
    PEFT_TRY(step_records(r, step, rec, have, &any));
    if (!any) {
        if (from_latest)
            return err_set(PEFT_EFORMAT, "%s: record latest names step %lld, which has no records", r->path,
                           (long long)step);
        return step_missing(r, step);
    }
    return step_decode(r->path, step, rec, have, out);
}

/* ckpt_decode_records without the cleanup on error. */
static int records_decode(const char *path, const ckpt_record *recs, size_t n, ckpt_loaded *out) {
    MDB_val rec[FIELD_LATEST] = {{0}}, latest = {0};
    bool have[FIELD_LATEST] = {false}, have_latest = false;
    char text[CKPT_KEY_MAX];
    int64_t step = -1;
    for (size_t i = 0; i < n; i++) {
        MDB_val k = {recs[i].key_len, (void *)recs[i].key};
        if (!key_is_latest(&k)) continue;
        if (have_latest) return err_set(PEFT_EFORMAT, "%s: record latest appears twice", path);
        latest = (MDB_val){recs[i].value_len, (void *)recs[i].value};
        have_latest = true;
    }
    if (!have_latest) return err_set(PEFT_EFORMAT, "%s: record latest is missing", path);
    PEFT_TRY(latest_decode(path, &latest, &step));
    for (size_t i = 0; i < n; i++) {
        MDB_val k = {recs[i].key_len, (void *)recs[i].key};
        int64_t s;
        int field;
        if (key_is_latest(&k)) continue;
        if (!key_parse(&k, &s, &field))
            return err_set(PEFT_EFORMAT, "%s: unexpected record '%s' (not part of the checkpoint layout)", path,
                           key_text(text, &k));
        if (s != step) continue;
        if (have[field])
            return err_set(PEFT_EFORMAT, "%s: step %lld record %s appears twice", path, (long long)step,
                           field_name[field]);
        rec[field] = (MDB_val){recs[i].value_len, (void *)recs[i].value};
        have[field] = true;
    }
    return step_decode(path, step, rec, have, out);
}

int ckpt_decode_records(const char *path, const ckpt_record *recs, size_t n, ckpt_loaded *out) {
    memset(out, 0, sizeof *out);
    int rc = records_decode(path, recs, n, out);
    if (rc) ckpt_loaded_free(out);
    return rc;
}

int ckpt_load(const char *run_dir, int64_t step, ckpt_loaded *out) {
    reader r;
    bool exists;
    int rc;
    memset(out, 0, sizeof *out);
    if (step < -1)
        return err_set(PEFT_EUSAGE, "%s: checkpoint step %lld: expected a step >= 0, or -1 for the latest", run_dir,
                       (long long)step);
    PEFT_TRY(reader_open(&r, run_dir, &exists));
    if (!exists)
        return err_set(PEFT_EUSAGE, "%s: the run dir holds no checkpoints (no %s)", run_dir, CKPT_FILE_NAME);
    bool from_latest = step == -1;
    if (from_latest && (rc = latest_read(&r, &step)) != PEFT_OK) goto out_close;
    rc = step_load(&r, step, from_latest, out);
out_close:
    reader_close(&r);
    if (rc) ckpt_loaded_free(out);
    return rc;
}

void ckpt_loaded_free(ckpt_loaded *c) {
    if (!c) return;
    free(c->config_json);
    tt_free(&c->table);
    free(c->params);
    free(c->adam_m);
    free(c->adam_v);
    free(c->state);
    memset(c, 0, sizeof *c);
}
