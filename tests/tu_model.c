#include "tu_model.h"

#include <string.h>

#include "error.h"
#include "gemm.h"
#include "testutil.h"

void tu_tiny_config(model_arch arch, model_config *cfg) {
    config_defaults(arch, cfg);
    cfg->vocab_size = TU_TINY_VOCAB, cfg->hidden_size = TU_TINY_HIDDEN, cfg->num_layers = TU_TINY_LAYERS;
    cfg->num_heads = 4, cfg->max_positions = 32;
    if (arch == ARCH_LLAMA) cfg->num_kv_heads = 2, cfg->intermediate_size = 24;
}

model *tu_tiny_model(model_config *cfg, uint64_t seed, rng_state *rng) {
    assert_int_equal(config_finish(cfg, "test"), PEFT_OK);
    model *m;
    assert_int_equal(model_init_random(cfg, seed, GEMM_OPENBLAS, &m), PEFT_OK);
    for (int i = 0; i < m->nparams; i++) {
        param *p = &m->params[i];
        const bool gain = p->ndim == 1 && !strcmp(strrchr(p->name, '.'), ".weight");
        for (size_t j = 0; j < p->numel; j++)
            p->data[j] = p->ndim == 2 ? 0.2f * rng_normal(rng) : (gain ? 1.0f : 0.0f) + 0.1f * rng_normal(rng);
    }
    return m;
}

const linear *tu_find_linear(const model *m, const char *module) {
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const block *b = &m->blocks[l];
        const linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->up, &b->down};
        for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
            if (ls[i]->weight && !strcmp(ls[i]->module, module)) return ls[i];
    }
    fail_msg("no linear layer %s", module);
    return NULL;
}

void tu_module_of(const char *name, const char *suffix, char *buf, size_t cap) {
    static const char prefix[] = "base_model.model.";
    const size_t plen = sizeof prefix - 1, n = strlen(name), slen = strlen(suffix);
    if (n < plen + slen || strncmp(name, prefix, plen) || !tu_ends_with(name, suffix) || n - plen - slen >= cap)
        fail_msg("'%s' is not base_model.model.<module>%s", name, suffix);
    memcpy(buf, name + plen, n - plen - slen);
    buf[n - plen - slen] = '\0';
}
