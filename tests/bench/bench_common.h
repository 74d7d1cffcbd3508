/*
 * bench_common.h - what the benchmarks share: the clock, CPU time and peak RSS, the median of timed
 * repetitions, the flags of the model benchmarks (bench_train, bench_model), and a random model of
 * a real shape with a random batch for it.
 *
 *     bench_args a = {.arch = NULL, .gemm = "onednn", .batch = 4, .seq = 256, .steps = 3, .threads = 2};
 *     for (int i = 1; i < argc; i++)
 *         if (!bench_args_take(&a, argc, argv, &i)) ...the program's own flags...
 *     model_config c;
 *     model *m = bench_model_random("bench_x", ARCH_GPT2, GEMM_ONEDNN, NULL, &c);
 *     times[s] = ...;  (s = 0 the warm-up step, then 1..steps timed)
 *     double step = bench_median_after_warmup(times, steps);
 *
 * Errors: the functions that can fail print "PROG: WHAT: message" and exit(1) (benchmarks are
 * programs, not libraries).
 */
#ifndef PEFT_BENCH_COMMON_H
#define PEFT_BENCH_COMMON_H

#include <stdbool.h>

#include "gemm.h"
#include "model/model.h"

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double bench_now(void);
/* User + system CPU seconds of the process so far (all threads): less sensitive than wall time to
 * other jobs on the cores. */
double bench_cpu_seconds(void);
/* The process's peak resident set size in MiB. */
double bench_peak_rss_mib(void);

/* qsort comparison of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);
/* v[0] is a warm-up, v[1..steps] the timed repetitions: sorts v[1..steps] ascending (v[1] is then
 * the fastest) and returns their median v[1 + steps / 2]. */
double bench_median_after_warmup(double *v, int steps);

/* The flags bench_train and bench_model share; each program sets its own defaults. */
typedef struct {
    const char *arch, *gemm;           /* --arch, --gemm */
    int batch, seq, steps, threads;    /* --batch, --seq, --steps, --threads (atoi) */
} bench_args;

/* If argv[*i] is one of the flags above and a value follows it: stores the value, moves *i onto it
 * and returns true. Otherwise returns false and changes nothing. */
bool bench_args_take(bench_args *a, int argc, char **argv, int *i);

/* "gpt2" -> ARCH_GPT2, "llama" -> ARCH_LLAMA; false for anything else. */
bool bench_arch_parse(const char *name, model_arch *out);

/* The family's default configuration (GPT-2-124M; the Llama shape of SmolLM-135M) with random
 * weights (seed 1) through model_init_random_with(opts: NULL for plain fp32); *cfg receives the
 * finished configuration. The caller model_frees the model. */
model *bench_model_random(const char *prog, model_arch arch, gemm_backend be, const model_opts *opts,
                          model_config *cfg);

/* B x T random tokens below cfg's vocabulary (seed 3) and their next-token targets (-1 at the end
 * of each row), both malloc'd: the caller frees them. */
void bench_batch_random(const char *prog, const model_config *cfg, int B, int T, int **tokens, int **targets);

/* Prints "PROG: WHAT: err_msg()" and exits 1. */
_Noreturn void bench_die(const char *prog, const char *what);

#endif
