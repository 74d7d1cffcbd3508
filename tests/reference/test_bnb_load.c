/*
 * test_bnb_load.c - NF4 bases end to end: bnb-4bit directories and quantisation at load time.
 *
 * tests/fixtures/quant/{gpt2,llama}_bnb4 were written by scripts/make_quant_fixtures.py from the
 * fp32 reference models tests/fixtures/ref/{gpt2,llama_gqa}: every block linear weight quantised
 * by the script's PyTorch reference of bitsandbytes (GPT-2's Conv1D transposed first, as
 * transformers does) and stored in the layout of FORMATS.md §4.4; expected.safetensors holds the
 * logits of the dequantised model computed in float64.
 *
 * Asserted:
 *  - loading the bnb directory and loading the fp32 directory with --quantize nf4 give the same
 *    compressed bytes (packed codes, absmax codes, nested absmax, offset) for every layer and
 *    bit-identical logits: our quantiser is bitsandbytes' and the loader does not re-quantise;
 *  - those logits match the float64 logits of the dequantised weights (TENSOR_RTOL);
 *  - (printed, not asserted: bytes per compressed parameter; the tiny layers' per-tensor
 *    descriptors weigh more than on a real model, see docs/BENCHMARKS.md for those);
 *  - fp4, a quant_map that is not NF4, a missing companion tensor, a shape that does not fit and
 *    a quantised embedding are refused with the documented status and a message naming the
 *    tensor; bf16 storage gives logits within BF16_RTOL of fp32.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "quant/qweight.h"

#define TENSOR_RTOL 1e-4 /* fp32 forward vs float64, as test_model_reference.c */
#define BF16_RTOL 2e-2   /* bf16 weights and inputs (8 bits of mantissa) vs fp32, normwise */

enum { B = 2, T = 7 };

static float *logits_of(model *m, const int *ids) {
    model_acts *a;
    assert_int_equal(model_acts_init(m, B, T, 0, &a), PEFT_OK);
    model_batch b = {.B = B, .T = T, .tokens = ids};
    assert_int_equal(model_forward(m, a, &b, NULL, NULL), PEFT_OK);
    size_t n = (size_t)B * T * m->cfg.vocab_size;
    float *out = malloc(n * sizeof(float));
    assert_non_null(out);
    memcpy(out, model_logits(a), n * sizeof(float));
    model_acts_free(a);
    return out;
}

static void read_ids(st_file *f, int *ids) {
    const st_tensor *t = st_find(f, "input_ids");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_I64);
    assert_int_equal(st_numel(t), B * T);
    const int64_t *v = t->data;
    for (int i = 0; i < B * T; i++) ids[i] = (int)v[i];
}

static void check_pair(const char *bnb_dir, const char *ref_dir) {
    char bnb[4096], ref[4096];
    snprintf(bnb, sizeof bnb, "%s", tu_fixture_path(bnb_dir));
    snprintf(ref, sizeof ref, "%s", tu_fixture_path(ref_dir));
    model *mb, *mq, *m32;
    if (model_load(bnb, GEMM_OPENBLAS, &mb)) fail_msg("%s", err_msg());
    const model_opts nf4 = {.quantize = MODEL_QUANT_NF4};
    if (model_load_with(ref, GEMM_OPENBLAS, &nf4, &mq)) fail_msg("%s", err_msg());
    if (model_load(ref, GEMM_OPENBLAS, &m32)) fail_msg("%s", err_msg());
    assert_true(mb->nqweights > 0);
    assert_int_equal(mb->nqweights, mq->nqweights);
    for (int i = 0; i < mb->nqweights; i++) {
        const nf4_tensor *x = &mb->qweights[i].nf4, *y = &mq->qweights[i].nf4;
        assert_int_equal(x->n, y->n);
        assert_true(x->nested && y->nested);
        if (memcmp(x->packed, y->packed, (x->n + 1) / 2) || memcmp(x->qabsmax, y->qabsmax, x->nblocks) ||
            memcmp(x->nested_absmax, y->nested_absmax, x->nnested * sizeof(float)) || x->offset != y->offset)
            fail_msg("%s: compressed weight %d differs between the bnb file and quantisation at load", bnb_dir, i);
    }
    model_storage s;
    model_storage_stats(mq, &s);
    assert_true(s.compressed_params > 0);
    /* tiny layers: the per-tensor descriptor (~150 bytes) weighs more than on a real model */
    double per = (double)s.compressed_bytes / (double)s.compressed_params;
    printf("%s: %zu compressed params in %zu bytes (%.3f bytes/param)\n", ref_dir, s.compressed_params,
           s.compressed_bytes, per);

    char path[4200];
    snprintf(path, sizeof path, "%s/expected.safetensors", bnb);
    st_file *f;
    assert_int_equal(st_open(path, &f), PEFT_OK);
    int ids[B * T];
    read_ids(f, ids);
    const st_tensor *want = st_find(f, "logits");
    assert_non_null(want);
    float *lb = logits_of(mb, ids), *lq = logits_of(mq, ids), *l32 = logits_of(m32, ids);
    size_t n = (size_t)st_numel(want);
    assert_int_equal(n, (size_t)B * T * mb->cfg.vocab_size);
    if (memcmp(lb, lq, n * sizeof(float))) fail_msg("%s: logits of the bnb file and of --quantize nf4 differ", bnb_dir);
    tu_assert_close("logits of the bnb-4bit model vs float64 dequantised reference", lb, want->data, n, TENSOR_RTOL);
    /* quantisation changed the function (else the comparison above proves nothing about NF4) */
    size_t where;
    assert_true(tu_max_abs_diff(lb, l32, n, &where) > 1e-4);
    free(lb);
    free(lq);
    free(l32);
    st_close(f);
    model_free(mb);
    model_free(mq);
    model_free(m32);
}

static void test_gpt2(void **state) {
    (void)state;
    check_pair("quant/gpt2_bnb4", "ref/gpt2");
}

static void test_llama(void **state) {
    (void)state;
    check_pair("quant/llama_bnb4", "ref/llama_gqa");
}

static void test_bf16(void **state) {
    (void)state;
    const char *dirs[] = {"ref/gpt2", "ref/llama_gqa"};
    for (int d = 0; d < 2; d++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", tu_fixture_path(dirs[d]));
        model *m32, *mb;
        const model_opts bf = {.bf16 = true};
        if (model_load(dir, GEMM_ONEDNN, &m32) || model_load_with(dir, GEMM_ONEDNN, &bf, &mb)) fail_msg("%s", err_msg());
        assert_true(mb->nqweights > 0 && mb->qweights[0].fmt == QWEIGHT_BF16);
        int ids[B * T];
        for (int i = 0; i < B * T; i++) ids[i] = (i * 7 + 3) % m32->cfg.vocab_size;
        float *a = logits_of(m32, ids), *b = logits_of(mb, ids);
        size_t n = (size_t)B * T * m32->cfg.vocab_size, where;
        tu_assert_close("bf16 logits vs fp32", b, a, n, BF16_RTOL);
        assert_true(tu_max_abs_diff(a, b, n, &where) > 0.0); /* bf16 did round something */
        free(a);
        free(b);
        model_free(m32);
        model_free(mb);
    }
}

/* ---- refusals -------------------------------------------------------------------------------------- */

/* Copies the bnb fixture into a temporary directory, applying `edit` to its tensor list. */
typedef void (*edit_fn)(st_writer *w, const st_tensor *t, void *scratch);

static char *edited_copy(const char *src_rel, edit_fn edit) {
    char *dir = tu_tmpdir();
    char src[4096], path[4200];
    snprintf(src, sizeof src, "%s", tu_fixture_path(src_rel));
    snprintf(path, sizeof path, "%s/config.json", src);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, buf, len);
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    st_file *f;
    assert_int_equal(st_open(path, &f), PEFT_OK);
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    static float scratch[64];
    for (size_t i = 0; i < st_count(f); i++) edit(w, st_at(f, i), scratch);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(st_writer_save(w, path), PEFT_OK);
    st_writer_free(w);
    st_close(f);
    return dir;
}

static const char *LAYER = "transformer.h.0.attn.c_proj.weight";

static void add_as_is(st_writer *w, const st_tensor *t) {
    assert_int_equal(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), PEFT_OK);
}

static bool is(const st_tensor *t, const char *suffix) {
    char name[256];
    snprintf(name, sizeof name, "%s%s", LAYER, suffix);
    return !strcmp(t->name, name);
}

static void drop_nested_absmax(st_writer *w, const st_tensor *t, void *s) {
    (void)s;
    if (!is(t, ".nested_absmax")) add_as_is(w, t);
}

static void wrong_quant_map(st_writer *w, const st_tensor *t, void *s) {
    if (!is(t, ".quant_map")) return add_as_is(w, t);
    float *v = s;
    memcpy(v, t->data, 16 * sizeof(float));
    v[3] = -0.4f;
    assert_int_equal(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, v), PEFT_OK);
}

static void short_weight(st_writer *w, const st_tensor *t, void *s) {
    (void)s;
    if (!is(t, "")) return add_as_is(w, t);
    int64_t shape[2] = {t->shape[0] - 1, 1};
    assert_int_equal(st_writer_add(w, t->name, t->dtype, 2, shape, t->data), PEFT_OK);
}

static void quantised_embedding(st_writer *w, const st_tensor *t, void *s) {
    (void)s;
    add_as_is(w, t);
    if (is(t, ".quant_state.bitsandbytes__nf4"))
        assert_int_equal(st_writer_add(w, "transformer.wte.weight.quant_state.bitsandbytes__nf4", t->dtype, t->ndim,
                                       t->shape, t->data), PEFT_OK);
}

static void expect_refusal(const char *src, edit_fn edit, int status, const char *needle1, const char *needle2) {
    char *dir = edited_copy(src, edit);
    model *m = NULL;
    int rc = model_load(dir, GEMM_OPENBLAS, &m);
    if (rc != status) fail_msg("%s: expected status %d, got %d (%s)", needle1, status, rc, err_msg());
    assert_null(m);
    if (!strstr(err_msg(), needle1) || (needle2 && !strstr(err_msg(), needle2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err_msg(), needle1, needle2 ? needle2 : "");
    tu_rmtree(dir);
    free(dir);
}

static void keep_all(st_writer *w, const st_tensor *t, void *s) {
    (void)s;
    add_as_is(w, t);
}

static void test_refusals(void **state) {
    (void)state;
    model *m = NULL;
    assert_int_equal(model_load(tu_fixture_path("quant/gpt2_bnb4_fp4"), GEMM_OPENBLAS, &m), PEFT_EUNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(err_msg(), "fp4"));
    assert_non_null(strstr(err_msg(), "transformer.h.1.mlp.c_fc.weight"));
    expect_refusal("quant/gpt2_bnb4", drop_nested_absmax, PEFT_EFORMAT, "nested_absmax", "missing");
    expect_refusal("quant/gpt2_bnb4", wrong_quant_map, PEFT_EUNSUPPORTED, "quant_map", "NF4");
    expect_refusal("quant/gpt2_bnb4", short_weight, PEFT_EFORMAT, LAYER, "elements");
    expect_refusal("quant/gpt2_bnb4", quantised_embedding, PEFT_EUNSUPPORTED, "transformer.wte.weight", "unquantised");
    /* the copy machinery itself keeps a loadable model */
    char *dir = edited_copy("quant/gpt2_bnb4", keep_all);
    if (model_load(dir, GEMM_OPENBLAS, &m)) fail_msg("%s", err_msg());
    model_free(m);
    tu_rmtree(dir);
    free(dir);
}

static void test_not_trainable(void **state) {
    (void)state;
    model *m;
    if (model_load(tu_fixture_path("quant/llama_bnb4"), GEMM_OPENBLAS, &m)) fail_msg("%s", err_msg());
    assert_int_equal(model_set_trainable(m, NULL, NULL), PEFT_EUNSUPPORTED);
    assert_non_null(strstr(err_msg(), "cannot be trained"));
    char *dir = tu_tmpdir();
    assert_int_equal(model_save(m, dir), PEFT_EUNSUPPORTED);
    tu_rmtree(dir);
    free(dir);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),        cmocka_unit_test(test_llama),         cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_refusals),    cmocka_unit_test(test_not_trainable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
