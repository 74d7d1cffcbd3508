/*
 * testutil.h - shared helpers for the cmocka tests.
 *
 * tu_fixture_path(): "$PEFT_FIXTURES/<rel>" (tests/fixtures when run by ctest).
 * tu_assert_close(): fails the current test unless max|got-want| <= rtol * max(1, max|want|),
 * printing the tensor's name, the largest difference, where it is and both values.
 * tu_tmpdir(): a fresh directory under $TMPDIR for one test; removed by tu_rmtree().
 * tu_expect_error(): fails the current test unless a status and the last error message are the
 * expected ones.
 * Every helper that can fail fails the current test (cmocka) rather than returning an error.
 *
 * Beside this file: tu_model.h (the tiny models of the model tests), tu_gradcheck.h (finite
 * differences), tu_tokenizer.h (tokenizer.json strings); all in the peft_testutil library.
 */
#ifndef PEFT_TESTUTIL_H
#define PEFT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rng.h"

/* Returns a static buffer; valid until the next call. */
const char *tu_fixture_path(const char *rel);

/* Largest |got[i] - want[i]| and its index (returns the difference). */
double tu_max_abs_diff(const float *got, const float *want, size_t n, size_t *where);

/* Normwise relative comparison, see above. Returns the relative error that was checked. */
double tu_assert_close_(const char *what, const float *got, const float *want, size_t n, double rtol,
                        const char *file, int line);
#define tu_assert_close(what, got, want, n, rtol) \
    tu_assert_close_((what), (got), (want), (n), (rtol), __FILE__, __LINE__)

/* mkdtemp under $TMPDIR (or /tmp). The returned string is malloc'd; free it. */
char *tu_tmpdir(void);
/* rm -rf path (best effort). */
void tu_rmtree(const char *path);
/* Writes n bytes to path; fails the test on error. */
void tu_write_file(const char *path, const void *data, size_t n);
/* The whole file, NUL-terminated (file_read_all); *len (if not NULL) its size. Free it. */
char *tu_read_file(const char *path, size_t *len);
/* "dir/name", malloc'd; free it. */
char *tu_join(const char *dir, const char *name);
/* A safetensors file holding the header `hdr` as it is (its length as the 8-byte N) followed by
 * data_len zero bytes: for files our writer would never produce. */
void tu_write_st_raw(const char *path, const char *hdr, size_t data_len);

/* Fails unless rc == want and the last message (err_msg()) contains every non-NULL phrase. */
void tu_expect_error(int rc, int want, const char *p1, const char *p2, const char *p3);

/* Does s end with suffix? */
bool tu_ends_with(const char *s, const char *suffix);

/* n floats (at least one), zeroed / mean + std N(0, 1) drawn from r / a copy of src. Free them. */
float *tu_zeros(size_t n);
float *tu_randn(rng_state *r, size_t n, float mean, float std);
float *tu_copy_of(const float *src, size_t n);
/* sum a[i] b[i], in double. */
double tu_dot(const float *a, const float *b, size_t n);

/* Parses each non-empty line of a JSONL file (at most cap); fails the test on error. The caller
 * cJSON_Deletes each line. Returns the count. */
struct cJSON;
int tu_read_jsonl(const char *path, struct cJSON **lines, int cap);

/* The peft_config of a tests/fixtures/methods case.json (make_method_fixtures.py's parameter
 * names). String fields point into c or into the three caller buffers of 512 bytes. */
#include "peft/peft.h"
peft_config tu_case_config(const struct cJSON *c, char *targets, char *layers, char *ff);

#endif
