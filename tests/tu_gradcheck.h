/*
 * tu_gradcheck.h - finite-difference gradient checks shared by test_gradcheck_*.c and
 * test_method_gradcheck.c.
 *
 * tu_numeric_grad(): central differences of a scalar loss, dividing by the step actually taken in
 * fp32. tu_grad_compare(): analytic against numeric gradients of one tensor, normwise relative to
 * the tensor's own gradient scale: max|ana - num| <= rtol * max(max|num|, noise / rtol), where
 * noise is an absolute floor (the fp32 rounding noise of the quotient; 0 for none). A numeric
 * gradient that vanishes (max |num| <= 1e-6) fails: the check could not fail otherwise.
 * tu_check_accumulates(): a backward run into buffers holding values added to them.
 * Failures fail the current cmocka test and print the largest difference.
 */
#ifndef PEFT_TU_GRADCHECK_H
#define PEFT_TU_GRADCHECK_H

#include <stddef.h>

typedef double (*tu_loss_fn)(void *ctx);

/* num[k] = dL/dx[idx[k]] (idx NULL: dL/dx[k]) by central differences (L(x + eps) - L(x - eps)) /
 * (2 eps); x is restored exactly. */
void tu_numeric_grad(float *num, float *x, const size_t *idx, size_t n, float eps, tu_loss_fn loss, void *ctx);

/* The check above; returns the relative error it saw. */
double tu_grad_compare(const char *what, const float *ana, const float *num, size_t n, double rtol, double noise);
/* tu_grad_compare() without a floor, printing "  what  rel err E (rtol R)". */
void tu_check_grad(const char *what, const float *ana, const float *num, size_t n, double rtol);

/* acc held `before` when the backward ran into it; it must now hold before + fresh (to rtol),
 * where fresh is what the same backward wrote into zeros. */
void tu_check_accumulates(const char *what, const float *acc, const float *before, const float *fresh, size_t n,
                          double rtol);

#endif
