/*
 * test_dataset.c - the LMDB dataset store: round trip through shards and the validation split,
 * the manifest's counts, the finished-or-nothing directory rule, corrupt records, and the
 * global sample order (a permutation per epoch, deterministic, resumable from any position).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "data/dataset.h"
#include "data/sampler.h"
#include "error.h"
#include "io/file.h"
#include "testutil.h"

static dataset_info base_info(int shards) {
    dataset_info in = {.seq_len = 8, .packed = true, .num_shards = shards, .seed = 3, .vocab_size = 100,
                       .eos_token_id = 99};
    snprintf(in.tokenizer_fingerprint, sizeof in.tokenizer_fingerprint, "0123456789abcdef");
    return in;
}

/* record i of a split: length 1 + i % 8, ids 10*i + t, mask on odd positions */
static void make_record(uint64_t i, int32_t *ids, uint8_t *mask, int *n) {
    *n = 1 + (int)(i % 8);
    for (int t = 0; t < *n; t++) {
        ids[t] = (int32_t)(10 * i + (uint64_t)t);
        mask[t] = t % 2;
    }
}

static char *write_dataset(int shards, int ntrain, int nval) {
    char *tmp = tu_tmpdir();
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    dataset_info in = base_info(shards);
    dataset_writer *w;
    assert_int_equal(dataset_writer_open(dir, &in, &w), PEFT_OK);
    int32_t ids[8];
    uint8_t mask[8];
    int n;
    for (int i = 0; i < ntrain; i++) {
        make_record((uint64_t)i, ids, mask, &n);
        assert_int_equal(dataset_writer_add(w, DATASET_TRAIN, ids, mask, n), PEFT_OK);
    }
    for (int i = 0; i < nval; i++) {
        make_record((uint64_t)i + 1000, ids, mask, &n);
        assert_int_equal(dataset_writer_add(w, DATASET_VAL, ids, mask, n), PEFT_OK);
    }
    dataset_writer_count_documents(w, DATASET_TRAIN, 7);
    assert_int_equal(dataset_writer_finish(w), PEFT_OK);
    return tmp;
}

static void test_round_trip(void **state) {
    (void)state;
    char *tmp = write_dataset(3, 10000, 17);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    dataset *d;
    if (dataset_open(dir, &d)) fail_msg("%s", err_msg());
    const dataset_info *in = dataset_get_info(d);
    assert_int_equal(in->num_shards, 3);
    assert_int_equal(in->sequences[DATASET_TRAIN], 10000);
    assert_int_equal(in->sequences[DATASET_VAL], 17);
    assert_int_equal(in->documents[DATASET_TRAIN], 7);
    assert_string_equal(in->tokenizer_fingerprint, "0123456789abcdef");
    assert_int_equal(in->eos_token_id, 99);
    int32_t ids[8], want_ids[8];
    uint8_t mask[8], want_mask[8];
    int n, want_n;
    uint64_t tokens = 0;
    for (uint64_t i = 0; i < 10000; i++) {
        assert_int_equal(dataset_read(d, DATASET_TRAIN, i, ids, mask, &n), PEFT_OK);
        make_record(i, want_ids, want_mask, &want_n);
        assert_int_equal(n, want_n);
        assert_memory_equal(ids, want_ids, (size_t)n * sizeof *ids);
        assert_memory_equal(mask, want_mask, (size_t)n);
        tokens += (uint64_t)n;
    }
    assert_int_equal(in->tokens[DATASET_TRAIN], tokens);
    assert_int_equal(dataset_read(d, DATASET_VAL, 16, ids, mask, &n), PEFT_OK);
    make_record(1016, want_ids, want_mask, &want_n);
    assert_memory_equal(ids, want_ids, (size_t)n * sizeof *ids);
    assert_int_equal(dataset_read(d, DATASET_TRAIN, 10000, ids, mask, &n), PEFT_EUSAGE);
    dataset_close(d);
    /* nothing partial left next to it */
    char partial[4300];
    snprintf(partial, sizeof partial, "ls -d %s/data.partial-* >/dev/null 2>&1", tmp);
    assert_int_not_equal(system(partial), 0);
    tu_rmtree(tmp);
    free(tmp);
}

static void test_existing_dir_and_abort(void **state) {
    (void)state;
    char *tmp = tu_tmpdir();
    dataset_info in = base_info(2);
    dataset_writer *w;
    assert_int_equal(dataset_writer_open(tmp, &in, &w), PEFT_EUSAGE);
    assert_non_null(strstr(err_msg(), "already exists"));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    assert_int_equal(dataset_writer_open(dir, &in, &w), PEFT_OK);
    int32_t ids[9] = {0};
    uint8_t mask[9] = {0};
    assert_int_equal(dataset_writer_add(w, DATASET_TRAIN, ids, mask, 9), PEFT_EUSAGE); /* > seq_len */
    assert_int_equal(dataset_writer_add(w, DATASET_TRAIN, ids, mask, 8), PEFT_OK);
    dataset_writer_abort(w);
    assert_false(file_exists(dir));
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", tmp);
    assert_int_equal(system(cmd), 0);
    tu_rmtree(tmp);
    free(tmp);
}

static void test_corrupt_manifest_and_record(void **state) {
    (void)state;
    char *tmp = write_dataset(2, 20, 2);
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    dataset *d;
    /* a record overwritten with garbage */
    snprintf(path, sizeof path, "%s/shard-00001.lmdb", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 5}, junk[20] = "PFTS\x01\x00\x00\x00\xff\x00\x00\x00";
    MDB_val k = {8, key}, v = {sizeof junk, junk};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(dataset_open(dir, &d), PEFT_OK);
    int32_t ids[8];
    uint8_t mask[8];
    int n;
    assert_int_equal(dataset_read(d, DATASET_TRAIN, 5, ids, mask, &n), PEFT_EFORMAT);
    assert_non_null(strstr(err_msg(), "shard-00001.lmdb: record 5"));
    assert_int_equal(dataset_read(d, DATASET_TRAIN, 4, ids, mask, &n), PEFT_OK);
    dataset_close(d);
    /* manifest counts that disagree with the shards */
    snprintf(path, sizeof path, "sed -i 's/\"sequences\": 20/\"sequences\": 21/' %s/manifest.json", dir);
    assert_int_equal(system(path), 0);
    assert_int_not_equal(dataset_open(dir, &d), PEFT_OK);
    assert_non_null(strstr(err_msg(), "manifest.json"));
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    tu_write_file(path, "{\"format\": \"peft-dataset\", \"version\": 9}", 40);
    assert_int_equal(dataset_open(dir, &d), PEFT_EFORMAT);
    assert_non_null(strstr(err_msg(), "version 9"));
    tu_rmtree(tmp);
    free(tmp);
}

static void test_sample_order(void **state) {
    (void)state;
    const uint64_t sizes[] = {1, 2, 3, 10, 97, 1000, 4097};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint64_t n = sizes[si];
        unsigned char *seen = calloc(n, 1);
        for (uint64_t epoch = 0; epoch < 3; epoch++) {
            memset(seen, 0, n);
            uint64_t fixed = 0;
            for (uint64_t p = 0; p < n; p++) {
                uint64_t r = dataset_sample(7, n, epoch * n + p);
                assert_true(r < n);
                assert_false(seen[r]);
                seen[r] = 1;
                fixed += r == p;
            }
            if (n >= 97) assert_true(fixed < n / 4); /* actually shuffled */
        }
        free(seen);
    }
    /* deterministic, seed-dependent, and epochs differ */
    int same_seed = 0, other_seed = 0, other_epoch = 0;
    for (uint64_t p = 0; p < 1000; p++) {
        same_seed += dataset_sample(7, 1000, p) == dataset_sample(7, 1000, p);
        other_seed += dataset_sample(7, 1000, p) == dataset_sample(8, 1000, p);
        other_epoch += dataset_sample(7, 1000, p) == dataset_sample(7, 1000, p + 1000);
    }
    assert_int_equal(same_seed, 1000);
    assert_true(other_seed < 50 && other_epoch < 50);
}

/* W workers together take exactly the global batch, in order, for any W; so a run resumed on a
 * different worker count continues the same sequence of records. */
static void test_worker_slices(void **state) {
    (void)state;
    const uint64_t n = 1000;
    const int G = 12, steps = 200;
    uint64_t *want = malloc((size_t)G * steps * sizeof *want), rec[12];
    data_cursor one = {.seed = 9, .samples = 0};
    for (int s = 0; s < steps; s++) {
        uint64_t first;
        int count;
        sampler_worker_range(&one, G, 0, 1, &first, &count);
        assert_int_equal(count, G);
        sampler_records(&one, n, first, count, want + (size_t)s * G);
        sampler_advance(&one, G);
    }
    const int workers[] = {2, 3, 5, 12};
    for (size_t wi = 0; wi < sizeof workers / sizeof workers[0]; wi++) {
        int W = workers[wi];
        data_cursor c = {.seed = 9, .samples = 0};
        for (int s = 0; s < steps; s++) {
            int got = 0;
            for (int w = 0; w < W; w++) {
                uint64_t first;
                int count;
                sampler_worker_range(&c, G, w, W, &first, &count);
                assert_int_equal(first, c.samples + (uint64_t)got);
                sampler_records(&c, n, first, count, rec);
                assert_memory_equal(rec, want + (size_t)s * G + got, (size_t)count * sizeof *rec);
                got += count;
            }
            assert_int_equal(got, G);
            sampler_advance(&c, G);
            /* a cursor restored from its two numbers continues identically */
            data_cursor copy = {c.seed, c.samples};
            c = copy;
        }
    }
    assert_true(sampler_epoch(&one, n) > 2.3 && sampler_epoch(&one, n) < 2.5);
    free(want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_existing_dir_and_abort),
        cmocka_unit_test(test_corrupt_manifest_and_record),
        cmocka_unit_test(test_sample_order),
        cmocka_unit_test(test_worker_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
