/*
 * test_export.c - the exporters against FORMATS.md and the golden files, for every method case of
 * tests/fixtures/methods (the fixture's tensor values loaded into the method):
 *   * peft (§2): adapter_config.json has exactly the keys peft 0.20 wrote in the golden config of
 *     the same peft_type, with our values (r, lora_alpha, rsLoRA, DoRA, fan_in_fan_out on GPT-2,
 *     layers_to_transform, lora_bias, target/feed-forward modules, GQA-adjusted token_dim and
 *     num_attention_heads, ...), printed as Python's json.dumps(indent=2, sort_keys=True) prints
 *     it (floats with ".0", no final newline); adapter_model.safetensors holds the fixture's keys,
 *     all F32, metadata {"format":"pt"}; a projected prefix is one prompt_embeddings tensor equal
 *     to the fixture's MLP output;
 *   * AdapterHub (§3.6): the golden config's key sets (top level and the 32 BnConfig fields), the
 *     case's BnConfig values, version adapters.1.1.0, no safetensors metadata, full keys with the
 *     adapter name (and Bapna's LayerNorm under both of its names); io adapters refused there and
 *     written in peft's own format;
 *   * re-importing each export (adapter_open/adapter_apply) gives the identical loss;
 *   * GGUF (§6), read back by a small reader here: header, metadata, tensor table (names, ggml
 *     dims, F32, 32-aligned offsets, file size), lora_a == A, lora_b == B with the Q/K row
 *     permutation, alpha * sqrt(r) for rsLoRA; DoRA, IA3 and GPT-2 are refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "export/adapter_load.h"
#include "export/export.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/peft.h"
#include "testutil.h"

static const char *cases[] = {
    "gpt2_lora",      "gpt2_lora_layers", "llama_lora",     "llama_rslora",   "gpt2_dora",      "llama_dora",
    "gpt2_ia3",       "llama_ia3",        "gpt2_prompt",    "llama_prompt",   "gpt2_prefix",    "llama_prefix",
    "gpt2_prefix_proj", "llama_prefix_proj", "gpt2_houlsby", "llama_houlsby", "gpt2_pfeiffer",  "llama_pfeiffer",
    "gpt2_parallel",  "llama_parallel",   "gpt2_bapna",     "llama_bapna",    "gpt2_io",        "llama_io",
};

typedef struct loaded {
    cJSON *c;
    char model_dir[1200];
    model *m;
    peft_model *p;
    st_file *ad, *ex;
    int B, T, *ids, *targets;
    double loss;
    char targets_buf[512], layers_buf[512], ff_buf[512];
} loaded;

static cJSON *load_json(const char *path) {
    cJSON *o;
    if (json_load_file(path, &o)) fail_msg("%s", err_msg());
    return o;
}

static double run_loss(model *m, peft_model *p, const loaded *L) {
    assert_int_equal(peft_model_reserve(p, L->B, L->T), PEFT_OK);
    model_acts *a;
    assert_int_equal(model_acts_init(m, L->B, peft_model_positions(p, L->T), peft_model_prefix_len(p), &a), PEFT_OK);
    double nll;
    int count;
    if (peft_model_forward(p, a, L->ids, L->targets, L->B, L->T, &nll, &count)) fail_msg("%s", err_msg());
    model_acts_free(a);
    return nll / count;
}

/* The case's method with the fixture's values, and its loss on the fixture's batch. */
static void load_case(const char *name, loaded *L) {
    memset(L, 0, sizeof *L);
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", tu_fixture_path("methods"), name);
    snprintf(path, sizeof path, "%s/case.json", dir);
    L->c = load_json(path);
    snprintf(L->model_dir, sizeof L->model_dir, "%s/%s", tu_fixture_path("ref"), cJSON_GetObjectItem(L->c, "model")->valuestring);
    if (model_load(L->model_dir, GEMM_OPENBLAS, &L->m)) fail_msg("%s", err_msg());
    peft_config pc = tu_case_config(L->c, L->targets_buf, L->layers_buf, L->ff_buf);
    if (peft_model_create(L->m, &pc, NULL, &L->p)) fail_msg("%s: %s", name, err_msg());
    snprintf(path, sizeof path, "%s/adapter.safetensors", dir);
    if (st_open(path, &L->ad)) fail_msg("%s", err_msg());
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (st_open(path, &L->ex)) fail_msg("%s", err_msg());
    const tensor_table *t = peft_model_table(L->p);
    for (int i = 0; i < t->n; i++) {
        const st_tensor *st = st_find(L->ad, t->e[i].name);
        assert_non_null(st);
        assert_int_equal(st_read_f32(st, peft_model_params(L->p) + t->e[i].offset, t->e[i].numel), PEFT_OK);
    }
    const st_tensor *it = st_find(L->ex, "input_ids"), *tt = st_find(L->ex, "targets");
    L->B = (int)it->shape[0];
    L->T = (int)it->shape[1];
    const int S = (int)tt->shape[1], nv = S - L->T;
    L->ids = malloc(it->nbytes);
    L->targets = malloc((size_t)L->B * L->T * sizeof(int));
    memcpy(L->ids, it->data, it->nbytes);
    for (int b = 0; b < L->B; b++) memcpy(L->targets + (size_t)b * L->T, (const int *)tt->data + (size_t)b * S + nv, (size_t)L->T * sizeof(int));
    L->loss = run_loss(L->m, L->p, L);
}

static void free_case(loaded *L) {
    peft_model_free(L->p);
    model_free(L->m);
    st_close(L->ad);
    st_close(L->ex);
    cJSON_Delete(L->c);
    free(L->ids);
    free(L->targets);
}

/* The keys of an object, sorted, joined by spaces. */
static void key_set(const cJSON *o, char *buf, size_t cap) {
    const char *k[128];
    int n = 0;
    for (const cJSON *e = o->child; e && n < 128; e = e->next) k[n++] = e->string;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(k[j - 1], k[j]) > 0; j--) {
            const char *x = k[j];
            k[j] = k[j - 1];
            k[j - 1] = x;
        }
    buf[0] = '\0';
    for (int i = 0; i < n; i++) snprintf(buf + strlen(buf), cap - strlen(buf), "%s ", k[i]);
}

static void same_keys(const char *what, const cJSON *got, const cJSON *want) {
    char a[4096], b[4096];
    key_set(got, a, sizeof a);
    key_set(want, b, sizeof b);
    if (strcmp(a, b)) fail_msg("%s: config keys\n  ours:   %s\n  golden: %s", what, a, b);
}

static const cJSON *item(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) fail_msg("config lacks '%s'", k);
    return v;
}

/* Two JSON values equal (numbers, bools, strings, null, arrays of those, in order). */
static void same_value(const char *what, const char *key, const cJSON *got, const cJSON *want) {
    char *g = cJSON_PrintUnformatted(got), *w = cJSON_PrintUnformatted(want);
    if (strcmp(g, w)) fail_msg("%s: '%s' is %s, want %s", what, key, g, w);
    free(g);
    free(w);
}

static void check_text_style(const char *what, const char *path) {
    char *text;
    size_t n;
    assert_int_equal(file_read_all(path, &text, &n), PEFT_OK);
    if (n == 0 || text[n - 1] != '}' || strncmp(text, "{\n  \"", 5)) fail_msg("%s: not json.dumps(indent=2) layout", what);
    free(text);
}

static void check_peft_export(const char *name, loaded *L, const char *dir) {
    char path[1300], golden[1200];
    const peft_method meth = peft_model_config(L->p)->method;
    const char *type = meth == PEFT_IA3 ? "ia3" : meth == PEFT_PROMPT ? "prompt" : meth == PEFT_PREFIX ? "prefix" : "lora";
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    check_text_style(name, path);
    cJSON *o = load_json(path);
    snprintf(golden, sizeof golden, "%s/peft/llama-tiny-%s/adapter_config.json", tu_fixture_path("golden"), type);
    cJSON *g = load_json(golden);
    same_keys(name, o, g);
    same_value(name, "peft_type", item(o, "peft_type"), item(g, "peft_type"));
    same_value(name, "task_type", item(o, "task_type"), item(g, "task_type"));
    assert_true(cJSON_IsTrue(item(o, "inference_mode")));
    assert_string_equal(item(o, "base_model_name_or_path")->valuestring, L->model_dir);
    const cJSON *c = L->c;
    if (meth == PEFT_LORA || meth == PEFT_DORA) {
        static const char *same[] = {"r", "lora_alpha", "use_rslora", "fan_in_fan_out", "lora_bias", "target_modules"};
        for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) same_value(name, same[i], item(o, same[i]), item(c, same[i]));
        assert_int_equal(cJSON_IsTrue(item(o, "use_dora")), meth == PEFT_DORA);
        assert_string_equal(item(o, "bias")->valuestring, "none");
        const cJSON *lt = cJSON_GetObjectItem(c, "layers_to_transform");
        if (lt) same_value(name, "layers_to_transform", item(o, "layers_to_transform"), lt);
        else assert_true(cJSON_IsNull(item(o, "layers_to_transform")));
    } else if (meth == PEFT_IA3) {
        same_value(name, "target_modules", item(o, "target_modules"), item(c, "target_modules"));
        same_value(name, "feedforward_modules", item(o, "feedforward_modules"), item(c, "feedforward_modules"));
        same_value(name, "fan_in_fan_out", item(o, "fan_in_fan_out"), item(c, "fan_in_fan_out"));
    } else {
        static const char *same[] = {"token_dim", "num_attention_heads", "num_layers"};
        for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) /* what the case spells out */
            if (cJSON_GetObjectItem(c, same[i])) same_value(name, same[i], item(o, same[i]), item(c, same[i]));
        if (meth == PEFT_PROMPT) {
            assert_int_equal(item(o, "num_attention_heads")->valueint, L->m->cfg.num_heads);
            assert_int_equal(item(o, "num_layers")->valueint, L->m->cfg.num_layers);
        }
        assert_int_equal(item(o, "num_virtual_tokens")->valueint, peft_model_config(L->p)->num_virtual_tokens);
        assert_int_equal(item(o, "num_transformer_submodules")->valueint, 1);
        if (meth == PEFT_PREFIX)
            assert_int_equal(cJSON_IsTrue(item(o, "prefix_projection")), peft_model_config(L->p)->prefix_projection);
    }
    cJSON_Delete(o);
    cJSON_Delete(g);
    /* tensors */
    st_file *f;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st_open(path, &f)) fail_msg("%s", err_msg());
    assert_non_null(st_metadata(f, "format"));
    assert_string_equal(st_metadata(f, "format"), "pt");
    for (size_t i = 0; i < st_count(f); i++) assert_int_equal(st_at(f, i)->dtype, ST_F32);
    const st_tensor *po = st_find(L->ex, "prefix_output");
    if (po) { /* the MLP output under prompt_embeddings, nothing else */
        assert_int_equal(st_count(f), 1);
        const st_tensor *e = st_find(f, "prompt_embeddings");
        assert_non_null(e);
        assert_int_equal(e->shape[0], po->shape[0]);
        assert_int_equal(e->shape[1], po->shape[1]);
        float *got = malloc(e->nbytes), *want = malloc(po->nbytes);
        st_read_f32(e, got, (size_t)st_numel(e));
        st_read_f32(po, want, (size_t)st_numel(po));
        tu_assert_close("exported prefix vs fixture MLP output", got, want, (size_t)st_numel(e), 1e-5);
        free(got);
        free(want);
    } else {
        assert_int_equal(st_count(f), st_count(L->ad));
        for (size_t i = 0; i < st_count(L->ad); i++) {
            const st_tensor *w = st_at(L->ad, i), *t = st_find(f, w->name);
            if (!t) fail_msg("%s: export lacks %s", name, w->name);
            assert_int_equal(t->nbytes, w->nbytes);
            if (memcmp(t->data, w->data, w->nbytes)) fail_msg("%s: %s differs from the fixture", name, w->name);
        }
    }
    st_close(f);
}

static void check_adapterhub_export(const char *name, loaded *L, const char *dir) {
    char path[1300], golden[1200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    check_text_style(name, path);
    cJSON *o = load_json(path);
    snprintf(golden, sizeof golden, "%s/adapterhub/llama-tiny-par_bn/adapter_config.json", tu_fixture_path("golden"));
    cJSON *g = load_json(golden);
    same_keys(name, o, g);
    same_keys(name, item(o, "config"), item(g, "config"));
    const cJSON *bc = item(o, "config");
    static const char *same[] = {"mh_adapter", "output_adapter", "non_linearity", "scaling", "is_parallel",
                                 "original_ln_before", "ln_before", "residual_before_ln", "original_ln_after", "ln_after"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) same_value(name, same[i], item(bc, same[i]), item(L->c, same[i]));
    assert_int_equal(item(bc, "reduction_factor")->valuedouble, item(L->c, "reduction_factor")->valuedouble);
    assert_string_equal(item(o, "version")->valuestring, "adapters.1.1.0");
    assert_string_equal(item(o, "name")->valuestring, "myadapter");
    assert_int_equal(item(o, "hidden_size")->valueint, L->m->cfg.hidden_size);
    cJSON_Delete(o);
    cJSON_Delete(g);
    char *text;
    assert_int_equal(file_read_all(path, &text, NULL), PEFT_OK);
    if (!strstr(text, "\"dropout\": 0.0,") || !strstr(text, "\"phm_init_range\": 0.0001,"))
        fail_msg("%s: floats not printed as Python does", name);
    free(text);
    st_file *f;
    snprintf(path, sizeof path, "%s/adapter.safetensors", dir);
    if (st_open(path, &f)) fail_msg("%s", err_msg());
    assert_null(st_metadata(f, "format"));
    const bool bapna = strstr(name, "bapna") != NULL;
    size_t aliases = 0;
    for (size_t i = 0; i < st_count(L->ad); i++) {
        const st_tensor *w = st_at(L->ad, i);
        char key[300];
        const char *at = strstr(w->name, ".adapters.default.");
        assert_non_null(at);
        snprintf(key, sizeof key, "%.*s.adapters.myadapter.%s", (int)(at - w->name), w->name, at + 18);
        const st_tensor *t = st_find(f, key);
        if (!t || t->dtype != ST_F32 || memcmp(t->data, w->data, w->nbytes)) fail_msg("%s: %s missing or different", name, key);
        const char *ln = strstr(key, ".adapter_down.0.");
        if (bapna && ln) {
            char alias[340];
            snprintf(alias, sizeof alias, "%.*s.adapter_norm_before.%s", (int)(ln - key), key, ln + 16);
            t = st_find(f, alias);
            if (!t || memcmp(t->data, w->data, w->nbytes)) fail_msg("%s: %s missing or different", name, alias);
            aliases++;
        }
    }
    assert_int_equal(st_count(f), st_count(L->ad) + aliases);
    if (bapna) assert_true(aliases > 0);
    st_close(f);
}

static void roundtrip(const char *name, loaded *L, const char *dir) {
    model *m;
    if (model_load(L->model_dir, GEMM_OPENBLAS, &m)) fail_msg("%s", err_msg());
    adapter_file *af;
    peft_model *p;
    if (adapter_open(dir, m, &af)) fail_msg("%s: %s", name, err_msg());
    if (adapter_apply(af, m, adapter_config(af), NULL, &p)) fail_msg("%s: %s", name, err_msg());
    double loss = run_loss(m, p, L);
    if (loss != L->loss) fail_msg("%s: re-imported loss %.17g, exported %.17g", name, loss, L->loss);
    peft_model_free(p);
    adapter_close(af);
    model_free(m);
}

static void test_export_import(void **state) {
    (void)state;
    char *tmp = tu_tmpdir();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *name = cases[k];
        loaded L;
        load_case(name, &L);
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/%s", tmp, name);
        assert_int_equal(file_mkdirs(dir), PEFT_OK);
        const peft_method meth = peft_model_config(L.p)->method;
        if (meth == PEFT_IO) {
            assert_int_equal(export_adapterhub(L.p, L.model_dir, "myadapter", dir), PEFT_EUNSUPPORTED);
            assert_int_equal(export_peft(L.p, L.model_dir, dir), PEFT_EUNSUPPORTED);
            assert_int_equal(export_io(L.p, L.model_dir, dir), PEFT_OK);
        } else if (meth >= PEFT_HOULSBY) {
            assert_int_equal(export_peft(L.p, L.model_dir, dir), PEFT_EUNSUPPORTED);
            if (export_adapterhub(L.p, L.model_dir, "myadapter", dir)) fail_msg("%s: %s", name, err_msg());
            check_adapterhub_export(name, &L, dir);
        } else {
            assert_int_equal(export_adapterhub(L.p, L.model_dir, "myadapter", dir), PEFT_EUNSUPPORTED);
            if (export_peft(L.p, L.model_dir, dir)) fail_msg("%s: %s", name, err_msg());
            check_peft_export(name, &L, dir);
        }
        roundtrip(name, &L, dir);
        printf("  %-18s exported and re-imported: loss %.9f (fixture %.9f)\n", name, L.loss,
               *(const double *)st_find(L.ex, "loss_f64")->data);
        free_case(&L);
    }
    tu_rmtree(tmp);
    free(tmp);
}

/* ---- a small GGUF v3 reader (FORMATS.md §6.1) ---- */

typedef struct gguf_tensor {
    char name[96];
    uint32_t ndim, type;
    uint64_t ne[4], offset;
} gguf_tensor;

typedef struct rd {
    const uint8_t *p;
    size_t n, pos;
} rd;

static uint64_t rd_u(rd *r, int bytes) {
    if (r->pos + (size_t)bytes > r->n) fail_msg("gguf: read past the end at %zu", r->pos);
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->pos + (size_t)i] << (8 * i);
    r->pos += (size_t)bytes;
    return v;
}

static void rd_str(rd *r, char *out, size_t cap) {
    uint64_t n = rd_u(r, 8);
    if (n >= cap || r->pos + n > r->n) fail_msg("gguf: string of %llu bytes at %zu", (unsigned long long)n, r->pos);
    memcpy(out, r->p + r->pos, n);
    out[n] = '\0';
    r->pos += n;
}

static void check_gguf(const char *name) {
    loaded L;
    load_case(name, &L);
    char *tmp = tu_tmpdir(), path[1200];
    snprintf(path, sizeof path, "%s/a.gguf", tmp);
    if (export_gguf(L.p, path)) fail_msg("%s: %s", name, err_msg());
    char *buf;
    size_t n;
    assert_int_equal(file_read_all(path, &buf, &n), PEFT_OK);
    rd r = {(const uint8_t *)buf, n, 0};
    assert_memory_equal(buf, "GGUF", 4);
    r.pos = 4;
    assert_int_equal(rd_u(&r, 4), 3);
    const uint64_t nt = rd_u(&r, 8), nkv = rd_u(&r, 8);
    const cJSON *mods = cJSON_GetObjectItem(L.c, "modules");
    assert_int_equal(nt, 2 * (uint64_t)cJSON_GetArraySize(mods));
    assert_int_equal(nkv, 4);
    const int r_ = cJSON_GetObjectItem(L.c, "r")->valueint;
    const double alpha = cJSON_GetObjectItem(L.c, "lora_alpha")->valuedouble;
    const bool rs = cJSON_IsTrue(cJSON_GetObjectItem(L.c, "use_rslora"));
    int seen = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        char key[128], val[128];
        rd_str(&r, key, sizeof key);
        uint32_t type = (uint32_t)rd_u(&r, 4);
        if (!strcmp(key, "adapter.lora.alpha")) {
            assert_int_equal(type, 6);
            uint32_t bits = (uint32_t)rd_u(&r, 4);
            float a;
            memcpy(&a, &bits, 4);
            float want = (float)(rs ? alpha * sqrt((double)r_) : alpha); /* llama.cpp scales by alpha / r */
            if (a != want) fail_msg("%s: adapter.lora.alpha %g, want %g", name, a, want);
            seen |= 1;
            continue;
        }
        assert_int_equal(type, 8);
        rd_str(&r, val, sizeof val);
        if (!strcmp(key, "general.architecture")) assert_string_equal(val, "llama"), seen |= 2;
        else if (!strcmp(key, "general.type")) assert_string_equal(val, "adapter"), seen |= 4;
        else if (!strcmp(key, "adapter.type")) assert_string_equal(val, "lora"), seen |= 8;
        else fail_msg("%s: unexpected key %s", name, key);
    }
    assert_int_equal(seen, 15);
    gguf_tensor *ti = calloc(nt, sizeof *ti);
    for (uint64_t i = 0; i < nt; i++) {
        rd_str(&r, ti[i].name, sizeof ti[i].name);
        ti[i].ndim = (uint32_t)rd_u(&r, 4);
        assert_int_equal(ti[i].ndim, 2);
        for (uint32_t d = 0; d < ti[i].ndim; d++) ti[i].ne[d] = rd_u(&r, 8);
        ti[i].type = (uint32_t)rd_u(&r, 4);
        ti[i].offset = rd_u(&r, 8);
        assert_int_equal(ti[i].type, 0); /* F32 */
        assert_int_equal(ti[i].offset % 32, 0);
    }
    const size_t data = (r.pos + 31) / 32 * 32;
    const model_config *mc = &L.m->cfg;
    static const char *hf[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    static const char *gg[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    size_t end = 0;
    for (int k = 0; k < cJSON_GetArraySize(mods); k++) {
        const char *mod = cJSON_GetArrayItem(mods, k)->valuestring;
        int layer = atoi(mod + strlen("model.layers."));
        const char *rest = strchr(mod + strlen("model.layers."), '.') + 1;
        int which = -1;
        for (int j = 0; j < 7; j++)
            if (!strcmp(rest, hf[j])) which = j;
        assert_true(which >= 0);
        char key[300];
        snprintf(key, sizeof key, "base_model.model.%s.lora_A.weight", mod);
        const st_tensor *A = st_find(L.ad, key);
        snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", mod);
        const st_tensor *B = st_find(L.ad, key);
        const int64_t in = A->shape[1], out = B->shape[0];
        for (int ab = 0; ab < 2; ab++) {
            char want[128];
            snprintf(want, sizeof want, "blk.%d.%s.weight.lora_%c", layer, gg[which], ab ? 'b' : 'a');
            const gguf_tensor *g = NULL;
            for (uint64_t i = 0; i < nt; i++)
                if (!strcmp(ti[i].name, want)) g = &ti[i];
            if (!g) fail_msg("%s: no tensor %s", name, want);
            /* ggml order: fastest dimension first */
            assert_int_equal(g->ne[0], ab ? (uint64_t)r_ : (uint64_t)in);
            assert_int_equal(g->ne[1], ab ? (uint64_t)out : (uint64_t)r_);
            const size_t bytes = (size_t)(g->ne[0] * g->ne[1] * 4);
            if (data + g->offset + bytes > n) fail_msg("%s: %s runs past the file", name, want);
            if (data + g->offset + bytes > end) end = data + g->offset + bytes;
            const float *got = (const float *)(buf + data + g->offset), *src = ab ? B->data : A->data;
            /* q/k: reshape(heads, 2, rows/heads/2, r).swapaxes(1, 2): new row (h, i, j) = old (h, j, i) */
            const int heads = ab && which == 0 ? mc->num_heads : (ab && which == 1 ? mc->num_kv_heads : 0);
            for (int64_t row = 0; row < (ab ? out : r_); row++) {
                int64_t from = row;
                if (heads) {
                    const int64_t hd = out / heads, h = row / hd, i = (row % hd) / 2, j = row % 2;
                    from = h * hd + j * (hd / 2) + i;
                }
                const int64_t cols = ab ? r_ : in;
                if (memcmp(got + row * cols, src + from * cols, (size_t)cols * 4))
                    fail_msg("%s: %s row %lld differs (expected source row %lld)", name, want, (long long)row, (long long)from);
            }
        }
    }
    if ((end + 31) / 32 * 32 != n) fail_msg("%s: file is %zu bytes, tensors end at %zu", name, n, end);
    printf("  %-14s GGUF: %llu tensors, alpha checked, Q/K lora_b permuted\n", name, (unsigned long long)nt);
    free(ti);
    free(buf);
    tu_rmtree(tmp);
    free(tmp);
    free_case(&L);
}

static void test_gguf(void **state) {
    (void)state;
    check_gguf("llama_lora");
    check_gguf("llama_rslora");
    static const char *refused[] = {"gpt2_lora", "llama_dora", "llama_ia3", "llama_houlsby"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        loaded L;
        load_case(refused[i], &L);
        assert_int_equal(export_gguf(L.p, "/nonexistent/never-written.gguf"), PEFT_EUNSUPPORTED);
        free_case(&L);
    }
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_import),
        cmocka_unit_test(test_gguf),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
