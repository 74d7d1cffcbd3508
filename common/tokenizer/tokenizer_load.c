/*
 * tokenizer_load.c - the BPE model and added tokens from tokenizer.json, GPT-2's vocab.json +
 * merges.txt, and the lookup tables built once everything is read.
 *
 * Every count, id and string is checked before it is used; a message names the file and the JSON
 * key (model.vocab, model.merges[i], added_tokens[i].id, ...).
 */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "io/file.h"
#include "io/json.h"

static const cJSON *get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

int tok_arena_add(tokenizer *tk, const char *s, size_t n, uint32_t *off) {
    if (tk->arena_len + n + 1 > UINT32_MAX) return err_set(PEFT_EUNSUPPORTED, "tokenizer: vocabulary over 4 GiB");
    if (tk->arena_len + n + 1 > tk->arena_cap) {
        size_t cap = tk->arena_cap ? tk->arena_cap : 1 << 16;
        while (cap < tk->arena_len + n + 1) cap *= 2;
        char *p = realloc(tk->arena, cap);
        if (!p) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate %zu bytes of vocabulary", cap);
        tk->arena = p;
        tk->arena_cap = cap;
    }
    *off = (uint32_t)tk->arena_len;
    memcpy(tk->arena + tk->arena_len, s, n);
    tk->arena[tk->arena_len + n] = '\0';
    tk->arena_len += n + 1;
    return PEFT_OK;
}

/* Ids index dense tables, so they are capped well above any real vocabulary (Gemma's is 256k). */
#define TOK_MAX_ID ((1 << 24) - 1)

static int check_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > TOK_MAX_ID ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return -1;
    *id = (int32_t)v->valuedouble;
    return 0;
}

static int vocab_add(tokenizer *tk, const char *s, size_t n, int32_t id) {
    uint32_t off = 0;
    PEFT_TRY(tok_arena_add(tk, s, n, &off));
    return tok_strmap_put(&tk->vocab, tk->arena, off, (uint32_t)n, id);
}

static int parse_vocab(tokenizer *tk, const cJSON *vocab, const char *file, const char *key) {
    if (!cJSON_IsObject(vocab)) return err_set(PEFT_EFORMAT, "%s: %s must be an object of token: id", file, key);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id;
        if (check_id(e, &id))
            return err_set(PEFT_EFORMAT, "%s: %s['%s'] must be a token id (an integer from 0 to %d)", file, key,
                           e->string, TOK_MAX_ID);
        size_t n = strlen(e->string);
        if (utf8_check(e->string, n) != n)
            return err_set(PEFT_EFORMAT, "%s: %s: token id %d is not valid UTF-8", file, key, (int)id);
        PEFT_TRY(vocab_add(tk, e->string, n, id));
    }
    if (tk->vocab.n == 0) return err_set(PEFT_EFORMAT, "%s: %s is empty", file, key);
    return PEFT_OK;
}

/* Adds merge number `rank`; a, b are the two halves. */
static int merge_add(tokenizer *tk, tok_buf *cat, const char *a, size_t na, const char *b, size_t nb, int32_t rank,
                     const char *file, const char *key, size_t index) {
    int32_t ia = tok_strmap_get(&tk->vocab, tk->arena, a, na), ib = tok_strmap_get(&tk->vocab, tk->arena, b, nb);
    cat->n = 0;
    PEFT_TRY(tok_buf_append(cat, a, na));
    PEFT_TRY(tok_buf_append(cat, b, nb));
    int32_t im = tok_strmap_get(&tk->vocab, tk->arena, cat->p, cat->n);
    if (ia < 0 || ib < 0 || im < 0)
        return err_set(PEFT_EFORMAT, "%s: %s[%zu]: '%.*s' is not in the vocabulary", file, key, index,
                       ia < 0 ? (int)na : ib < 0 ? (int)nb : (int)cat->n, ia < 0 ? a : ib < 0 ? b : cat->p);
    tok_merges_put(&tk->merges, ia, ib, rank, im);
    tok_fp_int(&tk->fp, ia);
    tok_fp_int(&tk->fp, ib);
    return PEFT_OK;
}

/* "a b" (one space), as in merges.txt and tokenizer.json before tokenizers 0.20. */
static int split_merge(const char *line, size_t n, size_t *sp) {
    const char *s = memchr(line, ' ', n);
    if (!s || memchr(s + 1, ' ', n - (size_t)(s - line) - 1)) return -1;
    *sp = (size_t)(s - line);
    return 0;
}

static int parse_merges(tokenizer *tk, const cJSON *merges, const char *file) {
    if (!cJSON_IsArray(merges)) return err_set(PEFT_EFORMAT, "%s: model.merges must be an array", file);
    PEFT_TRY(tok_merges_init(&tk->merges, (size_t)cJSON_GetArraySize(merges)));
    tok_buf cat = {0};
    int rc = PEFT_OK;
    size_t i = 0;
    int32_t rank = 0;
    for (const cJSON *m = merges->child; m && rc == PEFT_OK; m = m->next, i++) {
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring;
            size_t n = strlen(s), sp;
            if (!strncmp(s, "#version", 8)) continue;
            if (split_merge(s, n, &sp)) {
                rc = err_set(PEFT_EFORMAT, "%s: model.merges[%zu] '%s' must be two tokens separated by one space",
                             file, i, s);
                break;
            }
            rc = merge_add(tk, &cat, s, sp, s + sp + 1, n - sp - 1, rank++, file, "model.merges", i);
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            const char *a = m->child->valuestring, *b = m->child->next->valuestring;
            rc = merge_add(tk, &cat, a, strlen(a), b, strlen(b), rank++, file, "model.merges", i);
        } else {
            rc = err_set(PEFT_EFORMAT, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", file, i);
        }
    }
    free(cat.p);
    return rc;
}

static int parse_model(tokenizer *tk, const cJSON *model, const char *file) {
    if (!cJSON_IsObject(model)) return err_set(PEFT_EFORMAT, "%s: missing required object 'model'", file);
    const cJSON *type = get(model, "type");
    if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0))
        return err_set(PEFT_EUNSUPPORTED, "%s: model.type '%s' is not supported (BPE only)", file,
                       cJSON_IsString(type) ? type->valuestring : "?");
    if (!type && !get(model, "merges"))
        return err_set(PEFT_EUNSUPPORTED, "%s: model has no type and no merges (BPE only)", file);
    const cJSON *v = get(model, "dropout");
    if (v && (!cJSON_IsNumber(v) || v->valuedouble != 0))
        return err_set(PEFT_EUNSUPPORTED, "%s: model.dropout must be null or 0 (dropout is random)", file);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = get(model, affixes[i]);
        if (v && (!cJSON_IsString(v) || v->valuestring[0]))
            return err_set(PEFT_EUNSUPPORTED, "%s: model.%s is not supported (must be null)", file, affixes[i]);
    }
    static const char *const flags[] = {"fuse_unk", "byte_fallback", "ignore_merges"};
    bool *dst[] = {&tk->fuse_unk, &tk->byte_fallback, &tk->ignore_merges};
    for (int i = 0; i < 3; i++) {
        v = get(model, flags[i]);
        if (v && !cJSON_IsBool(v)) return err_set(PEFT_EFORMAT, "%s: model.%s must be true or false", file, flags[i]);
        *dst[i] = v && cJSON_IsTrue(v);
    }
    PEFT_TRY(parse_vocab(tk, get(model, "vocab"), file, "model.vocab"));
    PEFT_TRY(parse_merges(tk, get(model, "merges"), file));
    v = get(model, "unk_token");
    if (v) {
        if (!cJSON_IsString(v)) return err_set(PEFT_EFORMAT, "%s: model.unk_token must be a string or null", file);
        tk->unk_id = tok_strmap_get(&tk->vocab, tk->arena, v->valuestring, strlen(v->valuestring));
        if (tk->unk_id < 0)
            return err_set(PEFT_EFORMAT, "%s: model.unk_token '%s' is not in model.vocab", file, v->valuestring);
    }
    return PEFT_OK;
}

/* Registers an added token as HF's AddedVocabulary::add_tokens does (tokenizer.json's "id" is only
 * checked by HF, which warns when it differs): content already added keeps its id and takes the new
 * flags; content in the model vocabulary takes the model's id; anything else the next id after the
 * model's vocabulary and the added tokens so far. */
static int added_register(tokenizer *tk, const char *content, bool special, bool normalized, tok_added **out) {
    size_t len = strlen(content);
    for (size_t i = 0; i < tk->n_added; i++) {
        tok_added *a = &tk->added[i];
        if (a->len == len && !memcmp(tk->arena + a->off, content, len)) {
            a->special |= special;
            a->normalized = normalized;
            *out = a;
            return PEFT_OK;
        }
    }
    int32_t id = tok_strmap_get(&tk->vocab, tk->arena, content, len);
    if (id < 0) {
        int32_t max = -1, vsize = (int32_t)tk->vocab.n;
        for (size_t i = 0; i < tk->n_added; i++)
            if (tk->added[i].id > max) max = tk->added[i].id;
        id = max < 0 ? vsize : (max >= vsize || vsize == 0) ? max + 1 : vsize;
    }
    tok_added *p = realloc(tk->added, (tk->n_added + 1) * sizeof *p);
    if (!p) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate added tokens");
    tk->added = p;
    tok_added *a = &p[tk->n_added];
    memset(a, 0, sizeof *a);
    a->id = id;
    a->special = special;
    a->normalized = normalized;
    a->len = (uint32_t)len;
    PEFT_TRY(tok_arena_add(tk, content, len, &a->off));
    tk->n_added++;
    *out = a;
    return PEFT_OK;
}

static int parse_added(tokenizer *tk, const cJSON *arr, const char *file) {
    if (!arr) return PEFT_OK;
    if (!cJSON_IsArray(arr)) return err_set(PEFT_EFORMAT, "%s: added_tokens must be an array", file);
    int i = 0;
    for (const cJSON *t = arr->child; t; t = t->next, i++) {
        const cJSON *content = get(t, "content");
        int32_t id;
        if (!cJSON_IsString(content))
            return err_set(PEFT_EFORMAT, "%s: added_tokens[%d].content must be a string", file, i);
        if (check_id(get(t, "id"), &id))
            return err_set(PEFT_EFORMAT, "%s: added_tokens[%d].id must be a token id (0 to %d)", file, i, TOK_MAX_ID);
        if (utf8_check(content->valuestring, strlen(content->valuestring)) != strlen(content->valuestring))
            return err_set(PEFT_EFORMAT, "%s: added_tokens[%d].content is not valid UTF-8", file, i);
        static const char *const keys[] = {"special", "normalized", "single_word", "lstrip", "rstrip"};
        bool f[5] = {false, true, false, false, false}; /* HF's AddedToken defaults */
        for (int k = 0; k < 5; k++) {
            const cJSON *v = get(t, keys[k]);
            if (v && !cJSON_IsBool(v))
                return err_set(PEFT_EFORMAT, "%s: added_tokens[%d].%s must be true or false", file, i, keys[k]);
            if (v) f[k] = cJSON_IsTrue(v);
        }
        if (!content->valuestring[0]) continue; /* HF ignores empty tokens */
        tok_added *a;
        PEFT_TRY(added_register(tk, content->valuestring, f[0], f[1], &a));
        a->single_word = f[2];
        a->lstrip = f[3];
        a->rstrip = f[4];
    }
    return PEFT_OK;
}

int tok_parse_json(tokenizer *tk, const cJSON *root, const char *file) {
    PEFT_TRY(parse_model(tk, get(root, "model"), file));
    PEFT_TRY(parse_added(tk, get(root, "added_tokens"), file));
    return tok_load_pipeline(tk, root, file);
}

int tok_load_json(tokenizer *tk, const char *path) {
    cJSON *root;
    PEFT_TRY(json_load_file(path, &root));
    int rc = tok_parse_json(tk, root, path);
    cJSON_Delete(root);
    return rc;
}

/* ---- GPT-2's vocab.json + merges.txt --------------------------------------------------------- */

int tok_load_gpt2(tokenizer *tk, const char *vocab_path, const char *merges_path) {
    cJSON *vocab;
    PEFT_TRY(json_load_file(vocab_path, &vocab));
    int rc = parse_vocab(tk, vocab, vocab_path, "vocab");
    cJSON_Delete(vocab);
    PEFT_TRY(rc);
    char *text;
    size_t len;
    PEFT_TRY(file_read_all(merges_path, &text, &len));
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    rc = tok_merges_init(&tk->merges, lines);
    tok_buf cat = {0};
    int32_t rank = 0;
    size_t lineno = 0;
    for (size_t at = 0; at < len && rc == PEFT_OK;) {
        const char *line = text + at, *nl = memchr(line, '\n', len - at);
        size_t n = nl ? (size_t)(nl - line) : len - at, sp;
        at += n + 1;
        lineno++;
        if (n && line[n - 1] == '\r') n--;
        if (n >= 8 && !memcmp(line, "#version", 8)) continue;
        if (n == 0 && at >= len) break; /* the final newline */
        if (split_merge(line, n, &sp)) {
            rc = err_set(PEFT_EFORMAT, "%s: line %zu: '%.*s' must be two tokens separated by one space", merges_path,
                         lineno, (int)n, line);
            break;
        }
        rc = merge_add(tk, &cat, line, sp, line + sp + 1, n - sp - 1, rank++, merges_path, "line", lineno);
    }
    free(cat.p);
    free(text);
    PEFT_TRY(rc);
    int32_t eot = tok_strmap_get(&tk->vocab, tk->arena, "<|endoftext|>", 13);
    tok_added *a;
    if (eot >= 0) PEFT_TRY(added_register(tk, "<|endoftext|>", true, false, &a));
    tok_pretok *pt = calloc(1, sizeof *pt);
    if (!pt) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the pre-tokenizer");
    tk->pre = pt;
    tk->n_pre = 1;
    pt->type = TOK_PRE_BYTELEVEL;
    pt->use_regex = true;
    PEFT_TRY(tok_pattern_regex(&pt->pat, tok_gpt2_regex, vocab_path));
    tok_decoder *d = calloc(1, sizeof *d);
    if (!d) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the decoder");
    tk->dec = d;
    tk->n_dec = 1;
    tk->has_decoder = true;
    d->type = TOK_DEC_BYTELEVEL;
    return PEFT_OK;
}

/* ---- tables built after loading -------------------------------------------------------------- */

void tok_bytes_to_unicode(tokenizer *tk) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        tk->byte_char_len[b] = (uint8_t)utf8_put(cp, tk->byte_char[b]);
    }
    for (int c = 0; c < 324; c++) tk->char_byte[c] = -1;
    for (int b = 0; b < 256; b++) {
        int len;
        tk->char_byte[utf8_next(tk->byte_char[b], &len)] = (int16_t)b;
    }
}

int32_t tok_token_id(const tokenizer *tk, const char *s, size_t n) {
    for (size_t i = 0; i < tk->n_added; i++)
        if (tk->added[i].len == n && !memcmp(tk->arena + tk->added[i].off, s, n)) return tk->added[i].id;
    return tok_strmap_get(&tk->vocab, tk->arena, s, n);
}

static int normalize_added(tokenizer *tk) {
    tok_scratch sc;
    PEFT_TRY(tok_scratch_init(&sc));
    int rc = PEFT_OK;
    for (size_t i = 0; i < tk->n_added && rc == PEFT_OK; i++) {
        tok_added *a = &tk->added[i];
        if (!a->normalized) continue;
        const char *s;
        size_t n;
        rc = tok_normalize(tk, &sc, tk->arena + a->off, a->len, &s, &n);
        if (rc == PEFT_OK && !(a->norm = malloc(n + 1))) rc = err_set(PEFT_ENOMEM, "tokenizer: out of memory");
        if (rc == PEFT_OK) {
            memcpy(a->norm, s, n);
            a->norm[n] = '\0';
            a->norm_len = n;
        }
    }
    tok_scratch_free(&sc);
    return rc;
}

int tok_build_tables(tokenizer *tk) {
    int32_t max_id = -1;
    for (size_t i = 0; i < tk->vocab.n; i++)
        if (tk->vocab.e[i].id > max_id) max_id = tk->vocab.e[i].id;
    for (size_t i = 0; i < tk->n_added; i++)
        if (tk->added[i].id > max_id) max_id = tk->added[i].id;
    tk->n_ids = max_id + 1;
    tk->id_off = malloc((size_t)tk->n_ids * sizeof *tk->id_off);
    tk->id_len = malloc((size_t)tk->n_ids * sizeof *tk->id_len);
    tk->id_special = calloc((size_t)tk->n_ids, sizeof *tk->id_special);
    tk->char_id = malloc(TOK_CHAR_CACHE * sizeof *tk->char_id);
    if (!tk->id_off || !tk->id_len || !tk->id_special || !tk->char_id)
        return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate tables for %d ids", tk->n_ids);
    for (int i = 0; i < tk->n_ids; i++) tk->id_off[i] = UINT32_MAX;
    for (int c = 0; c < TOK_CHAR_CACHE; c++) tk->char_id[c] = -1;
    for (size_t i = 0; i < tk->vocab.n; i++) {
        const char *s = tk->arena + tk->vocab.e[i].off;
        uint32_t len = tk->vocab.e[i].len;
        tk->id_off[tk->vocab.e[i].id] = tk->vocab.e[i].off;
        tk->id_len[tk->vocab.e[i].id] = len;
        int clen;
        if (len && len <= 2 && utf8_check(s, len) == len && (uint32_t)utf8_len((unsigned char)s[0]) == len)
            tk->char_id[utf8_next(s, &clen)] = tk->vocab.e[i].id;
    }
    for (size_t i = 0; i < tk->n_added; i++) {
        const tok_added *a = &tk->added[i];
        tk->id_off[a->id] = a->off;
        tk->id_len[a->id] = a->len;
        if (!a->special) continue;
        tk->id_special[a->id] = true;
        int32_t model_id = tok_strmap_get(&tk->vocab, tk->arena, tk->arena + a->off, a->len);
        if (model_id >= 0) tk->id_special[model_id] = true;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tk->byte_id[b] = tok_strmap_get(&tk->vocab, tk->arena, name, 6);
    }
    PEFT_TRY(tok_bpe_whole_words(tk));
    PEFT_TRY(normalize_added(tk));
    PEFT_TRY(tok_matcher_build(tk, &tk->match_raw, false));
    PEFT_TRY(tok_matcher_build(tk, &tk->match_norm, true));
    bool single_word = false;
    for (size_t i = 0; i < tk->n_added; i++) single_word |= tk->added[i].single_word;
    if (single_word) {
        int code;
        PCRE2_SIZE at;
        /* Rust regex's Unicode \w */
        tk->word_re = pcre2_compile((PCRE2_SPTR) "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]",
                                    PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
        if (!tk->word_re) return err_set(PEFT_EINTERNAL, "tokenizer: cannot compile the \\w class (PCRE2 %d)", code);
    }
    return PEFT_OK;
}

int tok_load_config(tokenizer *tk, const char *dir) {
    char path[4096];
    PEFT_TRY(file_join(path, sizeof path, dir, "tokenizer_config.json"));
    if (!file_exists(path)) return PEFT_OK;
    cJSON *root;
    PEFT_TRY(json_load_file(path, &root));
    static const char *const keys[] = {"bos_token", "eos_token"};
    int *dst[] = {&tk->bos_id, &tk->eos_id};
    int rc = PEFT_OK;
    for (int k = 0; k < 2 && rc == PEFT_OK; k++) {
        const cJSON *v = get(root, keys[k]);
        if (!v) continue;
        if (cJSON_IsObject(v)) v = get(v, "content");
        if (!cJSON_IsString(v)) {
            rc = err_set(PEFT_EFORMAT, "%s: %s must be a string, an object with a content string, or null", path,
                         keys[k]);
            break;
        }
        *dst[k] = tok_token_id(tk, v->valuestring, strlen(v->valuestring));
        if (*dst[k] < 0)
            rc = err_set(PEFT_EFORMAT, "%s: %s '%s' is not in the vocabulary", path, keys[k], v->valuestring);
    }
    cJSON_Delete(root);
    return rc;
}
