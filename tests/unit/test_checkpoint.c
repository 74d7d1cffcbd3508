/*
 * test_checkpoint.c - the checkpoint store (store/checkpoint.h): round trips of every field, several
 * steps with list / latest / a chosen step / a missing one, --save-total-limit pruning, replacing a
 * step, a table of tampered records, crash safety (a child killed with SIGKILL in the middle of its
 * commit, and one killed while saving in a loop), a failing write (a file size limit standing in
 * for a full disk), map growth past the initial map, and a run dir that does not exist.
 *
 * Float arrays round-trip bit for bit, so every comparison of them uses tolerance 0.
 */
#include "testutil.h"

#include "error.h"
#include "store/checkpoint.h"

#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------ */

enum { ARR_PARAMS, ARR_M, ARR_V };

/* Exactly representable values that differ between steps and arrays. */
static float value_at(int64_t step, int arr, size_t i) {
    return (float)(int)(((uint64_t)step * 31 + (uint64_t)arr * 7 + i) % 2048) * 0.5f - 256.0f;
}

static float *make_array(int64_t step, int arr, size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = value_at(step, arr, i);
    return x;
}

/* A small LoRA-like table: two matrices and a bias (not decayed); padding makes total > numel. */
static void small_table(tensor_table *t) {
    memset(t, 0, sizeof *t);
    assert_int_equal(tt_add(t, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 2,
                            (int64_t[]){4, 9}, true, NULL), PEFT_OK);
    assert_int_equal(tt_add(t, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 2,
                            (int64_t[]){9, 4}, true, NULL), PEFT_OK);
    assert_int_equal(tt_add(t, "base_model.model.model.layers.0.mlp.bias", 1, (int64_t[]){5}, false, NULL), PEFT_OK);
}

/* One rows x cols tensor. */
static void big_table(tensor_table *t, int64_t rows, int64_t cols) {
    memset(t, 0, sizeof *t);
    assert_int_equal(tt_add(t, "base_model.model.lm_head.weight", 2, (int64_t[]){rows, cols}, true, NULL), PEFT_OK);
}

static void config_for(char *buf, size_t cap, int64_t step) {
    snprintf(buf, cap, "{\"learning_rate\": 0.0002, \"lora_r\": 8, \"tag\": %lld}", (long long)step);
}

static void state_for(char *buf, size_t cap, int64_t step) {
    snprintf(buf, cap, "schedule=%lld;cursor[0]=%lld;cursor[1]=%lld;rng=0123456789abcdef", (long long)step,
             (long long)step * 3, (long long)step * 3 + 1);
}

/* Saves checkpoint `step` of table t with params (and moments when asked) from value_at(). */
static int save_step(const char *dir, const tensor_table *t, int64_t step, int moments, int limit) {
    char config[128], state[128];
    config_for(config, sizeof config, step);
    state_for(state, sizeof state, step);
    float *p = make_array(step, ARR_PARAMS, t->total);
    float *m = moments ? make_array(step, ARR_M, t->total) : NULL;
    float *v = moments ? make_array(step, ARR_V, t->total) : NULL;
    ckpt_data c = {.step = step, .config_json = config, .table = t, .params = p, .adam_m = m, .adam_v = v,
                   .state = state, .state_len = strlen(state)};
    int rc = ckpt_save(dir, &c, limit);
    free(p);
    free(m);
    free(v);
    return rc;
}

static void save_ok(const char *dir, const tensor_table *t, int64_t step, int moments, int limit) {
    if (save_step(dir, t, step, moments, limit) != PEFT_OK)
        fail_msg("saving step %lld: %s", (long long)step, err_msg());
}

static void check_array(const char *what, const float *got, int64_t step, int arr, size_t n) {
    assert_non_null(got);
    float *want = make_array(step, arr, n);
    tu_assert_close(what, got, want, n, 0.0);
    free(want);
}

/* Loads `step` (-1: latest) and checks every field against what save_step(want_step) wrote. */
static void check_load(const char *dir, const tensor_table *t, int64_t step, int64_t want_step, int moments) {
    ckpt_loaded r;
    if (ckpt_load(dir, step, &r) != PEFT_OK) fail_msg("loading step %lld: %s", (long long)step, err_msg());
    char config[128], state[128];
    config_for(config, sizeof config, want_step);
    state_for(state, sizeof state, want_step);
    assert_int_equal(r.step, want_step);
    assert_string_equal(r.config_json, config);
    assert_int_equal(r.table.n, t->n);
    assert_int_equal(r.table.total, t->total);
    assert_true(tt_hash(&r.table) == tt_hash(t));
    for (int i = 0; i < t->n; i++) assert_int_equal(r.table.e[i].decay, t->e[i].decay);
    check_array("params", r.params, want_step, ARR_PARAMS, t->total);
    if (moments) {
        check_array("adam_m", r.adam_m, want_step, ARR_M, t->total);
        check_array("adam_v", r.adam_v, want_step, ARR_V, t->total);
    } else {
        assert_null(r.adam_m);
        assert_null(r.adam_v);
    }
    assert_int_equal(r.state_len, strlen(state));
    assert_memory_equal(r.state, state, r.state_len);
    ckpt_loaded_free(&r);
}

static void expect_steps(const char *dir, const int64_t *want, int n_want) {
    int64_t *steps;
    int n;
    if (ckpt_list(dir, &steps, &n) != PEFT_OK) fail_msg("listing %s: %s", dir, err_msg());
    if (n != n_want) fail_msg("%s holds %d steps, expected %d", dir, n, n_want);
    for (int i = 0; i < n; i++)
        if (steps[i] != want[i])
            fail_msg("step [%d] is %lld, expected %lld", i, (long long)steps[i], (long long)want[i]);
    free(steps);
}

static void store_path(char *buf, size_t cap, const char *dir) {
    snprintf(buf, cap, "%s/%s", dir, CKPT_FILE_NAME);
}

static size_t file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) fail_msg("cannot stat %s", path);
    return (size_t)st.st_size;
}

/* The map size recorded in the store, as a fresh reader sees it. */
static size_t recorded_mapsize(const char *dir) {
    char path[4200];
    store_path(path, sizeof path, dir);
    MDB_env *env;
    MDB_envinfo info;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_env_info(env, &info), 0);
    mdb_env_close(env);
    return info.me_mapsize;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- round trip, steps, pruning, replacing ------------------------------------------------- */

static void test_round_trip(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    tensor_table t;
    small_table(&t);
    assert_true(t.total > tt_numel(&t));
    save_ok(dir, &t, 7, 1, 0);
    check_load(dir, &t, 7, 7, 1);
    check_load(dir, &t, -1, 7, 1);

    /* no moments and empty state: NULL out, nothing stored */
    float *p = make_array(8, ARR_PARAMS, t.total);
    char config[128];
    config_for(config, sizeof config, 8);
    ckpt_data c = {.step = 8, .config_json = config, .table = &t, .params = p};
    if (ckpt_save(dir, &c, 0) != PEFT_OK) fail_msg("%s", err_msg());
    ckpt_loaded r;
    if (ckpt_load(dir, -1, &r) != PEFT_OK) fail_msg("%s", err_msg());
    assert_int_equal(r.step, 8);
    assert_string_equal(r.config_json, config);
    check_array("params", r.params, 8, ARR_PARAMS, t.total);
    assert_null(r.adam_m);
    assert_null(r.adam_v);
    assert_null(r.state);
    assert_int_equal(r.state_len, 0);
    ckpt_loaded_free(&r);
    ckpt_loaded_free(&r); /* a freed struct is zeroed: freeing again is harmless */
    ckpt_loaded_free(NULL);
    free(p);

    /* both files exist after a save: the store and its lock */
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoints.lmdb-lock", dir);
    assert_true(file_size(path) > 0);
    tt_free(&t);
    tu_rmtree(dir);
    free(dir);
}

static void test_several_steps(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    tensor_table t;
    small_table(&t);

    /* an existing run dir without a store: no steps, and loading says so */
    expect_steps(dir, NULL, 0);
    ckpt_loaded r;
    tu_expect_error(ckpt_load(dir, -1, &r), PEFT_EUSAGE, dir, "no checkpoints", NULL);
    assert_null(r.params);

    int64_t want[9];
    for (int i = 0; i < 9; i++) {
        want[i] = 10 * (i + 1);
        save_ok(dir, &t, want[i], i % 2, 0);
    }
    expect_steps(dir, want, 9);
    check_load(dir, &t, -1, 90, 0);
    check_load(dir, &t, 30, 30, 0);
    check_load(dir, &t, 40, 40, 1);

    char path[4200];
    store_path(path, sizeof path, dir);
    tu_expect_error(ckpt_load(dir, 35, &r), PEFT_EUSAGE, path, "no checkpoint for step 35",
                    "10, ..., 50, 60, 70, 80, 90 (9 in all)");
    assert_null(r.params);
    assert_null(r.config_json);
    tu_expect_error(ckpt_load(dir, -2, &r), PEFT_EUSAGE, "-2", "-1 for the latest", NULL);

    /* few steps are listed in full */
    char *dir2 = tu_tmpdir();
    save_ok(dir2, &t, 3, 0, 0);
    save_ok(dir2, &t, 1, 0, 0);
    tu_expect_error(ckpt_load(dir2, 2, &r), PEFT_EUSAGE, "no checkpoint for step 2", "available steps: 1, 3", NULL);
    /* latest is the step saved last, not the highest */
    check_load(dir2, &t, -1, 1, 0);

    tt_free(&t);
    tu_rmtree(dir);
    tu_rmtree(dir2);
    free(dir);
    free(dir2);
}

static void test_save_total_limit(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    tensor_table t;
    small_table(&t);
    save_ok(dir, &t, 1, 1, 3);
    save_ok(dir, &t, 2, 1, 3);
    save_ok(dir, &t, 3, 1, 3);
    expect_steps(dir, (int64_t[]){1, 2, 3}, 3);
    save_ok(dir, &t, 4, 1, 3);
    expect_steps(dir, (int64_t[]){2, 3, 4}, 3);
    check_load(dir, &t, -1, 4, 1);
    check_load(dir, &t, 2, 2, 1);
    ckpt_loaded r;
    tu_expect_error(ckpt_load(dir, 1, &r), PEFT_EUSAGE, "no checkpoint for step 1", "2, 3, 4", NULL);

    /* the step just written survives even when it is the lowest */
    save_ok(dir, &t, 1, 1, 3);
    expect_steps(dir, (int64_t[]){1, 3, 4}, 3);
    check_load(dir, &t, -1, 1, 1);

    /* a lower limit prunes several at once; 0 keeps everything */
    save_ok(dir, &t, 5, 1, 1);
    expect_steps(dir, (int64_t[]){5}, 1);
    save_ok(dir, &t, 6, 1, 0);
    save_ok(dir, &t, 7, 1, 0);
    expect_steps(dir, (int64_t[]){5, 6, 7}, 3);

    tu_expect_error(save_step(dir, &t, 8, 1, -1), PEFT_EUSAGE, "--save-total-limit", "-1", NULL);
    expect_steps(dir, (int64_t[]){5, 6, 7}, 3);
    tt_free(&t);
    tu_rmtree(dir);
    free(dir);
}

static void test_replace_step(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    tensor_table t, t2;
    small_table(&t);
    big_table(&t2, 3, 7);
    save_ok(dir, &t, 4, 0, 0);
    save_ok(dir, &t, 5, 1, 0);

    /* same step, other values, no moments, another table: the old records all go */
    char config[] = "{\"replaced\": true}";
    float *p = make_array(500, ARR_PARAMS, t2.total);
    const char st[] = "BB";
    ckpt_data c = {.step = 5, .config_json = config, .table = &t2, .params = p, .state = st, .state_len = 2};
    if (ckpt_save(dir, &c, 0) != PEFT_OK) fail_msg("%s", err_msg());
    expect_steps(dir, (int64_t[]){4, 5}, 2);
    ckpt_loaded r;
    if (ckpt_load(dir, 5, &r) != PEFT_OK) fail_msg("%s", err_msg());
    assert_string_equal(r.config_json, config);
    assert_int_equal(r.table.n, 1);
    assert_true(tt_hash(&r.table) == tt_hash(&t2));
    check_array("params", r.params, 500, ARR_PARAMS, t2.total);
    assert_null(r.adam_m);
    assert_null(r.adam_v);
    assert_int_equal(r.state_len, 2);
    assert_memory_equal(r.state, "BB", 2);
    ckpt_loaded_free(&r);
    check_load(dir, &t, 4, 4, 0);
    free(p);
    tt_free(&t);
    tt_free(&t2);
    tu_rmtree(dir);
    free(dir);
}

/* ---- tampered records -------------------------------------------------------------------------- */

typedef enum {
    T_GARBAGE,       /* the whole value replaced by text */
    T_SHORT_HEADER,  /* only the first 3 bytes left */
    T_VERSION,       /* header version 2 */
    T_FIELD_ID,      /* header names another field */
    T_TRUNCATE,      /* last 4 bytes cut */
    T_PAYLOAD,       /* a good header followed by garbage */
    T_DELETE,        /* record removed */
    T_ADD,           /* an extra record under the step */
} tamper_kind;

typedef struct tamper_case {
    const char *key; /* a field of the step, or "latest" */
    tamper_kind kind;
    int64_t load;    /* step to load */
    const char *phrase1, *phrase2;
} tamper_case;

/* Rewrites (or deletes) one record of `step` (or "latest") directly through LMDB. */
static void tamper(const char *dir, int64_t step, const tamper_case *tc) {
    char path[4200], key[128];
    store_path(path, sizeof path, dir);
    if (!strcmp(tc->key, "latest")) snprintf(key, sizeof key, "latest");
    else snprintf(key, sizeof key, "ckpt/%020lld/%s", (long long)step, tc->key);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_mapsize(env, file_size(path) + (64u << 20)), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {strlen(key), key}, v = {0, NULL};
    int found = mdb_get(txn, dbi, &k, &v);
    assert_int_equal(found, tc->kind == T_ADD ? MDB_NOTFOUND : 0);
    unsigned char *b = malloc(v.mv_size + 64);
    assert_non_null(b);
    size_t n = tc->kind == T_ADD ? 0 : v.mv_size;
    if (n) memcpy(b, v.mv_data, n);
    switch (tc->kind) {
    case T_GARBAGE: n = (size_t)snprintf((char *)b, 64, "this is not a checkpoint record"); break;
    case T_SHORT_HEADER: n = 3; break;
    case T_VERSION: b[4] = 2; break;
    case T_FIELD_ID: b[6] = b[6] == 4 ? 5 : 4; break;
    case T_TRUNCATE: n -= 4; break;
    case T_PAYLOAD: memcpy(b + 8, "\x01\x02\x03", 3); n = 11; break;
    case T_ADD: memcpy(b, "PFTC\x01\x00\x01\x00{}", 10); n = 10; break;
    case T_DELETE: break;
    }
    if (tc->kind == T_DELETE) assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    else {
        MDB_val nv = {n, b};
        assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(b);
}

static void test_tampered_records(void **state) {
    (void)state;
    const tamper_case cases[] = {
        {"params", T_GARBAGE, 5, "step 5 record params", "magic"},
        {"params", T_SHORT_HEADER, 5, "step 5 record params", "shorter than its 8-byte header"},
        {"config", T_VERSION, 5, "step 5 record config", "version 2"},
        {"adam_m", T_FIELD_ID, 5, "step 5 record adam_m", "header says field 5"},
        {"adam_v", T_FIELD_ID, -1, "step 5 record adam_v", "header says field 4"},
        {"params", T_TRUNCATE, 5, "step 5 record params", "the tensor table needs"},
        {"adam_m", T_TRUNCATE, 5, "step 5 record adam_m", "the tensor table needs"},
        {"tensors", T_PAYLOAD, 5, "step 5 record tensors", "tensor table"},
        {"tensors", T_TRUNCATE, 5, "step 5 record tensors", "truncated"},
        {"state", T_SHORT_HEADER, 5, "step 5 record state", "header"},
        {"config", T_DELETE, 5, "step 5", "record config is missing"},
        {"params", T_DELETE, -1, "step 5", "record params is missing"},
        {"bogus", T_ADD, 5, "step 5", "unexpected record 'ckpt/00000000000000000005/bogus'"},
        {"latest", T_GARBAGE, -1, "record latest", "magic"},
        {"latest", T_TRUNCATE, -1, "record latest", "expected 8"},
        {"latest", T_DELETE, -1, "record latest is missing", "3, 5"},
    };
    tensor_table t;
    small_table(&t);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const tamper_case *tc = &cases[i];
        char *dir = tu_tmpdir(), path[4200];
        store_path(path, sizeof path, dir);
        save_ok(dir, &t, 3, 1, 0);
        save_ok(dir, &t, 5, 1, 0);
        tamper(dir, 5, tc);
        ckpt_loaded r;
        int rc = ckpt_load(dir, tc->load, &r);
        if (rc != PEFT_EFORMAT || !strstr(err_msg(), path) || !strstr(err_msg(), tc->phrase1) ||
            !strstr(err_msg(), tc->phrase2))
            fail_msg("case %zu (%s): expected a format error naming %s, [%s] and [%s]; got %d: \"%s\"", i, tc->key,
                     path, tc->phrase1, tc->phrase2, rc, err_msg());
        assert_null(r.params);
        assert_null(r.config_json);
        assert_null(r.table.e);
        /* the other step is untouched and still loads */
        check_load(dir, &t, 3, 3, 1);
        tu_rmtree(dir);
        free(dir);
    }

    /* latest naming a step whose records are gone */
    char *dir = tu_tmpdir(), path[4200];
    store_path(path, sizeof path, dir);
    save_ok(dir, &t, 5, 0, 0);
    save_ok(dir, &t, 9, 0, 0);
    const char *fields[] = {"config", "tensors", "params", "state"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        tamper_case drop = {fields[i], T_DELETE, 0, NULL, NULL};
        tamper(dir, 9, &drop);
    }
    ckpt_loaded r;
    tu_expect_error(ckpt_load(dir, -1, &r), PEFT_EFORMAT, path, "record latest names step 9, which has no records",
                    NULL);
    expect_steps(dir, (int64_t[]){5}, 1);
    check_load(dir, &t, 5, 5, 0);
    tu_rmtree(dir);
    free(dir);
    tt_free(&t);
}

/* ---- crash safety and failing writes --------------------------------------------------------- */

/* A child saves a 48 MB checkpoint (params and both moments); as soon as the file grows (its
 * commit is writing the new pages) the parent stops it, checks that the new step is not committed
 * yet, i.e. the child is mid-commit, and kills it with SIGKILL. The store must still open with the
 * previous latest whole, and take new checkpoints (the dead writer's lock is recovered). Should
 * the child commit before it is stopped, the attempt is repeated. */
static void test_kill9_mid_commit(void **state) {
    (void)state;
    tensor_table small, big;
    small_table(&small);
    big_table(&big, 2048, 2048);
    int caught = 0, attempts = 0;
    for (; attempts < 5 && !caught; attempts++) {
        char *dir = tu_tmpdir(), path[4200];
        store_path(path, sizeof path, dir);
        save_ok(dir, &small, 1, 1, 0);
        save_ok(dir, &small, 2, 1, 0);
        size_t before = file_size(path);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) _exit(save_step(dir, &big, 3, 1, 1) == PEFT_OK ? 0 : 1);
        int status = 0, stopped = 0;
        struct stat st;
        while (!stopped) {
            if (stat(path, &st) == 0 && (size_t)st.st_size > before) {
                kill(pid, SIGSTOP);
                stopped = 1;
            } else if (waitpid(pid, &status, WNOHANG) == pid) {
                break; /* finished before we saw the file grow */
            }
        }
        if (stopped) {
            assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
            assert_true(WIFSTOPPED(status));
            ckpt_loaded r;
            if (ckpt_load(dir, -1, &r) != PEFT_OK) fail_msg("reading while the writer is stopped: %s", err_msg());
            caught = r.step == 2;
            ckpt_loaded_free(&r);
            kill(pid, SIGKILL);
            assert_int_equal(waitpid(pid, &status, 0), pid);
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        }
        if (caught) {
            assert_true(file_size(path) > before); /* part of the new pages did reach the file */
            expect_steps(dir, (int64_t[]){1, 2}, 2);
            check_load(dir, &small, -1, 2, 1);
            check_load(dir, &small, 1, 1, 1);
        } else {
            expect_steps(dir, (int64_t[]){3}, 1);
            check_load(dir, &big, -1, 3, 1);
        }
        save_ok(dir, &big, 4, 1, 1);
        expect_steps(dir, (int64_t[]){4}, 1);
        check_load(dir, &big, -1, 4, 1);
        tu_rmtree(dir);
        free(dir);
    }
    if (!caught) fail_msg("the writer committed before it could be stopped, %d times", attempts);
    print_message("killed mid-commit on attempt %d\n", attempts);
    tt_free(&small);
    tt_free(&big);
}

/* A child saving 16 MB checkpoints in a loop (limit 2) is killed with SIGKILL about half-way into
 * a save. Whatever moment the signal lands on, the store must open, list only whole steps, and its
 * latest must be the last acknowledged save or the one in flight. */
static void test_kill9_while_saving(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    tensor_table big;
    big_table(&big, 2048, 2048);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (int64_t step = 100;; step++) {
            char ack = save_step(dir, &big, step, 0, 2) == PEFT_OK ? 'k' : 'E';
            if (ack == 'E') fprintf(stderr, "child: %s\n", err_msg());
            if (write(fds[1], &ack, 1) != 1 || ack == 'E') _exit(1);
        }
    }
    close(fds[1]);
    char ack;
    double t0 = now_seconds();
    int acked = 0;
    for (; acked < 3; acked++) {
        if (read(fds[0], &ack, 1) != 1 || ack != 'k') {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("the saving child failed after %d saves", acked);
        }
    }
    double per_save = (now_seconds() - t0) / acked;
    long half_ns = (long)(per_save / 2 * 1e9);
    struct timespec half = {half_ns / 1000000000L, half_ns % 1000000000L};
    nanosleep(&half, NULL);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* saves acknowledged after the three we counted (the pipe may hold more) */
    while (read(fds[0], &ack, 1) == 1) acked++;
    close(fds[0]);
    int64_t last_acked = 100 + acked - 1;

    ckpt_loaded r;
    if (ckpt_load(dir, -1, &r) != PEFT_OK) fail_msg("after kill -9: %s", err_msg());
    int64_t latest = r.step;
    ckpt_loaded_free(&r);
    print_message("kill -9 after %.0f ms per save: last acknowledged %lld, latest %lld\n", per_save * 1e3,
                  (long long)last_acked, (long long)latest);
    if (latest != last_acked && latest != last_acked + 1)
        fail_msg("latest is %lld, expected %lld or %lld", (long long)latest, (long long)last_acked,
                 (long long)last_acked + 1);
    check_load(dir, &big, -1, latest, 0);
    expect_steps(dir, (int64_t[]){latest - 1, latest}, 2);
    check_load(dir, &big, latest - 1, latest - 1, 0);
    save_ok(dir, &big, latest + 1, 0, 2);
    expect_steps(dir, (int64_t[]){latest, latest + 1}, 2);
    tt_free(&big);
    tu_rmtree(dir);
    free(dir);
}

/* A save that cannot write (a file size limit here; a full disk fails the same way) reports
 * PEFT_EIO naming the file and changes nothing: no new step, no pruning, latest as before; and the
 * next save that fits works, so no transaction or lock was left behind. */
static void test_failing_write(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), path[4200];
    store_path(path, sizeof path, dir);
    tensor_table small, big;
    small_table(&small);
    big_table(&big, 2048, 2048);
    save_ok(dir, &small, 1, 1, 0);
    save_ok(dir, &small, 2, 1, 0);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = file_size(path) + (1u << 20);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = save_step(dir, &big, 3, 1, 1);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", err_msg());
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    if (rc != PEFT_EIO || !strstr(msg, path)) fail_msg("expected PEFT_EIO naming %s; got %d: \"%s\"", path, rc, msg);

    expect_steps(dir, (int64_t[]){1, 2}, 2);
    check_load(dir, &small, -1, 2, 1);
    save_ok(dir, &big, 3, 1, 1);
    expect_steps(dir, (int64_t[]){3}, 1);
    check_load(dir, &big, 3, 3, 1);
    tt_free(&small);
    tt_free(&big);
    tu_rmtree(dir);
    free(dir);
}

/* ---- map growth and bad run dirs --------------------------------------------------------------- */

static void test_map_growth(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    tensor_table small, big;
    small_table(&small);
    big_table(&big, 4096, 4096); /* 64 MB of params */
    size_t big_bytes = big.total * sizeof(float);
    save_ok(dir, &small, 1, 0, 0);
    size_t initial = recorded_mapsize(dir);
    if (initial >= big_bytes) fail_msg("initial map %zu bytes already holds %zu", initial, big_bytes);

    save_ok(dir, &big, 2, 0, 0);
    assert_true(recorded_mapsize(dir) > big_bytes);
    check_load(dir, &big, -1, 2, 0);
    /* replacing it needs room for both copies within one transaction */
    save_ok(dir, &big, 2, 0, 0);
    save_ok(dir, &big, 3, 0, 2);
    expect_steps(dir, (int64_t[]){2, 3}, 2);
    check_load(dir, &big, 3, 3, 0);
    tt_free(&small);
    tt_free(&big);
    tu_rmtree(dir);
    free(dir);
}

static void test_bad_run_dir(void **state) {
    (void)state;
    char *tmp = tu_tmpdir(), dir[4200], file[4200];
    snprintf(dir, sizeof dir, "%s/no-such-run", tmp);
    tensor_table t;
    small_table(&t);
    tu_expect_error(save_step(dir, &t, 1, 1, 0), PEFT_EUSAGE, dir, "does not exist", NULL);
    int64_t sentinel[1] = {42}, *steps = sentinel;
    int n = 5;
    tu_expect_error(ckpt_list(dir, &steps, &n), PEFT_EUSAGE, dir, "does not exist", NULL);
    assert_null(steps);
    assert_int_equal(n, 0);
    ckpt_loaded r;
    tu_expect_error(ckpt_load(dir, -1, &r), PEFT_EUSAGE, dir, "does not exist", NULL);

    /* a plain file where the run dir should be */
    snprintf(file, sizeof file, "%s/a-file", tmp);
    tu_write_file(file, "x", 1);
    tu_expect_error(save_step(file, &t, 1, 1, 0), PEFT_EUSAGE, file, "not a directory", NULL);
    tu_expect_error(save_step(tmp, &t, -4, 1, 0), PEFT_EUSAGE, "step -4", "negative", NULL);

    /* a store that is not an LMDB file */
    char store[4200];
    store_path(store, sizeof store, tmp);
    tu_write_file(store, "not lmdb at all, just some bytes of text padding it out", 56);
    tu_expect_error(ckpt_load(tmp, -1, &r), PEFT_EIO, store, NULL, NULL);
    tt_free(&t);
    tu_rmtree(tmp);
    free(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_several_steps),
        cmocka_unit_test(test_save_total_limit),
        cmocka_unit_test(test_replace_step),
        cmocka_unit_test(test_tampered_records),
        cmocka_unit_test(test_kill9_mid_commit),
        cmocka_unit_test(test_kill9_while_saving),
        cmocka_unit_test(test_failing_write),
        cmocka_unit_test(test_map_growth),
        cmocka_unit_test(test_bad_run_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
