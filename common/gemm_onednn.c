/*
 * gemm_onednn.c - the GEMM_ONEDNN backend: oneDNN's matmul, fp32 x fp32 -> fp32 (gemm_f32) and
 * bf16 x bf16 -> fp32 (gemm_bf16), one primitive per call shape and data type.
 *
 * Creating a matmul primitive means an implementation search and, for the implementations that
 * specialise a kernel to the shape, JIT compilation; none of that belongs in the training step.
 * (On the AVX2 dev machine oneDNN 2.6 picks "gemm:jit" and creation takes ~20 us, but that is
 * the cheap case.) So every distinct (operand type, transA, transB, M, N, K, lda, ldb, ldc, alpha,
 * beta) gets one cache entry holding the primitive and three memory objects created without a
 * buffer; each call only points those at the caller's arrays and executes. The model uses a few
 * dozen shapes, so the cache is a growable array searched linearly, most recent hit first.
 *
 * How the BLAS arguments map onto oneDNN (both data types; only A's and B's element type differs,
 * C is always f32):
 *   op(A)[M,K]: strides {lda,1}, or {1,lda} when A is stored transposed as [K,M];
 *   op(B)[K,N]: strides {ldb,1}, or {1,ldb} when B is stored as [N,K];
 *   C[M,N]:     strides {ldc,1};
 *   alpha:      output scale (mask 0), applied to the product before post-ops;
 *   beta == 1:  a sum post-op with scale 1, so C = alpha * op(A) op(B) + C.
 * oneDNN 2.6 implements the bf16 x bf16 -> f32 matmul only with AVX512 (AVX512-BF16 natively,
 * plain AVX512 by emulation); elsewhere creating it returns dnnl_unimplemented, which
 * gemm_onednn_bf16_available() reports and tests/unit/test_bf16_dispatch.c checks.
 *
 * Not thread-safe: the engine, stream and cache are process globals with no lock. Call it from
 * one thread at a time (the trainer's main thread); oneDNN parallelises inside each product.
 */
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "gemm.h"

typedef struct {
    dnnl_data_type_t ab; /* the type of A and B: dnnl_f32 or dnnl_bf16 */
    int transA, transB, M, N, K, lda, ldb, ldc;
    float alpha, beta;
} onednn_key;

typedef struct {
    onednn_key key;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c; /* no buffer of their own; pointed at the caller's arrays per call */
} onednn_entry;

static struct {
    dnnl_engine_t engine; /* created on first use, with the stream */
    dnnl_stream_t stream;
    onednn_entry *entries; /* [cap], the first n in use */
    int n, cap;
    int last; /* index of the most recent hit */
} onednn;

/* A oneDNN failure here is our bug (a descriptor it rejects) or no memory: report and abort, as
 * gemm.h promises. */
static void onednn_die(const char *call, dnnl_status_t st, const onednn_key *k) {
    if (k)
        fprintf(stderr,
                "peft: oneDNN %s failed: %s (%s transA=%d transB=%d M=%d N=%d K=%d lda=%d ldb=%d "
                "ldc=%d alpha=%g beta=%g)\n",
                call, dnnl_status2str(st), dnnl_dt2str(k->ab), k->transA, k->transB, k->M, k->N,
                k->K, k->lda, k->ldb, k->ldc, (double)k->alpha, (double)k->beta);
    else
        fprintf(stderr, "peft: oneDNN %s failed: %s\n", call, dnnl_status2str(st));
    abort();
}

#define ONEDNN_CHECK(call, key)                             \
    do {                                                    \
        dnnl_status_t onednn_st_ = (call);                  \
        if (onednn_st_ != dnnl_success)                     \
            onednn_die(#call, onednn_st_, (key));           \
    } while (0)

static int onednn_key_eq(const onednn_key *x, const onednn_key *y) {
    return x->ab == y->ab && x->transA == y->transA && x->transB == y->transB && x->M == y->M &&
           x->N == y->N && x->K == y->K && x->lda == y->lda && x->ldb == y->ldb &&
           x->ldc == y->ldc && x->alpha == y->alpha && x->beta == y->beta;
}

static void onednn_engine_init(void) {
    if (onednn.engine) return;
    ONEDNN_CHECK(dnnl_engine_create(&onednn.engine, dnnl_cpu, 0), NULL);
    ONEDNN_CHECK(dnnl_stream_create(&onednn.stream, onednn.engine, dnnl_stream_default_flags), NULL);
}

/* A 2-D descriptor for a logical [rows, cols] matrix with the given element strides. */
static dnnl_status_t onednn_md_2d(dnnl_memory_desc_t *md, dnnl_data_type_t dt, int rows, int cols,
                                  int row_stride, int col_stride) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {row_stride, col_stride};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

/* The primitive descriptor of a key, and the memory descriptors of A, B and C (md[0..2]). On
 * failure returns the status and names the failing call in *failed; nothing is left allocated. */
static dnnl_status_t onednn_pd_create(const onednn_key *k, dnnl_primitive_desc_t *pd,
                                      dnnl_memory_desc_t md[3], const char **failed) {
#define ONEDNN_TRY(call)                        \
    do {                                        \
        st = (call);                            \
        if (st != dnnl_success) {               \
            *failed = #call;                    \
            goto out;                           \
        }                                       \
    } while (0)
    dnnl_status_t st;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    *pd = NULL;
    if (k->transA) ONEDNN_TRY(onednn_md_2d(&md[0], k->ab, k->M, k->K, 1, k->lda));
    else ONEDNN_TRY(onednn_md_2d(&md[0], k->ab, k->M, k->K, k->lda, 1));
    if (k->transB) ONEDNN_TRY(onednn_md_2d(&md[1], k->ab, k->K, k->N, 1, k->ldb));
    else ONEDNN_TRY(onednn_md_2d(&md[1], k->ab, k->K, k->N, k->ldb, 1));
    ONEDNN_TRY(onednn_md_2d(&md[2], dnnl_f32, k->M, k->N, k->ldc, 1));

    ONEDNN_TRY(dnnl_primitive_attr_create(&attr));
    if (k->alpha != 1.0f) ONEDNN_TRY(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha));
    if (k->beta == 1.0f) {
        ONEDNN_TRY(dnnl_post_ops_create(&ops));
        ONEDNN_TRY(dnnl_post_ops_append_sum(ops, 1.0f));
        ONEDNN_TRY(dnnl_primitive_attr_set_post_ops(attr, ops));
    }
    dnnl_matmul_desc_t desc;
    ONEDNN_TRY(dnnl_matmul_desc_init(&desc, &md[0], &md[1], NULL, &md[2]));
    ONEDNN_TRY(dnnl_primitive_desc_create(pd, &desc, attr, onednn.engine, NULL));
out:
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
#undef ONEDNN_TRY
}

static void onednn_entry_init(onednn_entry *e, const onednn_key *k) {
    dnnl_memory_desc_t md[3];
    dnnl_primitive_desc_t pd;
    const char *failed = NULL;
    dnnl_status_t st = onednn_pd_create(k, &pd, md, &failed);
    if (st != dnnl_success) onednn_die(failed, st, k);
    ONEDNN_CHECK(dnnl_primitive_create(&e->prim, pd), k);
    ONEDNN_CHECK(dnnl_primitive_desc_destroy(pd), k);
    ONEDNN_CHECK(dnnl_memory_create(&e->a, &md[0], onednn.engine, DNNL_MEMORY_NONE), k);
    ONEDNN_CHECK(dnnl_memory_create(&e->b, &md[1], onednn.engine, DNNL_MEMORY_NONE), k);
    ONEDNN_CHECK(dnnl_memory_create(&e->c, &md[2], onednn.engine, DNNL_MEMORY_NONE), k);
    e->key = *k;
}

static onednn_entry *onednn_lookup(const onednn_key *k) {
    if (onednn.n > 0 && onednn_key_eq(&onednn.entries[onednn.last].key, k))
        return &onednn.entries[onednn.last];
    for (int i = 0; i < onednn.n; i++) {
        if (onednn_key_eq(&onednn.entries[i].key, k)) {
            onednn.last = i;
            return &onednn.entries[i];
        }
    }

    onednn_engine_init();
    if (onednn.n == onednn.cap) {
        int cap = onednn.cap ? 2 * onednn.cap : 32;
        onednn_entry *grown = realloc(onednn.entries, (size_t)cap * sizeof *grown);
        if (!grown) onednn_die("cache growth (realloc)", dnnl_out_of_memory, k);
        onednn.entries = grown;
        onednn.cap = cap;
    }
    onednn_entry *e = &onednn.entries[onednn.n];
    onednn_entry_init(e, k);
    onednn.last = onednn.n++;
    return e;
}

/* One product of a key's cached primitive on the caller's arrays. */
static void onednn_run(const onednn_key *k, const void *A, const void *B, float *C) {
    onednn_entry *e = onednn_lookup(k);
    /* oneDNN's handles are non-const; the primitive only reads SRC and WEIGHTS. */
    ONEDNN_CHECK(dnnl_memory_set_data_handle(e->a, (void *)A), k);
    ONEDNN_CHECK(dnnl_memory_set_data_handle(e->b, (void *)B), k);
    ONEDNN_CHECK(dnnl_memory_set_data_handle(e->c, C), k);
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, e->a},
        {DNNL_ARG_WEIGHTS, e->b},
        {DNNL_ARG_DST, e->c},
    };
    ONEDNN_CHECK(dnnl_primitive_execute(e->prim, onednn.stream, 3, args), k);
    ONEDNN_CHECK(dnnl_stream_wait(onednn.stream), k);
}

void gemm_onednn_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    onednn_key k = {dnnl_f32, transA != 0, transB != 0, M, N, K, lda, ldb, ldc, alpha, beta};
    onednn_run(&k, A, B, C);
}

void gemm_onednn_bf16(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A,
                      int lda, const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    onednn_key k = {dnnl_bf16, transA != 0, transB != 0, M, N, K, lda, ldb, ldc, alpha, beta};
    onednn_run(&k, A, B, C);
}

int gemm_onednn_bf16_probe(int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc,
                           float alpha, float beta) {
    onednn_key k = {dnnl_bf16, transA != 0, transB != 0, M, N, K, lda, ldb, ldc, alpha, beta};
    dnnl_memory_desc_t md[3];
    dnnl_primitive_desc_t pd;
    const char *failed = NULL;
    onednn_engine_init();
    dnnl_status_t st = onednn_pd_create(&k, &pd, md, &failed);
    if (st == dnnl_success) ONEDNN_CHECK(dnnl_primitive_desc_destroy(pd), &k);
    return (int)st;
}

bool gemm_onednn_bf16_available(void) {
    static int available = -1; /* unknown until the first call: the CPU does not change */
    if (available < 0)
        available = gemm_onednn_bf16_probe(0, 0, 64, 64, 64, 64, 64, 64, 1.0f, 0.0f) == dnnl_success;
    return available;
}

void gemm_release(void) {
    for (int i = 0; i < onednn.n; i++) {
        onednn_entry *e = &onednn.entries[i];
        dnnl_memory_destroy(e->a);
        dnnl_memory_destroy(e->b);
        dnnl_memory_destroy(e->c);
        dnnl_primitive_destroy(e->prim);
    }
    free(onednn.entries);
    if (onednn.stream) dnnl_stream_destroy(onednn.stream);
    if (onednn.engine) dnnl_engine_destroy(onednn.engine);
    onednn.engine = NULL;
    onednn.stream = NULL;
    onednn.entries = NULL;
    onednn.n = onednn.cap = onednn.last = 0;
}
