/*
 * bench_gemm.c - GEMM ceilings of both backends at GPT-2 (124M) training shapes, as a markdown
 * table for docs/BENCHMARKS.md.
 *
 *     bench_gemm [--threads N] [--seconds S] [--rounds R]
 *
 * T = 1024 tokens. For a linear layer with weight W[out, in], the three products are
 *   forward          y[T,out]  = x[T,in] W^T        M=T,   N=out, K=in,  transB
 *   backward (dx)    dx[T,in]  = dy[T,out] W        M=T,   N=in,  K=out
 *   weight gradient  dW[out,in] = dy^T x            M=out, N=in,  K=T,   transA
 * for (out, in) = attention qkv, attention projection, MLP fc, MLP projection and the tied LM head,
 * plus a square 1024^3 product.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "gemm_ceiling.h"

enum { T = 1024 };

static const struct {
    const char *name;
    int out, in;
} layers[] = {
    {"attn.qkv", 2304, 768}, {"attn.proj", 768, 768}, {"mlp.fc", 3072, 768},
    {"mlp.proj", 768, 3072}, {"lm_head", 50257, 768},
};

static void usage_exit(const char *msg) {
    fprintf(stderr, "bench_gemm: %s\nusage: bench_gemm [--threads N] [--seconds S] [--rounds R]\n",
            msg);
    exit(2);
}

/* The backends take turns, R rounds, the first one alternating, so a burst of load from a
 * neighbour cannot favour one of them; each keeps its best round. */
static void bench_row(const char *layer, const char *op, int M, int N, int K, int transA,
                      int transB, double seconds, int rounds) {
    gemm_ceiling_result best[2] = {{0}}, r;
    double onednn_first_ms = 0.0;
    for (int round = 0; round < rounds; round++) {
        for (int turn = 0; turn < 2; turn++) {
            gemm_backend be = (gemm_backend)((round + turn) % 2);
            if (gemm_ceiling_measure(be, M, N, K, transA, transB, seconds, &r) != PEFT_OK) {
                fprintf(stderr, "bench_gemm: %s\n", err_msg());
                exit(1);
            }
            if (be == GEMM_ONEDNN && round == 0) onednn_first_ms = 1e3 * r.first_call_seconds;
            if (r.gflops > best[be].gflops) best[be].gflops = r.gflops;
            if (r.median_gflops > best[be].median_gflops) best[be].median_gflops = r.median_gflops;
        }
    }
    const gemm_ceiling_result *ob = &best[GEMM_OPENBLAS], *dn = &best[GEMM_ONEDNN];
    printf("| %-9s | %-3s | %5d | %5d | %5d | %d%d | %6.1f | %6.1f | %5.2f | %6.1f | %6.1f | %7.1f "
           "| %7.1f |\n",
           layer, op, M, N, K, transA, transB, ob->gflops, dn->gflops, dn->gflops / ob->gflops,
           ob->median_gflops, dn->median_gflops, onednn_first_ms,
           2.0 * M * N * K / dn->gflops / 1e6);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int threads = 2, rounds = 3;
    double seconds = 0.5;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1024) usage_exit("--threads: expected an integer in 1..1024");
            threads = (int)v;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], &end);
            if (*end || !(seconds > 0.0)) usage_exit("--seconds: expected a positive number");
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 100) usage_exit("--rounds: expected an integer in 1..100");
            rounds = (int)v;
        } else {
            usage_exit("unknown argument or missing value");
        }
    }
    gemm_set_threads(threads);

    printf("GEMM ceilings, fp32, %d thread(s), T = %d tokens; %d rounds of >= %.2f s per backend "
           "and shape.\n"
           "GFLOP/s from the fastest product (best) and the median product of the best round;\n"
           "tAB = transA transB; the first call includes oneDNN primitive creation.\n\n",
           threads, T, rounds, seconds);
    printf("| layer | op | M | N | K | tAB | openblas best | onednn best | onednn/openblas "
           "| openblas median | onednn median | onednn first call ms | onednn call ms |\n");
    printf("|---|---|--:|--:|--:|:-:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        int out = layers[l].out, in = layers[l].in;
        bench_row(layers[l].name, "fwd", T, out, in, 0, 1, seconds, rounds);
        bench_row(layers[l].name, "dx", T, in, out, 0, 0, seconds, rounds);
        bench_row(layers[l].name, "dW", out, in, T, 1, 0, seconds, rounds);
    }
    bench_row("square", "nn", 1024, 1024, 1024, 0, 0, seconds, rounds);
    gemm_release();
    return 0;
}
