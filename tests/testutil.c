#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tu_fixture_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("PEFT_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "tests/fixtures", rel);
    return buf;
}

double tu_max_abs_diff(const float *got, const float *want, size_t n, size_t *where) {
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > worst || isnan(d)) {
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    if (where) *where = at;
    return worst;
}

double tu_assert_close_(const char *what, const float *got, const float *want, size_t n, double rtol,
                        const char *file, int line) {
    double scale = 1.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    size_t at = 0;
    double diff = tu_max_abs_diff(got, want, n, &at);
    double rel = diff / scale;
    if (!(rel <= rtol)) {
        print_error("%s: relative error %.3e > %.1e (max |diff| %.3e at [%zu]: got %.9g want %.9g, "
                    "scale %.4g, %zu elements)\n",
                    what, rel, rtol, diff, at, n ? got[at] : 0.0f, n ? want[at] : 0.0f, scale, n);
        _fail(file, line);
    }
    return rel;
}

char *tu_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/peft-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpl)) fail_msg("mkdtemp(%s) failed", tmpl);
    return strdup(tmpl);
}

void tu_rmtree(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

void tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if (fwrite(data, 1, n, f) != n) fail_msg("cannot write %s", path);
    fclose(f);
}
