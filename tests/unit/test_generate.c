/*
 * test_generate.c - KV-cached decoding equals recomputing the whole sequence every step (greedy,
 * both families, GQA), sampling is reproducible for a seed, and top-k / temperature behave.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model/generate.h"
#include "model/model.h"
#include "rng.h"
#include "testutil.h"

static model *tiny_model(model_arch arch) {
    model_config c;
    config_defaults(arch, &c);
    c.vocab_size = 50;
    c.hidden_size = 32;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = arch == ARCH_LLAMA ? 2 : 4;
    c.head_dim = 0;
    c.intermediate_size = arch == ARCH_LLAMA ? 48 : 128;
    c.max_positions = 64;
    c.bos_token_id = c.eos_token_id = 49;
    assert_int_equal(config_finish(&c, "test"), PEFT_OK);
    model *m;
    assert_int_equal(model_init_random(&c, 7, GEMM_OPENBLAS, &m), PEFT_OK);
    /* larger weights than the 0.02 init so the argmax is decisive and varies along the sequence */
    for (size_t i = 0; i < m->nweights; i++) m->weights[i] *= 25.0f;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].ndim == 1 && strstr(m->params[i].name, "bias") == NULL)
            for (size_t j = 0; j < m->params[i].numel; j++) m->params[i].data[j] = 1.0f;
    return m;
}

/* Greedy decoding by running the whole sequence through the model at every step. */
static void greedy_uncached(model *m, const int *prompt, int n_prompt, int n_new, int *out) {
    int seq[64];
    memcpy(seq, prompt, (size_t)n_prompt * sizeof(int));
    model_acts *a;
    assert_int_equal(model_acts_init(m, 1, n_prompt + n_new, 0, &a), PEFT_OK);
    const int V = m->cfg.vocab_size;
    for (int i = 0; i < n_new; i++) {
        int T = n_prompt + i;
        model_batch b = {.B = 1, .T = T, .tokens = seq};
        assert_int_equal(model_forward(m, a, &b, NULL, NULL), PEFT_OK);
        const float *row = model_logits(a) + (size_t)(T - 1) * V;
        int best = 0;
        for (int j = 1; j < V; j++)
            if (row[j] > row[best]) best = j;
        seq[T] = out[i] = best;
    }
    model_acts_free(a);
}

static void check_cache_matches(model_arch arch) {
    model *m = tiny_model(arch);
    const int prompt[] = {3, 17, 8, 22, 5};
    const int n_new = 20;
    int want[32], got[32], n_got;
    greedy_uncached(m, prompt, 5, n_new, want);
    gen_options o = {.max_new_tokens = n_new, .temperature = 0.0f, .stop_token = -1};
    assert_int_equal(model_generate(m, prompt, 5, &o, got, &n_got), PEFT_OK);
    assert_int_equal(n_got, n_new);
    int distinct = 0;
    for (int i = 0; i < n_new; i++) {
        if (got[i] != want[i]) fail_msg("token %d: cached %d, uncached %d", i, got[i], want[i]);
        distinct += i == 0 || got[i] != got[i - 1];
    }
    assert_true(distinct > 3); /* the comparison means something only if the output varies */
    model_free(m);
}

/* A trained prompt (virtual tokens) and prefix (extra key/values) go through the cache too:
 * greedy cached decoding equals recomputing the whole sequence with them every step. */
static void check_virtual_and_prefix(model_arch arch) {
    model *m = tiny_model(arch);
    const model_config *c = &m->cfg;
    const int nv = 2, np = 3, C = c->hidden_size, row = c->num_layers * 2 * c->num_kv_heads * c->head_dim;
    float virt[2 * 32], prefix[3 * 2 * 2 * 4 * 8];
    PEFT_ASSERT((size_t)nv * C <= sizeof virt / sizeof *virt && (size_t)np * row <= sizeof prefix / sizeof *prefix);
    rng_state r;
    rng_seed(&r, 11);
    for (int i = 0; i < nv * C; i++) virt[i] = rng_normal(&r);
    for (int i = 0; i < np * row; i++) prefix[i] = 2.0f * rng_normal(&r);
    const int prompt[] = {3, 17, 8};
    const int n_new = 12;
    int seq[32], want[16], got[16], n_got;
    memcpy(seq, prompt, sizeof prompt);
    model_acts *a;
    assert_int_equal(model_acts_init(m, 1, nv + 3 + n_new, np, &a), PEFT_OK);
    for (int i = 0; i < n_new; i++) {
        int T = 3 + i;
        model_batch b = {.B = 1, .T = T, .tokens = seq, .virtual_embeds = virt, .n_virtual = nv, .prefix = prefix,
                         .n_prefix = np};
        assert_int_equal(model_forward(m, a, &b, NULL, NULL), PEFT_OK);
        const float *rowp = model_logits(a) + (size_t)(nv + T - 1) * c->vocab_size;
        int best = 0;
        for (int j = 1; j < c->vocab_size; j++)
            if (rowp[j] > rowp[best]) best = j;
        seq[T] = want[i] = best;
    }
    model_acts_free(a);
    gen_options o = {.max_new_tokens = n_new, .stop_token = -1, .virtual_embeds = virt, .n_virtual = nv,
                     .prefix = prefix, .n_prefix = np};
    assert_int_equal(model_generate(m, prompt, 3, &o, got, &n_got), PEFT_OK);
    assert_int_equal(n_got, n_new);
    for (int i = 0; i < n_new; i++)
        if (got[i] != want[i]) fail_msg("token %d: cached %d, uncached %d", i, got[i], want[i]);
    model_free(m);
}

static void test_virtual_and_prefix_gpt2(void **state) { (void)state; check_virtual_and_prefix(ARCH_GPT2); }
static void test_virtual_and_prefix_llama(void **state) { (void)state; check_virtual_and_prefix(ARCH_LLAMA); }

static void test_cache_matches_gpt2(void **state) { (void)state; check_cache_matches(ARCH_GPT2); }
static void test_cache_matches_llama(void **state) { (void)state; check_cache_matches(ARCH_LLAMA); }

static void test_sampling_reproducible(void **state) {
    (void)state;
    model *m = tiny_model(ARCH_LLAMA);
    const int prompt[] = {1, 2, 3};
    gen_options o = {.max_new_tokens = 12, .temperature = 1.0f, .top_k = 10, .seed = 5, .stop_token = -1};
    int a[12], b[12], c[12], na, nb, nc;
    assert_int_equal(model_generate(m, prompt, 3, &o, a, &na), PEFT_OK);
    assert_int_equal(model_generate(m, prompt, 3, &o, b, &nb), PEFT_OK);
    assert_memory_equal(a, b, sizeof a);
    o.seed = 6;
    assert_int_equal(model_generate(m, prompt, 3, &o, c, &nc), PEFT_OK);
    assert_memory_not_equal(a, c, sizeof a);
    model_free(m);
}

static void test_top_k_and_temperature(void **state) {
    (void)state;
    float logits[6] = {0.0f, 3.0f, 1.0f, 2.9f, -1.0f, 2.8f}, work[6];
    rng_state r;
    rng_seed(&r, 1);
    assert_int_equal(generate_sample(logits, 6, 0.0f, 0, work, &r), 1);
    int seen[6] = {0};
    for (int i = 0; i < 2000; i++) seen[generate_sample(logits, 6, 1.0f, 3, work, &r)]++;
    assert_int_equal(seen[0] + seen[2] + seen[4], 0); /* outside the top 3 */
    assert_true(seen[1] > 0 && seen[3] > 0 && seen[5] > 0);
    /* a tiny temperature concentrates on the argmax */
    int hits = 0;
    for (int i = 0; i < 200; i++) hits += generate_sample(logits, 6, 0.01f, 0, work, &r) == 1;
    assert_true(hits > 190);
}

static void test_stops_at_eos_and_checks_length(void **state) {
    (void)state;
    model *m = tiny_model(ARCH_GPT2);
    const int prompt[] = {1, 2, 3};
    int out[80], n;
    gen_options o = {.max_new_tokens = 10, .stop_token = -1};
    assert_int_equal(model_generate(m, prompt, 3, &o, out, &n), PEFT_OK);
    o.stop_token = out[2];
    int first = 0;
    while (out[first] != o.stop_token) first++;
    assert_int_equal(model_generate(m, prompt, 3, &o, out, &n), PEFT_OK);
    assert_int_equal(n, first + 1);
    o.max_new_tokens = 70; /* 3 + 70 > n_positions 64 */
    o.stop_token = -1;
    assert_int_equal(model_generate(m, prompt, 3, &o, out, &n), PEFT_EUSAGE);
    assert_non_null(strstr(err_msg(), "n_positions"));
    const int bad[] = {1, 99};
    o.max_new_tokens = 2;
    assert_int_equal(model_generate(m, bad, 2, &o, out, &n), PEFT_EMISMATCH);
    assert_non_null(strstr(err_msg(), "outside the vocabulary"));
    model_free(m);
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_matches_gpt2),     cmocka_unit_test(test_cache_matches_llama),
        cmocka_unit_test(test_virtual_and_prefix_gpt2), cmocka_unit_test(test_virtual_and_prefix_llama),
        cmocka_unit_test(test_sampling_reproducible),  cmocka_unit_test(test_top_k_and_temperature),
        cmocka_unit_test(test_stops_at_eos_and_checks_length),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
