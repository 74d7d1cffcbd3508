#include "model/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"

/* Copies the last forward's keys/values for positions [0, T) of sequence 0 into cache rows
 * [at, at + T). */
static void cache_append(const model *m, const model_acts *a, float *cache, int at, int T) {
    const model_config *c = &m->cfg;
    const int K = c->num_kv_heads * c->head_dim, row = c->num_layers * 2 * K;
    for (int l = 0; l < c->num_layers; l++) {
        const float *k, *v;
        int ld;
        model_layer_kv(m, a, l, &k, &v, &ld);
        for (int t = 0; t < T; t++) {
            float *dst = cache + (size_t)(at + t) * row + (size_t)2 * l * K;
            memcpy(dst, k + (size_t)t * ld, (size_t)K * sizeof(float));
            memcpy(dst + K, v + (size_t)t * ld, (size_t)K * sizeof(float));
        }
    }
}

static int cmp_desc(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

int generate_sample(const float *logits, int V, float temperature, int top_k, float *work, void *rng_state_ptr) {
    int best = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > logits[best]) best = j;
    if (temperature <= 0.0f) return best;
    float cutoff = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(work, logits, (size_t)V * sizeof(float));
        qsort(work, (size_t)V, sizeof(float), cmp_desc);
        cutoff = work[top_k - 1];
    }
    double sum = 0.0;
    for (int j = 0; j < V; j++) {
        work[j] = logits[j] >= cutoff ? expf((logits[j] - logits[best]) / temperature) : 0.0f;
        sum += work[j];
    }
    double r = rng_uniform((rng_state *)rng_state_ptr) * sum, acc = 0.0;
    for (int j = 0; j < V; j++) {
        acc += work[j];
        if (work[j] > 0.0f && r < acc) return j;
    }
    return best;
}

int model_generate(model *m, const int *prompt, int n_prompt, const gen_options *o, int *out, int *n_out) {
    const model_config *c = &m->cfg;
    *n_out = 0;
    if (n_prompt <= 0) return err_set(PEFT_EUSAGE, "the prompt is empty");
    const int total = o->n_prefix + o->n_virtual + n_prompt + o->max_new_tokens;
    if (c->arch == ARCH_GPT2 && total > c->max_positions)
        return err_set(PEFT_EUSAGE, "prompt (%d tokens) plus %d new tokens exceed the model's n_positions = %d",
                       n_prompt, o->max_new_tokens, c->max_positions);
    const size_t row = (size_t)c->num_layers * 2 * c->num_kv_heads * c->head_dim;
    float *cache = malloc((size_t)total * row * sizeof(float));
    float *work = malloc((size_t)c->vocab_size * sizeof(float));
    model_acts *prefill = NULL, *step = NULL;
    int rc = PEFT_OK;
    if (!cache || !work) {
        rc = err_set(PEFT_ENOMEM, "out of memory allocating a cache of %d positions", total);
        goto out_free;
    }
    if ((rc = model_acts_init(m, 1, o->n_virtual + n_prompt, o->n_prefix, &prefill))) goto out_free;
    if ((rc = model_acts_init(m, 1, 1, total, &step))) goto out_free;
    rng_state rng;
    rng_seed(&rng, o->seed);

    /* the cache starts with the trained prefix, then the virtual tokens and the prompt */
    if (o->n_prefix) memcpy(cache, o->prefix, (size_t)o->n_prefix * row * sizeof(float));
    const int first = o->n_virtual + n_prompt;
    model_batch b = {.B = 1, .T = n_prompt, .tokens = prompt, .virtual_embeds = o->virtual_embeds,
                     .n_virtual = o->n_virtual, .prefix = o->n_prefix ? o->prefix : NULL, .n_prefix = o->n_prefix};
    if ((rc = model_forward(m, prefill, &b, NULL, NULL))) goto out_free;
    cache_append(m, prefill, cache, o->n_prefix, first);
    const float *logits = model_logits(prefill) + (size_t)(first - 1) * c->vocab_size;
    int pos = o->n_prefix + first;
    for (int i = 0; i < o->max_new_tokens; i++) {
        int next = generate_sample(logits, c->vocab_size, o->temperature, o->top_k, work, &rng);
        out[(*n_out)++] = next;
        if (next == o->stop_token || i + 1 == o->max_new_tokens) break;
        model_batch sb = {.B = 1, .T = 1, .tokens = &out[i], .prefix = cache, .n_prefix = pos};
        if ((rc = model_forward(m, step, &sb, NULL, NULL))) goto out_free;
        cache_append(m, step, cache, pos, 1);
        pos++;
        logits = model_logits(step);
    }
out_free:
    model_acts_free(prefill);
    model_acts_free(step);
    free(cache);
    free(work);
    return rc;
}
