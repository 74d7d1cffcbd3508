#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "error.h"
#include "rng.h"

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

double bench_peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median_after_warmup(double *v, int steps) {
    qsort(v + 1, (size_t)steps, sizeof *v, bench_cmp_double);
    return v[1 + steps / 2];
}

bool bench_args_take(bench_args *a, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) return false;
    const char *flag = argv[*i], *value = argv[*i + 1];
    if (!strcmp(flag, "--arch")) a->arch = value;
    else if (!strcmp(flag, "--gemm")) a->gemm = value;
    else if (!strcmp(flag, "--batch")) a->batch = atoi(value);
    else if (!strcmp(flag, "--seq")) a->seq = atoi(value);
    else if (!strcmp(flag, "--steps")) a->steps = atoi(value);
    else if (!strcmp(flag, "--threads")) a->threads = atoi(value);
    else return false;
    ++*i;
    return true;
}

bool bench_arch_parse(const char *name, model_arch *out) {
    if (!strcmp(name, "gpt2")) *out = ARCH_GPT2;
    else if (!strcmp(name, "llama")) *out = ARCH_LLAMA;
    else return false;
    return true;
}

model *bench_model_random(const char *prog, model_arch arch, gemm_backend be, const model_opts *opts,
                          model_config *cfg) {
    config_defaults(arch, cfg);
    if (config_finish(cfg, "bench")) bench_die(prog, "config");
    model *m;
    if (model_init_random_with(cfg, 1, be, opts, &m)) bench_die(prog, "model");
    return m;
}

void bench_batch_random(const char *prog, const model_config *cfg, int B, int T, int **tokens, int **targets) {
    *tokens = malloc((size_t)B * T * sizeof **tokens);
    *targets = malloc((size_t)B * T * sizeof **targets);
    if (!*tokens || !*targets) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
    rng_state r;
    rng_seed(&r, 3);
    for (int i = 0; i < B * T; i++) (*tokens)[i] = (int)rng_below(&r, (uint32_t)cfg->vocab_size);
    for (int i = 0; i < B * T; i++) (*targets)[i] = (i + 1) % T ? (*tokens)[i + 1] : -1;
}

void bench_die(const char *prog, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", prog, what, err_msg());
    exit(1);
}
