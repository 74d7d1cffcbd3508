/*
 * testutil.h - shared helpers for the cmocka tests.
 *
 * tu_fixture_path(): "$PEFT_FIXTURES/<rel>" (tests/fixtures when run by ctest).
 * tu_assert_close(): fails the current test unless max|got-want| <= rtol * max(1, max|want|),
 * printing the tensor's name, the largest difference, where it is and both values.
 * tu_tmpdir(): a fresh directory under $TMPDIR for one test; removed by tu_rmtree().
 */
#ifndef PEFT_TESTUTIL_H
#define PEFT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

/* Parses each non-empty line of a JSONL file (at most cap); fails the test on error. The caller
 * cJSON_Deletes each line. Returns the count. */
struct cJSON;
int tu_read_jsonl(const char *path, struct cJSON **lines, int cap);

/* The peft_config of a tests/fixtures/methods case.json (make_method_fixtures.py's parameter
 * names). String fields point into c or into the three caller buffers of 512 bytes. */
#include "peft/peft.h"
peft_config tu_case_config(const struct cJSON *c, char *targets, char *layers, char *ff);

#endif
