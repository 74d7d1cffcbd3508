/* test_fastmath.c - fast_expf and fast_tanhf against libm over their whole useful range. */
#include <math.h>

#include "kernels/fastmath.h"
#include "testutil.h"

static void test_expf_relative_error(void **state) {
    (void)state;
    double worst = 0.0;
    float at = 0.0f;
    for (float x = -87.0f; x <= 88.0f; x += 0.000731f) {
        double want = exp((double)x), got = fast_expf(x);
        double rel = fabs(got - want) / want;
        if (rel > worst) {
            worst = rel;
            at = x;
        }
    }
    if (worst > 3e-7) fail_msg("fast_expf: relative error %.3e at x = %.6g (> 3e-7)", worst, at);
    assert_true(fast_expf(-1000.0f) < 1e-37f && fast_expf(-1000.0f) >= 0.0f);
    assert_true(isfinite(fast_expf(1000.0f)));
}

static void test_tanhf_absolute_error(void **state) {
    (void)state;
    double worst = 0.0;
    for (float x = -20.0f; x <= 20.0f; x += 0.0001f) worst = fmax(worst, fabs(fast_tanhf(x) - tanh((double)x)));
    if (worst > 3e-7) fail_msg("fast_tanhf: absolute error %.3e (> 3e-7)", worst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_relative_error),
        cmocka_unit_test(test_tanhf_absolute_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
