#include "tu_gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

void tu_numeric_grad(float *num, float *x, const size_t *idx, size_t n, float eps, tu_loss_fn loss, void *ctx) {
    for (size_t k = 0; k < n; k++) {
        const size_t i = idx ? idx[k] : k;
        const float x0 = x[i], xp = x0 + eps, xm = x0 - eps;
        x[i] = xp;
        const double lp = loss(ctx);
        x[i] = xm;
        const double lm = loss(ctx);
        x[i] = x0;
        num[k] = (float)((lp - lm) / ((double)xp - (double)xm));
    }
}

double tu_grad_compare(const char *what, const float *ana, const float *num, size_t n, double rtol, double noise) {
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(num[i]));
    if (!(scale > 1e-6)) fail_msg("%s: the numeric gradient vanishes (max %.3g), nothing is checked", what, scale);
    const double denom = fmax(scale, noise / rtol);
    float *a = tu_zeros(n), *w = tu_zeros(n);
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)(ana[i] / denom);
        w[i] = (float)(num[i] / denom);
    }
    char name[400];
    snprintf(name, sizeof name, "%s (analytic vs numeric, both / %.3g; largest numeric %.3g)", what, denom, scale);
    const double rel = tu_assert_close(name, a, w, n, rtol);
    free(a);
    free(w);
    return rel;
}

void tu_check_grad(const char *what, const float *ana, const float *num, size_t n, double rtol) {
    const double rel = tu_grad_compare(what, ana, num, n, rtol, 0.0);
    print_message("  %-46s rel err %.2e (rtol %.0e)\n", what, rel, rtol);
}

void tu_check_accumulates(const char *what, const float *acc, const float *before, const float *fresh, size_t n,
                          double rtol) {
    float *want = tu_zeros(n);
    for (size_t i = 0; i < n; i++) want[i] = before[i] + fresh[i];
    tu_assert_close(what, acc, want, n, rtol);
    free(want);
}
