/*
 * bench_tokenizer.c - encoding throughput of common/tokenizer on one core, for docs/BENCHMARKS.md.
 *
 *     bench_tokenizer --tokenizer PATH --text FILE [--mode lines|document] [--repeat N]
 *                     [--min-seconds S] [--chunk-bytes N] [--counts-out FILE]
 *
 * The text is read into memory and cut into pieces, each encoded on its own without special
 * tokens (add_special false: no BOS, so the counts are the pre-tokenizer's and the model's alone):
 *   lines     every '\n'-terminated line, without its '\n' (a last unterminated line counts too);
 *   document  runs of whole lines of at least --chunk-bytes bytes (default 1 MiB; the last run may
 *             be shorter), each with its '\n's; --chunk-bytes 0 encodes the whole file as one piece.
 * tests/bench/tokenizer_peer.js cuts the same pieces, so the two can compare piece by piece.
 *
 * MB/s is the file's size / 1e6 over the fastest pass over all pieces, of at least --repeat passes
 * (default 5) and as many more as fit in --min-seconds (default 5; at most 1000 passes): the
 * machine is shared, and a pass of a few tenths of a second is easily caught by a neighbour's
 * burst. The median pass is printed beside the fastest. Time is CLOCK_MONOTONIC around the
 * encoding calls only: the file is already in memory and the tokenizer loaded. One thread: the
 * tokenizer never starts any, and BLAS/OpenMP (linked in through peft_common) are held to one.
 *
 * Output, one line of key=value pairs on stdout (tests/bench/run_tokenizer_bench.sh parses it):
 *   impl=c mode=lines bytes=... pieces=... tokens=... load_s=... passes=... best_s=... median_s=... mb_s=...
 * --counts-out FILE writes "<token count> <fnv1a-32 of the ids, hex>" per piece, for the peer to
 * check its ids against.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "error.h"
#include "gemm.h"
#include "tokenizer/tokenizer.h"

enum { MAX_REPEAT = 1000 };

/* A piece of the text: text[off, off + len). */
typedef struct {
    size_t off, len;
} piece;

static _Noreturn void usage_exit(const char *msg) {
    fprintf(stderr,
            "bench_tokenizer: %s\nusage: bench_tokenizer --tokenizer PATH --text FILE [--mode lines|document] "
            "[--repeat N] [--min-seconds S] [--chunk-bytes N] [--counts-out FILE]\n",
            msg);
    exit(2);
}

static _Noreturn void fail_exit(const char *what) {
    fprintf(stderr, "bench_tokenizer: %s: %s\n", what, err_msg());
    exit(1);
}

/* Reads all of path (a regular file) into a malloc'd buffer; caller frees *out. */
static int read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(PEFT_EIO, "%s: cannot open", path);
    int rc = PEFT_OK;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char *buf = NULL;
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) rc = err_set(PEFT_EIO, "%s: cannot find its size", path);
    else if (!(buf = malloc((size_t)size + 1))) rc = err_set(PEFT_ENOMEM, "%s: cannot allocate %ld bytes", path, size);
    else if (fread(buf, 1, (size_t)size, f) != (size_t)size) rc = err_set(PEFT_EIO, "%s: short read", path);
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = (size_t)size;
    return PEFT_OK;
}

/* Cuts text into pieces (see the header comment); *out is malloc'd, caller frees. chunk 0 in
 * document mode: one piece. */
static int cut_pieces(const char *text, size_t len, bool lines, size_t chunk, piece **out, size_t *n) {
    size_t cap = 1024, k = 0;
    piece *p = malloc(cap * sizeof *p);
    for (size_t start = 0; p && start < len;) {
        const char *nl;
        size_t end;
        if (lines) {
            nl = memchr(text + start, '\n', len - start);
            end = nl ? (size_t)(nl - text) : len;
        } else if (chunk == 0 || len - start <= chunk) {
            end = len;
        } else {
            nl = memchr(text + start + chunk - 1, '\n', len - (start + chunk - 1));
            end = nl ? (size_t)(nl - text) + 1 : len;
        }
        if (k == cap) {
            piece *q = realloc(p, 2 * cap * sizeof *p);
            if (!q) break;
            p = q;
            cap *= 2;
        }
        p[k++] = (piece){start, end - start};
        start = lines ? end + 1 : end;
    }
    if (!p || k == cap) {
        free(p);
        return err_set(PEFT_ENOMEM, "cannot allocate the piece table");
    }
    *out = p;
    *n = k;
    return PEFT_OK;
}

/* The same hash tokenizer_peer.js computes: FNV-1a over the ids as 32-bit words. */
static uint32_t ids_hash(const int32_t *ids, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)ids[i]) * 16777619u;
    return h;
}

/* One pass over every piece; *tokens gets the total. With counts (may be NULL) it also writes
 * each piece's count and hash. On error names the piece (a line number in lines mode). */
static int encode_pass(const tokenizer *tk, const char *text, const piece *p, size_t n, bool lines,
                       const char *path, tok_ids *ids, FILE *counts, uint64_t *tokens) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        ids->n = 0;
        int rc = tokenizer_encode(tk, text + p[i].off, p[i].len, false, ids);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", err_msg());
            return err_set(rc, "%s: %s %zu: %s", path, lines ? "line" : "chunk", i + 1, msg);
        }
        total += ids->n;
        if (counts) fprintf(counts, "%zu %08x\n", ids->n, (unsigned)ids_hash(ids->v, ids->n));
    }
    *tokens = total;
    return PEFT_OK;
}

int main(int argc, char **argv) {
    const char *tok_path = NULL, *text_path = NULL, *counts_path = NULL, *mode = "lines";
    long repeat = 5;
    double min_seconds = 5.0;
    size_t chunk = 1 << 20;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
            tok_path = argv[++i];
        } else if (strcmp(argv[i], "--text") == 0 && i + 1 < argc) {
            text_path = argv[++i];
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            mode = argv[++i];
            if (strcmp(mode, "lines") && strcmp(mode, "document")) usage_exit("--mode: expected lines or document");
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            repeat = strtol(argv[++i], &end, 10);
            if (*end || repeat < 1 || repeat > MAX_REPEAT) usage_exit("--repeat: expected an integer in 1..1000");
        } else if (strcmp(argv[i], "--min-seconds") == 0 && i + 1 < argc) {
            min_seconds = strtod(argv[++i], &end);
            if (*end || !(min_seconds >= 0.0)) usage_exit("--min-seconds: expected a non-negative number");
        } else if (strcmp(argv[i], "--chunk-bytes") == 0 && i + 1 < argc) {
            long long v = strtoll(argv[++i], &end, 10);
            if (*end || v < 0) usage_exit("--chunk-bytes: expected a non-negative integer");
            chunk = (size_t)v;
        } else if (strcmp(argv[i], "--counts-out") == 0 && i + 1 < argc) {
            counts_path = argv[++i];
        } else {
            usage_exit("unknown argument or missing value");
        }
    }
    if (!tok_path || !text_path) usage_exit("--tokenizer and --text are required");
    bool lines = strcmp(mode, "lines") == 0;
    gemm_set_threads(1);

    char *text = NULL;
    size_t len = 0;
    if (read_file(text_path, &text, &len)) fail_exit("reading the text");
    piece *pieces = NULL;
    size_t npieces = 0;
    if (cut_pieces(text, len, lines, chunk, &pieces, &npieces)) fail_exit(text_path);

    double t0 = bench_now();
    tokenizer *tk;
    if (tokenizer_load(tok_path, &tk)) fail_exit("loading the tokenizer");
    double load_s = bench_now() - t0;

    tok_ids ids = {0};
    uint64_t tokens = 0, first_tokens = 0;
    FILE *counts = NULL;
    if (counts_path && !(counts = fopen(counts_path, "w"))) {
        fprintf(stderr, "bench_tokenizer: %s: cannot open for writing\n", counts_path);
        return 1;
    }
    /* An untimed pass: writes the counts, faults the pages in, and gives the count every timed
     * pass must reproduce. */
    if (encode_pass(tk, text, pieces, npieces, lines, text_path, &ids, counts, &first_tokens)) fail_exit("encoding");
    if (counts && fclose(counts)) {
        fprintf(stderr, "bench_tokenizer: %s: write error\n", counts_path);
        return 1;
    }
    double times[MAX_REPEAT], start = bench_now();
    long passes = 0;
    while (passes < MAX_REPEAT && (passes < repeat || bench_now() - start < min_seconds)) {
        t0 = bench_now();
        if (encode_pass(tk, text, pieces, npieces, lines, text_path, &ids, NULL, &tokens)) fail_exit("encoding");
        times[passes++] = bench_now() - t0;
        PEFT_ASSERT(tokens == first_tokens);
    }
    qsort(times, (size_t)passes, sizeof *times, bench_cmp_double);
    printf("impl=c mode=%s bytes=%zu pieces=%zu tokens=%llu load_s=%.3f passes=%ld best_s=%.4f median_s=%.4f "
           "mb_s=%.2f\n",
           mode, len, npieces, (unsigned long long)tokens, load_s, passes, times[0], times[passes / 2],
           len / 1e6 / times[0]);
    free(ids.v);
    tokenizer_free(tk);
    free(pieces);
    free(text);
    return 0;
}
